"""`cheapest_fix`: the least change to a training choice that makes it fit a device (what an
infeasible `poet solve` suggests), judged on memory as `poet fit` judges it; nothing is solved."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .fit import UPDATES, WEIGHTS, FitRow, _as_step, _devices, _row, _smaller, _Step, _trace, _Traced
from .fit_choices import SPARSE_KS, train_choices
from .profiles import Profile, load_profile
from .units import format_bytes

__all__ = ["cheapest_fix"]


# =========================================================================== cheapest fix


def _fits_memory(t: _Traced, profile: Profile, weights: str, step: _Step, optimizer: str) -> FitRow | None:
    if weights == "flash" and profile.program_flash is None:
        return None
    row = _row(t, profile, weights, step, optimizer)
    return row if row.fits else None


def cheapest_fix(model: Any, device: Any, *, train: Any = "all", weights: str | None = None,
                 update: str = "buffered", optimizer: str = "sgd", batch_size: int = 1,
                 seed: int = 0, options: dict | None = None,
                 sparse: Sequence[int] = SPARSE_KS, fold_bn: bool = False,
                 inplace: bool = False) -> str | None:
    """One line naming the least change to the current choice that makes the step fit `device`,
    or None when the current choice fits already or no choice of `fit` (nor a smaller batch)
    fits. The memory test is `fit`'s (minimum RAM within the usable RAM, frozen weights within
    the program flash); nothing is solved.

    Changes are tried in this order, the first that fits wins: the update fused, the weights in
    flash, both (none of these changes what is learned); then a smaller batch (the largest of
    halvings down to 1, with the other choices as they are, then with the update fused and the
    weights in flash); then training fewer parameters (the choice of `fit` that trains the most
    bytes, with the given update and weights, else fused and in flash).

    `model`, `batch_size`, `seed`, `options`, `optimizer` as in `fit`; `train` as in
    `poet.extract` ("all", "bias", "last" or a list of module names); `weights` None takes the
    device's default; `fold_bn` and `inplace` as the step is traced (`poet.extract`), kept in
    every change tried.
    """
    profile = load_profile(device)
    weights = profile.weights if weights is None else weights
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {WEIGHTS}, got {weights!r}")
    if update not in UPDATES:
        raise ValueError(f"update must be one of {UPDATES}, got {update!r}")
    step = _as_step(model, batch_size, seed, options)
    current_train = tuple(train) if isinstance(train, (list, tuple)) else train
    label = train if isinstance(train, str) else "[" + ", ".join(train) + "]"
    cache: dict[tuple, _Traced] = {}

    def traced(s: _Step, lab: str, tr, upd: str) -> _Traced:
        key = (s.batch_size, lab, upd)
        if key not in cache:
            cache[key] = _trace(s, lab, tr, upd, optimizer, bool(fold_bn) and tr != "all", inplace)
        return cache[key]

    now = traced(step, label, current_train, update)
    if _fits_memory(now, profile, weights, step, optimizer):
        return None
    need = _row(now, profile, weights, step, optimizer)

    def say(change: str, row: FitRow) -> str:
        return (f"it would fit {profile.name} with {change} (minimum RAM {format_bytes(row.min_ram_bytes)} "
                f"of {format_bytes(row.usable_ram_bytes)} usable; now {need.reason})")

    memory_only = [(u, w) for u, w in ((update, weights), ("fused", weights), (update, "flash"),
                                       ("fused", "flash")) if (u, w) != (update, weights)]
    seen = set()
    memory_only = [c for c in memory_only if not (c in seen or seen.add(c))]
    for u, w in memory_only:
        row = _fits_memory(traced(step, label, current_train, u), profile, w, step, optimizer)
        if row:
            return say(_changes(update, weights, u, w), row)
    if step.batch_size and step.batch_size > 1:
        b = step.batch_size // 2
        while b >= 1:
            small = _smaller(step, b)
            for u, w in [(update, weights), *memory_only]:
                row = _fits_memory(traced(small, label, current_train, u), profile, w, small, optimizer)
                if row:
                    extra = _changes(update, weights, u, w)
                    return say(f"batch size {b} instead of {step.batch_size}"
                               + (f" and {extra}" if extra else ""), row)
            b //= 2
    candidates = []
    for lab, tr in train_choices(step.model, step.inputs, sparse):
        if tr == current_train:
            continue
        for u, w in [(update, weights), *memory_only]:
            row = _fits_memory(traced(step, lab, tr, u), profile, w, step, optimizer)
            if row:
                candidates.append((row.trained_params, lab, u, w, row))
                break
    if candidates:
        trained, lab, u, w, row = max(candidates, key=lambda c: (c[0], -c[4].min_ram_bytes))
        extra = _changes(update, weights, u, w)
        return say(f"train={lab}" + (f" and {extra}" if extra else ""), row)
    return None


def _changes(update: str, weights: str, u: str, w: str) -> str:
    parts = []
    if u != update:
        parts.append(f"update={u}")
    if w != weights:
        parts.append(f"weights={w}")
    return " and ".join(parts)
