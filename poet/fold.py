"""Fold frozen BatchNorm layers into the convolution (or Linear) that feeds them.

On a microcontroller a frozen conv + BatchNorm pair is deployed as one conv whose weight is
scaled per output channel and whose bias absorbs the BatchNorm's shift: the BatchNorm's
activation, its two parameters and its running statistics disappear. This module makes the
same rewrite on a copy of a PyTorch model before it is traced, with torch's own
``torch.nn.utils.fusion.fuse_conv_bn_eval`` / ``fuse_linear_bn_weights``, so that
``poet.extract`` and the eager reference of ``poet.verify`` both run the folded model::

    folded, report = fold_frozen_batchnorm(model, "last", example_inputs)
    graph = poet.extract(folded, loss_fn, example_inputs, targets, train="last")

What is folded
--------------
A pair (producer, BatchNorm) where, on one real forward run of the example inputs:

* the producer is a ``Conv1d``/``Conv2d``/``Conv3d`` (output ``(N, C, *spatial)``) or a
  ``Linear`` with a 2-D output ``(N, features)``, called once, whose output tensor is the
  BatchNorm's input and is read by nothing else (no other op, not the model's output);
* the BatchNorm is called once, tracks running statistics and has ``num_features`` equal to
  the producer's output channels;
* every parameter of both is frozen under ``train`` (the selection ``poet.extract`` makes),
  neither module nor parameter is shared, and the rewrite leaves that selection unchanged
  (with ``train="bias"`` a conv without a bias would gain a ``bias`` that would then train,
  so such pairs are skipped).

Each folded BatchNorm is replaced by ``nn.Identity`` and its producer by the fused module.

Frozen BatchNorm means running statistics
-----------------------------------------
A frozen BatchNorm in a module in training mode still normalises by the batch's statistics and
updates its running statistics; a folded conv cannot do either. Folding therefore fixes each
folded BatchNorm to its eval-mode behaviour (normalise by the running statistics, never
update them), the convention of TinyTL (Cai et al., NeurIPS 2020) and of MCU training
(MCUNetV3, Lin et al., NeurIPS 2022), where frozen BatchNorms are folded into their conv.
The report lists the BatchNorms that were in training mode when folded
(``switched_to_eval``): the folded model equals the original with those modules in eval
mode, not the original in training mode. BatchNorms that are not folded keep their mode.

How pairs are found, and why not torch.fx
-----------------------------------------
By running the forward once on a throw-away copy of the model (in its current mode, under
``torch.no_grad`` and a forked RNG) with forward hooks on every conv, Linear and BatchNorm,
and a ``TorchDispatchMode`` that records every ATen op reading each producer's output. This
finds pairs in custom forwards (adjacency in an ``nn.Sequential`` misses them and also
claims pairs that the forward does not chain), sees functional reads such as
``bn(y) + y`` or ``y.view(...)`` that module hooks alone cannot, and works on any model
``poet.extract`` can trace. ``torch.fx.symbolic_trace`` would give the data flow without a
run but fails on data-dependent control flow and on many models written by others.
Metadata queries (``y.shape``) do not reach the dispatcher and are not counted as reads. A
read that no op performs (a tensor stashed in an attribute and used on a later call) is not
seen.
"""

from __future__ import annotations

import copy
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn as nn
import torch.utils._pytree as pytree
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.lazy import LazyModuleMixin
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_weights
from torch.utils._python_dispatch import TorchDispatchMode

from poet._extract import _select_trainable
from poet.fxnodes import ExtractError

__all__ = ["FoldReport", "FoldedPair", "SkippedBatchNorm", "fold_frozen_batchnorm"]

log = logging.getLogger("poet.fold")

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
CONVENTION = ("folded BatchNorms use their running statistics and never update them (eval mode): "
              "the TinyTL / MCU on-device training convention for frozen BatchNorm")


@dataclass
class FoldedPair:
    """One producer + BatchNorm pair folded into the producer."""

    producer: str
    batchnorm: str
    producer_type: str
    removed_param_bytes: int  # the BatchNorm's weight and bias
    removed_buffer_bytes: int  # running_mean, running_var, num_batches_tracked
    added_param_bytes: int  # the bias a producer without one gains


