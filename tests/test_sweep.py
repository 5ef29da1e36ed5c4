"""poet.sweep (poet/_sweep.py, budgets.py, runner.py, sweepfiles.py): budgets, the table, the
cache, interruption and resumption, executors."""

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import solver
from poet import sweep
from poet._sweep import Point, SolveOptions, SweepResult, point_key, poet_le_all
from poet.budgets import resolve_budgets, resolve_runtime_budgets
from poet.sweepfiles import COLUMNS, read_csv
from solver import STRATEGIES, Node, Problem
from solver.generators import random_problem

REPO = Path(__file__).resolve().parents[1]


def node(i, kind, out, cj):
    return Node(i, f"n{i}", kind, out, compute_s=cj / 10, compute_j=cj, pagein_s=0.01,
                pagein_j=0.5, pageout_s=0.01, pageout_j=0.7)


@pytest.fixture
def four():
    """f0 -> f1 -> loss -> bwd, bwd also reads f0; static 1000 B.
    min feasible: static + bwd's working set (f0 100 + loss 10 + bwd 10) = 1120... and f1's
    (f0 100 + f1 100) = 1200 is larger: 1200. Store-all peak: f0, f1 and the loss resident
    while the loss is computed = 1210."""
    nodes = [node(0, "forward", 100, 1.0), node(1, "forward", 100, 2.0),
             node(2, "loss", 10, 3.0), node(3, "backward", 10, 4.0)]
    return Problem(nodes, [(0, 1), (1, 2), (2, 3), (0, 3)], static_bytes=1000, name="four@dev")


def small():
    """A 14-node random step with a real range of budgets (23552 .. 48128 bytes)."""
    return random_problem(6, T=14)


def without_solve_s(rows):
    return [{k: v for k, v in r.items() if k != "solve_s"} for r in rows]


# ---- budgets --------------------------------------------------------------------------------

def test_device_budgets_read_the_recorded_or_given_device(four):
    """'device' is the usable RAM (RAM less the reserve) and the paging flash of the device the
    problem records or the one given; without either it is one line naming the argument."""
    from poet.budgets import resolve_flash_budget
    from poet.costs import apply_budgets
    from poet.profiles import load_profile

    nrf, rpi = load_profile("nrf52840"), load_profile("rpi4")
    for bad, what in ((lambda: resolve_budgets(four, "device"), "budgets: item 0 ('device'): 'device'"),
                      (lambda: resolve_flash_budget(four, "device"), "flash_budget='device'"),
                      (lambda: apply_budgets(four, ram_budget="device"), "a 'device' budget")):
        with pytest.raises(ValueError, match=rf"^{re.escape(what)} needs a device: this problem names none"):
            bad()
    made = Problem(four.nodes, four.edges, static_bytes=1000, extra={"device": "nrf52840"})
    assert resolve_budgets(made, "device") == [nrf.usable_ram_bytes] == [224 * 1024]
    assert resolve_flash_budget(made, "device") == nrf.flash_bytes
    assert resolve_flash_budget(made, "device", "rpi4") == rpi.flash_bytes != nrf.flash_bytes
    got = apply_budgets(made, ram_budget="device", flash_budget="device")
    assert (got.ram_budget_bytes, got.flash_budget_bytes) == (224 * 1024, nrf.flash_bytes)
    assert apply_budgets(four, "rpi4", ram_budget="device").ram_budget_bytes == rpi.usable_ram_bytes
    tampered = Problem(four.nodes, four.edges, static_bytes=1000, extra={"device": "../evil.toml"})
    with pytest.raises(ValueError, match="not a built-in profile name"):
        resolve_budgets(tampered, "device")


def test_resolve_budgets(four):
    assert solver.min_feasible_ram(four) == 1200 and solver.store_all_peak(four) == 1210
    assert resolve_budgets(four, 3) == [1200, 1205, 1210]
    assert resolve_budgets(four, "3") == [1200, 1205, 1210]
    assert resolve_budgets(four, 50) == list(range(1200, 1211))      # whole bytes, no repeats
    assert resolve_budgets(four, "1200:1210:3") == [1200, 1205, 1210]
    assert resolve_budgets(four, "min:peak:2") == [1200, 1210]
    assert resolve_budgets(four, "1KiB:2KiB:3") == [1024, 1536, 2048]
    assert resolve_budgets(four, "1205B, 0.5x") == [605, 1205]       # 0.5 x 1210
    assert resolve_budgets(four, [1300, "1KiB", "peak"]) == [1024, 1210, 1300]


