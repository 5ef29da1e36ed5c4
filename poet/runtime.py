"""Train with a schedule: a step function to call in place of ``loss.backward()``.

    step = poet.ScheduledStep(model, loss_fn, poet.Schedule.load("s.json"))
    for x, y in batches:
        optimizer.zero_grad()
        loss = step(x, y)          # instead of: loss = loss_fn(model(x), y); loss.backward()
        optimizer.step()

``step(x, y)`` runs the forward pass, the loss and the backward pass in the order the schedule
gives (recomputing and paging as it says, through :mod:`poet.executor`), leaves in ``p.grad``
what ``backward()`` would have left (added to an existing ``.grad``), updates BatchNorm buffers
once and advances torch's RNG as eager dropout would; on CPU with the same thread count the
numbers are bitwise those of eager training. The optimizer and the loop stay as they are.

Fused updates (``update="fused"``, MCUNetV3's in-place update: no gradient buffer exists)::

    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    step = poet.ScheduledStep(model, loss_fn, schedule, optimizer=opt, update="fused")
    for x, y in batches:
        loss = step(x, y)          # applies opt to each parameter as soon as its gradient exists;
                                   # no zero_grad(), no opt.step()

The parameters and the optimizer state after each step equal eager
``loss.backward(); opt.step()`` bitwise on CPU (SGD with momentum, weight decay, nesterov;
Adam, AdamW, amsgrad; the single-tensor implementation, torch's default on CPU).

The traced graph is made once: from ``graph=`` if given, else by tracing the model on
``example_inputs``/``example_targets`` at construction, else on the first batch. Tracing uses
the training set-up the schedule records (``schedule.extra["model_spec"]``: ``train``,
``optimizer``, ``update``; ``schedule.extra["granularity"]``) unless given here.

Safety: the schedule must have been made for this graph. With a device (``device=`` or the
schedule's recorded ``extra["device"]``) or a ``problem=``, its fingerprint is compared with
the traced graph priced on that device, and a mismatch is an error. Without either only the
structure is checked (the simulator's rules on the graph's nodes and edges); such a schedule
still gives exact gradients (every valid order does), but its memory promise is unchecked,
which ``fingerprint_checked`` reports. A batch of another shape or dtype, or a model switched
between ``train()`` and ``eval()`` since tracing, is refused with an error naming both.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import torch

from solver import Problem, Schedule

from .graph import TrainingGraph
from .errors import ReplayError
from .executor import ExecutionResult, Prepared, prepare, run_prepared

__all__ = ["ScheduledStep"]

log = logging.getLogger(__name__)


class ScheduledStep:
    """``loss = step(inputs, targets)``: one training step run by a schedule (module docstring).

    ``schedule`` is a :class:`solver.Schedule` or the path of a schedule JSON file. Keyword
    options: ``graph`` (a :class:`poet.graph.TrainingGraph` of this model and batch shape),
    ``problem`` (the priced problem the schedule was solved from), ``device`` (a profile name
    or path, to price the traced graph for the fingerprint check), ``example_inputs`` /
    ``example_targets`` (trace now instead of on the first call), ``flash_dir`` (where paged
    tensors go; default a temporary folder per step), ``train`` / ``optimizer`` /
    ``granularity`` (as in :func:`poet.extract`; default: what the schedule records, else
    "all", "sgd", "layer"). ``optimizer`` is best the torch optimizer itself: its kind is what
    the graph is traced for, and with ``update="fused"`` (default: what the schedule records,
    else "buffered") the step applies it; a kind name ("sgd", "adam", ...) still works for
    "buffered".

    After a call, ``last_result`` holds the :class:`poet.executor.ExecutionResult` (measured
    peak, flash bytes, times).
    """

    def __init__(self, model: torch.nn.Module, loss_fn: Callable[..., torch.Tensor],
                 schedule: Schedule | str | os.PathLike, *, graph: TrainingGraph | None = None,
                 problem: Problem | None = None, device: Any = None, example_inputs: Any = None,
                 example_targets: Any = None, flash_dir: str | os.PathLike | None = None,
                 train: Any = None, optimizer: Any = None, granularity: str | None = None,
                 update: str | None = None):
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not callable(loss_fn):
            raise TypeError(f"loss_fn must be callable as loss_fn(output, targets), got {type(loss_fn).__name__}")
        if isinstance(schedule, (str, os.PathLike)):
            schedule = Schedule.load(schedule)
        if not isinstance(schedule, Schedule):
            raise TypeError(f"schedule must be a solver.Schedule or a path to a schedule file, got "
                            f"{type(schedule).__name__}")
        if (example_inputs is None) != (example_targets is None):
            raise ValueError("give both example_inputs and example_targets, or neither")
        spec = schedule.extra.get("model_spec") if isinstance(schedule.extra.get("model_spec"), dict) else {}
        self.model = model
        self.loss_fn = loss_fn
        self.schedule = schedule
        self.flash_dir = flash_dir
        self.train = train if train is not None else spec.get("train", "all")
        self.optimizer = optimizer if optimizer is not None else spec.get("optimizer", "sgd")
        self.update = update if update is not None else spec.get("update", "buffered")
        if self.update not in ("buffered", "fused"):
            raise ValueError(f"update must be 'buffered' or 'fused', got {self.update!r}")
        if self.update == "fused" and not isinstance(self.optimizer, torch.optim.Optimizer):
            raise ValueError("update='fused' applies the optimizer inside the step: pass the torch "
                             "optimizer itself (optimizer=opt), not the name of its kind")
        self._torch_optimizer = self.optimizer if isinstance(self.optimizer, torch.optim.Optimizer) else None
        self.granularity = granularity if granularity is not None else schedule.extra.get("granularity", "layer")
        self._problem = problem
        self._device = device
        self._prepared: Prepared | None = None
        self._modes: list[bool] | None = None
        self.last_result: ExecutionResult | None = None
        if graph is not None:
            self._bind(graph)
        elif example_inputs is not None:
            self._trace(example_inputs, example_targets)

    # ------------------------------------------------------------------ properties
    @property
    def graph(self) -> TrainingGraph | None:
        """The traced graph (None until traced)."""
        return self._prepared.graph if self._prepared is not None else None

    @property
    def problem(self) -> Problem | None:
        """The problem the schedule was checked against (None until traced)."""
        return self._prepared.problem if self._prepared is not None else None

    @property
    def fingerprint_checked(self) -> bool:
        """True when the schedule's fingerprint was compared with the traced graph's."""
        return self._prepared is not None and self._prepared.fingerprint_checked

    # ------------------------------------------------------------------ set-up
    def _trace(self, inputs: Any, targets: Any) -> None:
        from ._extract import extract

        graph = extract(self.model, self.loss_fn, inputs, targets, granularity=self.granularity,
                        train=self.train, optimizer=self.optimizer, update=self.update)
        self._bind(graph)

    def _bind(self, graph: TrainingGraph) -> None:
        if graph.update != self.update and self.update == "fused" or graph.update == "fused" and \
                self._torch_optimizer is None:
            raise ValueError(f"the graph was traced with update={graph.update!r}; this step needs "
                             f"update={self.update!r} and, for 'fused', the torch optimizer (optimizer=opt)")
        self.update = graph.update
        self._prepared = prepare(graph, self.schedule, self._problem, self._device)
        self._modes = [m.training for m in self.model.modules()]
        if not self._prepared.fingerprint_checked and self.schedule.problem_fingerprint is not None:
            log.warning("schedule fingerprint not checked (no device or problem known): only its "
                        "structure was checked against the traced graph; pass device= to check it")

    # ------------------------------------------------------------------ the step
    def __call__(self, inputs: Any, targets: Any) -> torch.Tensor:
        """Run one step; return the loss (detached). Gradients land in ``p.grad`` ("buffered"), or
        are applied by the optimizer during the step ("fused")."""
        if self._prepared is None:
            self._trace(inputs, targets)
        assert self._prepared is not None
        modes = [m.training for m in self.model.modules()]
        if modes != self._modes:
            was = "train()" if self._modes and self._modes[0] else "eval()"
            now = "train()" if modes and modes[0] else "eval()"
            raise ReplayError(f"the model was traced in {was} mode and is now in {now} mode (or a "
                              f"sub-module changed mode); the schedule's graph no longer describes "
                              f"its step. Switch back, or make a new ScheduledStep for this mode")
        self.last_result = run_prepared(self._prepared, self.model, inputs, targets,
                                        flash_dir=self.flash_dir, into_model=True,
                                        optimizer=self._torch_optimizer)
        return self.last_result.loss

    def __repr__(self) -> str:
        traced = f"{self.graph.T} nodes" if self.graph is not None else "not traced yet"
        return (f"ScheduledStep({type(self.model).__name__}, strategy={self.schedule.strategy!r}, "
                f"{len(self.schedule)} instructions, {traced})")
