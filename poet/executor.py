"""Run one training step on real tensors in the order a schedule gives.

``execute(graph, schedule, model, inputs, targets)`` (or :func:`prepare` once and
:func:`run_prepared` per step) runs the step the way the schedule says: ``compute i``
evaluates node i's fx nodes through :func:`poet.graph.evaluate`, the evaluator
:func:`poet.graph.run_node` uses too (the same ATen calls, in the same order and grad mode, as
the traced step), ``free i`` drops node i's tensors (no reference to them is kept anywhere,
which the executor checks), ``page_out i`` writes them to a file in a flash folder, ``page_in
i`` reads them back and ``drop_flash i`` deletes the file.

What the executor guarantees
----------------------------
* Gradients, loss and BatchNorm buffers equal those of eager ``loss_fn(model(x), y).backward()``
  bitwise on CPU with the same thread count, however often a node is recomputed or paged:
  - a node marked ``random`` (dropout) has torch's CPU RNG state saved before its first compute
    (the executor runs on CPU tensors; other devices' generators are not handled);
    a recompute runs under that state and then restores the current one. This is exact only if
    random nodes are first computed in id (eager) order; the executor checks the schedule for
    that before running anything and raises :class:`ReplayError` otherwise;
  - in-place writes to static buffers (``node.mutates``: running statistics,
    ``num_batches_tracked``) happen once: the first compute writes the model's buffers; a
    recompute gets scratch copies of the values those buffers had before the first compute
    (so it also reads what the first compute read);
  - gradients are taken out when their node is first computed (into the result, or into
    ``p.grad`` with ``into_model=True``, accumulating like ``backward()`` does), so freeing
    the node's tensors right after loses nothing. Gradient buffers are static memory (the
    problem's ``static_bytes`` hold one per trained parameter); a gradient that already has
    its parameter's layout hands its storage over instead of being copied, as autograd's
    AccumulateGrad does, else it is copied into a buffer of the parameter's layout.
* Fused updates (a graph traced with ``update="fused"``): an update node applies the
  user's optimizer to its one parameter as soon as the gradient exists: it sets ``p.grad`` to
  the gradient, lets ``optimizer.step()`` see only that parameter (its param group with
  ``params=[p]``; the state is the optimizer's own, keyed by parameter) and clears ``p.grad``
  again. torch's single-tensor SGD and Adam treat each parameter independently, so after the
  step the parameters and the optimizer state equal eager ``loss.backward(); opt.step()``
  bitwise. The executor refuses a schedule that computes a node reading a parameter after that
  parameter's update, or an update node twice. Temporaries the optimizer makes (weight decay,
  Adam's denominator) are measured with a dispatch mode during the update (storages that end
  up as optimizer state are not temporaries) and are the update node's workspace; outside
  ``check_values`` runs the measurement is made once per node and optimizer configuration
  (settings, state present or not) per :class:`Prepared` and reused.
* Weights in flash (a problem with ``extra["weights"] == "flash"``): the frozen parameters
  are written once to a file (:class:`poet.flash.WeightsFile`) and read through a memory map,
  so the replay runs on those mapped tensors; like all static memory they are outside the
  measured RAM, and the problem's static bytes leave them out.
* Paging goes through real files (:class:`poet.flash.FlashFolder`, whose docstring gives the
  file format): a page-in restores the exact bytes and layout. The flash folder is removed
  when the step ends, also when it fails.

Memory accounting (what "measured" means)
-----------------------------------------
Bytes are counted by unique storage, ``untyped_storage().nbytes()``, with no allocator model
(no fragmentation, caching or alignment). RAM in use = the problem's ``static_bytes``
(parameters, gradient buffers, optimizer state, buffers, the batch: the executor does not
measure those) + the storages of every resident node's tensors. During ``compute i`` it is that
plus i's output storages plus the temporaries of i alive at the worst moment inside the node:
the executor evaluates the node's fx nodes one by one, drops every intermediate value right
after its last use inside the node (and the unused results of a multi-output op right after
that op), and sums the storages alive after each op that are neither static, nor another
node's resident tensor, nor one of i's outputs. This is the simulator's rule (output counted
for the whole compute, workspace at its peak), so for a correct extraction
``ExecutionResult.ram_trace`` equals ``solver.simulate(...).ram_trace`` instruction by
instruction. ``ExecutionResult.instant_peak_ram_bytes`` is the same count with outputs
counted only from the op that allocates them (never above the accounted peak). Two things are
deliberately outside the count and reported apart: the saved RNG states and the scratch copies
of mutated buffers for recomputed nodes (``scratch_bytes``), and the small JSON sidecars on
flash (``flash_meta_bytes``). Flash bytes are the real sizes of the data files.
"""

