"""Name a model on the command line and in schedule files.

A model spec is either a zoo name (``"resnet18"``, with zoo options such as ``width=0.35``) or
``"package.module:function"`` where the function takes ``batch_size`` (keyword) and returns
``(model, loss_fn, inputs, targets)``.
A schedule made by ``poet solve`` records the spec (with batch size, training mode and
optimizer) so that ``poet verify`` can rebuild the same step.

Files are data: a spec read from a problem or schedule file is shown to the user and rebuilt
only when it names a zoo model. A ``module:function`` spec is imported and called only when
the user names it (``--model`` on the command line, or ``ModelSpec(...).load()`` in Python);
``ModelSpec.from_dict`` marks a spec as recorded, and ``load()`` refuses to import one.
"""

from __future__ import annotations

import importlib
import inspect
import dataclasses
from dataclasses import dataclass, field
from typing import Any

OPTIMIZER_NAMES = ("sgd", "sgd_momentum", "adam", "adam_amsgrad")
UPDATE_NAMES = ("buffered", "fused")
WEIGHTS_NAMES = ("ram", "flash")

# the optimizer `poet verify` and `poet demo` step with, per kind (a spec names the kind only)
DEFAULT_HYPERPARAMETERS = {
    "sgd": ("SGD", {"lr": 0.01}),
    "sgd_momentum": ("SGD", {"lr": 0.01, "momentum": 0.9, "weight_decay": 1e-4}),
    "adam": ("Adam", {"lr": 1e-3}),
    "adam_amsgrad": ("Adam", {"lr": 1e-3, "amsgrad": True}),
}


def make_optimizer(kind: str, params):
    """The torch optimizer of `kind` with DEFAULT_HYPERPARAMETERS over `params` (a list of
    parameters), in torch's single-tensor implementation (foreach=False)."""
    import torch

    if kind not in DEFAULT_HYPERPARAMETERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZER_NAMES)}, got {kind!r}")
    cls, kw = DEFAULT_HYPERPARAMETERS[kind]
    return getattr(torch.optim, cls)(list(params), foreach=False, **kw)
MAX_BATCH_SIZE = 2**31 - 1          # torch's dimension limit on these machines' builds
MAX_SEED = 2**63 - 1                # torch.manual_seed takes a signed 64-bit seed


class UserCodeError(ValueError):
    """A user's ``module:function`` failed to import, raised, or returned the wrong thing.

    Its message is one line naming the spec and the exception; the original exception is its
    ``__cause__`` (``poet --debug`` prints its traceback).
    """


def check_batch_size(value: Any, what: str = "batch_size") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_BATCH_SIZE:
        raise ValueError(f"{what} must be a whole number from 1 to {MAX_BATCH_SIZE}, got {value!r}")
    return value


def check_seed(value: Any, what: str = "seed") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        raise ValueError(f"{what} must be a whole number from 0 to 2**63-1 ({MAX_SEED}), "
                         f"got {value!r}")
    return value


def _check_train(value: Any, what: str) -> str | list[str]:
    if isinstance(value, str) and value in ("all", "bias", "last"):
        return value
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) and v
                                                          for v in value):
        return list(value)
    raise ValueError(f"{what} must be 'all', 'bias', 'last' or a non-empty list of module "
                     f"names, got {value!r}")


