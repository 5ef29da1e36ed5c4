"""poet.units: parsing sizes, durations and budgets; formatting bytes, energy and time."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from poet.units import (format_bytes, format_energy, format_time, parse_budget, parse_bytes,
                        parse_seconds)


@pytest.mark.parametrize("text, expected", [
    ("256KiB", 262144),
    ("1.5MiB", 1572864),
    ("2MB", 2_000_000),
    ("1000", 1000),
    ("1 gib", 1073741824),
    ("3.5kb", 3500),
    ("0.29KB", 290),             # exact decimal arithmetic: not 289.999...
    ("1.0000001KiB", 1024),      # 1024.0001024 rounds down
    ("  12 B ", 12),
    ("1e3", 1000),
    ("2TiB", 2 * 2**40),
    (4096, 4096),
    (2048.0, 2048),
    (0, 0),
])
def test_parse_bytes_accepts(text, expected):
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("bad, needle", [
    ("abc", "KiB"), ("12 parsecs", "KiB"), ("1..5MB", "KiB"), ("MB", "KiB"), (True, "KiB"),
    (None, "KiB"), (1.5, "KiB"), (float("nan"), "KiB"), (float("inf"), "KiB"), ([1], "KiB"),
    ("-1KB", "negative"), (-5, "negative"),
])
def test_parse_bytes_rejects(bad, needle):
    """The message names the value being read and, for unreadable input, the accepted forms."""
    with pytest.raises(ValueError) as e:
        parse_bytes(bad, what="ram_bytes")
    assert "ram_bytes" in str(e.value)
    assert needle in str(e.value)


@given(st.integers(min_value=0, max_value=2**50))
def test_parse_bytes_plain_integer_strings(n):
    assert parse_bytes(str(n)) == n
    if n * 1024 <= 2**53:
        assert parse_bytes(f"{n}KiB") == n * 1024
    if n * 10**6 <= 2**53:
        assert parse_bytes(f"{n} MB") == n * 10**6
    else:   # above 2**53 bytes (8 PiB) sizes are refused, naming the limit
        with pytest.raises(ValueError, match=r"more than the largest size poet takes"):
            parse_bytes(f"{n} MB")


def test_parse_bytes_limit_is_2_to_the_53():
    assert parse_bytes(str(2**53)) == 2**53
    assert parse_bytes("8192TiB") == 2**53
    for text in (str(2**53 + 1), "1e400", "1e1000000", "8193TiB"):
        with pytest.raises(ValueError, match=r"2\*\*53 B = 8 PiB"):
            parse_bytes(text, what="--ram")


@pytest.mark.parametrize("text, expected", [
    (2.5, 2.5), ("2.5s", 2.5), ("250ms", 0.25), ("3min", 180.0), ("1h", 3600.0),
    ("40us", 4e-5), ("40µs", 4e-5), ("7", 7.0),
])
def test_parse_seconds(text, expected):
    assert parse_seconds(text) == pytest.approx(expected, rel=1e-15)


@pytest.mark.parametrize("bad", ["fast", "2 days", -1, "-1s", float("nan"), True])
def test_parse_seconds_rejects(bad):
    with pytest.raises(ValueError):
        parse_seconds(bad)


@pytest.mark.parametrize("value, what, expected", [
    (None, "ram", ("none", None)),
    ("none", "ram", ("none", None)),
    ("256KiB", "ram", ("bytes", 262144)),
    (262144, "ram", ("bytes", 262144)),
    (262144.0, "ram", ("bytes", 262144)),
    ("device", "ram", ("device", None)),
    ("DEVICE", "ram", ("device", None)),
    ("0.5x", "ram", ("multiple", 0.5)),
    ("2X", "ram", ("multiple", 2.0)),
    ("4GB", "flash", ("bytes", 4_000_000_000)),
    ("device", "flash", ("device", None)),
    (None, "flash", ("none", None)),
    (2.5, "runtime", ("seconds", 2.5)),
    (3, "runtime", ("seconds", 3.0)),
    ("2.5s", "runtime", ("seconds", 2.5)),
    ("250ms", "runtime", ("seconds", 0.25)),
    ("1.5x", "runtime", ("multiple", 1.5)),
    (None, "runtime", ("none", None)),
])
def test_parse_budget(value, what, expected):
    assert parse_budget(value, what) == expected


@pytest.mark.parametrize("value, what, needle", [
    ("0.5x", "flash", "not meaningful for flash"),
    ("device", "runtime", "only applies to RAM and flash"),
    (0.5, "ram", "'0.5x'"),           # a bare fraction hints at the multiple form
    (0, "ram", "> 0"),
    ("0KiB", "ram", "> 0"),
    ("0x", "ram", "> 0"),
    (-3, "runtime", "> 0"),
    (0, "runtime", "> 0"),
    ("lots", "ram", "256KiB"),
    ("soon", "runtime", "1.5x"),
    (True, "ram", "not a budget"),
    ([1], "flash", "not a budget"),
])
def test_parse_budget_rejects(value, what, needle):
    with pytest.raises(ValueError) as e:
        parse_budget(value, what)
    assert needle in str(e.value)


def test_parse_budget_unknown_what():
    with pytest.raises(ValueError, match="ram, flash, runtime"):
        parse_budget("1MiB", "disk")


@pytest.mark.parametrize("n, text", [
    (0, "0 B"), (512, "512 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (262144, "256.0 KiB"),
    (1048575, "1.0 MiB"), (1572864, "1.5 MiB"), (3 * 2**30, "3.0 GiB"), (5 * 2**40, "5.0 TiB"),
    (-2048, "-2.0 KiB"),
])
def test_format_bytes(n, text):
    assert format_bytes(n) == text


@given(st.integers(min_value=1024, max_value=2**45))
def test_format_bytes_reads_back_within_rounding(n):
    text = format_bytes(n)
    number, unit = text.split()
    scale = {"KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}[unit]
    assert abs(parse_bytes(text.replace(" ", "")) - n) <= 0.05 * scale + 1
    assert 1.0 <= float(number) < 1024


@pytest.mark.parametrize("j, text", [
    (0, "0 J"), (1e-10, "0.10 nJ"), (1.234e-6, "1.23 µJ"), (0.00123, "1.23 mJ"),
    (0.0009997, "1.00 mJ"), (12.34, "12.3 J"), (999.96, "1.00 kJ"), (-0.5, "-500 mJ"),
    (1e-7, "100 nJ"),
])
def test_format_energy(j, text):
    assert format_energy(j) == text


@pytest.mark.parametrize("s, text", [
    (0, "0 s"), (1e-7, "100 ns"), (2.5e-5, "25.0 µs"), (0.0123, "12.3 ms"), (1.5, "1.50 s"),
    (90, "1.50 min"), (3600, "1.00 h"), (7200.5, "2.00 h"),
])
def test_format_time(s, text):
    assert format_time(s) == text


def test_format_rejects_non_numbers():
    with pytest.raises(ValueError):
        format_bytes("12")
    with pytest.raises(ValueError):
        format_bytes(math.nan)
