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
grouped into layers (measured; see TOOLCHAIN.md). ``make_fx`` on a plain function
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
  ``native_batch_norm`` stay too and are listed in ``GraphNode.mutates``.
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

Memory: parameters, gradient buffers of trained parameters, optimizer state,
buffers, the example inputs and targets, and traced constants are static
(``static_bytes``); everything else the step produces is a node output.
"""

from __future__ import annotations

import logging
import operator
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx
import torch.fx.traceback as fx_traceback
import torch.nn as nn
import torch.utils._pytree as pytree
from torch._ops import OpOverload
from torch.utils import flop_counter

from poet._callable import make_module_callable
from poet.graph import GraphNode, Placeholder, TrainingGraph

__all__ = ["extract", "ExtractError", "GRANULARITIES", "OPTIMIZERS", "TRAIN_MODES"]

log = logging.getLogger(__name__)

GRANULARITIES = ("layer", "op")
OPTIMIZERS = {"sgd": 0, "sgd_momentum": 1, "adam": 2}  # optimizer state buffers per trained param
TRAIN_MODES = ("all", "bias", "last")

_MODULE_KEY = "poet_module"
_CALL_KEY = "poet_call"
_LOSS = "<loss>"
aten = torch.ops.aten


class ExtractError(ValueError):
    """The step could not be traced or grouped; the message says why and what to do."""


# =========================================================================== public entry


def extract(
    model: nn.Module,
    loss_fn: Callable[..., torch.Tensor],
    example_inputs: Any,
    example_targets: Any,
    *,
    granularity: str = "layer",
    train: str | Sequence[str] = "all",
    optimizer: str = "sgd",
    name: str | None = None,
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
    ``optimizer``: "sgd", "sgd_momentum" or "adam" (0, 1 or 2 state buffers per trained
    parameter in ``static_bytes``). ``name`` defaults to the model's class name.

    The model is left as it was: parameters, buffers, ``requires_grad`` flags and
    torch's RNG state are not changed. Raises :class:`ExtractError` when the step cannot
    be traced (naming the module and op, with a remedy) and ``ValueError`` for bad
    arguments.
    """
    _check_arguments(model, loss_fn, granularity, optimizer)
    inputs = tuple(example_inputs) if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
    _check_tensors("example_inputs", inputs)
    _check_tensors("example_targets", pytree.tree_leaves(example_targets))
    start = time.perf_counter()
    trainable = _select_trainable(model, train, inputs)
    traced = _trace(model, loss_fn, inputs, example_targets, trainable)
    _rewrite_inplace(traced.gm)
    graph = _build_graph(traced, granularity=granularity, optimizer=optimizer,
                         name=name if name is not None else type(model).__name__)
    graph.trace_seconds = time.perf_counter() - start
    graph.extra["loss_fn"] = loss_fn  # poet.replay.verify runs the eager reference step with it
    log.info("extracted %s: %d nodes, %d edges, %d ATen ops in %.2f s", graph.name, graph.T,
             len(graph.edges), graph.num_aten_ops, graph.trace_seconds)
    return graph


# ``poet.extract`` is both this module and (re-exported by ``poet``) the function; which one the
# attribute holds depends on import order. Make both spellings work either way: the function
# carries ``ExtractError`` and the module is callable.
extract.ExtractError = ExtractError  # type: ignore[attr-defined]


make_module_callable(__name__, extract)


# =========================================================================== arguments


def _check_arguments(model: Any, loss_fn: Any, granularity: Any, optimizer: Any) -> None:
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not callable(loss_fn):
        raise ValueError(f"loss_fn must be callable as loss_fn(output, targets), got {type(loss_fn).__name__}")
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {tuple(OPTIMIZERS)}, got {optimizer!r}")


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


