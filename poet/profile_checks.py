"""The checks a device profile's numbers go through (`poet.profiles`): each in its range,
naming the file, section and key of a value that is not, and the capacities of a shared flash
chip adding up."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from .units import parse_bytes

if TYPE_CHECKING:
    from .profiles import ProgramFlash

__all__ = ["ProfileError", "RANGES"]

_ERASE_KEYS = ("erase_block_bytes", "erase_s_per_block", "erase_j_per_block", "endurance_cycles")
_PF_NUMBERS = ("read_bytes_per_s", "read_j_per_byte", "write_bytes_per_s", "write_j_per_byte",
               "erase_s_per_block", "erase_j_per_block")
_PF_WHOLE = ("capacity_bytes", "reserved_bytes", "erase_block_bytes", "endurance_cycles")


class ProfileError(ValueError):
    """A profile is missing, malformed or has an impossible value; the message names the file,
    the section and the key."""


_BYTE_RATE = (1.0, 1e15, "B/s")
_POWER = (1e-9, 1e6, "W")
_LATENCY = (1e-12, 1e3, "s")
_J_PER_BYTE = (1e-18, 1.0, "J/B")
RANGES: dict[str, tuple[float, float, str]] = {
    "flops_per_s": (1.0, 1e18, "FLOP/s"),
    "active_power_w": _POWER,
    "joules_per_flop": (1e-18, 1e3, "J/FLOP"),
    "mem_bandwidth_bytes_per_s": _BYTE_RATE,
    "read_bytes_per_s": _BYTE_RATE,
    "write_bytes_per_s": _BYTE_RATE,
    "read_latency_s": _LATENCY,
    "write_latency_s": _LATENCY,
    "read_power_w": _POWER,
    "write_power_w": _POWER,
    "read_j_per_byte": _J_PER_BYTE,
    "write_j_per_byte": _J_PER_BYTE,
    "erase_s_per_block": (1e-9, 1e3, "s"),
    "erase_j_per_block": (1e-15, 1e3, "J"),
    "endurance_cycles": (1, 10**9, "cycles"),
    "ram_bytes": (1, 2**60, "bytes"),
    "ram_reserve_bytes": (0, 2**60, "bytes"),
    "flash_bytes": (1, 2**60, "bytes"),
    "element_bytes": (1, 16, "bytes"),
    "capacity_bytes": (1, 2**60, "bytes"),
    "reserved_bytes": (0, 2**60, "bytes"),
    "erase_block_bytes": (1, 2**40, "bytes"),
}

# section -> (required numeric keys, required size keys (bytes), other required keys)


# ---- validation helpers -------------------------------------------------------------------

def _size(n: int) -> str:
    """'1048576 B (1 MiB)': exact bytes, and a round binary size where there is one."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n} B ({n / scale:.4g} {unit})"
    return f"{n} B"


def _capacity_sum(pf: ProgramFlash, flash_bytes: int) -> str:
    text = f"capacity_bytes {_size(pf.capacity_bytes)} - reserved_bytes {_size(pf.reserved_bytes)}"
    if pf.shared_with_paging:
        text += (f" - the paging area [memory] flash_bytes {_size(flash_bytes)} "
                 f"(shared_with_paging = true)")
    return text


def _shown(value: Any) -> str:
    """repr(value), cut short when it is long (a TOML integer of 400 digits)."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:20]}...({len(text)} characters)"


def _range_text(key: str) -> str:
    lo, hi, unit = RANGES[key]
    return f"a number from {lo:g} to {hi:g} ({unit})"


def _check_number(label: str, section: str, key: str, value: Any) -> float:
    """A finite number within RANGES[key]."""
    lo, hi, _unit = RANGES[key]
    # compare before any float(): a TOML integer may have hundreds of digits
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            (isinstance(value, float) and not math.isfinite(value)) or not lo <= value <= hi:
        raise ProfileError(f"{label}: [{section}] {key} must be {_range_text(key)}, "
                           f"got {_shown(value)}")
    return float(value)


def _check_whole(label: str, section: str, key: str, value: Any) -> int:
    lo, hi, unit = RANGES[key]
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        what = "bytes" if unit == "bytes" else unit
        raise ProfileError(f"{label}: [{section}] {key} must be a whole number of {what} from "
                           f"{lo:g} to {hi:g}, got {_shown(value)}")
    return value


def _read_size(label: str, section: str, key: str, value: Any) -> int:
    """An int, an integral float, or a size string ("256KiB"), within RANGES[key]."""
    lo, hi, _unit = RANGES[key]
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ProfileError(f"{label}: [{section}] {key} must be a whole number of bytes from "
                           f"{lo:g} to {hi:g} or a size such as '256KiB', got {value!r}")
    try:
        n = parse_bytes(value, what=key)
    except ValueError as e:
        raise ProfileError(f"{label}: [{section}] {key} must be a whole number of bytes from "
                           f"{lo:g} to {hi:g} or a size such as '256KiB', got {value!r} "
                           f"({e})") from None
    return _check_whole(label, section, key, n)


def _check_program_flash(label: str, pf: ProgramFlash) -> None:
    """Types and ranges of a ProgramFlash (numbers are stored back as floats)."""
    section = "program_flash"
    if not isinstance(pf.storage, str) or not pf.storage.strip():
        raise ProfileError(f"{label}: [{section}] storage must be a non-empty string, "
                           f"got {pf.storage!r}")
    if not isinstance(pf.shared_with_paging, bool):
        raise ProfileError(f"{label}: [{section}] shared_with_paging must be true or false, "
                           f"got {pf.shared_with_paging!r}")
    given = [k for k in _ERASE_KEYS if getattr(pf, k) is not None]
    if given and len(given) != len(_ERASE_KEYS):
        missing = [k for k in _ERASE_KEYS if k not in given]
        raise ProfileError(f"{label}: [{section}] give all of {', '.join(_ERASE_KEYS)} or none "
                           f"of them; {', '.join(missing)} missing")
    for key in _PF_WHOLE:
        if getattr(pf, key) is not None:
            _check_whole(label, section, key, getattr(pf, key))
    for key in _PF_NUMBERS:
        if getattr(pf, key) is not None:
            object.__setattr__(pf, key, _check_number(label, section, key, getattr(pf, key)))
    if pf.reserved_bytes >= pf.capacity_bytes:
        raise ProfileError(f"{label}: [{section}] reserved_bytes ({_size(pf.reserved_bytes)}) "
                           f"must be less than capacity_bytes ({_size(pf.capacity_bytes)})")
    if pf.has_erase_figures and pf.erase_block_bytes > pf.capacity_bytes:
        raise ProfileError(f"{label}: [{section}] erase_block_bytes "
                           f"({_size(pf.erase_block_bytes)}) must not exceed capacity_bytes "
                           f"({_size(pf.capacity_bytes)})")


def _check_capacity(label: str, pf: ProgramFlash, flash_bytes: int) -> None:
    """Paging and weights on one chip: their capacities add up against it."""
    used = pf.reserved_bytes + (flash_bytes if pf.shared_with_paging else 0)
    if used >= pf.capacity_bytes:
        raise ProfileError(
            f"{label}: [program_flash] capacity_bytes {_size(pf.capacity_bytes)} leaves no room "
            f"for weights: reserved_bytes {_size(pf.reserved_bytes)} + the paging area [memory] "
            f"flash_bytes {_size(flash_bytes)} (shared_with_paging = true) = {_size(used)}; "
            f"make flash_bytes or reserved_bytes smaller, or set shared_with_paging = false "
            f"if paging goes to another storage")
