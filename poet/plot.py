"""Figures of the memory/energy trade-off: matplotlib Figures drawn off-screen (Agg), saved
atomically.

Each figure has two entry points: ``*_figure(...)`` builds and returns a
`matplotlib.figure.Figure` (for tests and notebooks; nothing is written), and ``plot_*(..., path)``
builds it, writes it in every requested format (PNG and SVG by default) and returns the paths
written. No pyplot, no display, no global backend switch: figures are bound to their own Agg
canvas, so this module is safe in workers, servers and notebooks alike.

- `plot_energy_vs_budget(rows, path)`: energy per step against the RAM budget, one line per
  strategy, the store-all energy as a horizontal line and the minimum feasible budget as a
  vertical one (POET's trade-off figure).
- `plot_energy_split(rows, path, strategy="poet")`: per budget, the energy of one strategy split
  into the one-pass compute, recomputation, page-in and page-out, as stacked bars.
- `plot_schedule_matrices(problem, schedule, path)`: the schedule as three node x stage matrices
  (computed, in RAM, on flash), as Checkmate and POET draw them; a stage is one compute
  instruction (see `schedule_matrices`).
- `plot_ram_trace(problem, schedule, path)`: RAM in use during each instruction against the
  budget, page-outs, page-ins and recomputations marked.
- `plot_sweep(result, out_dir)`: all four for a `poet.sweep.SweepResult`.

`rows` are sweep rows (dicts with the columns of `poet.sweep.COLUMNS`, as `SweepResult.rows`
holds them or as read back from sweep.csv, where empty cells mean "none") or a SweepResult.
Units on the axes are picked from the data (B/KiB/MiB/GiB, nJ/µJ/mJ/J/kJ).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

import solver
from solver import Problem, Schedule
from solver.problem import atomic_file

from .units import format_bytes, format_energy

__all__ = [
    "FORMATS", "STRATEGY_STYLE", "byte_unit", "energy_unit", "save_figure",
    "schedule_matrices", "energy_vs_budget_figure", "plot_energy_vs_budget",
    "energy_split_figure", "plot_energy_split", "schedule_matrices_figure",
    "plot_schedule_matrices", "ram_trace_figure", "plot_ram_trace", "plot_sweep",
]

_log = logging.getLogger(__name__)

FORMATS = ("png", "svg", "pdf")

# strategy -> (label, colour, marker, line style); colours from the colour-blind-safe Okabe-Ito set
STRATEGY_STYLE: dict[str, tuple[str, str, str, str]] = {
    "poet": ("POET (remat + paging)", "#000000", "o", "-"),
    "remat": ("remat only (Checkmate)", "#0072B2", "s", "--"),
    "paging": ("paging only", "#D55E00", "^", "--"),
    "greedy_paging": ("greedy paging", "#E69F00", "v", ":"),
    "dtr": ("DTR", "#009E73", "D", ":"),
    "sqrtn": ("sqrt(n) checkpoints", "#CC79A7", "P", ":"),
    "store_all": ("store all", "#56B4E9", "X", ":"),
}
OVERHEAD_FLOOR_PCT = 1e-7   # overheads below this (1e-9 of store-all) are float rounding
_SPLIT_COLOURS = {"compute": "#9E9E9E", "recompute": "#0072B2", "pagein": "#E69F00",
                  "pageout": "#D55E00"}


# ---- units --------------------------------------------------------------------------------------

def byte_unit(max_bytes: float) -> tuple[float, str]:
    """(scale, name) of the binary unit in which `max_bytes` reads 1 .. 1023: B, KiB, MiB, GiB."""
    units = [(1.0, "B"), (2.0**10, "KiB"), (2.0**20, "MiB"), (2.0**30, "GiB"), (2.0**40, "TiB")]
    best = units[0]
    for scale, name in units:
        if abs(max_bytes) >= scale:
            best = (scale, name)
    return best


def energy_unit(max_joules: float) -> tuple[float, str]:
    """(scale, name) of the unit in which `max_joules` reads as 1 .. 999: nJ, µJ, mJ, J, kJ."""
    units = [(1e-9, "nJ"), (1e-6, "µJ"), (1e-3, "mJ"), (1.0, "J"), (1e3, "kJ")]
    best = units[0]
    for scale, name in units:
        if abs(max_joules) >= scale:
            best = (scale, name)
    return best


# ---- saving -------------------------------------------------------------------------------------

def _formats(formats: Iterable[str]) -> list[str]:
    if isinstance(formats, str):
        formats = [formats]
    out = []
    for f in formats:
        f = str(f).lower().lstrip(".")
        if f not in FORMATS:
            raise ValueError(f"formats: {f!r} is not one of {', '.join(FORMATS)}")
        if f not in out:
            out.append(f)
    if not out:
        raise ValueError(f"formats is empty; give one or more of {', '.join(FORMATS)}")
    return out


def save_figure(fig: Figure, path: str | os.PathLike, formats: Iterable[str] = ("png", "svg"),
                *, dpi: int = 150) -> list[Path]:
    """Write `fig` once per format next to `path` (its suffix, if one of png/svg/pdf, is
    replaced: "out/energy.png" -> out/energy.png and out/energy.svg) and return the paths.

    Each file is written to a temp file in the same folder and renamed into place, so a reader
    never sees a half-written figure. The folder is created if needed.
    """
    p = Path(path)
    if p.suffix.lower().lstrip(".") in FORMATS:
        p = p.with_suffix("")
    p.parent.mkdir(parents=True, exist_ok=True)
    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    written = []
    for fmt in _formats(formats):
        target = p.with_name(p.name + "." + fmt)
        with atomic_file(target, "wb") as f:
            fig.savefig(f, format=fmt, dpi=dpi, bbox_inches="tight",
                        metadata={"Date": None} if fmt == "svg" else None)
        written.append(target)
    return written


def _new_figure(width: float, height: float, ncols: int = 1, **kw) -> tuple[Figure, Any]:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols, **kw)
    return fig, axes


# ---- reading sweep rows -------------------------------------------------------------------------

def _rows(rows_or_result) -> list[dict]:
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
                                 f"of poet.sweep.COLUMNS)")
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
    rows = _runtime_filter(_rows(rows), runtime_budget_s)
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

    fig, (ax, ax2) = _new_figure(12.5, 5.6, ncols=2)
    any_overhead = False
    # POET is drawn first, wide and with large markers, so a baseline that reaches the same
    # energy shows on top of it instead of hiding it
    for s in sorted(order, key=lambda s: s != "poet"):
        pts = sorted((int(float(r["ram_budget_bytes"])), _num(r["energy_j"]))
                     for r in rows if r["strategy"] == s and _feasible(r))
        label, colour, marker, ls = STRATEGY_STYLE.get(s, (s, None, "o", "-"))
        style = _line_style(s, colour, marker, ls)
        if not pts:
            ax.plot([], [], label=f"{label}: infeasible at every budget", **style)
            continue
        x = [b / bscale for b, _ in pts]
        y = [e / escale for _, e in pts]
        ax.plot(x, y, label=label, gid=f"energy:{s}", **style)
        if e_all:
            # overheads under 1e-9 of store-all are rounding, not energy: drawn as absent
            over = [(b / bscale, (e - e_all) / e_all * 100) for b, e in pts]
            pos = [(a, o) for a, o in over if o > OVERHEAD_FLOOR_PCT]
            any_overhead |= bool(pos)
            if pos:
                ax2.plot([a for a, _ in pos], [o for _, o in pos], gid=f"overhead:{s}", **style)
    if e_all is not None:
        ax.axhline(e_all / escale, color="#555555", ls=(0, (6, 3)), lw=1.0, zorder=1,
                   label=f"store-all energy ({format_energy(e_all)})")
    for a in (ax, ax2):
        if lo is not None:
            a.axvline(lo / bscale, color="#B22222", ls=":", lw=1.3, zorder=1,
                      label=f"minimum feasible RAM ({format_bytes(lo)})" if a is ax else None)
        if hi is not None:
            a.axvline(hi / bscale, color="#777777", ls="-.", lw=0.9, zorder=1,
                      label=f"store-all peak RAM ({format_bytes(hi)})" if a is ax else None)
        a.set_xlabel(f"RAM budget ({bname})")
        a.grid(True, alpha=0.3)
    ax.set_ylabel(f"energy per training step ({ename})")
    ax.set_title("energy")
    handles, labels = ax.get_legend_handles_labels()
    first = [k for k, lab in enumerate(labels) if lab.startswith(STRATEGY_STYLE["poet"][0])]
    rest = [k for k in range(len(labels)) if k not in first]
    fig.legend([handles[k] for k in first + rest], [labels[k] for k in first + rest],
               loc="outside lower center", ncol=4, fontsize=8, frameon=False)
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


def _line_style(strategy: str, colour, marker: str, ls: str) -> dict:
    """POET wide and translucent underneath; the other MILP strategies with small filled
    markers; heuristics with large hollow markers, so coinciding points stay distinguishable."""
    if strategy == "poet":
        return dict(color=colour, marker=marker, ls=ls, lw=3.2, ms=10, zorder=2, alpha=0.5)
    if strategy in ("remat", "paging"):
        return dict(color=colour, marker=marker, ls=ls, lw=1.5, ms=5, zorder=4)
    return dict(color=colour, marker=marker, ls=ls, lw=1.1, ms=9, mfc="none", mew=1.4, zorder=3)


def _strategy_order(rows: list[dict], strategies) -> list[str]:
    present = []
    for r in rows:
        if r["strategy"] not in present:
            present.append(r["strategy"])
    if strategies is None:
        known = [s for s in STRATEGY_STYLE if s in present]
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
    rows = _runtime_filter(_rows(rows), runtime_budget_s)
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
    all_rows = _rows(rows)
    split = energy_split(all_rows, strategy, runtime_budget_s=runtime_budget_s)
    labels = [format_bytes(s["ram_budget_bytes"]).replace(" ", "\u00a0") for s in split]
    x = np.arange(len(split))
    totals = [sum(s[k] for k in _SPLIT_COLOURS) for s in split if s["compute"] is not None]
    extras = [s["recompute"] + s["pagein"] + s["pageout"] for s in split
              if s["compute"] is not None]
    escale, ename = energy_unit(max(totals) if totals else 1.0)
    oscale, oname = energy_unit(max(extras) if extras and max(extras) > 0 else 1.0)
    fig, (ax, ax2) = _new_figure(12.5, 5.2, ncols=2)
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
    label = STRATEGY_STYLE.get(strategy, (strategy,))[0]
    fig.suptitle(title or f"{_title_of(all_rows)}: energy split of {label} per RAM budget")
    return fig


def plot_energy_split(rows, path: str | os.PathLike, strategy: str = "poet", *,
                      formats=("png", "svg"), runtime_budget_s=None, title=None) -> list[Path]:
    """Write `energy_split_figure` to `path` (one file per format); returns the paths."""
    fig = energy_split_figure(rows, strategy, runtime_budget_s=runtime_budget_s, title=title)
    return save_figure(fig, path, formats)


# ---- (b) schedule matrices ----------------------------------------------------------------------

def schedule_matrices(problem: Problem, schedule: Schedule) -> dict[str, np.ndarray]:
    """The schedule as three T x S matrices of small ints, S = number of compute instructions.

    Stage k is the k-th compute instruction together with the page-ins placed before it (since
    the previous compute) and the page-outs placed after it (up to the next compute).

    - "computed"[i, k]: 1 if stage k computes node i for the first time, 2 if it recomputes it.
    - "ram"[i, k]: node i is resident in RAM while stage k's compute runs (its operands and what
      is kept, not its own output): 1 kept from an earlier stage, 2 paged in during stage k.
    - "flash"[i, k]: node i is on flash at the end of stage k: 1 from an earlier stage, 2
      written (paged out) in stage k.

    The schedule is validated with `solver.simulate` first (budgets not enforced), so a broken
    schedule raises solver.ScheduleError naming the instruction.
    """
    solver.simulate(problem, schedule, check_budgets=False)
    T = problem.T
    n_stages = schedule.count("compute")
    computed = np.zeros((T, n_stages), dtype=np.int8)
    ram = np.zeros((T, n_stages), dtype=np.int8)
    flash = np.zeros((T, n_stages), dtype=np.int8)
    in_ram: set[int] = set()
    on_flash: set[int] = set()
    paged_in: set[int] = set()
    seen: set[int] = set()
    k = -1
    for op, i in schedule.instructions:
        if op == "compute":
            k += 1
            computed[i, k] = 2 if i in seen else 1
            seen.add(i)
            for j in in_ram:
                ram[j, k] = 2 if j in paged_in else 1
            for j in on_flash:
                flash[j, k] = 1
            paged_in = set()
            in_ram.add(i)
        elif op == "page_in":
            in_ram.add(i)
            paged_in.add(i)
        elif op == "free":
            in_ram.discard(i)
            paged_in.discard(i)
        elif op == "page_out":
            on_flash.add(i)
            if k >= 0:
                flash[i, k] = 2
        else:  # drop_flash
            on_flash.discard(i)
            if k >= 0 and flash[i, k] == 1:
                flash[i, k] = 0
    return {"computed": computed, "ram": ram, "flash": flash}


def _model_device(problem: Problem) -> str:
    model = problem.extra.get("model") or (problem.name.split("@")[0] if problem.name else "")
    device = problem.extra.get("device") or (problem.name.split("@")[1]
                                             if "@" in problem.name else "")
    model = model or "problem"
    return f"{model} on {device}" if device else model


def _budget_text(problem: Problem, schedule: Schedule) -> str:
    b = schedule.ram_budget_bytes if schedule.ram_budget_bytes is not None \
        else problem.ram_budget_bytes
    return f"RAM budget {format_bytes(b)}" if b is not None else "no RAM budget"


def schedule_matrices_figure(problem: Problem, schedule: Schedule, *,
                             title: str | None = None) -> Figure:
    """Three panels, nodes (rows, node 0 at the top) by stages (columns): what each stage
    computes, what it holds in RAM and what is on flash (`schedule_matrices` defines them).
    The last forward node (before the loss) is marked by a horizontal line."""
    mats = schedule_matrices(problem, schedule)
    T, S = mats["computed"].shape
    panels = [
        ("computed", "computed", ("#FFFFFF", "#222222", "#D55E00"),
         ("first compute", "recompute")),
        ("ram", "in RAM", ("#FFFFFF", "#0072B2", "#E69F00"), ("kept", "paged in this stage")),
        ("flash", "on flash", ("#FFFFFF", "#009E73", "#CC79A7"),
         ("on flash", "paged out this stage")),
    ]
    width = min(18.0, 4.0 + 3 * max(2.2, S / 40))
    height = min(10.0, 2.6 + T / 22)
    fig, axes = _new_figure(width, height, ncols=3, sharey=True)
    loss = [n.id for n in problem.nodes if n.kind == "loss"]
    for ax, (key, name, colours, legend) in zip(axes, panels):
        ax.imshow(mats[key], cmap=ListedColormap(colours), vmin=0, vmax=2, aspect="auto",
                  interpolation="nearest", extent=(-0.5, S - 0.5, T - 0.5, -0.5))
        counts = [(mats[key] == 1).sum(), (mats[key] == 2).sum()]
        ax.legend(handles=[Patch(facecolor=colours[1], label=f"{legend[0]} ({counts[0]})"),
                           Patch(facecolor=colours[2], label=f"{legend[1]} ({counts[1]})")],
                  loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=1, fontsize=8,
                  frameon=False)
        if loss:
            ax.axhline(loss[0] - 0.5, color="#B22222", lw=0.8, ls="--")
        ax.set_title(name)
        ax.set_xlabel("stage (compute instruction)")
        for spine in ax.spines.values():
            spine.set_color("#888888")
    axes[0].set_ylabel("node id (red dashed line: the loss)" if loss else "node id")
    fig.suptitle(title or f"{_model_device(problem)}: {schedule.strategy} schedule, "
                          f"{_budget_text(problem, schedule)} ({S} stages, {T} nodes)")
    return fig


def plot_schedule_matrices(problem: Problem, schedule: Schedule, path: str | os.PathLike, *,
                           formats=("png", "svg"), title=None) -> list[Path]:
    """Write `schedule_matrices_figure` to `path` (one file per format); returns the paths."""
    return save_figure(schedule_matrices_figure(problem, schedule, title=title), path, formats)


# ---- (c) RAM over the instructions --------------------------------------------------------------

def ram_trace_figure(problem: Problem, schedule: Schedule, *, title: str | None = None) -> Figure:
    """RAM in use during each instruction (`SimReport.ram_trace`: operands, output and workspace
    of a compute together) as a step line, the budget as a red dashed line, the static bytes as
    a grey band, and markers on page-outs, page-ins and recomputations. The y axis starts just
    below the static bytes when they are most of the RAM, so the activations stay visible."""
    rep = solver.simulate(problem, schedule, check_budgets=False)
    trace = np.array(rep.ram_trace, dtype=float)
    n = len(trace)
    budget = schedule.ram_budget_bytes if schedule.ram_budget_bytes is not None \
        else problem.ram_budget_bytes
    top = max([rep.peak_ram_bytes] + ([budget] if budget is not None else []))
    scale, unit = byte_unit(top)
    fig, ax = _new_figure(11.0, 5.0)
    x = np.arange(n)
    ax.step(x, trace / scale, where="mid", color="#0072B2", lw=1.3,
            label="RAM in use during the instruction", gid="ram")
    static = problem.static_bytes
    floor = 0.0
    if static > 0.5 * top:
        floor = max(0.0, static - 0.15 * (top - static) - 1) / scale
    ax.axhspan(floor, static / scale, color="#DDDDDD", zorder=0,
               label=f"static ({format_bytes(static)}: parameters, gradients, state)")
    if budget is not None:
        ax.axhline(budget / scale, color="#B22222", ls="--", lw=1.3,
                   label=f"RAM budget ({format_bytes(budget)})")
    seen: set[int] = set()
    marks: dict[str, list[int]] = {"page_out": [], "page_in": [], "recompute": []}
    for k, (op, i) in enumerate(schedule.instructions):
        if op == "compute":
            if i in seen:
                marks["recompute"].append(k)
            seen.add(i)
        elif op in ("page_out", "page_in"):
            marks[op].append(k)
    styles = {"page_out": ("v", "#D55E00", "page-out"), "page_in": ("^", "#E69F00", "page-in"),
              "recompute": ("x", "#000000", "recompute")}
    for key, ks in marks.items():
        marker, colour, label = styles[key]
        ax.plot(ks, trace[ks] / scale if ks else [], ls="none", marker=marker, color=colour,
                ms=6, mew=1.5 if marker == "x" else 0.8, label=f"{label} ({len(ks)})", gid=key)
    ax.set_ylim(bottom=floor, top=top / scale + 0.06 * (top / scale - floor))
    ax.set_xlim(-0.5, n - 0.5)
    ax.set_xlabel("instruction")
    ax.set_ylabel(f"RAM in use ({unit})")
    ax.grid(True, alpha=0.3)
    fig.legend(loc="outside lower center", ncol=4, fontsize=8, frameon=False)
    fig.suptitle(title or f"{_model_device(problem)}: RAM over the {schedule.strategy} schedule, "
                          f"{_budget_text(problem, schedule)}, peak "
                          f"{format_bytes(rep.peak_ram_bytes)}, "
                          f"energy {format_energy(rep.energy_j)}")
    return fig


def plot_ram_trace(problem: Problem, schedule: Schedule, path: str | os.PathLike, *,
                   formats=("png", "svg"), title=None) -> list[Path]:
    """Write `ram_trace_figure` to `path` (one file per format); returns the paths."""
    return save_figure(ram_trace_figure(problem, schedule, title=title), path, formats)


# ---- all of them --------------------------------------------------------------------------------

def plot_sweep(result, out_dir: str | os.PathLike, *, strategy: str = "poet",
               ram_budget_bytes: int | None = None,
               formats=("png", "svg")) -> dict[str, list[Path]]:
    """Write the four figures of a `poet.sweep.SweepResult` into `out_dir` and return
    {figure name: paths}: energy_vs_budget, energy_split_<strategy>, and, for `strategy`'s
    schedule at the tightest budget where it is feasible (or at `ram_budget_bytes`),
    schedule_matrices_<strategy> and ram_trace_<strategy>. The last two need the problem and that
    schedule (`result.problem`, `result.schedule(strategy, budget)`); they are skipped (and the
    reason logged at INFO level) when the result has none, for instance when the strategy is
    infeasible at every budget. Raises ValueError if `ram_budget_bytes` is not a budget where
    `strategy` has a schedule."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = _rows(result)
    written: dict[str, list[Path]] = {"energy_vs_budget": plot_energy_vs_budget(
        rows, out / "energy_vs_budget", formats=formats)}
    skipped: list[str] = []
    if any(r["strategy"] == strategy for r in rows):
        written[f"energy_split_{strategy}"] = plot_energy_split(
            rows, out / f"energy_split_{strategy}", strategy, formats=formats)
    else:
        skipped.append(f"energy_split_{strategy}: no {strategy} rows")
    loose = _runtime_filter(rows, None)
    feasible = sorted((int(float(r["ram_budget_bytes"])), _num(r.get("runtime_budget_s")))
                      for r in loose if r["strategy"] == strategy and _feasible(r))
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
