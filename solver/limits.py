"""How much memory a MILP will take, and whether this machine has it (the size guard of `solve`).

`solve` counts the model (`solver.milp.milp_size`: columns, rows, nonzeros, exactly what
`build_milp` will create) before building anything, prices it with `estimate_bytes` and compares
that with `available_bytes`, so a problem too large for the machine is refused up front with its
estimated size instead of being discovered by the OOM killer.

The prices were measured on this project's machines (PuLP 3.3.2, highspy 1.16, CBC 2.10.3,
CPython 3.11, Linux): resident-set growth while `build_milp` ran on chain, skip and random DAGs of
7.7k-130k columns (38k-708k nonzeros) was 1.68-1.86 KB per column; 1,000 B per column plus 170 B
per nonzero fits every one of them within -3% / +15%. Handing the model to the solver then added,
on a 107k-column chain: HiGHS (in-process copy) 1.7x the build's bytes, CBC 1.0x in-process (the
MPS file) plus 2.3x in its child process after 3 s of LP. The estimate is a floor for CBC's
branch-and-bound, whose tree grows with time.

Each backend run also spends time outside the solver's own clock, handing the PuLP model over
(HiGHS: passing it in-process; CBC: writing an MPS file and reading the solution back): with a
0.05 s limit, runs on chains of 147k and 569k nonzeros took 0.7 and 5.1-5.8 s with HiGHS (4.5-10
us per nonzero) and 1.0-2.9 and 6.0-9.1 s with CBC (7-20 us). `handover_s` prices that, so that
`solve` gives each run only the time that is left after it, and skips a run that cannot start
before the deadline.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .milp import MilpSize

BYTES_PER_COLUMN = 1000
BYTES_PER_NONZERO = 170
# bytes the solver needs beyond the PuLP model, as a multiple of the model's bytes
BACKEND_FACTOR = {"highs": 1.7, "cbc": 3.3, "gurobi": 3.3}
# seconds per nonzero a backend run spends outside the solver's time limit (the upper measurements)
HANDOVER_S_PER_NONZERO = {"highs": 10e-6, "cbc": 20e-6, "gurobi": 20e-6}


@dataclass(frozen=True)
class MemoryEstimate:
    """The estimated peak bytes of building and solving a MILP of `size` with `backend`."""

    size: MilpSize
    backend: str
    model_bytes: int        # the PuLP model
    solver_bytes: int       # the solver's copy and work space on top of it

    @property
    def total_bytes(self) -> int:
        return self.model_bytes + self.solver_bytes

    def describe(self) -> str:
        """One phrase: its size in columns and nonzeros and its estimated memory."""
        s = self.size
        return (f"{s.columns:,} columns, {s.rows:,} rows, {s.nonzeros:,} nonzeros: about "
                f"{_gib(self.total_bytes)} to build and solve with {self.backend}")


def estimate_bytes(size: MilpSize, backend: str) -> MemoryEstimate:
    """The memory a MILP of `size` needs with `backend` ("highs", "cbc" or "gurobi")."""
    if backend not in BACKEND_FACTOR:
        raise ValueError(f"backend must be one of {', '.join(BACKEND_FACTOR)}, got {backend!r}")
    model = BYTES_PER_COLUMN * size.columns + BYTES_PER_NONZERO * size.nonzeros
    return MemoryEstimate(size, backend, model, int(BACKEND_FACTOR[backend] * model))


def handover_s(size: MilpSize, backend: str) -> float:
    """Seconds a run of `backend` on a MILP of `size` spends outside the solver's own clock."""
    if backend not in HANDOVER_S_PER_NONZERO:
        raise ValueError(f"backend must be one of {', '.join(HANDOVER_S_PER_NONZERO)}, "
                         f"got {backend!r}")
    return HANDOVER_S_PER_NONZERO[backend] * size.nonzeros


def available_bytes() -> int | None:
    """Bytes of memory available to a new allocation now: MemAvailable of /proc/meminfo (Linux),
    else the free physical pages (os.sysconf); None if neither can be read."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def too_large(estimate: MemoryEstimate, available: int | None) -> str | None:
    """Why a MILP of `estimate` cannot be built here (one line), or None if it fits (or the
    available memory is unknown)."""
    if available is None or estimate.total_bytes <= available:
        return None
    return (f"the MILP is too large for this machine ({estimate.describe()}, "
            f"{_gib(available)} available)")


def _gib(n: int) -> str:
    return f"{n / 2 ** 30:.1f} GiB" if n >= 2 ** 30 else f"{n / 2 ** 20:.0f} MiB"
