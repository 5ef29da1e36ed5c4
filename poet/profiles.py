"""Device profiles: what a device's compute, RAM and paging storage cost.

A profile is a TOML file. The built-in ones live in the repo's ``profiles/`` folder, shipped in
the wheel as the package ``poet.profiles_data``; a user's own file can be given by path.

Schema (every key is required unless marked optional; units are in the key names; every
number must be a finite number > 0; sizes may also be strings such as "256KiB" or "4GB"; a key
that is not listed here is an error, so a misspelt unit cannot pass silently)::

    name = "nrf52840"            # [a-z0-9_]+ ; a built-in's name equals its file name
    description = "Nordic nRF52840, Arm Cortex-M4F @ 64 MHz"
    aliases = ["m4"]             # optional: other names load_profile() accepts

    [compute]
    flops_per_s = 6.37e6         # FLOP/s sustained on training kernels
    active_power_w = 0.011       # W drawn while computing          } give exactly
    # joules_per_flop = 1.7e-9   # J/FLOP (= active_power_w / flops_per_s) } one of the two
    mem_bandwidth_bytes_per_s = 2.56e8   # RAM bandwidth, the roofline's memory roof
    source = "..."               # where the numbers come from (datasheet, paper, measurement)

    [memory]
    ram_bytes = 262144           # RAM for the training step (static bytes + activations)
    flash_bytes = "4GB"          # capacity of the paging storage described in [flash]
    element_bytes = 4            # bytes per tensor element the device computes in (whole number)
    source = "..."

    [flash]                      # the paging storage: internal flash, NOR chip, SD card, SSD
    storage = "microSD card over SPI"
    read_bytes_per_s = 4.62e6    # page-in bandwidth
    write_bytes_per_s = 4.44e6   # page-out bandwidth
    read_latency_s = 1.09e-4     # fixed cost of one page-in
    write_latency_s = 1.13e-4    # fixed cost of one page-out
    read_power_w = 0.33          # W drawn while paging in
    write_power_w = 0.33         # W drawn while paging out
    source = "..."

On a loaded `Profile` the keys keep their names, except that those of [flash] gain a "flash_"
prefix (``profile.flash_read_bytes_per_s``, ``profile.flash_storage``), and
``profile.joules_per_flop`` is derived. Names and aliases are looked up case-insensitively.

How `poet.costs` turns these into node costs is documented there (compute energy is
active_power_w times the roofline time; paging energy is the read/write power times the paging
time). Errors are `ProfileError` (a ValueError) whose message names the file, the section and
the key, e.g. ``nrf52840.toml: [flash] read_bytes_per_s must be a positive number, got -3``.
"""

from __future__ import annotations

import importlib.resources
import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .units import parse_bytes

__all__ = ["Profile", "ProfileError", "load_profile", "list_profiles", "profile_names"]

_PACKAGE = "poet.profiles_data"
_NAME = re.compile(r"^[a-z0-9_]+$")

# section -> (required numeric keys, required size keys (bytes), other required keys)
_SCHEMA: dict[str, dict[str, tuple[str, ...]]] = {
    "compute": {"numbers": ("flops_per_s", "mem_bandwidth_bytes_per_s"), "sizes": (),
                "strings": ("source",)},
    "memory": {"numbers": (), "sizes": ("ram_bytes", "flash_bytes", "element_bytes"),
               "strings": ("source",)},
    "flash": {"numbers": ("read_bytes_per_s", "write_bytes_per_s", "read_latency_s",
                          "write_latency_s", "read_power_w", "write_power_w"), "sizes": (),
              "strings": ("storage", "source")},
}
_POWER_KEYS = ("active_power_w", "joules_per_flop")  # [compute]: exactly one of these
_TOP_KEYS = ("name", "description", "aliases", "compute", "memory", "flash")