@dataclass
class SkippedBatchNorm:
    """A BatchNorm that was not folded, and why."""

    batchnorm: str
    reason: str
    producer: str | None = None


@dataclass
class FoldReport:
    """What :func:`fold_frozen_batchnorm` did. Byte counts are ``numel * element_size``."""

    folded: list[FoldedPair] = field(default_factory=list)
    skipped: list[SkippedBatchNorm] = field(default_factory=list)
    switched_to_eval: list[str] = field(default_factory=list)
    convention: str = CONVENTION

    @property
    def removed_param_bytes(self) -> int:
        return sum(p.removed_param_bytes for p in self.folded)

    @property
    def removed_buffer_bytes(self) -> int:
        return sum(p.removed_buffer_bytes for p in self.folded)

    @property
    def added_param_bytes(self) -> int:
        return sum(p.added_param_bytes for p in self.folded)

    @property
    def saved_bytes(self) -> int:
        """Parameter + buffer bytes the folded model has fewer than the original."""
        return self.removed_param_bytes + self.removed_buffer_bytes - self.added_param_bytes

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (for the CLI and result files)."""
        out = asdict(self)
        out.update(removed_param_bytes=self.removed_param_bytes, removed_buffer_bytes=self.removed_buffer_bytes,
                   added_param_bytes=self.added_param_bytes, saved_bytes=self.saved_bytes)
        return out


# =========================================================================== public entry


def fold_frozen_batchnorm(model: nn.Module, train: str | Sequence[str], example_inputs: Any
                          ) -> tuple[nn.Module, FoldReport]:
    """Return a copy of ``model`` with every frozen (producer, BatchNorm) pair folded, and a report.

    ``train`` is the selection ``poet.extract`` takes ("all", "bias", "last" or a list of
    module/parameter names); ``example_inputs`` (a tensor or a tuple/list of tensors, passed
    positionally) runs the forward once to find the pairs (see the module docstring for the
    rules). ``model`` itself is not changed; the copy keeps the modules' training flags, and
    its folded BatchNorms are ``nn.Identity``. Raises ``ValueError`` for bad arguments and
    :class:`poet.fxnodes.ExtractError` when the forward cannot run.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    inputs = tuple(example_inputs) if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
    if not inputs or not all(isinstance(x, torch.Tensor) for x in inputs):
        raise ValueError("example_inputs must be a tensor or a non-empty tuple/list of tensors")
    trained = set(_select_trainable(model, train, inputs))
    try:
        folded = copy.deepcopy(model)
        probe = copy.deepcopy(model)
    except Exception as exc:  # noqa: BLE001 - any failure to copy is reported the same way
        raise ValueError(f"model cannot be deep-copied, which folding needs: {type(exc).__name__}: {exc}") from exc
    flow = _record_flow(probe, inputs)
    del probe

    report = FoldReport()
    modules = dict(folded.named_modules())
    param_count = Counter(id(p) for _, p in folded.named_parameters(remove_duplicate=False))
    buffer_count = Counter(id(b) for _, b in folded.named_buffers(remove_duplicate=False))
    module_count = Counter(id(m) for _, m in folded.named_modules(remove_duplicate=False))
    for bn_name, bn in modules.items():
        if not isinstance(bn, _BatchNorm):
            continue
        producer = flow.producer_of.get(bn_name)
        reason = _why_not(bn_name, bn, producer, modules, flow, trained, train,
                          param_count, buffer_count, module_count)
        if reason is not None:
            report.skipped.append(SkippedBatchNorm(bn_name, reason, producer))
            continue
        assert producer is not None
        if bn.training:
            report.switched_to_eval.append(bn_name)
        report.folded.append(_fold_pair(folded, producer, bn_name, modules))

    after = set(_select_trainable(folded, train, inputs))
    if after != trained:  # pragma: no cover - _why_not rules this out; a guard for new train modes
        raise RuntimeError(f"internal: folding changed the trained parameters by {sorted(after ^ trained)}")
    log.info("folded %d BatchNorm(s) into their producers (%d bytes saved), skipped %d",
             len(report.folded), report.saved_bytes, len(report.skipped))
    return folded, report


