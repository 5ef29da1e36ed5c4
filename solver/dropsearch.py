"""A primal heuristic of the MILP strategies: which forward tensors to drop before the loss.

On deep training graphs the RAM budget binds at the loss and in the first backward stages,
where every activation the backward will read is resident at once. A schedule of the staged
space there is mostly a choice, per forward tensor read by the backward, of how it gets there:

- "keep": the first compute's copy stays until its last reader (for a tensor only the forward
  reads: it is held as a checkpoint for the recomputes that read it, a dropout's input instead
  of its twice larger output);
- "each": freed after its last forward reader, recomputed in every loss or backward stage that
  reads it (its operands too, recursively, where they are not resident themselves); the
  default of a tensor only the forward reads;
- "once": freed after its last forward reader, recomputed in the first loss or backward stage
  that reads it and kept from there to its last reader;
- "page_each" / "page_once": paged out after the first compute and paged in the same way.

`drop_search` searches these choices: a lazy greedy takes the change (one tensor's mode, or a
tensor dropped with the operands its recompute reads held) with the most RAM overflow removed
per joule until the plan fits; then each drop in turn is taken back and the greedy refits the
plan without it, kept where that is cheaper. Each candidate is a `StagedPlan` priced by
`plan_energy`, and its instructions walked by a byte count that follows
`solver.simulate.Machine`'s (checked against the simulator in tests/test_dropsearch.py); the
plan returned is checked by
the simulator through `plan_to_schedule` by the caller (`solver.starts.run_drop_search`).
"""

from __future__ import annotations

import heapq
import time
from dataclasses import dataclass

from .plans import StagedPlan, emit_instructions, plan_energy
from .problem import Problem

RECOMPUTE_MODES = ("each", "once")
PAGE_MODES = ("page_each", "page_once")


@dataclass
class DropSearch:
    """The search's state for one problem: the forward tensors, the modes each may take, and
    the counters (`evals`: plans walked)."""

    problem: Problem
    remat: bool = True
    paging: bool = True

    def __post_init__(self):
        p = self.problem
        kinds = [n.kind for n in p.nodes]
        self.first_late = L = next((t for t, k in enumerate(kinds) if k != "forward"), p.T)
        self.late_read = [any(c >= L for c in p.succs[i]) for i in range(L)]
        self.allowed: dict[int, tuple[str, ...]] = {}
        for i in range(L):
            if not p.succs[i]:
                continue
            allowed = ("keep",) + (RECOMPUTE_MODES if self.remat else ()) \
                + (PAGE_MODES if self.paging else ())
            if len(allowed) > 1:
                self.allowed[i] = allowed
        self.evals = 0

    def default(self, i: int) -> str:
        """A forward tensor's mode when the choice does not name it: kept if the loss or the
        backward reads it (or nothing may be recomputed), else recomputed where needed."""
        return "keep" if self.late_read[i] or not self.remat else "each"

    def mode(self, modes: dict[int, str], i: int) -> str:
        return modes.get(i) or self.default(i)

    # -- one choice: its plan, energy and RAM overflow -----------------------------------------
    def plan(self, modes: dict[int, str]) -> StagedPlan:
        """The staged plan of a choice of modes (node -> mode; others at their default)."""
        p, L = self.problem, self.first_late
        stages = [((t, "compute"),) for t in range(L)]
        once_done: set[int] = set()
        for t in range(L, p.T):
            mats: dict[int, str] = {}
            stack = list(p.preds[t])
            while stack:                 # what t reads, and what its recomputes read
                i = stack.pop()
                if i >= L or i in mats or i in once_done:
                    continue
                m = self.mode(modes, i)
                if m in RECOMPUTE_MODES:
                    mats[i] = "compute"
                    stack.extend(p.preds[i])
                elif m != "keep":
                    mats[i] = "page_in"
            for i in mats:
                if self.mode(modes, i) in ("once", "page_once"):
                    once_done.add(i)
            stages.append(tuple(sorted(mats.items())) + ((t, "compute"),))
        paged = frozenset(i for i in range(L) if self.mode(modes, i) in PAGE_MODES)
        return StagedPlan(tuple(stages), paged)

    def overflow(self, plan: StagedPlan) -> tuple[int, int]:
        """(sum over instructions of the RAM above the budget, peak RAM) of the plan's
        minimal-residency instructions (`solver.plans.emit_instructions`), counted as
        `solver.simulate.Machine` counts (flash above its budget counts as RAM overflow)."""
        self.evals += 1
        p = self.problem
        nodes, budget, fbudget = p.nodes, p.ram_budget_bytes, p.flash_budget_bytes
        ram = peak = p.static_bytes
        flash = over = 0
        for op, i, _ in emit_instructions(p, plan):
            b = nodes[i].out_bytes
            if op == "free":
                ram -= b
                continue
            if op in ("page_out", "drop_flash"):
                flash += b if op == "page_out" else -b
                if fbudget is not None and flash > fbudget:
                    over += flash - fbudget
                continue
            during = ram + b + (nodes[i].workspace_bytes if op == "compute" else 0)
            ram += b
            peak = max(peak, during)
            if budget is not None and during > budget:
                over += during - budget
        return over, peak

    def score(self, modes: dict[int, str]) -> tuple[float, int]:
        """(energy in joules, overflow) of a choice."""
        plan = self.plan(modes)
        return plan_energy(self.problem, plan), self.overflow(plan)[0]


