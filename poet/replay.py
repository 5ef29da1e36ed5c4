"""Check a schedule three ways on one training step: the simulator, the executor, eager PyTorch.

``verify(graph, schedule, model, inputs, targets)`` replays the schedule symbolically
(:func:`solver.simulate`), runs it on real tensors (:func:`poet.executor.execute`, with its
flash folder) and runs eager ``loss.backward()``, each executed step on a copy of the model,
and reports in a :class:`VerifyReport` whether the RAM and flash the executor measured are the
simulator's and whether loss, gradients, buffers and RNG state equal eager's.

This module also re-exports the replay API that grew here (the executor, the flash store, the
problem resolution), so ``poet.replay.execute`` and friends keep working.
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch

import solver
from solver import Problem, Schedule

from .errors import ReplayError
from .executor import ExecutionResult, Prepared, execute, prepare, run_prepared
from .flash import FLASH_FORMAT, FlashFolder
from .graph import TrainingGraph
from .resolve import check_batch, for_problem, resolve_problem, structural_problem

__all__ = ["execute", "verify", "prepare", "run_prepared", "Prepared", "ExecutionResult", "VerifyReport",
           "ReplayError", "FlashFolder", "resolve_problem", "structural_problem", "check_batch",
           "FLASH_FORMAT"]


@dataclass
class VerifyReport:
    """The simulator, the executor and eager PyTorch compared on one step.

    ``passed`` is True when every check holds; ``failures`` says which did not, in words.
    Memory: ``predicted_peak_bytes`` (simulator) vs ``measured_peak_bytes`` (executor, same
    accounting) and ``trace_equal`` (the two RAM traces agree at every instruction;
    ``first_trace_mismatch`` is the first instruction where they do not, or -1). Flash:
    bytes the schedule pages out / in (sum of out_bytes) vs real data-file bytes. Numbers:
    ``max_abs_grad_diff`` over all trained parameters (worst in ``worst_param``),
    ``grad_scale`` = largest |eager gradient|, ``max_rel_grad_diff`` = diff / scale,
    ``bitwise`` (loss, gradients and buffers identical), ``loss``/``eager_loss``/``loss_diff``,
    ``max_buffer_diff`` (BatchNorm running statistics etc. after the step), ``rng_equal``
    (torch's RNG ends in the same state). Cost: the simulator's ``energy_j`` and ``time_s``
    (device predictions; zero when no device was known) next to the measured CPU seconds of
    the executor and of eager. With an optimizer (``verify(..., optimizer=)``):
    ``params_compared`` is True, ``params_bitwise`` / ``max_param_diff`` compare the parameters
    after the step with eager ``loss.backward(); opt.step()``, ``optimizer_state_bitwise`` the
    optimizer state. ``update`` is the graph's ("fused": no gradients exist to compare, the
    parameters and state are). ``weights_file_bytes``: the memory-mapped frozen weights (weights
    in flash).
    """

    passed: bool
    failures: list[str]
    strategy: str
    fingerprint_checked: bool
    n_instructions: int
    n_recompute: int
    n_page_out: int
    n_page_in: int
    static_bytes: int
    predicted_peak_bytes: int
    measured_peak_bytes: int
    instant_peak_bytes: int
    trace_equal: bool
    first_trace_mismatch: int
    predicted_flash_written: int
    measured_flash_written: int
    predicted_flash_read: int
    measured_flash_read: int
    predicted_peak_flash: int
    measured_peak_flash: int
    loss: float
    eager_loss: float
    loss_diff: float
    max_abs_grad_diff: float
    grad_scale: float
    max_rel_grad_diff: float
    worst_param: str
    grad_tolerance: float
    max_buffer_diff: float
    rng_equal: bool
    bitwise: bool
    value_mismatches: list[str]
    frees_not_released: int
    over_budget: list[str]
    energy_j: float
    time_s: float
    executor_seconds: float
    eager_seconds: float
    update: str = "buffered"
    params_compared: bool = False
    params_bitwise: bool = True
    max_param_diff: float = 0.0
    optimizer_state_bitwise: bool = True
    weights_file_bytes: int = 0

    def to_dict(self) -> dict:
        """JSON-ready."""
        return asdict(self)

    def lines(self) -> list[str]:
        """Human-readable summary, one check per line (the CLI prints these)."""
        return [
            f"verify {'PASSED' if self.passed else 'FAILED'}: {self.strategy} schedule, "
            f"{self.n_instructions} instructions, {self.n_recompute} recomputes, "
            f"{self.n_page_out} page-outs, {self.n_page_in} page-ins",
            f"peak RAM   predicted {self.predicted_peak_bytes} B ({_size(self.predicted_peak_bytes)}), "
            f"measured {self.measured_peak_bytes} B, trace {'equal' if self.trace_equal else 'differs'}",
            f"flash      written {self.measured_flash_written} B (schedule {self.predicted_flash_written} B), "
            f"read {self.measured_flash_read} B (schedule {self.predicted_flash_read} B)",
            f"gradients  max |diff| {self.max_abs_grad_diff:.3g} (scale {self.grad_scale:.3g}, "
            f"relative {self.max_rel_grad_diff:.3g}, tolerance {self.grad_tolerance:.3g}); "
            f"{'bitwise equal' if self.bitwise else 'not bitwise equal'}",
            f"loss       {self.loss:.8g} vs eager {self.eager_loss:.8g}; buffers max |diff| "
            f"{self.max_buffer_diff:.3g}; RNG state {'equal' if self.rng_equal else 'differs'}",
            f"cost       predicted {self.energy_j:.6g} J, {self.time_s:.6g} s on the device; CPU "
            f"{self.executor_seconds * 1e3:.1f} ms executor vs {self.eager_seconds * 1e3:.1f} ms eager",
            *([f"params     after the {self.update} update: max |diff| {self.max_param_diff:.3g}; "
               f"{'bitwise equal' if self.params_bitwise else 'not bitwise equal'}; optimizer state "
               f"{'bitwise equal' if self.optimizer_state_bitwise else 'differs'}"]
              if self.params_compared else []),
            *[f"FAIL: {f}" for f in self.failures],
        ]


def _size(nbytes: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes} B"


def verify(graph: TrainingGraph, schedule: Schedule, model: torch.nn.Module, inputs: Any, targets: Any, *,
           problem: Problem | None = None, flash_dir: str | os.PathLike | None = None,
           loss_fn: Any = None, atol: float = 0.0, rtol: float = 1e-6, device: Any = None,
           optimizer: Any = None) -> VerifyReport:
    """Check ``schedule`` three ways: simulator, executor on real tensors, eager PyTorch.

    The problem comes from :func:`poet.resolve.resolve_problem` (``problem``, else the graph
    priced on ``device`` or on the schedule's recorded device, else the graph's structure
    alone); a schedule made for another graph raises ReplayError before anything runs. The
    executor (with ``check_values=True``) and ``loss_fn(model(*inputs), targets).backward()``
    each run on a deep copy of ``model`` from the same RNG state with the current thread count;
    ``model``, its ``.grad`` fields and torch's RNG state are left as they were.

    ``passed`` requires: measured RAM trace equal to the simulator's at every instruction (so
    equal peaks), flash bytes written/read equal to the schedule's page-outs/page-ins, gradient
    difference <= ``atol + rtol * grad_scale``, loss and buffer differences within the same
    tolerance (relative to their own scale), equal RNG end states, recomputes and page-ins
    byte-identical to first computes, every free releasing its tensors, and no budget exceeded.

    ``optimizer``: the torch optimizer of ``model`` (required for a graph traced with
    ``update="fused"``). Each side runs on a copy of the model and the optimizer together: the
    executor (which applies a fused update itself; for "buffered" its gradients go to ``.grad``
    and ``step()`` follows) and eager ``loss.backward(); opt.step()``; the parameters and the
    optimizer state afterwards must then be equal too (within the gradient tolerance; bitwise
    reported apart). ``model``'s and ``optimizer``'s own state are left as they were.
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    for name, tol in (("atol", atol), ("rtol", rtol)):
        if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol >= 0 or tol == float("inf"):
            raise ValueError(f"{name} must be a finite number >= 0, got {tol!r}")
    loss_fn = loss_fn if loss_fn is not None else graph.extra.get("loss_fn")
    if not callable(loss_fn):
        raise ReplayError("verify needs the loss function for the eager reference step: pass "
                          "loss_fn=..., or a graph made by poet.extract (which records it)")
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer (the one training model), got "
                        f"{type(optimizer).__name__}")
    if graph.update == "fused" and optimizer is None:
        raise ReplayError("this graph applies the optimizer inside the step (update='fused'): pass "
                          "optimizer=... (the torch optimizer of model) to verify it")
    prepared = prepare(graph, schedule, problem, device)
    problem = prepared.problem
    sim = solver.simulate(problem, for_problem(schedule, problem), check_budgets=False)
    run = _run_both(prepared, model, loss_fn, inputs, targets, flash_dir, optimizer)
    numbers, failures = _compare_numbers(graph, run, atol, rtol)
    memory, more = _compare_memory(graph, schedule, sim, run.result)
    if optimizer is not None:
        updated, also = _compare_params(graph, run, atol, rtol)
        numbers.update(updated)
        failures += also
    res = run.result
    return VerifyReport(
        passed=not (failures or more), failures=failures + more, strategy=schedule.strategy,
        fingerprint_checked=prepared.fingerprint_checked, n_instructions=len(schedule.instructions),
        n_recompute=sim.n_recompute, n_page_out=sim.n_page_out, n_page_in=sim.n_page_in,
        static_bytes=problem.static_bytes, **memory, **numbers,
        value_mismatches=list(res.value_mismatches), frees_not_released=res.frees_not_released,
        over_budget=list(sim.over_budget), energy_j=sim.energy_j, time_s=sim.time_s,
        executor_seconds=res.seconds, eager_seconds=run.eager_seconds, update=graph.update,
        weights_file_bytes=res.weights_file_bytes)


