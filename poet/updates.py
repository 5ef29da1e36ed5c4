"""Fused updates in the executor (`poet.executor`): the rules a schedule of a fused graph must
keep, the optimizer's hyperparameters per trained parameter, and the measurement of the
temporaries an optimizer step allocates."""

from __future__ import annotations

import weakref
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from solver import Schedule

from .errors import ReplayError
from .graph import TrainingGraph
from .storage import tensors_of

def _check_updates(graph: TrainingGraph, schedule: Schedule) -> None:
    """An update node runs once, and no node reading its parameter is computed after it."""
    updates = {n.id: n.static_inputs[0] for n in graph.nodes if "update_of" in n.extra}
    if not updates:
        return
    params = set(updates.values())
    reads = {n.id: params.intersection(n.static_inputs) for n in graph.nodes if n.id not in updates}
    updated: dict[str, int] = {}
    for op, i in schedule.instructions:
        if op != "compute":
            continue
        if i in updates:
            if updates[i] in updated:
                raise ReplayError(f"the schedule computes update node {graph.nodes[i].name!r} twice: the "
                                  f"optimizer step of a parameter must be applied once")
            updated[updates[i]] = i
            continue
        late = [p for p in reads.get(i, ()) if p in updated]
        if late:
            u = updated[late[0]]
            raise ReplayError(f"the schedule computes node {graph.nodes[i].name!r} after "
                              f"{graph.nodes[u].name!r}, which has already updated the parameter it "
                              f"reads: a recompute must come before the parameter's update")


def _optimizer_groups(graph: TrainingGraph, model: torch.nn.Module, optimizer: Any,
                      params: dict[str, torch.Tensor] | None = None) -> dict[str, dict]:
    """For a fused graph: trained parameter -> the optimizer's param group holding it (checked:
    an SGD/Adam/AdamW the graph's optimizer kind, holding every trained parameter). ``params``:
    ``dict(model.named_parameters())`` if the caller has it."""
    if graph.update != "fused":
        if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        return {}
    if optimizer is None:
        raise ReplayError("this graph applies the optimizer inside the step (update='fused'): pass the "
                          "torch optimizer (optimizer=...) that holds the model's trained parameters")
    from .assemble import describe_optimizer

    try:
        kind, _ = describe_optimizer(optimizer)
    except ValueError as e:
        raise ReplayError(str(e)) from None
    if kind != graph.optimizer:
        raise ReplayError(f"the optimizer is of kind {kind!r} but the graph was traced for {graph.optimizer!r} "
                          f"(its optimizer state is part of the static memory): trace with this optimizer")
    by_param = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    params = dict(model.named_parameters()) if params is None else params
    groups = {}
    for name in graph.update_nodes():
        g = by_param.get(id(params[name]))
        if g is None:
            raise ReplayError(f"the optimizer does not hold the trained parameter {name!r} of this model")
        groups[name] = g
    return groups


_SETTINGS = ("weight_decay", "momentum", "nesterov", "maximize", "amsgrad", "decoupled_weight_decay", "dampening")


def apply_update(opt: torch.optim.Optimizer, param: torch.Tensor, group: dict, grad: torch.Tensor, node_id: int,
                 peaks: dict, settings: dict, measure: bool) -> int:
    """One fused update: ``opt.step()`` on ``param`` alone (its param ``group``'s settings, ``grad``
    as its ``.grad`` for the step; the optimizer's groups and ``param.grad`` are put back after).
    Returns the peak bytes of the temporaries the step allocated.

    The temporaries depend only on the settings and on which state the parameter has yet: they
    are measured (:class:`_Allocations`) once per such configuration and node and kept in
    ``peaks``, or always when ``measure``. ``settings`` caches each group's settings (id(group)
    -> their reprs) for the length of one step."""
    groups = opt.param_groups
    saved = param.grad
    param.grad = grad
    opt.param_groups = [{**group, "params": [param]}]
    fixed = settings.get(id(group))
    if fixed is None:
        fixed = settings[id(group)] = tuple(repr(group.get(k)) for k in _SETTINGS)
    state = opt.state.get(param)
    key = (node_id, tuple(sorted(state)) if state else (), fixed)
    known = None if measure else peaks.get(key)
    tracker = _Allocations() if known is None else None
    try:
        if tracker is not None:
            with tracker:
                opt.step()
        else:
            opt.step()
    finally:
        opt.param_groups = groups
        param.grad = saved
    del grad
    if tracker is None:
        return known
    kept = {t.untyped_storage().data_ptr() for t in opt.state.get(param, {}).values() if isinstance(t, torch.Tensor)}
    peaks[key] = peak = tracker.peak(kept)
    return peak


class _Allocations(TorchDispatchMode):
    """Storages that the ops run under it allocate (not those they write in place), in order,
    with the moments they die: ``peak(excluded)`` is the largest sum alive at once."""

    def __init__(self):
        super().__init__()
        self.events: list[tuple[int, int]] = []  # (storage key, +bytes / -bytes)
        self.alive: dict[int, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        inputs = {t.untyped_storage().data_ptr() for t in tensors_of([*args, *kwargs.values()])}
        for t in tensors_of(out):
            st = t.untyped_storage()
            key, nbytes = st.data_ptr(), st.nbytes()
            if nbytes and key not in inputs and key not in self.alive:
                self.alive[key] = nbytes
                self.events.append((key, nbytes))
                weakref.finalize(t, self._dead, key)
        return out

    def _dead(self, key: int) -> None:
        nbytes = self.alive.pop(key, None)
        if nbytes is not None:
            self.events.append((key, -nbytes))

    def peak(self, excluded: set[int]) -> int:
        now = peak = 0
        for key, delta in self.events:
            if key not in excluded:
                now += delta
                peak = max(peak, now)
        return peak