def _check_options(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be an object of option names to values, got {value!r}")
    for k, v in value.items():
        if not isinstance(k, str) or not k.isidentifier():
            raise ValueError(f"{what}: option name {k!r} is not an identifier")
        if isinstance(v, float) and v != v:
            raise ValueError(f"{what}: option {k!r} is NaN")
        if not isinstance(v, (bool, int, float, str)):
            raise ValueError(f"{what}: option {k!r} must be a number, a string or true/false, "
                             f"got {type(v).__name__}")
    return dict(value)


@dataclass(frozen=True)
class ModelSpec:
    """What a schedule was made for: enough to rebuild the model and its example batch.

    ``recorded`` is True for a spec read from a file (``from_dict``): such a spec rebuilds
    zoo models only and never imports a module.
    """

    model: str
    batch_size: int = 1
    train: str | list[str] = "all"
    optimizer: str = "sgd"
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)
    fold_bn: bool = False
    update: str = "buffered"
    weights: str | None = None
    inplace: bool = False
    recorded: bool = field(default=False, compare=False)

    def __post_init__(self):
        where = "the recorded model_spec" if self.recorded else "model spec"
        if not isinstance(self.model, str) or not self.model:
            raise ValueError(f"{where}: model must be a zoo name or module:function, got "
                             f"{self.model!r}")
        check_batch_size(self.batch_size, f"{where}: batch_size")
        check_seed(self.seed, f"{where}: seed")
        object.__setattr__(self, "train", _check_train(self.train, f"{where}: train"))
        if self.optimizer not in OPTIMIZER_NAMES:
            raise ValueError(f"{where}: optimizer must be one of {', '.join(OPTIMIZER_NAMES)}, "
                             f"got {self.optimizer!r}")
        object.__setattr__(self, "options", _check_options(self.options, f"{where}: options"))
        if not isinstance(self.fold_bn, bool):
            raise ValueError(f"{where}: fold_bn must be true or false, got {self.fold_bn!r}")
        if not isinstance(self.inplace, bool):
            raise ValueError(f"{where}: inplace must be true or false, got {self.inplace!r}")
        if self.update not in UPDATE_NAMES:
            raise ValueError(f"{where}: update must be one of {', '.join(UPDATE_NAMES)}, got "
                             f"{self.update!r}")
        if self.weights is not None and self.weights not in WEIGHTS_NAMES:
            raise ValueError(f"{where}: weights must be one of {', '.join(WEIGHTS_NAMES)} or "
                             f"absent (the profile's default), got {self.weights!r}")

    @property
    def is_code(self) -> bool:
        """True for a ``module:function`` spec (running it imports and calls user code)."""
        return ":" in self.model

    def to_dict(self) -> dict:
        d = {"model": self.model, "batch_size": self.batch_size, "train": self.train,
             "optimizer": self.optimizer, "seed": self.seed}
        if self.options:
            d["options"] = dict(self.options)
        if self.fold_bn:
            d["fold_bn"] = True
        if self.update != "buffered":
            d["update"] = self.update
        if self.weights is not None:
            d["weights"] = self.weights
        if self.inplace:
            d["inplace"] = True
        return d

    @classmethod
    def from_dict(cls, d: Any, *, where: str = "the schedule") -> "ModelSpec":
        """A recorded spec from a file's ``model_spec`` object (checked; never imported)."""
        if not isinstance(d, dict) or not isinstance(d.get("model"), str):
            raise ValueError(f"{where}'s model_spec must be an object with a 'model' string "
                             "(a zoo name or module:function); pass --model to name one")
        allowed = {"model", "batch_size", "train", "optimizer", "seed", "options", "fold_bn",
                   "update", "weights", "inplace"}
        return cls(**{k: v for k, v in d.items() if k in allowed}, recorded=True)

    def replace(self, **changes) -> "ModelSpec":
        return dataclasses.replace(self, **changes)

    def load(self):
        """(model, loss_fn, inputs, targets) for this spec (with ``fold_bn``, the model with its
        frozen BatchNorms folded into the layers before them: `poet.fold`).

        A recorded ``module:function`` spec is refused (files never run code): name it
        yourself (``--model``) to run it.
        """
        return self.load_with_report()[0]

    def load_with_report(self):
        """``(load(), FoldReport or None)``: what `load` returns, and the folding report."""
        built = self._build()
        if not self.fold_bn:
            return built, None
        from .fold import fold_frozen_batchnorm

        model, loss_fn, inputs, targets = built
        folded, report = fold_frozen_batchnorm(model, self.train, inputs)
        return (folded, loss_fn, inputs, targets), report

    def _build(self):
        if self.recorded and self.is_code:
            raise ValueError(
                f"the file records the model {self.model!r}, a module:function; poet does not "
                f"import code named in a file: if you trust it, pass --model {self.model} "
                f"(or build the model in Python)")
        return load_model(self.model, batch_size=self.batch_size, seed=self.seed,
                          options=self.options)


