"""Turn the groups of a traced step into its :class:`poet.graph.TrainingGraph`.

Each group becomes a :class:`poet.graph.GraphNode`: what it reads from other groups and from
static tensors (views resolved to their sources, which each consumer re-makes), what it hands
on, its FLOPs and bytes (``poet.opcosts`` summed over its ops), its output bytes (storages it
allocated that others read) and its workspace (the peak of its temporaries). Edges follow the
data and point forward. Static bytes: parameters, gradients of trained parameters, optimizer
state (:data:`OPTIMIZERS` buffers per trained parameter), buffers, inputs and targets, and
traced constants.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
import torch.fx
from torch._ops import OpOverload

from poet.fxnodes import (ExtractError, arg_nodes, aten, is_getitem, is_inplace, is_random,
                          is_view, owned_nbytes, source_of, storage_of, tensor_nbytes, view_base)
from poet.graph import GraphNode, Placeholder, TrainingGraph
from poet.grouping import LOSS, Group, layer_group_names, layer_groups, op_groups
from poet.opcosts import op_extra_flops, op_flops, op_traffic

__all__ = ["OPTIMIZERS", "Traced", "build_graph"]

log = logging.getLogger("poet.extract")

OPTIMIZERS = {"sgd": 0, "sgd_momentum": 1, "adam": 2}  # optimizer state buffers per trained param


@dataclass
class Traced:
    """What the trace hands to assembly: the rewritten graph, its inputs, the trained
    parameters, and the module calls seen (name -> count) and their types (name -> class)."""

    gm: torch.fx.GraphModule
    placeholders: list[Placeholder]
    trainable: list[str]
    module_calls: dict[str, int]
    module_types: dict[str, str]


@dataclass
class _Wiring:
    """What one group reads and hands on (fx nodes; views resolved to their sources)."""

    views: set[torch.fx.Node] = field(default_factory=set)  # view ops the group re-makes
    inputs: dict[torch.fx.Node, None] = field(default_factory=dict)  # sources from other groups
    static: dict[torch.fx.Node, None] = field(default_factory=dict)  # placeholders and constants
    exported: dict[torch.fx.Node, None] = field(default_factory=dict)  # sources other groups / the step read
    grads: dict[str, str] = field(default_factory=dict)  # parameter -> fx value of its gradient
    mutates: dict[str, None] = field(default_factory=dict)  # static tensors written in place


def _wire(groups: list[Group], group_of: dict[torch.fx.Node, Group], loss_value: torch.fx.Node,
          grad_nodes: dict[str, torch.fx.Node]) -> list[_Wiring]:
    index_of = {id(g): i for i, g in enumerate(groups)}
    wiring = [_Wiring() for _ in groups]

    def resolve(w: _Wiring, a: torch.fx.Node) -> torch.fx.Node:
        """Record the view chain of ``a`` as re-made by the group; return its source."""
        while is_view(a):
            w.views.add(a)
            a = view_base(a)
        return a

    for g, w in zip(groups, wiring):
        for n in g.members:
            for a in arg_nodes(n):
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
        src = source_of(value)
        if src.op in ("placeholder", "get_attr"):
            raise ExtractError(f"the gradient of {param!r} is an input of the step, not something it computes; "
                               f"this model cannot be extracted")
        w = wiring[index_of[id(group_of[src])]]
        resolve(w, value)
        w.exported.setdefault(src, None)
        if param is not None:
            w.grads[param] = value.name
    return wiring


def build_graph(traced: Traced, *, granularity: str, optimizer: str, name: str) -> TrainingGraph:
    gm = traced.gm
    graph = gm.graph
    order = {n: i for i, n in enumerate(graph.nodes)}
    groups, group_of = layer_groups(graph)
    layer_names = layer_group_names(groups, traced.module_types.get("", name), set(traced.module_calls))
    if granularity == "op":
        groups, group_of = op_groups(groups, group_of, graph)
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
        out_storages = {storage_of(v) for v in outputs}
        costs = [(op_flops(n), op_extra_flops(n), *op_traffic(n)) for n in g.members]
        flops, extra, read, written = (sum(c[k] for c in costs) for k in range(4))
        nodes.append(GraphNode(
            id=gi, name=names[gi], kind=g.kind, module_path="" if g.path == LOSS else g.path,
            flops=flops, extra_flops=extra, bytes_read=read, bytes_written=written,
            out_bytes=sum(owned_nbytes(s) for s in out_storages if s.op == "call_function"),
            workspace_bytes=_workspace(g.members, out_storages),
            aten_nodes=[n.name for n in g.members if isinstance(n.target, OpOverload)],
            fx_nodes=[n.name for n in by_order(set(g.members) | w.views)],
            inputs=[n.name for n in by_order(w.inputs)], static_inputs=[n.name for n in by_order(w.static)],
            outputs=[n.name for n in outputs], grads=w.grads, mutates=list(w.mutates),
            random=any(is_random(n.target) for n in g.members),
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
        num_aten_ops=len(aten_ops), num_nonview_ops=sum(1 for n in aten_ops if not is_view(n)),
        extra={"unused_params": unused} if unused else {},
    )


def _mutated_static(n: torch.fx.Node) -> list[torch.fx.Node]:
    """Static tensors (placeholders/constants) the op writes in place."""
    written: list[torch.fx.Node] = []
    if is_inplace(n):
        written.append(storage_of(n.args[0]))
    if n.target in (aten.native_batch_norm.default, aten._native_batch_norm_legit.default) and len(n.args) > 5 \
            and n.args[5] is True:
        written += [storage_of(a) for a in n.args[3:5] if isinstance(a, torch.fx.Node)]
    return [w for w in written if w.op in ("placeholder", "get_attr")]


def _check_random_fills(groups: list[Group], group_of: dict[torch.fx.Node, Group]) -> None:
    for g in groups:
        for n in g.members:
            if is_inplace(n) and storage_of(n).op == "call_function" and group_of[storage_of(n)] is not g:
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
        if is_getitem(n) or is_inplace(n):
            continue
        val = n.meta.get("val")
        if isinstance(val, torch.Tensor):
            if n not in excluded:
                alloc_at[n] = i
            continue
        if isinstance(val, (tuple, list)):
            taken = {u.args[1]: u for u in n.users if is_getitem(u) and u in pos}
            for k, elem in enumerate(val):
                if not isinstance(elem, torch.Tensor):
                    continue
                holder = taken.get(k)
                if holder is None:
                    transient[i] += tensor_nbytes(elem)
                elif holder not in excluded:
                    alloc_at[holder] = i
    last_use = dict(alloc_at)
    for i, n in enumerate(members):
        for a in arg_nodes(n):
            s = storage_of(a)
            if s in last_use:
                last_use[s] = max(last_use[s], i)
    peak = 0
    for i in range(len(members)):
        live = transient[i] + sum(owned_nbytes(s) for s, a in alloc_at.items() if a <= i <= last_use[s])
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
