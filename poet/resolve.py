"""Which problem a schedule is checked against, and whether a model and a batch fit the graph.

Before the executor runs anything, :func:`resolve_problem` finds the `solver.Problem` the
schedule must satisfy (the one given, the graph priced on the schedule's device, or the
graph's bare structure) and checks that it describes the traced graph and carries the
schedule's fingerprint; :func:`check_batch` and :func:`check_model` refuse a batch or a model
the graph was not traced for. Each raises :class:`poet.errors.ReplayError` saying what differs.
:func:`first_computes` and :func:`check_eager_order` check the schedule's order for the executor.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.utils._pytree as pytree

from solver import Problem, Schedule
from solver.simulate import Machine, check_fingerprint

from .errors import ReplayError
from .graph import TrainingGraph

__all__ = ["structural_problem", "resolve_problem", "problem_weights", "for_problem", "check_batch",
           "check_model", "members", "first_computes", "check_eager_order"]


def structural_problem(graph: TrainingGraph, weights: str = "ram") -> Problem:
    """A cost-free `solver.Problem` of the graph (:func:`poet.costs.graph_to_problem` with no
    price and the frozen parameters in ``weights``), named ``"<graph name>@structure"``.

    Enough for the simulator to check a schedule's rules and predict its memory; its
    fingerprint differs from any priced problem's.
    """
    from .costs import graph_to_problem

    return graph_to_problem(graph, name=f"{graph.name}@structure", weights=weights)


def problem_weights(problem: Problem) -> str:
    """Where ``problem`` keeps the frozen parameters: "flash" or "ram" (its ``extra["weights"]``,
    "ram" when it does not say)."""
    weights = problem.extra.get("weights", "ram")
    if weights not in ("flash", "ram"):
        raise ReplayError(f"the problem records weights={str(weights)[:20]!r}; allowed: 'flash', 'ram'")
    return weights


def _check_problem_matches(graph: TrainingGraph, problem: Problem) -> None:
    if problem.T != graph.T:
        raise ReplayError(f"the problem has {problem.T} nodes but the traced graph has {graph.T}: "
                          f"they describe different models (or batch/train settings)")
    if sorted(map(tuple, problem.edges)) != sorted(map(tuple, graph.edges)):
        raise ReplayError("the problem's edges differ from the traced graph's: they describe "
                          "different models")
    for pn, gn in zip(problem.nodes, graph.nodes):
        if (pn.out_bytes, pn.workspace_bytes) != (gn.out_bytes, gn.workspace_bytes):
            raise ReplayError(f"node {gn.id} ({gn.name!r}): the problem says out_bytes={pn.out_bytes}, "
                              f"workspace_bytes={pn.workspace_bytes}, the traced graph "
                              f"{gn.out_bytes}, {gn.workspace_bytes}: different models or batch sizes")
    in_flash = problem_weights(problem) == "flash"
    expected = graph.static_bytes - (graph.frozen_param_bytes if in_flash else 0)
    if problem.static_bytes != expected:
        where = " less its frozen parameters (weights in flash)" if in_flash else ""
        raise ReplayError(f"the problem's static_bytes ({problem.static_bytes}) differ from the traced "
                          f"graph's{where} ({expected}): another optimizer, update or train setting?")


def resolve_problem(graph: TrainingGraph, schedule: Schedule, problem: Problem | None = None,
                    device: Any = None) -> tuple[Problem, bool]:
    """The problem to check ``schedule`` against, and whether its fingerprint was checked.

    * ``problem`` given: it must describe ``graph`` (same nodes, edges, bytes), and the
      schedule's fingerprint must be its fingerprint;
    * else, with a device (``device`` or ``schedule.extra["device"]``): the graph is priced on
      that device (``poet.costs.make_problem``, with the schedule's ``extra["weights"]`` when it
      records one, else the profile's) and the schedule's fingerprint must match;
    * else: :func:`structural_problem` (rules and memory are checked, the fingerprint is not).

    Raises ReplayError for a schedule made for another graph, naming both fingerprints.
    """
    fp = schedule.problem_fingerprint
    if problem is not None:
        if not isinstance(problem, Problem):
            raise TypeError(f"problem must be a solver.Problem, got {type(problem).__name__}")
        _check_problem_matches(graph, problem)
        if fp is not None and fp != problem.fingerprint:
            raise ReplayError(f"the schedule was made for another problem (fingerprint {fp[:23]}...); "
                              f"the problem given has {problem.fingerprint[:23]}...")
        return problem, fp is not None
    if device is None:
        from .costs import recorded_device
        device = recorded_device(schedule.extra.get("device"), "the schedule")
    if device is not None and fp is not None:
        from .costs import make_problem

        weights = schedule.extra.get("weights")
        if weights not in (None, "flash", "ram"):
            raise ReplayError(f"the schedule records weights={str(weights)[:20]!r}; allowed: 'flash', 'ram'")
        priced = make_problem(graph, device, weights=weights)
        if priced.fingerprint != fp:
            spec = schedule.extra.get("model_spec")
            made_for = f" (it records model {spec.get('model')!r}, batch {spec.get('batch_size')})" \
                if isinstance(spec, dict) else ""
            raise ReplayError(
                f"the schedule was made for another graph{made_for}: its fingerprint is {fp[:23]}..., "
                f"this model traced and priced on {device!r} gives {priced.fingerprint[:23]}... "
                f"(model, batch shape, train= and optimizer= must be those the schedule was solved for)")
        return priced.with_budgets(ram_budget_bytes=schedule.ram_budget_bytes), True
    return structural_problem(graph), False


def for_problem(schedule: Schedule, problem: Problem) -> Schedule:
    """``schedule`` itself, or (for a structural problem, whose fingerprint no schedule carries)
    a copy without fingerprint, so the simulator checks its rules."""
    if schedule.problem_fingerprint in (None, problem.fingerprint):
        return schedule
    return dataclasses.replace(schedule, problem_fingerprint=None)


def check_batch(graph: TrainingGraph, inputs: Any, targets: Any) -> None:
    """Raise ReplayError unless ``inputs``/``targets`` have the traced shapes and dtypes."""
    in_leaves = pytree.tree_leaves(inputs)
    tgt_leaves = pytree.tree_leaves(targets)
    expected = [(ph, graph.fx_node(ph.fx_name).meta.get("val")) for ph in graph.placeholders
                if ph.role in ("input", "target")]
    n_in = sum(1 for ph, _ in expected if ph.role == "input")
    n_tgt = len(expected) - n_in
    if len(in_leaves) != n_in or len(tgt_leaves) != n_tgt:
        raise ReplayError(f"the graph was traced with {n_in} input and {n_tgt} target tensor(s); "
                          f"got {len(in_leaves)} and {len(tgt_leaves)}")
    for ph, val in expected:
        i = int(ph.qualname[ph.qualname.index("[") + 1: ph.qualname.index("]")])
        got = (in_leaves if ph.role == "input" else tgt_leaves)[i]
        if not isinstance(got, torch.Tensor):
            raise ReplayError(f"{ph.qualname} must be a tensor, got {type(got).__name__}")
        if val is not None and (tuple(got.shape) != tuple(val.shape) or got.dtype != val.dtype):
            raise ReplayError(f"{ph.qualname} has shape {tuple(got.shape)} and dtype {got.dtype}; the "
                              f"schedule's graph was traced for shape {tuple(val.shape)} and dtype "
                              f"{val.dtype} (a schedule fits one batch shape: solve again for this one)")


def check_model(graph: TrainingGraph, model: torch.nn.Module, params: dict[str, torch.Tensor] | None = None,
                buffers: dict[str, torch.Tensor] | None = None) -> None:
    """Raise ReplayError unless ``model`` has every traced parameter and buffer, of the traced size.

    ``params``/``buffers``: ``dict(model.named_parameters())`` / ``named_buffers()`` when the
    caller has them already (each is one walk of the module tree), else they are made here."""
    params = dict(model.named_parameters()) if params is None else params
    buffers = dict(model.named_buffers()) if buffers is None else buffers
    for ph in graph.placeholders:
        if ph.role not in ("param", "buffer"):
            continue
        table = params if ph.role == "param" else buffers
        t = table.get(ph.qualname)
        if t is None:
            raise ReplayError(f"the model has no {ph.role} {ph.qualname!r}: the graph was traced from "
                              f"another model")
        nbytes = t.untyped_storage().nbytes()
        if nbytes != ph.nbytes:
            raise ReplayError(f"{ph.role} {ph.qualname!r} has {nbytes} bytes, the traced one had "
                              f"{ph.nbytes}: the graph was traced from another model")


def members(model: torch.nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """``dict(model.named_parameters())`` and ``dict(model.named_buffers())`` (the same names and
    tensors, a shared one named once) from one walk of the module tree instead of two."""
    params: dict[str, torch.Tensor] = {}
    buffers: dict[str, torch.Tensor] = {}
    seen_p: set[int] = set()
    seen_b: set[int] = set()
    for prefix, module in model.named_modules():
        dot = prefix + "." if prefix else ""
        for table, seen, items in ((params, seen_p, module._parameters), (buffers, seen_b, module._buffers)):
            for name, t in items.items():
                if t is not None and id(t) not in seen:
                    seen.add(id(t))
                    table[dot + name] = t
    return params, buffers


def first_computes(problem: Problem, schedule: Schedule) -> tuple[dict[int, int], set[int]]:
    """Walk ``schedule`` on the simulator's :class:`solver.Machine` (budgets not enforced).

    Returns the instruction index of each node's first compute and the nodes computed more
    than once. Raises ScheduleError, as :func:`solver.simulate` does, for a schedule made for
    another problem, a broken rule or an incomplete step.
    """
    check_fingerprint(problem, schedule)
    machine = Machine(problem, check_budgets=False)
    first: dict[int, int] = {}
    for k, (op, i) in enumerate(schedule.instructions):
        machine.apply(op, i)
        if op == "compute" and machine.computed[i] == 1:
            first[i] = k
    machine.finish()
    return first, {i for i, c in enumerate(machine.computed) if c > 1}


def check_eager_order(graph: TrainingGraph, first: dict[int, int]) -> None:
    """Random nodes, and nodes touching the same mutated buffer, must first run in id order
    (``first``: node id -> index of its first compute); raise ReplayError naming the first that
    comes too early."""
    groups: dict[str, list[int]] = {"random numbers": [n.id for n in graph.nodes if n.random]}
    mutable = {m for n in graph.nodes for m in n.mutates}
    for n in graph.nodes:
        for s in set(n.static_inputs) | set(n.mutates):
            if s in mutable:
                groups.setdefault(f"buffer {s}", []).append(n.id)
    for what, ids in groups.items():
        ids = sorted(set(ids))
        order = sorted(ids, key=first.__getitem__)
        if order != ids:
            early = next(x for x, y in zip(order, ids) if x != y)
            raise ReplayError(
                f"the schedule first computes the nodes that use {what} in the order "
                f"{[graph.nodes[i].name for i in order]}, not in eager (id) order: node "
                f"{graph.nodes[early].name!r} comes too early. The executor reproduces eager results "
                f"only when these nodes are first computed in id order")
