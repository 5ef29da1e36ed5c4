"""The sweep cache is input like any other (poet/_sweep.py check_cached_point, sweepfiles.py
load_point): a cached point that does not read, is for other inputs, or whose schedule does not
simulate to its row is solved again, with a warning naming the file."""

import json
import logging
from pathlib import Path

import pytest

from poet import SweepResult, sweep
from solver import Node, Problem

STRATEGIES = ["store_all", "greedy_paging", "paging"]


def node(i, kind, out, cj):
    return Node(i, f"n{i}", kind, out, compute_s=cj / 10, compute_j=cj, pagein_s=0.01,
                pagein_j=0.5, pageout_s=0.01, pageout_j=0.7)


def four():
    """f0 -> f1 -> loss -> bwd, bwd also reads f0; static 1000 B (min feasible 1200 B, store-all
    peak 1210 B; tests/test_sweep.py has the hand count)."""
    nodes = [node(0, "forward", 100, 1.0), node(1, "forward", 100, 2.0),
             node(2, "loss", 10, 3.0), node(3, "backward", 10, 4.0)]
    return Problem(nodes, [(0, 1), (1, 2), (2, 3), (0, 3)], static_bytes=1000, name="four@dev")


def run(out):
    return sweep(four(), budgets=[1200, 1210], strategies=STRATEGIES, out_dir=out,
                 executor="serial", progress=False)


def without_solve_s(rows):
    return [{k: v for k, v in r.items() if k != "solve_s"} for r in rows]


def cache_file(out: Path, strategy: str, budget: int) -> Path:
    """The cache file of one point, found by the inputs it records."""
    for p in (out / "cache").glob("*.json"):
        inputs = json.loads(p.read_text())["inputs"]
        if inputs["strategy"] == strategy and inputs["ram_budget_bytes"] == budget:
            return p
    raise AssertionError(f"no cache file for {strategy} at {budget}")


def edit(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


@pytest.fixture
def first(tmp_path):
    res = run(tmp_path)
    assert res.n_solved == 6 and res.warnings == []
    # greedy paging at 1200 B moves f0 to flash and back: 10 J of compute + 0.7 + 0.5 J
    by = {(r["strategy"], r["ram_budget_bytes"]): r for r in res.rows}
    assert by["greedy_paging", 1200]["energy_j"] == pytest.approx(11.2)
    assert by["greedy_paging", 1200]["page_ins"] == 1
    return res, tmp_path


def schedule_is_a_string(d):
    d["schedule"] = "compute everything"


def energy_halved(d):                    # plausible: a number of the right type and size
    d["row"]["energy_j"] = d["row"]["energy_j"] / 2


def peak_lowered(d):
    d["row"]["peak_ram_bytes"] -= 10


def time_changed(d):
    d["row"]["time_s"] = d["row"]["time_s"] * 1.01


def page_in_dropped(d):                  # the schedule no longer gets f0 back before bwd
    d["schedule"]["instructions"] = [ins for ins in d["schedule"]["instructions"]
                                     if ins[0] != "page_in"]


def other_fingerprint(d):
    d["inputs"]["problem_fingerprint"] = "sha256:" + "0" * 64


def schedule_fingerprint(d):
    d["schedule"]["problem_fingerprint"] = "sha256:" + "0" * 64


def schedule_removed(d):                 # a feasible row without its schedule
    d["schedule"] = None


def status_is_a_list(d):
    d["row"]["status"] = ["feasible"]


@pytest.mark.parametrize("tamper, why", [
    (schedule_is_a_string, "does not simulate: ScheduleError: a schedule must be a JSON object"),
    (energy_halved, "its row's energy_j is"),
    (peak_lowered, "its row's peak_ram_bytes is 1190; the schedule simulates to 1200"),
    (time_changed, "its row's time_s is"),
    (page_in_dropped, "does not simulate"),
    (other_fingerprint, "solved for another problem"),
    (schedule_fingerprint, "schedule was made for another problem"),
    (schedule_removed, "status 'feasible' but no schedule"),
    (status_is_a_list, "status ['feasible'] and a schedule"),
])
def test_a_cached_point_that_does_not_check_out_is_solved_again(first, tamper, why, caplog):
    res, out = first
    path = cache_file(out, "greedy_paging", 1200)
    edit(path, tamper)
    with caplog.at_level(logging.WARNING, logger="poet.sweep"):
        again = run(out)
    assert again.n_cached == 5 and again.n_solved == 1
    assert without_solve_s(again.rows) == without_solve_s(res.rows)
    assert len(again.warnings) == 1 and str(path) in again.warnings[0], again.warnings
    assert why in again.warnings[0], again.warnings[0]
    assert [r.getMessage() for r in caplog.records if r.name == "poet.sweep"] == again.warnings
    # the file was rewritten with the new solve: a third run trusts it
    third = run(out)
    assert third.n_cached == 6 and third.warnings == []
    assert json.loads(path.read_text())["row"]["energy_j"] == pytest.approx(11.2)


@pytest.mark.parametrize("content, why", [
    (b'{"format": "poet-sweep-point/1", "key": ', "not a valid sweep cache JSON file"),
    (b"[" * 100_000 + b"]" * 100_000, "not a valid sweep cache JSON file"),   # too deep
    (b'{"format": "poet-sweep-point/1", "error": "\xff\xfe"}', "it is not UTF-8 text"),
    (b'"just a string"', "not a sweep cache file"),
])
def test_an_unreadable_cache_file_is_solved_again(first, content, why):
    res, out = first
    path = cache_file(out, "paging", 1210)
    path.write_bytes(content)
    again = run(out)
    assert again.n_cached == 5 and again.n_solved == 1
    assert without_solve_s(again.rows) == without_solve_s(res.rows)
    assert len(again.warnings) == 1 and str(path) in again.warnings[0]
    assert why in again.warnings[0], again.warnings[0]
    assert run(out).n_cached == 6


def test_a_bad_seed_schedule_does_not_reach_poet(tmp_path):
    """POET starts from the cached paging schedule: a tampered one is solved again first."""
    kw = dict(budgets=[1200], strategies=["poet", "paging"], out_dir=tmp_path,
              executor="serial", progress=False)
    res = sweep(four(), **kw)
    edit(cache_file(tmp_path, "paging", 1200), schedule_is_a_string)
    edit(cache_file(tmp_path, "poet", 1200), energy_halved)
    again = sweep(four(), **kw)
    assert again.n_solved == 2 and len(again.warnings) == 2
    assert without_solve_s(again.rows) == without_solve_s(res.rows)


def test_load_skips_a_bad_cached_schedule(first):
    res, out = first
    path = cache_file(out, "greedy_paging", 1200)
    edit(path, schedule_is_a_string)
    loaded = SweepResult.load(out)
    assert loaded.rows == res.rows
    assert loaded.schedule("greedy_paging", 1200) is None     # no schedules/ copy to fall back on
    assert loaded.schedule("greedy_paging", 1210) is not None
