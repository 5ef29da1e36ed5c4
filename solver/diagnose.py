"""Messages that tell the user what went wrong and which budgets would work (used by `solve`
and `bounds`, which must not import each other for it)."""

from __future__ import annotations

from .problem import Problem
from .simulate import min_feasible_ram, store_all_peak


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
