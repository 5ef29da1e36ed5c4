"""Exhaustive search over the MILP's own schedule space (the staged plans of `solver.milp`).

For small problems (T <= 7 or so) this returns the true optimum of exactly the space the MILP
covers, by dynamic programming over stages. The state at the start of stage t is (tensors kept in
RAM from stage t-1, tensors on flash); a transition chooses, for every candidate position of the
stage, nothing / a recompute / a page-in, whether to page node t out, which tensors to keep for
stage t+1 and (only when a flash budget binds) which flash copies to keep. Inside the stage a
tensor is freed right after the last compute that reads it unless it is kept. RAM is checked at
every materialisation (operands, output and workspace together), flash at every page-out, and
the runtime budget on the whole plan (each state keeps its Pareto set of (energy, time) to go).

Nothing here shares code with the MILP except the index sets (`staged_space`), so the MILP's
rows are checked against an independent reading of the same rules.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from .errors import InfeasibleError
from .plans import StagedPlan, plan_energy, plan_to_schedule
from .problem import Problem
from .schedule import Schedule
from .simulate import simulate
from .staged import staged_space

MAX_T = 9


@dataclass(frozen=True)
class StagedOptimum:
    """The best plan of the staged space, its energy (joules) and its simulated schedule."""

    energy_j: float
    plan: StagedPlan
    schedule: Schedule
    states: int


def optimal_staged(problem: Problem, *, remat: bool = True, paging: bool = True,
                   backward_remat: str = "far", forward_stages: str = "skips",
                   read_in_stage: str = "all") -> StagedOptimum:
    """The least-energy plan of the staged space under the problem's budgets.

    Raises InfeasibleError when no plan of the space fits, ValueError when T > MAX_T.
    """
    if problem.T > MAX_T:
        raise ValueError(f"optimal_staged is exponential: T must be <= {MAX_T}, got {problem.T}")
    space = staged_space(problem, remat=remat, paging=paging, backward_remat=backward_remat,
                         forward_stages=forward_stages, read_in_stage=read_in_stage)
    search = _StagedSearch(problem, space)
    energy, plan = search.run()
    sched = plan_to_schedule(problem, plan, strategy="bruteforce_staged")
    rep = simulate(problem, sched)
    sched.predicted = rep.predicted()
    for e in (energy, plan_energy(problem, plan)):
        if abs(rep.energy_j - e) > 1e-9 * max(1.0, abs(rep.energy_j)):
            raise RuntimeError(f"bruteforce_staged: search energy {e!r} and simulated energy "
                               f"{rep.energy_j!r} differ")
    return StagedOptimum(rep.energy_j, plan, sched, search.states)


class _StagedSearch:
    """Dynamic programming over the stages of one staged space (see the module docstring).

    A state is (stage t, tensors kept in RAM from stage t-1, tensors on flash); `best` returns
    its Pareto set of (energy, time, steps to go), `run` the cheapest complete plan.
    """

    def __init__(self, problem: Problem, space):
        self.problem, self.space = problem, space
        self.b = [n.out_bytes for n in problem.nodes]
        self.w = [n.workspace_bytes for n in problem.nodes]
        budget = problem.ram_budget_bytes
        self.ram = (budget if budget is not None else float("inf")) - problem.static_bytes
        self.flash = problem.flash_budget_bytes if space.flash_binds else None
        self.runtime = problem.runtime_budget_s
        self.states = 0
        self._memo: dict[tuple, tuple] = {}

    def run(self) -> tuple[float, StagedPlan]:
        """(energy, plan) of the least-energy plan within the budgets (least time on ties).
        Raises InfeasibleError when there is none."""
        labels = self.best(0, frozenset(), frozenset())
        if self.runtime is not None:
            labels = [lab for lab in labels if lab[1] <= self.runtime * (1 + 1e-9)]
        if not labels:
            raise InfeasibleError("no plan of the staged space fits the budgets")
        energy, _, steps = min(labels, key=lambda lab: (lab[0], lab[1]))
        plan = StagedPlan(tuple(m for m, _ in steps),
                          frozenset(t for t, (_, po) in enumerate(steps) if po))
        return energy, plan

    def best(self, t: int, kept: frozenset[int], on_flash: frozenset[int]) -> tuple:
        """Pareto list of (energy, time, plans-to-go) from stage t with this state (memoised)."""
        key = (t, kept, on_flash)
        if key in self._memo:
            return self._memo[key]
        self.states += 1
        if t == self.problem.T:
            out: tuple = ((0.0, 0.0, ()),)
        else:
            labels = []
            for mats, po, keep, fl, e, s in self.stage_moves(t, kept, on_flash):
                for e2, s2, tail in self.best(t + 1, keep, fl):
                    labels.append((e + e2, s + s2, ((tuple(mats), po),) + tail))
            out = _pareto(labels, self.runtime)
        self._memo[key] = out
        return out

    def stage_mats(self, t: int, kept, on_flash):
        """Every valid choice of materialisations for stage t, in position order."""
        space, preds = self.space, self.problem.preds
        cands = space.candidates(t)

        def rec(idx, mats, have):
            if idx == len(cands):
                if all(p in have for p in preds[t]):
                    full = mats + [(t, "compute")]
                    if all(not space.must_be_read(t, k, how)
                           or any(h == "compute" and j > k and k in preds[j] for j, h in full)
                           for k, how in mats):
                        yield full
                return
            k = cands[idx]
            yield from rec(idx + 1, mats, have)
            if k in kept:
                return                          # one copy per stage
            if space.can_recompute(t, k) and all(p in have for p in preds[k]):
                yield from rec(idx + 1, mats + [(k, "compute")], have | {k})
            if space.can_page_in(t, k) and k in on_flash:
                yield from rec(idx + 1, mats + [(k, "page_in")], have | {k})

        yield from rec(0, [], frozenset(kept))

    def keep_sets(self, mats, kept, last_read, keepable):
        """Every set of tensors to keep for the next stage that leaves the stage within RAM.
        RAM at each materialisation = what is read there or later + what is kept + the new
        output (and workspace); keeping more only adds, so a failing set prunes its supersets."""
        b, w, ram = self.b, self.w, self.ram
        before = list(kept)
        load, extra = [], {x: [] for x in keepable}
        for k, how in mats:
            load.append(sum(b[i] for i in before if last_read.get(i, -1) >= k)
                        + b[k] + (w[k] if how == "compute" else 0))
            for x in keepable:
                extra[x].append(b[x] if x in before and last_read.get(x, -1) < k else 0)
            before.append(k)
        if any(v > ram for v in load):
            return

        def rec(idx, keep, load):
            if idx == len(keepable):
                yield keep
                return
            yield from rec(idx + 1, keep, load)
            x = keepable[idx]
            bigger = [u + v for u, v in zip(load, extra[x])]
            if all(v <= ram for v in bigger):
                yield from rec(idx + 1, keep | {x}, bigger)

        yield from rec(0, frozenset(), load)

    def stage_moves(self, t: int, kept, on_flash):
        """Yield (materialisations, page_out, kept', flash', energy, time) valid in stage t."""
        nodes, H = self.problem.nodes, self.space.horizon
        for mats in self.stage_mats(t, kept, on_flash):
            e, s, last_read = self._stage_cost(mats)
            have = set(kept) | {k for k, _ in mats}
            keepable = sorted(i for i in have if H[i] >= t + 1)
            keeps = list(self.keep_sets(mats, kept, last_read, keepable))
            for po in ((False, True) if self.space.pageable[t] else (False,)):
                flash_now = on_flash | ({t} if po else set())
                if self.flash is not None and po and \
                        sum(self.b[i] for i in flash_now) > self.flash:
                    continue
                e2 = e + (nodes[t].pageout_j if po else 0.0)
                s2 = s + (nodes[t].pageout_s if po else 0.0)
                alive_flash = frozenset(i for i in flash_now if H[i] >= t + 1)
                for keep in keeps:
                    for fl in self._flash_choices(alive_flash):
                        yield mats, po, keep, fl, e2, s2

    def _stage_cost(self, mats) -> tuple[float, float, dict[int, int]]:
        """(energy, time, last_read) of a stage's materialisations; last_read[p] is the position
        of the last compute of the stage that reads p."""
        nodes, preds = self.problem.nodes, self.problem.preds
        last_read: dict[int, int] = {}
        for k, how in mats:
            if how == "compute":
                for p in preds[k]:
                    last_read[p] = k
        e = sum(nodes[k].compute_j if how == "compute" else nodes[k].pagein_j for k, how in mats)
        s = sum(nodes[k].compute_s if how == "compute" else nodes[k].pagein_s for k, how in mats)
        return e, s, last_read

    def _flash_choices(self, alive_flash: frozenset[int]):
        """The flash copies to carry into the next stage: all of them without a binding flash
        budget, else any subset (a copy may be dropped)."""
        if self.flash is None:
            yield alive_flash
            return
        fl = sorted(alive_flash)
        for q in range(len(fl) + 1):
            for fk in itertools.combinations(fl, q):
                yield frozenset(fk)


def _pareto(labels, runtime):
    """Labels no other label beats in both energy and time (only the cheapest if no runtime
    budget matters)."""
    if not labels:
        return ()
    if runtime is None:
        return (min(labels, key=lambda lab: (lab[0], lab[1])),)
    out = []
    best_time = float("inf")
    for lab in sorted(labels, key=lambda lab: (lab[0], lab[1])):
        if lab[1] < best_time - 1e-15:
            out.append(lab)
            best_time = lab[1]
    return tuple(out)
