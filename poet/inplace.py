"""Rewrite the in-place ops of a make_fx graph so that each node can run alone and again.

make_fx graphs are not functional (``relu_``, residual ``add_``, ``div_``): an in-place op on
another group's tensor would corrupt it when the schedule recomputes or pages. See
:func:`rewrite_inplace` for what becomes what and what stays in place.
"""

from __future__ import annotations

import torch
import torch.fx
from torch._ops import OpOverload

from poet.fxnodes import (ExtractError, arg_nodes, aten, is_random, is_view, storage_of,
                          view_base, written_args)

__all__ = ["rewrite_inplace"]

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
