"""How the executor evaluates each node: its ops, and what to drop right after each op.

A :class:`NodePlan` is computed once per graph (cached in ``graph.extra["_replay_plans"]``):
the node's :class:`poet.graph.Op` list, and per op the values whose last use inside the node
it is (released right after it, so temporaries die as early as in eager) and the results of a
multi-output op that nothing in the node reads (dropped right after the op). Values the node
hands on (outputs, gradients, the loss) are kept to the end. ``grad_buffers`` names the values
whose storage is a static gradient buffer (``update="buffered"``: not counted again), and
``update_of`` marks an update node (``update="fused"``) with its parameter. ``opaque`` names the outputs whose
bytes carry no meaning (scratch the trace saw as empty), which the executor's value check
leaves out.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field

from .errors import ReplayError
from .graph import GraphNode, Op, TrainingGraph, node_ops

__all__ = ["NodePlan", "plan_node", "graph_plans"]


@dataclass
class NodePlan:
    """How the executor evaluates one node: its ops and, per op, what to drop right after it."""

    node: GraphNode
    ops: list[Op]
    drop_elems: list[tuple[int, ...]]   # per op: results of a multi-output op nobody in the node reads
    release: list[tuple[str, ...]]      # per op: values whose last use in the node is this op
    wanted: list[str]                   # outputs + gradient values (kept to the end of the node)
    touches_mutable: list[str]          # static values this node reads or writes that some node mutates
    opaque: frozenset[str]              # outputs the trace saw empty (scratch whose bytes carry no meaning)
    grad_buffers: frozenset[str] = frozenset()  # values whose storage is a static gradient buffer
    grad_elems: dict[str, tuple[int, ...]] = field(default_factory=dict)  # multi-output op -> its
    #                                   results that are gradient buffers (excluded from its first count)
    update_of: str | None = None        # an update node: the parameter it updates


def plan_node(graph: TrainingGraph, node: GraphNode, mutable: set[str]) -> NodePlan:
    """The plan of ``node``; ``mutable`` is the set of static values some node writes in place.

    Raises ReplayError if the node has an fx node that is not a ``call_function``."""
    try:
        ops = node_ops(graph, node)
    except ValueError as e:
        raise ReplayError(str(e)) from None
    fx_names = [op.name for op in ops]
    in_node = set(fx_names)
    wanted = list(node.outputs) + [v for v in node.grads.values() if v not in node.outputs]
    update_of = node.extra.get("update_of")
    if update_of is not None and node.extra["grad_value"] not in wanted:
        wanted.append(node.extra["grad_value"])  # the gradient the update applies
    keep = set(wanted) | ({graph.loss_value} & in_node)  # the loss may be a view: keep it to the end
    fx_nodes = [graph.fx_node(n) for n in fx_names]
    last_use = {n: k for k, n in enumerate(fx_names)}  # a value nobody reads dies after its op
    for k, fx in enumerate(fx_nodes):
        for a in fx.all_input_nodes:
            if a.name in in_node:
                last_use[a.name] = max(last_use[a.name], k)
    release: list[list[str]] = [[] for _ in fx_names]
    for name, k in last_use.items():
        if name not in keep:
            release[k].append(name)
    drops = []
    for fx in fx_nodes:
        users = [u for u in fx.users if u.name in in_node]
        drop: tuple[int, ...] = ()
        val = fx.meta.get("val")
        if isinstance(val, (tuple, list)) and fx.name not in keep and all(u.target is operator.getitem for u in users):
            taken = {u.args[1] for u in users}
            drop = tuple(i for i in range(len(val)) if i not in taken)
        drops.append(drop)
    touches = [s for s in dict.fromkeys(list(node.static_inputs) + list(node.mutates)) if s in mutable]
    grad_buffers = frozenset(node.extra.get("grad_buffers", ()))
    grad_elems: dict[str, tuple[int, ...]] = {}
    for fx in fx_nodes:
        taken = tuple(sorted(u.args[1] for u in fx.users if u.target is operator.getitem and u.name in grad_buffers
                             and u.name in in_node))
        if taken:
            grad_elems[fx.name] = taken
    return NodePlan(node, ops, drops, [tuple(r) for r in release], wanted, touches, _opaque(graph, node),
                    grad_buffers, grad_elems, update_of)


def _opaque(graph: TrainingGraph, node: GraphNode) -> frozenset[str]:
    """Outputs whose traced (fake) value is empty though they are handed on: the CPU LSTM's oneDNN
    workspace, 0 bytes in fake mode and uninitialised scratch in reality, which differs from run
    to run without changing any result."""
    out = set()
    for name in node.outputs:
        val = graph.fx_node(name).meta.get("val")
        if getattr(val, "numel", None) is not None and val.numel() == 0:
            out.add(name)
    return frozenset(out)


def graph_plans(graph: TrainingGraph) -> list[NodePlan]:
    """The plan of every node, in id order (cached in ``graph.extra``)."""
    cached = graph.extra.get("_replay_plans")
    if cached is not None and len(cached) == graph.T:
        return cached
    mutable = {m for n in graph.nodes for m in n.mutates}
    plans = [plan_node(graph, n, mutable) for n in graph.nodes]
    graph.extra["_replay_plans"] = plans
    return plans
