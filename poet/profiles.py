"""Device profiles: what a device's compute, RAM, program flash and paging storage cost.

A profile is a TOML file. The built-in ones live in the repo's ``profiles/`` folder, shipped in
the wheel as the package ``poet.profiles_data``; a user's own file can be given by path. A
profile is data: loading one parses TOML and checks numbers, it never executes anything.

Schema (every key is required unless marked optional; units are in the key names; sizes may
also be strings such as "256KiB" or "4GB"; a key that is not listed here is an error, so a
misspelt unit cannot pass silently; every number must be finite and inside the range that
`RANGES` gives for its key, e.g. a power from 1e-9 W to 1e6 W, a bandwidth from 1 B/s to
1e15 B/s, so that pricing 1e15 bytes or FLOPs stays finite)::

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
    ram_bytes = 262144           # RAM of the device
    ram_reserve_bytes = 32768    # of it, taken by stack, RTOS, radio stack, OS (may be 0)
    weights = "flash"            # default home of frozen weights: "flash" (read in place from
                                 # [program_flash]) or "ram" (loaded into RAM)
    flash_bytes = "4GB"          # capacity of the paging storage described in [flash]
    element_bytes = 4            # bytes per tensor element the device computes in (whole number)
    source = "..."

    [program_flash]              # where the weights are stored: the chip's program flash (an
                                 # MCU's on-chip or QSPI flash), an SBC's boot card or disk
    storage = "on-chip flash, 1 MB, 4 KB pages"
    capacity_bytes = "1MiB"      # the whole chip
    reserved_bytes = "256KiB"    # of it, holding the firmware (code, bootloader, radio stack)
    read_bytes_per_s = 6.4e7     # in-place read bandwidth
    read_j_per_byte = 2.3e-11    # energy of the read itself, above [compute] active power
    write_bytes_per_s = 97561    # programming rate (erase not included)
    write_j_per_byte = 1.3e-7    # energy of programming one byte
    erase_block_bytes = 4096     # } optional, all four or none (none: the storage's own
    erase_s_per_block = 0.085    # } controller manages erasure, e.g. an SD card or SSD)
    erase_j_per_block = 1.3e-3   # }
    endurance_cycles = 10000     # } erase cycles per block
    shared_with_paging = false   # true: [flash] pages into this same chip
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

Where paging and weights share one chip (``shared_with_paging = true``) their capacities add
up against it: reserved_bytes + flash_bytes must leave room in capacity_bytes, and what is left
is `Profile.weights_capacity_bytes`. A file without [program_flash], ram_reserve_bytes or
weights is an old-form profile: the error says what to add.

On a loaded `Profile` the keys keep their names, except that those of [flash] gain a "flash_"
prefix (``profile.flash_read_bytes_per_s``, ``profile.flash_storage``) and those of
[program_flash] are the fields of ``profile.program_flash`` (a `ProgramFlash`).
``profile.joules_per_flop``, ``profile.usable_ram_bytes`` (ram_bytes - ram_reserve_bytes, what a
"device" RAM budget means) and ``profile.weights_capacity_bytes`` are derived. Names and aliases
are looked up case-insensitively.

How `poet.costs` turns these into node costs is documented there (compute energy is
active_power_w times the roofline time; paging energy is the read/write power times the paging
time). Errors are `ProfileError` (a ValueError) whose message names the file, the section and
the key, e.g. ``nrf52840.toml: [flash] read_bytes_per_s must be a number from 1 to 1e+15 (B/s),
got -3``.
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

from .profile_checks import (_ERASE_KEYS, _PF_NUMBERS, _PF_WHOLE, RANGES, ProfileError, _capacity_sum, _check_capacity, _check_number,
                             _check_program_flash, _check_whole, _read_size, _size)
from .units import parse_bytes

__all__ = ["Profile", "ProgramFlash", "ProfileError", "RANGES", "WEIGHTS_PLACES",
           "load_profile", "list_profiles", "profile_names", "profile_from_dict"]

_PACKAGE = "poet.profiles_data"
_NAME = re.compile(r"^[a-z0-9_]+$")

WEIGHTS_PLACES = ("flash", "ram")

# key -> (lowest, highest, unit): the range every number of that key must lie in (inclusive).
# Chosen so that what the pricing forms (bytes x J/byte, bytes / (B/s), FLOPs / (FLOP/s), times
# x W) stay finite for sizes and FLOP counts up to 1e15, and wide enough for any real device.
_SCHEMA: dict[str, dict[str, tuple[str, ...]]] = {
    "compute": {"numbers": ("flops_per_s", "mem_bandwidth_bytes_per_s"), "sizes": (),
                "strings": ("source",)},
    "memory": {"numbers": (), "sizes": ("ram_bytes", "ram_reserve_bytes", "flash_bytes",
                                        "element_bytes"),
               "strings": ("weights", "source")},
    "program_flash": {"numbers": ("read_bytes_per_s", "read_j_per_byte", "write_bytes_per_s",
                                  "write_j_per_byte"),
                      "sizes": ("capacity_bytes", "reserved_bytes"),
                      "strings": ("storage", "source")},
    "flash": {"numbers": ("read_bytes_per_s", "write_bytes_per_s", "read_latency_s",
                          "write_latency_s", "read_power_w", "write_power_w"), "sizes": (),
              "strings": ("storage", "source")},
}
_POWER_KEYS = ("active_power_w", "joules_per_flop")  # [compute]: exactly one of these
_TOP_KEYS = ("name", "description", "aliases", "compute", "memory", "program_flash", "flash")
_NEW_FORM = (("program_flash", None), ("memory", "ram_reserve_bytes"), ("memory", "weights"))
_OLD_FORM_HELP = (
    "add the [program_flash] section (storage, capacity_bytes, reserved_bytes, "
    "read_bytes_per_s, read_j_per_byte, write_bytes_per_s, write_j_per_byte, "
    "shared_with_paging, source; optional erase_block_bytes, erase_s_per_block, "
    "erase_j_per_block, endurance_cycles) and, in [memory], ram_reserve_bytes and "
    "weights = \"flash\" or \"ram\" (docs/formats.md, 'The device profile', has the layout; "
    "the built-in profiles/*.toml are examples)")

# Profile field -> (section, key in the TOML file). Keys of [flash] get a "flash_" prefix on the
# Profile, so that profile.flash_read_bytes_per_s says what it is without its section.
_FIELD_KEYS = {
    "flops_per_s": ("compute", "flops_per_s"),
    "active_power_w": ("compute", "active_power_w"),
    "mem_bandwidth_bytes_per_s": ("compute", "mem_bandwidth_bytes_per_s"),
    "ram_bytes": ("memory", "ram_bytes"),
    "ram_reserve_bytes": ("memory", "ram_reserve_bytes"),
    "flash_bytes": ("memory", "flash_bytes"),
    "element_bytes": ("memory", "element_bytes"),
    "flash_read_bytes_per_s": ("flash", "read_bytes_per_s"),
    "flash_write_bytes_per_s": ("flash", "write_bytes_per_s"),
    "flash_read_latency_s": ("flash", "read_latency_s"),
    "flash_write_latency_s": ("flash", "write_latency_s"),
    "flash_read_power_w": ("flash", "read_power_w"),
    "flash_write_power_w": ("flash", "write_power_w"),
}
_WHOLE_FIELDS = ("ram_bytes", "ram_reserve_bytes", "flash_bytes", "element_bytes")


@dataclass(frozen=True)
class ProgramFlash:
    """The non-volatile tier that holds the weights (the TOML's [program_flash]).

    Units: bytes, bytes/s, J/byte, s, J. `capacity_bytes` is the whole chip (or card, disk);
    `reserved_bytes` of it hold the firmware and are never available to weights. Reading is in
    place: a node that reads w bytes of weights from here takes w / read_bytes_per_s seconds and
    spends w * read_j_per_byte joules on top of the compute power of [compute]. Writing (a
    trained weight kept here) costs write_bytes_per_s / write_j_per_byte plus, where the tier
    says how it erases, one erase of `erase_block_bytes` per block rewritten
    (erase_s_per_block, erase_j_per_block), each block lasting `endurance_cycles` erases. The
    four erase fields are all None where the storage's controller erases by itself (an SD
    card, eMMC, an SSD). `shared_with_paging`: the paging storage of [flash] is this same chip,
    and its flash_bytes come out of capacity_bytes too.
    """

    storage: str
    capacity_bytes: int
    reserved_bytes: int
    read_bytes_per_s: float
    read_j_per_byte: float
    write_bytes_per_s: float
    write_j_per_byte: float
    shared_with_paging: bool
    erase_block_bytes: int | None = None
    erase_s_per_block: float | None = None
    erase_j_per_block: float | None = None
    endurance_cycles: int | None = None

    def __post_init__(self):
        _check_program_flash("ProgramFlash", self)

    @property
    def has_erase_figures(self) -> bool:
        """True when the tier states how it erases (erase_* and endurance_cycles)."""
        return self.erase_block_bytes is not None

    def to_dict(self) -> dict[str, Any]:
        d = {"storage": self.storage, "capacity_bytes": self.capacity_bytes,
             "reserved_bytes": self.reserved_bytes, "read_bytes_per_s": self.read_bytes_per_s,
             "read_j_per_byte": self.read_j_per_byte,
             "write_bytes_per_s": self.write_bytes_per_s,
             "write_j_per_byte": self.write_j_per_byte,
             "shared_with_paging": self.shared_with_paging}
        if self.has_erase_figures:
            d.update({k: getattr(self, k) for k in _ERASE_KEYS})
        return d


@dataclass(frozen=True)
class Profile:
    """One device. Units: FLOP/s, W, bytes, bytes/s, s. Every number is finite and in its
    `RANGES` range.

    Attributes are the TOML keys, with the keys of [flash] prefixed "flash_" (the TOML's
    [flash] read_bytes_per_s is `flash_read_bytes_per_s`) and [program_flash] as the
    `ProgramFlash` `program_flash`.

    `joules_per_flop` (active_power_w / flops_per_s), `usable_ram_bytes` (ram_bytes -
    ram_reserve_bytes) and `weights_capacity_bytes` are derived. `sources` maps a section name
    ("compute", "memory", "program_flash", "flash") to where its numbers come from. `path` is
    the file it was read from (None when built in code).

    Built in code, `ram_reserve_bytes`, `weights` and `program_flash` may be left out (no
    reserve, weights in RAM, no weights tier stated); a profile file must state all three.
    `weights = "flash"` needs a `program_flash`.
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
    ram_reserve_bytes: int = 0
    weights: str = "ram"
    program_flash: ProgramFlash | None = None
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
                object.__setattr__(self, attr, _check_number(label, section, key, value))
        if self.ram_reserve_bytes >= self.ram_bytes:
            raise ProfileError(
                f"{label}: [memory] ram_reserve_bytes ({self.ram_reserve_bytes} B) must be less "
                f"than ram_bytes ({self.ram_bytes} B): nothing would be left for training")
        if self.weights not in WEIGHTS_PLACES:
            raise ProfileError(f"{label}: [memory] weights must be \"flash\" or \"ram\", "
                               f"got {self.weights!r}")
        if self.program_flash is not None:
            if not isinstance(self.program_flash, ProgramFlash):
                raise ProfileError(f"{label}: program_flash must be a ProgramFlash, got "
                                   f"{type(self.program_flash).__name__}")
            _check_program_flash(label, self.program_flash)
            _check_capacity(label, self.program_flash, self.flash_bytes)
        elif self.weights == "flash":
            raise ProfileError(f"{label}: [memory] weights = \"flash\" needs a [program_flash] "
                               f"section (the tier the weights are read from)")
        object.__setattr__(self, "aliases", tuple(self.aliases))
        object.__setattr__(self, "sources", dict(self.sources))

    @property
    def joules_per_flop(self) -> float:
        """Energy of one FLOP when compute-bound: active_power_w / flops_per_s."""
        return self.active_power_w / self.flops_per_s

    @property
    def usable_ram_bytes(self) -> int:
        """RAM left for the training step: ram_bytes - ram_reserve_bytes (a "device" budget)."""
        return self.ram_bytes - self.ram_reserve_bytes

    @property
    def weights_capacity_bytes(self) -> int | None:
        """Bytes of the program flash free for weights: capacity_bytes - reserved_bytes, less
        the paging area flash_bytes when paging shares the chip. None without a program flash."""
        pf = self.program_flash
        if pf is None:
            return None
        return pf.capacity_bytes - pf.reserved_bytes - (self.flash_bytes
                                                        if pf.shared_with_paging else 0)

    def check_weights_fit(self, weight_bytes: int, what: str = "the weights") -> None:
        """Raise ProfileError, naming every size, when `weight_bytes` of `what` do not fit in
        the program flash beside the firmware (and the paging area, when it shares the chip)."""
        if isinstance(weight_bytes, bool) or not isinstance(weight_bytes, int) or \
                weight_bytes < 0:
            raise ValueError(f"weight_bytes must be a whole number of bytes >= 0, "
                             f"got {weight_bytes!r}")
        free = self.weights_capacity_bytes
        label = self.path or f"profile {self.name!r}"
        if free is None:
            raise ProfileError(f"{label}: {what} ({weight_bytes} B) cannot be kept in flash: "
                               f"the profile has no [program_flash] section")
        if weight_bytes > free:
            room = _capacity_sum(self.program_flash, self.flash_bytes)
            raise ProfileError(f"{label}: {what} ({_size(weight_bytes)}) do not fit in the "
                               f"program flash: {room} = {_size(free)} free, "
                               f"{_size(weight_bytes - free)} short")

    def to_dict(self) -> dict[str, Any]:
        """The profile in the TOML file's layout plus the derived joules_per_flop,
        usable_ram_bytes and weights_capacity_bytes, for JSON."""
        d = {
            "name": self.name, "description": self.description, "aliases": list(self.aliases),
            "compute": {"flops_per_s": self.flops_per_s, "active_power_w": self.active_power_w,
                        "joules_per_flop": self.joules_per_flop,
                        "mem_bandwidth_bytes_per_s": self.mem_bandwidth_bytes_per_s,
                        "source": self.sources.get("compute", "")},
            "memory": {"ram_bytes": self.ram_bytes, "ram_reserve_bytes": self.ram_reserve_bytes,
                       "usable_ram_bytes": self.usable_ram_bytes, "weights": self.weights,
                       "flash_bytes": self.flash_bytes, "element_bytes": self.element_bytes,
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
        if self.program_flash is not None:
            d["program_flash"] = {**self.program_flash.to_dict(),
                                  "weights_capacity_bytes": self.weights_capacity_bytes,
                                  "source": self.sources.get("program_flash", "")}
        return d


def _read_string(label: str, where: str, key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ProfileError(f"{label}: {where}{key} must be a non-empty string, got {value!r}")
    return value.strip()


def _unknown_keys(label: str, where: str, table: Mapping, allowed) -> None:
    extra = sorted(set(table) - set(allowed))
    if extra:
        raise ProfileError(f"{label}: {where}unknown key(s) {', '.join(extra)}; allowed: "
                           f"{', '.join(allowed)} (units are part of the key names)")


def _check_new_form(label: str, data: Mapping[str, Any]) -> None:
    """An old-form profile (before the program-flash tier) gets one error saying what to add."""
    missing = []
    for section, key in _NEW_FORM:
        if key is None:
            if section not in data:
                missing.append(f"the [{section}] section")
        elif isinstance(data.get(section), Mapping) and key not in data[section]:
            missing.append(f"[{section}] {key}")
    if missing:
        raise ProfileError(f"{label}: old-form profile: {' and '.join(missing)} "
                           f"{'is' if len(missing) == 1 else 'are'} missing; {_OLD_FORM_HELP}")


def _read_program_flash(label: str, table: Mapping[str, Any], values: dict[str, Any]
                        ) -> ProgramFlash:
    section = "program_flash"
    if "shared_with_paging" not in table:
        raise ProfileError(f"{label}: [{section}] shared_with_paging is missing (true when "
                           f"[flash] pages into this same chip, else false)")
    shared = table["shared_with_paging"]
    if not isinstance(shared, bool):
        raise ProfileError(f"{label}: [{section}] shared_with_paging must be true or false, "
                           f"got {shared!r}")
    erase: dict[str, Any] = {}
    given = [k for k in _ERASE_KEYS if k in table]
    if given and len(given) != len(_ERASE_KEYS):
        missing = [k for k in _ERASE_KEYS if k not in given]
        raise ProfileError(f"{label}: [{section}] give all of {', '.join(_ERASE_KEYS)} or none "
                           f"of them; {', '.join(missing)} missing")
    if given:
        erase["erase_block_bytes"] = _read_size(label, section, "erase_block_bytes",
                                                table["erase_block_bytes"])
        erase["endurance_cycles"] = _check_whole(label, section, "endurance_cycles",
                                                 table["endurance_cycles"])
        for key in ("erase_s_per_block", "erase_j_per_block"):
            erase[key] = _check_number(label, section, key, table[key])
    try:
        return ProgramFlash(storage=values["storage"], capacity_bytes=values["capacity_bytes"],
                            reserved_bytes=values["reserved_bytes"],
                            read_bytes_per_s=values["read_bytes_per_s"],
                            read_j_per_byte=values["read_j_per_byte"],
                            write_bytes_per_s=values["write_bytes_per_s"],
                            write_j_per_byte=values["write_j_per_byte"],
                            shared_with_paging=shared, **erase)
    except ProfileError as e:   # name the file, not the class
        raise ProfileError(f"{label}: {str(e).removeprefix('ProgramFlash: ')}") from None


def profile_from_dict(data: Mapping[str, Any], *, label: str, path: str | None = None) -> Profile:
    """Build a Profile from parsed TOML (`label` names the file in error messages)."""
    if not isinstance(data, Mapping):
        raise ProfileError(f"{label}: a profile must be a TOML table, got {type(data).__name__}")
    _unknown_keys(label, "", data, _TOP_KEYS)
    for key in ("name", "description", "compute", "memory", "flash"):
        if key not in data:
            what = f"the [{key}] section" if key in _SCHEMA else f"key {key}"
            raise ProfileError(f"{label}: {what} is missing")
    _check_new_form(label, data)
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
        if section == "program_flash":
            allowed = allowed + ("shared_with_paging",) + _ERASE_KEYS
        _unknown_keys(label, f"[{section}] ", table, allowed)
        for key in spec["numbers"] + spec["sizes"] + spec["strings"]:
            if key not in table:
                raise ProfileError(f"{label}: [{section}] {key} is missing")
        here: dict[str, Any] = {}
        for key in spec["numbers"]:
            here[key] = _check_number(label, section, key, table[key])
        for key in spec["sizes"]:
            here[key] = _read_size(label, section, key, table[key])
        for key in spec["strings"]:
            text = _read_string(label, f"[{section}] ", key, table[key])
            if key == "source":
                sources[section] = text
            else:
                here[key] = text
        if section == "memory" and here["weights"] not in WEIGHTS_PLACES:
            raise ProfileError(f"{label}: [memory] weights must be \"flash\" or \"ram\", "
                               f"got {table['weights']!r}")
        if section == "program_flash":
            values["program_flash"] = _read_program_flash(label, table, here)
            continue
        prefix = "flash_" if section == "flash" else ""
        values.update({prefix + k: v for k, v in here.items()})
        if section == "compute":
            given = [k for k in _POWER_KEYS if k in table]
            if len(given) != 1:
                raise ProfileError(
                    f"{label}: [compute] needs exactly one of active_power_w (W) or "
                    f"joules_per_flop (J/FLOP), got {', '.join(given) if given else 'neither'}")
            v = _check_number(label, section, given[0], table[given[0]])
            if given[0] == "joules_per_flop":
                v = v * values["flops_per_s"]
                lo, hi, _ = RANGES["active_power_w"]
                if not lo <= v <= hi:
                    raise ProfileError(
                        f"{label}: [compute] joules_per_flop x flops_per_s = {v:g} W, but the "
                        f"power must be from {lo:g} to {hi:g} W; check joules_per_flop")
            values["active_power_w"] = v
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
