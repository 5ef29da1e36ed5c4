"""solver: the MILP side of poet. Plain data in, schedules out; no torch anywhere in here.

    problem = solver.Problem.load("p.json")
    report = solver.simulate(problem, solver.store_all(problem))
"""

from .errors import InfeasibleError, ProblemError, ScheduleError
from .problem import Node, Problem
from .schedule import OPS, STRATEGIES, Schedule
from .simulate import SimReport, min_feasible_ram, simulate, store_all, store_all_peak

__all__ = [
    "InfeasibleError", "ProblemError", "ScheduleError", "Node", "Problem", "OPS", "STRATEGIES",
    "Schedule", "SimReport", "min_feasible_ram", "simulate", "store_all", "store_all_peak",
]

from .solve import SolveResult, solve  # noqa: E402

__all__ += ["SolveResult", "solve"]
