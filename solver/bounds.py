"""Bounds and diagnosis: how good can a schedule be, and how little RAM can it live with.

- `lp_bound(problem)`: the LP relaxation of the staged MILP, in joules. A lower bound on the
  energy of every schedule of the staged space (the space `solve()` searches); not on schedules
  outside it (see `solver.milp` for how the space is restricted).
- `cover_bound(problem)`: the segment-cover bound, a lower bound on the same space from a
  covering problem with one binary column per gap between two reads of a tensor and one row per
  stage: far smaller than the MILP (641 columns where ResNet-18 with 14 blocks per stage at op
  level, T = 1,045, has a 437,877-column MILP whose LP does not finish in 10 minutes) and close
  to the optimum where recomputes are single cheap ops (MobileNetV2 at op level on an nRF52840:
  within 1e-5 of it at 25% and 50% of the budget range). It knows nothing of what a recompute's
  operands cost, so it is weak on transformers (2-block BERT at 50%: +0.50% over store-all where
  the optimum is +3.41%), where the LP is the stronger bound.
- `min_feasible_budget(problem)`: the static bytes plus the largest single-compute working set
  (operands, output and workspace), below which no schedule at all exists; with exact=True the
  least RAM budget at which the strategy's MILP space has a schedule, found by bisection.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import pulp

from . import backends
from .diagnose import infeasible_message
from .errors import DeadlineReached, InfeasibleError
from .milp import build_milp
from .problem import Problem
from .reductions import memory_unit, objective_scale
from .simulate import min_feasible_ram, store_all_peak
from .staged import StagedSpace, staged_space
from .strategies import MILP_STRATEGIES, REGISTRY

log = logging.getLogger(__name__)


def _flags(strategy: str) -> tuple[bool, bool]:
    """(remat, paging) of a MILP strategy; ValueError naming the MILP strategies otherwise."""
    if strategy not in MILP_STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(MILP_STRATEGIES)}, got {strategy!r}")
    spec = REGISTRY[strategy]
    return spec.remat, spec.paging


def lp_bound(problem: Problem, strategy: str = "poet", backend: str = "auto",
             time_limit_s: float = 300) -> float:
    """The LP relaxation value of the staged MILP, in joules (>= the store-all energy).

    Without a RAM budget, or when store-all fits it, this is the store-all energy. Raises
    InfeasibleError when even the relaxation has no solution (the budget is below what any
    schedule needs), RuntimeError when the LP solver stops without an answer.
    """
    remat, paging = _flags(strategy)
    e0 = problem.store_all_energy_j
    budget = problem.ram_budget_bytes
    if budget is None or store_all_peak(problem) <= budget:
        return e0
    if budget < min_feasible_ram(problem):
        raise InfeasibleError(infeasible_message(
            problem, strategy, f"ram_budget_bytes {budget} is below the minimum"))
    model = build_milp(problem, remat=remat, paging=paging, relax=True)
    res = backends.run(model.prob, backend, time_limit_s=time_limit_s, relax=True)
    if res.status == "infeasible":
        raise InfeasibleError(infeasible_message(
            problem, strategy, "even the LP relaxation of its MILP has no solution"))
    if res.status != "optimal" or res.objective is None:
        raise RuntimeError(f"the LP relaxation did not solve ({res.backend}: {res.message})")
    return model.to_energy_j(max(0.0, res.objective))


@dataclass(frozen=True)
class Gap:
    """Node `node` must be resident at the computes of stages `after` and `before` (its first
    compute or a stage that reads it, and the next stage that reads it) and at none strictly
    between; `stages`: those stages, `cost_j`: the least a copy made in stages after+1..before
    costs (a recompute or a page-in there; None if the space allows neither)."""

    node: int
    after: int
    before: int
    stages: range
    cost_j: float | None


def gaps_of(space: StagedSpace, deadline: float | None = None) -> list[Gap]:
    """Every gap of every node with a non-empty output, in node order. deadline: a
    `time.perf_counter()` value after which it raises DeadlineReached."""
    problem = space.problem
    out = []
    for i, n in enumerate(problem.nodes):
        check_deadline(deadline, "listing the gaps", i, problem.T, "nodes")
        if n.out_bytes <= 0:
            continue
        prev = i
        for u in sorted(set(problem.succs[i])):
            if u - prev > 1:
                costs = [c for t in range(prev + 1, u + 1)
                         for c, ok in ((n.compute_j, space.can_recompute(t, i)),
                                       (n.pagein_j, space.can_page_in(t, i))) if ok]
                out.append(Gap(i, prev, u, range(prev + 1, u), min(costs) if costs else None))
            prev = u
    return out


def add_cover_rows(prob: pulp.LpProblem, problem: Problem, gaps: list[Gap],
                   x: list[pulp.LpVariable | None], deadline: float | None, what: str,
                   extra: dict[int, int] | None = None) -> int | None:
    """Add to `prob` the covering row of every stage t where the gaps spanning it cannot all be
    kept, in memory units: sum b_g x_g >= (sum of every spanning gap's b_g) - cap_t over the
    spanning gaps with a column (x[k] None: always kept), cap_t being the RAM budget above the
    static bytes less t's output, workspace and operands and extra[t] bytes. Returns how many
    rows it added, None when one cannot be met even with every column at 1."""
    nodes, preds, T = problem.nodes, problem.preds, problem.T
    unit = memory_unit(problem)
    free = (problem.ram_budget_bytes - problem.static_bytes) // unit
    extra = extra or {}
    spans: list[list[int]] = [[] for _ in range(T)]
    for k, g in enumerate(gaps):
        check_deadline(deadline, what, k, len(gaps), "gaps")
        for t in g.stages:
            spans[t].append(k)
    n_rows = 0
    for t in range(T):
        check_deadline(deadline, what, t, T, "stages")
        cap = free - -(-extra.get(t, 0) // unit) - (
            nodes[t].out_bytes + nodes[t].workspace_bytes
            + sum(nodes[i].out_bytes for i in set(preds[t]))) // unit
        held = sum(nodes[gaps[k].node].out_bytes // unit for k in spans[t])
        if held <= cap:
            continue
        drop = [(x[k], nodes[gaps[k].node].out_bytes // unit) for k in spans[t]
                if x[k] is not None]
        if sum(b for _, b in drop) < held - cap:
            return None
        prob += pulp.LpAffineExpression(drop) >= held - cap, f"stage_{t}"
        n_rows += 1
    return n_rows


def check_deadline(deadline: float | None, what: str, done: int, total: int | None,
                   unit: str) -> None:
    """DeadlineReached (`what`, `done` of `total` `unit`) once the perf_counter deadline, if
    there is one, has passed."""
    if deadline is not None and time.perf_counter() > deadline:
        raise DeadlineReached(what, done, total, unit)


def cover_bound(problem: Problem, strategy: str = "poet", backend: str = "auto",
                time_limit_s: float = 30, threads: int | None = None,
                space: StagedSpace | None = None) -> float:
    """The segment-cover bound in joules: no plan of the strategy's staged space (in the
    problem's order of first computes) spends less; math.inf when it proves that none fits.

    For every stage t, what is resident at t's compute (t's output and workspace, its operands,
    and every node kept from an earlier read to a later one) fits the RAM budget above the
    static bytes. A gap (`gaps_of`) whose node is absent at the compute of some stage inside it
    forces a copy of the node in a later stage of the gap, which costs at least the gap's
    cost_j, and the copies of different gaps are different copies. So with x_g = 1 when gap g's
    node is absent somewhere inside it, every plan gives an x of the covering problem

        min sum_g cost_g x_g   s.t.   sum_{g spans t} b_g (1 - x_g) <= B - b_t - w_t
                                      - sum_{operands i of t} b_i   for every stage t

    (x_g = 0 where cost_g is None) at no more than the plan's energy above store-all (it leaves
    out the page-outs, the operands of each recompute and the runtime and flash budgets). The
    solver's proven lower bound on it, less a hair for its tolerances, is the bound. Without a
    RAM budget, or when store-all fits it, this is the store-all energy. time_limit_s bounds the
    whole call, building included (the covering MILP's bound so far is used when it stops early;
    the store-all energy when the time runs out before it is built); the space may be passed
    when the caller has built it (the strategy's, with the default options).
    """
    deadline = time.perf_counter() + time_limit_s
    remat, paging = _flags(strategy)
    e0 = problem.store_all_energy_j
    budget = problem.ram_budget_bytes
    if budget is None or store_all_peak(problem) <= budget:
        return e0
    try:
        return _cover_bound(problem, remat, paging, backend, deadline, threads, space)
    except DeadlineReached as e:
        log.info("cover bound: %s; the store-all energy is the bound", e)
        return e0


def _cover_bound(problem: Problem, remat: bool, paging: bool, backend: str, deadline: float,
                 threads: int | None, space: StagedSpace | None) -> float:
    e0 = problem.store_all_energy_j
    if space is None:
        space = staged_space(problem, remat=remat, paging=paging, deadline=deadline)
    scale = objective_scale(problem) / e0 if e0 > 0 else 1.0
    prob = pulp.LpProblem("cover", pulp.LpMinimize)
    gaps = gaps_of(space, deadline)
    x = [None if g.cost_j is None else prob.add_variable(f"x_{k}", 0, 1, cat=pulp.LpBinary)
         for k, g in enumerate(gaps)]
    prob.setObjective(pulp.LpAffineExpression(
        [(v, g.cost_j * scale) for v, g in zip(x, gaps) if v is not None and g.cost_j > 0]))
    n_rows = add_cover_rows(prob, problem, gaps, x, deadline, "building the covering problem")
    if n_rows is None:
        return math.inf                   # not even dropping every gap makes room
    if not n_rows:
        return e0
    left = deadline - time.perf_counter()
    check_deadline(deadline, "building the covering problem", problem.T, problem.T, "stages")
    res = backends.run(prob, backend, time_limit_s=left, threads=threads, gap_rel=1e-6)
    if res.status == "infeasible":
        return math.inf
    value = res.bound if res.bound is not None else (
        res.objective if res.status == "optimal" else None)
    if value is None or not math.isfinite(value):
        return e0
    return e0 + max(0.0, value - 1e-7 * (1.0 + abs(value))) / scale


def _feasible(problem: Problem, budget: int, remat: bool, paging: bool, backend: str,
              time_limit_s: float) -> bool | None:
    """True / False if the staged MILP at this budget has a schedule or provably none; None if
    the solver ran out of time without deciding."""
    model = build_milp(problem.with_budgets(ram_budget_bytes=budget), remat=remat, paging=paging)
    model.prob.setObjective(pulp.LpAffineExpression())   # any schedule will do
    res = backends.run(model.prob, backend, time_limit_s=time_limit_s, gap_rel=0.0)
    if res.has_solution:
        return True
    if res.status == "infeasible":
        return False
    return None


def min_feasible_budget(problem: Problem, exact: bool = False, strategy: str = "poet",
                        backend: str = "auto", time_limit_s: float = 60) -> int:
    """The least RAM budget (bytes, static bytes included) that a schedule can live with.

    exact=False: `solver.min_feasible_ram` (static + the largest single compute's operands,
    output and workspace), a lower bound for every strategy, reached by "poet" and "paging"
    when flash is unlimited. exact=True: the least budget at which the strategy's MILP space
    (same runtime and flash budgets as `problem`) has a schedule, by bisection over whole
    memory units; each probe may take up to time_limit_s, and a probe that times out counts as
    infeasible, so the answer is always a budget proven to work (logged when it may not be the
    least). Raises InfeasibleError if not even the store-all peak works (a runtime or flash
    budget that cannot be met).
    """
    remat, paging = _flags(strategy)
    lo = min_feasible_ram(problem)
    if not exact:
        return lo
    hi = store_all_peak(problem)
    if hi <= lo:
        return hi
    unit = memory_unit(problem)
    base = problem.static_bytes
    # RAM in use is static + whole units, so only budgets base + k * unit matter
    k_lo = -(-(lo - base) // unit)          # ceil: below this nothing fits
    k_hi = (hi - base) // unit              # store-all fits here
    if (problem.runtime_budget_s is not None or problem.flash_budget_bytes is not None) \
            and not _feasible(problem, base + k_hi * unit, remat, paging, backend,
                              time_limit_s):
        raise InfeasibleError(infeasible_message(
            problem, strategy, "its runtime or flash budget cannot be met at any RAM budget"))
    if _feasible(problem, base + k_lo * unit, remat, paging, backend, time_limit_s):
        return base + k_lo * unit
    unsure = False
    lo_k, hi_k = k_lo, k_hi                          # lo_k infeasible, hi_k feasible
    while hi_k - lo_k > 1:
        mid = (lo_k + hi_k) // 2
        ok = _feasible(problem, base + mid * unit, remat, paging, backend, time_limit_s)
        if ok is None:
            unsure = True
        if ok:
            hi_k = mid
        else:
            lo_k = mid
    if unsure:
        log.warning("min_feasible_budget: some probes timed out after %.0f s; %d bytes is "
                    "feasible but may not be the least", time_limit_s,
                    base + hi_k * unit)
    return base + hi_k * unit
