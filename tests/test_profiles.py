"""poet.profiles: the built-in device profiles and the validation of profile files."""

import importlib.resources
import math
import re
from pathlib import Path

import pytest

from poet import profiles as profiles_mod
from poet.profiles import Profile, ProfileError, list_profiles, load_profile, profile_names

POET_DEVICES = ("mkr1000", "nrf52840", "rpi4", "jetson_tx2")
NRF_TOML = Path(__file__).resolve().parent.parent / "profiles" / "nrf52840.toml"


# ---- the built-ins ----------------------------------------------------------------------------

def test_at_least_eight_builtins_all_valid_and_sourced():
    profiles = list_profiles()
    names = [p.name for p in profiles]
    assert len(profiles) >= 8
    assert names == sorted(names) and len(set(names)) == len(names)
    assert set(POET_DEVICES) <= set(names)
    assert names == profile_names()
    for p in profiles:
        assert set(p.sources) == {"compute", "memory", "program_flash", "flash"}
        assert all(len(text) > 20 for text in p.sources.values()), p.name
        assert p.description and p.flash_storage
        assert p.element_bytes in (1, 2, 4, 8)
        assert p.joules_per_flop == pytest.approx(p.active_power_w / p.flops_per_s, rel=1e-15)
        for value in (p.flops_per_s, p.mem_bandwidth_bytes_per_s, p.flash_read_bytes_per_s,
                      p.flash_write_bytes_per_s, p.flash_read_latency_s, p.flash_write_latency_s,
                      p.flash_read_power_w, p.flash_write_power_w):
            assert math.isfinite(value) and value > 0
        assert p.weights in ("flash", "ram") and p.program_flash is not None
        assert 0 < p.usable_ram_bytes < p.ram_bytes
        assert 0 < p.weights_capacity_bytes < p.program_flash.capacity_bytes
        # reloading by name gives the same profile
        assert load_profile(p.name) == p


def test_aliases_are_unique_and_never_shadow_a_name():
    profiles = list_profiles()
    names = {p.name for p in profiles}
    aliases = [a for p in profiles for a in p.aliases]
    assert len(aliases) == len(set(aliases))
    assert not names & set(aliases)


def test_poet_paper_numbers():
    """The four POET devices carry the numbers of POET's device model (poet/chipsets.py)."""
    m0 = load_profile("mkr1000")
    assert m0.flops_per_s == pytest.approx(2000 / 0.012, rel=1e-8)
    assert 1 / m0.joules_per_flop == pytest.approx(2000 / (0.012 * 0.020 * 3.3), rel=1e-8)
    assert m0.ram_bytes == 32 * 1024
    assert (m0.flash_read_bytes_per_s, m0.flash_write_bytes_per_s) == (4616510, 4440000)
    assert (m0.flash_read_latency_s, m0.flash_write_latency_s) == (0.109e-3, 0.113e-3)
    assert m0.flash_read_power_w == m0.flash_write_power_w == pytest.approx(0.1 * 3.3)

    m4 = load_profile("nrf52840")
    assert m4.flops_per_s == pytest.approx(16283 * 100 * 1000 / 255.6237, rel=1e-9)
    assert 1 / m4.joules_per_flop == pytest.approx(
        (16283 * 100 * 1000) / (255.6237 * 0.003328 * 3.3), rel=1e-8)
    assert m4.ram_bytes == 256 * 1024
    assert m4.flash_read_bytes_per_s == m0.flash_read_bytes_per_s  # same SD card as the MKR1000

    a72 = load_profile("rpi4")
    assert 1 / a72.joules_per_flop == pytest.approx((16283 * 100 * 1000) / (13.53 * 0.6 * 5),
                                                    rel=1e-8)
    assert a72.flash_write_latency_s == pytest.approx(0.0185314e-3)
    assert a72.flash_read_bytes_per_s == 45.5e6 and a72.flash_write_bytes_per_s == 24.5e6
    assert load_profile("rpi4_nocache").flash_write_latency_s == pytest.approx(4.23532e-3)

    tx2 = load_profile("jetson_tx2")
    assert tx2.active_power_w == pytest.approx(0.995 - 0.229)
    assert (tx2.flash_read_latency_s, tx2.flash_write_latency_s) == (0.00054, 0.002396)
    assert (tx2.flash_read_bytes_per_s, tx2.flash_write_bytes_per_s) == (108.5e6, 94.37e6)
    assert tx2.flash_read_power_w == 0.309


