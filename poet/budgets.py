"""The budgets of a sweep: the forms a user writes, resolved against a problem.

    resolve_budgets(problem, 8)                    # 8 RAM budgets, minimum feasible .. peak
    resolve_budgets(problem, "64KiB:1MiB:12")      # a range
    resolve_budgets(problem, "256KiB,512KiB,0.9x") # a list (0.9x: of the store-all peak)
    resolve_runtime_budgets(problem, "2.5s,1.5x")  # seconds, multiples of the store-all time
    resolve_flash_budget(problem, "device", "rpi4")

Each function returns plain numbers (bytes, seconds) or raises ValueError naming the argument
and the forms it accepts. Sizes and multiples are read by `poet.units.parse_budget`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import solver
from solver import Problem

from .units import MAX_BYTES, parse_budget

__all__ = ["MAX_COUNT", "MAX_BUDGET_BYTES", "resolve_budgets", "resolve_runtime_budgets",
           "resolve_flash_budget"]

MAX_COUNT = 1000          # a budget count larger than this is surely a size typed without unit
# The largest RAM budget: 2**53 bytes (8 PiB) is still exact as a float, which is how plots, MILP
# coefficients and other tools' JSON readers take it; anything larger is a typo, not a device.
MAX_BUDGET_BYTES = MAX_BYTES   # 2**53, as poet.units takes sizes

_BUDGET_FORMS = ("an int N (N budgets from the minimum feasible to the store-all peak), "
                 "'start:stop:count' ('64KiB:1MiB:12', 'min:peak:8'), a comma list "
                 "('256KiB,512KiB,0.9x') or a list of sizes (ints are bytes there)")


def _one_budget(value, problem: Problem, lo: int, hi: int, where: str) -> int:
    """One RAM budget in bytes (1..MAX_BUDGET_BYTES): bytes, a size, a multiple of the store-all
    peak ("0.9x"), "min" (the minimum feasible RAM), "peak" (the store-all peak) or "device"."""
    n = _one_budget_unchecked(value, problem, lo, hi, where)
    if n > MAX_BUDGET_BYTES:
        raise ValueError(f"budgets: {where}: {_magnitude(n)} bytes is more than the largest "
                         f"budget, 2**53 bytes (8 PiB); give a size such as '256KiB'")
    if n < 1:
        raise ValueError(f"budgets: {where}: comes to {n} bytes; a RAM budget must be >= 1 byte")
    return n


def _magnitude(n: int) -> str:
    """A huge whole number short enough for a one-line message ("about 2**1329"); str() of an
    int above 4300 digits raises."""
    return str(n) if n < 10 ** 20 else f"about 2**{n.bit_length() - 1}"


def _one_budget_unchecked(value, problem: Problem, lo: int, hi: int, where: str) -> int:
    if isinstance(value, str):
        low = value.strip().lower()
        if low == "min":
            return lo
        if low in ("peak", "max"):
            return hi
    try:
        kind, number = parse_budget(value, "ram")
    except ValueError as e:
        raise ValueError(f"budgets: {where}: {e}") from None
    except ArithmeticError:       # decimal.Overflow from an exponent such as "1e1000000"
        raise ValueError(f"budgets: {where}: {value!r} overflows; the largest budget is 2**53 "
                         f"bytes (8 PiB)") from None
    if kind == "bytes":
        return int(number)
    if kind == "multiple":
        b = number * hi
        if not math.isfinite(b):
            raise ValueError(f"budgets: {where}: {value!r} of the store-all peak overflows; the "
                             f"largest budget is 2**53 bytes (8 PiB)")
        return math.floor(b)
    if kind == "device":
        from .costs import budget_profile   # reads TOML files: only when a budget says "device"
        return budget_profile(problem, what=f"budgets: {where}: 'device'").usable_ram_bytes
    raise ValueError(f"budgets: {where}: {value!r} is not a RAM budget; give {_BUDGET_FORMS}")


def _count(value, where: str) -> int:
    """A budget count: a whole number 2..MAX_COUNT (an int or a string of digits)."""
    if isinstance(value, str):
        value = value.strip()
        if not (value.isascii() and value.isdigit()):
            raise ValueError(f"budgets: {where}: the count must be a whole number >= 2, "
                             f"got {value!r}")
        value = int(value)
    if value < 2 or value > MAX_COUNT:
        raise ValueError(f"budgets: {where}: the count must be 2..{MAX_COUNT} (both ends are "
                         f"included), got {value} (for a single budget give a list such as "
                         f"['256KiB']; for a size in bytes write it with a unit, '{value}B')")
    return value


def _spaced(start: int, stop: int, n: int) -> list[int]:
    """n whole numbers evenly from start to stop, both included (repeats possible)."""
    return [start + round(k * (stop - start) / (n - 1)) for k in range(n)]


def _range(text: str, problem: Problem, lo: int, hi: int) -> list[int]:
    """'start:stop:count'."""
    parts = text.split(":")
    if len(parts) != 3:
        raise ValueError(f"budgets: {text!r}: a range is 'start:stop:count' (three fields), "
                         f"got {len(parts)}")
    a = _one_budget(parts[0], problem, lo, hi, "range start")
    b = _one_budget(parts[1], problem, lo, hi, "range stop")
    if b < a:
        raise ValueError(f"budgets: {text!r}: stop ({b} bytes) is below start ({a} bytes)")
    return _spaced(a, b, _count(parts[2], "range count"))


def resolve_budgets(problem: Problem, budgets) -> list[int]:
    """The RAM budgets of a sweep in bytes, ascending, without repeats.

    - an int N >= 2 (or a string of digits): N budgets evenly spaced from
      `solver.min_feasible_ram` to `solver.store_all_peak`, both included, rounded to whole bytes
      (fewer when the range holds fewer whole bytes; one when the two are equal);
    - "start:stop:count": count budgets evenly spaced from start to stop (each a size, a
      multiple "0.9x", "min" or "peak");
    - "a,b,c" or a list/tuple: those budgets (in a list an int is bytes; strings as above).

    Raises ValueError naming the argument and the accepted forms.
    """
    lo, hi = solver.min_feasible_ram(problem), solver.store_all_peak(problem)
    if isinstance(budgets, bool):
        raise ValueError(f"budgets: {budgets!r} is not a budget list; give {_BUDGET_FORMS}")
    if isinstance(budgets, int):
        out = _spaced(lo, hi, _count(budgets, "count"))
    elif isinstance(budgets, str):
        text = budgets.strip()
        if text.isascii() and text.isdigit():
            out = _spaced(lo, hi, _count(text, "count"))
        elif ":" in text:
            out = _range(text, problem, lo, hi)
        else:
            items = [t for t in text.split(",") if t.strip()]
            if not items:
                raise ValueError(f"budgets: {budgets!r} names no budget; give {_BUDGET_FORMS}")
            out = [_one_budget(t, problem, lo, hi, f"item {k} ({t.strip()!r})")
                   for k, t in enumerate(items)]
    elif isinstance(budgets, Sequence):
        if not budgets:
            raise ValueError(f"budgets is an empty list; give {_BUDGET_FORMS}")
        out = [_one_budget(b, problem, lo, hi, f"item {k} ({b!r})") for k, b in enumerate(budgets)]
    else:
        raise ValueError(f"budgets: {budgets!r} ({type(budgets).__name__}) is not a budget "
                         f"list; give {_BUDGET_FORMS}")
    return sorted(set(out))


def resolve_runtime_budgets(problem: Problem, runtime_budgets) -> list[float | None]:
    """Runtime budgets in seconds (None = no limit): None -> [None]; else one or a list (or a
    comma string) of seconds (2.5, "250ms") or multiples of the store-all time
    (`Problem.store_all_time_s`: "1.5x"), "none" for no limit. Ascending, no limit last,
    without repeats."""
    if runtime_budgets is None:
        return [None]
    if isinstance(runtime_budgets, str):
        items: list = [t for t in runtime_budgets.split(",") if t.strip()]
    elif isinstance(runtime_budgets, (int, float)) and not isinstance(runtime_budgets, bool):
        items = [runtime_budgets]
    elif isinstance(runtime_budgets, Sequence):
        items = list(runtime_budgets)
    else:
        raise ValueError(f"runtime_budgets: {runtime_budgets!r} is not a list of runtime budgets; "
                         f"give seconds (2.5, '250ms'), multiples of the store-all time ('1.5x') "
                         f"or None")
    if not items:
        raise ValueError("runtime_budgets is empty; give None for no runtime limit")
    out: set[float | None] = set()
    for k, v in enumerate(items):
        try:
            kind, number = parse_budget(v, "runtime")
        except ValueError as e:
            raise ValueError(f"runtime_budgets: item {k}: {e}") from None
        except ArithmeticError:   # decimal.Overflow from an exponent such as "1e1000000s"
            raise ValueError(f"runtime_budgets: item {k} ({v!r}) overflows; a runtime budget "
                             f"must be a finite number of seconds > 0 (or 'none')") from None
        if kind == "none":
            out.add(None)
            continue
        if kind == "seconds":
            secs = float(number)
        else:  # multiple
            base = problem.store_all_time_s
            if base <= 0:
                raise ValueError(f"runtime_budgets: item {k} ({v!r}): the store-all time is 0 s, "
                                 f"so a multiple of it is no budget; give seconds")
            secs = number * base
        # a decimal such as "1e400s" reads as inf seconds, "1e-300x" of a short step as 0
        if not math.isfinite(secs) or secs <= 0:
            raise ValueError(f"runtime_budgets: item {k} ({v!r}) comes to {secs} s; a runtime "
                             f"budget must be a finite number of seconds > 0 (or 'none')")
        out.add(secs)
    return sorted(out, key=lambda v: (v is None, v or 0.0))


def resolve_flash_budget(problem: Problem, flash_budget, device=None) -> int | None:
    """The flash budget in bytes (None: unlimited) from None, bytes, a size or "device" (the
    flash size of `device`, else of the device the problem was made for)."""
    kind, number = parse_budget(flash_budget, "flash")
    if kind == "device":
        from .costs import budget_profile
        number = budget_profile(problem, device, "flash_budget='device'").flash_bytes
    return number
