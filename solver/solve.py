"""`solve()`: one entry point for every strategy, MILP or heuristic.

    result = solver.solve(problem, strategy="poet", backend="auto", time_limit_s=300)
    result.status, result.objective_j, result.gap, result.schedule

MILP strategies ("poet" = recompute + page, "remat" = recompute only (Checkmate), "paging" =
page only) build the staged MILP of `solver.milp` and solve it in three phases:
1. the LP relaxation, whose value bounds every schedule of the MILP's space (if the best
   heuristic schedule is already within the gap of it, the call ends here);
2. the LP neighbourhood: the MILP with every recompute, page-in and page-out fixed at 0 that is 0
   in the LP solution and in the start, a small problem that yields good schedules fast;
3. the full MILP, started from the best schedule so far (a MIP start where it lies in the staged
   space, and an objective cutoff at its energy).
The result is the best of the MILP's incumbent, the neighbourhood's and the heuristics', so it is
never worse than a baseline of the same strategy. Heuristic strategies ("store_all", "sqrtn", "dtr",
"greedy_paging") run the heuristic alone.

Contract for every schedule returned: `solver.simulate` accepts it under the problem's budgets,
and `objective_j` is the simulator's energy. For a MILP schedule, the simulator's energy also
equals the MILP's objective at the solution (relative 1e-6); a disagreement raises RuntimeError,
since it would mean the model and the simulator read the rules differently.

Infeasible budgets raise `solver.InfeasibleError` (there is no "infeasible" result): its message
states the minimum feasible RAM and the store-all peak. A time limit that ends the MILP without
any schedule (and no baseline fits) returns status "timeout-without-solution".
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from . import backends
from .errors import InfeasibleError, ScheduleError
from .milp import (
    MilpModel,
    StagedPlan,
    build_milp,
    plan_energy,
    plan_to_schedule,
    schedule_to_plan,
)
from .problem import Problem
from .schedule import Schedule
from .simulate import SimReport, min_feasible_ram, simulate, store_all, store_all_peak

log = logging.getLogger(__name__)

MILP_STRATEGIES = {"poet": (True, True), "remat": (True, False), "paging": (False, True)}
HEURISTICS = ("store_all", "sqrtn", "dtr", "greedy_paging")
STATUSES = ("optimal", "feasible", "infeasible", "timeout-without-solution")
# the heuristics whose schedules a MILP strategy may fall back on (same kinds of instruction)
FALLBACKS = {"poet": ("store_all", "sqrtn", "dtr", "greedy_paging"),
             "remat": ("store_all", "sqrtn", "dtr"),
             "paging": ("store_all", "greedy_paging")}


@dataclass
class SolveResult:
    """The outcome of `solve()`. Energies in joules, times in seconds.

    status: "optimal" (no schedule of the strategy's MILP space is cheaper than `schedule`, within
    `gap`), "feasible" (a schedule without that proof), "timeout-without-solution" (no schedule).
    gap = (objective - bound) / objective; gap_overhead = (objective - bound) / (objective -
    store-all energy), the gap as a share of the overhead above store-all (0 when there is none).
    The bound is the MILP's proven lower bound on its own (staged) space. `source` says which
    solver produced the schedule ("milp", "lp_neighbourhood" (phase 2) or a heuristic's name);
    `milp_objective_j` is the energy of the MILP's own incumbent even when a heuristic was better.
    """

    status: str
    schedule: Schedule | None
    objective_j: float | None
    bound_j: float | None
    gap: float | None
    gap_overhead: float | None
    solve_s: float
    n_variables: int
    n_constraints: int
    report: SimReport | None
    strategy: str
    backend: str | None
    source: str | None = None
    milp_status: str | None = None
    milp_objective_j: float | None = None
    store_all_energy_j: float = 0.0
    baselines_j: dict[str, float] = field(default_factory=dict)
    # (seconds from the call, best schedule's joules, best bound's joules), over all phases
    trajectory: list[tuple[float, float | None, float | None]] = field(default_factory=list)
    setup_s: float = 0.0        # from the call to the branch and bound's start
    message: str = ""

    def time_to_gap(self, gap: float) -> float | None:
        """Seconds from the call until the best schedule was within `gap` (relative to total
        energy) of the best bound, by the trajectory of all phases (the LP bound holds from the
        moment it is known); None if that never happened."""
        for s, obj, bound in self.trajectory:
            if obj is not None and bound is not None and obj > 0 and (obj - bound) / obj <= gap:
                return s
        if self.gap is not None and self.gap <= gap:
            return self.solve_s
        return None

    def summary(self) -> dict:
        """The scalar fields, for tables and JSON."""
        out = {k: getattr(self, k) for k in (
            "status", "objective_j", "bound_j", "gap", "gap_overhead", "solve_s", "n_variables",
            "n_constraints", "strategy", "backend", "source", "milp_status", "milp_objective_j",
            "store_all_energy_j")}
        if self.report is not None:
            out.update(time_s=self.report.time_s, peak_ram_bytes=self.report.peak_ram_bytes,
                       peak_flash_bytes=self.report.peak_flash_bytes,
                       recomputes=self.report.n_recompute, page_ins=self.report.n_page_in,
                       page_outs=self.report.n_page_out)
        return out


def infeasible_message(problem: Problem, strategy: str, why: str) -> str:
    """An InfeasibleError message that tells the user which budgets would work."""
    lo, hi = min_feasible_ram(problem), store_all_peak(problem)
    others = [name for name, v in (("runtime_budget_s", problem.runtime_budget_s),
                                   ("flash_budget_bytes", problem.flash_budget_bytes))
              if v is not None]
    return (f"strategy {strategy!r}: {why}. The minimum feasible RAM (static bytes plus the "
            f"largest single compute) is {lo} bytes and store-all needs {hi} bytes: ask for a "
            f"ram_budget_bytes between them (strategy 'poet' reaches the minimum when flash is "
            f"unlimited)" + (f", or relax {' and '.join(others)}" if others else ""))


def _baseline_fn(name: str):
    if name == "store_all":
        return store_all
    from .baselines import (
        BASELINES,  # helper modules; imported late so milp works without them
    )
    return BASELINES[name]


def _check_args(strategy, backend, time_limit_s, threads, gap, progress):
    if strategy not in MILP_STRATEGIES and strategy not in HEURISTICS:
        raise ValueError(f"strategy must be one of {', '.join([*MILP_STRATEGIES, *HEURISTICS])}, "
                         f"got {strategy!r}")
    if backend not in backends.BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(backends.BACKENDS)}, got {backend!r}")
    if isinstance(time_limit_s, bool) or not isinstance(time_limit_s, (int, float)) \
            or not time_limit_s > 0 or not math.isfinite(time_limit_s):
        raise ValueError(f"time_limit_s must be a finite number > 0, got {time_limit_s!r}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                or threads < 1):
        raise ValueError(f"threads must be a whole number >= 1 or None, got {threads!r}")
    if isinstance(gap, bool) or not isinstance(gap, (int, float)) or not 0 <= gap < 1:
        raise ValueError(f"gap must be a number in [0, 1), got {gap!r}")
    if progress is not None and not callable(progress):
        raise ValueError(f"progress must be a callable taking a str, or None, got {progress!r}")


def _run_baseline(problem: Problem, name: str) -> tuple[Schedule, SimReport] | None:
    """The baseline's schedule and report if it fits every budget, else None."""
    try:
        sched = _baseline_fn(name)(problem)
    except InfeasibleError as e:
        log.info("baseline %s: %s", name, e)
        return None
    try:
        rep = simulate(problem, sched)
    except ScheduleError as e:   # a baseline that breaks a budget or a rule is not a fallback
        log.warning("baseline %s produced a schedule the simulator rejects: %s", name, e)
        return None
    sched.predicted = rep.predicted()
    return sched, rep


def _gaps(obj: float | None, bound: float | None, e0: float) -> tuple[float | None, float | None]:
    if obj is None or bound is None:
        return None, None
    diff = max(0.0, obj - bound)
    gap = diff / obj if obj > 0 else 0.0
    over = obj - e0
    gap_over = diff / over if over > 1e-15 * max(1.0, obj) else 0.0
    return gap, min(gap_over, 1.0) if diff > 0 else 0.0


def solve(problem: Problem, strategy: str = "poet", backend: str = "auto",
          time_limit_s: float = 300, threads: int | None = None, gap: float = 1e-4,
          warm_start: bool = True, verbose: bool = False,
          progress: Callable[[str], None] | None = None,
          starts: Sequence[Schedule] = (), neighbourhood: bool = True) -> SolveResult:
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
    phases 1 and 2 (the LP relaxation and the LP-neighbourhood search; see the module docstring)
    and goes straight to the full MILP.

    Raises InfeasibleError (message: minimum feasible RAM and store-all peak) when no schedule of
    the strategy fits, ValueError for bad arguments, RuntimeError if the MILP's objective and the
    simulator disagree.
    """
    _check_args(strategy, backend, time_limit_s, threads, gap, progress)
    t_start = time.perf_counter()
    say = progress if progress is not None else (lambda msg: None)
    e0 = sum(n.compute_j for n in problem.nodes)
    budget = problem.ram_budget_bytes

    def done(status, sched, rep, **kw) -> SolveResult:
        obj = rep.energy_j if rep is not None else None
        bound = kw.pop("bound_j", None)
        g, go = _gaps(obj, bound, e0)
        if sched is not None:
            sched.strategy = strategy
            sched.predicted = rep.predicted()
        res = SolveResult(status=status, schedule=sched, objective_j=obj, bound_j=bound, gap=g,
                          gap_overhead=go, solve_s=time.perf_counter() - t_start,
                          report=rep, strategy=strategy, store_all_energy_j=e0,
                          **{"n_variables": 0, "n_constraints": 0, "backend": None, **kw})
        say(f"{strategy}: {status}" + (f", {obj:.6g} J" if obj is not None else ""))
        return res

    # ---- heuristic strategies ------------------------------------------------------------------
    if strategy in HEURISTICS:
        if budget is not None and budget < min_feasible_ram(problem):
            raise InfeasibleError(infeasible_message(
                problem, strategy, f"ram_budget_bytes {budget} is below the minimum"))
        try:
            sched = _baseline_fn(strategy)(problem)
        except InfeasibleError as e:
            raise InfeasibleError(infeasible_message(problem, strategy, str(e))) from None
        rep = simulate(problem, sched)
        if strategy == "store_all":   # store-all spends the least energy any schedule can
            return done("optimal", sched, rep, bound_j=rep.energy_j, source=strategy)
        return done("feasible", sched, rep, source=strategy)

    # ---- MILP strategies: the cases that need no solver ------------------------------------------
    remat, paging = MILP_STRATEGIES[strategy]
    sa_time = sum(n.compute_s for n in problem.nodes)
    if problem.runtime_budget_s is not None and problem.runtime_budget_s < sa_time * (1 - 1e-12):
        raise InfeasibleError(infeasible_message(
            problem, strategy, f"runtime_budget_s {problem.runtime_budget_s:.6g} s is below the "
            f"store-all time {sa_time:.6g} s (every node must be computed once), so no schedule "
            f"fits it at any RAM budget"))
    sa = _run_baseline(problem, "store_all")
    if sa is not None:   # store-all fits: nothing spends less energy or time
        return done("optimal", sa[0], sa[1], bound_j=sa[1].energy_j, source="store_all",
                    baselines_j={"store_all": sa[1].energy_j})
    lo = min_feasible_ram(problem)
    if budget < lo:
        raise InfeasibleError(infeasible_message(
            problem, strategy, f"ram_budget_bytes {budget} is below the minimum"))

    # ---- baselines: fallback, start and cutoff ---------------------------------------------------
    say(f"{strategy}: running baselines {', '.join(FALLBACKS[strategy][1:])}")
    found: dict[str, tuple[Schedule, SimReport]] = {}
    for name in FALLBACKS[strategy][1:]:
        got = _run_baseline(problem, name)
        if got is not None:
            found[name] = got
    for k, given in enumerate(starts):
        got = _check_start(problem, given, k, remat=remat, paging=paging)
        found[f"start:{given.strategy}"] = got
    baselines_j = {k: v[1].energy_j for k, v in found.items()}
    best_base = min(found.items(), key=lambda kv: kv[1][1].energy_j) if found else None

    # ---- the MILP ------------------------------------------------------------------------------
    backend_name = backends.resolve_backend(backend)
    model = build_milp(problem, remat=remat, paging=paging)
    say(f"{strategy}: MILP with {model.n_variables} variables ({model.n_integer} integer), "
        f"{model.n_constraints} constraints")
    deadline = t_start + time_limit_s
    trajectory: list[tuple[float, float | None, float | None]] = []
    e0_units = model.scaling.objective_per_store_all

    def elapsed() -> float:
        return time.perf_counter() - t_start

    def cutoff_for(energy_j: float) -> float:
        c = (energy_j - model.scaling.store_all_energy_j) / model.scaling.energy_j
        return c + 1e-7 * (e0_units + abs(c))      # keeps a start equal to the cutoff feasible

    start = cutoff = None
    if warm_start and best_base is not None:
        cutoff = cutoff_for(best_base[1][1].energy_j)
        start = _best_start(problem, model, found)
    best_j = best_base[1][1].energy_j if best_base is not None else None

    # the LP relaxation: a bound for the whole run, and the columns the neighbourhood search frees
    lp_units = lp_values = None
    left = deadline - time.perf_counter()
    if neighbourhood and left > 0.1:
        # a tenth of the time left (at least 1 s): where the LP is slow the full MILP gets the time
        lp_units, lp_values = _lp_relaxation(model, backend_name,
                                             max(0.1 * left, min(1.0, left)), threads)
        if lp_units is not None:
            trajectory.append((elapsed(), best_j, _joules(model, lp_units)))
            say(f"{strategy}: LP bound {_joules(model, lp_units):.6g} J")
    lp_j = _joules(model, lp_units)

    def reached(energy_j: float | None) -> bool:
        return energy_j is not None and lp_j is not None and energy_j - lp_j <= gap * energy_j

    phase = None
    if neighbourhood and lp_values is not None and not reached(best_j):
        phase = _lp_neighbourhood(problem, model, strategy, backend_name, lp_values,
                                  start, lp_units,
                                  time_s=0.25 * (deadline - time.perf_counter()), threads=threads,
                                  gap=gap, cutoff=cutoff, verbose=verbose)
        for s, o, _ in phase.trajectory:
            trajectory.append((phase.t0 - t_start + s, _joules(model, o), lp_j))
        if phase.schedule is not None and (best_j is None or phase.report.energy_j < best_j):
            found["lp_neighbourhood"] = (phase.schedule, phase.report)
            best_j = phase.report.energy_j
            if warm_start:
                start, cutoff = phase.plan, cutoff_for(best_j)
            say(f"{strategy}: LP neighbourhood found {best_j:.6g} J")
    best_base = min(found.items(), key=lambda kv: kv[1][1].energy_j) if found else None

    setup_s = elapsed()
    common = {"n_variables": model.n_variables, "n_constraints": model.n_constraints,
              "backend": backend_name, "baselines_j": baselines_j, "setup_s": setup_s,
              "trajectory": trajectory}
    if reached(best_j):     # within the gap of the LP bound: no branching needed
        name, (sched, rep) = best_base
        common.update(milp_status="optimal", message="within the gap of the LP relaxation")
        return done("optimal", sched, rep, bound_j=lp_j, source=name, **common)

    remaining = deadline - time.perf_counter()
    say(f"{strategy}: solving with {backend_name} (time limit {max(remaining, 1.0):.0f} s)")
    if start is not None:   # the LP and the neighbourhood left their own values on the columns
        model.set_start(start)
    run_t0 = time.perf_counter()
    run = backends.run(model.prob, backend_name, time_limit_s=max(remaining, 1.0),
                       threads=threads, gap_rel=gap, gap_abs=gap * e0_units,
                       start=start is not None, cutoff=cutoff, verbose=verbose, progress=progress)
    trajectory += [(run_t0 - t_start + s, _joules(model, o),
                    _max_bound(_joules(model, b), lp_j)) for s, o, b in run.trajectory]
    common.update(milp_status=run.status, message=run.message)
    bound_j = _max_bound(_joules(model, run.bound), lp_j)

    milp_sched = milp_rep = None
    if run.has_solution:
        try:
            milp_sched, milp_rep = _decode(problem, model, strategy, backend_name)
            common["milp_objective_j"] = milp_rep.energy_j
        except _OverBudget as e:    # a solver tolerance let a rounded solution overshoot
            log.warning("%s; the MILP's schedule is not used", e)
            common["message"] = str(e)
    elif phase is not None and phase.schedule is not None:
        common["milp_objective_j"] = phase.report.energy_j

    candidates = []
    if milp_rep is not None:
        candidates.append(("milp", milp_sched, milp_rep))
    if best_base is not None:
        candidates.append((best_base[0], best_base[1][0], best_base[1][1]))
    if not candidates:
        if run.status == "infeasible":
            raise InfeasibleError(infeasible_message(
                problem, strategy, f"no schedule of its space fits ram_budget_bytes {budget}"
                + (f" and runtime_budget_s {problem.runtime_budget_s:.6g}"
                   if problem.runtime_budget_s is not None else "")
                + (f" and flash_budget_bytes {problem.flash_budget_bytes}"
                   if problem.flash_budget_bytes is not None else "")))
        return done("timeout-without-solution", None, None, bound_j=bound_j, **common)
    source, sched, rep = min(candidates, key=lambda c: c[2].energy_j)
    # a safety net for solver bugs (HiGHS has ended MIPs early with a wrong dual bound): a bound
    # above a schedule known to lie in the MILP's space is no bound
    known = [milp_rep.energy_j] if milp_rep is not None else []
    if start is not None:
        known.append(plan_energy(problem, start))
    if bound_j is not None and known and bound_j > min(known) * (1 + 1e-7) + 1e-12:
        log.warning("%s reported a bound of %.9g J above a known schedule of its space "
                    "(%.9g J); the bound is discarded", backend_name, bound_j, min(known))
        common["message"] = (common["message"] + "; bound discarded").lstrip("; ")
        bound_j = lp_j if lp_j is not None and lp_j <= min(known) * (1 + 1e-7) + 1e-12 else None
        run.status = "feasible" if run.status == "optimal" else run.status
    if run.status == "optimal":
        status = "optimal"
    elif run.status == "infeasible" and cutoff is not None:
        # nothing in the MILP's space beats the cutoff, i.e. the best schedule found so far
        status, bound_j = "optimal", rep.energy_j
    else:
        status = "feasible"
    return done(status, sched, rep, bound_j=bound_j, source=source, **common)


def _max_bound(a: float | None, b: float | None) -> float | None:
    """The larger of two lower bounds, either of which may be unknown."""
    if a is None:
        return b
    return a if b is None else max(a, b)


@dataclass
class _Phase:
    """What the LP-neighbourhood search produced (schedule None if it found nothing)."""

    t0: float
    trajectory: list[tuple[float, float | None, float | None]]
    plan: StagedPlan | None = None
    schedule: Schedule | None = None
    report: SimReport | None = None


def _lp_relaxation(model: MilpModel, backend_name: str, time_limit_s: float,
                   threads: int | None) -> tuple[float | None, dict[str, float] | None]:
    """The LP relaxation of `model` (its own columns, integrality dropped): its value in model
    units, a lower bound on every schedule of the MILP's space, and the values of the integer
    columns; (None, None) if the LP did not solve."""
    res = backends.run(model.prob, backend_name, time_limit_s=time_limit_s, threads=threads,
                       relax=True)
    if res.status != "optimal" or res.objective is None:
        log.info("LP relaxation: %s (%s)", res.status, res.message)
        return None, None
    values = {v.name: float(v.varValue or 0.0)
              for cols in (model.R, model.P, model.O) for v in cols.values()}
    return max(0.0, model.overhead_value()), values


def _lp_neighbourhood(problem: Problem, model: MilpModel, strategy: str, backend_name: str,
                      lp_values: dict[str, float], start: StagedPlan | None, lp_units: float,
                      *, time_s: float, threads: int | None, gap: float, cutoff: float | None,
                      verbose: bool) -> _Phase:
    """A primal heuristic: the MILP restricted to the integer columns that are non-zero in its LP
    relaxation or in the start (every other recompute, page-in and page-out fixed at 0).

    The restricted MILP is a small part of the space around the LP optimum, so good schedules
    come much sooner than in the full search (ResNet-18 on nrf52840 at 25% of the budget range:
    +1.068% over store-all after 1.5 s where the full MILP needed 12 s, from DTR's +2.80%).
    It stops when an incumbent is within `gap` of the LP bound (nothing is left to prove), when
    no better incumbent came for max(2 s, the time the last one took), or after time_s. Its best
    schedule is decoded, simulated and returned; the model's bounds are restored either way.
    """
    t0 = time.perf_counter()
    phase = _Phase(t0, [])
    if time_s < 0.5:
        return phase
    free = {name for name, v in lp_values.items() if v > 1e-6}
    values = model.encode(start) if start is not None else None
    if values is not None:
        free |= {name for name, v in values.items() if v > 0.5}
        model.set_values(values)
    saved = []
    for cols in (model.R, model.P, model.O):
        for v in cols.values():
            if v.name not in free:
                saved.append((v, v.upBound))
                v.upBound = 0
    e0_units = model.scaling.objective_per_store_all
    # the stall clock starts when the root LP is solved (the first finite bound) and restarts at
    # every better incumbent; the phase ends after max(2 s, the time of the last event) without one
    last = {"obj": None, "t": None}

    def stop(s: float, obj: float | None, bound: float | None) -> bool:
        if last["t"] is None and bound is not None:
            last["t"] = s
        if obj is not None:
            if last["obj"] is not None and obj < last["obj"] - 1e-9 * (e0_units + abs(obj)):
                last["t"] = s
            last["obj"] = obj if last["obj"] is None else min(obj, last["obj"])
            if obj - lp_units <= gap * (obj + e0_units):
                return True
        return last["t"] is not None and s - last["t"] > max(2.0, last["t"])

    try:
        run = backends.run(model.prob, backend_name, time_limit_s=time_s, threads=threads,
                           gap_rel=gap, gap_abs=gap * e0_units, start=start is not None,
                           cutoff=cutoff, verbose=verbose, stop=stop)
    finally:
        for v, ub in saved:
            v.upBound = ub
    phase.trajectory = run.trajectory
    log.info("LP neighbourhood: %d of %d integer columns free, %s in %.2f s", model.n_integer
             - len(saved), model.n_integer, run.status, run.solve_s)
    if not run.has_solution:
        return phase
    try:
        phase.schedule, phase.report = _decode(problem, model, strategy, backend_name)
    except _OverBudget as e:
        log.warning("%s; the LP neighbourhood's schedule is not used", e)
        return phase
    phase.plan = model.plan()
    phase.schedule.extra["solver"]["heuristic"] = "lp_neighbourhood"
    return phase


def _joules(model: MilpModel, v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else model.to_energy_j(v)


def _check_start(problem: Problem, given: Schedule, k: int, *, remat: bool,
                 paging: bool) -> tuple[Schedule, SimReport]:
    """A copy of start k with its simulator report, or ValueError saying why it cannot serve."""
    if not isinstance(given, Schedule):
        raise ValueError(f"starts[{k}] must be a solver.Schedule, got {type(given).__name__}")
    sched = Schedule(list(given.instructions), problem_fingerprint=given.problem_fingerprint,
                     strategy=given.strategy, ram_budget_bytes=problem.ram_budget_bytes,
                     extra=dict(given.extra))
    try:
        rep = simulate(problem, sched)
    except ValueError as e:
        raise ValueError(f"starts[{k}] ({given.strategy}) is not a valid schedule of this "
                         f"problem: {e}") from None
    if not remat and rep.n_recompute:
        raise ValueError(f"starts[{k}] ({given.strategy}) recomputes, but remat is off")
    if not paging and rep.n_page_out:
        raise ValueError(f"starts[{k}] ({given.strategy}) pages out, but paging is off")
    return sched, rep


def _best_start(problem: Problem, model: MilpModel, found) -> StagedPlan | None:
    """Project every fitting baseline into the staged space and return the cheapest image that
    satisfies the model's rows (the MIP start), or None if no baseline has one."""
    best = None
    for name, (sched, _) in found.items():
        plan = schedule_to_plan(problem, sched)
        if plan is None:
            continue
        values = model.encode(plan)
        if values is None or model.violations(values):
            continue
        e = plan_energy(problem, plan)
        if best is None or e < best[0]:
            best = (e, plan, name)
    if best is None:
        return None
    log.info("MIP start from %s (%.6g J)", best[2], best[0])
    return best[1]


class _OverBudget(RuntimeError):
    """The decoded MILP schedule breaks a budget by a rounding margin, no rule."""


def _decode(problem: Problem, model: MilpModel, strategy: str,
            backend_name: str) -> tuple[Schedule, SimReport]:
    """The MILP solution as a simulated schedule. Raises RuntimeError if the simulator rejects
    it for a rule or disagrees with the MILP's objective (the model and the simulator would read
    the rules differently), _OverBudget if it only exceeds a budget by at most 1e-6 of it (the
    solver's tolerances)."""
    plan = model.plan()
    sched = plan_to_schedule(problem, plan, strategy=strategy)
    try:
        rep = simulate(problem, sched)
    except ScheduleError as e:
        try:
            rep = simulate(problem, sched, check_budgets=False)
        except ScheduleError:
            rep = None
        near = [] if rep is None else [(rep.peak_ram_bytes, problem.ram_budget_bytes),
                                       (rep.peak_flash_bytes, problem.flash_budget_bytes),
                                       (rep.time_s, problem.runtime_budget_s)]
        if near and all(lim is None or v <= lim * (1 + 1e-6) for v, lim in near):
            raise _OverBudget(f"the MILP ({backend_name}) schedule exceeds a budget by a "
                              f"rounding margin: {e}") from e
        raise RuntimeError(f"the MILP ({backend_name}) returned a schedule the simulator rejects: "
                           f"{e}") from e
    milp_j = model.energy_value_j()
    if not math.isclose(rep.energy_j, milp_j, rel_tol=1e-6, abs_tol=1e-12):
        raise RuntimeError(f"MILP objective {milp_j!r} J and simulated energy {rep.energy_j!r} J "
                           f"differ ({backend_name}): the model and the simulator disagree")
    sched.extra["solver"] = {"backend": backend_name, "plan": plan.counts()}
    return sched, rep