@pytest.mark.parametrize("bad, match", [
    (1, r"budgets: count: the count must be 2\.\.1000"),
    (262144, r"write it with a unit, '262144B'"),
    ("1:2", "three fields"),
    ("2KiB:1KiB:3", "stop .* is below start"),
    ("12 apples", r"item 0 \('12 apples'\): RAM budget: cannot read"),
    (True, "is not a budget list"),
    ([], "empty list"),
    (2.5, "is not a budget list"),
])
def test_resolve_budgets_rejects(four, bad, match):
    with pytest.raises(ValueError, match=match):
        resolve_budgets(four, bad)


def test_resolve_runtime_budgets(four):
    # store-all time = (1 + 2 + 3 + 4) / 10 = 1 s
    assert resolve_runtime_budgets(four, None) == [None]
    assert resolve_runtime_budgets(four, "1.5x,none,250ms") == [0.25, 1.5, None]
    assert resolve_runtime_budgets(four, [2, "2s"]) == [2.0]
    with pytest.raises(ValueError, match="runtime_budgets: item 0: runtime budget"):
        resolve_runtime_budgets(four, ["fast"])


def test_point_key_covers_the_inputs(four):
    o = SolveOptions()
    k = point_key(four.fingerprint, Point("poet", 1200), None, o)
    assert len(k) == 64
    others = {point_key(four.fingerprint, Point("remat", 1200), None, o),
              point_key(four.fingerprint, Point("poet", 1201), None, o),
              point_key(four.fingerprint, Point("poet", 1200, 2.0), None, o),
              point_key(four.fingerprint, Point("poet", 1200), 4096, o),
              point_key(four.fingerprint, Point("poet", 1200), None, SolveOptions(gap=0.0)),
              point_key("sha256:00", Point("poet", 1200), None, o)}
    assert k not in others and len(others) == 6
    # the name and budgets of the problem are not part of the fingerprint
    assert point_key(four.with_budgets(name="x", ram_budget_bytes=5).fingerprint,
                     Point("poet", 1200), None, o) == k


def test_poet_le_all():
    def r(s, b, e):
        return {"strategy": s, "ram_budget_bytes": b, "runtime_budget_s": None, "energy_j": e}
    rows = [r("poet", 1, 1.0), r("remat", 1, 1.0 + 1e-12), r("dtr", 1, None),   # True
            r("poet", 2, 1.0 + 1e-6), r("remat", 2, 1.0),                       # False
            r("poet", 3, None), r("remat", 3, 2.0),                             # False
            r("poet", 4, None), r("remat", 4, None),                            # True (vacuous)
            r("remat", 5, 1.0),                                                 # None (no POET)
            r("poet", 6, 1.0 + 1e-10), r("paging", 6, 1.0)]                     # within 1e-9
    poet_le_all(rows)
    got = {x["ram_budget_bytes"]: x["poet_le_all"] for x in rows}
    assert got == {1: True, 2: False, 3: False, 4: True, 5: None, 6: True}


def test_bad_arguments_fail_before_solving(four, tmp_path):
    with pytest.raises(ValueError, match="strategies: \\['belady'\\]; allowed: poet, remat"):
        sweep(four, strategies=["poet", "belady"], progress=False)
    with pytest.raises(ValueError, match="time_limit_s must be"):
        sweep(four, time_limit_s=0, progress=False)
    with pytest.raises(ValueError, match="executor must be None, 'process', 'serial', 'dask'"):
        sweep(four, budgets=2, executor="threads", progress=False)
    with pytest.raises(ValueError, match="device is required to sweep a model"):
        sweep("mlp", progress=False)
    with pytest.raises(ValueError, match="save_schedules=True needs out_dir"):
        sweep(four, save_schedules=True, progress=False)
    with pytest.raises(TypeError, match="problem_or_spec must be"):
        sweep(42, progress=False)
    assert not list(tmp_path.iterdir())