# ---- finding profiles -------------------------------------------------------------------------

def test_load_by_alias_case_and_path(tmp_path):
    nrf = load_profile("nrf52840")
    assert load_profile("M4") == nrf
    assert load_profile(" NRF52840 ") == nrf
    assert load_profile("a72").name == "rpi4"
    assert load_profile("tx2").name == "jetson_tx2"
    assert load_profile(nrf) is nrf
    copy = tmp_path / "mydev.toml"
    copy.write_text(NRF_TOML.read_text().replace('name = "nrf52840"', 'name = "mydev"'))
    assert load_profile(str(copy)).name == "mydev"
    from_pathlike = load_profile(copy)
    assert from_pathlike.name == "mydev" and from_pathlike.path == str(copy)
    assert from_pathlike.flops_per_s == nrf.flops_per_s


def test_unknown_name_lists_the_builtins():
    with pytest.raises(ProfileError) as e:
        load_profile("cray1")
    msg = str(e.value)
    assert "'cray1'" in msg
    for name in POET_DEVICES:
        assert name in msg


def test_missing_file():
    with pytest.raises(ProfileError, match="profile file not found: .*nope.toml"):
        load_profile("/nonexistent/dir/nope.toml")


def test_builtins_found_without_importlib_resources(monkeypatch):
    """A source checkout where poet.profiles_data cannot be imported still finds profiles/."""
    def broken(_package):
        raise ModuleNotFoundError("No module named 'poet.profiles_data'")
    monkeypatch.setattr(importlib.resources, "files", broken)
    assert set(POET_DEVICES) <= set(profile_names())
    assert load_profile("nrf52840").ram_bytes == 262144


def test_builtins_come_from_the_resource_package():
    root = importlib.resources.files("poet.profiles_data")
    assert (root / "nrf52840.toml").is_file()
    assert {e.name[:-5] for e in root.iterdir() if e.name.endswith(".toml")} == \
        set(profile_names())


# ---- validation ---------------------------------------------------------------------------------

def _variant(tmp_path, edit) -> Path:
    """A copy of nrf52840.toml (kept under that file name) with `edit` applied to its text."""
    text = edit(NRF_TOML.read_text())
    path = tmp_path / "nrf52840.toml"
    path.write_text(text)
    return path


def _section_span(text, section):
    """(start, end) of the body of [section] in a profile's text."""
    start = text.index(f"\n[{section}]\n") + len(f"\n[{section}]\n")
    nxt = text.find("\n[", start)
    return start, (len(text) if nxt < 0 else nxt)


def _set(key, value, section=None):
    """Replace the line `key = ...` (in [section] when given; the key must then be unique in
    that section, else in the whole file)."""
    def edit(text):
        lo, hi = _section_span(text, section) if section else (0, len(text))
        body, n = re.subn(rf"(?m)^{key} = .*$", f"{key} = {value}", text[lo:hi])
        assert n == 1, key
        return text[:lo] + body + text[hi:]
    return edit


def _drop(key, section=None):
    def edit(text):
        lo, hi = _section_span(text, section) if section else (0, len(text))
        body, n = re.subn(rf"(?m)^{key} = .*\n", "", text[lo:hi])
        assert n == 1, key
        return text[:lo] + body + text[hi:]
    return edit