def _describe(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _allocation_error(e: BaseException, batch_size: int) -> ValueError | None:
    text = str(e)
    if isinstance(e, MemoryError) or "can't allocate memory" in text or "out of memory" in text:
        return ValueError(f"batch size {batch_size}: the model and its example batch do not fit "
                          f"in this machine's memory ({text.split(chr(10))[0][:160]})")
    return None


def load_model(spec: str, *, batch_size: int = 1, seed: int = 0,
               options: dict[str, Any] | None = None):
    """Build the model a spec names; returns (model, loss_fn, inputs, targets).

    Raises ValueError naming what is wrong (unknown zoo name, bad option, a batch that does not
    fit in memory), and `UserCodeError` (a ValueError) for a module:function that does not
    import, raises, or returns the wrong thing.
    """
    from . import zoo

    if not isinstance(spec, str) or not spec:
        raise ValueError(f"model must be a zoo name or module:function, got {spec!r}")
    check_batch_size(batch_size)
    check_seed(seed)
    options = dict(options or {})
    if ":" not in spec:
        if spec not in zoo.names():
            raise ValueError(f"model {spec!r} is neither a zoo name ({', '.join(zoo.names())}) nor "
                             f"a module:function")
        try:
            return tuple(zoo.get(spec, batch_size=batch_size, seed=seed, **options))
        except (RuntimeError, MemoryError) as e:
            err = _allocation_error(e, batch_size)
            if err is None:
                raise
            raise err from None
    return _load_user_model(spec, batch_size, seed, options)


def _load_user_model(spec: str, batch_size: int, seed: int, options: dict[str, Any]):
    import torch

    mod_name, _, fn_name = spec.partition(":")
    if not mod_name or not fn_name:
        raise ValueError(f"model {spec!r}: write module:function, e.g. mypkg.models:make")
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as e:
        raise UserCodeError(f"model {spec!r}: cannot import module {mod_name!r} ({_describe(e)}); "
                            f"is it on PYTHONPATH?") from e
    except Exception as e:  # the module's own code raised while importing
        raise UserCodeError(f"model {spec!r}: importing {mod_name!r} raised {_describe(e)}") from e
    fn = getattr(mod, fn_name, None)
    if not callable(fn):
        raise ValueError(f"model {spec!r}: module {mod_name!r} has no function {fn_name!r}")
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        params = {}
    kwargs = dict(options)
    if "batch_size" in params:
        kwargs["batch_size"] = batch_size
    if "seed" in params:
        kwargs["seed"] = seed
    try:
        out = fn(**kwargs)
    except (RuntimeError, MemoryError) as e:
        err = _allocation_error(e, batch_size)
        raise (err or UserCodeError(f"model {spec!r}: {fn_name}() raised {_describe(e)}")) from e
    except Exception as e:
        raise UserCodeError(f"model {spec!r}: {fn_name}() raised {_describe(e)}") from e
    if not isinstance(out, (tuple, list)) or len(out) != 4:
        raise UserCodeError(f"model {spec!r}: the function must return (model, loss_fn, inputs, "
                            f"targets), got {type(out).__name__}"
                            + (f" of length {len(out)}" if isinstance(out, (tuple, list)) else ""))
    model, loss_fn, _, _ = out
    if not isinstance(model, torch.nn.Module):
        raise UserCodeError(f"model {spec!r}: the first item returned must be a torch.nn.Module, "
                            f"got {type(model).__name__}")
    if not callable(loss_fn):
        raise UserCodeError(f"model {spec!r}: the second item returned (loss_fn) must be "
                            f"callable, got {type(loss_fn).__name__}")
    return tuple(out)


def extract_problem(spec: ModelSpec, device, *, ram_budget=None, runtime_budget=None,
                    flash_budget=None, granularity: str = "layer"):
    """Trace the model a spec names and price it on `device`: returns (graph, problem).

    The problem's `extra["model_spec"]` records the spec, so schedules solved from it can be
    verified later without naming the model again.
    """
    from .costs import make_problem
    from ._extract import extract

    (model, loss_fn, inputs, targets), report = spec.load_with_report()
    graph = extract(model, loss_fn, inputs, targets, granularity=granularity, train=spec.train,
                    optimizer=spec.optimizer, update=spec.update, inplace=spec.inplace,
                    name=spec.model.rsplit(":", 1)[-1])
    problem = make_problem(graph, device, ram_budget=ram_budget, runtime_budget=runtime_budget,
                           flash_budget=flash_budget, weights=spec.weights)
    extra = dict(problem.extra)
    extra["model_spec"] = spec.to_dict()
    extra["granularity"] = granularity
    if report is not None:
        extra["fold_bn"] = {"folded": len(report.folded), "saved_bytes": report.saved_bytes}
    return graph, dataclasses.replace(problem, extra=extra)