@dataclass
class _Run:
    """The executed step and the eager step of :func:`verify`, each on its own model copy."""

    result: ExecutionResult
    model: torch.nn.Module
    eager_model: torch.nn.Module
    eager_loss: torch.Tensor
    eager_grads: dict[str, torch.Tensor]
    eager_seconds: float
    rng_executor: torch.Tensor
    rng_eager: torch.Tensor
    ex_optimizer: Any = None
    eager_optimizer: Any = None


def _copies(model: torch.nn.Module, optimizer: Any) -> tuple[torch.nn.Module, Any]:
    """A deep copy of ``model`` and of ``optimizer`` bound to the copy's parameters."""
    memo: dict = {}
    m = copy.deepcopy(model, memo)
    return m, (copy.deepcopy(optimizer, memo) if optimizer is not None else None)


def _run_both(prepared: Prepared, model: torch.nn.Module, loss_fn, inputs, targets, flash_dir,
              optimizer: Any = None) -> _Run:
    """Run the schedule and eager backward() (then ``step()`` with an optimizer) on deep copies of
    ``model`` (and ``optimizer``) from the same RNG state; torch's RNG state is restored afterwards."""
    rng0 = torch.get_rng_state()
    graph = prepared.graph
    try:
        ex_model, ex_opt = _copies(model, optimizer)
        res = run_prepared(prepared, ex_model, inputs, targets, flash_dir=flash_dir, check_values=True,
                           optimizer=ex_opt)
        if ex_opt is not None and graph.update == "buffered":
            params = dict(ex_model.named_parameters())
            for p in params.values():
                p.grad = None
            for q, g in res.grads.items():
                params[q].grad = g.clone()
            ex_opt.step()
        rng_ex = torch.get_rng_state()
        torch.set_rng_state(rng0)
        eager_model, eager_opt = _copies(model, optimizer)
        eager_loss, eager_grads, eager_s = _eager_step(graph, eager_model, loss_fn, inputs, targets)
        if eager_opt is not None:
            eager_opt.step()
        rng_eager = torch.get_rng_state()
    finally:
        torch.set_rng_state(rng0)
    return _Run(res, ex_model, eager_model, eager_loss, eager_grads, eager_s, rng_ex, rng_eager,
                ex_opt, eager_opt)