# Profile field -> (section, key in the TOML file). Keys of [flash] get a "flash_" prefix on the
# Profile, so that profile.flash_read_bytes_per_s says what it is without its section.
_FIELD_KEYS = {
    "flops_per_s": ("compute", "flops_per_s"),
    "active_power_w": ("compute", "active_power_w"),
    "mem_bandwidth_bytes_per_s": ("compute", "mem_bandwidth_bytes_per_s"),
    "ram_bytes": ("memory", "ram_bytes"),
    "flash_bytes": ("memory", "flash_bytes"),
    "element_bytes": ("memory", "element_bytes"),
    "flash_read_bytes_per_s": ("flash", "read_bytes_per_s"),
    "flash_write_bytes_per_s": ("flash", "write_bytes_per_s"),
    "flash_read_latency_s": ("flash", "read_latency_s"),
    "flash_write_latency_s": ("flash", "write_latency_s"),
    "flash_read_power_w": ("flash", "read_power_w"),
    "flash_write_power_w": ("flash", "write_power_w"),
}
_WHOLE_FIELDS = ("ram_bytes", "flash_bytes", "element_bytes")


class ProfileError(ValueError):
    """A profile is missing, malformed or has an impossible value; the message names the file,
    the section and the key."""


@dataclass(frozen=True)
class Profile:
    """One device. Units: FLOP/s, W, bytes, bytes/s, s. All numbers are finite and > 0.

    Attributes are the TOML keys, with the keys of [flash] prefixed "flash_" (the TOML's
    [flash] read_bytes_per_s is `flash_read_bytes_per_s`).

    `joules_per_flop` is derived (active_power_w / flops_per_s). `sources` maps a section name
    ("compute", "memory", "flash") to where its numbers come from. `path` is the file it was read
    from (None when built in code).
    """

    name: str
    description: str
    flops_per_s: float
    active_power_w: float
    mem_bandwidth_bytes_per_s: float
    ram_bytes: int
    flash_bytes: int
    element_bytes: int
    flash_storage: str
    flash_read_bytes_per_s: float
    flash_write_bytes_per_s: float
    flash_read_latency_s: float
    flash_write_latency_s: float
    flash_read_power_w: float
    flash_write_power_w: float
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)
    aliases: tuple[str, ...] = ()
    path: str | None = field(default=None, compare=False)

    def __post_init__(self):
        label = self.path or f"profile {self.name!r}"
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ProfileError(f"{label}: name must be lower-case letters, digits and '_', "
                               f"got {self.name!r}")
        for attr, (section, key) in _FIELD_KEYS.items():
            value = getattr(self, attr)
            if attr in _WHOLE_FIELDS:
                _check_whole(label, section, key, value)
            else:
                object.__setattr__(self, attr, _check_positive(label, section, key, value))
        object.__setattr__(self, "aliases", tuple(self.aliases))
        object.__setattr__(self, "sources", dict(self.sources))

    @property
    def joules_per_flop(self) -> float:
        """Energy of one FLOP when compute-bound: active_power_w / flops_per_s."""
        return self.active_power_w / self.flops_per_s

    def to_dict(self) -> dict[str, Any]:
        """The profile in the TOML file's layout (plus the derived joules_per_flop), for JSON."""
        return {
            "name": self.name, "description": self.description, "aliases": list(self.aliases),
            "compute": {"flops_per_s": self.flops_per_s, "active_power_w": self.active_power_w,
                        "joules_per_flop": self.joules_per_flop,
                        "mem_bandwidth_bytes_per_s": self.mem_bandwidth_bytes_per_s,
                        "source": self.sources.get("compute", "")},
            "memory": {"ram_bytes": self.ram_bytes, "flash_bytes": self.flash_bytes,
                       "element_bytes": self.element_bytes,
                       "source": self.sources.get("memory", "")},
            "flash": {"storage": self.flash_storage,
                      "read_bytes_per_s": self.flash_read_bytes_per_s,
                      "write_bytes_per_s": self.flash_write_bytes_per_s,
                      "read_latency_s": self.flash_read_latency_s,
                      "write_latency_s": self.flash_write_latency_s,
                      "read_power_w": self.flash_read_power_w,
                      "write_power_w": self.flash_write_power_w,
                      "source": self.sources.get("flash", "")},
        }


