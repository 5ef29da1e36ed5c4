"""The MILP's runs inside `solver.solve`: the LP relaxation (phase 1), the LP-neighbourhood search
(phase 2), and `decode`, which turns a solution of the model into a schedule the simulator has
checked against the MILP's own objective.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from . import backends
from .errors import ScheduleError
from .milp import MilpModel
from .plans import StagedPlan
from .problem import Problem
from .reductions import Stage
from .schedule import Schedule
from .simulate import SimReport, simulate

log = logging.getLogger(__name__)


@dataclass
class NeighbourhoodResult:
    """What the LP-neighbourhood search produced (schedule None if it found nothing)."""

    t0: float
    trajectory: list[tuple[float, float | None, float | None]]
    plan: StagedPlan | None = None
    schedule: Schedule | None = None
    report: SimReport | None = None


def lp_relaxation(model: MilpModel, backend_name: str, time_limit_s: float,
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


def lp_neighbourhood(problem: Problem, model: MilpModel, strategy: str, backend_name: str,
                     lp_values: dict[str, float], start: StagedPlan | None, lp_units: float,
                     *, time_s: float, threads: int | None, gap: float, cutoff: float | None,
                     verbose: bool) -> NeighbourhoodResult:
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
    phase = NeighbourhoodResult(t0, [])
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
        phase.schedule, phase.report = decode(problem, model, strategy, backend_name)
    except OverBudget as e:
        log.warning("%s; the LP neighbourhood's schedule is not used", e)
        return phase
    phase.plan = model.plan()
    phase.schedule.extra["solver"]["heuristic"] = "lp_neighbourhood"
    return phase




class OverBudget(RuntimeError):
    """The decoded MILP schedule breaks a budget by a rounding margin, no rule."""


def decode(problem: Problem, model: MilpModel, strategy: str,
            backend_name: str) -> tuple[Schedule, SimReport]:
    """The MILP solution as a simulated schedule. Raises RuntimeError if the simulator rejects
    it for a rule or disagrees with the MILP's objective (the model and the simulator would read
    the rules differently), OverBudget if it only exceeds a budget by at most 1e-6 of it (the
    solver's tolerances)."""
    plan = model.plan()
    sched = Stage.invert(plan, problem, strategy=strategy)
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
            raise OverBudget(f"the MILP ({backend_name}) schedule exceeds a budget by a "
                              f"rounding margin: {e}") from e
        raise RuntimeError(f"the MILP ({backend_name}) returned a schedule the simulator rejects: "
                           f"{e}") from e
    milp_j = model.energy_value_j()
    if not math.isclose(rep.energy_j, milp_j, rel_tol=1e-6, abs_tol=1e-12):
        raise RuntimeError(f"MILP objective {milp_j!r} J and simulated energy {rep.energy_j!r} J "
                           f"differ ({backend_name}): the model and the simulator disagree")
    sched.extra["solver"] = {"backend": backend_name, "plan": plan.counts()}
    return sched, rep
