"""The figures of a sweep: energy against the RAM budget, and the energy split per budget.

- `energy_vs_budget_figure(rows)`: energy per step against the RAM budget, one line per
  strategy, the store-all energy as a horizontal line and the minimum feasible budget as a
  vertical one (POET's trade-off figure).
- `energy_split_figure(rows, strategy="poet")`: per budget, the energy of one strategy split
  into the one-pass compute, recomputation, page-in and page-out, as stacked bars.

`rows` are sweep rows (dicts with the columns of `poet.sweepfiles.COLUMNS`, as
`poet.SweepResult.rows` holds them or as read back from sweep.csv, where empty cells mean
"none") or a SweepResult. ``plot_*(rows, path)`` writes a figure (`poet.figures.save_figure`)
and returns the paths.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from solver.strategies import STRATEGIES

from .figures import (STRATEGY_STYLE, byte_unit, energy_unit, line_style, new_figure,
                      save_figure, strategy_style)
from .units import format_bytes, format_energy

__all__ = ["rows_of", "feasible_budgets", "energy_vs_budget_figure", "plot_energy_vs_budget",
           "energy_split", "energy_split_figure", "plot_energy_split"]

OVERHEAD_FLOOR_PCT = 1e-7   # overheads below this (1e-9 of store-all) are float rounding
_SPLIT_COLOURS = {"compute": "#9E9E9E", "recompute": "#0072B2", "pagein": "#E69F00",
                  "pageout": "#D55E00"}


# ---- reading sweep rows -------------------------------------------------------------------------

def rows_of(rows_or_result) -> list[dict]:
    """The rows of a SweepResult or a list of rows, checked: TypeError / ValueError naming the
    row and the column that is missing."""
    rows = getattr(rows_or_result, "rows", rows_or_result)
    if isinstance(rows, dict) or not isinstance(rows, Sequence):
        raise TypeError(f"rows must be a list of sweep rows (dicts) or a SweepResult, got "
                        f"{type(rows_or_result).__name__}")
    for k, r in enumerate(rows):
        if not isinstance(r, dict):
            raise TypeError(f"rows[{k}] must be a dict (a sweep row), got {type(r).__name__}")
        for col in ("strategy", "ram_budget_bytes", "status", "energy_j"):
            if col not in r:
                raise ValueError(f"rows[{k}] has no {col!r} column (a sweep row has the columns "
                                 f"of poet.sweepfiles.COLUMNS)")
    if not rows:
        raise ValueError("rows is empty: there is nothing to plot")
    return list(rows)


def _num(value) -> float | None:
    """A float, or None for a missing value (None, "", NaN)."""
    if value is None or value == "":
        return None
    v = float(value)
    return None if math.isnan(v) else v


def _first(rows: list[dict], col: str) -> Any:
    for r in rows:
        v = r.get(col)
        if v not in (None, ""):
            return v
    return None


def _title_of(rows: list[dict]) -> str:
    model = _first(rows, "model") or "model"
    device = _first(rows, "device")
    return f"{model} on {device}" if device else str(model)


def _runtime_filter(rows: list[dict], runtime_budget_s) -> list[dict]:
    """Rows of one runtime budget: the one given, or the loosest present (None = no limit)."""
    present = {(_num(r.get("runtime_budget_s"))) for r in rows}
    if runtime_budget_s is None:
        want = None if None in present else max(present)
    else:
        want = float(runtime_budget_s)
        if want not in present:
            raise ValueError(f"runtime_budget_s={runtime_budget_s!r} is not in the rows; present: "
                             f"{sorted(present, key=lambda v: (v is not None, v))}")
    return [r for r in rows if _num(r.get("runtime_budget_s")) == want]


def _feasible(r: dict) -> bool:
    return _num(r.get("energy_j")) is not None


# ---- (a) energy against RAM budget --------------------------------------------------------------

def energy_vs_budget_figure(rows, *, runtime_budget_s=None, strategies=None,
                            title: str | None = None) -> Figure:
    """Energy per training step against the RAM budget, one line per strategy.

    Left: the energy itself, with the store-all energy (horizontal, dashed) and the minimum
    feasible budget (vertical, dotted). Right: the same points as energy above store-all in per
    cent of it, on a log scale, where the strategies' differences (often under 1%) are visible.
    A strategy's infeasible budgets are left out of its line; a strategy infeasible everywhere
    is listed in the legend as such. Lines carry their data (budgets in the axis unit), so
    `ax.lines` can be read back.
    """
    rows = _runtime_filter(rows_of(rows), runtime_budget_s)
    order = _strategy_order(rows, strategies)
    budgets = [int(float(r["ram_budget_bytes"])) for r in rows]
    lo = _num(_first(rows, "min_feasible_ram_bytes"))
    hi = _num(_first(rows, "store_all_peak_bytes"))
    e_all = _num(_first(rows, "store_all_energy_j"))
    energies = [_num(r["energy_j"]) for r in rows if _feasible(r)]
    xs_all = budgets + [v for v in (lo, hi) if v is not None]
    bscale, bname = byte_unit(max(xs_all))
    escale, ename = energy_unit(max(energies + ([e_all] if e_all else [])) if energies
                                else (e_all or 1.0))

    fig, (ax, ax2) = new_figure(12.5, 5.6, ncols=2)
    any_overhead = False
    # POET is drawn first, wide and with large markers, so a baseline that reaches the same
    # energy shows on top of it instead of hiding it
    for s in sorted(order, key=lambda s: s != "poet"):
        pts = sorted((int(float(r["ram_budget_bytes"])), _num(r["energy_j"]))
                     for r in rows if r["strategy"] == s and _feasible(r))
        any_overhead |= _energy_lines(ax, ax2, s, pts, e_all, bscale, escale)
    if e_all is not None:
        ax.axhline(e_all / escale, color="#555555", ls=(0, (6, 3)), lw=1.0, zorder=1,
                   label=f"store-all energy ({format_energy(e_all)})")
    _budget_lines(ax, ax2, lo, hi, bscale, bname)
    ax.set_ylabel(f"energy per training step ({ename})")
    ax.set_title("energy")
    _legend_poet_first(fig, ax)
    ax2.set_ylabel("energy above store-all (% of store-all)")
    ax2.set_title("overhead above store-all (log scale; 0% not drawn)")
    if any_overhead:
        ax2.set_yscale("log")
    else:
        ax2.text(0.5, 0.5, "no strategy spends more than store-all", ha="center", va="center",
                 transform=ax2.transAxes, color="#555555")
    rt = _num(_first(rows, "runtime_budget_s"))
    extra = f", runtime budget {rt:.3g} s" if rt is not None else ""
    fig.suptitle(title or f"{_title_of(rows)}: energy per training step vs RAM budget{extra}")
    return fig


def _energy_lines(ax, ax2, s: str, pts: list, e_all, bscale: float, escale: float) -> bool:
    """Draw strategy s's energy (ax) and overhead (ax2) over its feasible (budget, energy)
    points; return whether it has an overhead drawn."""
    label, style = strategy_style(s)[0], line_style(s)
    if not pts:
        ax.plot([], [], label=f"{label}: infeasible at every budget", **style)
        return False
    x = [b / bscale for b, _ in pts]
    y = [e / escale for _, e in pts]
    ax.plot(x, y, label=label, gid=f"energy:{s}", **style)
    if not e_all:
        return False
    # overheads under 1e-9 of store-all are rounding, not energy: drawn as absent
    over = [(b / bscale, (e - e_all) / e_all * 100) for b, e in pts]
    pos = [(a, o) for a, o in over if o > OVERHEAD_FLOOR_PCT]
    if pos:
        ax2.plot([a for a, _ in pos], [o for _, o in pos], gid=f"overhead:{s}", **style)
    return bool(pos)


def _budget_lines(ax, ax2, lo, hi, bscale: float, bname: str) -> None:
    """The minimum feasible RAM and the store-all peak as vertical lines on both panels."""
    for a in (ax, ax2):
        if lo is not None:
            a.axvline(lo / bscale, color="#B22222", ls=":", lw=1.3, zorder=1,
                      label=f"minimum feasible RAM ({format_bytes(lo)})" if a is ax else None)
        if hi is not None:
            a.axvline(hi / bscale, color="#777777", ls="-.", lw=0.9, zorder=1,
                      label=f"store-all peak RAM ({format_bytes(hi)})" if a is ax else None)
        a.set_xlabel(f"RAM budget ({bname})")
        a.grid(True, alpha=0.3)


def _legend_poet_first(fig: Figure, ax) -> None:
    """The figure's legend from ax's lines, POET's entries first."""
    handles, labels = ax.get_legend_handles_labels()
    first = [k for k, lab in enumerate(labels) if lab.startswith(STRATEGY_STYLE["poet"][0])]
    rest = [k for k in range(len(labels)) if k not in first]
    fig.legend([handles[k] for k in first + rest], [labels[k] for k in first + rest],
               loc="outside lower center", ncol=4, fontsize=8, frameon=False)


