"""One call of `solve`: its problem and checked options, its clock (one deadline for the whole
call), its progress lines and the SolveResult it ends with (`Call.result`: the gaps from the
simulator's energy, "optimal" whenever they are within the requested gap). `solver.solve` and
`solver.orders` hand a Call from phase to phase.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from . import backends
from .diagnose import infeasible_message
from .errors import InfeasibleError
from .options import check_solve_options
from .problem import Problem
from .result import SolveResult, gaps, within_gap
from .schedule import Schedule
from .simulate import SimReport
from .strategies import Strategy, get_strategy


@dataclass
class Call:
    """One call of `solve`: the problem, the checked options, the clock and the progress sink."""

    problem: Problem
    spec: Strategy
    backend: str
    time_limit_s: float
    threads: int | None
    gap: float
    warm_start: bool
    verbose: bool
    progress: Callable[[str], None] | None
    t_start: float = field(default_factory=time.perf_counter)
    stopped: str | None = None      # why the heuristics stopped early (the deadline), if they did
    heuristics_s: float = 0.0       # seconds the fallback heuristics took
    heuristics_end_s: float | None = None   # seconds from the call to their end

    @property
    def strategy(self) -> str:
        return self.spec.name

    @property
    def deadline(self) -> float:
        return self.t_start + self.time_limit_s

    def elapsed(self) -> float:
        """Seconds since the call started."""
        return time.perf_counter() - self.t_start

    def left(self) -> float:
        """Seconds until the deadline (negative once it has passed)."""
        return self.deadline - time.perf_counter()

    def say(self, msg: str) -> None:
        """One line to the progress callback, if there is one."""
        if self.progress is not None:
            self.progress(msg)

    def result(self, status: str, sched: Schedule | None, rep: SimReport | None,
               **kw) -> SolveResult:
        """The SolveResult of the call (objective and gaps from the simulator's report)."""
        obj = rep.energy_j if rep is not None else None
        bound = kw.pop("bound_j", None)
        e0 = self.problem.store_all_energy_j
        g, go = gaps(obj, bound, e0)
        if status == "feasible" and within_gap(g, self.gap):
            status = "optimal"        # proven within the requested gap, whoever stopped the run
        if sched is not None:
            sched.strategy = self.strategy
            sched.predicted = rep.predicted()
        base = kw.get("baselines_j")
        if "trajectory" in kw and base and self.heuristics_end_s is not None:
            # the first point: the best heuristic, known when they end, with no bound of the
            # MILP yet (time_to_gap still measures it against the store-all energy)
            kw["trajectory"] = [(self.heuristics_end_s, min(base.values()), None),
                                *kw["trajectory"]]
        res = SolveResult(status=status, schedule=sched, objective_j=obj, bound_j=bound, gap=g,
                          gap_overhead=go, solve_s=self.elapsed(), report=rep,
                          strategy=self.strategy, store_all_energy_j=e0,
                          **{"n_variables": 0, "n_constraints": 0, "backend": None,
                             "heuristics_s": self.heuristics_s, **kw})
        self.say(f"{self.strategy}: {status}" + (f", {obj:.6g} J" if obj is not None else ""))
        return res

    def infeasible(self, why: str) -> InfeasibleError:
        """An InfeasibleError for this call saying which budgets would work."""
        return InfeasibleError(infeasible_message(self.problem, self.strategy, why))


def check_args(problem, strategy, backend, time_limit_s, threads, gap, warm_start, verbose,
                progress) -> Call:
    """The call with its options checked (ValueError naming the option otherwise); the clock
    starts here."""
    spec = get_strategy(strategy)
    if backend not in backends.BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(backends.BACKENDS)}, got {backend!r}")
    time_limit_s, threads, gap = check_solve_options(time_limit_s, threads, gap)
    if progress is not None and not callable(progress):
        raise ValueError(f"progress must be a callable taking a str, or None, got {progress!r}")
    return Call(problem, spec, backend, time_limit_s, threads, gap, warm_start, verbose, progress)
