"""The rewrites between a `Problem` and the numbers the staged MILP is built from, as reductions
in the style of cvxpy's (`cvxpy/reductions/reduction.py`): `apply(problem)` returns the reduced
problem and what is needed to go back; `invert(solution, inverse_data)` maps a solution of the
reduced problem to one of the original.

- `Stage`: schedules -> staged plans. apply gives the staged space (`solver.staged`); invert
  turns a plan into its minimal-residency schedule; `project` maps a schedule of the original
  into the space (for MIP starts).
- `Scale`: bytes -> memory units, joules -> objective units. apply gives a `ScaledProblem`
  (sizes, budgets and cost coefficients as the MILP's rows use them) and the `Scaling`;
  invert turns an objective value (or bound) back into joules.
- `Reorder`: the order of first computes. apply renumbers the nodes into another topological
  order; invert maps a schedule back to the original ids (`candidate_orders` lists the orders
  `solver.solve` tries).

The simulator checks every inverted schedule on the original problem (`solver.solve`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import reduce

from .errors import ProblemError
from .plans import StagedPlan, plan_to_schedule, schedule_to_plan
from .problem import Problem
from .schedule import Schedule
from .staged import StagedSpace, staged_space


# ---------------------------------------------------------------------------------------------
# Stage: schedules <-> staged plans
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Stage:
    """The staged space as a reduction (its options as for `solver.staged.staged_space`)."""

    remat: bool = True
    paging: bool = True
    backward_remat: str = "far"
    forward_stages: str = "skips"
    read_in_stage: str = "all"

    def apply(self, problem: Problem) -> tuple[StagedSpace, Problem]:
        """The staged space of `problem`, and the problem (what `invert` needs)."""
        space = staged_space(problem, remat=self.remat, paging=self.paging,
                             backward_remat=self.backward_remat,
                             forward_stages=self.forward_stages,
                             read_in_stage=self.read_in_stage)
        return space, problem

    @staticmethod
    def invert(plan: StagedPlan, problem: Problem, *, strategy: str = "poet") -> Schedule:
        """The plan's minimal-residency schedule on the original problem."""
        return plan_to_schedule(problem, plan, strategy=strategy)

    @staticmethod
    def project(schedule: Schedule, problem: Problem) -> StagedPlan | None:
        """A schedule of the original as a plan (None if it leaves the staged layout)."""
        return schedule_to_plan(problem, schedule)


# ---------------------------------------------------------------------------------------------
# Scale: memory in whole units, energy and time relative to store-all
# ---------------------------------------------------------------------------------------------
def memory_unit(problem: Problem) -> int:
    """The gcd of every output and workspace size (1 if there is none): RAM in use is static
    bytes plus a whole number of these units."""
    sizes = [n.out_bytes for n in problem.nodes] + [n.workspace_bytes for n in problem.nodes]
    return reduce(math.gcd, (s for s in sizes if s > 0), 0) or 1


def objective_scale(problem: Problem) -> float:
    """Objective units per store-all energy: a power of ten that puts the largest cost near 100
    (HiGHS' absolute tolerances then sit far below every cost that matters)."""
    e0 = problem.store_all_energy_j
    top = max((max(n.compute_j, n.pagein_j, n.pageout_j) for n in problem.nodes), default=0.0)
    if e0 <= 0 or top <= 0:
        return 1.0
    return 10.0 ** round(math.log10(100.0 * e0 / top))


@dataclass(frozen=True)
class Scaling:
    """Units of the MILP: bytes / unit_bytes, joules / energy_j, seconds / time_s (the inverse
    data of `Scale`)."""

    unit_bytes: int
    energy_j: float
    time_s: float
    store_all_energy_j: float
    store_all_time_s: float

    @classmethod
    def of(cls, problem: Problem, objective_scale: float = 1.0) -> Scaling:
        """objective_scale: objective units per store-all energy (1: the objective is the
        relative overhead above store-all)."""
        e0, s0 = problem.store_all_energy_j, problem.store_all_time_s
        return cls(memory_unit(problem), (e0 if e0 > 0 else 1.0) / objective_scale,
                   s0 if s0 > 0 else 1.0, e0, s0)

    @property
    def objective_per_store_all(self) -> float:
        """Objective units in one store-all energy (to turn a relative gap into an absolute one)."""
        return (self.store_all_energy_j if self.store_all_energy_j > 0 else 1.0) / self.energy_j

    def units(self, nbytes: int) -> int:
        """Whole memory units in nbytes (rounded down)."""
        return nbytes // self.unit_bytes

    def to_energy_j(self, overhead: float) -> float:
        """Joules of an objective value: store-all energy + overhead x energy_j."""
        return self.store_all_energy_j + overhead * self.energy_j

    def to_overhead(self, energy_j: float) -> float:
        """The objective value of a schedule of `energy_j` joules (the inverse of to_energy_j)."""
        return (energy_j - self.store_all_energy_j) / self.energy_j


