"""Which way of training a model fits a device, and at what energy: `poet fit` (issue #13).

``fit(model, device)`` tries the training choices that matter on a small device and returns one
row per choice and device:

* what trains (``train``): ``all``; ``bias`` (only ``*.bias`` parameters, TinyTL); ``last`` (the
  last module that owns parameters, TinyOL); and sparse updates ``last1``, ``last2``, ``last4``...:
  the parameters of the last k *blocks* (see `model_blocks`);
* where the frozen weights live (``weights``): ``ram`` or ``flash`` (read in place from the
  program flash; only where there are frozen weights and the device has a program flash);
* how gradients are applied (``update``): ``buffered`` (PyTorch's ``backward(); opt.step()``)
  or ``fused`` (each gradient applied as soon as it exists; no gradient buffers);
* optionally (``fold_bn=True``) the frozen BatchNorms folded into the layers before them
  (`poet.fold.fold_frozen_batchnorm`), as a deployed model would run them.

Storage dtypes are not among the choices: `poet.extract` traces the model in the dtype it is
in, so every row is priced at the model's own element sizes.

Per row: the static split (trained parameters, gradient buffers, optimizer state, buffers,
the batch, frozen bytes and where they are), the minimum RAM any schedule needs
(`solver.min_feasible_ram`), the store-all peak, the device's usable RAM, whether the row fits
(minimum RAM <= usable RAM, and frozen weights kept in flash fit in the program flash beside the
firmware) and, where it fits, the least energy and time per step of the POET schedule solved at
the usable RAM (a short time limit; its gap is reported), and the steps a battery gives.

Cost: the model is traced once per (train, update) choice; weights and the device only change
how the graph is priced, and only rows that fit are solved. Rows are sorted per device: the
fitting ones by energy per step, then the rest by how many bytes they miss by.
`cheapest_fix` names the least change to a choice that does not fit which makes it fit.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import solver
from .costs import graph_to_problem, make_problem
from .fit_choices import SPARSE_KS, TRAIN_BASICS, model_blocks, parse_battery, train_choices
from .profiles import Profile, list_profiles, load_profile
from .units import format_bytes, format_energy, format_time

__all__ = ["FitRow", "FitReport", "fit", "fit_rows", "fit_table", "fit_json",
           "model_blocks", "train_choices", "parse_battery", "SPARSE_KS"]

WEIGHTS = ("ram", "flash")
UPDATES = ("buffered", "fused")
FIT_FORMAT = "poet-fit/1"


# =========================================================================== rows


@dataclass
class FitRow:
    """One training choice on one device. Bytes, joules, seconds.

    ``trained_params`` .. ``constants`` are the graph's static split; ``frozen_in_flash`` is the
    part of ``frozen_params`` kept in the program flash (all of it with ``weights="flash"``);
    ``static_ram_bytes`` what stays in RAM. ``min_ram_bytes`` and ``store_all_peak_bytes`` are
    peaks with the weights placed as the row says, of the step and, with a buffered update, of
    the ``opt.step()`` after it (static bytes plus its temporaries, ``optimizer_step_bytes``:
    Adam's square root and quotient of the largest parameter). ``fits`` and ``reason`` (None when it fits:
    "RAM: needs X more", "flash: weights Y over", or why no schedule was found). Where the row
    was solved: ``energy_j``, ``time_s``, ``peak_ram_bytes`` of the POET schedule at the usable
    RAM (or of the ``opt.step()`` after it, if higher), ``gap`` (relative to total energy), ``status``, and ``steps`` on the battery.
    ``graph``, ``problem``, ``result`` and ``model`` are kept for Python callers (not in JSON).
    """

    device: str
    train: str
    train_modules: list[str] | None
    weights: str
    update: str
    fold_bn: bool
    batch_size: int | None
    optimizer: str
    trained_params: int
    grads: int
    optimizer_state: int
    buffers: int
    batch: int
    constants: int
    frozen_params: int
    frozen_in_flash: int
    static_ram_bytes: int
    min_ram_bytes: int
    store_all_peak_bytes: int
    usable_ram_bytes: int
    weights_flash_free_bytes: int | None
    fits: bool
    reason: str | None = None
    ram_short_bytes: int = 0
    flash_over_bytes: int = 0
    energy_j: float | None = None
    time_s: float | None = None
    peak_ram_bytes: int | None = None
    gap: float | None = None
    status: str | None = None
    steps: float | None = None
    inplace: bool = False
    optimizer_step_bytes: int = 0
    graph: Any = field(default=None, repr=False, compare=False)
    problem: Any = field(default=None, repr=False, compare=False)
    result: Any = field(default=None, repr=False, compare=False)
    model: Any = field(default=None, repr=False, compare=False)

    @property
    def shortfall_bytes(self) -> int:
        """How far the row misses: RAM short plus flash over (0 when it fits on both)."""
        return self.ram_short_bytes + self.flash_over_bytes

    def describe(self) -> str:
        """"train=last2, weights in flash, fused update" (no weights part without frozen weights)."""
        parts = [f"train={self.train}"]
        if self.fold_bn:
            parts[0] += " (BatchNorm folded)"
        if self.inplace:
            parts[0] += " (in place)"
        if self.frozen_params:
            parts.append("weights in flash" if self.weights == "flash" else "weights in RAM")
        parts.append(f"{self.update} update")
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        keys = [f for f in self.__dataclass_fields__ if f not in ("graph", "problem", "result", "model")]
        d = {k: getattr(self, k) for k in keys}
        d["shortfall_bytes"] = self.shortfall_bytes
        return d


@dataclass
class FitReport:
    """Every row of a fit, sorted per device (devices in the order asked), and what it took."""

    model: str
    devices: list[str]
    rows: list[FitRow]
    battery_j: float | None
    time_limit_s: float
    gap: float
    seconds: float
    blocks: list[str]
    trace_seconds: float = 0.0
    solve_seconds: float = 0.0

    def device_rows(self, device: str | None = None) -> list[FitRow]:
        device = self._device(device)
        return [r for r in self.rows if r.device == device]

    def _device(self, device: str | None) -> str:
        if device is None:
            if len(self.devices) != 1:
                raise ValueError(f"device must name one of {', '.join(self.devices)} (this fit has several)")
            return self.devices[0]
        if device not in self.devices:
            raise ValueError(f"device must be one of {', '.join(self.devices)}, got {device!r}")
        return device

    def best(self, device: str | None = None) -> FitRow | None:
        """The top fitting row of `device` (the least energy per step), or None."""
        rows = self.device_rows(device)
        return rows[0] if rows and rows[0].fits else None

    def best_line(self, device: str | None = None) -> str:
        """One line: the best fitting choice, or the closest miss."""
        device = self._device(device)
        rows = self.device_rows(device)
        if not rows:
            return f"{device}: no training choice was tried"
        top = rows[0]
        where = f" on {device}" if len(self.devices) > 1 else ""
        usable = format_bytes(top.usable_ram_bytes)
        if not top.fits:
            return f"nothing fits{where}: closest is {top.describe()} ({top.reason})"
        used = top.peak_ram_bytes if top.peak_ram_bytes is not None else top.min_ram_bytes
        text = f"best{where}: {top.describe()}: {format_bytes(used)} of {usable}"
        if top.energy_j is not None:
            text += f", {format_energy(top.energy_j)} per step"
            if top.steps is not None and self.battery_j is not None:
                text += f" ({_count(top.steps)} steps on {format_energy(self.battery_j)})"
        return text

    def lines(self) -> list[str]:
        return [self.best_line(d) for d in self.devices]

    def to_dict(self) -> dict[str, Any]:
        return {"format": FIT_FORMAT, "model": self.model, "devices": list(self.devices),
                "battery_j": self.battery_j, "time_limit_s": self.time_limit_s, "gap": self.gap,
                "seconds": self.seconds, "trace_seconds": self.trace_seconds,
                "solve_seconds": self.solve_seconds, "blocks": list(self.blocks),
                "best": {d: (self.best(d).to_dict() if self.best(d) else None) for d in self.devices},
                "best_line": {d: self.best_line(d) for d in self.devices},
                "rows": [r.to_dict() for r in self.rows]}


def _count(n: float) -> str:
    """1234567 -> "1.2 M"."""
    for scale, unit in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f}"


# =========================================================================== model input


@dataclass
class _Step:
    label: str
    model: Any
    loss_fn: Callable
    inputs: tuple
    targets: Any
    batch_size: int | None


def _leading(leaves) -> int | None:
    sizes = {t.shape[0] if getattr(t, "dim", lambda: 0)() > 0 else None for t in leaves}
    return sizes.pop() if len(sizes) == 1 else None


def _as_step(model: Any, batch_size: int, seed: int, options: dict | None) -> _Step:
    """A (model, loss_fn, inputs, targets) from a ModelSpec, a model spec string (zoo name or
    module:function) or the tuple itself."""
    import torch.utils._pytree as pytree

    from .modelspec import ModelSpec

    if isinstance(model, str):
        model = ModelSpec(model=model, batch_size=batch_size, seed=seed, options=dict(options or {}))
    if isinstance(model, ModelSpec):
        label = model.model.rsplit(":", 1)[-1]
        m, loss_fn, x, y = model.load()
    elif isinstance(model, (tuple, list)) and len(model) == 4:
        m, loss_fn, x, y = model
        label = type(m).__name__
    else:
        raise ValueError("model must be a zoo name, a module:function spec, a ModelSpec or a tuple "
                         f"(model, loss_fn, inputs, targets), got {type(model).__name__}")
    inputs = tuple(x) if isinstance(x, (tuple, list)) else (x,)
    n = _leading(pytree.tree_leaves((inputs, y)))
    return _Step(label, m, loss_fn, inputs, y, n)


def _smaller(step: _Step, b: int) -> _Step:
    """The step with the first `b` samples of its batch (inputs and targets sliced on dim 0)."""
    import torch.utils._pytree as pytree

    cut = pytree.tree_map(lambda t: t[:b], (step.inputs, step.targets))
    return _Step(step.label, step.model, step.loss_fn, tuple(cut[0]), cut[1], b)


def _devices(device: Any) -> list[Profile]:
    if isinstance(device, str) and device == "all":
        return list(list_profiles())
    if isinstance(device, (list, tuple)):
        if not device:
            raise ValueError("device must name at least one profile (or 'all')")
        return [load_profile(d) for d in device]
    return [load_profile(device)]


def _check_choices(name: str, values: Sequence[str], allowed: Sequence[str]) -> tuple[str, ...]:
    if isinstance(values, str):
        values = (values,)
    values = tuple(values)
    if not values or any(v not in allowed for v in values):
        raise ValueError(f"{name} must be a non-empty list of {', '.join(allowed)}, got {list(values)!r}")
    return values


# =========================================================================== fit


@dataclass
class _Traced:
    label: str
    train: str | tuple[str, ...]
    update: str
    fold_bn: bool
    graph: Any
    model: Any
    min_ram: int
    store_all: int
    inplace: bool = False


def _trace(step: _Step, label: str, train, update: str, optimizer: str, fold_bn: bool,
           inplace: bool = False) -> _Traced:
    from ._extract import extract

    model = step.model
    train_arg = list(train) if isinstance(train, tuple) else train
    if fold_bn:
        from .fold import fold_frozen_batchnorm

        model, _ = fold_frozen_batchnorm(model, train_arg, step.inputs)
    graph = extract(model, step.loss_fn, step.inputs, step.targets, train=train_arg,
                    optimizer=optimizer, update=update, inplace=inplace, name=step.label)
    structural = graph_to_problem(graph, weights="ram")
    return _Traced(label, train, update, fold_bn, graph, model, solver.min_feasible_ram(structural),
                   solver.store_all_peak(structural), inplace)


def _row(t: _Traced, profile: Profile, weights: str, step: _Step, optimizer: str) -> FitRow:
    sb = t.graph.static_breakdown
    frozen = int(sb.get("frozen_params", 0))
    in_flash = frozen if weights == "flash" else 0
    usable = profile.usable_ram_bytes
    free = profile.weights_capacity_bytes
    # a buffered update's opt.step() runs after the step, beside the static bytes
    step_ws = int(t.graph.extra.get("optimizer_step_workspace_bytes", 0) or 0)
    static_ram = int(t.graph.static_bytes) - in_flash
    min_ram = max(t.min_ram - in_flash, static_ram + step_ws)
    store_all = max(t.store_all - in_flash, static_ram + step_ws)
    ram_short = max(0, min_ram - usable)
    flash_over = max(0, in_flash - free) if in_flash else 0
    reasons = []
    if ram_short:
        reasons.append(f"RAM: needs {format_bytes(ram_short)} more")
    if flash_over:
        reasons.append(f"flash: weights {format_bytes(flash_over)} over")
    return FitRow(
        device=profile.name, train=t.label,
        train_modules=list(t.train) if isinstance(t.train, tuple) else None,
        weights=weights, update=t.update, fold_bn=t.fold_bn, batch_size=step.batch_size,
        optimizer=optimizer, trained_params=int(sb.get("trained_params", 0)),
        grads=int(sb.get("grads", 0)), optimizer_state=int(sb.get("optimizer_state", 0)),
        buffers=int(sb.get("buffers", 0)), batch=int(sb.get("inputs", 0)),
        constants=int(sb.get("constants", 0)), frozen_params=frozen, frozen_in_flash=in_flash,
        static_ram_bytes=static_ram, min_ram_bytes=min_ram,
        store_all_peak_bytes=store_all, usable_ram_bytes=usable, weights_flash_free_bytes=free,
        fits=not reasons, reason="; ".join(reasons) or None, ram_short_bytes=ram_short,
        flash_over_bytes=flash_over, inplace=t.inplace, optimizer_step_bytes=step_ws, graph=t.graph, model=t.model)


def _solve_problem(problem: solver.Problem, time_limit_s: float, gap: float):
    """One POET solve (run in a worker process: plain data in and out). None when infeasible."""
    try:
        return solver.solve(problem, strategy="poet", time_limit_s=time_limit_s, gap=gap)
    except solver.InfeasibleError:
        return None


def _record(row: FitRow, result, time_limit_s: float, battery_j: float | None) -> None:
    """Put a solve's outcome on its row; a row without a schedule stops fitting."""
    if result is None:
        row.fits, row.reason = False, "no schedule fits the paging storage"
        return
    row.result, row.status = result, result.status
    if result.schedule is None or result.report is None:
        row.fits, row.reason = False, f"no schedule found in {time_limit_s:g} s"
        return
    row.energy_j = float(result.report.energy_j)
    row.time_s = float(result.report.time_s)
    row.peak_ram_bytes = max(int(result.report.peak_ram_bytes),
                             row.static_ram_bytes + row.optimizer_step_bytes)
    row.gap = result.gap
    if battery_j is not None and row.energy_j > 0:
        row.steps = battery_j / row.energy_j