# =========================================================================== finding pairs


@dataclass
class _Flow:
    calls: Counter[str]  # module name -> number of forward calls
    producer_of: dict[str, str]  # BatchNorm name -> conv/Linear whose output is its input
    other_reads: dict[str, int]  # producer name -> ATen ops outside its BatchNorm reading its output
    in_output: set[str]  # producers whose output tensor is (part of) the model's output
    out_ndim: dict[str, int]  # producer name -> dimensions of its output


class _Reads(TorchDispatchMode):
    """Counts, per watched tensor, the ATen ops that read it outside the given BatchNorm call."""

    def __init__(self) -> None:
        super().__init__()
        self.watched: list[tuple[str, torch.Tensor]] = []  # strong refs: ids stay unique while watched
        self.by_id: dict[int, str] = {}
        self.inside: list[str] = []  # the BatchNorm calls now running (innermost last)
        self.bn_input: dict[str, int] = {}  # BatchNorm name -> id of its input
        self.other: Counter[str] = Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        for leaf in pytree.tree_leaves((args, kwargs)):
            if isinstance(leaf, torch.Tensor) and id(leaf) in self.by_id:
                # a read inside the BatchNorm the tensor feeds belongs to that BatchNorm
                if not (self.inside and self.bn_input.get(self.inside[-1]) == id(leaf)):
                    self.other[self.by_id[id(leaf)]] += 1
        return func(*args, **kwargs)


