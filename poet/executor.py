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
the executor (:mod:`poet.measure`) evaluates the node's fx nodes one by one, drops every intermediate value right
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

from .errors import ReplayError
from .flash import FlashFolder, WeightsFile, frozen_weights
from .graph import GraphNode, TrainingGraph
from .measure import evaluate_counted, node_workspace, op_kinds
from .node_plans import NodePlan, graph_plans
from .resolve import (check_batch, check_eager_order, check_model, first_computes, for_problem, members,
                      problem_weights, resolve_problem)
from .storage import digest, storage_bytes
from .updates import _check_updates, _optimizer_groups, apply_update

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
    op_kinds: list = field(default_factory=list, repr=False)  # per node, per op: how it is counted


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
    first, recomputed = first_computes(problem, for_problem(schedule, problem))  # raises ScheduleError
    check_eager_order(graph, first)
    _check_updates(graph, schedule)
    pages = any(op == "page_out" for op, _ in schedule.instructions)
    plans = graph_plans(graph)
    return Prepared(graph, schedule, problem, checked, plans, recomputed, pages, problem_weights(problem),
                    op_kinds=[op_kinds(plan) for plan in plans])


def run_prepared(prepared: Prepared, model: torch.nn.Module, inputs: Any, targets: Any, *,
                 flash_dir: str | os.PathLike | None = None, into_model: bool = False,
                 check_values: bool = False, optimizer: Any = None) -> ExecutionResult:
    """Run a schedule checked by :func:`prepare` (the arguments are those of :func:`execute`)."""
    graph = prepared.graph
    check_batch(graph, inputs, targets)
    params, buffers = members(model)
    check_model(graph, model, params, buffers)
    groups = _optimizer_groups(graph, model, optimizer, params)
    mapped = {}
    if prepared.weights == "flash":  # (re)written only when the frozen parameters changed
        prepared.weights_file, mapped = frozen_weights(prepared.weights_file, graph, params, flash_dir)
    if len(prepared.op_kinds) != len(prepared.plans):  # a Prepared made by hand
        prepared.op_kinds = [op_kinds(plan) for plan in prepared.plans]
    flash = FlashFolder(flash_dir) if (prepared.pages or flash_dir is not None) else None
    try:
        with torch.no_grad():  # the bookkeeping builds no autograd graph; evaluate() sets each op's mode
            static = graph.static_values(model, inputs, targets, params=params, buffers=buffers)
            static.update(mapped)  # frozen weights read in place from the weights file
            ex = _Executor(prepared, static, params, flash, into_model, check_values, optimizer, groups)
            result = ex.run(prepared.schedule)
            result.weights_file_bytes = prepared.weights_file.nbytes if mapped else 0
            return result
    finally:
        if flash is not None:
            flash.close()


