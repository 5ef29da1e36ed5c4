"""`solve()`: one entry point for every strategy, MILP or heuristic.

    result = solver.solve(problem, strategy="poet", backend="auto", time_limit_s=300)
    result.status, result.objective_j, result.gap, result.schedule

MILP strategies ("poet" = recompute + page, "remat" = recompute only (Checkmate), "paging" =
page only) run their heuristics first; if the best is within the gap of the store-all energy
(which bounds every schedule: each node is computed at least once), the call ends there. Then
(phase 0, skipped with neighbourhood=False) the segment-cover bound of `solver.bounds.cover_bound`,
a small covering MILP per order of first computes that bounds every schedule of the staged space,
and the schedule of `solver.coverplan` read off a chain-aware version of it: if the best schedule
is within the gap of the bound, the call ends there too, with no MILP built (op-level MobileNetV2
at 50% of its budget range on an nRF52840: within 1.4e-4).
Else they build the staged MILP of `solver.milp` and solve it in three phases:
1. the LP relaxation, whose value bounds every schedule of the MILP's space (if the best
   heuristic schedule is already within the gap of it, the call ends here);
2. the LP neighbourhood: the MILP with every recompute, page-in and page-out fixed at 0 that is 0
   in the LP solution and in the start, a small problem that yields good schedules fast;
3. the full MILP, started from the best schedule so far (a MIP start where it lies in the staged
   space, and an objective cutoff at its energy).
The result is the best of the MILP's incumbent, the neighbourhood's and the heuristics', so it is
never worse than a baseline of the same strategy. Heuristic strategies ("store_all", "sqrtn", "dtr",
"greedy_paging") run the heuristic alone. `solve` reads as its phases: `solver.call.check_args`
(the `Call`: options, clock, result), `_solve_heuristic` / `_without_solver` (no MILP needed),
`_heuristics` (fallbacks and starts), `_cover_phase`, `_prepare_milp`, `_lp_phase`,
`_neighbourhood_phase`, `_full_milp`, `_pick_best`; the LP runs and the decoding of a solution are
`solver.phases`'.

Contract for every schedule returned: `solver.simulate` accepts it under the problem's budgets,
and `objective_j` is the simulator's energy. For a MILP schedule, the simulator's energy also
equals the MILP's objective at the solution (relative 1e-6); a disagreement raises RuntimeError,
since it would mean the model and the simulator read the rules differently.

Infeasible budgets raise `solver.InfeasibleError` (there is no "infeasible" result): its message
states the minimum feasible RAM and the store-all peak. A time limit that ends the MILP without
any schedule (and no baseline fits) returns status "timeout-without-solution".

Orders of first computes: the staged space computes each node for the first time in id order, so
the order the extractor emitted restricts every solve (a fork's branches in the other order can
need less RAM or energy). Unless reorder=False, `solve` tries the candidate orders of
`solver.reductions.candidate_orders` (the given one first) where the given order's MILP is small
(`solver.orders.MAX_ORDER_COLUMNS`): it builds every order's MILP and solves its LP relaxation
first, then runs every order's LP neighbourhood, then the full MILPs in passes over the orders
whose bound is not yet within the gap of the best schedule (the order with the cheapest schedule of
its own first, each cut off at the best schedule less the gap, time one order does not use going to
the others), and stops once the union's gap is met; the result is never worse than the given
order's. The schedule is mapped back to the original ids (`Reorder.invert`) and simulated on the
original problem; the bound is the least of the orders' bounds (a bound on the union of their
spaces), and `orders` lists what each order's solve reached. A store-all schedule that fits in any
candidate order is optimal at once.

Statuses: "optimal" whenever the reported gap (to total energy) is within the requested gap,
whichever part of the run closed it.

The time limit covers the whole call: one deadline is set when the call starts; the heuristics
and the MILP's builder look at the clock as they go, and every backend run gets the time left.
When the deadline passes before the MILP is built (or before the full MILP can start), the best
heuristic schedule comes back as "feasible", with `milp_status` "not-built" (or "not-run") and a
`message` saying where the time ran out ("time limit reached while building the MILP (N of M
rows)"). Before building, the MILP's size is counted and its memory estimated
(`solver.limits`); a MILP that would not fit in the memory available is not built: the best
heuristic schedule comes back with `milp_status` "too-large" and the estimate in `message`, or,
with no heuristic schedule, `solver.errors.TooLargeError` says the same in one line.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from . import backends
from .bounds import cover_bound
from .call import Call, check_args
from .coverplan import cover_plan
from . import limits
from .errors import DeadlineReached, InfeasibleError, TooLargeError
from .milp import MilpModel, build_milp, milp_size
from .phases import NeighbourhoodResult, OverBudget, decode, lp_neighbourhood, lp_relaxation
from .plans import StagedPlan, plan_energy
from .problem import Problem
from .reductions import Reorder, candidate_orders
from .result import SolveResult, gaps, within_gap
from .schedule import Schedule
from .simulate import SimReport, min_feasible_ram, simulate
from .staged import staged_space
from .starts import Found, best_start, run_baseline, run_heuristics
from .strategies import fallbacks

log = logging.getLogger(__name__)

COVER_LIMIT_S = 10.0      # the most phase 0's covering MILP of one order may take
COVER_PLAN_LIMIT_S = 30.0   # the most phase 0's segment-cover heuristic may take


def solve(problem: Problem, strategy: str = "poet", backend: str = "auto",
          time_limit_s: float = 300, threads: int | None = None, gap: float = 1e-4,
          warm_start: bool = True, verbose: bool = False,
          progress: Callable[[str], None] | None = None,
          starts: Sequence[Schedule] = (), neighbourhood: bool = True,
          reorder: bool = True) -> SolveResult:
    """Find a least-energy schedule of `strategy` for `problem` within its budgets.

    backend: "auto" (HiGHS where installed, else CBC), "cbc", "highs" or "gurobi" (MILP
    strategies only). time_limit_s bounds the whole call (heuristics, model building and the
    solver); threads is passed to the solver (None: its default); gap is the relative gap to total
    energy at which the solver may stop. warm_start=False gives the solver neither a start nor a
    cutoff (the heuristics are still run, and still returned if they beat the MILP). verbose
    streams the solver's log to stdout; progress(str) receives one line per phase and incumbent.
    starts: more schedules of this problem (for instance the remat-only and paging-only optima
    at the same budget) used like the baselines: as MILP start and cutoff, and returned when
    nothing better is found, so the result is never worse than any of them. A start that breaks
    a rule or a budget of the problem, or lies outside the strategy's space (a recompute when
    remat is off, a page-out when paging is off), is a ValueError. neighbourhood=False skips
    phase 0 (the segment-cover bound) and phases 1 and 2 (the LP relaxation and the
    LP-neighbourhood search; see the module docstring) and goes straight to the full MILP.
    reorder=False solves in the given order of first computes only (see "Orders of first
    computes" in the module docstring).

    Raises InfeasibleError (message: minimum feasible RAM and store-all peak) when no schedule of
    the strategy fits, ValueError for bad arguments, RuntimeError if the MILP's objective and the
    simulator disagree.
    """
    call = check_args(problem, strategy, backend, time_limit_s, threads, gap, warm_start,
                      verbose, progress)
    if call.spec.kind == "heuristic":
        return _solve_heuristic(call)
    trivial = _without_solver(call)
    if trivial is not None:
        return trivial
    found = _heuristics(call, starts)
    e0 = problem.store_all_energy_j          # every schedule spends at least store-all's
    if found and within_gap(gaps(min(r.energy_j for _, r in found.values()), e0, e0)[0], call.gap):
        return _without_milp(call, found, "not-run", "within the gap of the store-all energy, "
                             "which no schedule spends less than")
    orders = candidate_orders(problem) if reorder else [tuple(range(problem.T))]
    if neighbourhood and found and call.stopped is None:
        proven = _cover_phase(call, found, orders)
        if proven is not None:
            return proven
    if len(orders) == 1:
        return _solve_in_order(call, found, neighbourhood)
    from .orders import solve_orders   # the orders' driver builds on this module's phases
    return solve_orders(call, found, neighbourhood, orders)


def _solve_in_order(call: Call, found: Found, neighbourhood: bool) -> SolveResult:
    """Phases 1-3 on call.problem in its own order of first computes."""
    try:
        search = _prepare_milp(call, found)
    except _NoMilp as e:
        return _without_milp(call, found, e.milp_status, str(e))
    if neighbourhood:
        _lp_phase(call, search)
    return _after_lp(call, search, neighbourhood)


def _after_lp(call: Call, search: _Search, neighbourhood: bool) -> SolveResult:
    """Phases 2 and 3 of a search whose LP phase (if any) has run."""
    if neighbourhood:
        _neighbourhood_phase(call, search)
    search.setup_s = call.elapsed()
    if search.reached(search.best_j):     # within the gap of the LP bound: no branching needed
        name, (sched, rep) = search.best_found()
        search.common.update(milp_status="optimal", message="within the gap of the LP relaxation")
        return call.result("optimal", sched, rep, bound_j=search.lp_j, source=name,
                           **search.summary())
    run = _full_milp(call, search)
    return _pick_best(call, search, run)


# ---------------------------------------------------------------------------------------------
# The cases that need no MILP
# ---------------------------------------------------------------------------------------------
def _below_minimum(call: Call) -> InfeasibleError | None:
    """The error for a RAM budget below what any single compute needs, or None."""
    budget = call.problem.ram_budget_bytes
    if budget is not None and budget < min_feasible_ram(call.problem):
        return call.infeasible(f"ram_budget_bytes {budget} is below the minimum")
    return None


def _solve_heuristic(call: Call) -> SolveResult:
    """A heuristic strategy: its schedule alone ("optimal" for store-all, else "feasible")."""
    err = _below_minimum(call)
    if err is not None:
        raise err
    try:
        sched = call.spec.function(call.problem) if call.strategy == "store_all" \
            else call.spec.function(call.problem, deadline=call.deadline)
    except InfeasibleError as e:
        raise call.infeasible(str(e)) from None
    except DeadlineReached as e:
        return call.result("timeout-without-solution", None, None, source=call.strategy,
                           message=f"time limit reached while running the heuristic "
                                   f"{call.strategy} ({e.done} instructions)")
    rep = simulate(call.problem, sched)
    if call.strategy == "store_all":   # store-all spends the least energy any schedule can
        return call.result("optimal", sched, rep, bound_j=rep.energy_j, source=call.strategy)
    return call.result("feasible", sched, rep, source=call.strategy)


def _without_solver(call: Call) -> SolveResult | None:
    """A MILP strategy where no solver is needed: store-all fits (optimal), or no schedule can
    fit (InfeasibleError: a runtime budget below the store-all time, a RAM budget below the
    minimum); None when the MILP must run."""
    problem = call.problem
    sa_time = problem.store_all_time_s
    if problem.runtime_budget_s is not None and problem.runtime_budget_s < sa_time * (1 - 1e-12):
        raise call.infeasible(
            f"runtime_budget_s {problem.runtime_budget_s:.6g} s is below the store-all time "
            f"{sa_time:.6g} s (every node must be computed once), so no schedule fits it at any "
            f"RAM budget")
    sa = run_baseline(problem, "store_all")
    if sa is not None:   # store-all fits: nothing spends less energy or time
        return call.result("optimal", sa[0], sa[1], bound_j=sa[1].energy_j, source="store_all",
                           baselines_j={"store_all": sa[1].energy_j})
    err = _below_minimum(call)
    if err is not None:
        raise err
    return None


# ---------------------------------------------------------------------------------------------
# Heuristics: fallbacks, starts and cutoffs
# ---------------------------------------------------------------------------------------------
def _heuristics(call: Call, starts: Sequence[Schedule]) -> Found:
    """Every fallback heuristic of the strategy that fits (store-all has been tried), and the
    caller's starts (ValueError for one that cannot serve), by name."""
    names = fallbacks(call.strategy)[1:]
    call.say(f"{call.strategy}: running baselines {', '.join(names)}")
    t0 = time.perf_counter()
    try:
        found, call.stopped = run_heuristics(call.problem, call.spec, names, starts,
                                             call.time_limit_s, call.deadline)
        return found
    finally:
        call.heuristics_s = time.perf_counter() - t0
        call.heuristics_end_s = call.elapsed()


# ---------------------------------------------------------------------------------------------
# The MILP phases: LP relaxation, LP neighbourhood, full MILP
# ---------------------------------------------------------------------------------------------
@dataclass
class _Search:
    """What the MILP phases share: the model, the schedules found so far (heuristics, then the
    neighbourhood's), the MIP start and cutoff, the LP bound, and the trajectory of (seconds,
    best schedule's joules, best bound's joules)."""

    model: MilpModel
    backend: str
    gap: float
    found: Found
    baselines_j: dict[str, float]
    handover_s: float = 0.0       # what a backend run takes beyond its time limit (limits)
    build_s: float = 0.0          # seconds build_milp took
    start: StagedPlan | None = None
    cutoff: float | None = None
    best_j: float | None = None
    lp_units: float | None = None
    lp_values: dict[str, float] | None = None
    phase: NeighbourhoodResult | None = None
    trajectory: list[tuple[float, float | None, float | None]] = field(default_factory=list)
    setup_s: float = 0.0
    common: dict = field(default_factory=dict)

    @property
    def lp_j(self) -> float | None:
        """The LP bound in joules (None before or without the LP)."""
        return self.joules(self.lp_units)

    def joules(self, v: float | None) -> float | None:
        """An objective value or bound of the model in joules (None if unknown or infinite)."""
        return None if v is None or not math.isfinite(v) else self.model.to_energy_j(v)

    def cutoff_for(self, energy_j: float) -> float:
        """The objective cutoff for a known schedule of energy_j joules, a hair above it."""
        sc = self.model.scaling
        c = sc.to_overhead(energy_j)
        return c + 1e-7 * (sc.objective_per_store_all + abs(c))   # keeps an equal start feasible

    def reached(self, energy_j: float | None) -> bool:
        """Whether a schedule of energy_j joules is within the gap of the LP bound."""
        lp_j = self.lp_j
        if energy_j is None or lp_j is None:
            return False
        return energy_j - lp_j <= self.gap * energy_j

    def best_found(self) -> tuple[str, tuple[Schedule, SimReport]] | None:
        """The cheapest schedule found so far, by name; None if there is none."""
        return min(self.found.items(), key=lambda kv: kv[1][1].energy_j) if self.found else None

    def summary(self) -> dict:
        """The SolveResult fields every MILP result carries."""
        return {"n_variables": self.model.n_variables,
                "n_constraints": self.model.n_constraints, "backend": self.backend,
                "baselines_j": self.baselines_j, "setup_s": self.setup_s,
                "build_s": self.build_s,
                "trajectory": self.trajectory, **self.common}


class _NoMilp(Exception):
    """Internal: the MILP is not built (the deadline, or too large); milp_status says which."""

    def __init__(self, milp_status: str, message: str):
        super().__init__(message)
        self.milp_status = milp_status


def _prepare_milp(call: Call, found: Found) -> _Search:
    """Build the strategy's MILP; with warm_start, the cutoff at the best heuristic and the MIP
    start (the cheapest heuristic with an image in the model). Raises _NoMilp when the deadline
    passed (during the heuristics or the building) or the MILP would not fit in memory, and
    TooLargeError for the latter when no heuristic schedule fits either."""
    if call.stopped is not None:
        raise _NoMilp("not-built", call.stopped + "; the MILP was not built")
    backend_name = backends.resolve_backend(call.backend)
    spec = call.spec
    problem = call.problem
    try:
        if call.left() <= 0:
            raise DeadlineReached("running the heuristics", len(found), len(found), "schedules")
        space = staged_space(problem, remat=spec.remat, paging=spec.paging,
                             deadline=call.deadline)
        size = milp_size(space, runtime=problem.runtime_budget_s is not None,
                         deadline=call.deadline)
    except DeadlineReached as e:
        raise _NoMilp("not-built", f"{e}; the MILP was not built") from None
    estimate = limits.estimate_bytes(size, backend_name)
    why = limits.too_large(estimate, limits.available_bytes())
    if why is not None:
        if not found:
            raise TooLargeError(f"{why}, and no heuristic schedule fits the budgets")
        raise _NoMilp("too-large", why + "; the best heuristic schedule is returned")
    t_build = time.perf_counter()
    try:
        model = build_milp(problem, remat=spec.remat, paging=spec.paging, space=space,
                           deadline=call.deadline)
    except DeadlineReached as e:
        e = DeadlineReached(e.what, e.done, size.rows, e.unit)
        raise _NoMilp("not-built", str(e)) from None
    binary_keep = 0 if model.relaxed else sum(v.cat == "Integer" for v in set(model.S.values()))
    call.say(f"{call.strategy}: MILP with {model.n_variables} variables ({model.n_integer} "
             f"integer decisions, {binary_keep} binary keep columns), {model.n_constraints} "
             f"constraints")
    search = _Search(model, backend_name, call.gap, found,
                     {k: v[1].energy_j for k, v in found.items()},
                     handover_s=limits.handover_s(size, backend_name),
                     build_s=time.perf_counter() - t_build)
    best = search.best_found()
    if call.warm_start and best is not None:
        search.cutoff = search.cutoff_for(best[1][1].energy_j)
        search.start = best_start(call.problem, model, found)
    search.best_j = best[1][1].energy_j if best is not None else None
    return search


def _lp_phase(call: Call, search: _Search) -> None:
    """Phase 1: the LP relaxation, in a tenth of the time left (at least 1 s; where the LP is
    slow the full MILP gets the time). Its value bounds the whole run; its non-zero columns are
    the neighbourhood's."""
    left = call.left() - search.handover_s
    if left <= 0.1:
        return
    search.lp_units, search.lp_values = lp_relaxation(
        search.model, search.backend, max(0.1 * left, min(1.0, left)), call.threads)
    if search.lp_units is not None:
        search.trajectory.append((call.elapsed(), search.best_j, search.lp_j))
        call.say(f"{call.strategy}: LP bound {search.lp_j:.6g} J")


def _neighbourhood_phase(call: Call, search: _Search) -> None:
    """Phase 2: the LP neighbourhood, in a quarter of the time left, unless the LP did not solve
    or the best schedule is already within the gap of its bound. A better schedule joins
    `found` and becomes the start and cutoff."""
    if search.lp_values is None or search.reached(search.best_j):
        return
    # a cutoff below the start's energy makes the solver drop the start, and the search around
    # it finds less (ResNet-18 at 25%, the second order: +0.215% over store-all with the cutoff
    # at the best heuristic, +0.207% without it, from the same start of +9.3%)
    cutoff = search.cutoff
    if search.start is not None and search.best_j is not None \
            and plan_energy(call.problem, search.start) > search.best_j * (1 + 1e-9):
        cutoff = None
    phase = search.phase = lp_neighbourhood(
        call.problem, search.model, call.strategy, search.backend, search.lp_values,
        search.start, search.lp_units, time_s=0.25 * (call.left() - search.handover_s),
        threads=call.threads, gap=call.gap, cutoff=cutoff, verbose=call.verbose)
    lp_j = search.lp_j
    for s, o, _ in phase.trajectory:
        search.trajectory.append((phase.t0 - call.t_start + s, search.joules(o), lp_j))
    if phase.schedule is not None and (search.best_j is None
                                       or phase.report.energy_j < search.best_j):
        search.found["lp_neighbourhood"] = (phase.schedule, phase.report)
        search.best_j = phase.report.energy_j
        if call.warm_start:
            search.start, search.cutoff = phase.plan, search.cutoff_for(search.best_j)
        call.say(f"{call.strategy}: LP neighbourhood found {search.best_j:.6g} J")


def _full_milp(call: Call, search: _Search) -> backends.BackendResult:
    """Phase 3: the full MILP in the time left (at least 1 s), from the start and under the
    cutoff; its trajectory joins the search's (bounds never below the LP's)."""
    remaining = call.left() - search.handover_s
    if remaining <= 0:
        run = backends.BackendResult(
            search.backend, "no-solution",
            message=f"time limit reached before the full MILP ({max(call.left(), 0):.1f} s "
                    f"left; {search.backend} needs about {search.handover_s:.1f} s to take "
                    f"the model)")
        search.common.update(milp_status="not-run", message=run.message)
        return run
    call.say(f"{call.strategy}: solving with {search.backend} (time limit "
             f"{remaining:.1f} s)")
    if search.start is not None:   # the LP and the neighbourhood left their values on the columns
        search.model.set_start(search.start)
    run_t0 = time.perf_counter()
    e0_units = search.model.scaling.objective_per_store_all
    run = backends.run(search.model.prob, search.backend,
                       time_limit_s=max(call.left() - search.handover_s, 1e-3),
                       threads=call.threads, gap_rel=call.gap, gap_abs=call.gap * e0_units,
                       start=search.start is not None, cutoff=search.cutoff,
                       verbose=call.verbose, progress=call.progress)
    lp_j = search.lp_j
    search.trajectory += [(run_t0 - call.t_start + s, search.joules(o),
                           _max_bound(search.joules(b), lp_j)) for s, o, b in run.trajectory]
    search.common.update(milp_status=run.status, message=run.message)
    return run


# ---------------------------------------------------------------------------------------------
# Picking the result
# ---------------------------------------------------------------------------------------------
def _max_bound(a: float | None, b: float | None) -> float | None:
    """The larger of two lower bounds, either of which may be unknown."""
    if a is None:
        return b
    return a if b is None else max(a, b)


def _milp_schedule(call: Call, search: _Search, run) -> tuple[Schedule, SimReport] | None:
    """The MILP's incumbent as a checked schedule (None without one, or when it overshoots a
    budget by a rounding margin); records milp_objective_j (the neighbourhood's without one)."""
    if run.has_solution:
        try:
            sched, rep = decode(call.problem, search.model, call.strategy, search.backend)
        except OverBudget as e:    # a solver tolerance let a rounded solution overshoot
            log.warning("%s; the MILP's schedule is not used", e)
            search.common["message"] = str(e)
            return None
        search.common["milp_objective_j"] = rep.energy_j
        return sched, rep
    if search.phase is not None and search.phase.schedule is not None:
        search.common["milp_objective_j"] = search.phase.report.energy_j
    return None


def _safe_bound(call: Call, search: _Search, run, bound_j: float | None,
                milp_rep: SimReport | None) -> float | None:
    """A safety net for solver bugs (HiGHS has ended MIPs early with a wrong dual bound): a bound
    above a schedule known to lie in the MILP's space is no bound. Returns the bound to report
    (the LP's, or None, in place of a bad one; run.status "optimal" then becomes "feasible")."""
    known = [milp_rep.energy_j] if milp_rep is not None else []
    if search.start is not None:
        known.append(plan_energy(call.problem, search.start))
    if bound_j is None or not known or bound_j <= min(known) * (1 + 1e-7) + 1e-12:
        return bound_j
    log.warning("%s reported a bound of %.9g J above a known schedule of its space "
                "(%.9g J); the bound is discarded", search.backend, bound_j, min(known))
    search.common["message"] = (search.common["message"] + "; bound discarded").lstrip("; ")
    lp_j = search.lp_j
    run.status = "feasible" if run.status == "optimal" else run.status
    return lp_j if lp_j is not None and lp_j <= min(known) * (1 + 1e-7) + 1e-12 else None


def _cover_phase(call: Call, found: Found, orders: list[tuple[int, ...]]) -> SolveResult | None:
    """Phase 0: the segment-cover bound (`bounds.cover_bound`) of every order of first computes
    and the segment-cover heuristic (`coverplan.cover_plan`, in the given order, added to
    `found` when it fits), before any MILP is built; the cheapest schedule, proven, when it is
    within the gap of the least of the bounds, else None (at the first order whose bound is too
    low to prove it). Each order's bound gets up to COVER_LIMIT_S and a tenth of the time left,
    the heuristic up to COVER_PLAN_LIMIT_S and a tenth."""
    problem, spec = call.problem, call.spec
    bound_j = math.inf

    def proven() -> bool:
        best_j = min(r.energy_j for _, r in found.values())
        return within_gap(gaps(best_j, bound_j, problem.store_all_energy_j)[0], call.gap)

    for k, order in enumerate(orders):
        limit = min(COVER_LIMIT_S, call.left() / 10)
        if limit <= 0.05:
            return None
        q, space = problem, None
        if k:
            q = Reorder(order).apply(problem)[0]
        else:                 # the given order: its space serves the bound and the heuristic
            try:
                space = staged_space(problem, remat=spec.remat, paging=spec.paging,
                                     deadline=time.perf_counter() + limit)
            except DeadlineReached:
                return None
        bound_j = min(bound_j, cover_bound(q, call.strategy, call.backend, time_limit_s=limit,
                                           threads=call.threads, space=space))
        if math.isinf(bound_j):
            return None      # a heuristic outside the staged space: the MILP phases decide
        if not k and not proven() and call.left() / 10 > 0.05:
            got = cover_plan(problem, call.strategy, call.backend, threads=call.threads,
                             time_limit_s=min(COVER_PLAN_LIMIT_S, call.left() / 10),
                             space=space)
            if got is not None:
                found["cover_plan"] = got
                call.say(f"{call.strategy}: segment-cover heuristic {got[1].energy_j:.6g} J")
        if not proven():
            return None
    call.say(f"{call.strategy}: segment-cover bound {bound_j:.6g} J")
    return _without_milp(call, found, "not-run", "within the gap of the segment-cover bound",
                         bound_j=bound_j)


def _without_milp(call: Call, found: Found, milp_status: str, message: str,
                  bound_j: float | None = None) -> SolveResult:
    """The result when the MILP was not built (the deadline passed, it is too large, or the
    store-all energy or the segment-cover bound already proves the gap): the cheapest schedule
    found, its gap against bound_j (default: the store-all energy, which no schedule spends less
    than), so "optimal" within the gap or "feasible"; or "timeout-without-solution"."""
    common = {"milp_status": milp_status, "message": message, "setup_s": call.elapsed(),
              "baselines_j": {k: v[1].energy_j for k, v in found.items()}}
    call.say(f"{call.strategy}: {message}")
    if not found:
        return call.result("timeout-without-solution", None, None, **common)
    name, (sched, rep) = min(found.items(), key=lambda kv: kv[1][1].energy_j)
    return call.result("feasible", sched, rep, source=name,
                       bound_j=call.problem.store_all_energy_j if bound_j is None else bound_j,
                       **common)


def _pick_best(call: Call, search: _Search, run) -> SolveResult:
    """The cheapest of the MILP's incumbent and the schedules found before it, with the best
    bound; InfeasibleError when the MILP proved that nothing fits and nothing was found."""
    problem = call.problem
    bound_j = _max_bound(search.joules(run.bound), search.lp_j)
    milp = _milp_schedule(call, search, run)
    candidates = [("milp", *milp)] if milp is not None else []
    best = search.best_found()
    if best is not None:
        candidates.append((best[0], best[1][0], best[1][1]))
    if not candidates:
        if run.status == "infeasible":
            raise call.infeasible(
                f"no schedule of its space fits ram_budget_bytes {problem.ram_budget_bytes}"
                + (f" and runtime_budget_s {problem.runtime_budget_s:.6g}"
                   if problem.runtime_budget_s is not None else "")
                + (f" and flash_budget_bytes {problem.flash_budget_bytes}"
                   if problem.flash_budget_bytes is not None else ""))
        return call.result("timeout-without-solution", None, None, bound_j=bound_j,
                           **search.summary())
    source, sched, rep = min(candidates, key=lambda c: c[2].energy_j)
    bound_j = _safe_bound(call, search, run, bound_j, milp[1] if milp is not None else None)
    if run.status == "optimal":
        status = "optimal"
    elif run.status == "infeasible" and search.cutoff is not None:
        # nothing in the MILP's space beats the cutoff, i.e. the best schedule found so far
        status, bound_j = "optimal", rep.energy_j
    else:
        status = "feasible"
    return call.result(status, sched, rep, bound_j=bound_j, source=source, **search.summary())
