"""The schedules a MILP strategy of `solver.solve` starts from and falls back on: the heuristics
that fit, the caller's own starts, and the cheapest of them projected into the staged space (the
MIP start)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from .errors import DeadlineReached, InfeasibleError, ScheduleError
from .dropsearch import drop_search
from .milp import MilpModel
from .plans import StagedPlan, plan_energy, plan_to_schedule
from .problem import Problem
from .reductions import Stage
from .schedule import Schedule
from .simulate import SimReport, simulate
from .strategies import Strategy, get_strategy

log = logging.getLogger(__name__)

Found = dict[str, tuple[Schedule, SimReport]]      # name -> a fitting schedule and its report


def run_baseline(problem: Problem, name: str, deadline: float | None = None
                 ) -> tuple[Schedule, SimReport] | None:
    """The baseline's schedule and report if it fits every budget, else None. With a deadline
    (a `time.perf_counter()` value; store-all, which is linear, does not look at it) the
    baseline raises `solver.errors.DeadlineReached` once it passes."""
    function = get_strategy(name).function
    try:
        sched = function(problem) if deadline is None or name == "store_all" \
            else function(problem, deadline=deadline)
    except InfeasibleError as e:
        log.info("baseline %s: %s", name, e)
        return None
    return _simulated(problem, sched, name)


def _simulated(problem: Problem, sched: Schedule, name: str
               ) -> tuple[Schedule, SimReport] | None:
    """The heuristic's schedule with its simulator report (and predicted totals), or None if
    the simulator rejects it: one that breaks a budget or a rule is not a fallback."""
    try:
        rep = simulate(problem, sched)
    except ScheduleError as e:
        log.warning("heuristic %s produced a schedule the simulator rejects: %s", name, e)
        return None
    sched.predicted = rep.predicted()
    return sched, rep


DROP_SEARCH_SHARE = 0.05   # of the time limit, for `run_drop_search` (at least 1 s)
# solve runs the drop search only when no heuristic is within 1% above store-all (1.01x): below
# that the others' schedules were the better starts wherever measured (ResNet-18, 8-block BERT
# at op level), and the time went to the LP instead
DROP_SEARCH_FROM = 1.01


def run_drop_search(problem: Problem, spec: Strategy, found: Found, time_limit_s: float,
                    deadline: float | None) -> tuple[Schedule, SimReport] | None:
    """`solver.dropsearch.drop_search`'s plan in the strategy's instructions, as a schedule with
    its simulator report, if it found one that fits within DROP_SEARCH_SHARE of the time limit
    or 1 s (a quarter of a limit under 4 s), whichever is longer, and before the deadline;
    None otherwise, and None at once when a schedule in `found` costs at most DROP_SEARCH_FROM
    times store-all. On 4-block layer-level BERT (nRF52840, 50% of its budget range) it gives
    +4.48% over store-all in 1.3 s where DTR gives +8.14%."""
    best = min((r.energy_j for _, r in found.values()), default=None)
    if not (spec.remat or spec.paging) or (
            best is not None and best <= DROP_SEARCH_FROM * problem.store_all_energy_j):
        return None
    own = time.perf_counter() + max(min(1.0, 0.25 * time_limit_s),
                                     DROP_SEARCH_SHARE * time_limit_s)
    plan = drop_search(problem, remat=spec.remat, paging=spec.paging,
                       deadline=own if deadline is None else min(own, deadline))
    if plan is None:
        return None
    return _simulated(problem, plan_to_schedule(problem, plan, strategy="drop_search"),
                      "drop_search")


def run_heuristics(problem: Problem, spec: Strategy, names: Sequence[str],
                   starts: Sequence[Schedule], time_limit_s: float, deadline: float | None
                   ) -> tuple[Found, str | None]:
    """The baselines `names` that fit, the drop search's schedule (`run_drop_search`) and the
    caller's starts (`check_start`: ValueError for one that cannot serve), by name; and why the
    baselines stopped early (the deadline passed: the rest and the drop search are not run),
    or None."""
    found: Found = {}
    stopped = None
    for k, name in enumerate(names):
        try:
            got = run_baseline(problem, name, deadline=deadline)
        except DeadlineReached as e:
            rest = names[k + 1:]
            stopped = (f"time limit reached while running the heuristic {name} "
                       f"({e.done} instructions)"
                       + (f"; {', '.join(rest)} not run" if rest else ""))
            break
        if got is not None:
            found[name] = got
    if stopped is None and (got := run_drop_search(problem, spec, found, time_limit_s, deadline)):
        found["drop_search"] = got
    for k, given in enumerate(starts):
        found[f"start:{given.strategy}"] = check_start(problem, given, k, spec)
    return found, stopped


def check_start(problem: Problem, given: Schedule, k: int, spec: Strategy
                 ) -> tuple[Schedule, SimReport]:
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
    if not spec.remat and rep.n_recompute:
        raise ValueError(f"starts[{k}] ({given.strategy}) recomputes, but remat is off")
    if not spec.paging and rep.n_page_out:
        raise ValueError(f"starts[{k}] ({given.strategy}) pages out, but paging is off")
    return sched, rep


def best_start(problem: Problem, model: MilpModel, found: Found) -> StagedPlan | None:
    """Project every fitting baseline into the staged space and return the cheapest image that
    satisfies the model's rows (the MIP start), or None if no baseline has one."""
    best = None
    for name, (sched, _) in found.items():
        plan = Stage.project(sched, problem)
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
