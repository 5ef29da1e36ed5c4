"""What a node of the traced ATen graph is, for the extractor's stages.

Views (ops whose schema returns an alias without writing, ``_unsafe_view``, and ``getitem``
of a view) are aliases of their base; in-place ops write their first argument; the storage a
value lives in is found through both. Bytes come from ``meta["val"]`` (fake tensors).
:class:`ExtractError` is raised by every stage of ``poet.extract``.
"""

from __future__ import annotations

import operator
from typing import Any

import torch
import torch.fx
import torch.utils._pytree as pytree
from torch._ops import OpOverload

__all__ = ["ExtractError", "INPLACE_META", "aten", "is_getitem", "written_args", "is_view", "view_base", "source_of",
           "is_inplace", "storage_of", "arg_nodes", "is_random", "storage_nbytes", "tensor_nbytes",
           "tensor_leaves", "owned_nbytes", "drop_masked_results"]

aten = torch.ops.aten

# fx node meta key: set on an elementwise op that the extractor made overwrite its input
# (``poet.inplace.run_elementwise_in_place``); the value is the op's name for display
INPLACE_META = "poet_inplace"


class ExtractError(ValueError):
    """The step could not be traced or grouped; the message says why and what to do."""


def is_getitem(n: torch.fx.Node) -> bool:
    return n.op == "call_function" and n.target is operator.getitem


def written_args(target: Any) -> list[int]:
    """Indices of schema arguments the op writes (``Tensor(a!)``)."""
    if not isinstance(target, OpOverload):
        return []
    return [i for i, a in enumerate(target._schema.arguments)
            if a.alias_info is not None and a.alias_info.is_write]


def is_view(n: torch.fx.Node) -> bool:
    """True for ops that return an alias of an input without writing (and ``_unsafe_view``)."""
    if n.op != "call_function":
        return False
    if n.target is operator.getitem:
        src = n.args[0]
        return isinstance(src, torch.fx.Node) and is_view(src)
    t = n.target
    if not isinstance(t, OpOverload):
        return False
    if t is aten._unsafe_view.default:
        return True
    if written_args(t):
        return False
    return any(r.alias_info is not None for r in t._schema.returns)


def view_base(n: torch.fx.Node) -> torch.fx.Node:
    if n.target is operator.getitem or n.target is aten._unsafe_view.default:
        return n.args[0]
    for i, a in enumerate(n.target._schema.arguments):
        if a.alias_info is not None:
            value = n.args[i] if i < len(n.args) else n.kwargs.get(a.name)
            if isinstance(value, torch.fx.Node):
                return value
    return n.args[0]


def source_of(n: torch.fx.Node) -> torch.fx.Node:
    """The non-view node whose value ``n`` is (``n`` itself unless ``n`` is a view)."""
    while is_view(n):
        n = view_base(n)
    return n


def is_inplace(n: torch.fx.Node) -> bool:
    return n.op == "call_function" and 0 in written_args(n.target)


def storage_of(n: torch.fx.Node) -> torch.fx.Node:
    """The node that allocated the storage ``n``'s value lives in."""
    n = source_of(n)
    while is_inplace(n):
        n = source_of(n.args[0])
    return n


def arg_nodes(n: torch.fx.Node) -> list[torch.fx.Node]:
    """Distinct fx nodes among ``n``'s args and kwargs, in order."""
    seen: dict[torch.fx.Node, None] = {}
    torch.fx.node.map_arg((n.args, n.kwargs), lambda a: seen.setdefault(a, None))
    return list(seen)


def is_random(target: Any) -> bool:
    return isinstance(target, OpOverload) and torch.Tag.nondeterministic_seeded in target.tags


def storage_nbytes(t: Any) -> int:
    if not isinstance(t, torch.Tensor):
        return 0
    try:
        return int(t.untyped_storage().nbytes())
    except Exception:  # noqa: BLE001 - some tensor subclasses have no storage
        return tensor_nbytes(t)


def tensor_nbytes(t: Any) -> int:
    if not isinstance(t, torch.Tensor):
        return 0
    return int(t.numel()) * t.element_size()


def tensor_leaves(value: Any) -> list[torch.Tensor]:
    return [v for v in pytree.tree_leaves(value) if isinstance(v, torch.Tensor)]


def owned_nbytes(storage: torch.fx.Node) -> int:
    """Bytes of the storage a non-view, non-in-place node allocated."""
    v = storage.meta.get("val")
    if "poet_rewritten_from" in storage.meta:  # meta['val'] still aliases the old in-place target
        return tensor_nbytes(v)
    return storage_nbytes(v)


def drop_masked_results(gm: torch.fx.GraphModule) -> int:
    """Set to None the results an op's ``output_mask`` argument turns off, in ``meta["val"]``.

    The CPU kernels return no tensor for them (``native_batch_norm_backward`` of a BatchNorm
    whose input needs no gradient returns None for grad_input), while some fake kernels still
    return one; counted, it would be a workspace and bytes written that never exist. Returns how
    many results were dropped."""
    dropped = 0
    for n in gm.graph.nodes:
        schema = getattr(n.target, "_schema", None) if n.op == "call_function" else None
        val = n.meta.get("val")
        if schema is None or not isinstance(val, (tuple, list)):
            continue
        for i, arg in enumerate(schema.arguments):
            if arg.name != "output_mask":
                continue
            mask = n.kwargs.get("output_mask", n.args[i] if i < len(n.args) else None)
            off = {k for k, on in enumerate(mask or ()) if not on and k < len(val)
                   and isinstance(val[k], torch.Tensor)}
            if off:
                n.meta["val"] = type(val)(None if k in off else v for k, v in enumerate(val))
                for u in n.users:
                    if is_getitem(u) and u.args[1] in off:
                        u.meta["val"] = None
                dropped += len(off)
    return dropped
