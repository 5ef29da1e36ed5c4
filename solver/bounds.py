"""Bounds and diagnosis: how good can a schedule be, and how little RAM can it live with.

- `lp_bound(problem)`: the LP relaxation of the staged MILP, in joules. A lower bound on the
  energy of every schedule of the staged space (the space `solve()` searches); not on schedules
  outside it (see `solver.milp` for how the space is restricted).
- `min_feasible_budget(problem)`: the static bytes plus the largest single-compute working set
  (operands, output and workspace), below which no schedule at all exists; with exact=True the
  least RAM budget at which the strategy's MILP space has a schedule, found by bisection.
"""

from __future__ import annotations

import logging

import pulp

from . import backends
from .diagnose import infeasible_message
from .errors import InfeasibleError
from .milp import build_milp
from .problem import Problem
from .reductions import memory_unit
from .simulate import min_feasible_ram, store_all_peak
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
