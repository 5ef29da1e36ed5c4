"""The command line: tables, JSON output, and one-line errors with a non-zero exit."""

import json
import subprocess
import sys

import pytest

from poet.cli import main
from solver import Node, Problem, Schedule, simulate, store_all
from solver import store_all_peak as solver_store_all_peak


@pytest.fixture
def files(tmp_path):
    nodes = [Node(0, "a", "forward", 1024, 0.1, 1.0, 0.01, 0.02, 0.03, 0.04),
             Node(1, "loss", "loss", 4, 0.1, 0.5, 0.01, 0.02, 0.03, 0.04),
             Node(2, "ga", "backward", 1024, 0.1, 2.0, 0.01, 0.02, 0.03, 0.04)]
    p = Problem(nodes, [(0, 1), (0, 2), (1, 2)], static_bytes=2048, name="tiny")
    pp, sp = tmp_path / "p.json", tmp_path / "s.json"
    p.save(pp)
    store_all(p).save(sp)
    return pp, sp


def test_simulate_prints_table(files, capsys):
    assert main(["simulate", str(files[0]), str(files[1])]) == 0
    out = capsys.readouterr().out
    assert "3.50 J" in out and "4.0 KiB" in out


def test_simulate_json(files, capsys):
    assert main(["simulate", str(files[0]), str(files[1]), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["energy_j"] == 3.5 and d["peak_ram_bytes"] == 2048 + 1024 + 4 + 1024


def test_error_is_one_line_and_nonzero(files, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "poet-schedule/1", "instructions": [["compute", 2]]}')
    r = subprocess.run([sys.executable, "-m", "poet.cli", "simulate", str(files[0]), str(bad)],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "instruction 0 (compute 2, node 'ga'): operands not in RAM: [0, 1]" in r.stderr
    r = subprocess.run([sys.executable, "-m", "poet.cli", "simulate", str(tmp_path / "none.json"),
                        str(bad)], capture_output=True, text=True)
    assert r.returncode == 2 and "problem file not found" in r.stderr


def test_help_shows_examples(capsys):
    with pytest.raises(SystemExit):
        main(["simulate", "--help"])
    assert "examples:" in capsys.readouterr().out


def test_inspect_writes_problem_and_prints_totals(tmp_path, capsys):
    out = tmp_path / "mlp.json"
    assert main(["inspect", "mlp", "--device", "nrf52840", "--out", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    problem = Problem.load(out)
    assert info["nodes"] == problem.T == info["forward"] + info["loss"] + info["backward"]
    assert info["static_bytes"] == problem.static_bytes
    assert problem.extra["model_spec"]["model"] == "mlp"
    assert problem.extra["device"] == "nrf52840"
    from solver import min_feasible_ram, store_all_peak
    assert info["store_all_peak_bytes"] == store_all_peak(problem)
    assert info["min_feasible_ram_bytes"] == min_feasible_ram(problem)
    assert info["store_all_energy_j"] == sum(n.compute_j for n in problem.nodes)


def test_inspect_bias_only_is_smaller(capsys):
    main(["inspect", "mlp", "--device", "rpi4", "--json"])
    full = json.loads(capsys.readouterr().out)
    main(["inspect", "mlp", "--device", "rpi4", "--json", "--train", "bias"])
    bias = json.loads(capsys.readouterr().out)
    assert bias["store_all_peak_bytes"] < full["store_all_peak_bytes"]
    assert bias["static_bytes"] < full["static_bytes"]


def test_inspect_unknown_model_is_one_line():
    r = subprocess.run([sys.executable, "-m", "poet.cli", "inspect", "nope", "--device", "rpi4"],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert "neither a zoo name" in r.stderr and "Traceback" not in r.stderr


def _run(*args):
    return subprocess.run([sys.executable, "-m", "poet.cli", *args], capture_output=True,
                          text=True)


def test_solve_then_verify_then_simulate(tmp_path):
    s, p = tmp_path / "s.json", tmp_path / "p.json"
    r = _run("solve", "cnn_dropout_bn", "--device", "nrf52840", "--ram", "0.9x", "--out", str(s),
             "--problem-out", str(p), "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["status"] == "optimal" and d["peak_ram_bytes"] <= d["ram_budget_bytes"]
    assert d["energy_j"] >= d["store_all_energy_j"]
    r = _run("verify", str(s), "--json")
    assert r.returncode == 0, r.stderr
    v = json.loads(r.stdout)
    assert v["passed"] and v["measured_peak_bytes"] == d["peak_ram_bytes"]
    assert v["max_abs_grad_diff"] == 0.0
    r = _run("simulate", str(p), str(s), "--json")
    assert json.loads(r.stdout)["energy_j"] == d["energy_j"]


def test_solve_problem_file_and_flags(tmp_path):
    p = tmp_path / "p.json"
    assert _run("inspect", "cnn_dropout_bn", "--device", "rpi4", "--out", str(p)).returncode == 0
    r = _run("solve", str(p), "--ram", "0.8x", "--no-paging", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["strategy"] == "remat" and d["page_outs"] == 0
    r = _run("solve", str(p), "--ram", "1KiB")
    assert r.returncode == 2 and "minimum feasible RAM" in r.stderr
    r = _run("solve", str(p), "--ram", "lots")
    assert r.returncode == 2 and "RAM budget" in r.stderr


def test_verify_rejects_another_model(tmp_path):
    s = tmp_path / "s.json"
    assert _run("solve", "cnn_dropout_bn", "--device", "nrf52840", "--ram", "0.9x",
                "--out", str(s)).returncode == 0
    r = _run("verify", str(s), "--model", "mlp")
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stderr.count("\n") == 1


def test_sweep_and_plot(tmp_path):
    out = tmp_path / "sw"
    r = _run("sweep", "cnn_dropout_bn", "--device", "nrf52840", "--budgets", "3",
             "--strategies", "poet,remat,paging,dtr", "--workers", "1", "--time-limit", "20",
             "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "POET <= all" in r.stdout
    for name in ("sweep.csv", "sweep.json", "energy_vs_budget.png", "energy_split_poet.svg",
                 "schedule_matrices_poet.png", "ram_trace_poet.png"):
        assert (out / name).is_file(), name
    import csv
    rows = list(csv.DictReader((out / "sweep.csv").open()))
    assert len(rows) == 12 and all(row["poet_le_all"] == "true" for row in rows
                                   if row["strategy"] == "poet")
    r = _run("plot", str(out), "--out", str(tmp_path / "again"), "--format", "pdf")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "again" / "energy_vs_budget.pdf").is_file()


def test_demo_on_a_small_model(tmp_path):
    r = _run("demo", "--model", "cnn_dropout_bn", "--budget", "0.3", "--out-dir", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert r.stdout.rstrip().splitlines()[-3] == "PASS"
    s = Schedule.load(tmp_path / "schedule.json")
    p = Problem.load(tmp_path / "problem.json")
    from solver import simulate
    assert simulate(p, s).peak_ram_bytes <= p.ram_budget_bytes
    assert s.extra["model_spec"]["model"] == "cnn_dropout_bn"


def test_solver_options_are_checked_before_tracing(files):
    """--time-limit / --threads / --gap are checked by solver.options, naming the option, in
    one line, before a model is traced or a problem read."""
    for args, match in [(["--time-limit", "0"], "--time-limit must be a finite number > 0"),
                        (["--threads", "0"], "--threads must be a whole number from 1 to 256"),
                        (["--gap", "1.5"], "--gap must be a number in [0, 1)")]:
        r = _run("solve", "no-such-model", "--device", "rpi4", *args)
        assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
        assert match in r.stderr and "Traceback" not in r.stderr
    r = _run("sweep", str(files[0]), "--threads", "300", "--out", str(files[0].parent / "sw"))
    assert r.returncode == 2 and "--threads must be a whole number from 1 to 256" in r.stderr


def test_explain_a_schedule_and_solve_explain(tmp_path, capsys):
    p, s = tmp_path / "p.json", tmp_path / "s.json"
    assert main(["inspect", "cnn_dropout_bn", "--device", "nrf52840", "--out", str(p)]) == 0
    capsys.readouterr()
    assert main(["solve", str(p), "--strategy", "dtr", "--ram", "0.8x", "--out", str(s),
                 "--explain"]) == 0
    out = capsys.readouterr().out
    assert "in RAM at the peak" in out and "conv1" in out
    assert main(["explain", str(s), "--problem", str(p), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    sim = simulate(Problem.load(p), Schedule.load(s))
    assert d["totals"]["peak_ram_bytes"] == sim.peak_ram_bytes
    assert sum(r["extra_j"] for r in d["rows"]) == pytest.approx(
        sim.energy_j - Problem.load(p).store_all_energy_j, rel=1e-9, abs=1e-15)
    assert sum(r["bytes"] for r in d["peak"]["resident"]) == sim.peak_ram_bytes
    assert main(["explain", str(s)]) == 0          # the recorded zoo model, traced again
    assert "cnn_dropout_bn" in capsys.readouterr().out


def test_fold_bn_flag_is_recorded_and_shrinks_the_graph(tmp_path, capsys):
    plain, folded = tmp_path / "a.json", tmp_path / "b.json"
    assert main(["inspect", "ds_cnn", "--device", "rpi4", "--train", "last", "--out",
                 str(plain)]) == 0
    assert main(["inspect", "ds_cnn", "--device", "rpi4", "--train", "last", "--fold-bn",
                 "--out", str(folded)]) == 0
    a, b = Problem.load(plain), Problem.load(folded)
    assert b.extra["model_spec"]["fold_bn"] is True and "fold_bn" not in a.extra["model_spec"]
    assert b.extra["fold_bn"]["folded"] == 1 + 4 * 2   # the stem, and a depthwise and a pointwise per block
    assert b.T < a.T and b.static_bytes < a.static_bytes


def test_infeasible_solve_says_what_would_fit(capsys):
    """PyTorch's defaults (train all, buffered gradients) do not fit the DS-CNN on an nRF52840:
    the error names the minimum's parts, the device's RAM and the cheapest change."""
    assert main(["solve", "ds_cnn", "--device", "nrf52840", "--ram", "device"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "The minimum feasible RAM is 320,600 B: static 192,088 B (trained params 92,720 B, " \
           "grads 92,720 B" in err
    assert "nrf52840 has 256.0 KiB of RAM, 224.0 KiB usable" in err
    assert "with update=fused" in err and "between" not in err and "flash_budget" not in err


def test_fit_table_and_json(capsys):
    assert main(["fit", "sensor_cnn1d", "--device", "mkr1000", "--train", "last,all",
                 "--battery", "2.4kJ", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    rows = d["rows"]
    assert rows and all(r["device"] == "mkr1000" for r in rows)
    fitting = [r for r in rows if r["fits"]]
    assert fitting and rows[:len(fitting)] == fitting          # fitting rows first
    assert all(r["min_ram_bytes"] <= r["usable_ram_bytes"] for r in fitting)
    assert main(["fit", "sensor_cnn1d", "--device", "mkr1000", "--battery", "lots"]) == 2
    assert "--battery" in capsys.readouterr().err


def test_solve_notes_a_buffered_opt_step_over_the_budget(capsys):
    """sensor_cnn1d, train=all, Adam, buffered, at 260,000 B: a schedule fits, but the opt.step()
    after it needs static + 82,048 B of temporaries: said on stderr; not said with fused."""
    base = ["solve", "sensor_cnn1d", "--device", "nrf52840", "--optimizer", "adam", "--ram", "260000",
            "--time-limit", "5"]
    assert main(base) == 0
    err = capsys.readouterr().err
    assert "poet: note: the opt.step() after this step needs 303,020 B" in err and "82,048 B" in err
    fused = base[:-4] + ["--ram", "300000", "--time-limit", "5", "--update", "fused"]
    assert main(fused) == 0
    assert "opt.step()" not in capsys.readouterr().err


def test_fit_inplace_flag(capsys):
    args = ["fit", "sensor_cnn1d", "--device", "mkr1000", "--train", "all", "--update", "fused",
            "--no-solve", "--json"]
    assert main(args) == 0
    plain = json.loads(capsys.readouterr().out)["rows"][0]
    assert main(args + ["--inplace"]) == 0
    inplace = json.loads(capsys.readouterr().out)["rows"][0]
    assert inplace["inplace"] is True and plain["inplace"] is False
    assert inplace["store_all_peak_bytes"] < plain["store_all_peak_bytes"]


@pytest.mark.slow
def test_the_main_job_runs_on_a_real_chip_budget(tmp_path):
    """`poet demo` on its defaults: the DS-CNN on an STM32F746 at the chip's usable RAM
    (320 KiB less the profile's 32 KiB reserve), verified on real tensors."""
    r = _run("demo", "--time-limit", "10", "--out-dir", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert r.stdout.rstrip().splitlines()[-3] == "PASS"
    p, s = Problem.load(tmp_path / "problem.json"), Schedule.load(tmp_path / "schedule.json")
    assert p.ram_budget_bytes == 320 * 1024 - 32 * 1024
    rep = simulate(p, s)
    assert rep.peak_ram_bytes <= p.ram_budget_bytes < solver_store_all_peak(p)
    assert rep.n_recompute + rep.n_page_in > 0
