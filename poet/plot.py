"""Figures of the memory/energy trade-off: matplotlib Figures drawn off-screen (Agg), saved
atomically. One import for all of them:

    from poet.plot import plot_sweep, energy_vs_budget_figure, plot_ram_trace

Each figure has two entry points: ``*_figure(...)`` builds and returns a
`matplotlib.figure.Figure` (for tests and notebooks; nothing is written), and ``plot_*(..., path)``
builds it, writes it in every requested format (PNG and SVG by default) and returns the paths
written.

- of a sweep (`poet.sweep_figures`): `plot_energy_vs_budget(rows, path)`, energy per step
  against the RAM budget, one line per strategy (POET's trade-off figure);
  `plot_energy_split(rows, path, strategy="poet")`, per budget the energy split into one compute
  pass, recomputation, page-in and page-out.
- of one schedule (`poet.schedule_figures`): `plot_schedule_matrices(problem, schedule, path)`,
  the node x stage matrices (computed, in RAM, on flash) as Checkmate and POET draw them;
  `plot_ram_trace(problem, schedule, path)`, RAM in use during each instruction against the
  budget.
- `plot_sweep(result, out_dir)`: all four for a `poet.SweepResult`.

Shared pieces (styles, units, saving) are in `poet.figures`. Units on the axes are picked from
the data (B/KiB/MiB/GiB, nJ/µJ/mJ/J/kJ).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from .figures import (FORMATS, STRATEGY_STYLE, byte_unit, energy_unit, save_figure, short_name,
                      tooltips)
from .schedule_figures import (label_marks, node_ticks, plot_ram_trace, plot_schedule_matrices,
                               ram_trace_figure, schedule_matrices, schedule_matrices_figure)
from .sweep_figures import (energy_split, energy_split_figure, energy_vs_budget_figure,
                            feasible_budgets, plot_energy_split, plot_energy_vs_budget, rows_of)

__all__ = [
    "FORMATS", "STRATEGY_STYLE", "byte_unit", "energy_unit", "save_figure", "short_name",
    "tooltips", "node_ticks", "label_marks",
    "schedule_matrices", "energy_vs_budget_figure", "plot_energy_vs_budget",
    "energy_split", "energy_split_figure", "plot_energy_split", "schedule_matrices_figure",
    "plot_schedule_matrices", "ram_trace_figure", "plot_ram_trace", "plot_sweep",
]

_log = logging.getLogger(__name__)


def plot_sweep(result, out_dir: str | os.PathLike, *, strategy: str = "poet",
               ram_budget_bytes: int | None = None,
               formats=("png", "svg")) -> dict[str, list[Path]]:
    """Write the four figures of a `poet.SweepResult` into `out_dir` and return
    {figure name: paths}: energy_vs_budget, energy_split_<strategy>, and, for `strategy`'s
    schedule at the tightest budget where it is feasible (or at `ram_budget_bytes`),
    schedule_matrices_<strategy> and ram_trace_<strategy>. The last two need the problem and that
    schedule (`result.problem`, `result.schedule(strategy, budget)`); they are skipped (and the
    reason logged at INFO level) when the result has none, for instance when the strategy is
    infeasible at every budget. Raises ValueError if `ram_budget_bytes` is not a budget where
    `strategy` has a schedule."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = rows_of(result)
    written: dict[str, list[Path]] = {"energy_vs_budget": plot_energy_vs_budget(
        rows, out / "energy_vs_budget", formats=formats)}
    skipped: list[str] = []
    if any(r["strategy"] == strategy for r in rows):
        written[f"energy_split_{strategy}"] = plot_energy_split(
            rows, out / f"energy_split_{strategy}", strategy, formats=formats)
    else:
        skipped.append(f"energy_split_{strategy}: no {strategy} rows")
    feasible = feasible_budgets(rows, strategy)
    if ram_budget_bytes is not None:
        if int(ram_budget_bytes) not in {b for b, _ in feasible}:
            raise ValueError(f"ram_budget_bytes={ram_budget_bytes!r}: {strategy} has no schedule "
                             f"at that budget; feasible budgets: {[b for b, _ in feasible]}")
        feasible = [f for f in feasible if f[0] == int(ram_budget_bytes)]
    problem = getattr(result, "problem", None)
    sched = None
    if feasible and problem is not None and hasattr(result, "schedule"):
        sched = result.schedule(strategy, feasible[0][0], runtime_budget_s=feasible[0][1])
    if sched is None:
        why = ("it is infeasible at every budget" if not feasible else
               "the result holds no problem or schedules")
        skipped.append(f"schedule_matrices_{strategy}, ram_trace_{strategy}: {why}")
    else:
        p = problem.with_budgets(ram_budget_bytes=feasible[0][0], runtime_budget_s=feasible[0][1])
        written[f"schedule_matrices_{strategy}"] = plot_schedule_matrices(
            p, sched, out / f"schedule_matrices_{strategy}", formats=formats)
        written[f"ram_trace_{strategy}"] = plot_ram_trace(
            p, sched, out / f"ram_trace_{strategy}", formats=formats)
    for reason in skipped:
        _log.info("plot_sweep skipped %s", reason)
    return written