@pytest.mark.parametrize("edit, message", [
    (_drop("read_bytes_per_s", "flash"), "nrf52840.toml: [flash] read_bytes_per_s is missing"),
    (_set("read_bytes_per_s", "-3", "flash"),
     "nrf52840.toml: [flash] read_bytes_per_s must be a number from 1 to 1e+15 (B/s), got -3"),
    (_set("write_bytes_per_s", "0", "flash"),
     "nrf52840.toml: [flash] write_bytes_per_s must be a number from 1 to 1e+15 (B/s), got 0"),
    (_set("read_latency_s", "nan"),
     "nrf52840.toml: [flash] read_latency_s must be a number from 1e-12 to 1000 (s), got nan"),
    (_set("flops_per_s", "inf"),
     "nrf52840.toml: [compute] flops_per_s must be a number from 1 to 1e+18 (FLOP/s), got inf"),
    (_set("flops_per_s", '"fast"'),
     "nrf52840.toml: [compute] flops_per_s must be a number from 1 to 1e+18 (FLOP/s), "
     "got 'fast'"),
    (_set("write_power_w", "true"),
     "nrf52840.toml: [flash] write_power_w must be a number from 1e-09 to 1e+06 (W), got True"),
    (_set("ram_bytes", '"lots"'), "nrf52840.toml: [memory] ram_bytes must be a whole number"),
    (_set("ram_bytes", "-262144"), "nrf52840.toml: [memory] ram_bytes must be a whole number"),
    (_set("element_bytes", "0"), "nrf52840.toml: [memory] element_bytes must be a whole number"),
    (_set("element_bytes", "2.5"), "nrf52840.toml: [memory] element_bytes must be a whole number"),
    (_set("read_bytes_per_s", "1.0\nread_mb_per_s = 4.6", "flash"),
     "nrf52840.toml: [flash] unknown key(s) read_mb_per_s"),
    (_set("flops_per_s", "6.4e6\njoules_per_flop = 1e-9"),
     "nrf52840.toml: [compute] needs exactly one of active_power_w (W) or joules_per_flop"),
    (_drop("active_power_w"),
     "nrf52840.toml: [compute] needs exactly one of active_power_w (W) or joules_per_flop"),
    (_drop("storage", "flash"), "nrf52840.toml: [flash] storage is missing"),
    (_set("name", '"NRF 52840"'), "nrf52840.toml: name must be lower-case"),
    (_drop("description"), "nrf52840.toml: key description is missing"),
    (lambda t: t.replace("[memory]", "[memroy]"), "nrf52840.toml: unknown key(s) memroy"),
    (lambda t: t.replace("[flash]", "[flash]]"), "nrf52840.toml: not valid TOML"),
])
def test_bad_profile_names_file_section_and_key(tmp_path, edit, message):
    path = _variant(tmp_path, edit)
    with pytest.raises(ProfileError) as e:
        load_profile(path)
    assert message in str(e.value)
    assert str(e.value).startswith(str(path))


def test_missing_section(tmp_path):
    def drop_flash(text):
        return text[:text.index("[flash]")]
    with pytest.raises(ProfileError, match=r"nrf52840.toml: the \[flash\] section is missing"):
        load_profile(_variant(tmp_path, drop_flash))


def test_joules_per_flop_form_and_size_strings(tmp_path):
    """[compute] may state J/FLOP instead of W; sizes may be strings."""
    def edit(text):
        text = re.sub(r"(?m)^active_power_w = .*$", "joules_per_flop = 2.5e-9", text)
        text = re.sub(r"(?m)^flops_per_s = .*$", "flops_per_s = 4e6", text)
        return re.sub(r"(?m)^ram_bytes = .*$", 'ram_bytes = "192KiB"', text)
    p = load_profile(_variant(tmp_path, edit))
    assert p.active_power_w == pytest.approx(4e6 * 2.5e-9, rel=1e-15)   # 0.01 W
    assert p.joules_per_flop == pytest.approx(2.5e-9, rel=1e-15)
    assert p.ram_bytes == 192 * 1024