def drop_search(problem: Problem, *, remat: bool = True, paging: bool = True,
                deadline: float | None = None, max_evals: int = 200_000
                ) -> StagedPlan | None:
    """The cheapest plan of the drop/recompute/page choices (module docstring) found that fits
    the RAM (and flash) budget, or None if none was found before the deadline (a
    `time.perf_counter()` value) or within max_evals plans."""
    ds = DropSearch(problem, remat, paging)
    if not ds.allowed or problem.ram_budget_bytes is None:
        return None

    def out_of_time() -> bool:
        return (deadline is not None and time.perf_counter() > deadline) \
            or ds.evals >= max_evals

    moves = _moves(ds)
    got = _greedy(ds, {}, moves, {}, out_of_time)
    if got is None:
        return None
    modes, energy, ratios = got
    # refit without each drop in turn, dearest first; keep the refit where it is cheaper
    tried: set[int] = set()
    while not out_of_time():
        drops = [i for i in modes if modes[i] != ds.default(i) and modes[i] != "keep"
                 and i not in tried]
        if not drops:
            break
        i = max(drops, key=lambda k: _cost(ds, modes, k))
        tried.add(i)
        base = {**modes, i: "keep"} if ds.late_read[i] else {k: v for k, v in modes.items()
                                                             if k != i}
        refit = _greedy(ds, base, [m for m in moves if all(k != i for k, _ in m)], ratios,
                        out_of_time)
        if refit is not None and refit[1] < energy * (1 - 1e-12):
            modes, energy = refit[0], refit[1]
            tried.clear()
    return ds.plan(modes)


Move = tuple[tuple[int, str], ...]


def _moves(ds: DropSearch) -> list[Move]:
    """Every change of one tensor's mode, and every drop of a tensor to a recompute mode with
    the operands that recompute reads held ("keep")."""
    preds = ds.problem.preds
    out: list[Move] = []
    for i, allowed in ds.allowed.items():
        for m in allowed:
            out.append(((i, m),))
            if m in RECOMPUTE_MODES:
                held = tuple((q, "keep") for q in preds[i]
                             if q in ds.allowed and ds.default(q) != "keep")
                if held:
                    out.append(((i, m),) + held)
    return out


def _greedy(ds: DropSearch, modes: dict[int, str], moves: list[Move],
            ratios: dict[Move, float], out_of_time
            ) -> tuple[dict[int, str], float, dict[Move, float]] | None:
    """From `modes`, take the move with the most overflow removed per joule added until the plan
    fits (lazy: a move's last ratio, from `ratios` or this run, is an upper bound re-evaluated
    when it comes to the top); (modes, energy, ratios) or None if it cannot fit."""
    energy, over = ds.score(modes)
    ratios = dict(ratios)
    heap = [(-ratios.get(mv, float("inf")), n, mv) for n, mv in enumerate(moves)]
    heapq.heapify(heap)
    while over > 0:
        if not heap or out_of_time():
            return None
        _, n, mv = heapq.heappop(heap)
        trial = {**modes, **dict(mv)}
        if all(ds.mode(modes, k) == m for k, m in mv):
            continue
        e1, o1 = ds.score(trial)
        gain = over - o1
        if gain <= 0:
            ratios[mv] = 0.0
            continue
        ratio = gain / max(e1 - energy, 1e-30)
        ratios[mv] = ratio
        if heap and -heap[0][0] > ratio * (1 + 1e-12):
            heapq.heappush(heap, (-ratio, n, mv))
            continue
        modes, energy, over = trial, e1, o1
    return modes, energy, ratios


def _cost(ds: DropSearch, modes: dict[int, str], i: int) -> float:
    """What node i's drop costs by itself: the energy of one recompute or page-in of it."""
    n = ds.problem.nodes[i]
    return n.compute_j if modes[i] in RECOMPUTE_MODES else n.pagein_j
