"""Turn the groups of a traced step into its :class:`poet.graph.TrainingGraph`.

Each group becomes a :class:`poet.graph.GraphNode`: what it reads from other groups and from
static tensors (views resolved to their sources, which each consumer re-makes), what it hands
on, its FLOPs and bytes (``poet.opcosts`` summed over its ops), its output bytes (storages it
allocated that others read) and its workspace (the peak of its temporaries). Edges follow the
data and point forward. Static bytes: trained and frozen parameters, gradient buffers of
trained parameters (``update="buffered"`` only), optimizer state (:data:`OPTIMIZERS` buffers
per trained parameter, and Adam's step count, 4 B per trained tensor), buffers, inputs and targets, and traced constants.

Elementwise ops run in place (``poet.inplace.run_elementwise_in_place``) are members of the
group that makes the tensor they overwrite: its result lives in that tensor's storage, so the
node's ``out_bytes`` count it once and its workspace does not hold the overwritten input apart;
``extra["inplace"]`` lists them by name (``["relu6"]``).

Gradients (``update``):

* ``"buffered"`` (PyTorch's ``loss.backward(); opt.step()``): each trained parameter's
  gradient is written into its static gradient buffer, so the node that computes it does not
  count it again: a storage that is exported only as a gradient is neither in that node's
  ``outputs`` nor in its ``out_bytes`` nor in its workspace.
* ``"fused"`` (MCUNetV3's TTE, the in-place update): there is no gradient buffer. Each trained
  parameter gets an update node (kind ``"backward"``, ``extra["update_of"]`` = the parameter)
  placed right after the node that completes its gradient (or after the last node reading the
  parameter, if that comes later); it reads the gradient (an edge from its producer), applies
  the optimizer to the parameter in place and produces nothing (``out_bytes`` 0). Its FLOPs,
  bytes and workspace are counted by hand from torch's single-tensor SGD/Adam code
  (:func:`update_counts`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx
from torch._ops import OpOverload

from poet.fxnodes import (INPLACE_META, ExtractError, arg_nodes, aten, is_getitem, is_inplace, is_random,
                          is_view, owned_nbytes, source_of, storage_of, tensor_nbytes, view_base)
from poet.graph import GraphNode, Placeholder, TrainingGraph
from poet.grouping import LOSS, Group, layer_group_names, layer_groups, op_groups
from poet.opcosts import op_extra_flops, op_flops, op_traffic

__all__ = ["OPTIMIZERS", "UPDATES", "Traced", "build_graph", "describe_optimizer", "update_counts"]

log = logging.getLogger("poet.extract")

# optimizer kind -> state buffers per trained parameter (each the parameter's size)
OPTIMIZERS = {"sgd": 0, "sgd_momentum": 1, "adam": 2, "adam_amsgrad": 3}
# kinds whose state also holds a step count per trained parameter tensor: torch's Adam/AdamW keep
# ``state["step"]``, a 0-d tensor of ``torch.optim.optimizer._get_scalar_dtype()`` (float32, or
# float64 when that is the default dtype) on CPU when not capturable
_STEP_COUNTED = ("adam", "adam_amsgrad")
UPDATES = ("buffered", "fused")

# the settings of each kind given by name (torch's defaults for that optimizer)
_KIND_SETTINGS = {
    "sgd": {"algorithm": "sgd", "momentum": 0.0, "nesterov": False, "weight_decay": 0.0, "maximize": False},
    "sgd_momentum": {"algorithm": "sgd", "momentum": 0.9, "nesterov": False, "weight_decay": 0.0,
                     "maximize": False},
    "adam": {"algorithm": "adam", "amsgrad": False, "weight_decay": 0.0, "decoupled": False, "maximize": False},
    "adam_amsgrad": {"algorithm": "adam", "amsgrad": True, "weight_decay": 0.0, "decoupled": False,
                     "maximize": False},
}


def describe_optimizer(optimizer: Any, params: dict[int, str] | None = None) -> tuple[str, dict[str, dict]]:
    """The kind of ``optimizer`` (a key of :data:`OPTIMIZERS`) and, for an instance, the update
    settings of each parameter it holds (qualname via ``params``: ``id(parameter) -> name``).

    ``optimizer`` is a kind name or a ``torch.optim.SGD`` / ``Adam`` / ``AdamW`` instance on CPU
    tensors with the single-tensor implementation (``foreach`` and ``fused`` not True, not
    ``capturable`` or ``differentiable``). SGD with momentum 0 is "sgd" (no state), momentum > 0
    "sgd_momentum" (one buffer), Adam/AdamW "adam" (two), with amsgrad "adam_amsgrad" (three).
    Raises ValueError (one line) for anything else, and when parameter groups hold different
    kinds.
    """
    if isinstance(optimizer, str):
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {tuple(OPTIMIZERS)} or a torch.optim.SGD/Adam/AdamW "
                             f"instance, got {optimizer!r}")
        return optimizer, {}
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise ValueError(f"optimizer must be one of {tuple(OPTIMIZERS)} or a torch.optim.SGD/Adam/AdamW "
                         f"instance, got {type(optimizer).__name__}")
    cls = type(optimizer)
    if cls not in (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW):
        raise ValueError(f"optimizer {cls.__name__} is not supported: poet reproduces torch.optim.SGD, Adam "
                         f"and AdamW (single-tensor implementation) exactly")
    kinds, settings = set(), {}
    for g, group in enumerate(optimizer.param_groups):
        for flag in ("foreach", "fused", "capturable", "differentiable"):
            if group.get(flag):
                raise ValueError(f"optimizer {cls.__name__} has {flag}=True (param group {g}); poet applies "
                                 f"the single-tensor update one parameter at a time: make it with "
                                 f"{flag}={'None' if flag in ('foreach', 'fused') else 'False'}")
        if cls is torch.optim.SGD:
            s = {"algorithm": "sgd", "momentum": float(group["momentum"]), "nesterov": bool(group["nesterov"]),
                 "weight_decay": float(group["weight_decay"]), "maximize": bool(group["maximize"])}
            kind = "sgd_momentum" if s["momentum"] != 0 else "sgd"
        else:
            s = {"algorithm": "adam", "amsgrad": bool(group["amsgrad"]),
                 "weight_decay": float(group["weight_decay"]),
                 "decoupled": cls is torch.optim.AdamW or bool(group.get("decoupled_weight_decay", False)),
                 "maximize": bool(group["maximize"])}
            kind = "adam_amsgrad" if s["amsgrad"] else "adam"
        kinds.add(kind)
        for p in group["params"]:
            if p.device.type != "cpu":
                raise ValueError(f"optimizer {cls.__name__} holds a parameter on {p.device.type}; poet's "
                                 f"executor runs on CPU tensors")
            if params is not None and id(p) in params:
                settings[params[id(p)]] = s
    if len(kinds) > 1:
        raise ValueError(f"optimizer {cls.__name__}'s parameter groups are of different kinds "
                         f"({', '.join(sorted(kinds))}); use one kind (e.g. momentum > 0 in every group)")
    return (kinds.pop() if kinds else ("sgd" if cls is torch.optim.SGD else "adam")), settings


def update_counts(settings: dict, numel: int, element_size: int) -> dict[str, int]:
    """FLOPs, bytes read/written and peak temporaries (bytes) of one single-tensor update step.

    Counted by hand from torch 2.13's ``torch/optim/sgd.py::_single_tensor_sgd`` and
    ``adam.py::_single_tensor_adam`` (steady state, i.e. the state buffers exist), per element:

    SGD: ``-grad`` if maximize (1 FLOP, a temporary), ``grad.add(param, alpha=wd)`` (2, a
    temporary), ``buf.mul_(m).add_(grad, alpha=1-dampening)`` (3, in place), nesterov
    ``grad.add(buf, alpha=m)`` (2, a temporary), ``param.add_(grad, alpha=-lr)`` (2).
    Adam: maximize (1, temporary), coupled weight decay ``grad.add(param, alpha=wd)`` (2,
    temporary) or decoupled ``param.mul_(1 - lr*wd)`` (1), ``exp_avg.lerp_`` (3),
    ``exp_avg_sq.mul_(b2).addcmul_(grad, grad)`` (1 + 3), amsgrad ``torch.maximum(..., out=)`` (1),
    ``denom = (exp_avg_sq.sqrt() / bc2).add_(eps)`` (3; the sqrt and the quotient are two
    temporaries alive together), ``param.addcdiv_(exp_avg, denom)`` (3).
    A temporary is one parameter-sized tensor; a new one is made while the previous is alive.
    Bytes: each tensor operand read and each result written, one parameter size each.
    """
    P = numel * element_size
    flops = reads = writes = 0
    cur = peak = 0  # temporaries alive now / at most

    def op(f: int, r: int, w: int, new_temp: bool = False) -> None:
        nonlocal flops, reads, writes, cur, peak
        flops += f * numel
        reads += r * P
        writes += w * P
        if new_temp:  # made while the previous temporary (if any) lives; that one goes after
            peak = max(peak, cur + 1)
            cur = 1
    if settings["maximize"]:
        op(1, 1, 1, new_temp=True)
    if settings["algorithm"] == "sgd":
        if settings["weight_decay"] != 0:
            op(2, 2, 1, new_temp=True)
        if settings["momentum"] != 0:
            op(3, 3, 2)  # buf.mul_ (read buf, write buf) then add_ (read buf and grad, write buf)
            if settings["nesterov"]:
                op(2, 2, 1, new_temp=True)
            else:
                cur = 0  # grad = buf: the temporary, if any, is released
        op(2, 2, 1)
    else:
        if settings["weight_decay"] != 0:
            if settings["decoupled"]:
                op(1, 1, 1)
            else:
                op(2, 2, 1, new_temp=True)
        op(3, 2, 1)      # exp_avg.lerp_(grad, 1 - beta1)
        op(4, 4, 2)      # exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        if settings["amsgrad"]:
            op(1, 2, 1)  # torch.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
        # sqrt (temporary), / (a second one while the first lives), add_ in place
        flops += 3 * numel
        reads += 3 * P
        writes += 3 * P
        peak = max(peak, cur + 2)
        op(3, 3, 1)      # param.addcdiv_(exp_avg, denom, value=-step_size)
    return {"flops": flops, "bytes_read": reads, "bytes_written": writes, "workspace_bytes": peak * P}


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
    consumed: set[torch.fx.Node] = field(default_factory=set)  # sources other groups (or the loss) read


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
                    producer = wiring[index_of[id(group_of[src])]]
                    producer.exported.setdefault(src, None)
                    producer.consumed.add(src)
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
        else:
            w.consumed.add(src)
    return wiring


def build_graph(traced: Traced, *, granularity: str, optimizer: str, name: str, update: str = "buffered",
                settings: dict[str, dict] | None = None) -> TrainingGraph:
    """The :class:`TrainingGraph` of ``traced`` (module docstring). ``optimizer`` is a kind of
    :data:`OPTIMIZERS`; ``settings`` maps a trained parameter to its update settings (see
    :func:`describe_optimizer`; missing ones take the kind's defaults); ``update`` is one of
    :data:`UPDATES`."""
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

    grad_sources = {source_of(v) for v in grad_nodes.values()}
    nodes: list[GraphNode] = []
    for gi, (g, w) in enumerate(zip(groups, wiring)):
        outputs = by_order(w.exported)
        grads = dict(w.grads)
        kept_out = set(outputs)
        if update == "buffered":
            # a storage exported only as a gradient is written into the static gradient buffer:
            # not an output of the node, not counted again in its out_bytes or workspace
            kept_out = {v for v in outputs if v not in grad_sources or v in w.consumed}
        else:
            grads = {}  # the update node applies it; no gradient leaves the step
        out_storages = {storage_of(v) for v in kept_out}
        in_buffer = {storage_of(v) for v in outputs if v not in kept_out} - out_storages
        costs = [(op_flops(n), op_extra_flops(n), *op_traffic(n)) for n in g.members]
        flops, extra, read, written = (sum(c[k] for c in costs) for k in range(4))
        node_extra: dict[str, Any] = {"module_call": g.call} if g.layer is None else {"layer": layer_names[id(g.layer)]}
        if in_buffer:
            node_extra["grad_buffers"] = [v.name for v in by_order(in_buffer)]
        in_place = [n.meta[INPLACE_META] for n in g.members if INPLACE_META in n.meta]
        if in_place:  # elementwise ops that overwrite a result of this node (poet.inplace)
            node_extra["inplace"] = in_place
        nodes.append(GraphNode(
            id=gi, name=names[gi], kind=g.kind, module_path="" if g.path == LOSS else g.path,
            flops=flops, extra_flops=extra, bytes_read=read, bytes_written=written,
            out_bytes=sum(owned_nbytes(s) for s in out_storages if s.op == "call_function"),
            workspace_bytes=_workspace(g.members, out_storages | in_buffer),
            aten_nodes=[n.name for n in g.members if isinstance(n.target, OpOverload)],
            fx_nodes=[n.name for n in by_order(set(g.members) | w.views)],
            inputs=[n.name for n in by_order(w.inputs)], static_inputs=[n.name for n in by_order(w.static)],
            outputs=[n.name for n in by_order(kept_out)], grads=grads, mutates=list(w.mutates),
            random=any(is_random(n.target) for n in g.members),
            extra=node_extra,
        ))

    edges = sorted({(index_of[id(group_of[src])], gi) for gi, w in enumerate(wiring) for src in w.inputs})
    for u, v in edges:
        if u >= v:  # pragma: no cover - runs in graph order make this impossible
            raise ExtractError(f"internal: edge {nodes[u].name} -> {nodes[v].name} goes backward")
    _check_random_fills(groups, group_of)
    if update == "fused":
        nodes, edges = _with_update_nodes(traced, nodes, edges, wiring, group_of, index_of, grad_nodes,
                                          optimizer, settings or {})

    aten_ops = [n for n in graph.nodes if n.op == "call_function" and isinstance(n.target, OpOverload)]
    breakdown = _static_breakdown(traced.placeholders, optimizer, update)
    extra_info: dict[str, Any] = {"update": update}
    if update == "buffered":
        extra_info["optimizer_step_workspace_bytes"] = _step_workspace(traced, grad_nodes, optimizer,
                                                                       settings or {})
    if settings:
        extra_info["optimizer_settings"] = {p: dict(v) for p, v in settings.items()}
    if unused:
        extra_info["unused_params"] = unused
    return TrainingGraph(
        name=name, nodes=nodes, edges=edges, static_bytes=sum(breakdown.values()), static_breakdown=breakdown,
        granularity=granularity, optimizer=optimizer, trainable=list(traced.trainable), fx_graph=gm,
        placeholders=traced.placeholders, loss_value=loss_value.name,
        grad_values={p: v.name for p, v in grad_nodes.items()},
        num_aten_ops=len(aten_ops), num_nonview_ops=sum(1 for n in aten_ops if not is_view(n)),
        extra=extra_info, update=update,
    )


def _step_workspace(traced: Traced, grad_nodes: dict[str, torch.fx.Node], optimizer: str,
                    settings: dict[str, dict]) -> int:
    """Peak temporaries of the buffered ``opt.step()`` after the step, which runs beside the static
    bytes once every activation is freed. The single-tensor update runs one parameter at a time
    (`update_counts` each), in the order the optimizer holds them, taken as the model's parameter
    order (``Adam(model.parameters())``). Adam's loop keeps the previous parameter's ``denom``
    alive until the next one's is made, so its peak is the previous parameter's size plus the
    current one's temporaries; SGD drops its temporary at the top of each iteration."""
    fx_by_name = {n.name: n for n in traced.gm.graph.nodes}
    param_fx = {p.qualname: p.fx_name for p in traced.placeholders if p.role == "param"}
    peak = carry = 0
    for param in (p for p in traced.trainable if p in grad_nodes):
        pval = fx_by_name[param_fx[param]].meta.get("val")
        s = settings.get(param, _KIND_SETTINGS[optimizer])
        size = int(pval.numel()) * pval.element_size()
        peak = max(peak, carry + update_counts(s, int(pval.numel()), pval.element_size())["workspace_bytes"])
        carry = size if s["algorithm"] == "adam" else 0
    return peak


def _with_update_nodes(traced: Traced, nodes: list[GraphNode], edges: list[tuple[int, int]],
                       wiring: list[_Wiring], group_of, index_of, grad_nodes: dict[str, torch.fx.Node],
                       optimizer: str, settings: dict[str, dict]) -> tuple[list[GraphNode], list[tuple[int, int]]]:
    """Insert one update node per trained parameter with a gradient right after the node that
    completes its gradient (or the last node reading the parameter, if later); renumber."""
    param_fx = {p.qualname: p.fx_name for p in traced.placeholders if p.role == "param"}
    fx_by_name = {n.name: n for n in traced.gm.graph.nodes}
    readers: dict[str, list[int]] = {}
    for gi, w in enumerate(wiring):
        for st in w.static:
            readers.setdefault(st.name, []).append(gi)
    after: dict[int, list[GraphNode]] = {}
    sources: dict[str, int] = {}
    for param, value in grad_nodes.items():
        src = source_of(value)
        producer = index_of[id(group_of[src])]
        pfx = param_fx[param]
        position = max([producer, *readers.get(pfx, [])])
        chain = []
        v = value
        while is_view(v):
            chain.append(v.name)
            v = view_base(v)
        pval = fx_by_name[pfx].meta.get("val")
        counts = update_counts(settings.get(param, _KIND_SETTINGS[optimizer]), int(pval.numel()),
                               pval.element_size())
        node = GraphNode(
            id=-1, name=f"{param}.update", kind="backward", module_path=param.rsplit(".", 1)[0] if "." in param else "",
            flops=0, extra_flops=counts["flops"], bytes_read=counts["bytes_read"],
            bytes_written=counts["bytes_written"], out_bytes=0, workspace_bytes=counts["workspace_bytes"],
            fx_nodes=list(reversed(chain)), inputs=[src.name], static_inputs=[pfx],
            extra={"update_of": param, "grad_value": value.name, "optimizer": optimizer})
        after.setdefault(position, []).append(node)
        sources[param] = producer
    order: list[GraphNode] = []
    new_id: dict[int, int] = {}
    for gi, n in enumerate(nodes):
        new_id[gi] = len(order)
        order.append(n)
        order.extend(after.get(gi, []))
    for k, n in enumerate(order):
        n.id = k
    new_edges = {(new_id[u], new_id[v]) for u, v in edges}
    update_id = {n.extra["update_of"]: n.id for n in order if "update_of" in n.extra}
    for param, producer in sources.items():
        new_edges.add((new_id[producer], update_id[param]))
    for param, u in update_id.items():
        late = [order[new_id[r]].name for r in readers.get(param_fx[param], []) if new_id[r] > u]
        if late:  # pragma: no cover - the placement above makes this impossible
            raise ExtractError(f"internal: node(s) {late} read {param!r} after its update node")
    return order, sorted(new_edges)


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


def _static_breakdown(placeholders: list[Placeholder], optimizer: str, update: str) -> dict[str, int]:
    trained = sum(p.nbytes for p in placeholders if p.role == "param" and p.trainable)
    frozen = sum(p.nbytes for p in placeholders if p.role == "param" and not p.trainable)
    steps = 0
    if optimizer in _STEP_COUNTED:
        step_bytes = 8 if torch.get_default_dtype() == torch.float64 else 4
        steps = step_bytes * sum(1 for p in placeholders if p.role == "param" and p.trainable)
    return {
        "trained_params": trained,
        "frozen_params": frozen,
        "grads": trained if update == "buffered" else 0,
        "optimizer_state": OPTIMIZERS[optimizer] * trained + steps,
        "buffers": sum(p.nbytes for p in placeholders if p.role == "buffer"),
        "inputs": sum(p.nbytes for p in placeholders if p.role in ("input", "target")),
        "constants": sum({p.qualname: p.nbytes for p in placeholders if p.role == "constant"}.values()),
    }
