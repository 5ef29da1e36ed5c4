"""The strategies: one registry that every other part (solve, sweep, CLI, plots) reads.

    from solver.strategies import REGISTRY, STRATEGIES, get_strategy
    STRATEGIES                       # the names, in display order: ("poet", "remat", ...)
    get_strategy("poet").kind        # "milp"
    [s.name for s in REGISTRY.values() if s.kind == "heuristic"]

A strategy is either a MILP space searched by `solver.solve` (kind "milp": the staged MILP with
recomputation and/or paging switched on) or a heuristic, a function problem -> Schedule (kind
"heuristic", in `solver.baselines`). `remat` and `paging` say which instructions a strategy's
schedules may use beyond one compute per node and frees: recomputes, and page-outs / page-ins.
A MILP strategy may fall back on every heuristic whose schedules stay within its instructions.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

KINDS = ("milp", "heuristic")


@dataclass(frozen=True)
class Strategy:
    """One strategy: its name, kind, the instructions it may use and, for a heuristic, where its
    function lives (``"module:function"``, imported on first use)."""

    name: str
    kind: str
    remat: bool
    paging: bool
    description: str
    function_path: str | None = None

    @property
    def function(self) -> Callable:
        """The heuristic's function problem -> Schedule (ValueError for a MILP strategy)."""
        if self.function_path is None:
            raise ValueError(f"strategy {self.name!r} is a MILP strategy: solve it with "
                             f"solver.solve(problem, strategy={self.name!r})")
        module, _, attr = self.function_path.partition(":")
        return getattr(importlib.import_module(module), attr)

    def admits(self, other: Strategy) -> bool:
        """Whether every schedule of `other` uses only instructions this strategy allows."""
        return (self.remat or not other.remat) and (self.paging or not other.paging)


REGISTRY: dict[str, Strategy] = {s.name: s for s in (
    Strategy("poet", "milp", True, True, "recompute and page (POET)"),
    Strategy("remat", "milp", True, False, "recompute only (Checkmate)"),
    Strategy("paging", "milp", False, True, "page only"),
    Strategy("store_all", "heuristic", False, False, "keep everything, compute each node once",
             "solver.simulate:store_all"),
    Strategy("sqrtn", "heuristic", True, False, "sqrt(n) checkpointing (Chen et al. 2016)",
             "solver.baselines.sqrtn:sqrtn"),
    Strategy("dtr", "heuristic", True, False, "DTR-style greedy eviction (Kirisame et al. 2021)",
             "solver.baselines.dtr:dtr"),
    Strategy("greedy_paging", "heuristic", False, True, "Belady paging, farthest next use first",
             "solver.baselines.greedy_paging:greedy_paging"),
)}
STRATEGIES = tuple(REGISTRY)
MILP_STRATEGIES = tuple(n for n, s in REGISTRY.items() if s.kind == "milp")
HEURISTICS = tuple(n for n, s in REGISTRY.items() if s.kind == "heuristic")


def get_strategy(name: str) -> Strategy:
    """The registered strategy `name`; ValueError listing the names otherwise."""
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {name!r}") from None


def fallbacks(name: str) -> tuple[str, ...]:
    """The heuristics a MILP strategy may start from and fall back on (store_all first)."""
    s = get_strategy(name)
    return tuple(h for h in HEURISTICS if s.admits(REGISTRY[h]))