@dataclass(frozen=True)
class ScaledProblem:
    """The problem's numbers as the MILP's rows use them.

    b[i], w[i]: out_bytes and workspace_bytes of node i in row units (whole memory units times
    `shift`); ram, flash: the budgets above static bytes in row units (flash None without a
    flash budget); compute / page_in / page_out: objective coefficients per node (joules /
    energy_j); compute_s / page_in_s / page_out_s: time coefficients per node (seconds /
    time_s); runtime: the runtime budget minus the store-all time in time units (None without
    a runtime budget).
    """

    problem: Problem
    shift: float
    b: list[float]
    w: list[float]
    ram: float
    flash: float | None
    compute: list[float]
    page_in: list[float]
    page_out: list[float]
    compute_s: list[float]
    page_in_s: list[float]
    page_out_s: list[float]
    runtime: float | None


def _check_finite(sp: ScaledProblem) -> None:
    """ProblemError naming the field when a scaled coefficient overflowed (a cost divided by a
    store-all energy or time many orders of magnitude smaller)."""
    for name, field_name, values in (
            ("compute", "compute_j", sp.compute), ("page_in", "pagein_j", sp.page_in),
            ("page_out", "pageout_j", sp.page_out), ("compute_s", "compute_s", sp.compute_s),
            ("page_in_s", "pagein_s", sp.page_in_s), ("page_out_s", "pageout_s", sp.page_out_s)):
        for i, v in enumerate(values):
            if not math.isfinite(v):
                what = "energy" if field_name.endswith("_j") else "time"
                raise ProblemError(f"nodes[{i}].{field_name} relative to the store-all {what} "
                                   f"overflows a float: the costs span too many orders of "
                                   f"magnitude")
    if sp.runtime is not None and not math.isfinite(sp.runtime):
        raise ProblemError("runtime_budget_s relative to the store-all time overflows a float: "
                           "the budget and the compute times span too many orders of magnitude")


@dataclass(frozen=True)
class Scale:
    """Memory in gcd units (times a power of two, with mem_scale), energies relative to
    store-all (times `objective_scale` units, by default `objective_scale(problem)`)."""

    objective_scale: float | None = None
    mem_scale: bool = True

    def apply(self, problem: Problem) -> tuple[ScaledProblem, Scaling]:
        """The scaled numbers and the `Scaling` that maps objective values back to joules.
        The problem must have a RAM budget of at least its static bytes."""
        scale = objective_scale(problem) if self.objective_scale is None else self.objective_scale
        sc = Scaling.of(problem, scale)
        nodes = problem.nodes
        free_bytes = problem.ram_budget_bytes - problem.static_bytes
        # memory rows: whole gcd units, times a power of two that brings the budget near 2^10
        # (exact in floating point). Binaries a hair off 0/1 (solvers return them within ~1e-9)
        # and the row tolerance (1e-7 scaled) may overstate what fits by less than `slack`
        # units; RAM in use is a whole number of units, so floor(slack) off the budget keeps
        # rounded solutions within it (floor(slack) is 0 below a billion units; solve() checks
        # every schedule anyway).
        shift = 2.0 ** -max(0, sc.units(free_bytes).bit_length() - 11) if self.mem_scale else 1.0
        slack = 1e-9 * sum(sc.units(n.out_bytes) for n in nodes) + 1e-7 / shift

        def budget(nbytes: int) -> float:
            return (sc.units(nbytes) - math.floor(slack)) * shift

        fb = problem.flash_budget_bytes
        rb = problem.runtime_budget_s
        scaled = ScaledProblem(
            problem, shift,
            b=[sc.units(n.out_bytes) * shift for n in nodes],
            w=[sc.units(n.workspace_bytes) * shift for n in nodes],
            ram=budget(free_bytes), flash=None if fb is None else budget(fb),
            compute=[n.compute_j / sc.energy_j for n in nodes],
            page_in=[n.pagein_j / sc.energy_j for n in nodes],
            page_out=[n.pageout_j / sc.energy_j for n in nodes],
            compute_s=[n.compute_s / sc.time_s for n in nodes],
            page_in_s=[n.pagein_s / sc.time_s for n in nodes],
            page_out_s=[n.pageout_s / sc.time_s for n in nodes],
            runtime=None if rb is None else (rb - sc.store_all_time_s) / sc.time_s)
        _check_finite(scaled)
        return scaled, sc

    @staticmethod
    def invert(overhead: float, scaling: Scaling) -> float:
        """Joules of an objective value (or bound) of the scaled problem."""
        return scaling.to_energy_j(overhead)