def test_a_failed_point_is_an_error_row_and_is_retried(four, tmp_path):
    from solver.backends import available_backends
    if "gurobi" in available_backends():
        pytest.skip("Gurobi is available here, so the MILP does not fail")
    kw = dict(budgets=[1200], strategies=["paging", "greedy_paging"], backend="gurobi",
              out_dir=tmp_path, executor="serial", progress=False)
    first = sweep(four, **kw)
    paging, greedy = first.rows
    assert paging["status"] == "error" and "backend 'gurobi' is not available" in paging["error"]
    assert paging["energy_j"] is None and paging["poet_le_all"] is None
    # greedy paging pages f0 out and back in: 1 + 2 + 3 + 4 J of compute + 0.7 + 0.5 J
    assert greedy["status"] == "feasible" and greedy["energy_j"] == pytest.approx(11.2)
    assert first.n_solved == 1 and len(list((tmp_path / "cache").glob("*.json"))) == 1
    again = sweep(four, **kw)                   # the error was not cached: it is tried again
    assert again.n_cached == 1 and again.n_solved == 0 and again.rows[0]["status"] == "error"


def test_progress_bar_on_stderr(four, capsys):
    sweep(four, budgets=[1210], strategies=["store_all"], executor="serial", progress=True)
    err = capsys.readouterr().err
    assert "sweep" in err and "1/1" in err


def test_any_executor_instance(four):
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max_workers=1) as pool:
        res = sweep(four, budgets=[1210, 1200], strategies=["store_all", "greedy_paging"],
                    executor=pool, progress=False)
        assert pool.submit(int, "3").result() == 3     # the caller's executor is left running
    # at 1200 B store-all does not fit and greedy paging pays 0.7 + 0.5 J to move f0; at the
    # store-all peak (1210 B) both cost one pass, 1 + 2 + 3 + 4 = 10 J
    assert [(r["strategy"], r["energy_j"]) for r in res.rows] == [
        ("store_all", None), ("greedy_paging", pytest.approx(11.2)),
        ("store_all", pytest.approx(10.0)), ("greedy_paging", pytest.approx(10.0))]


def test_worker_modules_do_not_import_torch():
    code = "import sys, poet._sweep, poet.runner, solver.solve; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0


def test_poet_sweep_is_the_function_whatever_was_imported_first():
    """No callable module: poet.sweep is the function, also after its module was imported."""
    code = ("import inspect, poet._sweep, poet.runner, poet.budgets, poet.sweepfiles, poet; "
            "assert inspect.isfunction(poet.sweep) and poet.sweep is poet._sweep.sweep; "
            "assert poet.SweepResult is poet._sweep.SweepResult")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_solve_options_are_checked_by_solver_options():
    for bad, match in [(dict(threads=0), "threads must be a whole number from 1 to 256"),
                       (dict(threads=257), "threads must be a whole number from 1 to 256"),
                       (dict(gap=1.0), "gap must be a number in \\[0, 1\\)"),
                       (dict(time_limit_s=float("inf")), "time_limit_s must be a finite number"),
                       (dict(backend=""), "backend must be a solver backend name")]:
        with pytest.raises(ValueError, match=match):
            SolveOptions(**bad)
    assert SolveOptions(threads=None, gap=0.0).to_dict()["threads"] is None


# (poet.units may refuse some of these first; either way one ValueError naming budgets)
@pytest.mark.parametrize("bad, match", [
    ("1e400", r"^budgets: item 0 \('1e400'\): .*2\*\*53"),
    ([10 ** 400], r"^budgets: item 0 .*2\*\*53"),
    ("1210B,1e30", r"^budgets: item 1 \('1e30'\): .*2\*\*53"),
    ("1KiB:1e400:3", r"^budgets: range stop: .*2\*\*53"),
    ("1e300x", r"^budgets: item 0 \('1e300x'\): "),            # 1e300 x 1210 B
    ("1e1000000", r"^budgets: item 0 \('1e1000000'\): "),      # decimal.Overflow
    ("1e-30x", r"^budgets: item 0 \('1e-30x'\): comes to 0 bytes"),
])
def test_resolve_budgets_rejects_overflow(four, bad, match):
    with pytest.raises(ValueError, match=match):
        resolve_budgets(four, bad)
    assert resolve_budgets(four, [2 ** 53]) == [2 ** 53]            # the largest is allowed


