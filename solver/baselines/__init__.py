"""Heuristic baselines: each is a function problem -> Schedule that honours
problem.ram_budget_bytes (None = unlimited), fills `predicted` from the simulator and raises
solver.InfeasibleError when it cannot fit the budgets.

    from solver.baselines import BASELINES
    schedule = BASELINES["greedy_paging"](problem)
"""

from __future__ import annotations

from collections.abc import Callable

from ..problem import Problem
from ..schedule import Schedule
from ..simulate import store_all
from .dtr import dtr
from .greedy_paging import greedy_paging
from .sqrtn import sqrtn

Baseline = Callable[[Problem], Schedule]

# name -> function; helper modules (remat, paging) may register more names here
BASELINES: dict[str, Baseline] = {
    "store_all": store_all,
    "sqrtn": sqrtn,
    "dtr": dtr,
    "greedy_paging": greedy_paging,
}


def get_baseline(name: str) -> Baseline:
    """The baseline called `name`; ValueError listing the known names otherwise."""
    try:
        return BASELINES[name]
    except KeyError:
        known = ", ".join(sorted(BASELINES))
        raise ValueError(f"unknown baseline {name!r}; known: {known}") from None


__all__ = ["BASELINES", "Baseline", "dtr", "get_baseline", "greedy_paging", "sqrtn", "store_all"]