class _Executor:
    """State of one executed step (see :func:`execute`)."""

    def __init__(self, prepared: Prepared, static: dict[str, Any], params: dict[str, torch.Tensor],
                 flash: FlashFolder | None, into_model: bool, check_values: bool, optimizer: Any,
                 groups: dict[str, dict]):
        self.graph = prepared.graph
        self.plans = prepared.plans
        self.op_kinds = prepared.op_kinds
        self.problem = prepared.problem
        self.flash = flash
        self.recomputed = prepared.recomputed
        self.into_model = into_model
        self.check_values = check_values
        self.static = static
        self.optimizer = optimizer
        self.groups = groups
        self.n_updates = 0
        self.update_peaks: dict = prepared.update_peaks
        self.update_settings: dict = {}  # param group id -> its settings, read once per step
        self.static_keys = {t.untyped_storage().data_ptr() for t in static.values()
                            if isinstance(t, torch.Tensor)}
        self.params = params
        self.values: dict[str, Any] = dict(static)  # fx name -> static value or resident node's tensor
        self.resident: dict[int, dict[str, torch.Tensor]] = {}
        # unique storages of the resident tensors (static ones left out): key -> holders, bytes
        self.res_count: dict[int, int] = {}
        self.res_size: dict[int, int] = {}
        self.res_bytes = 0
        self.resident_keys: dict[int, list[int]] = {}
        self.computed: set[int] = set()
        self.rng_states: dict[int, torch.Tensor] = {}
        self.snapshots: dict[int, dict[str, torch.Tensor]] = {}
        self.digests: dict[int, str] = {}
        self.grads: dict[str, torch.Tensor] = {}
        self.loss: torch.Tensor | None = None
        self.node_out: dict[int, int] = {}
        self.node_ws: dict[int, int] = {}
        self.instant_peak = self.problem.static_bytes
        self.compute_s = 0.0
        self.paging_s = 0.0
        self.not_released = 0
        self.mismatches: list[str] = []

    # ---- the instruction loop
    def run(self, schedule: Schedule) -> ExecutionResult:
        start = time.perf_counter()
        static = self.problem.static_bytes
        flash = self.flash
        clock = time.perf_counter
        ram_trace: list[int] = []
        flash_trace: list[int] = []
        written = read = n_out = n_in = n_compute = 0
        for k, (op, i) in enumerate(schedule.instructions):
            if op == "compute":
                t0 = clock()
                held = static + self.res_bytes           # operands and everything else resident
                during = held + self._compute(k, i)      # + output + peak temporaries
                self.compute_s += clock() - t0
                n_compute += 1
            elif op == "free":
                during = static + self.res_bytes
                self._free(i)
            elif op == "page_out":
                t0 = clock()
                written += flash.write(i, self.resident[i])
                self.paging_s += clock() - t0
                n_out += 1
                during = static + self.res_bytes
            elif op == "page_in":
                read += self._page_in(k, i)
                n_in += 1
                during = static + self.res_bytes
            else:  # drop_flash
                flash.drop(i)
                during = static + self.res_bytes
            ram_trace.append(during)
            flash_trace.append(flash.bytes_on_flash if flash is not None else 0)
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
            flash_meta_bytes=flash.meta_bytes if flash is not None else 0,
            node_out_bytes=self.node_out, node_workspace_bytes=self.node_ws, n_compute=n_compute,
            n_recompute=n_compute - len(self.computed), n_page_out=n_out, n_page_in=n_in,
            frees_not_released=self.not_released, scratch_bytes=scratch,
            seconds=time.perf_counter() - start, compute_seconds=self.compute_s,
            paging_seconds=self.paging_s, value_mismatches=self.mismatches, n_updates=self.n_updates)

    # ---- residency
    def _make_resident(self, i: int, tensors: dict[str, torch.Tensor],
                       storages: list[tuple[int, int]] | None = None) -> None:
        """Node i's tensors become resident; ``storages``: (key, bytes) of each one's storage."""
        self.resident[i] = tensors
        self.values.update(tensors)
        if storages is None:
            storages = [(st.data_ptr(), st.nbytes()) for st in (t.untyped_storage() for t in tensors.values())]
        count, size, static_keys = self.res_count, self.res_size, self.static_keys
        keys = []
        for key, nbytes in storages:
            if nbytes and key not in static_keys:
                c = count.get(key, 0)
                if c == 0:
                    size[key] = nbytes
                    self.res_bytes += nbytes
                count[key] = c + 1
                keys.append(key)
        self.resident_keys[i] = keys

    def _free(self, i: int) -> None:
        tensors = self.resident.pop(i)
        values = self.values
        for name in tensors:
            values.pop(name, None)
        count, size = self.res_count, self.res_size
        for key in self.resident_keys.pop(i):
            c = count[key] - 1
            if c:
                count[key] = c
            else:
                del count[key]
                self.res_bytes -= size.pop(key)
        refs = [weakref.ref(t) for t in tensors.values()]
        del tensors
        for r in refs:
            if r() is not None:
                self.not_released += 1

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
        # storages not counted as the node's: static ones and other nodes' resident ones (looked
        # up where they are kept), and these (scratch copies, gradient buffers the node writes)
        excluded = {t.untyped_storage().data_ptr() for t in overrides.values()} if overrides else set()
        try:
            env, totals, born = self._evaluate(plan, self.op_kinds[i], overrides, excluded)
        finally:
            if saved_rng is not None:
                torch.set_rng_state(saved_rng)
        if plan.update_of is not None:
            totals = [self._update(plan, env)]
        outputs = {name: env[name] for name in node.outputs}
        # outputs are counted from the start of the compute (the simulator's rule); temporaries
        # are whatever else was alive after each op
        static_keys, resident = self.static_keys, self.res_count
        storages = []
        out_keys = {}
        for t in outputs.values():
            st = t.untyped_storage()
            key, nbytes = st.data_ptr(), st.nbytes()
            storages.append((key, nbytes))
            if nbytes and key not in static_keys and key not in resident and key not in excluded:
                out_keys[key] = nbytes
        out_bytes = sum(out_keys.values())
        workspace = node_workspace(out_keys, totals, born)
        if totals:
            self.instant_peak = max(self.instant_peak, self.problem.static_bytes + self.res_bytes + max(totals))
        self.node_out.setdefault(i, out_bytes)
        if workspace > self.node_ws.get(i, -1):
            self.node_ws[i] = workspace
        if first:
            self.computed.add(i)
            if node.grads or (self.loss is None and self.graph.loss_value in env):
                self._capture(node, env)
            if self.check_values:
                self.digests[i] = self._digest(i, outputs)
        elif self.check_values and self._digest(i, outputs) != self.digests.get(i):
            self.mismatches.append(f"instruction {k} (compute {i}, node {node.name!r}): recompute "
                                   f"differs from the first compute")
        del env
        self._make_resident(i, outputs, storages)
        return out_bytes + workspace

    def _digest(self, i: int, tensors: dict[str, torch.Tensor]) -> str:
        """The digest of node i's tensors that carry meaning (not its ``opaque`` scratch)."""
        opaque = self.plans[i].opaque
        return digest({k: v for k, v in tensors.items() if k not in opaque} if opaque else tensors)

    def _evaluate(self, plan: NodePlan, kinds: tuple[int, ...], overrides: dict[str, torch.Tensor],
                  excluded: set[int]):
        """Evaluate the node's ops, measuring them (:func:`poet.measure.evaluate_counted`)."""
        values, node = self.values, plan.node

        def fetch(name: str) -> Any:
            v = overrides.get(name, _MISSING) if overrides else _MISSING
            if v is _MISSING:
                v = values.get(name, _MISSING)
                if v is _MISSING:
                    raise ReplayError(f"node {node.name!r} (id {node.id}) needs fx value {name!r}, "
                                      f"which is neither resident nor static")
            return v

        return evaluate_counted(plan, kinds, fetch, self.static_keys, self.res_count, excluded)

    def _update(self, plan: NodePlan, env: dict[str, Any]) -> int:
        """Apply the optimizer to the update node's parameter; return its temporaries' peak bytes."""
        value_name = plan.node.extra["grad_value"]
        g = env[value_name] if value_name in env else self.values[value_name]
        name = plan.update_of
        self.n_updates += 1
        return apply_update(self.optimizer, self.params[name], self.groups[name], g, plan.node.id,
                            self.update_peaks, self.update_settings, self.check_values)

    def _capture(self, node: GraphNode, env: dict[str, Any]) -> None:
        """Copy out the gradients (and the loss) a node produces, at its first compute."""
        for qualname, value_name in node.grads.items():
            value = env[value_name] if value_name in env else self.values[value_name]
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