def _compare_params(graph: TrainingGraph, run: _Run, atol: float, rtol: float) -> tuple[dict, list[str]]:
    """Parameters and optimizer state after the step, executor against eager."""
    failures: list[str] = []
    ex = dict(run.model.named_parameters())
    eg = dict(run.eager_model.named_parameters())
    bitwise, diff, scale, worst = True, 0.0, 0.0, ""
    for q in ex:
        a, b = ex[q].detach(), eg[q].detach()
        bitwise &= bool(torch.equal(a, b))
        if a.numel():
            d = float((a.double() - b.double()).abs().max())
            scale = max(scale, float(b.abs().max()))
            if d > diff:
                diff, worst = d, q
    if diff > atol + rtol * max(scale, 1.0):
        failures.append(f"parameters after the step differ from eager by {diff:.3g} (parameter {worst!r})")
    state_equal, state_diff, state_scale = True, 0.0, 1.0
    for q in ex:
        sa = run.ex_optimizer.state.get(ex[q], {})
        sb = run.eager_optimizer.state.get(eg[q], {})
        if set(sa) != set(sb):
            failures.append(f"optimizer state of {q!r} has entries {sorted(sa)}, eager's {sorted(sb)}")
            state_equal = False
            continue
        for k in sa:
            va, vb = sa[k], sb[k]
            if isinstance(va, torch.Tensor) and isinstance(vb, torch.Tensor):
                state_equal &= bool(torch.equal(va, vb))
                if va.numel() and va.is_floating_point():
                    state_diff = max(state_diff, float((va.double() - vb.double()).abs().max()))
                    state_scale = max(state_scale, float(vb.abs().max()))
            else:
                state_equal &= bool(va == vb)
    if state_diff > atol + rtol * state_scale:
        failures.append(f"the optimizer state after the step differs from eager's by {state_diff:.3g}")
    return dict(params_compared=True, params_bitwise=bitwise, max_param_diff=diff,
                optimizer_state_bitwise=state_equal), failures