from __future__ import annotations

import os
import time
import weakref
from dataclasses import dataclass, field
from typing import Any

import torch

from solver import Problem, Schedule
from solver.simulate import Machine, check_fingerprint

from .errors import ReplayError
from .flash import FlashFolder, WeightsFile
from .graph import GraphNode, TrainingGraph, evaluate
from .node_plans import NodePlan, graph_plans
from .resolve import check_batch, check_model, for_problem, problem_weights, resolve_problem
from .storage import LiveStorages, digest, storage_bytes, tensors_of
from .updates import _Allocations, _check_updates, _optimizer_groups

__all__ = ["execute", "prepare", "run_prepared", "Prepared", "ExecutionResult"]

_MISSING = object()


# =========================================================================== results


@dataclass
class ExecutionResult:
    """What one executed step produced and held.

    ``loss``: the loss (a detached 0-dim tensor). ``grads``: parameter qualname -> gradient
    (empty when ``into_model=True``, where they went to ``p.grad``). ``ram_trace[k]``: RAM in
    use during instruction k by the accounting in the module docstring (static bytes from the
    problem + measured storages); ``peak_ram_bytes`` its maximum (at least ``static_bytes``);
    ``instant_peak_ram_bytes``: the same with outputs counted from their allocation.
    ``flash_trace[k]``: data bytes on flash after instruction k. ``flash_bytes_written`` /
    ``flash_bytes_read``: real data-file bytes written by page-outs / read by page-ins.
    ``node_out_bytes`` / ``node_workspace_bytes``: per node id, the measured storages of its
    outputs and the peak of its temporaries (largest over its computes). ``frees_not_released``:
    frees after which a tensor object of the node was still alive (0 when nothing leaks).
    ``value_mismatches``: with ``check_values=True``, the instructions whose recompute or
    page-in gave other bytes than the first compute. ``n_updates``: fused parameter updates
    applied. ``weights_file_bytes``: size of the memory-mapped file holding the frozen weights
    (0 unless the weights are in flash).
    """

    loss: torch.Tensor
    grads: dict[str, torch.Tensor]
    static_bytes: int
    ram_trace: list[int]
    peak_ram_bytes: int
    peak_index: int
    instant_peak_ram_bytes: int
    flash_trace: list[int]
    peak_flash_bytes: int
    flash_bytes_written: int
    flash_bytes_read: int
    flash_meta_bytes: int
    node_out_bytes: dict[int, int]
    node_workspace_bytes: dict[int, int]
    n_compute: int
    n_recompute: int
    n_page_out: int
    n_page_in: int
    frees_not_released: int
    scratch_bytes: int
    seconds: float
    compute_seconds: float
    paging_seconds: float
    value_mismatches: list[str] = field(default_factory=list)
    n_updates: int = 0
    weights_file_bytes: int = 0


# =========================================================================== the executor


def execute(graph: TrainingGraph, schedule: Schedule, model: torch.nn.Module, inputs: Any, targets: Any, *,
            flash_dir: str | os.PathLike | None = None, problem: Problem | None = None,
            into_model: bool = False, check_values: bool = False, optimizer: Any = None) -> ExecutionResult:
    """Run one training step of ``model`` on ``inputs``/``targets`` in the order ``schedule`` gives.

    ``graph`` is the step traced by :func:`poet.extract` for this model and batch shape. The
    schedule is checked before anything runs: against ``problem`` when given (it must describe
    ``graph`` and carry the schedule's fingerprint), else against the graph's structure (see
    :func:`poet.resolve.resolve_problem`), by the simulator's rules; random nodes must be first computed in
    id order. Violations raise ScheduleError / ReplayError and nothing is executed.

    Like eager training, the step updates the model's buffers (BatchNorm statistics) in place
    and advances torch's CPU RNG as eager dropout would. Parameters are not changed. Gradients
    go to ``ExecutionResult.grads`` or, with ``into_model=True``, into ``p.grad`` (added to an
    existing ``.grad`` as ``backward()`` does). ``flash_dir``: where the flash folder is made
    (default: the system temporary folder); it is removed afterwards. ``check_values=True``
    hashes each node's tensors at their first compute and compares recomputes and page-ins to
    it (slower; :func:`poet.replay.verify` turns it on); scratch outputs the trace saw as empty
    (``NodePlan.opaque``: the CPU LSTM's workspace) are left out of that comparison.

    ``optimizer``: the torch optimizer holding the model's trained parameters. A graph traced
    with ``update="fused"`` needs it: its update nodes apply it to the parameters during the
    step (no gradient is left in ``grads`` or ``p.grad``). With ``"buffered"`` it is not used
    (call ``optimizer.step()`` after the step, as with ``backward()``).
    """
    prepared = prepare(graph, schedule, problem)
    return run_prepared(prepared, model, inputs, targets, flash_dir=flash_dir, into_model=into_model,
                        check_values=check_values, optimizer=optimizer)