def _solve_rows(rows: list[FitRow], profiles: dict[str, Profile], time_limit_s: float, gap: float,
                battery_j: float | None, executor: Any) -> None:
    """Solve every fitting row at its usable RAM. Rows whose store-all peak fits need no search
    and are solved here; the others go to `executor` ("process": a pool of one worker per core,
    `poet.runner.Runner`; "serial"; or any concurrent.futures.Executor)."""
    from .runner import Runner

    for row in rows:
        row.problem = make_problem(row.graph, profiles[row.device], weights=row.weights,
                                   ram_budget=row.usable_ram_bytes, flash_budget="device")
    easy = [r for r in rows if r.store_all_peak_bytes <= r.usable_ram_bytes]
    hard = [r for r in rows if r.store_all_peak_bytes > r.usable_ram_bytes]
    for row in easy:
        _record(row, _solve_problem(row.problem, time_limit_s, gap), time_limit_s, battery_j)
    if not hard:
        return
    runner = Runner("serial" if len(hard) == 1 and executor == "process" else executor, None,
                    len(hard))
    failures: list[BaseException] = []

    def done(row, result, exc):
        if exc is not None:
            failures.append(exc)
        else:
            _record(row, result, time_limit_s, battery_j)

    interrupted = True
    try:
        runner.run(hard, lambda r: (r.problem, time_limit_s, gap), _solve_problem, done)
        interrupted = False
    finally:
        runner.close(interrupted=interrupted)
    if failures:
        raise failures[0]