def _record_flow(probe: nn.Module, inputs: tuple[torch.Tensor, ...]) -> _Flow:
    names = {m: n for n, m in probe.named_modules()}
    calls: Counter[str] = Counter()
    producer_of: dict[str, str] = {}
    out_ndim: dict[str, int] = {}
    reads = _Reads()
    handles = []

    def count(module: nn.Module, args: Any) -> None:
        calls[names[module]] += 1

    def producer_done(module: nn.Module, args: Any, output: Any) -> None:
        if isinstance(output, torch.Tensor):
            reads.watched.append((names[module], output))
            reads.by_id[id(output)] = names[module]
            out_ndim[names[module]] = output.dim()

    def bn_enter(module: nn.Module, args: Any) -> None:
        name = names[module]
        reads.inside.append(name)
        x = args[0] if args else None
        if isinstance(x, torch.Tensor) and id(x) in reads.by_id:
            producer_of.setdefault(name, reads.by_id[id(x)])
            reads.bn_input[name] = id(x)

    def bn_exit(module: nn.Module, args: Any, output: Any) -> None:
        reads.inside.pop()

    for module, name in names.items():
        handles.append(module.register_forward_pre_hook(count))
        if isinstance(module, (*_CONVS, nn.Linear)):
            handles.append(module.register_forward_hook(producer_done))
        elif isinstance(module, _BatchNorm):
            handles.append(module.register_forward_pre_hook(bn_enter))
            handles.append(module.register_forward_hook(bn_exit))
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad(), reads:
            output = probe(*inputs)
    except Exception as exc:  # noqa: BLE001 - any failure of the user's forward is reported the same way
        raise ExtractError(f"folding BatchNorm needs one forward run of the example inputs, which failed: "
                           f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from exc
    finally:
        for h in handles:
            h.remove()
    out_ids = {id(t) for t in pytree.tree_leaves(output) if isinstance(t, torch.Tensor)}
    in_output = {name for name, t in reads.watched if id(t) in out_ids}
    return _Flow(calls, producer_of, dict(reads.other), in_output, out_ndim)


def _why_not(bn_name: str, bn: _BatchNorm, producer: str | None, modules: dict[str, nn.Module], flow: _Flow,
             trained: set[str], train: Any, param_count: Counter[int], buffer_count: Counter[int],
             module_count: Counter[int]) -> str | None:
    """The reason the pair cannot be folded, or None when it can."""
    if flow.calls[bn_name] == 0:
        return "not called by the forward"
    if flow.calls[bn_name] > 1:
        return f"called {flow.calls[bn_name]} times by the forward"
    if producer is None:
        return "its input is not the output of a Conv1d/Conv2d/Conv3d or Linear"
    if not bn.track_running_stats or bn.running_mean is None or bn.running_var is None:
        return "track_running_stats=False: it always normalises by batch statistics"
    conv = modules[producer]
    if flow.calls[producer] > 1:
        return f"its producer {producer} is called {flow.calls[producer]} times"
    if flow.other_reads.get(producer, 0) or producer in flow.in_output:
        readers = [f"{flow.other_reads[producer]} other op(s)"] if flow.other_reads.get(producer, 0) else []
        readers += ["the caller (it is part of the model's output)"] if producer in flow.in_output else []
        return f"the output of {producer} is also read by {' and '.join(readers)}"
    channels = conv.out_channels if isinstance(conv, _CONVS) else conv.out_features
    if isinstance(conv, nn.Linear) and flow.out_ndim.get(producer) != 2:
        return (f"{producer} (Linear) gives a {flow.out_ndim.get(producer)}-D output; BatchNorm normalises dim 1, "
                f"which are its features only for 2-D outputs")
    if isinstance(conv, _CONVS) and flow.out_ndim.get(producer) != conv.weight.dim():
        return f"{producer} ran on an unbatched input"
    if bn.num_features != channels:
        return f"num_features={bn.num_features} differs from the {channels} output channels of {producer}"
    for mod in (conv, bn):
        if isinstance(mod, LazyModuleMixin) and mod.has_uninitialized_params():
            return "uninitialized lazy module: run the model once before folding"
    hot = [n for n, _ in conv.named_parameters(prefix=producer)] + [n for n, _ in bn.named_parameters(prefix=bn_name)]
    hot = [n for n in hot if n in trained]
    if hot:
        return f"trained under train={train!r}: {', '.join(hot)}"
    shared = [t for t in [*conv.parameters(), *bn.parameters()] if param_count[id(t)] > 1]
    shared += [t for t in bn.buffers() if buffer_count[id(t)] > 1]
    if shared or module_count[id(conv)] > 1 or module_count[id(bn)] > 1:
        return f"{producer} or {bn_name} (or one of their tensors) is shared under several names"
    if train == "bias" and conv.bias is None:
        return f"{producer} has no bias; folding adds one, which train='bias' would then train"
    return None


# =========================================================================== the rewrite


def _fold_pair(folded: nn.Module, producer: str, bn_name: str, modules: dict[str, nn.Module]) -> FoldedPair:
    conv, bn = modules[producer], modules[bn_name]
    removed_params = sum(_nbytes(p) for p in bn.parameters(recurse=False))
    removed_buffers = sum(_nbytes(b) for b in bn.buffers(recurse=False))
    added = _nbytes(bn.running_mean) if conv.bias is None else 0
    was_training = conv.training
    conv.eval()
    bn.eval()
    if isinstance(conv, _CONVS):
        fused = fuse_conv_bn_eval(conv, bn)
    else:
        # fuse_linear_bn_eval does not accept a BatchNorm without affine parameters; its
        # weight function does, given the identity affine map
        fused = copy.deepcopy(conv)
        weight = bn.weight if bn.weight is not None else torch.ones_like(bn.running_mean)
        bias = bn.bias if bn.bias is not None else torch.zeros_like(bn.running_mean)
        fused.weight, fused.bias = fuse_linear_bn_weights(fused.weight, fused.bias, bn.running_mean,
                                                          bn.running_var, bn.eps, weight, bias)
    fused.train(was_training)
    _replace(folded, producer, fused)
    _replace(folded, bn_name, nn.Identity())
    return FoldedPair(producer, bn_name, type(conv).__name__, removed_params, removed_buffers, added)


def _replace(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, child, new)


def _nbytes(t: torch.Tensor | None) -> int:
    return 0 if t is None else t.numel() * t.element_size()