def test_profile_built_in_code_is_validated():
    good = load_profile("nrf52840")
    fields = {f: getattr(good, f) for f in Profile.__dataclass_fields__}
    fields["path"] = None
    assert Profile(**fields) == good
    with pytest.raises(ProfileError, match=r"\[flash\] read_latency_s must be a number from"):
        Profile(**{**fields, "flash_read_latency_s": -1e-3})
    with pytest.raises(ProfileError, match=r"\[memory\] ram_bytes must be a whole number"):
        Profile(**{**fields, "ram_bytes": 1.5})
    with pytest.raises(ProfileError, match="name must be lower-case"):
        Profile(**{**fields, "name": "Bad Name"})


def test_to_dict_has_the_file_layout():
    d = load_profile("mkr1000").to_dict()
    assert set(d) == {"name", "description", "aliases", "compute", "memory", "program_flash",
                      "flash"}
    assert d["flash"]["read_bytes_per_s"] == 4616510
    assert d["compute"]["joules_per_flop"] == pytest.approx(3.96e-7, rel=1e-9)
    assert d["memory"]["ram_bytes"] == 32768
    assert "chipsets.py" in d["flash"]["source"]


def test_profile_error_is_a_value_error():
    assert issubclass(ProfileError, ValueError)
    assert profiles_mod.__doc__ and "[flash]" in profiles_mod.__doc__


# ---- the two non-volatile tiers, the RAM reserve, the weights default ---------------------------

RP2040_TOML = NRF_TOML.parent / "rp2040.toml"


def test_nrf52840_program_flash_by_hand():
    """nRF52840 product specification: 1 MB flash in 4 KB pages, tWRITE 41 us per word,
    tERASEPAGE 85 ms, 10 000 cycles; paging is on the microSD card."""
    p = load_profile("nrf52840")
    pf = p.program_flash
    assert (pf.capacity_bytes, pf.reserved_bytes) == (1024 * 1024, 256 * 1024)
    assert pf.write_bytes_per_s == 97561.0 and round(4 / 41e-6) == 97561
    assert (pf.erase_block_bytes, pf.erase_s_per_block, pf.endurance_cycles) == (4096, 0.085,
                                                                                 10000)
    assert pf.erase_j_per_block == pytest.approx(0.0109824 * 0.085, rel=1e-3)
    assert pf.shared_with_paging is False and pf.has_erase_figures
    assert p.weights == "flash"
    assert p.ram_reserve_bytes == 32 * 1024
    assert p.usable_ram_bytes == 262144 - 32768 == 229376
    # not shared: only the firmware comes off the chip; the 4 GB card does not count
    assert p.weights_capacity_bytes == 1048576 - 262144 == 786432
    assert "nRF52840 product specification" in p.sources["program_flash"]


def test_rp2040_shares_its_qspi_chip_between_weights_and_paging():
    """Pico: a 2 MB W25Q16JV (page program 0.4 ms / 256 B, 4 KB sector erase 45 ms, 100k
    cycles); [flash] pages into 1 MB of the same chip, so the weights get 2 MiB - 1 MiB - the
    256 KiB firmware."""
    p = load_profile("pico")
    pf = p.program_flash
    assert pf.shared_with_paging is True
    assert (pf.capacity_bytes, pf.reserved_bytes, p.flash_bytes) == (2097152, 262144, 1048576)
    assert p.weights_capacity_bytes == 2097152 - 262144 - 1048576 == 786432
    assert pf.write_bytes_per_s == 256 / 0.4e-3 == 640000
    assert (pf.erase_block_bytes, pf.erase_s_per_block, pf.endurance_cycles) == (4096, 0.045,
                                                                                 100000)
    assert p.usable_ram_bytes == 270336 - 16384 == 253952
    assert p.weights == "flash"


