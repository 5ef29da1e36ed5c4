"""`SolveResult`: what `solver.solve` returns, and the gaps it reports."""

from __future__ import annotations

from dataclasses import dataclass, field

from .schedule import Schedule
from .simulate import SimReport


@dataclass
class SolveResult:
    """The outcome of `solve()`. Energies in joules, times in seconds.

    status: "optimal" (no schedule of the strategy's MILP space is cheaper than `schedule`, within
    the requested gap: whenever the reported `gap` is within it), "feasible" (a schedule without
    that proof), "timeout-without-solution" (no schedule). With several orders of first computes
    (`orders` non-empty) the space is the union of their staged spaces and the bound the least of
    theirs.
    gap = (objective - bound) / objective; gap_overhead = (objective - bound) / (objective -
    store-all energy), the gap as a share of the overhead above store-all (0 when there is none).
    The bound is the MILP's proven lower bound on its own (staged) space. `source` says which
    solver produced the schedule ("milp", "lp_neighbourhood" (phase 2) or a heuristic's name);
    `milp_objective_j` is the energy of the MILP's own incumbent even when a heuristic was better.
    """

    status: str
    schedule: Schedule | None
    objective_j: float | None
    bound_j: float | None
    gap: float | None
    gap_overhead: float | None
    solve_s: float
    n_variables: int
    n_constraints: int
    report: SimReport | None
    strategy: str
    backend: str | None
    source: str | None = None
    milp_status: str | None = None
    milp_objective_j: float | None = None
    store_all_energy_j: float = 0.0
    baselines_j: dict[str, float] = field(default_factory=dict)
    # (seconds from the call, best schedule's joules, best bound's joules), over all phases;
    # a MILP result's first point is the heuristics' end (bound None: no MILP bound yet)
    trajectory: list[tuple[float, float | None, float | None]] = field(default_factory=list)
    setup_s: float = 0.0        # from the call to the branch and bound's start
    heuristics_s: float = 0.0   # of which running the fallback heuristics
    build_s: float = 0.0        # of which building the MILP (every order's, with several)
    message: str = ""
    # one dict per order of first computes solved (several candidates): its index among
    # `solver.reductions.candidate_orders`, status, objective_j, bound_j, solve_s
    orders: list[dict] = field(default_factory=list)

    def time_to_gap(self, gap: float) -> float | None:
        """Seconds from the call until the best schedule was within `gap` (relative to total
        energy) of the best bound, by the trajectory of all phases (the LP bound holds from the
        moment it is known, and the store-all energy, which no schedule spends less than, from
        the start: the heuristics' point needs no MILP bound); None if that never happened."""
        floor = self.store_all_energy_j if self.store_all_energy_j > 0 else None
        for s, obj, bound in self.trajectory:
            if bound is None or (floor is not None and bound < floor):
                bound = floor
            if obj is not None and bound is not None and obj > 0 and (obj - bound) / obj <= gap:
                return s
        if self.gap is not None and self.gap <= gap:
            return self.solve_s
        return None

    def summary(self) -> dict:
        """The scalar fields, for tables and JSON."""
        out = {k: getattr(self, k) for k in (
            "status", "objective_j", "bound_j", "gap", "gap_overhead", "solve_s", "n_variables",
            "n_constraints", "strategy", "backend", "source", "milp_status", "milp_objective_j",
            "store_all_energy_j")}
        if self.report is not None:
            out.update(time_s=self.report.time_s, peak_ram_bytes=self.report.peak_ram_bytes,
                       peak_flash_bytes=self.report.peak_flash_bytes,
                       recomputes=self.report.n_recompute, page_ins=self.report.n_page_in,
                       page_outs=self.report.n_page_out)
        return out


def gaps(obj: float | None, bound: float | None, e0: float) -> tuple[float | None, float | None]:
    """(gap, gap_overhead) of a schedule of `obj` joules against a bound, with e0 the store-all
    energy (see SolveResult); (None, None) when either is unknown."""
    if obj is None or bound is None:
        return None, None
    diff = max(0.0, obj - bound)
    gap = diff / obj if obj > 0 else 0.0
    over = obj - e0
    gap_over = diff / over if over > 1e-15 * max(1.0, obj) else 0.0
    return gap, min(gap_over, 1.0) if diff > 0 else 0.0


def within_gap(gap: float | None, requested: float) -> bool:
    """Whether a reported gap meets the requested one (a hair of rounding allowed)."""
    return gap is not None and gap <= requested * (1 + 1e-9) + 1e-15