def test_a_multiple_of_a_huge_peak_is_capped():
    big = Problem([node(0, "forward", 100, 1.0), node(1, "loss", 10, 1.0),
                   node(2, "backward", 10, 1.0)], [(0, 1), (1, 2)], static_bytes=2 ** 50)
    assert resolve_budgets(big, "7x") == [7 * (2 ** 50 + 110)]     # 7 x the store-all peak
    with pytest.raises(ValueError, match=r"^budgets: item 0 \('9x'\): 10133099161584606 bytes "
                                         r"is more than the largest budget, 2\*\*53 bytes"):
        resolve_budgets(big, "9x")


@pytest.mark.parametrize("bad, match", [
    ("1e400s", r"^runtime_budgets: item 0"),
    (["2s", "1e1000000s"], r"^runtime_budgets: item 1"),
])
def test_resolve_runtime_budgets_rejects_overflow(four, bad, match):
    with pytest.raises(ValueError, match=match):
        resolve_runtime_budgets(four, bad)


def test_bad_budgets_leave_the_out_folder_alone(four, tmp_path):
    kw = dict(strategies=["store_all", "greedy_paging"], out_dir=tmp_path, executor="serial",
              progress=False)
    sweep(four, budgets=[1200, 1210], **kw)

    def snapshot():
        return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in tmp_path.rglob("*")
                if p.is_file()}
    before = snapshot()
    assert len(before) == 3 + 4             # problem.json, sweep.csv, sweep.json, 4 cache files
    for budgets, runtime in [("1e400", None), ("1210B,1e30", None), ([1210], "1e400s")]:
        with pytest.raises(ValueError, match="budgets: item"):
            sweep(four, budgets=budgets, runtime_budgets=runtime, **kw)
    assert snapshot() == before


@pytest.mark.parametrize("bad", [0, -1, True, 2.5, "2"])
def test_workers_must_be_a_positive_int(four, bad, tmp_path):
    with pytest.raises(ValueError, match=r"workers must be a whole number >= 1 \(worker "
                                         r"processes\) or None \(one per core\), got "):
        sweep(four, budgets=2, workers=bad, out_dir=tmp_path, progress=False)
    assert not list(tmp_path.iterdir())


def test_workers_apply_to_the_process_pool_only(four):
    with pytest.raises(ValueError, match="workers=2 contradicts executor='serial'"):
        sweep(four, budgets=2, workers=2, executor="serial", progress=False)
    with pytest.raises(ValueError, match="workers applies to the process pool"):
        sweep(four, budgets=2, workers=2, scheduler="local", progress=False)
    one = sweep(four, budgets=[1200], strategies=["greedy_paging"], workers=1,
                executor="serial", progress=False)
    assert one.rows[0]["energy_j"] == pytest.approx(11.2)      # 10 J + page f0 out and in


def test_workers_set_the_pool_size():
    from poet._sweep import _SweepRunner
    for workers, n_tasks, size in [(3, 10, 3), (3, 2, 2), (1, 10, 1)]:
        r = _SweepRunner(None, None, n_tasks, workers)
        try:
            assert r.workers == size and r.executor._max_workers == size
        finally:
            r.close(interrupted=False)
    r = _SweepRunner(None, None, 1000, None)               # default: one per core
    try:
        assert r.workers == (os.cpu_count() or 1)
    finally:
        r.close(interrupted=False)


def test_a_pool_of_one_gives_the_serial_table(four):
    kw = dict(budgets=[1200, 1210], strategies=["paging", "greedy_paging"], progress=False)
    pool = sweep(four, workers=1, **kw)
    serial = sweep(four, executor="serial", **kw)
    assert without_solve_s(pool.rows) == without_solve_s(serial.rows)


