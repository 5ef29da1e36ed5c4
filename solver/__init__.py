"""solver: the MILP side of poet. Plain data in, schedules out; no torch anywhere in here.

    problem = solver.Problem.load("p.json")
    result = solver.solve(problem, strategy="poet")      # .schedule .report .gap .bound_j
    report = solver.simulate(problem, result.schedule)   # the single definition of a schedule

The problem and schedule files, the rules of a schedule and the fingerprint's canonical form are
specified in docs/formats.md.
"""

from .errors import InfeasibleError, ProblemError, ScheduleError, TooLargeError
from .problem import Node, Problem
from .schedule import OPS, Schedule
from .simulate import Machine, SimReport, min_feasible_ram, simulate, store_all, store_all_peak
from .strategies import STRATEGIES, Strategy, get_strategy
from .backends import available_backends  # noqa: E402  (imports PuLP)
from .bounds import lp_bound, min_feasible_budget  # noqa: E402
from .solve import SolveResult, solve  # noqa: E402

__all__ = [
    "InfeasibleError", "ProblemError", "ScheduleError", "TooLargeError", "Node", "Problem", "OPS",
    "STRATEGIES", "Strategy", "get_strategy", "Schedule", "Machine", "SimReport",
    "min_feasible_ram", "simulate", "store_all", "store_all_peak", "available_backends", "lp_bound",
    "min_feasible_budget", "SolveResult", "solve",
]
