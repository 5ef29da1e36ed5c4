"""Rewrite the in-place ops of a make_fx graph so that each node can run alone and again.

make_fx graphs are not functional (``relu_``, residual ``add_``, ``div_``): an in-place op on
another group's tensor would corrupt it when the schedule recomputes or pages. See
:func:`rewrite_inplace` for what becomes what and what stays in place.

Then :func:`run_elementwise_in_place` (``poet.extract(..., inplace=True)``) puts
back in place the elementwise ops whose input nothing else reads (ReLU, ReLU6, residual adds):
each joins the node that makes its input, so that node hands on the result in the input's
buffer, as a microcontroller kernel does, and a recompute of the node makes the input afresh.
"""

from __future__ import annotations

import torch
import torch.fx
from torch._ops import OpOverload

from poet.fxnodes import (INPLACE_META, ExtractError, arg_nodes, aten, is_inplace, is_random, is_view,
                          storage_of, view_base, written_args)

__all__ = ["rewrite_inplace", "run_elementwise_in_place"]

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
            if same and not written_args(candidate):
                return candidate
    raise ExtractError(f"in-place op {target} writes into a tensor another op produced and has no out-of-place "
                       f"twin with the same arguments; rewrite the model code without it (e.g. y = f(x) instead "
                       f"of x.f_()) to extract this model")


def rewrite_inplace(gm: torch.fx.GraphModule) -> None:
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
        writes = written_args(n.target)
        if not writes:
            continue
        if writes != [0]:
            raise ExtractError(f"op {n.target} ({n.name}) writes into argument(s) {writes}; only ops that "
                               f"write their first argument are supported. Rewrite the model code without this op.")
        self_arg = n.args[0]
        storage = storage_of(self_arg)
        functional = _functional_variant(n.target) if not is_random(n.target) else None
        metadata_only = functional is not None and any(r.alias_info is not None
                                                       for r in functional._schema.returns)
        if not metadata_only and (storage.op in ("placeholder", "get_attr") or is_random(n.target)):
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
        if not is_view(a):
            raise ExtractError(
                f"in-place op {old.target} ({old.name}) writes into a view of {storage.name}, and another alias "
                f"({a.name}) of that tensor is read afterwards; this cannot be rewritten out of place. "
                f"Rewrite the model code to avoid in-place updates of slices/views (e.g. use torch.cat or torch.where).")
        base = rebase(view_base(a), before)
        with graph.inserting_before(before):
            copy = graph.node_copy(a, lambda x: base if x is view_base(a) else x)
        remap[a] = copy
        return copy

    cur = new.next
    while cur.op != "root":
        for a in arg_nodes(cur):
            if a is new or a.op in ("placeholder", "get_attr"):
                continue
            if a in remap or storage_of(a) is storage:
                cur.replace_input_with(a, rebase(a, cur))
        cur = cur.next


# =========================================================================== elementwise ops in place

# unary elementwise ops that may overwrite their input (the in-place twin is ``name_``)
_UNARY = ("relu", "hardtanh", "hardswish", "silu", "gelu", "leaky_relu", "sigmoid", "tanh")
# binary ones: add (a + b, also into b when alpha is 1: IEEE addition commutes) and mul by a
# scalar (a * s)
_BINARY = ("add", "mul")


def _op_name(target: OpOverload) -> str:
    return target._schema.name.split("::")[-1]


def _scalar_arg(n: torch.fx.Node, index: int, name: str, default: object) -> object:
    return n.args[index] if len(n.args) > index else n.kwargs.get(name, default)


def _display(e: torch.fx.Node) -> str:
    """How a merged node names the op it runs in place (``extra["inplace"]``)."""
    name = _op_name(e.target)
    if name == "hardtanh" and (_scalar_arg(e, 1, "min_val", -1), _scalar_arg(e, 2, "max_val", 1)) == (0, 6):
        return "relu6"
    return name