def _last_module_with_params(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> nn.Module:
    """The last module, in forward call order, that owns parameters directly (a fake-tensor run)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    called: list[nn.Module] = []
    owners = [m for m in model.modules() if next(m.parameters(recurse=False), None) is not None]
    if not owners:
        raise ValueError("train='last' needs a model with parameters; this one has none")
    handles = [m.register_forward_pre_hook(lambda mod, args: called.append(mod)) for m in owners]
    mode = FakeTensorMode()
    try:
        state = {n: mode.from_tensor(t) for n, t in [*model.named_parameters(), *model.named_buffers()]}
        fake_inputs = tuple(mode.from_tensor(x) for x in inputs)
        with mode, torch.no_grad():
            torch.func.functional_call(model, state, fake_inputs)
    except Exception as exc:  # noqa: BLE001 - any failure of the user's forward is reported the same way
        raise ExtractError(f"train='last' could not run the model's forward to find its last layer: "
                           f"{type(exc).__name__}: {_first_line(exc)}") from exc
    finally:
        for h in handles:
            h.remove()
    if not called:
        raise ValueError("train='last': no module owning parameters was called by the forward pass")
    return called[-1]


# =========================================================================== tracing


@dataclass
class _Traced:
    gm: torch.fx.GraphModule
    placeholders: list[Placeholder]
    trainable: list[str]
    module_calls: dict[str, int]
    module_types: dict[str, str]


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
        ctx = fx_traceback.annotate({_MODULE_KEY: name, _CALL_KEY: self.calls[name]})
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
           targets: Any, trainable: list[str]) -> _Traced:
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
        with fx_traceback.annotate({_MODULE_KEY: _LOSS, _CALL_KEY: 1}):
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
    placeholders = [Placeholder(fx.name, role, qual, trained, min(_tensor_nbytes(leaf), _storage_nbytes(leaf)))
                    for fx, (role, qual, trained), leaf in zip(ph_nodes, roles, leaves)]
    for n in gm.graph.nodes:
        if n.op == "get_attr":
            value = getattr(gm, n.target)
            if isinstance(value, torch.Tensor):
                placeholders.append(Placeholder(n.name, "constant", str(n.target), False, _storage_nbytes(value)))
    return _Traced(gm, placeholders, trainable, dict(annotator.calls), annotator.types)


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


# =========================================================================== fx helpers


def _is_getitem(n: torch.fx.Node) -> bool:
    return n.op == "call_function" and n.target is operator.getitem


def _writes(target: Any) -> list[int]:
    """Indices of schema arguments the op writes (``Tensor(a!)``)."""
    if not isinstance(target, OpOverload):
        return []
    return [i for i, a in enumerate(target._schema.arguments)
            if a.alias_info is not None and a.alias_info.is_write]


def _is_view(n: torch.fx.Node) -> bool:
    """True for ops that return an alias of an input without writing (and ``_unsafe_view``)."""
    if n.op != "call_function":
        return False
    if n.target is operator.getitem:
        src = n.args[0]
        return isinstance(src, torch.fx.Node) and _is_view(src)
    t = n.target
    if not isinstance(t, OpOverload):
        return False
    if t is aten._unsafe_view.default:
        return True
    if _writes(t):
        return False
    return any(r.alias_info is not None for r in t._schema.returns)


def _view_base(n: torch.fx.Node) -> torch.fx.Node:
    if n.target is operator.getitem or n.target is aten._unsafe_view.default:
        return n.args[0]
    for i, a in enumerate(n.target._schema.arguments):
        if a.alias_info is not None:
            value = n.args[i] if i < len(n.args) else n.kwargs.get(a.name)
            if isinstance(value, torch.fx.Node):
                return value
    return n.args[0]


def _source(n: torch.fx.Node) -> torch.fx.Node:
    """The non-view node whose value ``n`` is (``n`` itself unless ``n`` is a view)."""
    while _is_view(n):
        n = _view_base(n)
    return n


def _is_inplace(n: torch.fx.Node) -> bool:
    return n.op == "call_function" and 0 in _writes(n.target)


def _storage(n: torch.fx.Node) -> torch.fx.Node:
    """The node that allocated the storage ``n``'s value lives in."""
    n = _source(n)
    while _is_inplace(n):
        n = _source(n.args[0])
    return n


def _arg_nodes(n: torch.fx.Node) -> list[torch.fx.Node]:
    """Distinct fx nodes among ``n``'s args and kwargs, in order."""
    seen: dict[torch.fx.Node, None] = {}
    torch.fx.node.map_arg((n.args, n.kwargs), lambda a: seen.setdefault(a, None))
    return list(seen)


def _is_random(target: Any) -> bool:
    return isinstance(target, OpOverload) and torch.Tag.nondeterministic_seeded in target.tags


def _storage_nbytes(t: Any) -> int:
    if not isinstance(t, torch.Tensor):
        return 0
    try:
        return int(t.untyped_storage().nbytes())
    except Exception:  # noqa: BLE001 - some tensor subclasses have no storage
        return _tensor_nbytes(t)


def _tensor_nbytes(t: Any) -> int:
    if not isinstance(t, torch.Tensor):
        return 0
    return int(t.numel()) * t.element_size()


def _tensors(value: Any) -> list[torch.Tensor]:
    return [v for v in pytree.tree_leaves(value) if isinstance(v, torch.Tensor)]


# =========================================================================== in-place rewrite


def _functional_variant(target: OpOverload) -> OpOverload:
    """The out-of-place twin of in-place op ``target``: same name without ``_``, same arguments."""
    schema = target._schema
    name = schema.name.split("::")[-1]
    packet = getattr(aten, name[:-1], None) if name.endswith("_") else None
    signature = [(a.name, str(a.type)) for a in schema.arguments]
    if packet is not None:
        overloads = packet.overloads()
        preferred = [target._overloadname] if target._overloadname in overloads else []
        for overload in preferred + [o for o in overloads if o != target._overloadname]:
            candidate = getattr(packet, overload)
            same = [(a.name, str(a.type)) for a in candidate._schema.arguments] == signature
            if same and not _writes(candidate):
                return candidate
    raise ExtractError(f"in-place op {target} writes into a tensor another op produced and has no out-of-place "
                       f"twin with the same arguments; rewrite the model code without it (e.g. y = f(x) instead "
                       f"of x.f_()) to extract this model")


def _rewrite_inplace(gm: torch.fx.GraphModule) -> None:
    """Make the graph safe to run node by node and to recompute.

    * ``aten.view`` becomes ``aten.reshape`` (a view whenever the real strides allow; fake
      tensors get some strides wrong, e.g. ``mse_loss_backward``'s, so a traced ``view`` can
      fail on real tensors where eager autograd, which uses ``reshape``, does not).
    * In-place metadata ops (``transpose_``, ``squeeze_``...) become their view twins.
    * In-place writes into an op's result (``relu_``, ``add_``, ``div_``) become out-of-place
      ops and every later reader of the written storage reads the new value.
    * Kept in place: writes whose storage is static (a placeholder or constant: buffers)
      and random fills (``bernoulli_``), which write a tensor allocated in their own node.

    An in-place write through a view whose base has other aliases read later cannot be
    expressed without scatter ops and raises :class:`ExtractError`.
    """
    graph = gm.graph
    for n in list(graph.nodes):
        if n.op != "call_function" or not isinstance(n.target, OpOverload):
            continue
        if n.target is aten.view.default:
            n.target = aten.reshape.default
            continue
        writes = _writes(n.target)
        if not writes:
            continue
        if writes != [0]:
            raise ExtractError(f"op {n.target} ({n.name}) writes into argument(s) {writes}; only ops that "
                               f"write their first argument are supported. Rewrite the model code without this op.")
        self_arg = n.args[0]
        storage = _storage(self_arg)
        functional = _functional_variant(n.target) if not _is_random(n.target) else None
        metadata_only = functional is not None and any(r.alias_info is not None
                                                       for r in functional._schema.returns)
        if not metadata_only and (storage.op in ("placeholder", "get_attr") or _is_random(n.target)):
            continue
        assert functional is not None
        with graph.inserting_after(n):
            new = graph.call_function(functional, n.args, dict(n.kwargs))
        new.meta = dict(n.meta)
        new.meta["poet_rewritten_from"] = str(n.target)
        n.replace_all_uses_with(new)
        if metadata_only:  # only the tensor itself changed shape; other aliases of its storage did not
            for user in list(self_arg.users):
                if user is not new and _comes_after(user, new):
                    user.replace_input_with(self_arg, new)
        else:
            _redirect_later_readers(graph, new, self_arg, storage, n)
        graph.erase_node(n)
    graph.lint()
    gm.recompile()


def _comes_after(node: torch.fx.Node, anchor: torch.fx.Node) -> bool:
    cur = anchor.next
    while cur.op != "root":
        if cur is node:
            return True
        cur = cur.next
    return False


def _redirect_later_readers(graph: torch.fx.Graph, new: torch.fx.Node, self_arg: torch.fx.Node,
                            storage: torch.fx.Node, old: torch.fx.Node) -> None:
    """After ``old`` (an in-place write into ``self_arg``) became ``new``, make every later
    reader of the written storage read ``new`` (views of ``self_arg`` are re-made on ``new``)."""
    remap: dict[torch.fx.Node, torch.fx.Node] = {self_arg: new}

    def rebase(a: torch.fx.Node, before: torch.fx.Node) -> torch.fx.Node:
        if a in remap:
            return remap[a]
        if not _is_view(a):
            raise ExtractError(
                f"in-place op {old.target} ({old.name}) writes into a view of {storage.name}, and another alias "
                f"({a.name}) of that tensor is read afterwards; this cannot be rewritten out of place. "
                f"Rewrite the model code to avoid in-place updates of slices/views (e.g. use torch.cat or torch.where).")
        base = rebase(_view_base(a), before)
        with graph.inserting_before(before):
            copy = graph.node_copy(a, lambda x: base if x is _view_base(a) else x)
        remap[a] = copy
        return copy

    cur = new.next
    while cur.op != "root":
        for a in _arg_nodes(cur):
            if a is new or a.op in ("placeholder", "get_attr"):
                continue
            if a in remap or _storage(a) is storage:
                cur.replace_input_with(a, rebase(a, cur))
        cur = cur.next


# =========================================================================== grouping


@dataclass(eq=False)
class _Group:
    """A run of ops that becomes one node. ``label`` is what the run shares:
    ("forward"|"loss", module path, call) for forward ops, ("backward", id of the
    forward group differentiated) for backward ops, ("op", fx name) at op granularity."""

    label: tuple[Any, ...]
    kind: str
    path: str
    call: int
    forward: _Group | None = None  # for backward groups: the forward group they differentiate
    members: list[torch.fx.Node] = field(default_factory=list)
    layer: _Group | None = None  # at op granularity: the layer group the op belongs to


def _anchor(n: torch.fx.Node) -> torch.fx.Node | None:
    """The op a node must run with: a getitem's producer, a random fill's allocation."""
    if _is_getitem(n):
        return n.args[0]
    if _is_inplace(n) and _storage(n).op == "call_function":
        return _storage(n)
    return None


def _forward_label(n: torch.fx.Node) -> tuple[str, str, int] | None:
    custom = n.meta.get("custom")
    if not custom or _MODULE_KEY not in custom or n.meta.get("autograd_backward"):
        return None
    path, call = custom[_MODULE_KEY], custom[_CALL_KEY]
    return ("loss" if path == _LOSS else "forward", path, call)


def _layer_groups(graph: torch.fx.Graph) -> tuple[list[_Group], dict[torch.fx.Node, _Group]]:
    """Group non-view ops into runs: module calls, their backward, the loss (see module docstring)."""
    nodes = [n for n in graph.nodes if n.op == "call_function"]
    position = {n: i for i, n in enumerate(nodes)}
    seq_owner: dict[int, torch.fx.Node] = {}
    for n in nodes:
        seq = n.meta.get("seq_nr")
        if _forward_label(n) is not None and seq is not None and seq >= 0:
            seq_owner.setdefault(seq, n)
    compute = [n for n in nodes if not _is_view(n)]
    first_label = next((lbl for lbl in map(_forward_label, compute) if lbl is not None), None)
    if first_label is None:  # pragma: no cover - the root module's hooks label every forward op
        raise ExtractError("internal: no op of the traced step carries a module label")

    groups: list[_Group] = []
    group_of: dict[torch.fx.Node, _Group] = {}
    runs_of_label: dict[tuple[Any, ...], list[_Group]] = {}

    def forward_group_of(owner: torch.fx.Node) -> _Group | None:
        """The forward group of the op that created autograd node ``owner`` (views: nearest run)."""
        if owner in group_of:
            return group_of[owner]
        runs = runs_of_label.get(_forward_label(owner), [])
        if not runs:
            return None
        pos = position[owner]
        after = [g for g in runs if position[g.members[0]] > pos]
        return after[0] if after else runs[-1]

    current: _Group | None = None
    for n in compute:
        anchor = _anchor(n)
        if anchor is not None and anchor in group_of:
            group_of[anchor].members.append(n)
            group_of[n] = group_of[anchor]
            continue
        label: tuple[Any, ...] | None = _forward_label(n)
        forward: _Group | None = None
        if label is None and n.meta.get("autograd_backward") and not n.meta.get("is_gradient_acc"):
            owner = seq_owner.get(n.meta.get("seq_nr", -1))
            forward = forward_group_of(owner) if owner is not None else None
            if forward is not None:
                label = forward.label if forward.kind == "loss" else ("backward", id(forward))
        if label is None:  # gradient seed, gradient accumulation, unknown: join the run before
            label = current.label if current is not None else first_label
        if current is None or current.label != label:
            if label[0] == "backward" and forward is not None:
                current = _Group(label, "backward", forward.path, forward.call, forward=forward)
            else:
                current = _Group(label, label[0], label[1], label[2])
                runs_of_label.setdefault(label, []).append(current)
            groups.append(current)
        current.members.append(n)
        group_of[n] = current
    return groups, group_of


def _op_groups(layer_groups: list[_Group], layer_of: dict[torch.fx.Node, _Group],
               graph: torch.fx.Graph) -> tuple[list[_Group], dict[torch.fx.Node, _Group]]:
    """One group per non-view op (getitems and random fills stay with their anchor op)."""
    groups: list[_Group] = []
    group_of: dict[torch.fx.Node, _Group] = {}
    for n in graph.nodes:
        if n not in layer_of:
            continue
        anchor = _anchor(n)
        if anchor is not None and anchor in group_of:
            group_of[anchor].members.append(n)
            group_of[n] = group_of[anchor]
            continue
        layer = layer_of[n]
        g = _Group(("op", n.name), layer.kind, layer.path, layer.call, layer=layer)
        g.members.append(n)
        groups.append(g)
        group_of[n] = g
    return groups, group_of


def _op_display(n: torch.fx.Node) -> str:
    name = n.target._schema.name.split("::")[-1] if isinstance(n.target, OpOverload) else str(n.target)
    return name.rstrip("_") or name


def _main_op(g: _Group) -> str:
    """The op that does most of the group's work (first one on ties), for names."""
    ops = [n for n in g.members if isinstance(n.target, OpOverload)]
    if not ops:
        return "op"
    best = max(ops, key=lambda n: (_op_flops(n), _op_extra_flops(n), -ops.index(n)))
    return _op_display(best)


def _layer_group_names(groups: list[_Group], root_name: str, called: set[str]) -> dict[int, str]:
    """Readable, unique names: ``conv1``, ``layer1.0.relu#2``, ``layer1.0:add``, ``conv1.backward``, ``loss``."""
    runs = Counter(g.label for g in groups if g.kind != "backward")
    names: dict[int, str] = {}
    used: Counter[str] = Counter()

    def has_called_children(path: str) -> bool:
        prefix = f"{path}." if path else ""
        return any(c != path and c.startswith(prefix) for c in called)

    for g in groups:
        if g.kind == "loss":
            base = "loss"
        elif g.kind == "forward":
            base = g.path if g.path else root_name
            if g.call > 1:
                base = f"{base}#{g.call}"
            if runs[g.label] > 1 or has_called_children(g.path):
                base = f"{base}:{_main_op(g)}"
        else:
            assert g.forward is not None
            base = f"{names[id(g.forward)]}.backward"
        used[base] += 1
        names[id(g)] = base if used[base] == 1 else f"{base}~{used[base]}"
    return names


# =========================================================================== per-op costs

# Work the flop counter ignores (estimates, not measurements), in FLOPs per element of the op's
# first input unless noted. Elementwise ops and anything not listed: 1 per output element.
# Reductions (sum, mean, pooling, nll_loss): 1 per input element. Data movement, allocation
# and indexing (_FREE_OPS): 0. The CPU attention kernel and its backward, which the counter
# does not register: torch's own formulas for the GPU attention kernels (sdpa_flop_count,
# sdpa_backward_flop_count: 2 and 5 matmuls) plus the softmax constants per score element.
_NORM_FWD_PER_ELEM = 8      # mean, variance (2 passes), normalise, scale and shift
_NORM_BWD_PER_ELEM = 10     # two reductions over the gradient plus the elementwise combination
_SOFTMAX_FWD_PER_ELEM = 5   # max, subtract, exp, sum, divide (log for log-softmax)
_SOFTMAX_BWD_PER_ELEM = 4   # product, row sum, subtract, multiply
_FREE_OPS = {  # data movement, allocation and indexing: no arithmetic
    "empty", "empty_like", "empty_strided", "zeros", "zeros_like", "ones", "ones_like", "full", "full_like",
    "new_zeros", "new_ones", "new_empty", "new_full", "new_empty_strided", "scalar_tensor", "arange",
    "fill", "fill_", "zero", "zero_", "clone", "copy", "copy_", "_to_copy", "cat", "stack", "embedding",
    "index_select", "gather", "select_backward", "slice_backward", "as_strided_scatter", "constant_pad_nd",
    "lift_fresh_copy", "_unsafe_index", "index", "slice_scatter", "select_scatter", "repeat", "expand_copy",
    "permute_copy", "view_copy", "t_copy", "transpose_copy", "unsqueeze_copy", "squeeze_copy", "alias_copy",
    "split_with_sizes_copy", "unbind_copy", "detach_copy",
}
_REDUCTIONS = {"sum", "mean", "amax", "amin", "max", "min", "prod", "var", "std", "var_mean", "std_mean",
               "norm", "linalg_vector_norm", "logsumexp", "argmax", "argmin", "any", "all", "cumsum",
               "max_pool2d_with_indices", "max_pool3d_with_indices", "avg_pool2d", "avg_pool3d",
               "_adaptive_avg_pool2d", "_adaptive_avg_pool3d", "adaptive_max_pool2d", "nll_loss_forward",
               "nll_loss2d_forward"}
_NORMS_FWD = {"native_batch_norm", "_native_batch_norm_legit", "_native_batch_norm_legit_functional",
              "_native_batch_norm_legit_no_training", "native_layer_norm", "native_group_norm", "_fused_rms_norm",
              "_batch_norm_with_update", "_batch_norm_no_update"}
_NORMS_BWD = {"native_batch_norm_backward", "native_layer_norm_backward", "native_group_norm_backward",
              "_fused_rms_norm_backward", "batch_norm_backward"}
_SOFTMAX_FWD = {"_softmax", "_log_softmax", "_safe_softmax"}
_SOFTMAX_BWD = {"_softmax_backward_data", "_log_softmax_backward_data"}
_CPU_SDPA = "_scaled_dot_product_flash_attention_for_cpu"


def _val(a: Any) -> Any:
    return a.meta.get("val") if isinstance(a, torch.fx.Node) else a


def _op_flops(n: torch.fx.Node) -> int:
    """FLOPs as ``torch.utils.flop_counter`` counts them (0 for ops it does not know)."""
    target = n.target
    if not isinstance(target, OpOverload):
        return 0
    formula = flop_counter.flop_registry.get(target.overloadpacket)
    if formula is None:
        return 0
    args = torch.fx.node.map_arg(n.args, _val)
    kwargs = torch.fx.node.map_arg(n.kwargs, _val)
    return int(formula(*args, out_val=n.meta.get("val"), **kwargs))


def _op_extra_flops(n: torch.fx.Node) -> int:
    """Estimated FLOPs of work the flop counter ignores (see the constants above)."""
    target = n.target
    if not isinstance(target, OpOverload) or target.overloadpacket in flop_counter.flop_registry:
        return 0
    op = target._schema.name.split("::")[-1]
    out = _tensors(n.meta.get("val"))
    out_numel = sum(t.numel() for t in out)
    first_in = _val(n.args[0]) if n.args else None
    in_numel = first_in.numel() if isinstance(first_in, torch.Tensor) else out_numel
    if op == _CPU_SDPA:
        q, k, v = (_val(a).shape for a in n.args[:3])
        return int(flop_counter.sdpa_flop_count(q, k, v)) + _SOFTMAX_FWD_PER_ELEM * q[0] * q[1] * q[2] * k[2]
    if op == _CPU_SDPA + "_backward":
        grad_out, q, k, v = (_val(a).shape for a in n.args[:4])
        return int(flop_counter.sdpa_backward_flop_count(grad_out, q, k, v)) + \
            _SOFTMAX_BWD_PER_ELEM * q[0] * q[1] * q[2] * k[2]
    if op in _FREE_OPS or op.rstrip("_") in _FREE_OPS:
        return 0
    if op in _NORMS_FWD:
        return _NORM_FWD_PER_ELEM * in_numel
    if op in _NORMS_BWD:
        return _NORM_BWD_PER_ELEM * in_numel
    if op in _SOFTMAX_FWD:
        return _SOFTMAX_FWD_PER_ELEM * in_numel
    if op in _SOFTMAX_BWD:
        return _SOFTMAX_BWD_PER_ELEM * in_numel
    if op in _REDUCTIONS:
        return in_numel
    return out_numel  # elementwise ops and anything else: one FLOP per output element


def _op_traffic(n: torch.fx.Node) -> tuple[int, int]:
    """(bytes read, bytes written) by one op: its distinct tensor arguments and its results."""
    if n.target is operator.getitem:
        return 0, 0
    read = 0
    for a in _arg_nodes(n):
        v = a.meta.get("val")
        if isinstance(v, torch.Tensor):
            read += min(_tensor_nbytes(v), _storage_nbytes(v))
    if _is_inplace(n):
        written = _tensor_nbytes(_val(n.args[0]))
    else:
        written = sum(_tensor_nbytes(t) for t in _tensors(n.meta.get("val")))
    return read, written


def _owned_nbytes(storage: torch.fx.Node) -> int:
    """Bytes of the storage a non-view, non-in-place node allocated."""
    v = storage.meta.get("val")
    if "poet_rewritten_from" in storage.meta:  # meta['val'] still aliases the old in-place target
        return _tensor_nbytes(v)
    return _storage_nbytes(v)


# =========================================================================== assembling the graph


@dataclass
class _Wiring:
    """What one group reads and hands on (fx nodes; views resolved to their sources)."""

    views: set[torch.fx.Node] = field(default_factory=set)  # view ops the group re-makes
    inputs: dict[torch.fx.Node, None] = field(default_factory=dict)  # sources from other groups
    static: dict[torch.fx.Node, None] = field(default_factory=dict)  # placeholders and constants
    exported: dict[torch.fx.Node, None] = field(default_factory=dict)  # sources other groups / the step read
    grads: dict[str, str] = field(default_factory=dict)  # parameter -> fx value of its gradient
    mutates: dict[str, None] = field(default_factory=dict)  # static tensors written in place


def _wire(groups: list[_Group], group_of: dict[torch.fx.Node, _Group], loss_value: torch.fx.Node,
          grad_nodes: dict[str, torch.fx.Node]) -> list[_Wiring]:
    index_of = {id(g): i for i, g in enumerate(groups)}
    wiring = [_Wiring() for _ in groups]

    def resolve(w: _Wiring, a: torch.fx.Node) -> torch.fx.Node:
        """Record the view chain of ``a`` as re-made by the group; return its source."""
        while _is_view(a):
            w.views.add(a)
            a = _view_base(a)
        return a

    for g, w in zip(groups, wiring):
        for n in g.members:
            for a in _arg_nodes(n):
                src = resolve(w, a)
                if src.op in ("placeholder", "get_attr"):
                    w.static.setdefault(src, None)
                elif group_of[src] is not g:
                    w.inputs.setdefault(src, None)
                    wiring[index_of[id(group_of[src])]].exported.setdefault(src, None)
            for target in _mutated_static(n):
                w.mutates.setdefault(target.name, None)
    # the loss and the gradients leave the step: their producers export them
    for param, value in [(None, loss_value), *grad_nodes.items()]:
        src = _source(value)
        if src.op in ("placeholder", "get_attr"):
            raise ExtractError(f"the gradient of {param!r} is an input of the step, not something it computes; "
                               f"this model cannot be extracted")
        w = wiring[index_of[id(group_of[src])]]
        resolve(w, value)
        w.exported.setdefault(src, None)
        if param is not None:
            w.grads[param] = value.name
    return wiring


def _build_graph(traced: _Traced, *, granularity: str, optimizer: str, name: str) -> TrainingGraph:
    gm = traced.gm
    graph = gm.graph
    order = {n: i for i, n in enumerate(graph.nodes)}
    groups, group_of = _layer_groups(graph)
    layer_names = _layer_group_names(groups, traced.module_types.get("", name), set(traced.module_calls))
    if granularity == "op":
        groups, group_of = _op_groups(groups, group_of, graph)
        names = [g.members[0].name for g in groups]
    else:
        names = [layer_names[id(g)] for g in groups]
    index_of = {id(g): i for i, g in enumerate(groups)}

    # values the step returns: the loss, then one gradient per trained parameter (None if unused)
    output_node = next(n for n in graph.nodes if n.op == "output")
    returned = list(output_node.args[0])  # make_fx flattens (loss, [grads]) to [loss, *grads]
    loss_value, grad_list = returned[0], returned[1:]
    if len(grad_list) != len(traced.trainable) or not isinstance(loss_value, torch.fx.Node):  # pragma: no cover
        raise ExtractError(f"internal: the step returned {len(grad_list)} gradients for "
                           f"{len(traced.trainable)} trained parameters")
    grad_nodes = {p: g for p, g in zip(traced.trainable, grad_list) if isinstance(g, torch.fx.Node)}
    unused = [p for p in traced.trainable if p not in grad_nodes]
    if unused:
        log.warning("trained parameters that do not affect the loss (no gradient node): %s", ", ".join(unused))
    wiring = _wire(groups, group_of, loss_value, grad_nodes)

    def by_order(values: Iterable[torch.fx.Node]) -> list[torch.fx.Node]:
        return sorted(values, key=order.__getitem__)

    nodes: list[GraphNode] = []
    for gi, (g, w) in enumerate(zip(groups, wiring)):
        outputs = by_order(w.exported)
        out_storages = {_storage(v) for v in outputs}
        costs = [(_op_flops(n), _op_extra_flops(n), *_op_traffic(n)) for n in g.members]
        flops, extra, read, written = (sum(c[k] for c in costs) for k in range(4))
        nodes.append(GraphNode(
            id=gi, name=names[gi], kind=g.kind, module_path="" if g.path == _LOSS else g.path,
            flops=flops, extra_flops=extra, bytes_read=read, bytes_written=written,
            out_bytes=sum(_owned_nbytes(s) for s in out_storages if s.op == "call_function"),
            workspace_bytes=_workspace(g.members, out_storages),
            aten_nodes=[n.name for n in g.members if isinstance(n.target, OpOverload)],
            fx_nodes=[n.name for n in by_order(set(g.members) | w.views)],
            inputs=[n.name for n in by_order(w.inputs)], static_inputs=[n.name for n in by_order(w.static)],
            outputs=[n.name for n in outputs], grads=w.grads, mutates=list(w.mutates),
            random=any(_is_random(n.target) for n in g.members),
            extra={"module_call": g.call} if g.layer is None else {"layer": layer_names[id(g.layer)]},
        ))

    edges = sorted({(index_of[id(group_of[src])], gi) for gi, w in enumerate(wiring) for src in w.inputs})
    for u, v in edges:
        if u >= v:  # pragma: no cover - runs in graph order make this impossible
            raise ExtractError(f"internal: edge {nodes[u].name} -> {nodes[v].name} goes backward")
    _check_random_fills(groups, group_of)

    aten_ops = [n for n in graph.nodes if n.op == "call_function" and isinstance(n.target, OpOverload)]
    breakdown = _static_breakdown(traced.placeholders, optimizer)
    return TrainingGraph(
        name=name, nodes=nodes, edges=edges, static_bytes=sum(breakdown.values()), static_breakdown=breakdown,
        granularity=granularity, optimizer=optimizer, trainable=list(traced.trainable), fx_graph=gm,
        placeholders=traced.placeholders, loss_value=loss_value.name,
        grad_values={p: v.name for p, v in grad_nodes.items()},
        num_aten_ops=len(aten_ops), num_nonview_ops=sum(1 for n in aten_ops if not _is_view(n)),
        extra={"unused_params": unused} if unused else {},
    )


def _mutated_static(n: torch.fx.Node) -> list[torch.fx.Node]:
    """Static tensors (placeholders/constants) the op writes in place."""
    written: list[torch.fx.Node] = []
    if _is_inplace(n):
        written.append(_storage(n.args[0]))
    if n.target in (aten.native_batch_norm.default, aten._native_batch_norm_legit.default) and len(n.args) > 5 \
            and n.args[5] is True:
        written += [_storage(a) for a in n.args[3:5] if isinstance(a, torch.fx.Node)]
    return [w for w in written if w.op in ("placeholder", "get_attr")]


def _check_random_fills(groups: list[_Group], group_of: dict[torch.fx.Node, _Group]) -> None:
    for g in groups:
        for n in g.members:
            if _is_inplace(n) and _storage(n).op == "call_function" and group_of[_storage(n)] is not g:
                raise ExtractError(f"internal: random fill {n.name} writes a tensor of another node")


def _workspace(members: list[torch.fx.Node], excluded: set[torch.fx.Node]) -> int:
    """Peak bytes of the group's temporaries while it runs.

    A temporary is a storage allocated by one of ``members`` that is neither an output
    (``excluded``) nor static; it is live from the op that allocates it through its last
    reader in the group. Unused results of multi-output ops live only during their op.
    """
    pos = {n: i for i, n in enumerate(members)}
    alloc_at: dict[torch.fx.Node, int] = {}
    transient = [0] * len(members)
    for i, n in enumerate(members):
        if _is_getitem(n) or _is_inplace(n):
            continue
        val = n.meta.get("val")
        if isinstance(val, torch.Tensor):
            if n not in excluded:
                alloc_at[n] = i
            continue
        if isinstance(val, (tuple, list)):
            taken = {u.args[1]: u for u in n.users if _is_getitem(u) and u in pos}
            for k, elem in enumerate(val):
                if not isinstance(elem, torch.Tensor):
                    continue
                holder = taken.get(k)
                if holder is None:
                    transient[i] += _tensor_nbytes(elem)
                elif holder not in excluded:
                    alloc_at[holder] = i
    last_use = dict(alloc_at)
    for i, n in enumerate(members):
        for a in _arg_nodes(n):
            s = _storage(a)
            if s in last_use:
                last_use[s] = max(last_use[s], i)
    peak = 0
    for i in range(len(members)):
        live = transient[i] + sum(_owned_nbytes(s) for s, a in alloc_at.items() if a <= i <= last_use[s])
        peak = max(peak, live)
    return peak


def _static_breakdown(placeholders: list[Placeholder], optimizer: str) -> dict[str, int]:
    params = sum(p.nbytes for p in placeholders if p.role == "param")
    trained = sum(p.nbytes for p in placeholders if p.role == "param" and p.trainable)
    return {
        "params": params,
        "grads": trained,
        "optimizer_state": OPTIMIZERS[optimizer] * trained,
        "buffers": sum(p.nbytes for p in placeholders if p.role == "buffer"),
        "inputs": sum(p.nbytes for p in placeholders if p.role in ("input", "target")),
        "constants": sum({p.qualname: p.nbytes for p in placeholders if p.role == "constant"}.values()),
    }