@dataclass
class Prepared:
    """A schedule checked against a graph, ready to run many times (see :func:`prepare`)."""

    graph: TrainingGraph
    schedule: Schedule
    problem: Problem
    fingerprint_checked: bool
    plans: list
    recomputed: set[int]
    pages: bool
    weights: str = "ram"
    weights_file: WeightsFile | None = field(default=None, repr=False)
    update_peaks: dict = field(default_factory=dict, repr=False)  # measured optimizer temporaries


def prepare(graph: TrainingGraph, schedule: Schedule, problem: Problem | None = None,
            device: Any = None) -> Prepared:
    """Check ``schedule`` against ``graph`` once (see :func:`execute`) for repeated runs.

    Raises TypeError for a non-Schedule, ReplayError for a schedule of another graph or one whose
    random nodes leave eager order, ScheduleError (from the simulator) for a broken rule.
    """
    if not isinstance(schedule, Schedule):
        raise TypeError(f"schedule must be a solver.Schedule (poet.Schedule.load(path)), got "
                        f"{type(schedule).__name__}")
    problem, checked = resolve_problem(graph, schedule, problem, device)
    first, recomputed = _first_computes(problem, for_problem(schedule, problem))  # raises ScheduleError
    _check_eager_order(graph, first, recomputed)
    _check_updates(graph, schedule)
    pages = any(op == "page_out" for op, _ in schedule.instructions)
    return Prepared(graph, schedule, problem, checked, graph_plans(graph), recomputed, pages,
                    problem_weights(problem))


def _frozen_weights(prepared: Prepared, model: torch.nn.Module,
                    flash_dir: str | os.PathLike | None) -> dict[str, torch.Tensor]:
    """fx name -> memory-mapped tensor of each frozen parameter (weights in flash), written to the
    weights file once and again only when the model's frozen parameters changed."""
    graph = prepared.graph
    params = dict(model.named_parameters())
    frozen = {ph.fx_name: params[ph.qualname].detach() for ph in graph.placeholders
              if ph.role == "param" and not ph.trainable}
    if not frozen:
        return {}
    wf = prepared.weights_file
    if wf is None or not wf.matches(frozen):
        if wf is not None:
            wf.close()
        wf = prepared.weights_file = WeightsFile(frozen, flash_dir)
    return wf.tensors


def run_prepared(prepared: Prepared, model: torch.nn.Module, inputs: Any, targets: Any, *,
                 flash_dir: str | os.PathLike | None = None, into_model: bool = False,
                 check_values: bool = False, optimizer: Any = None) -> ExecutionResult:
    """Run a schedule checked by :func:`prepare` (the arguments are those of :func:`execute`)."""
    graph = prepared.graph
    check_batch(graph, inputs, targets)
    check_model(graph, model)
    groups = _optimizer_groups(graph, model, optimizer)
    mapped = _frozen_weights(prepared, model, flash_dir) if prepared.weights == "flash" else {}
    flash = FlashFolder(flash_dir) if (prepared.pages or flash_dir is not None) else None
    try:
        with torch.no_grad():  # the bookkeeping builds no autograd graph; evaluate() sets each op's mode
            ex = _Executor(graph, prepared.plans, prepared.problem, model, inputs, targets, flash,
                           prepared.recomputed, into_model, check_values, optimizer, groups, mapped)
            ex.update_peaks = prepared.update_peaks
            result = ex.run(prepared.schedule)
            result.weights_file_bytes = prepared.weights_file.nbytes if mapped else 0
            return result
    finally:
        if flash is not None:
            flash.close()


def _first_computes(problem: Problem, schedule: Schedule) -> tuple[dict[int, int], set[int]]:
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