def _compare_numbers(graph: TrainingGraph, run: _Run, atol: float, rtol: float) -> tuple[dict, list[str]]:
    """Gradients, loss, buffers and RNG state of the executed step against eager's: the
    VerifyReport fields and the failures."""
    res, eager_grads = run.result, run.eager_grads
    failures: list[str] = []
    max_diff, scale, worst, bitwise = 0.0, 0.0, "", True
    for q in (graph.trainable if graph.update == "buffered" else ()):  # fused: no gradient exists
        if q not in eager_grads and q not in res.grads:
            continue
        e = eager_grads.get(q)
        g = res.grads.get(q)
        if e is None or g is None:
            failures.append(f"gradient of {q!r} exists in {'eager' if g is None else 'the executor'} only")
            bitwise = False
            continue
        scale = max(scale, float(e.abs().max()) if e.numel() else 0.0)
        d = float((g.double() - e.double()).abs().max()) if e.numel() else 0.0
        bitwise &= bool(torch.equal(g, e))
        if d > max_diff or not worst:
            max_diff, worst = max(max_diff, d), q if d >= max_diff else worst
    tol = atol + rtol * scale
    if max_diff > tol:
        failures.append(f"gradients differ from eager by {max_diff:.3g} (parameter {worst!r}) > "
                        f"tolerance {tol:.3g}")
    loss_ex, loss_eg = float(res.loss), float(run.eager_loss)
    bitwise &= bool(torch.equal(res.loss, run.eager_loss.detach()))
    if abs(loss_ex - loss_eg) > atol + rtol * max(1.0, abs(loss_eg)):
        failures.append(f"loss {loss_ex!r} differs from eager {loss_eg!r}")
    buf_diff = 0.0
    eager_bufs = dict(run.eager_model.named_buffers())
    for name, b in run.model.named_buffers():
        other = eager_bufs[name]
        bitwise &= bool(torch.equal(b, other))
        if b.numel():
            buf_diff = max(buf_diff, float((b.double() - other.double()).abs().max()))
    buf_scale = max([float(b.abs().max()) for b in eager_bufs.values() if b.numel() and b.is_floating_point()],
                    default=1.0)
    if buf_diff > atol + rtol * max(1.0, buf_scale):
        failures.append(f"buffers (BatchNorm statistics) differ from eager by {buf_diff:.3g}")
    rng_equal = bool(torch.equal(run.rng_executor, run.rng_eager))
    if not rng_equal:
        failures.append("torch's RNG ends in another state than after eager (random numbers were "
                        "drawn differently)")
    fields = dict(loss=loss_ex, eager_loss=loss_eg, loss_diff=abs(loss_ex - loss_eg), max_abs_grad_diff=max_diff,
                  grad_scale=scale, max_rel_grad_diff=max_diff / scale if scale else 0.0, worst_param=worst,
                  grad_tolerance=tol, max_buffer_diff=buf_diff, rng_equal=rng_equal, bitwise=bitwise)
    return fields, failures


