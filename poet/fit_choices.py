"""What `poet fit` tries and reads: the training choices of a model (train all, bias, last and
the last k blocks) and the battery an energy per step is divided into."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

__all__ = ["SPARSE_KS", "TRAIN_BASICS", "parse_battery", "model_blocks", "train_choices"]

SPARSE_KS = (1, 2, 4, 8)
TRAIN_BASICS = ("all", "bias", "last")


# =========================================================================== battery


_ENERGY_UNITS = {"j": 1.0, "kj": 1e3, "mj": 1e6, "wh": 3600.0, "kwh": 3.6e6, "mwh": 3.6}
_CHARGE_UNITS = {"mah": 3.6, "ah": 3600.0}  # coulombs per unit
_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?"
_BATTERY_ENERGY = re.compile(rf"^({_NUMBER})\s*(j|kj|mj|wh|kwh|mwh)$")
_BATTERY_CHARGE = re.compile(rf"^({_NUMBER})\s*(mah|ah)\s*@\s*({_NUMBER})\s*v$")
_BATTERY_HELP = "--battery must be energy (2.4kJ, 2400J, 3.7Wh) or charge at a voltage (1000mAh@3.7V)"


def parse_battery(value: Any) -> float:
    """A battery's energy in joules from ``"2.4kJ"``, ``"2400J"``, ``"3.7Wh"``, ``"1000mAh@3.7V"``,
    ``"1.2Ah@3V"`` or a number of joules. Units are case-insensitive (``mWh`` is read as milli-,
    ``MJ`` as mega-joules only when written ``MJ``: ``mJ`` would be a millijoule, which no
    battery is, so both spellings of "mj" are refused). Raises a one-line ValueError naming
    --battery for anything else, zero, negative or infinite values."""
    if isinstance(value, bool):
        raise ValueError(f"{_BATTERY_HELP}, got {value!r}")
    if isinstance(value, (int, float)):
        joules = float(value)
    elif isinstance(value, str):
        text = value.strip()
        low = text.lower().replace(" ", "")
        if low.endswith("mj"):  # "mJ" or "MJ": ambiguous spellings are refused
            raise ValueError(f"{_BATTERY_HELP} (write kJ or J, not {text[-2:]!r}), got {value!r}")
        m = _BATTERY_ENERGY.match(low)
        c = _BATTERY_CHARGE.match(low)
        if m:
            joules = float(m.group(1)) * _ENERGY_UNITS[m.group(3)]
        elif c:
            joules = float(c.group(1)) * _CHARGE_UNITS[c.group(3)] * float(c.group(4))
        else:
            raise ValueError(f"{_BATTERY_HELP}, got {value!r}")
    else:
        raise ValueError(f"{_BATTERY_HELP}, got {type(value).__name__}")
    if not math.isfinite(joules) or joules <= 0:
        raise ValueError(f"{_BATTERY_HELP} and more than 0, got {value!r}")
    return joules


# =========================================================================== blocks and choices


def _call_order(model, inputs: tuple, modules: dict[str, Any]) -> list[str]:
    """Names of `modules` in the order of their first call on one fake-tensor forward run (the
    model, its parameters and torch's RNG are untouched)."""
    from ._extract import module_calls

    return list(dict.fromkeys(module_calls(model, inputs, modules, "poet fit (to find the model's blocks)")))


def model_blocks(model, inputs) -> list[str]:
    """The model's blocks: module names, in forward call order, each owning parameters.

    Model-agnostic rule: take the ``nn.Sequential`` with the most children anywhere in the model
    (the shallowest on a tie; MobileNetV2's ``features``, DS-CNN's ``blocks``); the blocks are
    its children plus, on the way from the root down to it, every other child of each module
    passed (so the stem and the classifier around a backbone are blocks too). Without a
    Sequential of two or more children, the blocks are the top-level children. Modules the
    forward never calls and modules without parameters are left out.
    """
    import torch.nn as nn

    inputs = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    named = dict(model.named_modules())
    seqs = [(n, m) for n, m in named.items() if isinstance(m, nn.Sequential) and len(m) >= 2]
    candidates: dict[str, Any] = {}
    if seqs:
        best, seq = max(seqs, key=lambda nm: (len(nm[1]), -nm[0].count(".") if nm[0] else 1))
        path = best.split(".") if best else []
        prefix = ""
        for part in path:  # siblings of each module on the way down
            parent = named[prefix]
            for child_name, child in parent.named_children():
                if child_name != part:
                    candidates[f"{prefix}.{child_name}" if prefix else child_name] = child
            prefix = f"{prefix}.{part}" if prefix else part
        for child_name, child in seq.named_children():
            candidates[f"{best}.{child_name}" if best else child_name] = child
    else:
        candidates = {n: m for n, m in model.named_children()}
    candidates = {n: m for n, m in candidates.items() if next(m.parameters(), None) is not None}
    if not candidates:
        return []
    return _call_order(model, inputs, candidates)


def _param_set(model, train: str | tuple[str, ...], blocks_last: str | None) -> frozenset[str]:
    """The qualified parameter names `train` selects (the rule `poet.extract` applies)."""
    params = list(model.named_parameters())
    if train == "all":
        return frozenset(n for n, p in params if p.requires_grad)
    if train == "bias":
        return frozenset(n for n, _ in params if n.rsplit(".", 1)[-1] == "bias")
    canonical = {id(p): n for n, p in params}
    modules = dict(model.named_modules())
    names = [blocks_last] if train == "last" else list(train)
    return frozenset(canonical[id(p)] for name in names if name in modules
                     for p in modules[name].parameters())


def _last_owner(model, inputs: tuple) -> str | None:
    """The last module in call order that owns parameters directly (what train='last' trains)."""
    owners = {n: m for n, m in model.named_modules()
              if next(m.parameters(recurse=False), None) is not None}
    order = _call_order(model, inputs, owners) if owners else []
    return order[-1] if order else None


def train_choices(model, inputs, sparse: Sequence[int] = SPARSE_KS,
                  basics: Sequence[str] = TRAIN_BASICS) -> list[tuple[str, str | tuple[str, ...]]]:
    """(label, train= value) pairs: the `basics` ("all", "bias", "last") and ``last<k>`` for each k
    of `sparse` (the parameters of the last k `model_blocks`, a tuple of module names). A choice
    that selects the same parameters as an earlier one, or none, is left out (``last1`` is
    usually ``last``; ``last<k>`` with k >= the number of blocks is ``all``)."""
    inputs = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    for k in sparse:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"sparse must be whole numbers of blocks >= 1, got {k!r}")
    for b in basics:
        if b not in TRAIN_BASICS:
            raise ValueError(f"basics must be among {TRAIN_BASICS}, got {b!r}")
    last = _last_owner(model, inputs) if "last" in basics else None
    blocks = model_blocks(model, inputs) if sparse else []
    wanted: list[tuple[str, str | tuple[str, ...]]] = [(b, b) for b in basics]
    wanted += [(f"last{k}", tuple(blocks[-k:])) for k in sorted(set(sparse)) if blocks]
    out, seen = [], set()
    for label, train in wanted:
        chosen = _param_set(model, train, last)
        if not chosen or chosen in seen:
            continue
        seen.add(chosen)
        out.append((label, train))
    return out
