"""Staged plans (the points of `solver.staged`'s space) and their minimal-residency schedules.

A plan says, per stage, which nodes are materialised (recomputed or paged in) at their own
position before the stage's first compute, and which nodes are paged out after their first
compute. Its schedule (`plan_to_instructions`) frees every copy right after the last compute
that reads it and drops every flash copy right after its last page-in; the rules of that
schedule are checked by `solver.simulate.Machine`, the one reading of the rules.
`schedule_to_plan` goes the other way: it projects a schedule into the staged space (for MIP
starts). `solver.reductions.Stage` is the pair as a reduction.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import ScheduleError
from .problem import Problem
from .schedule import Schedule
from .simulate import Machine

MATERIALISE = ("compute", "page_in")


class PlanError(ValueError):
    """A staged plan breaks a rule of the staged space (the message names stage, node and rule)."""


@dataclass(frozen=True)
class StagedPlan:
    """A point of the staged space.

    stages[t]: the materialisations of stage t as (node, "compute" | "page_in") in position
    order, the last one being (t, "compute"); paged_out: the nodes paged out after their first
    compute.
    """

    stages: tuple[tuple[tuple[int, str], ...], ...]
    paged_out: frozenset[int] = field(default_factory=frozenset)

    def counts(self) -> dict[str, int]:
        """How many recomputes, page-ins and page-outs the plan performs."""
        rec = sum(1 for st in self.stages for k, how in st[:-1] if how == "compute")
        pin = sum(1 for st in self.stages for k, how in st if how == "page_in")
        return {"recomputes": rec, "page_ins": pin, "page_outs": len(self.paged_out)}


def store_all_plan(problem: Problem) -> StagedPlan:
    """The plan that computes every node once and never pages."""
    return StagedPlan(tuple(((t, "compute"),) for t in range(problem.T)), frozenset())


def plan_energy(problem: Problem, plan: StagedPlan) -> float:
    """Joules of the plan: every compute and page-in in stage order, then every page-out.

    A direct sum, not a walk: a plan's energy does not depend on residency (the frees cost
    nothing), and this order is the one the staged brute force and the MIP start have always
    used (the simulator adds the same terms in instruction order, equal up to rounding)."""
    nodes = problem.nodes
    e = 0.0
    for st in plan.stages:
        for k, how in st:
            e += nodes[k].compute_j if how == "compute" else nodes[k].pagein_j
    return e + sum(nodes[i].pageout_j for i in plan.paged_out)


@dataclass
class Copy:
    """One materialisation of a node in a plan: the stage it is made in and its last reader."""

    node: int
    stage: int            # stage of the materialisation (its position is the node id)
    last_use: tuple[int, int] | None = None   # (stage, position) of the last compute reading it


def copies(problem: Problem, plan: StagedPlan) -> list[Copy]:
    """Check the plan's layout (T stages, each ending with its first compute, positions
    increasing, known ops and nodes); return every copy in order, each with the (stage,
    position) of the last compute that reads it (a compute reads the latest copy of each
    operand). Whether those operands are resident is the Machine's to say (`_check_rules`)."""
    T = problem.T
    if len(plan.stages) != T:
        raise PlanError(f"a plan needs {T} stages (one per node), got {len(plan.stages)}")
    current: dict[int, Copy] = {}
    order: list[Copy] = []
    for t, st in enumerate(plan.stages):
        if not st or st[-1] != (t, "compute"):
            raise PlanError(f"stage {t} must end with the first compute of node {t}")
        prev = -1
        for k, how in st:
            if how not in MATERIALISE:
                raise PlanError(f"stage {t}: {how!r} is not one of {', '.join(MATERIALISE)}")
            if not (isinstance(k, int) and prev < k <= t):
                raise PlanError(f"stage {t}: positions must increase and stay <= {t}, got {k} "
                                f"after {prev}")
            prev = k
            if how == "compute":
                for p in problem.preds[k]:
                    if p in current:
                        current[p].last_use = (t, k)
            c = Copy(k, t)
            current[k] = c
            order.append(c)
    for i in plan.paged_out:
        if not 0 <= i < T:
            raise PlanError(f"paged_out names node {i}, which does not exist")
    return order


