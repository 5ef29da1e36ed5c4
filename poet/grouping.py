"""Group the non-view ops of a traced step into layer-sized runs, and name them.

Forward ops carry the label (module path, call index) that the tracing hooks put in
``node.meta["custom"]`` under :data:`MODULE_KEY` / :data:`CALL_KEY` (the loss runs under
:data:`LOSS`); backward ops follow their ``seq_nr`` to the forward op they differentiate. A
group is a maximal run of same-label ops in graph order, so every edge between groups points
forward. At op granularity each non-view op is its own group (getitems and random fills stay
with the op they belong to).

An op that writes the storage of another op's result (a random fill, or an elementwise op the
extractor made run in place, ``meta["poet_inplace"]``) runs in that op's group, at both
granularities. The backward of such an elementwise op still forms a group of its own, named
after the module call that ran the op (``features.0.2.backward`` for a folded ReLU6): its
forward is a *ghost* group (never a node) holding only that op.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx
from torch._ops import OpOverload

from poet.fxnodes import INPLACE_META, ExtractError, is_getitem, is_inplace, is_view, storage_of
from poet.opcosts import op_extra_flops, op_flops

__all__ = ["MODULE_KEY", "CALL_KEY", "LOSS", "Group", "layer_groups", "op_groups", "layer_group_names"]

MODULE_KEY = "poet_module"  # node.meta["custom"] key: qualified name of the module running the op
CALL_KEY = "poet_call"      # node.meta["custom"] key: which call of that module (1, 2, ...)
LOSS = "<loss>"             # the module name the loss runs under


@dataclass(eq=False)
class Group:
    """A run of ops that becomes one node. ``label`` is what the run shares:
    ("forward"|"loss", module path, call) for forward ops, ("backward", id of the
    forward group differentiated) for backward ops, ("op", fx name) at op granularity."""

    label: tuple[Any, ...]
    kind: str
    path: str
    call: int
    forward: Group | None = None  # for backward groups: the forward group they differentiate
    members: list[torch.fx.Node] = field(default_factory=list)
    layer: Group | None = None  # at op granularity: the layer group the op belongs to


def _anchor(n: torch.fx.Node) -> torch.fx.Node | None:
    """The op a node must run with: a getitem's producer, a random fill's allocation."""
    if is_getitem(n):
        return n.args[0]
    if is_inplace(n) and storage_of(n).op == "call_function":
        return storage_of(n)
    return None


def _forward_label(n: torch.fx.Node) -> tuple[str, str, int] | None:
    custom = n.meta.get("custom")
    if not custom or MODULE_KEY not in custom or n.meta.get("autograd_backward"):
        return None
    path, call = custom[MODULE_KEY], custom[CALL_KEY]
    return ("loss" if path == LOSS else "forward", path, call)


def layer_groups(graph: torch.fx.Graph) -> tuple[list[Group], dict[torch.fx.Node, Group]]:
    """Group non-view ops into runs: module calls, their backward, the loss (see module docstring)."""
    nodes = [n for n in graph.nodes if n.op == "call_function"]
    position = {n: i for i, n in enumerate(nodes)}
    seq_owner: dict[int, torch.fx.Node] = {}
    for n in nodes:
        seq = n.meta.get("seq_nr")
        if _forward_label(n) is not None and seq is not None and seq >= 0:
            seq_owner.setdefault(seq, n)
    compute = [n for n in nodes if not is_view(n)]
    first_label = next((lbl for lbl in map(_forward_label, compute) if lbl is not None), None)
    if first_label is None:  # pragma: no cover - the root module's hooks label every forward op
        raise ExtractError("internal: no op of the traced step carries a module label")

    groups: list[Group] = []
    group_of: dict[torch.fx.Node, Group] = {}
    runs_of_label: dict[tuple[Any, ...], list[Group]] = {}
    ghosts: dict[torch.fx.Node, Group] = {}  # elementwise ops run in place in another op's group

    def forward_group_of(owner: torch.fx.Node) -> Group | None:
        """The forward group of the op that created autograd node ``owner`` (views: nearest run)."""
        if owner in ghosts:
            return ghosts[owner]
        if owner in group_of:
            return group_of[owner]
        runs = runs_of_label.get(_forward_label(owner), [])
        if not runs:
            return None
        pos = position[owner]
        after = [g for g in runs if position[g.members[0]] > pos]
        return after[0] if after else runs[-1]

    current: Group | None = None
    for n in compute:
        anchor = _anchor(n)
        if anchor is not None and anchor in group_of:
            group_of[anchor].members.append(n)
            group_of[n] = group_of[anchor]
            own = _forward_label(n) if INPLACE_META in n.meta else None
            if own is not None:  # its backward keeps the name of the module call that ran it
                ghosts[n] = Group(own, own[0], own[1], own[2], members=[n])
            continue
        label: tuple[Any, ...] | None = _forward_label(n)
        forward: Group | None = None
        if label is None and n.meta.get("autograd_backward") and not n.meta.get("is_gradient_acc"):
            owner = seq_owner.get(n.meta.get("seq_nr", -1))
            forward = forward_group_of(owner) if owner is not None else None
            if forward is not None:
                label = forward.label if forward.kind == "loss" else ("backward", id(forward))
        if label is None:  # gradient seed, gradient accumulation, unknown: join the run before
            label = current.label if current is not None else first_label
        if current is None or current.label != label:
            if label[0] == "backward" and forward is not None:
                current = Group(label, "backward", forward.path, forward.call, forward=forward)
            else:
                current = Group(label, label[0], label[1], label[2])
                runs_of_label.setdefault(label, []).append(current)
            groups.append(current)
        current.members.append(n)
        group_of[n] = current
    return groups, group_of


def op_groups(layer_groups: list[Group], layer_of: dict[torch.fx.Node, Group],
               graph: torch.fx.Graph) -> tuple[list[Group], dict[torch.fx.Node, Group]]:
    """One group per non-view op (getitems and random fills stay with their anchor op)."""
    groups: list[Group] = []
    group_of: dict[torch.fx.Node, Group] = {}
    for n in graph.nodes:
        if n not in layer_of:
            continue
        anchor = _anchor(n)
        if anchor is not None and anchor in group_of:
            group_of[anchor].members.append(n)
            group_of[n] = group_of[anchor]
            continue
        layer = layer_of[n]
        g = Group(("op", n.name), layer.kind, layer.path, layer.call, layer=layer)
        g.members.append(n)
        groups.append(g)
        group_of[n] = g
    return groups, group_of


def _op_display(n: torch.fx.Node) -> str:
    name = n.target._schema.name.split("::")[-1] if isinstance(n.target, OpOverload) else str(n.target)
    return name.rstrip("_") or name


def _main_op(g: Group) -> str:
    """The op that does most of the group's work (first one on ties), for names."""
    ops = [n for n in g.members if isinstance(n.target, OpOverload)]
    if not ops:
        return "op"
    best = max(ops, key=lambda n: (op_flops(n), op_extra_flops(n), -ops.index(n)))
    return _op_display(best)


