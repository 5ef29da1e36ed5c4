"""The figures of one schedule: its node x stage matrices, and its RAM over the instructions.

- `schedule_matrices_figure(problem, schedule)`: the schedule as three node x stage matrices
  (computed, in RAM, on flash), as Checkmate and POET draw them; a stage is one compute
  instruction (see `schedule_matrices`).
- `ram_trace_figure(problem, schedule)`: RAM in use during each instruction against the budget,
  page-outs, page-ins and recomputations marked.

Nodes are shown by their layer names (the problem's node names), not their ids: the matrices'
rows are labelled with names, thinned to what the figure's height can show (`node_ticks`), the
RAM trace names the node of its peak and, where there are few, of every marked instruction; the
SVG files carry the full names (and what the schedule does to each node) as hover tooltips.

Both read the schedule through the simulator (`solver.Machine`, `solver.simulate`), so a broken
schedule raises solver.ScheduleError naming the instruction. ``plot_*(..., path)`` writes a
figure (`poet.figures.save_figure`) and returns the paths.
"""

from __future__ import annotations

import os
from pathlib import Path

import math

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle
from matplotlib.transforms import ScaledTranslation

import solver
from solver import Machine, Problem, Schedule
from solver.simulate import check_fingerprint

from .figures import add_tooltip, byte_unit, new_figure, save_figure, short_name
from .sweepfiles import model_device
from .units import format_bytes, format_energy

__all__ = ["schedule_matrices", "schedule_matrices_figure", "plot_schedule_matrices",
           "ram_trace_figure", "plot_ram_trace", "node_ticks", "label_marks"]

LABEL_PT = 7.0          # font size of node-name tick labels
MARK_SPACING = 70       # the RAM trace names marked instructions at least 1/70 of the axis apart
TRACE_TIPS = 2000       # ... and gives every instruction a tooltip up to this many


# ---- schedule matrices --------------------------------------------------------------------------

def schedule_matrices(problem: Problem, schedule: Schedule) -> dict[str, np.ndarray]:
    """The schedule as three T x S matrices of small ints, S = number of compute instructions.

    Stage k is the k-th compute instruction together with the page-ins placed before it (since
    the previous compute) and the page-outs placed after it (up to the next compute).

    - "computed"[i, k]: 1 if stage k computes node i for the first time, 2 if it recomputes it.
    - "ram"[i, k]: node i is resident in RAM while stage k's compute runs (its operands and what
      is kept, not its own output): 1 kept from an earlier stage, 2 paged in during stage k.
    - "flash"[i, k]: node i is on flash at the end of stage k: 1 from an earlier stage, 2
      written (paged out) in stage k.

    The schedule is walked by `solver.Machine` (budgets not enforced), so a broken schedule
    raises solver.ScheduleError naming the instruction.
    """
    check_fingerprint(problem, schedule)
    T = problem.T
    n_stages = schedule.count("compute")
    computed = np.zeros((T, n_stages), dtype=np.int8)
    ram = np.zeros((T, n_stages), dtype=np.int8)
    flash = np.zeros((T, n_stages), dtype=np.int8)
    m = Machine(problem, check_budgets=False)
    paged_in: set[int] = set()     # paged in since the last compute and still in RAM
    k = -1
    for op, i in schedule.instructions:
        if op == "compute":        # the state before it runs: its operands and what is kept
            k += 1
            computed[i, k] = 2 if m.computed[i] else 1
            for j in m.resident():
                ram[j, k] = 2 if j in paged_in else 1
            for j in m.flashed():
                flash[j, k] = 1
            paged_in = set()
        m.apply(op, i)
        if op == "page_in":
            paged_in.add(i)
        elif op == "free":
            paged_in.discard(i)
        elif op == "page_out" and k >= 0:
            flash[i, k] = 2
        elif op == "drop_flash" and k >= 0 and flash[i, k] == 1:
            flash[i, k] = 0
    m.finish()
    return {"computed": computed, "ram": ram, "flash": flash}


def _title(problem: Problem) -> str:
    """"model on device" (or the model alone) of a problem."""
    model, device = model_device(problem)
    return f"{model} on {device}" if device else model


def _budget_text(problem: Problem, schedule: Schedule) -> str:
    b = schedule.ram_budget_bytes if schedule.ram_budget_bytes is not None \
        else problem.ram_budget_bytes
    return f"RAM budget {format_bytes(b)}" if b is not None else "no RAM budget"