def _redirectable(e: torch.fx.Node, reader: torch.fx.Node, x: torch.fx.Node) -> bool:
    """True when ``reader`` gives the same bits reading ``e``'s result instead of its input ``x``.

    * ``threshold_backward(g, x, 0)`` after ``relu(x)``: it reads x only through x > 0, and
      relu(x) > 0 exactly where x > 0;
    * ``hardtanh_backward(g, x, lo, hi)`` after ``hardtanh(x, lo, hi)``: its mask lo < x < hi
      equals lo < clamp(x, lo, hi) < hi;
    * ``leaky_relu_backward(g, x, s, False)`` after ``leaky_relu(x, s)`` with s >= 0: it reads x
      only through x > 0, and leaky_relu(x) > 0 exactly where x > 0.
    Anything else reads x itself (hardswish, silu, gelu backward) and is not redirected.
    """
    if reader.op != "call_function" or not isinstance(reader.target, OpOverload):
        return False
    if [i for i, a in enumerate(reader.args) if a is x] != [1] or x in reader.kwargs.values():
        return False
    kind, reads = _op_name(e.target), _op_name(reader.target)
    if kind == "relu" and reads == "threshold_backward":
        return reader.args[2] == 0
    if kind == "hardtanh" and reads == "hardtanh_backward":
        bounds = (_scalar_arg(e, 1, "min_val", -1), _scalar_arg(e, 2, "max_val", 1))
        return tuple(reader.args[2:4]) == bounds
    if kind == "leaky_relu" and reads == "leaky_relu_backward":
        slope = _scalar_arg(e, 1, "negative_slope", 0.01)
        return isinstance(slope, (int, float)) and slope >= 0 and reader.args[2] == slope \
            and reader.args[3] is False
    return False


def _same_layout(a: object, b: object) -> bool:
    return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape
            and a.dtype == b.dtype and a.stride() == b.stride() and a.device == b.device)


def _in_place_target(e: torch.fx.Node, order: dict[torch.fx.Node, int]) -> tuple[int, OpOverload] | None:
    """Which argument of elementwise op ``e`` it may overwrite, and its in-place twin; or None.

    The argument ``x`` must be a tensor computed by an op of the step (not a view, not static)
    with the layout of ``e``'s result, whose readers are ``e`` alone plus readers that
    :func:`_redirectable` lets read ``e``'s result instead (after ``e``). The other operand of
    a binary op must live in another storage and come from an op before ``x``'s storage was
    made (so that ``e`` can join the node that makes ``x``: edges keep pointing forward).
    """
    if e.op != "call_function" or not isinstance(e.target, OpOverload) or e.meta.get("autograd_backward"):
        return None
    name, overload = _op_name(e.target), e.target._overloadname
    out = e.meta.get("val")
    if name in _UNARY and overload == "default":
        candidates = [0]
    elif name == "add" and overload == "Tensor":
        alpha = e.kwargs.get("alpha", 1)
        candidates = [0, 1] if alpha == 1 and not isinstance(alpha, bool) else [0]
    elif name == "mul" and overload == "Tensor":
        candidates = [i for i in (0, 1) if isinstance(e.args[1 - i], torch.fx.Node)
                      and isinstance(e.args[1 - i].meta.get("val"), torch.Tensor)
                      and e.args[1 - i].meta["val"].dim() == 0]
    elif name == "mul" and overload == "Scalar":
        candidates = [0]
    else:
        return None
    if len(e.args) > 2 and name in _BINARY:
        return None
    for index in candidates:
        x = e.args[index] if index < len(e.args) else None
        if not isinstance(x, torch.fx.Node) or x.op != "call_function" or is_view(x):
            continue
        storage = storage_of(x)
        if storage.op != "call_function" or storage.meta.get("autograd_backward") or not _sole_alias(x):
            continue
        if not _same_layout(x.meta.get("val"), out):
            continue
        if not all(u is e or _read_as_result(e, u, x, order) for u in x.users):
            continue
        if e.args.count(x) != 1 or x in e.kwargs.values():
            continue
        others = [a for i, a in enumerate(e.args) if i != index and isinstance(a, torch.fx.Node)]
        if any(storage_of(o) is storage or (storage_of(o).op == "call_function"
                                             and order[storage_of(o)] > order[storage]) for o in others):
            continue
        twin = getattr(getattr(aten, name + "_"), overload)
        return index, twin
    return None


