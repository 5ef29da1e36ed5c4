"""One option of a zoo model (`poet.zoo`): its declared type, default and allowed values, and how
it reads a value or its text ("0.35", "128", "true") from the command line."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

__all__ = ["Option"]

_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


@dataclass(frozen=True)
class Option:
    """One option of a zoo model: its type, default and allowed values.

    ``type`` is ``int``, ``float``, ``bool`` or ``str``; ``low``/``high`` bound numbers
    (inclusive), ``multiple_of`` restricts ints, ``choices`` lists the allowed strings.
    ``aliases`` are other names accepted for it (older spellings). ``parse`` turns a value
    or its text (``"0.35"``, ``"128"``, ``"true"``) into the declared type.
    """

    name: str
    type: type
    default: Any
    help: str
    low: float | None = None
    high: float | None = None
    multiple_of: int | None = None
    choices: tuple[str, ...] | None = None
    aliases: tuple[str, ...] = ()

    def allowed(self) -> str:
        """The allowed values in words: "an int in 1..8", "one of cifar, imagenet"."""
        if self.type is bool:
            return "true or false"
        if self.choices is not None:
            return "one of " + ", ".join(self.choices)
        text = {int: "an int", float: "a number", str: "a string"}[self.type]
        if self.multiple_of:
            text += f" that is a multiple of {self.multiple_of}"
        def num(v):
            return f"{int(v)}" if float(v).is_integer() and abs(v) < 1e15 else f"{v:g}"
        if self.low is not None and self.high is not None:
            text += f" in {num(self.low)}..{num(self.high)}"
        elif self.low is not None:
            text += f" >= {num(self.low)}"
        elif self.high is not None:
            text += f" <= {num(self.high)}"
        return text

    def describe(self) -> str:
        """One line for a command's help: ``width (float, default 0.5; a number in 0.1..2): ...``."""
        default = str(self.default).lower() if self.type is bool else self.default
        return f"{self.name} ({self.type.__name__}, default {default}; {self.allowed()}): {self.help}"

    def parse(self, value: Any) -> Any:
        """``value`` (or its text) as the declared type; ValueError if it is not allowed."""
        parsed = self._convert(value)
        ok = parsed is not None
        if ok and self.choices is not None:
            ok = parsed in self.choices
        if ok and self.type in (int, float):
            ok = ((self.low is None or parsed >= self.low) and (self.high is None or parsed <= self.high)
                  and (not self.multiple_of or parsed % self.multiple_of == 0))
        if not ok:
            raise ValueError(f"option {self.name!r} must be {self.allowed()}, got {value!r}")
        return parsed

    def _convert(self, value: Any) -> Any:
        """The value as the declared type, or None when it is not of that type."""
        if isinstance(value, str):
            text = value.strip()
            if self.type is bool:
                low = text.lower()
                return True if low in _TRUE else False if low in _FALSE else None
            if self.type is int:
                return int(text) if re.fullmatch(r"[+-]?\d+", text) else None
            if self.type is float:
                try:
                    number = float(text)
                except ValueError:
                    return None
                return number if math.isfinite(number) else None
            return text
        if self.type is bool:
            return value if isinstance(value, bool) else None
        if isinstance(value, bool):
            return None
        if self.type is int:
            return value if isinstance(value, int) else None
        if self.type is float:
            return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None
        return None
