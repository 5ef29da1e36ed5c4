"""The executor's measurement of one node's memory while its ops run (see :mod:`poet.executor`).

:func:`evaluate_counted` evaluates a node's ops through :func:`poet.graph.evaluate`, drops each
value right after its last use inside the node (and the unused results of a multi-output op right
after that op), and after every op reads the storages of the real results: unique storages
(``untyped_storage()``, keyed by data pointer), reference-counted across the values that hold
them, summed. Storages that are static, resident for another node, or in ``excluded`` (scratch
copies, gradient buffers the node writes, added as the ops run) are not counted.
:func:`node_workspace` turns those sums into the node's peak temporaries.

The per-op work is kept small: a plain op's single tensor is counted inline, and a ``getitem``
of a result of the node reuses the storages already read for that element (:func:`op_kinds`
says which path each op takes; it is computed once per schedule by :func:`poet.executor.prepare`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .graph import evaluate
from .node_plans import NodePlan
from .storage import tensors_of

__all__ = ["op_kinds", "evaluate_counted", "node_workspace"]

PLAIN, ELEMENT, SPECIAL = 0, 1, 2


def op_kinds(plan: NodePlan) -> tuple[int, ...]:
    """Per op of the node, how its result is counted: ELEMENT for a getitem with a constant index
    (when its source is a result of the node, its storages are those read for that element),
    SPECIAL for an op that drops results or writes gradient buffers, PLAIN for any other."""
    kinds = []
    for k, op in enumerate(plan.ops):
        if plan.drop_elems[k] or op.name in plan.grad_buffers or op.name in plan.grad_elems:
            kinds.append(SPECIAL)
        else:
            kinds.append(ELEMENT if op.source is not None else PLAIN)
    return tuple(kinds)


def evaluate_counted(plan: NodePlan, kinds: tuple[int, ...], fetch: Callable[[str], Any], static_keys: set[int],
                     resident: dict[int, int], excluded: set[int]) -> tuple[dict[str, Any], list[int], dict[int, int]]:
    """Evaluate ``plan``'s ops; return the values left (what the node hands on), the bytes
    counted after each op, and for each storage the op at which it was (last) first counted.

    ``fetch(name)`` gives the values from outside the node; ``static_keys`` and ``resident`` (a
    mapping keyed by storage key) are storages not counted; ``excluded`` too, and it gains the
    storages of the gradient buffers the node writes."""
    count: dict[int, int] = {}   # storage key -> values holding it
    size: dict[int, int] = {}
    born: dict[int, int] = {}
    keys: dict[str, list[int]] = {}           # value name -> the keys counted for it
    elems: dict[str, list[list[int]]] = {}    # multi-output value -> the keys of each element
    totals: list[int] = []
    total = 0
    ops, drops, releases = plan.ops, plan.drop_elems, plan.release
    grad_buffers, grad_elems = plan.grad_buffers, plan.grad_elems
    tensor_type = torch.Tensor

    def add(value: Any, step: int) -> list[int]:
        nonlocal total
        out = []
        for t in tensors_of(value):
            st = t.untyped_storage()
            key = st.data_ptr()
            if key in static_keys or key in resident or key in excluded:
                continue
            nbytes = st.nbytes()
            if nbytes == 0:
                continue
            c = count.get(key, 0)
            if c == 0:
                size[key] = nbytes
                total += nbytes
                born[key] = step
            count[key] = c + 1
            out.append(key)
        return out

    def add_value(name: str, value: Any, step: int) -> None:
        if isinstance(value, (tuple, list)):
            per = elems[name] = [add(v, step) for v in value]
            keys[name] = [key for p in per for key in p]
        else:
            keys[name] = add(value, step)

    def remove(ks: list[int]) -> None:
        nonlocal total
        for key in ks:
            c = count[key] - 1
            if c:
                count[key] = c
            else:
                del count[key]
                total -= size.pop(key)

    def account(k: int, env: dict[str, Any]) -> None:
        nonlocal total
        op = ops[k]
        kind = kinds[k]
        dropped = None
        per = elems.get(op.source) if kind == ELEMENT else None
        if per is not None:  # the storages of the element taken, held by its result until now
            ks = per[op.index]
            if ks and excluded:
                ks = [key for key in ks if key not in excluded]
            for key in ks:
                count[key] += 1
            keys[op.name] = ks
        elif kind != SPECIAL:
            value = env[op.name]
            if type(value) is tensor_type:  # one tensor, counted inline (as add() would)
                st = value.untyped_storage()
                key = st.data_ptr()
                nbytes = st.nbytes()
                if nbytes == 0 or key in static_keys or key in resident or key in excluded:
                    keys[op.name] = []
                else:
                    c = count.get(key, 0)
                    if c == 0:
                        size[key] = nbytes
                        total += nbytes
                        born[key] = k
                    count[key] = c + 1
                    keys[op.name] = [key]
            else:
                add_value(op.name, value, k)
            del value
        else:
            name = op.name
            value = env[name]
            if name in grad_elems:  # results written into static gradient buffers
                for j in grad_elems[name]:
                    for t in tensors_of(value[j]):
                        excluded.add(t.untyped_storage().data_ptr())
            if name in grad_buffers:  # written into the static gradient buffer: not counted again
                for t in tensors_of(value):
                    excluded.add(t.untyped_storage().data_ptr())
            drop = drops[k]
            if drop:  # results nobody reads: counted during the op, dropped right after
                dropped = add([value[j] for j in drop], k)
                env[name] = value = tuple(None if j in drop else v for j, v in enumerate(value))
            add_value(name, value, k)
            del value
        totals.append(total)
        if dropped:
            remove(dropped)
        for r in releases[k]:
            del env[r]
            remove(keys.pop(r))
            if elems:
                elems.pop(r, None)

    env = evaluate(ops, fetch, account)
    return env, totals, born


def node_workspace(out_keys: dict[int, int], totals: list[int], born: dict[int, int]) -> int:
    """The peak over the node's ops of the bytes counted that are not its outputs' storages
    (``out_keys``: key -> bytes), each output counted from the op that first counted it."""
    workspace = 0
    if len(out_keys) == 1:
        (key, nbytes), = out_keys.items()
        s0 = born.get(key, 0)
        for s, total in enumerate(totals):
            if s >= s0:
                total -= nbytes
            if total > workspace:
                workspace = total
        return workspace
    if not out_keys:
        return max(0, max(totals, default=0))
    births = sorted((born.get(key, 0), nbytes) for key, nbytes in out_keys.items())
    born_bytes, b = 0, 0
    for s, total in enumerate(totals):
        while b < len(births) and births[b][0] <= s:
            born_bytes += births[b][1]
            b += 1
        if total - born_bytes > workspace:
            workspace = total - born_bytes
    return workspace
