"""The solver's options, validated in one place (solve, sweeps and the command line call these).

Each check returns the value (as the type the solver uses) or raises ValueError naming the
option and what is allowed.
"""

from __future__ import annotations

import math
from typing import Any

MAX_THREADS = 256


def check_time_limit(value: Any, name: str = "time_limit_s") -> float:
    """A finite number of seconds > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or not value > 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def check_threads(value: Any, name: str = "threads") -> int | None:
    """None (the solver's default) or a whole number 1..MAX_THREADS."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_THREADS:
        raise ValueError(f"{name} must be a whole number from 1 to {MAX_THREADS} or None, "
                         f"got {value!r}")
    return value


def check_gap(value: Any, name: str = "gap") -> float:
    """A relative gap in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")
    return float(value)


def check_solve_options(time_limit_s: Any, threads: Any, gap: Any) -> tuple[float, int | None,
                                                                            float]:
    """All three at once: (time_limit_s, threads, gap)."""
    return check_time_limit(time_limit_s), check_threads(threads), check_gap(gap)