def node_ticks(problem: Problem, max_labels: int) -> tuple[list[int], list[str]]:
    """(positions, labels) of at most `max_labels` node-name tick labels: every k-th node from
    node 0, k as small as fits, names cut in the middle to 28 characters (`short_name`)."""
    if isinstance(max_labels, bool) or not isinstance(max_labels, int) or max_labels < 1:
        raise ValueError(f"max_labels must be a whole number >= 1, got {max_labels!r}")
    step = math.ceil(problem.T / max_labels)
    ticks = list(range(0, problem.T, step))
    return ticks, [short_name(problem.nodes[i].name) for i in ticks]


def _row_tooltip(problem: Problem, mats: dict[str, np.ndarray], i: int) -> str:
    n = problem.nodes[i]
    c, r, f = mats["computed"][i], mats["ram"][i], mats["flash"][i]
    return (f"{n.name} (node {i}, {n.kind}, {format_bytes(n.out_bytes)}): computed "
            f"{int((c > 0).sum())}x, held in RAM during {int((r > 0).sum())} stages "
            f"(paged in for {int((r == 2).sum())}), paged out {int((f == 2).sum())}x")


def schedule_matrices_figure(problem: Problem, schedule: Schedule, *,
                             title: str | None = None) -> Figure:
    """Three panels, nodes (rows, node 0 at the top) by stages (columns): what each stage
    computes, what it holds in RAM and what is on flash (`schedule_matrices` defines them).
    The loss is marked by a horizontal line. Rows are labelled by layer name (as many as the
    height shows, `node_ticks`); in SVG each row's tooltip names its node and what the
    schedule does to it."""
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
    fig, axes = new_figure(width, height, ncols=3, sharey=True)
    loss = [n.id for n in problem.nodes if n.kind == "loss"]
    for ax, (key, name, colours, legend) in zip(axes, panels):
        # the legend hangs below the stage axis' label: 0.42 inch under the panel
        below = ax.transAxes + ScaledTranslation(0, -0.42, fig.dpi_scale_trans)
        ax.imshow(mats[key], cmap=ListedColormap(colours), vmin=0, vmax=2, aspect="auto",
                  interpolation="nearest", extent=(-0.5, S - 0.5, T - 0.5, -0.5))
        counts = [(mats[key] == 1).sum(), (mats[key] == 2).sum()]
        ax.legend(handles=[Patch(facecolor=colours[1], label=f"{legend[0]} ({counts[0]})"),
                           Patch(facecolor=colours[2], label=f"{legend[1]} ({counts[1]})")],
                  loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=1, fontsize=8,
                  frameon=False, bbox_transform=below)
        if loss:
            ax.axhline(loss[0] - 0.5, color="#B22222", lw=0.8, ls="--")
        ax.set_title(name)
        ax.set_xlabel("stage (compute instruction)")
        for spine in ax.spines.values():
            spine.set_color("#888888")
        for i in range(T):      # invisible rows that carry the tooltips in SVG
            row = Rectangle((-0.5, i - 0.5), S, 1.0, facecolor="none", edgecolor="none")
            ax.add_patch(row)
            add_tooltip(fig, row, _row_tooltip(problem, mats, i))
    # rows of the panels' usable height (about 70% of the figure), one label per 1.5 lines
    max_labels = max(1, int(0.7 * height * 72 / (LABEL_PT * 1.5)))
    ticks, labels = node_ticks(problem, max_labels)
    axes[0].set_yticks(ticks, labels, fontsize=LABEL_PT)
    axes[0].set_ylim(T - 0.5, -0.5)
    every = "" if len(ticks) == T else f", one name every {ticks[1] - ticks[0]} rows"
    axes[0].set_ylabel(f"layer{every}" + (" (red dashed line: the loss)" if loss else ""))
    fig.suptitle(title or f"{_title(problem)}: {schedule.strategy} schedule, "
                          f"{_budget_text(problem, schedule)} ({S} stages, {T} nodes)")
    return fig


def plot_schedule_matrices(problem: Problem, schedule: Schedule, path: str | os.PathLike, *,
                           formats=("png", "svg"), title=None) -> list[Path]:
    """Write `schedule_matrices_figure` to `path` (one file per format); returns the paths."""
    return save_figure(schedule_matrices_figure(problem, schedule, title=title), path, formats)