def test_single_board_computers_keep_weights_in_ram_and_microcontrollers_in_flash():
    weights = {p.name: p.weights for p in list_profiles()}
    for name in ("rpi4", "rpi4_nocache", "rpi_zero2w", "jetson_tx2", "jetson_orin_nano"):
        assert weights[name] == "ram", name
    for name in ("mkr1000", "nrf52840", "stm32f746", "rp2040", "esp32s3"):
        assert weights[name] == "flash", name
    rpi = load_profile("rpi4")
    assert rpi.usable_ram_bytes == 4 * 2**30 - 512 * 2**20
    assert not rpi.program_flash.has_erase_figures and rpi.program_flash.erase_block_bytes is None
    # its weights file shares the card with paging: 64 GB - 8 GB OS - 32 GB paging
    assert rpi.weights_capacity_bytes == 64 * 10**9 - 8 * 10**9 - 32 * 10**9
    m0 = load_profile("mkr1000")     # SAMD21G18A: 256 KB, 64 B pages in 256 B rows, 25k cycles
    assert (m0.program_flash.capacity_bytes, m0.program_flash.erase_block_bytes,
            m0.program_flash.endurance_cycles) == (262144, 256, 25000)
    assert m0.program_flash.write_bytes_per_s == 64 / 2.5e-3


def _old_form(text):
    """The profile as it was before the program-flash tier: no [program_flash] section and no
    ram_reserve_bytes / weights in [memory]."""
    lo = text.index("\n[program_flash]\n")
    hi = text.index("\n[flash]\n")
    text = text[:lo] + text[hi:]
    return re.sub(r"(?m)^(ram_reserve_bytes|weights) = .*\n", "", text)


def test_old_form_profile_says_what_to_add(tmp_path):
    path = _variant(tmp_path, _old_form)
    with pytest.raises(ProfileError) as e:
        load_profile(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}: old-form profile: the [program_flash] section and "
                          f"[memory] ram_reserve_bytes and [memory] weights are missing; add ")
    for key in ("capacity_bytes", "reserved_bytes", "read_bytes_per_s", "read_j_per_byte",
                "shared_with_paging", 'weights = "flash" or "ram"', "docs/formats.md"):
        assert key in msg, key
    assert "\n" not in msg


def test_old_form_error_names_only_what_is_missing(tmp_path):
    with pytest.raises(ProfileError) as e:
        load_profile(_variant(tmp_path, _drop("weights", "memory")))
    assert "nrf52840.toml: old-form profile: [memory] weights is missing; add " in str(e.value)


def test_shared_chip_capacity_error_names_the_sizes(tmp_path):
    """rp2040 with a 2 MiB paging area on its 2 MiB chip: no room is left for the weights."""
    path = tmp_path / "rp2040.toml"
    path.write_text(_set("flash_bytes", '"2MiB"')(RP2040_TOML.read_text()))
    with pytest.raises(ProfileError) as e:
        load_profile(path)
    assert str(e.value) == (
        f"{path}: [program_flash] capacity_bytes 2097152 B (2 MiB) leaves no room for weights: "
        f"reserved_bytes 262144 B (256 KiB) + the paging area [memory] flash_bytes 2097152 B "
        f"(2 MiB) (shared_with_paging = true) = 2359296 B (2.25 MiB); make flash_bytes or "
        f"reserved_bytes smaller, or set shared_with_paging = false if paging goes to another "
        f"storage")
    # the same sizes on separate storages are fine: only the firmware comes off the chip
    path.write_text(_set("shared_with_paging", "false")(path.read_text()))
    assert load_profile(path).weights_capacity_bytes == 2097152 - 262144


def test_check_weights_fit_names_the_sizes():
    p = load_profile("rp2040")
    p.check_weights_fit(786432)                      # exactly the free bytes
    with pytest.raises(ProfileError) as e:
        p.check_weights_fit(786432 + 4096, what="the frozen weights of resnet8")
    assert str(e.value).endswith(
        "rp2040.toml: the frozen weights of resnet8 (790528 B (772 KiB)) do not fit in the program "
        "flash: capacity_bytes 2097152 B (2 MiB) - reserved_bytes 262144 B (256 KiB) - the "
        "paging area [memory] flash_bytes 1048576 B (1 MiB) (shared_with_paging = true) = "
        "786432 B (768 KiB) free, 4096 B (4 KiB) short")
    with pytest.raises(ValueError, match="weight_bytes must be a whole number"):
        p.check_weights_fit(-1)


