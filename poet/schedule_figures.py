"""The figures of one schedule: its node x stage matrices, and its RAM over the instructions.

- `schedule_matrices_figure(problem, schedule)`: the schedule as three node x stage matrices
  (computed, in RAM, on flash), as Checkmate and POET draw them; a stage is one compute
  instruction (see `schedule_matrices`).
- `ram_trace_figure(problem, schedule)`: RAM in use during each instruction against the budget,
  page-outs, page-ins and recomputations marked.

Both read the schedule through the simulator (`solver.Machine`, `solver.simulate`), so a broken
schedule raises solver.ScheduleError naming the instruction. ``plot_*(..., path)`` writes a
figure (`poet.figures.save_figure`) and returns the paths.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

import solver
from solver import Machine, Problem, Schedule
from solver.simulate import check_fingerprint

from .figures import byte_unit, new_figure, save_figure
from .sweepfiles import model_device
from .units import format_bytes, format_energy

__all__ = ["schedule_matrices", "schedule_matrices_figure", "plot_schedule_matrices",
           "ram_trace_figure", "plot_ram_trace"]


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
    fig, axes = new_figure(width, height, ncols=3, sharey=True)
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
    below the static bytes when they are most of the RAM, so the activations stay visible."""
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


def plot_ram_trace(problem: Problem, schedule: Schedule, path: str | os.PathLike, *,
                   formats=("png", "svg"), title=None) -> list[Path]:
    """Write `ram_trace_figure` to `path` (one file per format); returns the paths."""
    return save_figure(ram_trace_figure(problem, schedule, title=title), path, formats)