def _strategy_order(rows: list[dict], strategies) -> list[str]:
    """The strategies to draw: those given (each must have rows), else those present, in the
    registry's display order (solver.STRATEGIES), unknown names after them."""
    present = []
    for r in rows:
        if r["strategy"] not in present:
            present.append(r["strategy"])
    if strategies is None:
        known = [s for s in STRATEGIES if s in present]
        return known + [s for s in present if s not in known]
    missing = [s for s in strategies if s not in present]
    if missing:
        raise ValueError(f"strategies {missing} have no rows; present: {', '.join(present)}")
    return list(strategies)


def plot_energy_vs_budget(rows, path: str | os.PathLike, *, formats=("png", "svg"),
                          runtime_budget_s=None, strategies=None, title=None) -> list[Path]:
    """Write `energy_vs_budget_figure` to `path` (one file per format); returns the paths."""
    fig = energy_vs_budget_figure(rows, runtime_budget_s=runtime_budget_s, strategies=strategies,
                                  title=title)
    return save_figure(fig, path, formats)


# ---- (d) energy split per budget ----------------------------------------------------------------

def energy_split(rows, strategy: str = "poet", *, runtime_budget_s=None) -> list[dict]:
    """Per RAM budget (ascending), the energy of `strategy` split into one compute pass
    ("compute": the store-all energy), recomputation ("recompute": compute_j minus the
    store-all energy), page-in and page-out, in joules; infeasible budgets have None."""
    rows = _runtime_filter(rows_of(rows), runtime_budget_s)
    mine = [r for r in rows if r["strategy"] == strategy]
    if not mine:
        present = sorted({r["strategy"] for r in rows})
        raise ValueError(f"strategy {strategy!r} has no rows; present: {', '.join(present)}")
    out = []
    for r in sorted(mine, key=lambda r: float(r["ram_budget_bytes"])):
        budget = int(float(r["ram_budget_bytes"]))
        if not _feasible(r):
            out.append({"ram_budget_bytes": budget, "status": r["status"], "compute": None,
                        "recompute": None, "pagein": None, "pageout": None})
            continue
        compute = _num(r.get("compute_j")) or 0.0
        e_all = _num(r.get("store_all_energy_j"))
        once = compute if e_all is None else min(e_all, compute)
        recompute = compute - once
        if recompute <= 1e-12 * once:   # summation-order rounding, not a recompute
            recompute = 0.0
        out.append({"ram_budget_bytes": budget, "status": r["status"], "compute": once,
                    "recompute": recompute, "pagein": _num(r.get("pagein_j")) or 0.0,
                    "pageout": _num(r.get("pageout_j")) or 0.0})
    return out


