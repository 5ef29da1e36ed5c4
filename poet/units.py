"""Sizes, durations and energies: parsing what people type and formatting what they read.

Contracts:

- `parse_bytes("1.5MiB") -> 1572864`. Accepts a whole number of bytes (int, or a float with no
  fractional part) or a string ``<number>[ ]<unit>`` with the unit one of B, KB, KiB, MB, MiB,
  GB, GiB, TB, TiB (case-insensitive; KB/MB/GB/TB are powers of 1000, KiB/MiB/GiB/TiB powers of
  1024; no unit means bytes). Decimals are allowed; the result is rounded down to whole bytes
  (exact decimal arithmetic, so "0.29KB" is 290). Anything else raises ValueError naming the
  accepted forms.
- `parse_seconds("2.5s") -> 2.5`. A number, or a string with unit s, ms, us/µs, min or h.
- `parse_budget(value, what)` -> ``(kind, number)``: the one parser for RAM, flash and runtime
  budgets, shared by `poet.costs.make_problem` and the command line. Kinds:

  ============  ==========================  ==========================================
  kind          number                      written as
  ============  ==========================  ==========================================
  "none"        None                        None, "none" (no limit)
  "bytes"       int > 0                     262144, "256KiB", "2MB"   (ram, flash)
  "device"      None                        "device": the profile's RAM / flash size
  "multiple"    float > 0                   "0.5x": a multiple of the store-all peak RAM
                                            (ram) or of the store-all time (runtime)
  "seconds"     float > 0                   2.5, "2.5s", "250ms"      (runtime)
  ============  ==========================  ==========================================

  "x" is rejected for flash (store-all writes nothing to flash, so there is nothing to take a
  multiple of) and "device" for runtime.
- `format_bytes`, `format_energy`, `format_time`: short human-readable strings with three
  significant digits ("256.0 KiB" keeps one decimal for bytes).
"""

from __future__ import annotations

import math
import re
from decimal import ROUND_FLOOR, Decimal, InvalidOperation

__all__ = ["parse_bytes", "parse_seconds", "parse_budget", "format_bytes", "format_energy",
           "format_time", "BYTE_UNITS", "BUDGET_KINDS"]

# unit (lower case) -> bytes
BYTE_UNITS: dict[str, int] = {
    "": 1, "b": 1,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}
_SECOND_UNITS: dict[str, Decimal] = {
    "": Decimal(1), "s": Decimal(1), "ms": Decimal("1e-3"), "us": Decimal("1e-6"),
    "µs": Decimal("1e-6"), "min": Decimal(60), "h": Decimal(3600),
}
BUDGET_KINDS = ("none", "bytes", "device", "multiple", "seconds")
_WHATS = ("ram", "flash", "runtime")

_NUMBER_UNIT = re.compile(
    r"^\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*([^\d\s.+-]*)\s*$")
_MULTIPLE = re.compile(r"^\s*((?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*[xX]\s*$")

_BYTES_FORMS = ("a whole number of bytes (262144) or a size such as '256KiB', '1.5MiB', '2MB', "
                "'1000' (units B, KB, KiB, MB, MiB, GB, GiB, TB, TiB; case-insensitive)")


def _split(text: str) -> tuple[Decimal, str] | None:
    m = _NUMBER_UNIT.match(text)
    if not m:
        return None
    try:
        number = Decimal(m.group(1))
    except InvalidOperation:  # pragma: no cover - the regex only lets valid decimals through
        return None
    return number, m.group(2).lower()


MAX_BYTES = 2**53   # 8 PiB: larger sizes are not exact in floating point (and no device has them)
MAX_SECONDS = 1e9   # about 32 years


def check_max_bytes(n: int, what: str) -> int:
    """`n`, or ValueError naming `what` if it exceeds MAX_BYTES."""
    if n > MAX_BYTES:
        shown = f"{n:.3g}" if n < 10**300 else f"about 1e{len(str(n)) - 1}"
        raise ValueError(f"{what}: {shown} bytes is more than the largest size poet takes "
                         f"(2**53 B = 8 PiB)")
    return n


def parse_bytes(value: str | int, *, what: str = "size") -> int:
    """Bytes from an int or a size string such as "256KiB" (see the module docstring).

    Raises ValueError naming `what` and the accepted forms for anything else, including negative
    sizes, NaN, infinities, booleans and sizes above MAX_BYTES (8 PiB).
    """
    return check_max_bytes(_parse_bytes(value, what), what)