def _sort_key(row: FitRow):
    if row.fits:
        return (0, row.energy_j if row.energy_j is not None else math.inf, row.min_ram_bytes)
    return (1, row.shortfall_bytes, row.min_ram_bytes)


def _check_number(name: str, value: Any, *, zero_ok: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < 0 or (value == 0 and not zero_ok):
        raise ValueError(f"{name} must be a finite number {'>=' if zero_ok else '>'} 0, got {value!r}")
    return float(value)


def fit(model: Any, device: Any = "nrf52840", *, batch_size: int = 1, seed: int = 0,
        options: dict | None = None, optimizer: str = "sgd",
        trains: Sequence[str] | None = None, sparse: Sequence[int] = SPARSE_KS,
        weights: Sequence[str] = WEIGHTS, updates: Sequence[str] = UPDATES,
        fold_bn: bool | str = False, inplace: bool = False, battery: Any = None, time_limit_s: float = 5.0,
        gap: float = 1e-2, solve: bool = True, executor: Any = "process") -> FitReport:
    """Every training choice of `model` on `device`, sorted best first (see the module docstring).

    `model`: a zoo name or ``module:function`` (built with `batch_size`, `seed`, `options`), a
    `poet.modelspec.ModelSpec`, or a tuple ``(model, loss_fn, inputs, targets)``. `device`: a
    profile name, path or `Profile`, a list of them, or "all" (every built-in). `optimizer`: the
    kind ("sgd", "sgd_momentum", "adam", "adam_amsgrad") whose state is counted. `trains`: labels
    to keep among "all", "bias", "last" and "last<k>" (None: all of them); `sparse`: the k of
    ``last<k>``. `weights`, `updates`: the placements and update modes to try. `fold_bn`: False,
    True (fold frozen BatchNorms in every choice that freezes some) or "both" (rows with and
    without). `inplace`: trace with elementwise ops run in place where that is exact
    (`poet.extract(inplace=True)`, as microcontroller kernels run them). `battery`: energy for the steps column (see `parse_battery`). Fitting rows are
    solved with strategy "poet" at the usable RAM within `time_limit_s` to relative `gap`
    (``solve=False`` skips that: fit and memory only). Rows whose store-all peak fits are solved
    in this process; the others on `executor`: "process" (default: a process pool of one worker
    per core), "serial", "dask", or any `concurrent.futures.Executor` (see `poet.runner`).

    Raises ValueError for bad arguments, `poet.ExtractError` when the model cannot be traced.
    """
    started = time.perf_counter()
    battery_j = parse_battery(battery) if battery is not None else None
    time_limit_s = _check_number("time_limit_s", time_limit_s, zero_ok=False)
    gap = _check_number("gap", gap, zero_ok=True)
    weights = _check_choices("weights", weights, WEIGHTS)
    updates = _check_choices("updates", updates, UPDATES)
    if not isinstance(inplace, bool):
        raise ValueError(f"inplace must be True or False, got {inplace!r}")
    if fold_bn not in (False, True, "both"):
        raise ValueError(f"fold_bn must be False, True or 'both', got {fold_bn!r}")
    folds = {False: (False,), True: (True,), "both": (False, True)}[fold_bn]
    profiles = _devices(device)
    step = _as_step(model, batch_size, seed, options)
    choices = train_choices(step.model, step.inputs, sparse)
    if trains is not None:
        if isinstance(trains, str):
            trains = (trains,)
        known = [label for label, _ in choices]
        unknown = [t for t in trains if t not in known]
        if unknown:
            raise ValueError(f"trains must be among {', '.join(known)} for this model, got {unknown[0]!r}")
        choices = [(label, t) for label, t in choices if label in trains]
    traced: list[_Traced] = []
    for label, train in choices:
        for fold in folds:
            if fold and train == "all":
                continue  # nothing is frozen: nothing to fold
            for update in updates:
                traced.append(_trace(step, label, train, update, optimizer, fold, inplace))
    trace_s = time.perf_counter() - started
    rows: list[FitRow] = []
    for profile in profiles:
        for t in traced:
            if not t.graph.static_breakdown.get("frozen_params", 0):
                places: Sequence[str] = ("ram",)  # nothing frozen: both placements are one row
            else:  # no weights tier: nothing can be kept in flash
                places = [w for w in weights if w == "ram" or profile.program_flash is not None]
            rows.extend(_row(t, profile, w, step, optimizer) for w in places)
    solve_started = time.perf_counter()
    if solve:
        _solve_rows([r for r in rows if r.fits], {p.name: p for p in profiles}, time_limit_s, gap,
                    battery_j, executor)
    order = {p.name: i for i, p in enumerate(profiles)}
    rows.sort(key=lambda r: (order[r.device], *_sort_key(r)))
    blocks = model_blocks(step.model, step.inputs)
    now = time.perf_counter()
    return FitReport(model=step.label, devices=[p.name for p in profiles], rows=rows,
                     battery_j=battery_j, time_limit_s=time_limit_s, gap=gap,
                     seconds=now - started, blocks=blocks, trace_seconds=trace_s,
                     solve_seconds=now - solve_started)


# =========================================================================== tables


FIT_HEADER = ["device", "train", "weights", "update", "trained", "grads", "opt state", "buffers",
              "batch", "frozen", "in flash", "min RAM", "store-all", "usable", "fits",
              "energy/step", "time/step", "gap", "steps"]


def fit_rows(report: FitReport) -> tuple[list[list[str]], list[str]]:
    """(rows, header) of text cells for `poet.cli_tables.table`; the device column only when the
    report has several devices."""
    many = len(report.devices) > 1
    header = FIT_HEADER if many else FIT_HEADER[1:]
    out = []
    for r in report.rows:
        cells = [r.device] if many else []
        frozen_place = "-" if not r.frozen_params else r.weights
        cells += [r.train + ("+fold" if r.fold_bn else ""), frozen_place, r.update,
                  format_bytes(r.trained_params), format_bytes(r.grads),
                  format_bytes(r.optimizer_state), format_bytes(r.buffers), format_bytes(r.batch),
                  format_bytes(r.frozen_params), format_bytes(r.frozen_in_flash),
                  format_bytes(r.min_ram_bytes), format_bytes(r.store_all_peak_bytes),
                  format_bytes(r.usable_ram_bytes), "yes" if r.fits else f"no: {r.reason}",
                  format_energy(r.energy_j) if r.energy_j is not None else "-",
                  format_time(r.time_s) if r.time_s is not None else "-",
                  f"{100 * r.gap:.2f}%" if r.gap is not None else "-",
                  _count(r.steps) if r.steps is not None else "-"]
        out.append(cells)
    return out, list(header)


def fit_table(report: FitReport) -> str:
    """The report as text: the table and one best line per device."""
    from .cli_tables import table

    rows, header = fit_rows(report)
    return "\n".join([table(rows, header), *report.lines()])


def fit_json(report: FitReport) -> dict[str, Any]:
    """The report as a JSON-ready dict (format "poet-fit/1")."""
    return report.to_dict()
