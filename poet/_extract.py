"""Trace one PyTorch training step and group its ATen ops into a :class:`TrainingGraph`.

``extract(model, loss_fn, inputs, targets)`` traces the joint forward + loss +
backward of one step down to ATen ops, rewrites the in-place ops that would make
recomputation unsafe, groups the ops into layer-sized nodes (or keeps one node per
op), and measures each node: FLOPs, bytes read/written, output bytes and workspace.

Why ``make_fx`` and not ``aot_export_module``
---------------------------------------------
Both trace the joint graph with fake tensors and no decomposition. ``aot_export_module``
returns a functional graph with a tidy signature, but its nodes carry no module stack
and no link from a backward op to the forward op it differentiates, so ops cannot be
grouped into layers (as measured on its graphs). ``make_fx`` on a plain function
``step(params, buffers, inputs, targets)`` that runs ``torch.func.functional_call``,
the loss and ``torch.autograd.grad`` keeps both links when run inside
``torch.fx.traceback.preserve_node_meta()``:

* forward pre/post hooks on every module enter ``torch.fx.traceback.annotate`` with
  the module's qualified name and call index, which lands in ``node.meta["custom"]``;
* ``setup_stacktrace_preservation_hooks([loss.grad_fn])`` (torch's own helper from
  AOTAutograd) makes every backward op carry the ``seq_nr`` of the forward op whose
  derivative it computes, and ``autograd_backward=True``.

It works on CPU with stock torch, and on models written by others because it relies
on nothing but module calls and autograd. ``tracing_mode="fake"`` is used: nothing is
computed, real parameters are never touched, and data-dependent Python control flow
fails loudly (:class:`ExtractError`) instead of baking one branch into the graph.

What the graph looks like afterwards
------------------------------------
* In-place ops on another op's result (``relu_``, residual ``add_``, ``div_``,
  ``hardtanh_``) are rewritten out of place and later readers redirected, so no node
  ever writes into a tensor another node produced. ``bernoulli_`` (and other random
  fills) stay in place: they write a fresh ``empty_like`` of their own node. In-place
  writes to buffers (``num_batches_tracked.add_``) and the running-stat updates inside
  ``native_batch_norm`` stay too and are listed in ``GraphNode.mutates``. Then, with
  ``inplace=True`` (not the default), an elementwise op whose input nothing else reads (ReLU after a
  BatchNorm, a residual add) is put back in place and runs inside the node that makes its
  input: that node hands on the op's result in the same buffer (``extra["inplace"]``).
* Forward nodes are labelled by the innermost module call running them; backward
  nodes by the module of the forward op they differentiate; the loss's forward and
  backward ops form the one ``loss`` node. Ops without a label (the gradient seed
  ``ones_like``, gradient accumulation) join the node before them. A node is a
  maximal run of same-label ops in graph order, so every edge points forward.
* Views (ops whose schema returns an alias, ``_unsafe_view``, and ``getitem`` of a
  view list) belong to no node and cost nothing; each consumer recomputes them. Traced
  ``view`` ops become ``reshape`` (fake tensors get a few strides wrong, e.g. after
  ``mse_loss_backward``, and eager autograd reshapes there), and in-place metadata ops
  (``transpose_`` in the CPU LSTM backward) become their view twins.

The stages live in modules of their own: ``poet.fxnodes`` (what a traced node is: views,
in-place writes, storages, bytes), ``poet.inplace`` (the rewrite out of place),
``poet.grouping`` (ops into layer groups and their names), ``poet.opcosts`` (FLOPs and bytes
per ATen op) and ``poet.assemble`` (groups into the :class:`TrainingGraph`).

Memory: parameters, gradient buffers of trained parameters (``update="buffered"``),
optimizer state, buffers, the example inputs and targets, and traced constants are static
(``static_bytes``); everything else the step produces is a node output (with
``update="fused"`` the gradients too, each freed after its update node).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
import torch.fx.traceback as fx_traceback
import torch.nn as nn
import torch.utils._pytree as pytree

from poet.assemble import OPTIMIZERS, UPDATES, Traced, build_graph, describe_optimizer
from poet.fxnodes import ExtractError, drop_masked_results, storage_nbytes, tensor_nbytes
from poet.graph import Placeholder, TrainingGraph
from poet.grouping import CALL_KEY, LOSS, MODULE_KEY
from poet.inplace import rewrite_inplace, run_elementwise_in_place

__all__ = ["extract", "ExtractError", "GRANULARITIES", "OPTIMIZERS", "TRAIN_MODES", "UPDATES"]

log = logging.getLogger("poet.extract")

GRANULARITIES = ("layer", "op")
TRAIN_MODES = ("all", "bias", "last")


# =========================================================================== public entry


def extract(
    model: nn.Module,
    loss_fn: Callable[..., torch.Tensor],
    example_inputs: Any,
    example_targets: Any,
    *,
    granularity: str = "layer",
    train: str | Sequence[str] = "all",
    optimizer: Any = "sgd",
    update: str = "buffered",
    name: str | None = None,
    inplace: bool = False,
) -> TrainingGraph:
    """Trace one training step of ``model`` and return its :class:`TrainingGraph`.

    The step is ``loss = loss_fn(model(*inputs), targets)`` followed by the gradients
    of ``loss`` with respect to the trained parameters. ``example_inputs`` is a tensor
    or a tuple/list of tensors passed positionally to ``model``; ``example_targets`` is
    any pytree of tensors passed as the second argument of ``loss_fn``. The model is
    traced in whatever mode it is in (call ``model.train()`` first for a training step).

    ``granularity``: "layer" (one node per module call, its backward, and the loss) or
    "op" (one node per non-view ATen op). ``train``: "all" (parameters with
    ``requires_grad``), "bias" (only parameters named ``*.bias``, TinyTL), "last" (the
    parameters of the last module, in call order, that owns parameters; TinyOL), or a
    list of module (or parameter) names whose parameters train (sparse update).
    ``optimizer``: the torch optimizer itself (``torch.optim.SGD``, ``Adam`` or ``AdamW``
    holding the trained parameters; its kind and, for ``update="fused"``, its settings per
    parameter are read from it) or the name of its kind: "sgd", "sgd_momentum", "adam" or
    "adam_amsgrad" (0, 1, 2 or 3 state buffers per trained parameter in ``static_bytes``).
    ``update``: "buffered" (default: PyTorch's ``loss.backward(); opt.step()``, one static
    gradient buffer per trained parameter, so the graph is the drop-in for ``backward()``) or
    "fused" (each gradient is consumed by an update node right after it is complete, which
    applies the optimizer in place; no gradient buffer exists: the memory of an on-device
    training engine such as MCUNetV3's TTE). ``name`` defaults to the model's class name.
    ``inplace``: True runs an elementwise op (ReLU, ReLU6, hardswish, SiLU, GELU, leaky ReLU,
    sigmoid, tanh, a residual add, a multiplication by a scalar) of the forward pass in place
    where nothing else reads its input, inside the node that makes that input (see
    :func:`poet.inplace.run_elementwise_in_place`): fewer nodes, less memory, the same results.
    False (default, so that graphs keep the node names and counts they had) keeps every op out
    of place.

    The model is left as it was: parameters, buffers, ``requires_grad`` flags and
    torch's RNG state are not changed. Raises :class:`ExtractError` when the step cannot
    be traced (naming the module and op, with a remedy) and ``ValueError`` for bad
    arguments.
    """
    _check_arguments(model, loss_fn, granularity, update)
    if not isinstance(inplace, bool):
        raise ValueError(f"inplace must be True or False, got {inplace!r}")
    kind, settings = describe_optimizer(optimizer, {id(p): n for n, p in model.named_parameters()})
    inputs = tuple(example_inputs) if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
    _check_tensors("example_inputs", inputs)
    _check_tensors("example_targets", pytree.tree_leaves(example_targets))
    start = time.perf_counter()
    trainable = _select_trainable(model, train, inputs)
    if not isinstance(optimizer, str):
        missing = [n for n in trainable if n not in settings]
        if missing:
            raise ValueError(f"optimizer does not hold the trained parameter(s) {', '.join(missing[:3])}"
                             f"{' ...' if len(missing) > 3 else ''}: give it the parameters train= selects")
        settings = {n: settings[n] for n in trainable}
    traced = _trace(model, loss_fn, inputs, example_targets, trainable)
    rewrite_inplace(traced.gm)
    drop_masked_results(traced.gm)
    in_place = run_elementwise_in_place(traced.gm) if inplace else []
    graph = build_graph(traced, granularity=granularity, optimizer=kind, update=update, settings=settings,
                        name=name if name is not None else type(model).__name__)
    graph.extra["inplace"] = in_place  # fx names of the elementwise ops run in place
    graph.trace_seconds = time.perf_counter() - start
    graph.extra["loss_fn"] = loss_fn  # poet.replay.verify runs the eager reference step with it
    log.info("extracted %s: %d nodes, %d edges, %d ATen ops in %.2f s", graph.name, graph.T,
             len(graph.edges), graph.num_aten_ops, graph.trace_seconds)
    return graph


# the spelling ``poet.extract.ExtractError`` (``poet.extract`` is this function)
extract.ExtractError = ExtractError  # type: ignore[attr-defined]


# =========================================================================== arguments


def _check_arguments(model: Any, loss_fn: Any, granularity: Any, update: Any) -> None:
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not callable(loss_fn):
        raise ValueError(f"loss_fn must be callable as loss_fn(output, targets), got {type(loss_fn).__name__}")
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
    if update not in UPDATES:
        raise ValueError(f"update must be one of {UPDATES}, got {update!r}")


def _check_tensors(what: str, leaves: Iterable[Any]) -> None:
    leaves = list(leaves)
    if not leaves:
        raise ValueError(f"{what} must contain at least one tensor")
    for i, leaf in enumerate(leaves):
        if not isinstance(leaf, torch.Tensor):
            raise ValueError(f"{what} must be tensors (a tensor or a tuple/list of them); "
                             f"leaf {i} is {type(leaf).__name__}")


def _select_trainable(model: nn.Module, train: Any, inputs: tuple[torch.Tensor, ...]) -> list[str]:
    """Qualified names (as ``named_parameters()`` gives them) of the parameters that train."""
    params = list(model.named_parameters())
    canonical = {id(p): n for n, p in params}
    if isinstance(train, str):
        if train == "all":
            chosen = {n for n, p in params if p.requires_grad}
        elif train == "bias":
            chosen = {n for n, _ in params if n.rsplit(".", 1)[-1] == "bias"}
        elif train == "last":
            module = _last_module_with_params(model, inputs)
            chosen = {canonical[id(p)] for p in module.parameters()}
        else:
            raise ValueError(f"train must be one of {TRAIN_MODES} or a list of module names, got {train!r}")
    elif isinstance(train, (list, tuple)) and all(isinstance(t, str) for t in train) and train:
        modules = dict(model.named_modules())
        by_name = dict(model.named_parameters(remove_duplicate=False))
        chosen = set()
        for item in train:
            if item in modules and item != "":
                chosen |= {canonical[id(p)] for p in modules[item].parameters()}
            elif item in by_name:
                chosen.add(canonical[id(by_name[item])])
            else:
                examples = ", ".join(list(n for n in modules if n)[:5])
                raise ValueError(f"train names {item!r}, which is neither a module nor a parameter of the model "
                                 f"(module names look like: {examples})")
    else:
        raise ValueError(f"train must be one of {TRAIN_MODES} or a non-empty list of module names, got {train!r}")
    if not chosen:
        raise ValueError(f"train={train!r} selects no parameter of the model: nothing would train")
    return [n for n, _ in params if n in chosen]


def module_calls(model: nn.Module, inputs: Sequence[torch.Tensor], modules: dict[str, nn.Module],
                 purpose: str) -> list[str]:
    """Names of ``modules`` (name -> submodule of ``model``) in the order they are called, one
    entry per call, on one forward run of ``inputs`` on fake tensors: the model, its parameters
    and torch's RNG are untouched. A failing forward raises ExtractError: "{purpose} could not run
    the model's forward: ..."."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    called: list[str] = []

    def hook(name: str):
        return lambda mod, args: called.append(name)

    handles = [m.register_forward_pre_hook(hook(n)) for n, m in modules.items()]
    mode = FakeTensorMode()
    try:
        state = {n: mode.from_tensor(t) for n, t in [*model.named_parameters(), *model.named_buffers()]}
        fake_inputs = tuple(mode.from_tensor(x) for x in inputs)
        with mode, torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.func.functional_call(model, state, fake_inputs)
    except Exception as exc:  # noqa: BLE001 - any failure of the user's forward is reported the same way
        raise ExtractError(f"{purpose} could not run the model's forward: "
                           f"{type(exc).__name__}: {_first_line(exc)}") from exc
    finally:
        for h in handles:
            h.remove()
    return called


def _last_module_with_params(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> nn.Module:
    """The last module, in forward call order, that owns parameters directly (a fake-tensor run)."""
    owners = {n: m for n, m in model.named_modules() if next(m.parameters(recurse=False), None) is not None}
    if not owners:
        raise ValueError("train='last' needs a model with parameters; this one has none")
    called = module_calls(model, inputs, owners, "train='last' (to find the last layer)")
    if not called:
        raise ValueError("train='last': no module owning parameters was called by the forward pass")
    return owners[called[-1]]


# =========================================================================== tracing


class _ModuleAnnotator:
    """Forward hooks that label every op a module call runs with (module name, call index)."""

    def __init__(self, model: nn.Module):
        self.names = {m: n for n, m in model.named_modules()}
        self.types = {n: type(m).__name__ for m, n in self.names.items()}
        self.calls: Counter[str] = Counter()
        self.stack: list[tuple[str, Any]] = []
        self.handles: list[Any] = []

    def __enter__(self) -> _ModuleAnnotator:
        for m in self.names:
            self.handles.append(m.register_forward_pre_hook(self._pre))
            self.handles.append(m.register_forward_hook(self._post))
        return self

    def _pre(self, module: nn.Module, args: Any) -> None:
        name = self.names[module]
        self.calls[name] += 1
        ctx = fx_traceback.annotate({MODULE_KEY: name, CALL_KEY: self.calls[name]})
        ctx.__enter__()
        self.stack.append((name, ctx))

    def _post(self, module: nn.Module, args: Any, output: Any) -> None:
        _, ctx = self.stack.pop()
        ctx.__exit__(None, None, None)

    def innermost(self) -> str | None:
        return self.stack[-1][0] if self.stack else None

    def __exit__(self, *exc: Any) -> None:
        for h in self.handles:
            h.remove()
        while self.stack:  # a forward that raised leaves its annotations open
            _, ctx = self.stack.pop()
            ctx.__exit__(None, None, None)


def _trace(model: nn.Module, loss_fn: Callable[..., torch.Tensor], inputs: tuple[torch.Tensor, ...],
           targets: Any, trainable: list[str]) -> Traced:
    from torch._functorch._aot_autograd.logging_utils import setup_stacktrace_preservation_hooks
    from torch.fx.experimental.proxy_tensor import make_fx

    named_params = list(model.named_parameters())
    named_buffers = list(model.named_buffers())
    train_set = set(trainable)
    # detached aliases: the trace sees the chosen requires_grad flags, the model's own flags stay as they are
    param_list = [p.detach().requires_grad_(n in train_set) for n, p in named_params]
    buffer_list = [b for _, b in named_buffers]
    param_names = [n for n, _ in named_params]
    buffer_names = [n for n, _ in named_buffers]
    train_index = [i for i, n in enumerate(param_names) if n in train_set]
    problems: list[str] = []
    phase = ["forward"]  # where tracing is, for error messages

    def step(params: list[torch.Tensor], buffers: list[torch.Tensor], xs: tuple[torch.Tensor, ...], ys: Any):
        state = {**dict(zip(param_names, params)), **dict(zip(buffer_names, buffers))}
        out = torch.func.functional_call(model, state, xs)
        phase[0] = "loss"
        with fx_traceback.annotate({MODULE_KEY: LOSS, CALL_KEY: 1}):
            loss = loss_fn(out, ys)
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            problems.append(f"loss_fn must return a scalar tensor, got {type(loss).__name__}"
                            + (f" of shape {tuple(loss.shape)}" if isinstance(loss, torch.Tensor) else ""))
            raise _Abort()
        if loss.grad_fn is None:
            problems.append("the loss does not depend on any trained parameter (loss.grad_fn is None); "
                            "check train= and that the model's parameters are used")
            raise _Abort()
        setup_stacktrace_preservation_hooks([loss.grad_fn])
        phase[0] = "backward"
        grads = torch.autograd.grad(loss, [params[i] for i in train_index], allow_unused=True)
        return loss, list(grads)

    annotator = _ModuleAnnotator(model)
    try:
        with fx_traceback.preserve_node_meta(), annotator:
            try:
                gm = make_fx(step, tracing_mode="fake", _allow_non_fake_inputs=True)(
                    param_list, buffer_list, inputs, targets)
            except _Abort:
                raise ExtractError(problems[0]) from None
            except ExtractError:
                raise
            except Exception as exc:  # noqa: BLE001 - torch raises many types; all become one clear error
                raise ExtractError(_explain_trace_failure(exc, annotator, phase[0])) from exc
    finally:
        for p in param_list:
            p.requires_grad_(False)

    leaves = pytree.tree_leaves((param_list, buffer_list, inputs, targets))
    roles = ([("param", n, n in train_set) for n in param_names] + [("buffer", n, False) for n in buffer_names]
             + [("input", f"inputs[{i}]", False) for i in range(len(inputs))]
             + [("target", f"targets[{i}]", False) for i in range(len(pytree.tree_leaves(targets)))])
    ph_nodes = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(ph_nodes) != len(roles) or len(leaves) != len(roles):  # pragma: no cover - make_fx contract
        raise ExtractError(f"internal: traced function has {len(ph_nodes)} inputs, expected {len(roles)}")
    # a tensor's own bytes, capped by its storage (an expanded input holds less than it shows)
    placeholders = [Placeholder(fx.name, role, qual, trained, min(tensor_nbytes(leaf), storage_nbytes(leaf)))
                    for fx, (role, qual, trained), leaf in zip(ph_nodes, roles, leaves)]
    for n in gm.graph.nodes:
        if n.op == "get_attr":
            value = getattr(gm, n.target)
            if isinstance(value, torch.Tensor):
                placeholders.append(Placeholder(n.name, "constant", str(n.target), False, storage_nbytes(value)))
    return Traced(gm, placeholders, trainable, dict(annotator.calls), annotator.types)


class _Abort(Exception):
    """Raised inside the traced step to stop tracing after recording a problem."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _explain_trace_failure(exc: Exception, annotator: _ModuleAnnotator, phase: str) -> str:
    from torch._subclasses.fake_tensor import (
        DataDependentOutputException,
        DynamicOutputShapeException,
        UnsupportedOperatorException,
    )
    from torch.fx.experimental.symbolic_shapes import GuardOnDataDependentSymNode

    where_name = annotator.innermost()
    if phase == "loss":
        where = "in loss_fn"
    elif phase == "backward":
        where = "in the backward pass (autograd)"
    elif where_name is None:  # pragma: no cover - the root module's hooks cover the forward
        where = "in the model's forward"
    else:
        where = f"in module {where_name or '<root>'!r} ({annotator.types.get(where_name, '?')})"
    op = getattr(exc, "func", None)
    op_text = f" (op {op})" if op is not None else ""
    text = str(exc).lower()
    if isinstance(exc, (DataDependentOutputException, GuardOnDataDependentSymNode)) \
            or "data-dependent" in text or "data dependent" in text:
        return (f"cannot trace the training step {where}{op_text}: the Python code depends on the value of "
                f"a tensor (e.g. `if x.sum() > 0:`, `.item()`, `bool(tensor)`), so one step has no fixed graph. "
                f"Remedy: "
                f"compute both branches and select with torch.where, use torch.cond, or take the decision "
                f"outside the model and the loss. [{type(exc).__name__}: {_first_line(exc)}]")
    if isinstance(exc, DynamicOutputShapeException):
        return (f"cannot trace the training step {where}{op_text}: the op's output shape depends on tensor values "
                f"(nonzero, masked_select, unique, ...). Remedy: use a fixed-shape formulation (masks and "
                f"torch.where). [{type(exc).__name__}: {_first_line(exc)}]")
    if isinstance(exc, UnsupportedOperatorException):
        return (f"cannot trace the training step {where}{op_text}: the op has no fake-tensor (meta) "
                f"implementation. "
                f"Remedy: register one with torch.library.register_fake, or replace the op. "
                f"[{type(exc).__name__}: {_first_line(exc)}]")
    return (f"cannot trace the training step {where}{op_text}: {type(exc).__name__}: {_first_line(exc)}. "
            f"Remedy: check that loss_fn(model(*inputs), targets).backward() runs eagerly with these inputs; "
            f"then replace the failing construct with plain tensor ops.")
