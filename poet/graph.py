"""The layer-level DAG of one training step, as :func:`poet.extract` returns it.

A :class:`TrainingGraph` has two faces:

* **The cost face** that ``poet.costs.make_problem`` reads: ``nodes`` (each a
  :class:`GraphNode` with ``id, name, kind, module_path, flops, extra_flops,
  bytes_read, bytes_written, out_bytes, workspace_bytes, aten_nodes``), ``edges``,
  ``static_bytes`` and ``name``. Node ids are ``0..T-1`` in a topological order and
  every edge goes from a lower id to a higher one.
* **The replay face** for an executor: the traced ``torch.fx.GraphModule``
  (``fx_graph``), the traced function's inputs in order (``placeholders``) and, per
  node, the fx nodes it evaluates (``fx_nodes``), the values it reads from other nodes
  (``inputs``) and from static memory (``static_inputs``), the values it hands on
  (``outputs``), the gradients it produces (``grads``), the buffers it writes in place
  (``mutates``) and whether it draws random numbers (``random``).

Contract of the replay face (what :func:`run_node` relies on and an executor may too):

1. Evaluating every node's ``fx_nodes`` in id order, each with only the static values
   and the ``outputs`` of earlier nodes at hand, performs the same ATen calls in the
   same order as the traced step, so on CPU with the same thread count it reproduces
   eager gradients bitwise.
2. A node never writes in place to a tensor another node produced. The only in-place
   writes left in the graph are (a) random fills (``bernoulli_``) of a tensor the node
   itself just allocated and (b) writes to static tensors listed in ``mutates``
   (BatchNorm running statistics and ``num_batches_tracked``). Recomputing a node is
   therefore safe once the executor gives a recomputation scratch copies of the
   ``mutates`` buffers and, for a ``random`` node, the RNG state of its first run.
3. Views own no memory and belong to no node: every node lists in ``fx_nodes`` the
   view ops it needs, recomputed from their base, so ``inputs`` and ``outputs`` only
   name values that own their storage (or, for ``bernoulli_``-style in-place ops,
   alias a storage their node allocated). Traced ``view`` ops are stored as ``reshape``
   (fake tensors get some strides wrong; eager autograd reshapes too), which is a view
   whenever the real strides allow it and otherwise copies, exactly as eager does.
4. Grad mode: eager runs forward ops with grad mode on and backward ops (fx nodes with
   ``meta["autograd_backward"]``) with it off, and a few kernels depend on it (the CPU
   LSTM keeps its workspace only with grad mode on), so :func:`run_node` does the same;
   no input requires grad, so no autograd graph is built.
5. ``grads`` maps a parameter's qualified name to the fx value holding its gradient;
   that value may be a view (``t(mm)``, ``view(sum)``) computed inside ``fx_nodes``,
   and its base is among ``outputs``.

Sizes (``out_bytes``, ``workspace_bytes``) come from the fake tensors of the trace; they
match the real storages except where torch's fake kernels differ from the real ones (the
CPU LSTM's workspace is 0 bytes in fake mode; ``mse_loss`` returns a scalar whose real
storage is larger).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - typing only
    import networkx as nx
    import torch
    import torch.fx

__all__ = ["GraphNode", "Placeholder", "TrainingGraph", "Op", "node_ops", "evaluate", "run_node", "NODE_KINDS",
           "PLACEHOLDER_ROLES"]

NODE_KINDS = ("forward", "loss", "backward")
PLACEHOLDER_ROLES = ("param", "buffer", "input", "target", "constant")
_MISSING = object()


@dataclass
class Placeholder:
    """One input of the traced step function (or a constant the trace captured).

    ``fx_name`` is the fx node's name; ``role`` is one of ``PLACEHOLDER_ROLES``;
    ``qualname`` is the parameter/buffer name in the model (``"layer1.0.bn1.running_mean"``),
    ``"inputs[i]"`` / ``"targets[i]"`` (index into the flattened example inputs/targets)
    or the GraphModule attribute of a constant; ``trainable`` is True for the
    parameters whose gradient the step returns; ``nbytes`` is the storage size.
    """

    fx_name: str
    role: str
    qualname: str
    trainable: bool
    nbytes: int


@dataclass
class GraphNode:
    """One node of a :class:`TrainingGraph` (a layer call, its backward, the loss, or one op).

    Costs: ``flops`` is what ``torch.utils.flop_counter`` counts for the node's ops, with poet's own
    rule for convolutions (``poet.opcosts.FLOP_OVERRIDES``: torch's ignores groups in the backward);
    ``extra_flops`` estimates the work that counter ignores (elementwise ops, norms,
    softmax, losses, CPU attention); ``bytes_read``/``bytes_written`` sum, over the
    node's ops, the bytes of each op's distinct tensor arguments and of its results
    (no fusion assumed); ``out_bytes`` is the storage of the values other nodes (or
    the optimizer, for gradients) read from this node; ``workspace_bytes`` is the peak
    of the node's temporaries while it runs (excluding its inputs and ``out_bytes``).

    ``aten_nodes`` names the non-view ATen ops whose work this node owns; ``fx_nodes``
    is everything to evaluate, in graph order (``aten_nodes``, ``getitem``\\ s and the
    view ops it needs). See the module docstring for the replay fields. ``extra["inplace"]``
    (graphs extracted with ``inplace=True``) names the elementwise ops that run in place inside
    the node, overwriting one of its results (``["relu6"]``, ``["add", "relu"]``).
    """

    id: int
    name: str
    kind: str
    module_path: str
    flops: int = 0
    extra_flops: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    out_bytes: int = 0
    workspace_bytes: int = 0
    aten_nodes: list[str] = field(default_factory=list)
    fx_nodes: list[str] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    static_inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    grads: dict[str, str] = field(default_factory=dict)
    mutates: list[str] = field(default_factory=list)
    random: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainingGraph:
    """The DAG of one training step (see the module docstring for the contract).

    ``static_bytes`` = sum of ``static_breakdown``: ``trained_params`` and ``frozen_params``
    (the parameters that train and those that do not; where frozen ones live is decided when
    the graph is priced, ``poet.costs.make_problem(..., weights=)``), ``grads`` (one buffer per
    trained parameter with ``update="buffered"``, none with ``"fused"``), ``optimizer_state``
    (none for "sgd", one buffer per trained parameter for "sgd_momentum", two for "adam",
    three for "adam_amsgrad"), ``buffers`` (BatchNorm running statistics etc.), ``inputs``
    (the example batch and targets) and ``constants`` (tensors the trace captured).

    ``update``: "buffered" (gradients go to static buffers, PyTorch's ``backward()`` +
    ``opt.step()``) or "fused" (one update node per trained parameter, kind "backward" with
    ``extra["update_of"]``, applies the optimizer as soon as the gradient exists).
    """

    name: str
    nodes: list[GraphNode]
    edges: list[tuple[int, int]]
    static_bytes: int
    static_breakdown: dict[str, int]
    granularity: str
    optimizer: str
    trainable: list[str]
    fx_graph: torch.fx.GraphModule
    placeholders: list[Placeholder]
    loss_value: str
    grad_values: dict[str, str]
    num_aten_ops: int
    num_nonview_ops: int
    trace_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    update: str = "buffered"

    # ------------------------------------------------------------------ queries
    @property
    def T(self) -> int:
        """Number of nodes."""
        return len(self.nodes)

    @property
    def total_flops(self) -> int:
        """Sum of ``flops`` (equals ``FlopCounterMode(custom_mapping=poet.opcosts.FLOP_OVERRIDES)``
        on the eager step: torch's formulas with poet's rule for convolutions)."""
        return sum(n.flops for n in self.nodes)

    @property
    def total_extra_flops(self) -> int:
        """Sum of ``extra_flops`` (work the flop counter does not count)."""
        return sum(n.extra_flops for n in self.nodes)

    @property
    def activation_bytes(self) -> int:
        """Sum of ``out_bytes``: everything the step produces, if all of it were kept."""
        return sum(n.out_bytes for n in self.nodes)

    @property
    def preds(self) -> list[list[int]]:
        """``preds[i]``: ids of the nodes ``i`` reads from, ascending."""
        out: list[list[int]] = [[] for _ in self.nodes]
        for u, v in self.edges:
            out[v].append(u)
        return out

    @property
    def succs(self) -> list[list[int]]:
        """``succs[i]``: ids of the nodes that read from ``i``, ascending."""
        out: list[list[int]] = [[] for _ in self.nodes]
        for u, v in self.edges:
            out[u].append(v)
        return out

    def node(self, name: str) -> GraphNode:
        """The node called ``name`` (KeyError naming it if there is none)."""
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(f"graph {self.name!r} has no node named {name!r}")

    def fx_node(self, name: str) -> torch.fx.Node:
        """The fx node of ``fx_graph`` called ``name``."""
        lookup = self.extra.get("_fx_lookup")
        if lookup is None or len(lookup) != len(self.fx_graph.graph.nodes):
            lookup = {n.name: n for n in self.fx_graph.graph.nodes}
            self.extra["_fx_lookup"] = lookup
        try:
            return lookup[name]
        except KeyError:
            raise KeyError(f"traced graph has no fx node named {name!r}") from None

    @property
    def frozen_param_bytes(self) -> int:
        """Bytes of the parameters that do not train (what weights="flash" keeps out of RAM)."""
        return sum(p.nbytes for p in self.placeholders if p.role == "param" and not p.trainable)

    def frozen_bytes_read(self) -> list[int]:
        """Per node id: bytes of the frozen parameters among its ``static_inputs`` (each read
        once per compute; with weights in flash these are read in place from the flash)."""
        frozen = {p.fx_name: p.nbytes for p in self.placeholders if p.role == "param" and not p.trainable}
        return [sum(frozen.get(s, 0) for s in dict.fromkeys(n.static_inputs)) for n in self.nodes]

    def update_nodes(self) -> dict[str, int]:
        """Trained parameter -> id of its update node (empty unless ``update == "fused"``)."""
        return {n.extra["update_of"]: n.id for n in self.nodes if "update_of" in n.extra}

    def producer(self) -> dict[str, int]:
        """Map from each value in some node's ``outputs`` to that node's id."""
        return {value: n.id for n in self.nodes for value in n.outputs}

    def to_networkx(self) -> nx.DiGraph:
        """A ``networkx.DiGraph`` with one vertex per node id carrying the cost fields."""
        import networkx as nx

        g = nx.DiGraph(name=self.name, static_bytes=self.static_bytes)
        for n in self.nodes:
            g.add_node(
                n.id, name=n.name, kind=n.kind, module_path=n.module_path, flops=n.flops,
                extra_flops=n.extra_flops, bytes_read=n.bytes_read, bytes_written=n.bytes_written,
                out_bytes=n.out_bytes, workspace_bytes=n.workspace_bytes,
            )
        g.add_edges_from(self.edges)
        return g

    def summary(self) -> dict[str, Any]:
        """Headline numbers, JSON-ready (what the benchmark table and the CLI show)."""
        return {
            "name": self.name,
            "granularity": self.granularity,
            "aten_ops": self.num_aten_ops,
            "nonview_ops": self.num_nonview_ops,
            "nodes": self.T,
            "edges": len(self.edges),
            "flops": self.total_flops,
            "extra_flops": self.total_extra_flops,
            "activation_bytes": self.activation_bytes,
            "static_bytes": self.static_bytes,
            "static_breakdown": dict(self.static_breakdown),
            "trace_seconds": self.trace_seconds,
        }

    # ------------------------------------------------------------------ replay helpers
    def static_values(self, model: torch.nn.Module, inputs: Any, targets: Any, *,
                      params: Mapping[str, torch.Tensor] | None = None,
                      buffers: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Real tensors for every placeholder, keyed by fx name.

        Parameters come detached (same storage, no autograd); buffers are the model's
        own buffer tensors (so ``mutates`` writes land in the model, as in eager
        training); inputs/targets are the leaves of ``inputs``/``targets`` flattened as
        in :func:`poet.extract`; constants come from ``fx_graph``. ``params``/``buffers``:
        ``dict(model.named_parameters())`` / ``named_buffers()`` if the caller has them.
        """
        import torch.utils._pytree as pytree

        params = dict(model.named_parameters()) if params is None else params
        buffers = dict(model.named_buffers()) if buffers is None else buffers
        in_leaves = pytree.tree_leaves(inputs)
        tgt_leaves = pytree.tree_leaves(targets)
        values: dict[str, torch.Tensor] = {}
        for ph in self.placeholders:
            if ph.role == "param":
                values[ph.fx_name] = params[ph.qualname].detach()
            elif ph.role == "buffer":
                values[ph.fx_name] = buffers[ph.qualname]
            elif ph.role == "input":
                values[ph.fx_name] = in_leaves[_leaf_index(ph.qualname)]
            elif ph.role == "target":
                values[ph.fx_name] = tgt_leaves[_leaf_index(ph.qualname)]
            else:
                values[ph.fx_name] = getattr(self.fx_graph, ph.qualname)
        return values


def _leaf_index(qualname: str) -> int:
    return int(qualname[qualname.index("[") + 1 : qualname.index("]")])


@dataclass(frozen=True)
class Op:
    """One fx node of a graph node, ready to evaluate (see :func:`node_ops`).

    ``args``/``kwargs`` are the fx node's own (fx nodes stand for values, looked up when the op
    runs); ``getitem`` marks ``operator.getitem`` on a multi-output result; ``grad_enabled`` is
    the grad mode eager runs the op under (off for backward ops, contract point 4). For a
    ``getitem`` whose arguments are an fx node and a constant int, ``source`` names that node and
    ``index`` is the int (so the evaluator takes the element without mapping the arguments).
    ``refs``: when no fx node sits inside a container of ``args`` or in ``kwargs``, the
    (position, fx name) of each argument that is an fx node (the evaluator fills those in and
    passes the rest as they are); None otherwise (the arguments are mapped with ``map_arg``).
    """

    name: str
    target: Callable[..., Any]
    args: tuple
    kwargs: dict
    getitem: bool
    grad_enabled: bool
    source: str | None = None
    index: int = 0
    refs: tuple[tuple[int, str], ...] | None = None


def node_ops(graph: TrainingGraph, node: GraphNode) -> list[Op]:
    """The :class:`Op` of each of ``node.fx_nodes``, in graph order.

    Raises ValueError naming the fx node if one is not a ``call_function`` node (the extractor
    emits no other kind inside a node).
    """
    from torch.fx import Node

    ops = []
    for fx_name in node.fx_nodes:
        fx = graph.fx_node(fx_name)
        if fx.op != "call_function":
            raise ValueError(f"fx node {fx_name!r} of node {node.name!r} has op {fx.op!r}; only "
                             f"call_function nodes can run inside a node")
        getitem = fx.target is operator.getitem
        source, index = None, 0
        if getitem and len(fx.args) == 2 and not fx.kwargs and type(fx.args[1]) is int \
                and isinstance(fx.args[0], Node):
            source, index = fx.args[0].name, fx.args[1]
        ops.append(Op(fx_name, fx.target, tuple(fx.args), dict(fx.kwargs), getitem,
                      not fx.meta.get("autograd_backward", False), source, index, _top_refs(fx)))
    return ops


def _top_refs(fx: torch.fx.Node) -> tuple[tuple[int, str], ...] | None:
    """``Op.refs`` of an fx node: its top-level fx node arguments, or None if one is nested."""
    from torch.fx import Node
    from torch.fx.node import map_arg

    nested: list = []
    refs = []
    for pos, a in enumerate(fx.args):
        if isinstance(a, Node):
            refs.append((pos, a.name))
        else:
            map_arg(a, nested.append)
    map_arg(dict(fx.kwargs), nested.append)
    return None if nested else tuple(refs)


def evaluate(ops: Sequence[Op], fetch: Callable[[str], Any],
             after: Callable[[int, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Evaluate ``ops`` in order, each under its eager grad mode; return the values by fx name.

    This is the one node evaluator: :func:`run_node` and the executor (:mod:`poet.executor`)
    both call it. An argument produced by an earlier op of ``ops`` comes from the result being
    built; any other comes from ``fetch(fx name)``, which raises if it has none. ``after(k,
    env)``, if given, runs right after op ``k``'s value is stored in ``env`` (the dict being
    built) and may replace or delete entries of ``env`` (the executor drops temporaries there
    and counts the storages alive). The caller's grad mode is restored on return.
    """
    import torch
    import torch.fx

    env: dict[str, Any] = {}
    missing = _MISSING

    def arg(a: torch.fx.Node) -> Any:
        v = env.get(a.name, missing)
        return fetch(a.name) if v is missing else v

    map_arg = torch.fx.node.map_arg
    set_grad = torch._C._set_grad_enabled
    grad_mode = torch.is_grad_enabled()
    mode = grad_mode
    try:
        for k, op in enumerate(ops):
            source = op.source
            if source is not None:  # an element of a multi-output result
                value = env.get(source, missing)
                value = (fetch(source) if value is missing else value)[op.index]
            else:
                refs = op.refs
                if refs is None:
                    args = map_arg(op.args, arg)
                    kwargs = map_arg(op.kwargs, arg) if op.kwargs else None
                else:  # fx nodes only at the top level: fill them in, pass the constants as they are
                    args = list(op.args)
                    for pos, name in refs:
                        args[pos] = env[name] if name in env else fetch(name)
                    kwargs = op.kwargs
                if op.getitem:
                    value = args[0][args[1]]
                else:
                    if op.grad_enabled != mode:
                        mode = op.grad_enabled
                        set_grad(mode)
                    value = op.target(*args, **kwargs) if kwargs else op.target(*args)
                del args, kwargs
            env[op.name] = value
            del value
            if after is not None:
                after(k, env)
    finally:
        set_grad(grad_mode)
    return env


def run_node(graph: TrainingGraph, node: GraphNode | int, values: Mapping[str, Any]) -> dict[str, Any]:
    """Evaluate one node on real tensors and return its ``outputs`` and ``grads`` values.

    ``values`` must hold every name in ``node.static_inputs`` and ``node.inputs``
    (typically :meth:`TrainingGraph.static_values` plus the outputs of earlier nodes),
    none of which requires grad. Each op runs with grad mode as in eager training (on for
    forward ops, off for backward ops; see the module docstring); no autograd graph is
    built. Returns ``{fx value name: tensor}`` for each name in
    ``node.outputs`` and each value in ``node.grads``; temporaries are dropped. Raises
    KeyError naming the missing value if an input is absent.
    """
    if isinstance(node, int):
        node = graph.nodes[node]

    def fetch(name: str) -> Any:
        try:
            return values[name]
        except KeyError:
            raise KeyError(f"node {node.name!r} (id {node.id}) needs fx value {name!r}, "
                           f"which is not available") from None

    env = evaluate(node_ops(graph, node), fetch)
    wanted = list(node.outputs) + [v for v in node.grads.values() if v not in node.outputs]
    return {name: env[name] if name in env else values[name] for name in wanted}
