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
        assert set(p.sources) == {"compute", "memory", "flash"}
        assert all(len(text) > 20 for text in p.sources.values()), p.name
        assert p.description and p.flash_storage
        assert p.element_bytes in (1, 2, 4, 8)
        assert p.joules_per_flop == pytest.approx(p.active_power_w / p.flops_per_s, rel=1e-15)
        for value in (p.flops_per_s, p.mem_bandwidth_bytes_per_s, p.flash_read_bytes_per_s,
                      p.flash_write_bytes_per_s, p.flash_read_latency_s, p.flash_write_latency_s,
                      p.flash_read_power_w, p.flash_write_power_w):
            assert math.isfinite(value) and value > 0
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


def _set(key, value):
    """Replace the line `key = ...` (keys used here are unique in the file)."""
    def edit(text):
        new, n = re.subn(rf"(?m)^{key} = .*$", f"{key} = {value}", text)
        assert n == 1, key
        return new
    return edit


def _drop(key):
    def edit(text):
        new, n = re.subn(rf"(?m)^{key} = .*\n", "", text)
        assert n == 1, key
        return new
    return edit


@pytest.mark.parametrize("edit, message", [
    (_drop("read_bytes_per_s"), "nrf52840.toml: [flash] read_bytes_per_s is missing"),
    (_set("read_bytes_per_s", "-3"),
     "nrf52840.toml: [flash] read_bytes_per_s must be a positive number, got -3"),
    (_set("write_bytes_per_s", "0"),
     "nrf52840.toml: [flash] write_bytes_per_s must be a positive number, got 0"),
    (_set("read_latency_s", "nan"),
     "nrf52840.toml: [flash] read_latency_s must be a positive number, got nan"),
    (_set("flops_per_s", "inf"),
     "nrf52840.toml: [compute] flops_per_s must be a positive number, got inf"),
    (_set("flops_per_s", '"fast"'),
     "nrf52840.toml: [compute] flops_per_s must be a positive number, got 'fast'"),
    (_set("write_power_w", "true"),
     "nrf52840.toml: [flash] write_power_w must be a positive number, got True"),
    (_set("ram_bytes", '"lots"'), "nrf52840.toml: [memory] ram_bytes must be a whole number"),
    (_set("ram_bytes", "-262144"), "nrf52840.toml: [memory] ram_bytes must be a whole number"),
    (_set("element_bytes", "0"), "nrf52840.toml: [memory] element_bytes must be a whole number"),
    (_set("element_bytes", "2.5"), "nrf52840.toml: [memory] element_bytes must be a whole number"),
    (_set("read_bytes_per_s", "1.0\nread_mb_per_s = 4.6"),
     "nrf52840.toml: [flash] unknown key(s) read_mb_per_s"),
    (_set("flops_per_s", "6.4e6\njoules_per_flop = 1e-9"),
     "nrf52840.toml: [compute] needs exactly one of active_power_w (W) or joules_per_flop"),
    (_drop("active_power_w"),
     "nrf52840.toml: [compute] needs exactly one of active_power_w (W) or joules_per_flop"),
    (_drop("storage"), "nrf52840.toml: [flash] storage is missing"),
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
    with pytest.raises(ProfileError, match=r"\[flash\] read_latency_s must be a positive number"):
        Profile(**{**fields, "flash_read_latency_s": -1e-3})
    with pytest.raises(ProfileError, match=r"\[memory\] ram_bytes must be a whole number"):
        Profile(**{**fields, "ram_bytes": 1.5})
    with pytest.raises(ProfileError, match="name must be lower-case"):
        Profile(**{**fields, "name": "Bad Name"})


def test_to_dict_has_the_file_layout():
    d = load_profile("mkr1000").to_dict()
    assert set(d) == {"name", "description", "aliases", "compute", "memory", "flash"}
    assert d["flash"]["read_bytes_per_s"] == 4616510
    assert d["compute"]["joules_per_flop"] == pytest.approx(3.96e-7, rel=1e-9)
    assert d["memory"]["ram_bytes"] == 32768
    assert "chipsets.py" in d["flash"]["source"]


def test_profile_error_is_a_value_error():
    assert issubclass(ProfileError, ValueError)
    assert profiles_mod.__doc__ and "[flash]" in profiles_mod.__doc__