@pytest.mark.parametrize("edit, message", [
    # #11: an absurd power used to overflow while pricing, a tiny bandwidth to blame a node
    (_set("active_power_w", "1e300"),
     "[compute] active_power_w must be a number from 1e-09 to 1e+06 (W), got 1e+300"),
    (_set("read_bytes_per_s", "1e-300", "flash"),
     "[flash] read_bytes_per_s must be a number from 1 to 1e+15 (B/s), got 1e-300"),
    (_set("active_power_w", "1" + "0" * 400),     # an integer too large for a float
     "[compute] active_power_w must be a number from 1e-09 to 1e+06 (W), got "
     "10000000000000000000...(401 characters)"),
    (_set("ram_bytes", "1" + "0" * 400),
     "[memory] ram_bytes must be a whole number of bytes from 1 to"),
    (_set("write_power_w", "2e6"),
     "[flash] write_power_w must be a number from 1e-09 to 1e+06 (W), got 2000000.0"),
    (_set("mem_bandwidth_bytes_per_s", "0.5"),
     "[compute] mem_bandwidth_bytes_per_s must be a number from 1 to 1e+15 (B/s), got 0.5"),
    (_set("erase_block_bytes", '"2MiB"'),
     "[program_flash] erase_block_bytes (2097152 B (2 MiB)) must not exceed capacity_bytes"),
    (lambda t: _set("flops_per_s", "1e9\njoules_per_flop = 0.01")(_drop("active_power_w")(t)),
     "[compute] joules_per_flop x flops_per_s = 1e+07 W, but the power must be from 1e-09 to "
     "1e+06 W"),
    (_set("element_bytes", "32"), "[memory] element_bytes must be a whole number of bytes from "
                                  "1 to 16, got 32"),
    (_set("ram_reserve_bytes", '"256KiB"'),
     "[memory] ram_reserve_bytes (262144 B) must be less than ram_bytes (262144 B)"),
    (_set("ram_reserve_bytes", "-1"), "[memory] ram_reserve_bytes must be a whole number of bytes"),
    (_set("weights", '"rom"'), '[memory] weights must be "flash" or "ram", got \'rom\''),
    (_set("read_bytes_per_s", "0", "program_flash"),
     "[program_flash] read_bytes_per_s must be a number from 1 to 1e+15 (B/s), got 0"),
    (_set("read_j_per_byte", "5"),
     "[program_flash] read_j_per_byte must be a number from 1e-18 to 1 (J/B), got 5"),
    (_set("write_j_per_byte", "nan"),
     "[program_flash] write_j_per_byte must be a number from 1e-18 to 1 (J/B), got nan"),
    (_set("endurance_cycles", "0"),
     "[program_flash] endurance_cycles must be a whole number of cycles from 1 to 1e+09, got 0"),
    (_set("erase_s_per_block", "-0.085"),
     "[program_flash] erase_s_per_block must be a number from 1e-09 to 1000 (s), got -0.085"),
    (_drop("endurance_cycles"),
     "[program_flash] give all of erase_block_bytes, erase_s_per_block, erase_j_per_block, "
     "endurance_cycles or none of them; endurance_cycles missing"),
    (_set("shared_with_paging", '"yes"'),
     "[program_flash] shared_with_paging must be true or false, got 'yes'"),
    (_drop("shared_with_paging"), "[program_flash] shared_with_paging is missing"),
    (_drop("capacity_bytes"), "[program_flash] capacity_bytes is missing"),
    (_set("reserved_bytes", '"1MiB"'),
     "[program_flash] reserved_bytes (1048576 B (1 MiB)) must be less than capacity_bytes "
     "(1048576 B (1 MiB))"),
    (_set("capacity_bytes", '"lots"'),
     "[program_flash] capacity_bytes must be a whole number of bytes from 1 to"),
    (_set("storage", '"  "', "program_flash"),
     "[program_flash] storage must be a non-empty string"),
    (_set("capacity_bytes", '"1MiB"\nread_mb_per_s = 64'),
     "[program_flash] unknown key(s) read_mb_per_s"),
])
def test_every_number_is_range_checked_naming_file_and_key(tmp_path, edit, message):
    path = _variant(tmp_path, edit)
    with pytest.raises(ProfileError) as e:
        load_profile(path)
    assert str(e.value).startswith(f"{path}: "), str(e.value)
    assert message in str(e.value)