def emit_instructions(problem: Problem, plan: StagedPlan) -> list[tuple[str, int, int]]:
    """The minimal-residency instructions of the plan as (op, node, stage), unchecked: each
    copy freed right after its last reader (a copy nobody reads right after it is made), each
    flash copy dropped right after its last page-in (right after its page-out if never paged
    in). `plan_to_instructions` checks them."""
    order = copies(problem, plan)
    frees_at: dict[tuple[int, int], list[int]] = {}
    for c in order:
        at = c.last_use if c.last_use is not None else (c.stage, c.node)
        frees_at.setdefault(at, []).append(c.node)
    last_in: dict[int, tuple[int, int]] = {}
    for t, st in enumerate(plan.stages):
        for k, how in st:
            if how == "page_in":
                last_in[k] = (t, k)
    out: list[tuple[str, int, int]] = []
    for t, st in enumerate(plan.stages):
        for k, how in st:
            out.append((how, k, t))
            if how == "page_in" and last_in[k] == (t, k):
                out.append(("drop_flash", k, t))
            if k == t and t in plan.paged_out:
                out.append(("page_out", t, t))
                if t not in last_in:
                    out.append(("drop_flash", t, t))
            out.extend(("free", i, t) for i in sorted(frees_at.get((t, k), ())))
    return out


def _check_rules(problem: Problem, emitted: list[tuple[str, int, int]]) -> None:
    """Walk the instructions on a `Machine` (budgets not checked); PlanError naming the stage,
    the instruction and the rule at the first one the Machine refuses (an operand that is not
    resident, a page-in of a node that was never paged out)."""
    machine = Machine(problem, check_budgets=False)
    for op, i, t in emitted:
        rule = machine.check(op, i)
        if rule is not None:
            raise PlanError(f"stage {t}: {op} of node {i}: {rule}")
        try:
            machine.apply(op, i)
        except ScheduleError as e:      # a rule check() does not cover: still the plan's fault
            raise PlanError(f"stage {t}: {e}") from None


def plan_to_instructions(problem: Problem, plan: StagedPlan) -> list[tuple[str, int]]:
    """The instruction list of a plan with minimal residency: each copy is freed right after the
    last compute that reads it (a copy nobody reads right after it is made), each flash copy is
    dropped right after its last page-in (right after its page-out if never paged in).
    Raises PlanError if the plan breaks its layout or a rule (a tensor read while not
    resident, a page-in of a node not paged out)."""
    emitted = emit_instructions(problem, plan)
    _check_rules(problem, emitted)
    return [(op, i) for op, i, _ in emitted]


def plan_to_schedule(problem: Problem, plan: StagedPlan, *, strategy: str = "poet") -> Schedule:
    """A Schedule for the plan (see `plan_to_instructions`), tied to the problem's fingerprint."""
    return Schedule(plan_to_instructions(problem, plan), problem_fingerprint=problem.fingerprint,
                    strategy=strategy, ram_budget_bytes=problem.ram_budget_bytes,
                    extra={"plan": plan.counts()})


def schedule_to_plan(problem: Problem, schedule: Schedule) -> StagedPlan | None:
    """Project a schedule into the staged space, or None when it does not fit its layout.

    Stages are cut at first computes (which must come in id order); every materialisation of a
    stage is moved to its own position; every page-out becomes the page-out after the first
    compute; copies nobody reads and page-outs never paged in are dropped (they only cost).
    The result is checked for operand availability but not against the budgets or the
    space's index sets (`MilpModel.encode` and `MilpModel.violations` do that)."""
    T = problem.T
    stages: list[dict[int, str]] = [{} for _ in range(T)]
    paged: set[int] = set()
    first = 0
    for op, i in schedule.instructions:
        if not 0 <= i < T:
            return None
        if op == "page_out":
            paged.add(i)
        elif op in MATERIALISE:
            if op == "compute" and i == first:
                stages[first][i] = "compute"
                first += 1
                continue
            if first >= T:
                continue            # after the last first compute: nothing is read any more
            if op == "compute" and i > first:
                return None         # a first compute out of id order
            if i in stages[first]:
                return None         # two copies of a node in one stage
            stages[first][i] = op
    if first != T:
        return None
    plan = StagedPlan(tuple(tuple(sorted(st.items())) for st in stages), frozenset(paged))
    try:
        return drop_useless(problem, plan)
    except PlanError:
        return None


def drop_useless(problem: Problem, plan: StagedPlan) -> StagedPlan:
    """The plan without copies nobody reads (recomputes and page-ins; first computes stay) and
    without page-outs never paged in: same validity, no more RAM, energy or time. Raises
    PlanError if the plan itself breaks a rule (dropping unread copies keeps it valid)."""
    _check_rules(problem, emit_instructions(problem, plan))
    while True:
        order = copies(problem, plan)
        useless = {(c.stage, c.node) for c in order
                   if c.last_use is None and c.node != c.stage}
        read_in = {k for st in plan.stages for k, how in st if how == "page_in"}
        paged = frozenset(i for i in plan.paged_out if i in read_in)
        if not useless and paged == plan.paged_out:
            return plan
        plan = StagedPlan(tuple(tuple(m for m in st if (t, m[0]) not in useless)
                                for t, st in enumerate(plan.stages)), paged)
