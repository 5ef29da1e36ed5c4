"""Heuristic baselines: each is a function problem -> Schedule that honours
problem.ram_budget_bytes (None = unlimited), fills `predicted` from the simulator and raises
solver.InfeasibleError when it cannot fit the budgets. One module per strategy (`dtr`,
`greedy_paging`, `sqrtn`; `store_all` lives in `solver.simulate`), sharing `_common.Planner`.

    from solver.baselines import get_baseline
    schedule = get_baseline("greedy_paging")(problem)

Which heuristics exist is said once, in `solver.strategies`; `BASELINES` is a view of it.
"""

from __future__ import annotations

from collections.abc import Callable

from ..problem import Problem
from ..schedule import Schedule
from ..simulate import store_all
from ..strategies import HEURISTICS, REGISTRY
from .dtr import dtr
from .greedy_paging import greedy_paging
from .sqrtn import sqrtn

Baseline = Callable[[Problem], Schedule]

# name -> function, for every heuristic of the registry (in its display order)
BASELINES: dict[str, Baseline] = {name: REGISTRY[name].function for name in HEURISTICS}


def get_baseline(name: str) -> Baseline:
    """The baseline called `name`; ValueError listing the known names otherwise."""
    try:
        return BASELINES[name]
    except KeyError:
        known = ", ".join(sorted(BASELINES))
        raise ValueError(f"unknown baseline {name!r}; known: {known}") from None


__all__ = ["BASELINES", "Baseline", "dtr", "get_baseline", "greedy_paging", "sqrtn", "store_all"]
