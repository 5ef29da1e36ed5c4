"""Hostile and careless input at the command line (issue #11): files never run code, flags take
effect or are refused, numbers stay in range, and every error is one line with exit 2 that
leaves existing outputs as they were."""

import json
import subprocess
import sys
import textwrap

import pytest

from poet.cli import main
from poet.modelspec import ModelSpec, load_model
from solver import Node, Problem, Schedule, store_all


def _one_line_error(capsys, *needles):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in err, err
    return err


@pytest.fixture(scope="module")
def mlp_files(tmp_path_factory):
    """`poet inspect mlp --device nrf52840` and a store-all schedule solved from it."""
    d = tmp_path_factory.mktemp("mlp")
    p, s = d / "p.json", d / "s.json"
    assert main(["inspect", "mlp", "--device", "nrf52840", "--out", str(p)]) == 0
    assert main(["solve", str(p), "--strategy", "store_all", "--out", str(s)]) == 0
    return p, s


def _tampered_schedule(src, dst, model):
    d = json.loads(src.read_text())
    d["model_spec"]["model"] = model
    dst.write_text(json.dumps(d))
    return dst


# ---- 1. loading never executes ------------------------------------------------------------------
@pytest.mark.parametrize("model", ["os:getpid", "code:interact", "evil_payload:run"])
def test_verify_never_imports_a_recorded_module_function(mlp_files, tmp_path, model, capsys,
                                                         monkeypatch):
    (tmp_path / "evil_payload.py").write_text(
        "import pathlib\npathlib.Path('ran.txt').write_text('ran')\ndef run(**kw):\n    return 1\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    sched = _tampered_schedule(mlp_files[1], tmp_path / "s.json", model)
    assert main(["verify", str(sched)]) == 2
    _one_line_error(capsys, model, "does not import code named in a file", "--model")
    assert not (tmp_path / "ran.txt").exists()
    assert "evil_payload" not in sys.modules


def test_verify_from_cwd_as_module_does_not_run_a_local_file(mlp_files, tmp_path):
    """`python -m poet.cli` puts the current folder on sys.path: a .py there named by the spec
    must still not run."""
    (tmp_path / "payload.py").write_text(
        "import pathlib\npathlib.Path('ran.txt').write_text('ran')\ndef make(**kw):\n    pass\n")
    sched = _tampered_schedule(mlp_files[1], tmp_path / "s.json", "payload:make")
    r = subprocess.run([sys.executable, "-m", "poet.cli", "verify", "s.json"], cwd=tmp_path,
                       capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert not (tmp_path / "ran.txt").exists()


def test_a_problem_file_spec_is_carried_but_not_run(mlp_files, tmp_path, capsys, monkeypatch):
    (tmp_path / "carried_payload.py").write_text(
        "import pathlib\npathlib.Path('ran.txt').write_text('ran')\ndef run(**kw):\n    pass\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    d = json.loads(mlp_files[0].read_text())
    d["model_spec"]["model"] = "carried_payload:run"
    (tmp_path / "p.json").write_text(json.dumps(d))
    assert main(["solve", "p.json", "--strategy", "store_all", "--out", "s.json"]) == 0
    capsys.readouterr()
    assert Schedule.load(tmp_path / "s.json").extra["model_spec"]["model"] == "carried_payload:run"
    assert main(["verify", "s.json"]) == 2
    _one_line_error(capsys, "'carried_payload:run'")
    assert not (tmp_path / "ran.txt").exists()


def test_recorded_spec_refuses_to_load_in_python():
    spec = ModelSpec.from_dict({"model": "os:getpid"})
    with pytest.raises(ValueError, match="does not import code named in a file"):
        spec.load()
    with pytest.raises(ValueError, match="recorded model_spec: batch_size"):
        ModelSpec.from_dict({"model": "mlp", "batch_size": 10**30})
    with pytest.raises(ValueError, match="recorded model_spec: optimizer"):
        ModelSpec.from_dict({"model": "mlp", "optimizer": "os.system"})
    assert ModelSpec.from_dict({"model": "mlp"}).load()[0] is not None   # zoo names are fine


# ---- user code gets one line (and --debug a traceback) ----------------------------------------
@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "usermodels.py").write_text(textwrap.dedent("""\
        def needs_arg(width):
            raise AssertionError("never called")
        def raises(batch_size=1):
            raise RuntimeError("my model is broken")
        def wrong(batch_size=1):
            return 42
        """))
    (tmp_path / "badimport.py").write_text("raise KeyError('at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("spec, needle", [
    ("usermodels:needs_arg", "TypeError"),
    ("usermodels:raises", "RuntimeError: my model is broken"),
    ("usermodels:wrong", "must return (model, loss_fn, inputs, targets), got int"),
    ("badimport:f", "importing 'badimport' raised KeyError"),
    ("no_such_module_x:f", "cannot import module 'no_such_module_x'"),
])
def test_user_code_errors_are_one_line(user_module, spec, needle, capsys):
    assert main(["inspect", spec, "--device", "nrf52840"]) == 2
    _one_line_error(capsys, spec, needle)
    with pytest.raises(ValueError):
        load_model(spec)


def test_debug_prints_the_user_traceback(user_module, capsys):
    assert main(["inspect", "usermodels:raises", "--device", "nrf52840", "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "usermodels.py" in err
    assert err.strip().splitlines()[-1].startswith("poet inspect: error: model ")
    from poet.modelspec import UserCodeError

    with pytest.raises(UserCodeError) as info:
        load_model("usermodels:raises")
    assert isinstance(info.value.__cause__, RuntimeError)


# ---- 3. flags take effect or are refused --------------------------------------------------------
def _solve_json(capsys, *argv):
    assert main(["solve", *argv, "--strategy", "store_all", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_device_on_a_problem_file_reprices(mlp_files, capsys):
    from_file = _solve_json(capsys, str(mlp_files[0]), "--device", "rpi4")
    traced = _solve_json(capsys, "mlp", "--device", "rpi4")
    as_priced = _solve_json(capsys, str(mlp_files[0]))
    assert from_file["energy_j"] == pytest.approx(traced["energy_j"], rel=1e-12)
    assert from_file["energy_j"] != pytest.approx(as_priced["energy_j"], rel=1e-3)
    assert "rpi4" in from_file["problem"]


def test_device_on_a_problem_without_counts_is_refused(tmp_path, capsys):
    p = Problem([Node(0, "a", "forward", 8, 0.1, 1.0, 0, 0, 0, 0),
                 Node(1, "g", "backward", 8, 0.1, 1.0, 0, 0, 0, 0)], [(0, 1)], 0, name="x")
    p.save(tmp_path / "p.json")
    assert main(["solve", str(tmp_path / "p.json"), "--device", "rpi4"]) == 2
    _one_line_error(capsys, "--device rpi4", "no graph counts")


@pytest.mark.parametrize("flag", [["--batch-size", "4"], ["--train", "bias"], ["--seed", "3"],
                                  ["--optimizer", "adam"], ["--granularity", "op"],
                                  ["--model-opt", "width=2"]])
def test_model_flags_on_a_problem_file_are_refused(mlp_files, flag, capsys):
    assert main(["solve", str(mlp_files[0]), *flag]) == 2
    _one_line_error(capsys, flag[0], "is a problem file")


def test_verify_model_flags_without_model_are_refused(mlp_files, capsys):
    assert main(["verify", str(mlp_files[1]), "--train", "bias"]) == 2
    _one_line_error(capsys, "--train apply with --model only")


# ---- 4. numbers in range; nothing already written is harmed -------------------------------------
@pytest.mark.parametrize("flag, needle", [
    (["--ram", "1e400"], "RAM budget: about 1e400 bytes is more than"),
    (["--ram", "1e20"], "8 PiB"),
    (["--ram", "1e300x"], "at most 1e6"),
    (["--runtime", "1e400"], "runtime budget"),
    (["--flash", "1e400"], "flash budget"),
])
def test_absurd_budgets_leave_the_schedule_alone(mlp_files, tmp_path, flag, needle, capsys):
    out = tmp_path / "s.json"
    out.write_text("keep me")
    assert main(["solve", str(mlp_files[0]), "--out", str(out), *flag]) == 2
    _one_line_error(capsys, needle)
    assert out.read_text() == "keep me"


@pytest.mark.parametrize("flag, needle", [
    (["--batch-size", "1000000000"], "batch size 1000000000: the model and its example batch "
                                     "do not fit"),
    (["--batch-size", "0"], "--batch-size must be a whole number from 1"),
    (["--seed", str(10**23)], "--seed must be a whole number from 0 to 2**63-1"),
    (["--seed", "-1"], "--seed"),
    (["--model-opt", "width"], "--model-opt: write KEY=VALUE"),
])
def test_model_flags_out_of_range(flag, needle, capsys):
    assert main(["inspect", "mlp", "--device", "nrf52840", *flag]) == 2
    _one_line_error(capsys, needle)


def test_out_equal_to_input_is_refused(mlp_files, tmp_path, capsys):
    p = tmp_path / "p.json"
    p.write_bytes(mlp_files[0].read_bytes())
    before = p.read_bytes()
    assert main(["solve", str(p), "--out", str(p)]) == 2
    _one_line_error(capsys, "is the same file as MODEL")
    assert main(["solve", str(p), "--out", str(tmp_path / "s.json"), "--problem-out",
                 str(tmp_path / "s.json")]) == 2
    _one_line_error(capsys, "--problem-out", "is the same file as --out")
    assert p.read_bytes() == before and not (tmp_path / "s.json").exists()


# ---- 9. smaller items ---------------------------------------------------------------------------
def test_simulate_honours_the_schedules_own_budget(tmp_path, capsys):
    p = Problem([Node(0, "a", "forward", 100, 0.1, 1.0, 0, 0, 0, 0),
                 Node(1, "g", "backward", 100, 0.1, 1.0, 0, 0, 0, 0)], [(0, 1)], 0, name="x")
    s = store_all(p)
    s = Schedule(s.instructions, strategy="store_all", ram_budget_bytes=150)
    p.save(tmp_path / "p.json")
    s.save(tmp_path / "s.json")
    assert main(["simulate", str(tmp_path / "p.json"), str(tmp_path / "s.json")]) == 2
    _one_line_error(capsys, "150")


@pytest.mark.parametrize("device", ["../secret.toml", "/etc/passwd", "device"])
def test_a_problems_device_field_is_never_opened_as_a_path(mlp_files, tmp_path, device,
                                                           capsys, monkeypatch):
    (tmp_path / "secret.toml").write_text('password = "hunter2"\n')
    (tmp_path / "device").write_text('password = "hunter2"\n')
    monkeypatch.chdir(tmp_path)
    d = json.loads(mlp_files[0].read_text())
    d["device"] = device
    (tmp_path / "p.json").write_text(json.dumps(d))
    assert main(["solve", "p.json", "--ram", "device"]) == 2
    err = _one_line_error(capsys, "not a built-in profile name")
    assert "hunter2" not in err and "password" not in err


@pytest.mark.parametrize("argv", [["solve", "mlp", "--time-limit", "abc"],
                                  ["solve"], ["bogus"], ["sweep", "mlp"]])
def test_usage_errors_are_one_line(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    _one_line_error(capsys, "error:", "--help")