def _compare_memory(graph: TrainingGraph, schedule: Schedule, sim: solver.SimReport,
                    res: ExecutionResult) -> tuple[dict, list[str]]:
    """RAM trace, peaks and flash bytes measured by the executor against the simulator's, plus the
    executor's own checks (values, frees, budgets): the VerifyReport fields and the failures."""
    failures: list[str] = []
    mismatch = next((k for k, (a, b) in enumerate(zip(res.ram_trace, sim.ram_trace)) if a != b), -1)
    trace_equal = mismatch < 0 and len(res.ram_trace) == len(sim.ram_trace)
    if not trace_equal:
        op, i = schedule.instructions[mismatch]
        failures.append(f"measured RAM differs from the simulator's at instruction {mismatch} ({op} {i}, "
                        f"node {graph.nodes[i].name!r}): {res.ram_trace[mismatch]} vs "
                        f"{sim.ram_trace[mismatch]} bytes")
    if res.peak_ram_bytes != sim.peak_ram_bytes:
        failures.append(f"measured peak {res.peak_ram_bytes} B != predicted {sim.peak_ram_bytes} B")
    if res.flash_bytes_written != sim.bytes_paged_out or res.flash_bytes_read != sim.bytes_paged_in:
        failures.append(f"flash bytes written/read {res.flash_bytes_written}/{res.flash_bytes_read} != "
                        f"schedule's page-outs/page-ins {sim.bytes_paged_out}/{sim.bytes_paged_in}")
    if res.value_mismatches:
        failures.append(f"{len(res.value_mismatches)} recompute/page-in(s) gave other bytes than the "
                        f"first compute: {res.value_mismatches[0]}")
    if res.frees_not_released:
        failures.append(f"{res.frees_not_released} freed tensor(s) were still referenced")
    failures += [f"over budget: {o}" for o in sim.over_budget]
    fields = dict(predicted_peak_bytes=sim.peak_ram_bytes, measured_peak_bytes=res.peak_ram_bytes,
                  instant_peak_bytes=res.instant_peak_ram_bytes, trace_equal=trace_equal,
                  first_trace_mismatch=mismatch, predicted_flash_written=sim.bytes_paged_out,
                  measured_flash_written=res.flash_bytes_written, predicted_flash_read=sim.bytes_paged_in,
                  measured_flash_read=res.flash_bytes_read, predicted_peak_flash=sim.peak_flash_bytes,
                  measured_peak_flash=res.peak_flash_bytes)
    return fields, failures


def _eager_step(graph: TrainingGraph, model: torch.nn.Module, loss_fn, inputs, targets):
    """``loss_fn(model(*inputs), targets).backward()`` with only the graph's parameters trained."""
    trainable = set(graph.trainable)
    for name, p in model.named_parameters():
        p.requires_grad_(name in trainable)
        p.grad = None
    xs = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    t0 = time.perf_counter()
    loss = loss_fn(model(*xs), targets)
    loss.backward()
    seconds = time.perf_counter() - t0
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), grads, seconds
