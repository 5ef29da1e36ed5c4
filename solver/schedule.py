"""A schedule: the instruction list that runs one training step.

Instructions are ``(op, node_id)`` with op one of compute, page_out, page_in, free, drop_flash.
What they mean and cost is defined by `solver.simulate` alone. JSON form
(``"format": "poet-schedule/1"``): docs/formats.md, "The schedule file"; unknown top-level fields
(for instance the model a schedule was made for) are kept in `extra` and written back.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

from .errors import ScheduleError
from .problem import read_json, write_json_atomic

FORMAT = "poet-schedule/1"
OPS = ("compute", "page_out", "page_in", "free", "drop_flash")
_TOP_FIELDS = ("format", "problem_fingerprint", "strategy", "ram_budget_bytes", "instructions",
               "predicted")


@dataclass
class Schedule:
    """An instruction list tied (by fingerprint) to the problem it was made for."""

    instructions: list[tuple[str, int]]
    problem_fingerprint: str | None = None
    strategy: str = "custom"
    ram_budget_bytes: int | None = None
    predicted: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        self.instructions = [_instruction(ins, k) for k, ins in enumerate(self.instructions)]

    def __len__(self) -> int:
        return len(self.instructions)

    def count(self, op: str) -> int:
        """How many instructions have this op."""
        if op not in OPS:
            raise ValueError(f"op {op!r} is not one of {', '.join(OPS)}")
        return sum(1 for o, _ in self.instructions if o == op)

    def to_dict(self) -> dict:
        d = dict(self.extra)
        d.update({
            "format": FORMAT,
            "problem_fingerprint": self.problem_fingerprint,
            "strategy": self.strategy,
            "ram_budget_bytes": self.ram_budget_bytes,
            "instructions": [[op, i] for op, i in self.instructions],
            "predicted": dict(self.predicted),
        })
        return d

    @classmethod
    def from_dict(cls, d: Any) -> "Schedule":
        if not isinstance(d, dict):
            raise ScheduleError(f"a schedule must be a JSON object, got {type(d).__name__}")
        fmt = d.get("format")
        if fmt != FORMAT:
            raise ScheduleError(f"format is {fmt!r}; a schedule file must say {FORMAT!r}")
        fp = d.get("problem_fingerprint")
        if fp is not None and (not isinstance(fp, str) or not fp.startswith("sha256:")):
            raise ScheduleError(f"problem_fingerprint must be 'sha256:<hex>' or null, got {fp!r}")
        strategy = d.get("strategy", "custom")
        if not isinstance(strategy, str):
            raise ScheduleError(f"strategy must be a string, got {strategy!r}")
        budget = d.get("ram_budget_bytes")
        if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int)
                                   or budget < 0):
            raise ScheduleError(f"ram_budget_bytes must be a whole number >= 0 or null, got {budget!r}")
        ins = d.get("instructions")
        if not isinstance(ins, list):
            raise ScheduleError("instructions is missing or not a list of [op, node_id] pairs")
        predicted = d.get("predicted") or {}
        if not isinstance(predicted, dict) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                for v in predicted.values()):
            raise ScheduleError("predicted must be an object of finite numbers")
        return cls(instructions=ins, problem_fingerprint=fp, strategy=strategy,
                   ram_budget_bytes=budget, predicted=predicted,
                   extra={k: v for k, v in d.items() if k not in _TOP_FIELDS})

    def save(self, path: str | os.PathLike) -> None:
        """Write the JSON file atomically."""
        write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Schedule":
        return cls.from_dict(read_json(path, what="schedule"))


def _instruction(ins: Any, k: int) -> tuple[str, int]:
    if not isinstance(ins, (list, tuple)) or len(ins) != 2:
        raise ScheduleError(f"instructions[{k}] must be an [op, node_id] pair, got {ins!r}")
    op, i = ins
    if op not in OPS:
        raise ScheduleError(f"instructions[{k}]: op {op!r} is not one of {', '.join(OPS)}")
    if isinstance(i, bool) or not isinstance(i, int) or i < 0:
        raise ScheduleError(f"instructions[{k}]: node id must be a whole number >= 0, got {i!r}")
    return (op, i)