def _check_eager_order(graph: TrainingGraph, first: dict[int, int], recomputed: set[int]) -> None:
    """Random nodes, and nodes touching the same mutated buffer, must first run in id order."""
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


class _Executor:
    """State of one executed step (see :func:`execute`)."""

    def __init__(self, graph, plans, problem, model, inputs, targets, flash, recomputed, into_model,
                 check_values, optimizer=None, groups=None, mapped=None):
        self.graph = graph
        self.plans = plans
        self.problem = problem
        self.model = model
        self.flash: FlashFolder | None = flash
        self.recomputed = recomputed
        self.into_model = into_model
        self.check_values = check_values
        self.static = graph.static_values(model, inputs, targets)
        self.static.update(mapped or {})  # frozen weights read in place from the weights file
        self.optimizer = optimizer
        self.groups = groups or {}
        self.n_updates = 0
        self.update_peaks: dict = {}
        self.static_keys = {t.untyped_storage().data_ptr() for t in self.static.values()
                            if isinstance(t, torch.Tensor)}
        self.params = dict(model.named_parameters())
        self.available: dict[str, torch.Tensor] = {}      # output name -> tensor, resident nodes
        self.resident: dict[int, dict[str, torch.Tensor]] = {}
        self.resident_live = LiveStorages(self.static_keys)      # unique storages of resident tensors
        self.resident_keys: dict[int, list[int]] = {}
        self.computed: set[int] = set()
        self.rng_states: dict[int, torch.Tensor] = {}
        self.snapshots: dict[int, dict[str, torch.Tensor]] = {}
        self.digests: dict[int, str] = {}
        self.grads: dict[str, torch.Tensor] = {}
        self.loss: torch.Tensor | None = None
        self.node_out: dict[int, int] = {}
        self.node_ws: dict[int, int] = {}
        self.instant_peak = problem.static_bytes
        self.compute_s = 0.0
        self.paging_s = 0.0
        self.not_released = 0
        self.mismatches: list[str] = []

    # ---- the instruction loop
    def run(self, schedule: Schedule) -> ExecutionResult:
        start = time.perf_counter()
        static = self.problem.static_bytes
        ram_trace: list[int] = []
        flash_trace: list[int] = []
        written = read = n_out = n_in = n_compute = 0
        for k, (op, i) in enumerate(schedule.instructions):
            if op == "compute":
                t0 = time.perf_counter()
                held = static + self.resident_live.total  # operands and everything else resident
                during = held + self._compute(k, i)       # + output + peak temporaries
                self.compute_s += time.perf_counter() - t0
                n_compute += 1
            elif op == "free":
                during = static + self.resident_live.total
                self._free(i)
            elif op == "page_out":
                t0 = time.perf_counter()
                written += self.flash.write(i, self.resident[i])
                self.paging_s += time.perf_counter() - t0
                n_out += 1
                during = static + self.resident_live.total
            elif op == "page_in":
                read += self._page_in(k, i)
                n_in += 1
                during = static + self.resident_live.total
            else:  # drop_flash
                self.flash.drop(i)
                during = static + self.resident_live.total
            ram_trace.append(during)
            flash_trace.append(self.flash.bytes_on_flash if self.flash is not None else 0)
        # the step is over: whatever is still resident goes (like eager's graph teardown)
        for i in list(self.resident):
            self._free(i)
        peak = max([static, *ram_trace])
        peak_index = ram_trace.index(peak) if peak in ram_trace and peak > static else -1
        assert self.loss is not None  # the simulator checked that every node ran
        scratch = sum(storage_bytes(s.values()) for s in self.snapshots.values()) + \
            sum(s.numel() * s.element_size() for s in self.rng_states.values())
        return ExecutionResult(
            loss=self.loss, grads=self.grads, static_bytes=static, ram_trace=ram_trace,
            peak_ram_bytes=peak, peak_index=peak_index, instant_peak_ram_bytes=self.instant_peak,
            flash_trace=flash_trace, peak_flash_bytes=max(flash_trace, default=0),
            flash_bytes_written=written, flash_bytes_read=read,
            flash_meta_bytes=self.flash.meta_bytes if self.flash is not None else 0,
            node_out_bytes=self.node_out, node_workspace_bytes=self.node_ws, n_compute=n_compute,
            n_recompute=n_compute - len(self.computed), n_page_out=n_out, n_page_in=n_in,
            frees_not_released=self.not_released, scratch_bytes=scratch,
            seconds=time.perf_counter() - start, compute_seconds=self.compute_s,
            paging_seconds=self.paging_s, value_mismatches=self.mismatches, n_updates=self.n_updates)

    # ---- residency
    def _make_resident(self, i: int, tensors: dict[str, torch.Tensor]) -> None:
        self.resident[i] = tensors
        self.available.update(tensors)
        self.resident_keys[i] = self.resident_live.add(list(tensors.values()))

    def _free(self, i: int) -> None:
        tensors = self.resident.pop(i)
        for name in tensors:
            self.available.pop(name, None)
        self.resident_live.remove(self.resident_keys.pop(i))
        refs = [weakref.ref(t) for t in tensors.values()]
        del tensors
        self.not_released += sum(1 for r in refs if r() is not None)

    def _page_in(self, k: int, i: int) -> int:
        t0 = time.perf_counter()
        tensors, nbytes = self.flash.read(i)
        self.paging_s += time.perf_counter() - t0
        self._make_resident(i, tensors)
        if self.check_values and self._digest(i, tensors) != self.digests.get(i):
            self.mismatches.append(f"instruction {k} (page_in {i}): bytes differ from the first compute")
        return nbytes

    # ---- compute
    def _compute(self, k: int, i: int) -> int:
        """Run node i; return its output bytes + peak temporaries (the simulator's during-compute add)."""
        plan = self.plans[i]
        node = plan.node
        first = i not in self.computed
        overrides: dict[str, torch.Tensor] = {}
        saved_rng = None
        if first:
            if i in self.recomputed:
                if node.random:
                    self.rng_states[i] = torch.get_rng_state()
                if plan.touches_mutable:
                    self.snapshots[i] = {s: self.static[s].clone() for s in plan.touches_mutable}
        else:
            if node.random:
                saved_rng = torch.get_rng_state()
                torch.set_rng_state(self.rng_states[i])
            overrides = {s: t.clone() for s, t in self.snapshots.get(i, {}).items()}
        excluded = self.static_keys | set(self.resident_live.count) | \
            {t.untyped_storage().data_ptr() for t in overrides.values()}
        try:
            env, totals, live = self._evaluate(plan, overrides, excluded)
        finally:
            if saved_rng is not None:
                torch.set_rng_state(saved_rng)
        if plan.update_of is not None:
            totals = [self._update(plan, env)]
        outputs = {name: env[name] for name in node.outputs}
        # outputs are counted from the start of the compute (the simulator's rule); temporaries
        # are whatever else was alive after each op
        out_keys = {}
        for t in outputs.values():
            st = t.untyped_storage()
            if st.nbytes() and st.data_ptr() not in excluded:
                out_keys[st.data_ptr()] = st.nbytes()
        out_bytes = sum(out_keys.values())
        births = sorted((live.born.get(key, 0), size) for key, size in out_keys.items())
        workspace = 0
        born_bytes, b = 0, 0
        for s, total in enumerate(totals):
            while b < len(births) and births[b][0] <= s:
                born_bytes += births[b][1]
                b += 1
            workspace = max(workspace, total - born_bytes)
            self.instant_peak = max(self.instant_peak, self.problem.static_bytes + self.resident_live.total + total)
        self.node_out.setdefault(i, out_bytes)
        self.node_ws[i] = max(self.node_ws.get(i, 0), workspace)
        if first:
            self.computed.add(i)
            self._capture(node, env)
            if self.check_values:
                self.digests[i] = self._digest(i, outputs)
        elif self.check_values and self._digest(i, outputs) != self.digests.get(i):
            self.mismatches.append(f"instruction {k} (compute {i}, node {node.name!r}): recompute "
                                   f"differs from the first compute")
        del env, live
        self._make_resident(i, outputs)
        return out_bytes + workspace

    def _digest(self, i: int, tensors: dict[str, torch.Tensor]) -> str:
        """The digest of node i's tensors that carry meaning (not its ``opaque`` scratch)."""
        opaque = self.plans[i].opaque
        return digest({k: v for k, v in tensors.items() if k not in opaque} if opaque else tensors)

    def _evaluate(self, plan: NodePlan, overrides: dict[str, torch.Tensor], excluded: set[int]):
        """Evaluate the node's ops (:func:`poet.graph.evaluate`), dropping each value right after
        its last use; return the values, the bytes alive after each op and the storages counted."""
        available, static, node = self.available, self.static, plan.node

        def fetch(name: str) -> Any:
            v = overrides.get(name, _MISSING)
            if v is _MISSING:
                v = available.get(name, _MISSING)
                if v is _MISSING:
                    v = static.get(name, _MISSING)
                    if v is _MISSING:
                        raise ReplayError(f"node {node.name!r} (id {node.id}) needs fx value {name!r}, "
                                          f"which is neither resident nor static")
            return v

        live = LiveStorages(excluded)
        keys: dict[str, list[int]] = {}
        totals: list[int] = []
        ops, drops, releases = plan.ops, plan.drop_elems, plan.release

        grad_buffers, grad_elems = plan.grad_buffers, plan.grad_elems

        def account(k: int, env: dict[str, Any]) -> None:
            name, drop = ops[k].name, drops[k]
            if grad_elems and name in grad_elems:  # results written into static gradient buffers
                value = env[name]
                for j in grad_elems[name]:
                    for t in tensors_of(value[j]):
                        excluded.add(t.untyped_storage().data_ptr())
            if name in grad_buffers:  # written into the static gradient buffer: not counted again
                for t in tensors_of(env[name]):
                    excluded.add(t.untyped_storage().data_ptr())
            if drop:  # results nobody reads: counted during the op, dropped right after
                value = env[name]
                dropped = live.add([value[j] for j in drop], k)
                env[name] = value = tuple(None if j in drop else v for j, v in enumerate(value))
                keys[name] = live.add(value, k)
                totals.append(live.total)
                live.remove(dropped)
                del value
            else:
                keys[name] = live.add(env[name], k)
                totals.append(live.total)
            for r in releases[k]:
                del env[r]
                live.remove(keys.pop(r))

        env = evaluate(ops, fetch, account)
        return env, totals, live

    def _update(self, plan: NodePlan, env: dict[str, Any]) -> int:
        """Apply the optimizer to the update node's parameter; return its temporaries' peak bytes."""
        name = plan.update_of
        value_name = plan.node.extra["grad_value"]
        g = env[value_name] if value_name in env else self.available[value_name]
        param = self.params[name]
        opt = self.optimizer
        groups = opt.param_groups
        saved = param.grad
        param.grad = g
        group = self.groups[name]
        opt.param_groups = [{**group, "params": [param]}]
        # the temporaries depend only on the settings and on whether the state exists yet: measured
        # once per such configuration (always with check_values), then reused
        key = (plan.node.id, tuple(sorted(opt.state.get(param, {}))),
               *(repr(group.get(k)) for k in ("weight_decay", "momentum", "nesterov", "maximize",
                                              "amsgrad", "decoupled_weight_decay", "dampening")))
        known = None if self.check_values else self.update_peaks.get(key)
        tracker = _Allocations() if known is None else None
        try:
            if tracker is not None:
                with tracker:
                    opt.step()
            else:
                opt.step()
        finally:
            opt.param_groups = groups
            param.grad = saved
        del g
        self.n_updates += 1
        if tracker is None:
            return known
        state = {t.untyped_storage().data_ptr() for t in opt.state.get(param, {}).values()
                 if isinstance(t, torch.Tensor)}
        self.update_peaks[key] = peak = tracker.peak(state)
        return peak

    def _capture(self, node: GraphNode, env: dict[str, Any]) -> None:
        """Copy out the gradients (and the loss) a node produces, at its first compute."""
        for qualname, value_name in node.grads.items():
            value = env[value_name] if value_name in env else self.available[value_name]
            param = self.params[qualname]
            if self.into_model and param.grad is not None:
                param.grad += value  # what backward() does with an existing .grad
                continue
            if _same_layout(value, param):
                g = value.detach()  # take the storage over (as AccumulateGrad does): no copy
            else:
                g = torch.empty_like(param, requires_grad=False)
                g.copy_(value)
            if self.into_model:
                param.grad = g
            else:
                self.grads[qualname] = g
        loss_name = self.graph.loss_value
        if loss_name in env and self.loss is None:
            self.loss = env[loss_name].detach().clone()


def _same_layout(value: torch.Tensor, param: torch.Tensor) -> bool:
    """True when ``value`` can serve as ``param``'s gradient as it is: same dtype, shape and
    strides, and it owns its whole storage."""
    return (value.dtype == param.dtype and value.shape == param.shape and value.stride() == param.stride()
            and value.storage_offset() == 0
            and value.untyped_storage().nbytes() == value.numel() * value.element_size())