# ---------------------------------------------------------------------------------------------
# Reorder: the order of first computes
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Reorder:
    """Renumber the nodes into another topological order (the staged space computes nodes for
    the first time in id order, so the order is a restriction of every staged solve).

    order[k] is the original id of node k of the reordered problem. apply gives the reordered
    problem (same nodes, costs, budgets and name; ids, edges and hence the fingerprint renumbered)
    and the order; `forward` maps a schedule of the original onto it, `invert` maps a schedule of
    the reordered problem back (same instructions, original ids, original fingerprint): both keep
    energy, time and peaks, since the simulator's rules do not look at ids."""

    order: tuple[int, ...]

    def __post_init__(self):
        object.__setattr__(self, "order", tuple(self.order))

    def check(self, problem: Problem) -> None:
        """ValueError unless `order` is a topological order of the problem's nodes."""
        T = problem.T
        if sorted(self.order) != list(range(T)):
            raise ValueError(f"order must be a permutation of the node ids 0..{T - 1}")
        pos = self.position
        for i, j in problem.edges:
            if pos[i] >= pos[j]:
                raise ValueError(f"order puts node {j} before its operand {i}: it must be a "
                                 f"topological order")

    @property
    def position(self) -> list[int]:
        """position[original id] = new id."""
        pos = [0] * len(self.order)
        for k, old in enumerate(self.order):
            pos[old] = k
        return pos

    @property
    def is_identity(self) -> bool:
        return all(k == old for k, old in enumerate(self.order))

    def apply(self, problem: Problem) -> tuple[Problem, tuple[int, ...]]:
        """The renumbered problem and the order (what `invert` needs)."""
        self.check(problem)
        if self.is_identity:
            return problem, self.order
        pos = self.position
        nodes = [dataclasses.replace(problem.nodes[old], id=k) for k, old in enumerate(self.order)]
        edges = sorted((pos[i], pos[j]) for i, j in problem.edges)
        return Problem(nodes, edges, static_bytes=problem.static_bytes,
                       ram_budget_bytes=problem.ram_budget_bytes,
                       runtime_budget_s=problem.runtime_budget_s,
                       flash_budget_bytes=problem.flash_budget_bytes, name=problem.name,
                       extra=dict(problem.extra)), self.order

    def forward(self, schedule: Schedule, reordered: Problem) -> Schedule:
        """A schedule of the original problem as one of the reordered problem."""
        pos = self.position
        return _renamed(schedule, [(op, pos[i]) for op, i in schedule.instructions], reordered)

    @staticmethod
    def invert(schedule: Schedule, problem: Problem, order: tuple[int, ...]) -> Schedule:
        """A schedule of the reordered problem as one of the original `problem`."""
        return _renamed(schedule, [(op, order[i]) for op, i in schedule.instructions], problem)


def _renamed(schedule: Schedule, instructions, problem: Problem) -> Schedule:
    return Schedule(instructions, problem_fingerprint=problem.fingerprint,
                    strategy=schedule.strategy, ram_budget_bytes=schedule.ram_budget_bytes,
                    predicted=dict(schedule.predicted), extra=dict(schedule.extra))


def greedy_order(problem: Problem, *, largest_first: bool = False) -> tuple[int, ...]:
    """A topological order built one node at a time: of the nodes whose operands are all computed,
    the one that adds the least to the store-all working set (its output, if anyone reads it,
    minus the operands it is the last reader of), ties to the highest id (the latest node
    continues the branch in progress, depth first). largest_first picks the one that adds the
    most instead, ties to the lowest id (a second, different candidate: it computes the heavier
    branch of a fork first). Time O(T x ready nodes x their in-degree)."""
    T, preds, succs = problem.T, problem.preds, problem.succs
    out = [n.out_bytes for n in problem.nodes]
    waiting = [len(p) for p in preds]        # operands not yet computed
    readers_left = [len(s) for s in succs]   # consumers not yet computed
    ready = [v for v in range(T) if not waiting[v]]
    order = []
    sign = -1 if largest_first else 1
    while ready:
        def key(v):
            freed = sum(out[q] for q in preds[v] if readers_left[q] == 1)
            grow = (out[v] if succs[v] else 0) - freed
            return (sign * grow, v if largest_first else -v)
        v = min(ready, key=key)
        ready.remove(v)
        order.append(v)
        for q in preds[v]:
            readers_left[q] -= 1
        for s in succs[v]:
            waiting[s] -= 1
            if not waiting[s]:
                ready.append(s)
    return tuple(order)


def candidate_orders(problem: Problem) -> list[tuple[int, ...]]:
    """The orders of first computes `solver.solve` tries, distinct, the given order first: the
    given one and the two greedy orders of `greedy_order`. On the 200 random DAGs of the tests the
    best of the three reaches the unrestricted optimum wherever the staged space can (the given
    order alone misses 5)."""
    out = [tuple(range(problem.T))]
    for o in (greedy_order(problem), greedy_order(problem, largest_first=True)):
        if o not in out:
            out.append(o)
    return out