def energy_split_figure(rows, strategy: str = "poet", *, runtime_budget_s=None,
                        title: str | None = None) -> Figure:
    """Stacked bars per RAM budget of `strategy`'s energy: one compute pass, recomputation,
    page-in, page-out. Left: the whole energy; right: only what lies above store-all
    (recompute + page-in + page-out), where the split is readable even when it is a fraction of
    a per cent of the total. Infeasible budgets are labelled, with no bar."""
    all_rows = rows_of(rows)
    split = energy_split(all_rows, strategy, runtime_budget_s=runtime_budget_s)
    labels = [format_bytes(s["ram_budget_bytes"]).replace(" ", "\u00a0") for s in split]
    x = np.arange(len(split))
    totals = [sum(s[k] for k in _SPLIT_COLOURS) for s in split if s["compute"] is not None]
    extras = [s["recompute"] + s["pagein"] + s["pageout"] for s in split
              if s["compute"] is not None]
    escale, ename = energy_unit(max(totals) if totals else 1.0)
    oscale, oname = energy_unit(max(extras) if extras and max(extras) > 0 else 1.0)
    fig, (ax, ax2) = new_figure(12.5, 5.2, ncols=2)
    names = {"compute": "compute (one pass)", "recompute": "recompute", "pagein": "page-in",
             "pageout": "page-out"}
    for a, keys, scale, unit in ((ax, ("compute", "recompute", "pagein", "pageout"), escale, ename),
                                 (ax2, ("recompute", "pagein", "pageout"), oscale, oname)):
        bottom = np.zeros(len(split))
        for key in keys:
            h = np.array([(s[key] or 0.0) / scale if s[key] is not None else 0.0 for s in split])
            a.bar(x, h, bottom=bottom, color=_SPLIT_COLOURS[key], label=names[key], width=0.7,
                  gid=f"split:{key}")
            bottom += h
        for k, s in enumerate(split):
            if s["compute"] is None:
                a.text(k, 0, s["status"], rotation=90, ha="center", va="bottom", fontsize=8,
                       color="#B22222", transform=a.get_xaxis_transform())
        if a is ax2:   # small bars vanish on a linear axis: print every total
            for k, s in enumerate(split):
                if s["compute"] is not None:
                    a.annotate(format_energy(s["recompute"] + s["pagein"] + s["pageout"]),
                               (k, bottom[k]), xytext=(0, 2), textcoords="offset points",
                               ha="center", va="bottom", fontsize=7)
            a.margins(y=0.1)
        a.set_xticks(x, labels, rotation=30, ha="right", fontsize=8)
        a.set_xlabel("RAM budget")
        a.set_ylabel(f"energy per training step ({unit})")
        a.grid(True, axis="y", alpha=0.3)
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncol=4, fontsize=8,
               frameon=False)
    ax.set_title("whole step")
    ax2.set_title("above store-all (recompute + paging)")
    label = strategy_style(strategy)[0]
    fig.suptitle(title or f"{_title_of(all_rows)}: energy split of {label} per RAM budget")
    return fig


def plot_energy_split(rows, path: str | os.PathLike, strategy: str = "poet", *,
                      formats=("png", "svg"), runtime_budget_s=None, title=None) -> list[Path]:
    """Write `energy_split_figure` to `path` (one file per format); returns the paths."""
    fig = energy_split_figure(rows, strategy, runtime_budget_s=runtime_budget_s, title=title)
    return save_figure(fig, path, formats)


def feasible_budgets(rows, strategy: str) -> list[tuple[int, float | None]]:
    """(RAM budget, runtime budget) of every point where `strategy` has a schedule, at the
    loosest runtime budget present, ascending."""
    loose = _runtime_filter(rows_of(rows), None)
    return sorted((int(float(r["ram_budget_bytes"])), _num(r.get("runtime_budget_s")))
                  for r in loose if r["strategy"] == strategy and _feasible(r))