def _parse_bytes(value: str | int, what: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{what}: {value!r} is not a size; give {_BYTES_FORMS}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{what} must not be negative, got {value}")
        return value
    if isinstance(value, float):
        if not math.isfinite(value) or value < 0 or not value.is_integer():
            raise ValueError(f"{what}: {value!r} is not a whole, non-negative number of bytes; "
                             f"give {_BYTES_FORMS}")
        return int(value)
    if not isinstance(value, str):
        raise ValueError(f"{what}: {value!r} ({type(value).__name__}) is not a size; "
                         f"give {_BYTES_FORMS}")
    parts = _split(value)
    if parts is None or parts[1] not in BYTE_UNITS:
        raise ValueError(f"{what}: cannot read {value!r} as a size; give {_BYTES_FORMS}")
    number, unit = parts
    if number < 0:
        raise ValueError(f"{what} must not be negative, got {value!r}")
    try:
        return int((number * BYTE_UNITS[unit]).to_integral_value(rounding=ROUND_FLOOR))
    except ArithmeticError:   # decimal.Overflow: an exponent such as "1e1000000"
        raise ValueError(f"{what}: {value!r} is more than the largest size poet takes "
                         f"(2**53 B = 8 PiB)") from None


def parse_seconds(value: str | int | float, *, what: str = "duration") -> float:
    """Seconds from a number or a string such as "2.5s", "250ms", "3min", "1h" (must be >= 0)."""
    forms = "seconds as a number (2.5) or a string with unit s, ms, us, min or h ('2.5s', '250ms')"
    if isinstance(value, bool):
        raise ValueError(f"{what}: {value!r} is not a duration; give {forms}")
    if isinstance(value, (int, float)):
        try:
            v = float(value)
        except OverflowError:
            v = math.inf
        if not math.isfinite(v) or v < 0 or v > MAX_SECONDS:
            raise ValueError(f"{what} must be a number of seconds from 0 to {MAX_SECONDS:.0e}, "
                             f"got {value!r}")
        return v
    if not isinstance(value, str):
        raise ValueError(f"{what}: {value!r} ({type(value).__name__}) is not a duration; "
                         f"give {forms}")
    parts = _split(value)
    if parts is None or parts[1] not in _SECOND_UNITS:
        raise ValueError(f"{what}: cannot read {value!r} as a duration; give {forms}")
    number, unit = parts
    if number < 0:
        raise ValueError(f"{what} must not be negative, got {value!r}")
    try:
        secs = number * _SECOND_UNITS[unit]
        too_long = secs > MAX_SECONDS
    except ArithmeticError:   # decimal.Overflow
        too_long = True
    if too_long:
        raise ValueError(f"{what}: {value!r} is more than the longest duration poet takes "
                         f"({MAX_SECONDS:.0e} s)")
    return float(secs)


def parse_budget(value, what: str = "ram") -> tuple[str, int | float | None]:
    """Read a RAM, flash or runtime budget into ``(kind, number)`` (table in the module docstring).

    `what` is "ram", "flash" or "runtime". Raises ValueError whose message names the budget and
    lists the forms it accepts.
    """
    if what not in _WHATS:
        raise ValueError(f"what must be one of {', '.join(_WHATS)}, got {what!r}")
    label = {"ram": "RAM budget", "flash": "flash budget", "runtime": "runtime budget"}[what]
    if what == "runtime":
        forms = ("None (no limit), seconds (2.5, '2.5s', '250ms') or a multiple of the "
                 "store-all time ('1.5x')")
    elif what == "ram":
        forms = ("None (no limit), bytes (262144, '256KiB', '1.5MiB', '2MB'), 'device' (the "
                 "profile's RAM size) or a multiple of the store-all peak ('0.5x')")
    else:
        forms = ("None (no limit), bytes (1048576, '1MiB', '4GB') or 'device' (the profile's "
                 "flash size)")

    if value is None:
        return ("none", None)
    if isinstance(value, bool):
        raise ValueError(f"{label}: {value!r} is not a budget; give {forms}")
    if isinstance(value, str):
        text = value.strip()
        low = text.lower()
        if low in ("none", "null", "unlimited", ""):
            return ("none", None)
        if low == "device":
            if what == "runtime":
                raise ValueError(f"{label}: 'device' only applies to RAM and flash budgets; "
                                 f"give {forms}")
            return ("device", None)
        m = _MULTIPLE.match(text)
        if m:
            if what == "flash":
                raise ValueError(
                    f"{label}: {value!r}: a multiple ('x') is not meaningful for flash (the "
                    f"store-all schedule writes nothing to flash); give {forms}")
            mult = float(m.group(1))
            if not math.isfinite(mult) or mult <= 0 or mult > 1e6:
                raise ValueError(f"{label}: the multiple must be > 0 and at most 1e6, "
                                 f"got {value!r}")
            return ("multiple", mult)
        if what == "runtime":
            try:
                secs = parse_seconds(text, what=label)
            except ValueError:
                raise ValueError(f"{label}: cannot read {value!r}; give {forms}") from None
            if secs <= 0:
                raise ValueError(f"{label} must be > 0 seconds, got {value!r}")
            return ("seconds", secs)
        try:
            n = _parse_bytes(text, label)
        except ValueError:
            raise ValueError(f"{label}: cannot read {value!r}; give {forms}") from None
        if n <= 0:
            raise ValueError(f"{label} must be > 0 bytes, got {value!r}")
        return ("bytes", check_max_bytes(n, label))
    if isinstance(value, (int, float)):
        if what == "runtime":
            try:
                secs = float(value)
            except OverflowError:
                secs = math.inf
            if not math.isfinite(secs) or secs <= 0 or secs > MAX_SECONDS:
                raise ValueError(f"{label} must be a number of seconds > 0 and at most "
                                 f"{MAX_SECONDS:.0e}, got {value!r}")
            return ("seconds", secs)
        if isinstance(value, float) and (not math.isfinite(value) or not value.is_integer()):
            hint = (f" (for a multiple of the store-all peak write '{value}x')"
                    if what == "ram" and 0 < value < 16 else "")
            raise ValueError(f"{label}: {value!r} is not a whole number of bytes{hint}; "
                             f"give {forms}")
        n = int(value)
        if n <= 0:
            raise ValueError(f"{label} must be > 0 bytes, got {value!r}")
        return ("bytes", check_max_bytes(n, label))
    raise ValueError(f"{label}: {value!r} ({type(value).__name__}) is not a budget; give {forms}")


# ---- formatting ------------------------------------------------------------------------------

def _three_digits(v: float) -> str:
    """v (0 <= v < 1000) with three significant digits and no exponent."""
    if round(v, 2) < 10:
        return f"{v:.2f}"
    if round(v, 1) < 100:
        return f"{v:.1f}"
    return f"{v:.0f}"


def _scaled(value: float, units: list[tuple[float, str]], zero: str) -> str:
    """`value` in the largest unit (scale, name) with |value| >= scale (units sorted ascending)."""
    if not math.isfinite(value):
        return f"{value} {zero}"
    if value == 0:
        return f"0 {zero}"
    sign = "-" if value < 0 else ""
    a = abs(value)
    idx = 0
    for k, (scale, _) in enumerate(units):
        if a >= scale:
            idx = k
    scale, name = units[idx]
    text = _three_digits(a / scale)
    # rounding may carry into the next unit: 999.7 µJ -> "1000 µJ" -> "1.00 mJ"
    if float(text) >= 1000 and idx + 1 < len(units):
        scale, name = units[idx + 1]
        text = _three_digits(a / scale)
    return f"{sign}{text} {name}"


def format_bytes(n: int | float) -> str:
    """Binary units with one decimal: 512 -> "512 B", 262144 -> "256.0 KiB"."""
    if isinstance(n, bool) or not isinstance(n, (int, float)) or not math.isfinite(n):
        raise ValueError(f"format_bytes needs a finite number of bytes, got {n!r}")
    sign = "-" if n < 0 else ""
    a = abs(n)
    if a < 1024:
        return f"{sign}{int(a) if float(a).is_integer() else a} B"
    units = [(2**10, "KiB"), (2**20, "MiB"), (2**30, "GiB"), (2**40, "TiB")]
    idx = max(k for k, (scale, _) in enumerate(units) if a >= scale)
    if round(a / units[idx][0], 1) >= 1024 and idx + 1 < len(units):
        idx += 1  # 1048575 B is "1.0 MiB", not "1024.0 KiB"
    scale, unit = units[idx]
    return f"{sign}{a / scale:.1f} {unit}"


def format_energy(joules: float) -> str:
    """Three significant digits in nJ, µJ, mJ, J or kJ: 0.00123 -> "1.23 mJ"."""
    return _scaled(float(joules), [(1e-9, "nJ"), (1e-6, "µJ"), (1e-3, "mJ"), (1.0, "J"),
                                   (1e3, "kJ")], "J")


def format_time(seconds: float) -> str:
    """Three significant digits in ns, µs, ms, s, min or h: 0.0123 -> "12.3 ms"."""
    s = float(seconds)
    if math.isfinite(s) and abs(s) >= 3600:
        return _scaled(s, [(3600.0, "h")], "s")
    if math.isfinite(s) and abs(s) >= 60:
        return _scaled(s, [(60.0, "min")], "s")
    return _scaled(s, [(1e-9, "ns"), (1e-6, "µs"), (1e-3, "ms"), (1.0, "s")], "s")