def _is_plain_clone(n: torch.fx.Node) -> bool:
    """``aten.clone(x)`` keeping x's layout: what autograd saves before an in-place op."""
    return (n.op == "call_function" and n.target is aten.clone.default and len(n.args) == 1
            and n.kwargs.get("memory_format") in (None, torch.preserve_format, torch.contiguous_format)
            and _same_layout(n.meta.get("val"), n.args[0].meta.get("val")))


def _read_as_result(e: torch.fx.Node, reader: torch.fx.Node, x: torch.fx.Node,
                    order: dict[torch.fx.Node, int]) -> bool:
    """True when ``reader`` of ``x`` gives the same bits reading ``e``'s result instead: a
    redirectable reader after ``e``, or a clone of ``x`` (autograd's copy of the input of an
    in-place op such as ``ReLU6(inplace=True)``) read only by such readers."""
    if _redirectable(e, reader, x):
        return order[reader] > order[e]
    return _is_plain_clone(reader) and bool(reader.users) and \
        all(_redirectable(e, u, reader) and order[u] > order[e] for u in reader.users)


def _sole_alias(x: torch.fx.Node) -> bool:
    """True when ``x``'s storage is reached only through ``x`` (each earlier in-place write on
    it has the next one as its only reader)."""
    n = x
    while is_inplace(n):
        base = n.args[0]
        if not isinstance(base, torch.fx.Node) or is_view(base) or set(base.users) != {n}:
            return False
        n = base
    return True


def run_elementwise_in_place(gm: torch.fx.GraphModule) -> list[str]:
    """Let elementwise ops whose input has no later reader overwrite it, as device kernels do.

    Runs after :func:`rewrite_inplace`. An op ``y = e(x)`` (``relu``, ``hardtanh``/ReLU6,
    ``hardswish``, ``silu``, ``gelu``, ``leaky_relu``, ``sigmoid``, ``tanh``, ``add`` of two
    tensors, ``mul`` by a scalar) of the forward pass becomes its in-place twin on ``x``
    (``relu_(x)``, ``hardtanh_``, ``add_``...) when nothing but ``e`` reads ``x`` in the whole
    step, apart from readers that give the same bits reading ``y`` (they are redirected to it:
    the backward of relu and ReLU6, see :func:`_redirectable`; a clone of ``x`` that autograd
    saved for such a reader, as it does for ``ReLU6(inplace=True)``, is dropped). The backward of hardswish, silu
    and gelu reads ``x`` itself, so those run in place only where no backward reads ``x``
    (the frozen part of a network). A residual ``a + b`` goes into ``b`` when ``a`` has other
    readers (IEEE addition commutes, so ``b + a`` has the same bits as ``a + b``; NaN payloads
    aside). Grouping then puts ``e`` in the node that makes ``x`` (an in-place op runs with the
    producer of the storage it writes): that node hands on ``y`` in ``x``'s storage and needs
    no second buffer, and recomputing it makes ``x`` afresh. The changed nodes get
    ``meta["poet_inplace"]`` (the op's name, ``relu6`` for ``hardtanh(x, 0, 6)``).

    Returns the fx names of the ops made in place, in graph order.
    """
    graph = gm.graph
    order = {n: i for i, n in enumerate(graph.nodes)}
    changed = []
    for e in list(graph.nodes):
        found = _in_place_target(e, order)
        if found is None:
            continue
        index, twin = found
        x = e.args[index]
        args = list(e.args)
        if index == 1:  # add(a, x) -> add_(x, a); mul(s, x) -> mul_(x, s)
            args[0], args[1] = args[1], args[0]
        for u in list(x.users):
            if u is e:
                continue
            if _is_plain_clone(u) and not _redirectable(e, u, x):  # read the result, drop the copy
                for reader in list(u.users):
                    reader.replace_input_with(u, e)
                graph.erase_node(u)
            else:
                u.replace_input_with(x, e)
        shown = _display(e)
        e.args = tuple(args)
        e.target = twin
        e.meta[INPLACE_META] = shown
        changed.append(e.name)
    graph.lint()
    gm.recompile()
    return changed