# ---- validation helpers -------------------------------------------------------------------

def _check_positive(label: str, section: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not math.isfinite(value) or value <= 0:
        raise ProfileError(f"{label}: [{section}] {key} must be a positive number, got {value!r}")
    return float(value)


def _check_whole(label: str, section: str, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ProfileError(f"{label}: [{section}] {key} must be a whole number of bytes > 0, "
                           f"got {value!r}")
    return value


def _read_size(label: str, section: str, key: str, value: Any) -> int:
    """An int, an integral float, or a size string ("256KiB"), > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ProfileError(f"{label}: [{section}] {key} must be a whole number of bytes > 0 or "
                           f"a size such as '256KiB', got {value!r}")
    try:
        n = parse_bytes(value, what=key)
    except ValueError as e:
        raise ProfileError(f"{label}: [{section}] {key} must be a whole number of bytes > 0 or "
                           f"a size such as '256KiB', got {value!r} ({e})") from None
    return _check_whole(label, section, key, n)


def _read_string(label: str, where: str, key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ProfileError(f"{label}: {where}{key} must be a non-empty string, got {value!r}")
    return value.strip()


def _unknown_keys(label: str, where: str, table: Mapping, allowed) -> None:
    extra = sorted(set(table) - set(allowed))
    if extra:
        raise ProfileError(f"{label}: {where}unknown key(s) {', '.join(extra)}; allowed: "
                           f"{', '.join(allowed)} (units are part of the key names)")


def profile_from_dict(data: Mapping[str, Any], *, label: str, path: str | None = None) -> Profile:
    """Build a Profile from parsed TOML (`label` names the file in error messages)."""
    if not isinstance(data, Mapping):
        raise ProfileError(f"{label}: a profile must be a TOML table, got {type(data).__name__}")
    _unknown_keys(label, "", data, _TOP_KEYS)
    for key in ("name", "description", "compute", "memory", "flash"):
        if key not in data:
            what = f"the [{key}] section" if key in _SCHEMA else f"key {key}"
            raise ProfileError(f"{label}: {what} is missing")
    name = _read_string(label, "", "name", data["name"])
    if not _NAME.match(name):
        raise ProfileError(f"{label}: name must be lower-case letters, digits and '_', "
                           f"got {name!r}")
    description = _read_string(label, "", "description", data["description"])
    aliases = data.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(a, str) and _NAME.match(a)
                                                for a in aliases):
        raise ProfileError(f"{label}: aliases must be a list of lower-case names, got {aliases!r}")

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for section, spec in _SCHEMA.items():
        table = data[section]
        if not isinstance(table, Mapping):
            raise ProfileError(f"{label}: [{section}] must be a table (a [{section}] section), "
                               f"got {table!r}")
        allowed = spec["numbers"] + spec["sizes"] + spec["strings"]
        if section == "compute":
            allowed = allowed + _POWER_KEYS
        _unknown_keys(label, f"[{section}] ", table, allowed)
        for key in spec["numbers"] + spec["sizes"] + spec["strings"]:
            if key not in table:
                raise ProfileError(f"{label}: [{section}] {key} is missing")
        prefix = "flash_" if section == "flash" else ""
        for key in spec["numbers"]:
            values[prefix + key] = _check_positive(label, section, key, table[key])
        for key in spec["sizes"]:
            values[prefix + key] = _read_size(label, section, key, table[key])
        for key in spec["strings"]:
            text = _read_string(label, f"[{section}] ", key, table[key])
            if key == "source":
                sources[section] = text
            else:
                values[prefix + key] = text
        if section == "compute":
            given = [k for k in _POWER_KEYS if k in table]
            if len(given) != 1:
                raise ProfileError(
                    f"{label}: [compute] needs exactly one of active_power_w (W) or "
                    f"joules_per_flop (J/FLOP), got {', '.join(given) if given else 'neither'}")
            v = _check_positive(label, section, given[0], table[given[0]])
            values["active_power_w"] = v if given[0] == "active_power_w" \
                else v * values["flops_per_s"]
    return Profile(name=name, description=description, sources=sources, aliases=tuple(aliases),
                   path=path, **values)


def _load_text(text: str, *, label: str, path: str | None) -> Profile:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ProfileError(f"{label}: not valid TOML: {e}") from None
    return profile_from_dict(data, label=label, path=path)


# ---- built-ins ------------------------------------------------------------------------------

def _builtin_files() -> dict[str, Any]:
    """stem -> Traversable of every built-in profile TOML.

    Found through importlib.resources on `poet.profiles_data` (works from a wheel, an editable
    install and a source checkout with the package mapped); falls back to the ``profiles/``
    folder next to the ``poet/`` package when the resource package cannot be imported.
    """
    roots = []
    try:
        roots.append(importlib.resources.files(_PACKAGE))
    except (ModuleNotFoundError, ImportError, TypeError):
        pass
    roots.append(Path(__file__).resolve().parent.parent / "profiles")
    for root in roots:
        try:
            files = {e.name[:-5]: e for e in root.iterdir()
                     if e.name.endswith(".toml") and e.is_file()}
        except (FileNotFoundError, NotADirectoryError, OSError):
            continue
        if files:
            return files
    return {}


def _load_builtin(stem: str, entry) -> Profile:
    label = f"{stem}.toml"
    profile = _load_text(entry.read_text(encoding="utf-8"), label=label, path=str(entry))
    if profile.name != stem:
        raise ProfileError(f"{label}: name is {profile.name!r}; a built-in profile's name must "
                           f"equal its file name ({stem!r})")
    return profile


def list_profiles() -> list[Profile]:
    """Every built-in profile, sorted by name. A broken built-in raises ProfileError."""
    return sorted((_load_builtin(stem, e) for stem, e in _builtin_files().items()),
                  key=lambda p: p.name)


def profile_names() -> list[str]:
    """Names of the built-in profiles, sorted."""
    return sorted(_builtin_files())


def _looks_like_path(text: str) -> bool:
    return text.endswith(".toml") or "/" in text or os.sep in text


def load_profile(name_or_path: str | os.PathLike | Profile) -> Profile:
    """A built-in profile by name or alias (case-insensitive, e.g. "nrf52840" or "m4"), or a
    user's profile TOML by path. A Profile is returned as it is.

    Raises ProfileError for an unknown name (listing the built-in names), a missing file, or an
    invalid profile (naming the file, section and key).
    """
    if isinstance(name_or_path, Profile):
        return name_or_path
    if isinstance(name_or_path, os.PathLike):
        return _load_file(Path(name_or_path))
    if not isinstance(name_or_path, str):
        raise ProfileError(f"a profile is given by name or path, got {name_or_path!r}")
    text = name_or_path.strip()
    if _looks_like_path(text):
        return _load_file(Path(text))
    files = _builtin_files()
    key = text.lower()
    if key in files:
        return _load_builtin(key, files[key])
    for stem, entry in sorted(files.items()):
        profile = _load_builtin(stem, entry)
        if key in profile.aliases:
            return profile
    if Path(text).is_file():
        return _load_file(Path(text))
    names = ", ".join(sorted(files)) or "(none found)"
    raise ProfileError(f"unknown profile {name_or_path!r}; built-in profiles: {names} "
                       f"(or give the path of a .toml file)")


def _load_file(path: Path) -> Profile:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProfileError(f"profile file not found: {path}") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as e:
        raise ProfileError(f"{path}: cannot read the profile file ({e})") from None
    return _load_text(text, label=str(path), path=str(path))
