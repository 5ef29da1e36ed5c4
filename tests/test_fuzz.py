"""Fuzzing the loaders and the CLI's size, budget and time options (issue #11).

Seeded (derandomized) and bounded: every input either loads / runs or raises the loader's own
error type (ProblemError, ScheduleError, ProfileError), never another exception; the CLI exits 0,
1 or 2 with one line on stderr and no traceback, and a failed run leaves the existing output and
no temporary file behind.
"""

import json
import math
import tomllib

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from poet.cli import main  # noqa: E402
from poet.costs import reprice  # noqa: E402
from poet.profiles import ProfileError, load_profile  # noqa: E402
from solver import Problem, Schedule, simulate, store_all  # noqa: E402
from solver.errors import ProblemError, ScheduleError  # noqa: E402

FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))

numbers = st.one_of(
    st.integers(min_value=-2**70, max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, -1, 1, 1e308, -1e308, 5e-324, 1e-300, 2**53, 2**63, 2**64, 10**400]),
)
scalars = st.one_of(numbers, st.booleans(), st.none(),
                    st.text(max_size=12), st.sampled_from(["nan", "inf", "-inf", "1e400"]))
json_values = st.recursive(scalars, lambda kids: st.lists(kids, max_size=4)
                           | st.dictionaries(st.text(max_size=6), kids, max_size=4), max_leaves=12)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzzbase")
    assert main(["inspect", "mlp", "--device", "nrf52840", "--out", str(d / "p.json")]) == 0
    problem = Problem.load(d / "p.json")
    return problem, problem.to_dict(), store_all(problem).to_dict()


def _paths(obj, prefix=()):
    """Every (path, value) of a JSON document, containers included."""
    yield prefix, obj
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


def _set(obj, path, value):
    if not path:
        return value
    obj = json.loads(json.dumps(obj))
    cur = obj
    for p in path[:-1]:
        cur = cur[p]
    cur[path[-1]] = value
    return obj


@st.composite
def mutated(draw, doc):
    """`doc` with up to three leaves or containers replaced by random JSON values."""
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p, _ in _paths(doc)]
        path = paths[draw(st.integers(0, len(paths) - 1))]
        doc = _set(doc, path, draw(json_values))
    return doc


def _text(doc, draw_raw):
    return draw_raw if draw_raw is not None else json.dumps(doc, allow_nan=True)


@FUZZ
@given(data=st.data())
def test_problem_loader(base, tmp_path_factory, data):
    problem, pdoc, _ = base
    doc = data.draw(mutated(pdoc))
    path = tmp_path_factory.mktemp("p") / "p.json"
    path.write_text(json.dumps(doc, allow_nan=True))
    try:
        p = Problem.load(path)
    except ProblemError:
        return
    r = simulate(p, store_all(p))          # what loads must price finitely
    assert math.isfinite(r.energy_j) and math.isfinite(r.time_s)


@FUZZ
@given(data=st.data())
def test_schedule_loader(base, tmp_path_factory, data):
    problem, _, sdoc = base
    doc = data.draw(mutated(sdoc))
    path = tmp_path_factory.mktemp("s") / "s.json"
    path.write_text(json.dumps(doc, allow_nan=True))
    try:
        s = Schedule.load(path)
    except ScheduleError:
        return
    try:
        simulate(problem, s)
    except ScheduleError:
        pass


@FUZZ
@given(raw=st.binary(max_size=64))
def test_loaders_on_raw_bytes(tmp_path_factory, raw):
    d = tmp_path_factory.mktemp("raw")
    for name, load, err in (("p.json", Problem.load, ProblemError),
                            ("s.json", Schedule.load, ScheduleError),
                            ("x.toml", load_profile, ProfileError)):
        (d / name).write_bytes(raw)
        try:
            load(d / name)
        except err:
            pass


def _toml(doc) -> str:
    """A small TOML writer for a profile's shape: top-level scalars and lists, then tables."""
    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int):
            return repr(v)
        if isinstance(v, float):
            return repr(v) if math.isfinite(v) else ("nan" if v != v else
                                                     ("inf" if v > 0 else "-inf"))
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        raise TypeError(v)
    lines = [f"{k} = {value(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    for k, table in doc.items():
        if isinstance(table, dict):
            lines.append(f"[{k}]")
            lines += [f"{kk} = {value(vv)}" for kk, vv in table.items()]
    return "\n".join(lines) + "\n"


profile_values = st.one_of(numbers, st.sampled_from([math.inf, -math.inf, "1e400", "0KiB",
                                                     "-1MiB", "8PiB", "", "ram", True]))


@pytest.fixture(scope="module")
def profile_doc():
    from pathlib import Path
    import poet
    root = Path(poet.__file__).resolve().parent.parent / "profiles"
    return tomllib.loads((root / "nrf52840.toml").read_text())


@FUZZ
@given(data=st.data())
def test_profile_loader_and_pricing(base, profile_doc, tmp_path_factory, data):
    problem = base[0]
    doc = json.loads(json.dumps(profile_doc))
    for _ in range(data.draw(st.integers(1, 3))):
        section = data.draw(st.sampled_from(sorted(k for k, v in doc.items()
                                                   if isinstance(v, dict))))
        key = data.draw(st.sampled_from(sorted(doc[section])))
        doc[section][key] = data.draw(profile_values)
    path = tmp_path_factory.mktemp("prof") / "x.toml"
    path.write_text(_toml(doc))
    try:
        profile = load_profile(path)
    except ProfileError:
        return
    priced = reprice(problem, profile)        # a profile that loads prices finitely
    assert math.isfinite(priced.store_all_energy_j) and math.isfinite(priced.store_all_time_s)


size_texts = st.one_of(
    st.sampled_from(["1e400", "-1", "0", "0x", "1e300x", "0.5x", "1.5x", "nan", "inf", "device",
                     "256KiB", "1e20", "9" * 40, "1e-400", "2**63", "１", "²", "1e400s",
                     "250ms", "", " ", "none"]),
    st.builds(lambda n, u: f"{n}{u}", numbers, st.sampled_from(["", "x", "KiB", "MB", "s",
                                                                "ms", "B", "k"])),
    st.text(max_size=8))


@FUZZ
@given(ram=size_texts, runtime=size_texts, flash=size_texts, limit=size_texts)
def test_cli_sizes_budgets_and_times(base, tmp_path_factory, capsys, ram, runtime, flash, limit):
    d = tmp_path_factory.mktemp("cli")
    Problem.save(base[0], d / "p.json")
    out = d / "s.json"
    out.write_text("keep")
    argv = ["solve", str(d / "p.json"), "--strategy", "dtr", "--out", str(out),
            f"--ram={ram}", f"--runtime={runtime}", f"--flash={flash}", f"--time-limit={limit}"]
    try:
        code = main(argv)
    except SystemExit as e:             # argparse's usage errors
        code = e.code
    captured = capsys.readouterr()
    assert code in (0, 1, 2)
    assert "Traceback" not in captured.err
    if code == 2:
        assert captured.err.count("\n") == 1, captured.err
        assert out.read_text() == "keep"
    if code == 0:
        Schedule.load(out)
    assert sorted(p.name for p in d.iterdir()) == ["p.json", "s.json"]
