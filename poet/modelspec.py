"""Name a model on the command line and in schedule files.

A model spec is either a zoo name (``"resnet18"``) or ``"package.module:function"`` where the
function takes ``batch_size`` (keyword) and returns ``(model, loss_fn, inputs, targets)``.
A schedule made by ``poet solve`` records the spec (with batch size, training mode and
optimizer) so that ``poet verify`` can rebuild the same step.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class ModelSpec:
    """What a schedule was made for: enough to rebuild the model and its example batch."""

    model: str
    batch_size: int = 1
    train: str | list[str] = "all"
    optimizer: str = "sgd"
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Any) -> "ModelSpec":
        if not isinstance(d, dict) or not isinstance(d.get("model"), str):
            raise ValueError("the schedule's model record must be an object with a 'model' string "
                             "(a zoo name or module:function); pass --model to name one")
        allowed = {"model", "batch_size", "train", "optimizer", "seed"}
        return cls(**{k: v for k, v in d.items() if k in allowed})

    def load(self):
        """(model, loss_fn, inputs, targets) for this spec."""
        return load_model(self.model, batch_size=self.batch_size, seed=self.seed)


def load_model(spec: str, *, batch_size: int = 1, seed: int = 0):
    """Build the model a spec names; returns (model, loss_fn, inputs, targets).

    Raises ValueError naming what is wrong (unknown zoo name, module that does not import,
    function that is missing or returns the wrong shape).
    """
    from . import zoo

    if not isinstance(spec, str) or not spec:
        raise ValueError(f"model must be a zoo name or module:function, got {spec!r}")
    if ":" not in spec:
        if spec not in zoo.names():
            raise ValueError(f"model {spec!r} is neither a zoo name ({', '.join(zoo.names())}) nor "
                             f"a module:function")
        return tuple(zoo.get(spec, batch_size=batch_size, seed=seed))
    mod_name, _, fn_name = spec.partition(":")
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as e:
        raise ValueError(f"model {spec!r}: cannot import module {mod_name!r} ({e}); "
                         f"is it on PYTHONPATH?") from None
    fn = getattr(mod, fn_name, None)
    if not callable(fn):
        raise ValueError(f"model {spec!r}: module {mod_name!r} has no function {fn_name!r}")
    params = inspect.signature(fn).parameters
    kwargs = {}
    if "batch_size" in params:
        kwargs["batch_size"] = batch_size
    if "seed" in params:
        kwargs["seed"] = seed
    out = fn(**kwargs)
    if not isinstance(out, (tuple, list)) or len(out) != 4:
        raise ValueError(f"model {spec!r}: the function must return (model, loss_fn, inputs, "
                         f"targets), got {type(out).__name__}")
    return tuple(out)


def extract_problem(spec: ModelSpec, device, *, ram_budget=None, runtime_budget=None,
                    flash_budget=None, granularity: str = "layer"):
    """Trace the model a spec names and price it on `device`: returns (graph, problem).

    The problem's `extra["model_spec"]` records the spec, so schedules solved from it can be
    verified later without naming the model again.
    """
    from .costs import make_problem
    from ._extract import extract

    model, loss_fn, inputs, targets = spec.load()
    graph = extract(model, loss_fn, inputs, targets, granularity=granularity, train=spec.train,
                    optimizer=spec.optimizer, name=spec.model.rsplit(":", 1)[-1])
    problem = make_problem(graph, device, ram_budget=ram_budget, runtime_budget=runtime_budget,
                           flash_budget=flash_budget)
    extra = dict(problem.extra)
    extra["model_spec"] = spec.to_dict()
    extra["granularity"] = granularity
    return graph, dataclasses.replace(problem, extra=extra)