def layer_group_names(groups: list[Group], root_name: str, called: set[str]) -> dict[int, str]:
    """Readable, unique names: ``conv1``, ``layer1.0.relu#2``, ``layer1.0:add``, ``conv1.backward``, ``loss``."""
    runs = Counter(g.label for g in groups if g.kind != "backward")
    names: dict[int, str] = {}
    used: Counter[str] = Counter()

    def has_called_children(path: str) -> bool:
        prefix = f"{path}." if path else ""
        return any(c != path and c.startswith(prefix) for c in called)

    def forward_base(g: Group) -> str:
        if g.kind == "loss":
            return "loss"
        base = g.path if g.path else root_name
        if g.call > 1:
            base = f"{base}#{g.call}"
        if runs[g.label] > 1 or has_called_children(g.path):
            base = f"{base}:{_main_op(g)}"
        return base

    def register(g: Group, base: str) -> None:
        used[base] += 1
        names[id(g)] = base if used[base] == 1 else f"{base}~{used[base]}"

    for g in groups:
        if g.kind != "backward":
            register(g, forward_base(g))
            continue
        assert g.forward is not None
        if id(g.forward) not in names:  # a ghost: an op run in place inside another group
            register(g.forward, forward_base(g.forward))
        register(g, f"{names[id(g.forward)]}.backward")
    return names
