"""Paging only: the staged MILP with recomputation off (every node is computed exactly once;
what does not fit is written to flash and read back).

`paging(problem)` is `solver.solve(problem, strategy="paging")` as a baseline function
problem -> Schedule, so that it lines up with the heuristics in tables and tests.
"""

from __future__ import annotations

from ..problem import Problem
from ..schedule import Schedule


def paging(problem: Problem, *, backend: str = "auto", time_limit_s: float = 60,
           gap: float = 1e-4) -> Schedule:
    """The least-energy paging-only schedule the MILP finds within time_limit_s.

    Raises solver.InfeasibleError when no paging-only schedule fits the budgets (or none was
    found in time).
    """
    from ..errors import InfeasibleError
    from ..solve import solve
    res = solve(problem, strategy="paging", backend=backend, time_limit_s=time_limit_s, gap=gap)
    if res.schedule is None:
        raise InfeasibleError(f"paging: no schedule found within {time_limit_s} s "
                              f"({res.status})")
    return res.schedule