# ---- RAM over the instructions --------------------------------------------------------------

def ram_trace_figure(problem: Problem, schedule: Schedule, *, title: str | None = None) -> Figure:
    """RAM in use during each instruction (`SimReport.ram_trace`: operands, output and workspace
    of a compute together) as a step line, the budget as a red dashed line, the static bytes as
    a grey band, and markers on page-outs, page-ins and recomputations. The y axis starts just
    below the static bytes when they are most of the RAM, so the activations stay visible.
    The peak is starred and its legend entry names its instruction and layer; the marks are
    labelled with their layer names where there is room (`label_marks`); in SVG every instruction (up to TRACE_TIPS of them, else
    the marked ones) has a tooltip: its index, op, layer name and RAM in use."""
    rep = solver.simulate(problem, schedule, check_budgets=False)
    trace = np.array(rep.ram_trace, dtype=float)
    n = len(trace)
    budget = schedule.ram_budget_bytes if schedule.ram_budget_bytes is not None \
        else problem.ram_budget_bytes
    top = max([rep.peak_ram_bytes] + ([budget] if budget is not None else []))
    scale, unit = byte_unit(top)
    fig, ax = new_figure(11.0, 5.0)
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
    names = [problem.nodes[i].name for _, i in schedule.instructions]
    for k in label_marks([k for ks in marks.values() for k in ks], n):
        key = next(key for key, ks in marks.items() if k in ks)
        ax.annotate(short_name(names[k], 20), (k, trace[k] / scale), xytext=(0, 6),
                    textcoords="offset points", rotation=90, ha="center", va="bottom",
                    fontsize=6, color=styles[key][1], gid=f"mark-label-{k}")
    kp = rep.peak_index if rep.peak_index >= 0 else 0
    op_p = schedule.instructions[kp][0]
    ax.plot([kp], [trace[kp] / scale], ls="none", marker="*", ms=11, color="#0072B2",
            mec="white", mew=0.6, zorder=5, gid="peak",
            label=f"peak {format_bytes(rep.peak_ram_bytes)}: instruction {kp}, "
                  f"{op_p.replace('_', '-')} {short_name(names[kp], 40)}")
    tip_ks = range(n) if n <= TRACE_TIPS else sorted({kp, *(k for ks in marks.values()
                                                              for k in ks)})
    kinds = {k: key for key, ks in marks.items() for k in ks}
    for k in tip_ks:
        op, i = schedule.instructions[k]
        what = "recompute" if kinds.get(k) == "recompute" else op.replace("_", "-")
        col = Rectangle((k - 0.5, floor), 1.0, trace[k] / scale - floor, facecolor="none",
                        edgecolor="none")
        ax.add_patch(col)
        add_tooltip(fig, col, f"instruction {k}: {what} {names[k]} (node {i}), RAM in use "
                              f"{format_bytes(int(trace[k]))}")
    ax.set_ylim(bottom=floor, top=top / scale + 0.06 * (top / scale - floor))
    ax.set_xlim(-0.5, n - 0.5)
    ax.set_xlabel("instruction")
    ax.set_ylabel(f"RAM in use ({unit})")
    ax.grid(True, alpha=0.3)
    fig.legend(loc="outside lower center", ncol=4, fontsize=8, frameon=False)
    fig.suptitle(title or f"{_title(problem)}: RAM over the {schedule.strategy} schedule, "
                          f"{_budget_text(problem, schedule)}, peak "
                          f"{format_bytes(rep.peak_ram_bytes)}, "
                          f"energy {format_energy(rep.energy_j)}")
    return fig


def label_marks(ks: list[int], n: int, spacing: int = MARK_SPACING) -> list[int]:
    """The marked instructions (of `n`) that get a name label: left to right, each at least
    n / spacing instructions after the last one labelled, so that labels do not overlap."""
    gap = max(1.0, n / spacing)
    out: list[int] = []
    for k in sorted(set(ks)):
        if not out or k - out[-1] >= gap:
            out.append(k)
    return out


def plot_ram_trace(problem: Problem, schedule: Schedule, path: str | os.PathLike, *,
                   formats=("png", "svg"), title=None) -> list[Path]:
    """Write `ram_trace_figure` to `path` (one file per format); returns the paths."""
    return save_figure(ram_trace_figure(problem, schedule, title=title), path, formats)