def test_ranges_keep_the_pricing_products_finite():
    """At the edges of every range, the products the cost model forms for sizes and FLOP
    counts up to 1e15 stay finite (no inf energies to blame on a node)."""
    big = 1e15
    r = profiles_mod.RANGES
    worst_s = max(big / r["flops_per_s"][0], big / r["read_bytes_per_s"][0],
                  r["read_latency_s"][1] + big / r["write_bytes_per_s"][0])
    for value in (worst_s * r["active_power_w"][1], worst_s * r["read_power_w"][1],
                  big * r["read_j_per_byte"][1], big * r["write_j_per_byte"][1],
                  big * r["joules_per_flop"][1],
                  big / r["erase_block_bytes"][0] * r["erase_j_per_block"][1]):
        assert math.isfinite(value) and value < 1e40
    assert r["active_power_w"][1] <= 1e6 and r["read_bytes_per_s"][0] >= 1


def test_profile_built_in_code_defaults_and_program_flash():
    good = load_profile("nrf52840")
    fields = {f: getattr(good, f) for f in Profile.__dataclass_fields__}
    fields["path"] = None
    bare = {k: v for k, v in fields.items()
            if k not in ("ram_reserve_bytes", "weights", "program_flash")}
    p = Profile(**bare)            # code that predates the new fields still builds a profile
    assert (p.ram_reserve_bytes, p.weights, p.program_flash) == (0, "ram", None)
    assert p.usable_ram_bytes == p.ram_bytes and p.weights_capacity_bytes is None
    with pytest.raises(ProfileError, match="has no \\[program_flash\\] section"):
        p.check_weights_fit(1)
    with pytest.raises(ProfileError, match='weights = "flash" needs a \\[program_flash\\]'):
        Profile(**{**bare, "weights": "flash"})
    with pytest.raises(ProfileError, match="ram_reserve_bytes \\(262144 B\\) must be less"):
        Profile(**{**fields, "ram_reserve_bytes": 262144})
    pf = dict(storage="chip", capacity_bytes=1 << 20, reserved_bytes=0, read_bytes_per_s=1e8,
              read_j_per_byte=1e-11, write_bytes_per_s=1e5, write_j_per_byte=1e-7,
              shared_with_paging=True)
    assert profiles_mod.ProgramFlash(**pf).has_erase_figures is False
    with pytest.raises(ProfileError, match="read_j_per_byte must be a number from"):
        profiles_mod.ProgramFlash(**{**pf, "read_j_per_byte": 2.0})
    with pytest.raises(ProfileError, match="give all of erase_block_bytes"):
        profiles_mod.ProgramFlash(**pf, erase_block_bytes=4096)
    shared = profiles_mod.ProgramFlash(**pf)
    with pytest.raises(ProfileError, match="leaves no room for weights"):
        Profile(**{**fields, "program_flash": shared})     # 4 GB paging on a 1 MiB chip
    ok = Profile(**{**fields, "flash_bytes": 1 << 19, "program_flash": shared})
    assert ok.weights_capacity_bytes == (1 << 20) - (1 << 19)


def test_to_dict_has_the_new_sections():
    d = load_profile("rp2040").to_dict()
    assert d["memory"]["ram_reserve_bytes"] == 16384 and d["memory"]["weights"] == "flash"
    assert d["memory"]["usable_ram_bytes"] == 270336 - 16384
    assert d["program_flash"]["capacity_bytes"] == 2097152
    assert d["program_flash"]["weights_capacity_bytes"] == 786432
    assert d["program_flash"]["shared_with_paging"] is True
    assert "W25Q16JV" in d["program_flash"]["source"]
    assert "erase_block_bytes" not in load_profile("rpi4").to_dict()["program_flash"]