def _children(pid: int) -> list[int]:
    """The pids whose parent is `pid`, from /proc/*/stat (field 4; the name in field 2 may hold
    spaces, so split after its closing parenthesis)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    """A process that exists and is not a zombie (a dead worker waiting to be reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc for worker pids")
def test_workers_die_with_a_killed_sweep(tmp_path):
    """SIGKILL the `poet sweep` process in the middle of 60-node MILPs (each takes tens of
    seconds): its two pool workers are gone within 3 s."""
    from solver.generators import random_problem
    random_problem(3, T=60).save(tmp_path / "p.json")
    proc = subprocess.Popen(
        [sys.executable, "-m", "poet.cli", "sweep", str(tmp_path / "p.json"), "--budgets", "4",
         "--strategies", "remat,poet", "--workers", "2", "--gap", "0", "--time-limit", "60",
         "--out", str(tmp_path / "out"), "--json"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None and len(workers) < 2:
            workers = [c for c in _children(proc.pid)
                       if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]
            time.sleep(0.05)
        assert proc.poll() is None and len(workers) == 2, (workers, proc.stderr.read()[-2000:]
                                                           if proc.poll() is not None else "")
        time.sleep(0.5)                            # the workers are inside their solves
        assert all(_alive(w) for w in workers)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and any(_alive(w) for w in workers):
            time.sleep(0.05)
        assert not [w for w in workers if _alive(w)]
    finally:
        for w in workers:                          # never leave a solve burning a shared core
            if _alive(w):
                os.kill(w, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()


# ---- the sweep itself -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """The small problem over 4 budgets, every strategy, through the default process pool."""
    out = tmp_path_factory.mktemp("sweep")
    res = sweep(small(), budgets=4, out_dir=out, progress=False, save_schedules=True, gap=0.0)
    return res, out


def test_sweep_table(swept):
    res, out = swept
    p = small()
    e_all = p.store_all_energy_j
    budgets = [23552, 31744, 39936, 48128]          # 23552 + k * (48128 - 23552) / 3
    assert res.budgets == budgets
    assert len(res.rows) == 4 * len(STRATEGIES) and res.n_solved == 28 and res.n_cached == 0
    assert [(r["ram_budget_bytes"], r["strategy"]) for r in res.rows] == \
        [(b, s) for b in budgets for s in STRATEGIES]
    by = {(r["strategy"], r["ram_budget_bytes"]): r for r in res.rows}
    for r in res.rows:
        assert set(r) == set(COLUMNS)
        assert r["store_all_energy_j"] == e_all
        assert r["min_feasible_ram_bytes"] == 23552 and r["store_all_peak_bytes"] == 48128
        assert r["status"] in ("optimal", "feasible", "infeasible"), r
        if r["energy_j"] is not None:
            assert r["peak_ram_bytes"] <= r["ram_budget_bytes"]
            assert r["energy_j"] == pytest.approx(r["compute_j"] + r["pagein_j"]
                                                  + r["pageout_j"], rel=1e-12)
            assert r["overhead_pct"] == pytest.approx((r["energy_j"] - e_all) / e_all * 100)
            if r["recomputes"] == 0 and r["page_outs"] == 0:   # one pass: no rounding slack
                assert r["energy_j"] == e_all and r["overhead_pct"] == 0.0, r
    # store-all fits only at its own peak, where it costs exactly one pass
    assert [by["store_all", b]["status"] for b in budgets] == ["infeasible"] * 3 + ["optimal"]
    assert by["store_all", 48128]["energy_j"] == pytest.approx(e_all, rel=1e-12)
    # the row's store-all energy is the simulator's sum for store-all: no overhead, exactly
    assert by["store_all", 48128]["energy_j"] == e_all
    assert by["store_all", 48128]["overhead_pct"] == 0.0
    for s in ("poet", "remat", "paging", "dtr", "greedy_paging"):
        assert by[s, 48128]["energy_j"] == pytest.approx(e_all, rel=1e-12)
    # paging reaches the minimum with unlimited flash, so POET does too
    assert by["poet", 23552]["energy_j"] is not None
    assert by["greedy_paging", 23552]["energy_j"] is not None
    # POET is never worse than remat-only, paging-only or any baseline (values, not the column)
    for b in budgets:
        e = by["poet", b]["energy_j"]
        for s in STRATEGIES[1:]:
            other = by[s, b]["energy_j"]
            if other is not None:
                assert e <= other * (1 + 1e-9), (s, b, e, other)
        assert all(by[s, b]["poet_le_all"] is True for s in STRATEGIES)
    # infeasible rows have no numbers but say why
    r = by["store_all", 23552]
    assert r["energy_j"] is None and r["peak_ram_bytes"] is None and "48128" in r["error"]


def test_sweep_files(swept):
    res, out = swept
    assert res.csv_path == out / "sweep.csv" and res.json_path == out / "sweep.json"
    header = (out / "sweep.csv").read_text().splitlines()[0]
    assert header.split(",") == list(COLUMNS)
    assert without_solve_s(read_csv(out / "sweep.csv")) == without_solve_s(res.rows)
    assert read_csv(out / "sweep.csv") == res.rows          # floats written with every digit
    infeasible = [line for line in (out / "sweep.csv").read_text().splitlines()
                  if ",infeasible," in line]
    assert len(infeasible) == sum(r["status"] == "infeasible" for r in res.rows) >= 3
    assert all(",infeasible,,,,,,,,,,,," in line for line in infeasible)   # 12 empty numbers
    data = json.loads((out / "sweep.json").read_text())
    assert data["format"] == "poet-sweep/1" and data["columns"] == list(COLUMNS)
    assert data["rows"][0].keys() >= set(COLUMNS)
    assert data["problem_fingerprint"] == small().fingerprint
    assert len(list((out / "cache").glob("*.json"))) == 28
    feasible = [r for r in res.rows if r["energy_j"] is not None]
    assert len(list((out / "schedules").glob("*.json"))) == len(feasible)
    assert not list(out.rglob(".*.tmp"))
    loaded = SweepResult.load(out)
    assert loaded.rows == res.rows and loaded.problem.fingerprint == small().fingerprint
    s = loaded.schedule("poet", 23552)
    rep = solver.simulate(small().with_budgets(ram_budget_bytes=23552), s)
    assert rep.energy_j == pytest.approx(loaded.rows[0]["energy_j"], rel=1e-12)


def test_sweep_again_reads_the_cache(swept):
    res, out = swept
    mtimes = {p: p.stat().st_mtime_ns for p in (out / "cache").glob("*.json")}
    again = sweep(small(), budgets=4, out_dir=out, progress=False, gap=0.0, executor="serial")
    assert again.n_solved == 0 and again.n_cached == 28
    assert again.rows == res.rows                           # solve_s included: kept from cache
    assert {p: p.stat().st_mtime_ns for p in (out / "cache").glob("*.json")} == mtimes
    # other solver options are other points
    other = sweep(small(), budgets=[48128], strategies=["store_all"], out_dir=out,
                  progress=False, gap=1e-3, executor="serial")
    assert other.n_solved == 1 and other.n_cached == 0


def test_sweep_in_memory_with_runtime_budgets():
    p = small()
    t_all = p.store_all_time_s
    res = sweep(p, budgets=[48128, 23552], strategies=["paging", "store_all"],
                runtime_budgets=["1x", None], executor="serial", progress=False)
    assert res.out_dir is None and res.csv_path is None
    keys = [(r["runtime_budget_s"], r["ram_budget_bytes"], r["strategy"]) for r in res.rows]
    assert keys == [(t_all, 23552, "paging"), (t_all, 23552, "store_all"),
                    (t_all, 48128, "paging"), (t_all, 48128, "store_all"),
                    (None, 23552, "paging"), (None, 23552, "store_all"),
                    (None, 48128, "paging"), (None, 48128, "store_all")]
    by = {k: r for k, r in zip(keys, res.rows)}
    # with the runtime held to the store-all time no paging fits below the peak
    assert by[t_all, 23552, "paging"]["status"] == "infeasible"
    assert by[None, 23552, "paging"]["energy_j"] > by[None, 48128, "paging"]["energy_j"]
    assert res.energy_table()[1] == {"ram_budget_bytes": 48128,
                                     "paging": by[None, 48128, "paging"]["energy_j"],
                                     "store_all": by[None, 48128, "store_all"]["energy_j"]}


def test_sweep_a_model_on_a_device(tmp_path):
    """The zoo MLP on nrf52840: traced once here; at the store-all peak every strategy but
    sqrt(n) costs one pass."""
    res = sweep("mlp", device="nrf52840", budgets="peak", out_dir=tmp_path, progress=False)
    assert res.budgets == [solver.store_all_peak(res.problem)]
    assert {r["model"] for r in res.rows} == {"mlp"} and {r["device"] for r in res.rows} == \
        {"nrf52840"}
    for r in res.rows:
        if r["strategy"] != "sqrtn":
            assert r["energy_j"] == pytest.approx(r["store_all_energy_j"], rel=1e-12)
    assert res.problem.ram_budget_bytes is None
    # the same problem priced for another device (repriced without tracing)
    again = sweep(tmp_path / "problem.json", device="rpi4", budgets="peak,0.99x",
                  strategies=["poet"], executor="serial", progress=False)
    assert {r["device"] for r in again.rows} == {"rpi4"}
    assert again.rows[0]["status"] == "infeasible"          # 0.99x of the peak < the minimum


# ---- interruption -----------------------------------------------------------------------------

SCRIPT = textwrap.dedent("""
    import sys
    from poet import sweep
    from solver.generators import random_problem
    if __name__ == "__main__":
        try:
            sweep(random_problem(6, T=14), budgets=20, strategies={strategies!r},
                  out_dir=sys.argv[1], progress=False, gap=0.0)
        except KeyboardInterrupt:
            sys.exit(130)
""")
KILL_STRATEGIES = ["poet", "remat", "paging", "greedy_paging"]


def test_interrupted_sweep_resumes_without_recomputing(tmp_path):
    out = tmp_path / "run"
    cache = out / "cache"
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT.format(strategies=KILL_STRATEGIES),
                             str(out)], cwd=REPO, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if cache.is_dir() and len(list(cache.glob("*.json"))) >= 6:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the sweep finished before it could be interrupted: " \
                                + proc.stderr.read()[-2000:]
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err[-2000:]
    assert not (out / "sweep.csv").exists()
    before = {p.name: p.read_bytes() for p in cache.glob("*.json")}
    total = 20 * len(KILL_STRATEGIES)
    assert 6 <= len(before) < total

    resumed = sweep(random_problem(6, T=14), budgets=20, strategies=KILL_STRATEGIES,
                    out_dir=out, progress=False, gap=0.0)
    # nothing finished was solved again: same count, same bytes (each file records its pid)
    assert resumed.n_cached == len(before) and resumed.n_solved == total - len(before)
    assert {p.name: p.read_bytes() for p in cache.glob("*.json") if p.name in before} == before
    pids = {json.loads(p.read_text())["pid"] for p in cache.glob("*.json")}
    assert os.getpid() in pids and len(pids) == 2
    fresh = sweep(random_problem(6, T=14), budgets=20, strategies=KILL_STRATEGIES,
                  out_dir=tmp_path / "fresh", progress=False, gap=0.0)
    assert without_solve_s(resumed.rows) == without_solve_s(fresh.rows)
    assert read_csv(out / "sweep.csv") == resumed.rows


KILL_WORKER = textwrap.dedent("""
    import json, sys
    from poet import sweep
    from solver.generators import random_problem
    if __name__ == "__main__":
        r = sweep(random_problem(6, T=14), budgets=20, strategies=["poet", "remat", "paging"],
                  out_dir=sys.argv[1], progress=False, gap=0.0)
        print(json.dumps({"solved": r.n_solved, "status": sorted({x["status"] for x in r.rows})}))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc for worker pids")
def test_a_killed_worker_is_replaced(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", KILL_WORKER, str(out)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None and not (
            (out / "cache").is_dir() and len(list((out / "cache").glob("*.json"))) >= 3):
        time.sleep(0.01)
    assert proc.poll() is None, "the sweep finished before a worker could be killed"
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    workers = [int(c) for c in children
               if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]
    assert workers, children
    os.kill(workers[0], signal.SIGKILL)
    stdout, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    assert "a worker process died; restarting the pool" in err
    summary = json.loads(stdout.strip().splitlines()[-1])
    # every point finished (none is an error row) and none was solved twice
    assert "error" not in summary["status"]
    assert len(list((out / "cache").glob("*.json"))) == 60 == summary["solved"]


# ---- Dask ---------------------------------------------------------------------------------------

@pytest.mark.slow
def test_dask_local_cluster_gives_the_same_table(swept, tmp_path):
    pytest.importorskip("dask.distributed")
    res, _ = swept
    dask = sweep(small(), budgets=4, executor="dask", scheduler="local", out_dir=tmp_path,
                 progress=False, gap=0.0)
    assert dask.n_solved == 28
    assert without_solve_s(dask.rows) == without_solve_s(res.rows)


def test_dask_scheduler_address_is_checked(four):
    with pytest.raises(ValueError, match="scheduler must be 'local' or a Dask scheduler address"):
        sweep(four, budgets=2, scheduler="my-laptop", progress=False)
    with pytest.raises(ValueError, match="applies to executor='dask' only"):
        sweep(four, budgets=2, executor="serial", scheduler="local", progress=False)
