"""Clean exits (poet.signals, solver.backends): a signalled or killed poet leaves no solver process
and no temporary file behind.

The process tests run the real CLI (or a pool of workers) on a problem that keeps CBC busy for
far longer than a test (CBC needs about 40 s on it at a 60 s limit), wait until the cbc child
exists, signal the poet process only (not its group), and look at /proc and at the TMPDIR given
to the subprocess.
"""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from poet import signals
from solver import backends
from solver.generators import random_problem

ROOT = Path(__file__).resolve().parent.parent
linux_only = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
needs_cbc = pytest.mark.skipif(backends.cbc_path() is None, reason="no CBC binary")


# ---- /proc helpers ---------------------------------------------------------------------------

def _stat(pid: int) -> tuple[str, str, int] | None:
    """(command name, state, parent pid) of a process, None if there is none."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    name = text[text.index("(") + 1:text.rindex(")")]
    rest = text[text.rindex(")") + 2:].split()
    return name, rest[0], int(rest[1])


def _alive(pid: int) -> bool:
    st = _stat(pid)
    return st is not None and st[1] not in ("Z", "X")


def _children(pid: int) -> list[tuple[int, str]]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st is not None and st[2] == pid and st[1] not in ("Z", "X"):
                out.append((int(entry), st[0]))
    return out


def _wait_for(cond, timeout: float, step: float = 0.05):
    """Poll cond() until it returns something truthy (returned) or timeout (None)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = cond()
        if value:
            return value
        time.sleep(step)
    return None


def _reap_later(pids):
    """Kill what a failed test left running so that it does not load the machine."""
    for pid in pids:
        if _alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


@pytest.fixture(scope="module")
def busy_problem(tmp_path_factory) -> Path:
    """A 120-node random problem at 30% of its budget range: CBC runs 30+ s on it."""
    path = tmp_path_factory.mktemp("signals") / "p120.json"
    random_problem(3, 120, shape="random", budget_frac=0.3).save(path)
    return path


def _env(tmpdir: Path) -> dict:
    env = dict(os.environ, TMPDIR=str(tmpdir), PYTHONPATH=str(ROOT))
    env.pop("TMP", None)
    env.pop("TEMP", None)
    return env


def _start_solve(problem: Path, tmp_path: Path, backend: str = "cbc"):
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "poet.cli", "solve", str(problem), "--backend", backend,
         "--time-limit", "60", "--out", str(tmp_path / "s.json")],
        cwd=ROOT, env=_env(tmpdir), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    return proc, tmpdir


def _cbc_child(parent: int) -> int | None:
    """A child of `parent` running CBC on a MILP of the solve's phases 2 and 3: "-solve" (the
    LP runs before it say "-initialSolve" and end within seconds by themselves) with the
    heuristics' cutoff ("-cutoff"; phase 0's covering problems have none, and end sooner)."""
    for pid, name in _children(parent):
        if name == "cbc":
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"-solve" in argv and b"-cutoff" in argv:
                return pid
    return None


# ---- the CLI ---------------------------------------------------------------------------------

@pytest.mark.slow
@linux_only
@needs_cbc
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_to_cli_ends_cbc_and_removes_its_files(busy_problem, tmp_path, sig):
    proc, tmpdir = _start_solve(busy_problem, tmp_path)
    cbc = None
    try:
        cbc = _wait_for(lambda: _cbc_child(proc.pid), timeout=60)
        assert cbc is not None, "cbc never started"
        time.sleep(0.5)
        assert _alive(cbc) and any(tmpdir.iterdir())     # the run is under way, its model written
        t0 = time.monotonic()
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=10)
        took = time.monotonic() - t0
        assert proc.returncode == 130, err
        # the last line; a loaded machine may log an overrun of the solver's limit before it
        assert err.endswith("poet: interrupted\n") and "Traceback" not in err, err
        assert took < 5.0
        assert _wait_for(lambda: not _alive(cbc), timeout=1.0), "cbc outlived poet"
        assert sorted(p.name for p in tmpdir.iterdir()) == []
        assert not (tmp_path / "s.json").exists()
    finally:
        proc.kill()
        _reap_later([cbc] if cbc else [])


@pytest.mark.slow
@linux_only
@needs_cbc
def test_sigkill_of_cli_takes_cbc_with_it(busy_problem, tmp_path):
    proc, tmpdir = _start_solve(busy_problem, tmp_path)
    cbc = None
    try:
        cbc = _wait_for(lambda: _cbc_child(proc.pid), timeout=60)
        assert cbc is not None, "cbc never started"
        time.sleep(0.5)
        proc.kill()
        proc.wait(timeout=5)
        t0 = time.monotonic()
        assert _wait_for(lambda: not _alive(cbc), timeout=2.0), "cbc outlived a SIGKILLed poet"
        assert time.monotonic() - t0 < 2.0
    finally:
        _reap_later([cbc] if cbc else [])


@pytest.mark.slow
@linux_only
def test_sigterm_to_cli_during_highs_exits_130(busy_problem, tmp_path):
    """HiGHS runs in process: SIGTERM must interrupt it like Ctrl-C, not kill poet outright."""
    proc, tmpdir = _start_solve(busy_problem, tmp_path, backend="highs")
    try:
        time.sleep(8.0)         # past start-up: inside the solve
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        # HiGHS runs in C: its next callback sees the request and stops it
        _, err = proc.communicate(timeout=15)
        assert proc.returncode == 130, err
        # the last line; a loaded machine may log an overrun of the solver's limit before it
        assert err.endswith("poet: interrupted\n") and "Traceback" not in err, err
        assert list(tmpdir.iterdir()) == []
    finally:
        proc.kill()


# ---- pool workers ----------------------------------------------------------------------------

_DRIVER = textwrap.dedent('''
    import concurrent.futures as cf
    import multiprocessing
    import sys
    import time

    from poet import signals


    def solve(path):
        import solver
        return solver.solve(solver.Problem.load(path), backend="cbc", time_limit_s=60).status


    if __name__ == "__main__":
        ex = cf.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                    initializer=signals.worker_init)
        fut = ex.submit(solve, sys.argv[1])
        print(fut.result(), flush=True)
''')


def _start_pool(problem: Path, tmp_path: Path):
    """A driver process with one pool worker solving with CBC; returns (driver, worker, cbc,
    tmpdir) once cbc runs."""
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    script = tmp_path / "driver.py"
    script.write_text(_DRIVER)
    driver = subprocess.Popen([sys.executable, str(script), str(problem)], cwd=tmp_path,
                              env=_env(tmpdir), stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def worker_and_cbc():
        for pid, _name in _children(driver.pid):
            cbc = _cbc_child(pid)
            if cbc is not None:
                return pid, cbc
        return None

    found = _wait_for(worker_and_cbc, timeout=60)
    if found is None:
        driver.kill()
        pytest.fail("no pool worker started cbc: " + driver.communicate()[1][-2000:])
    time.sleep(0.5)
    return driver, found[0], found[1], tmpdir


@pytest.mark.slow
@linux_only
@needs_cbc
def test_sigkill_of_parent_ends_pool_worker_and_its_cbc(busy_problem, tmp_path):
    driver, worker, cbc, tmpdir = _start_pool(busy_problem, tmp_path)
    try:
        assert any(tmpdir.iterdir())
        driver.kill()
        driver.wait(timeout=5)
        assert _wait_for(lambda: not _alive(worker), timeout=2.0), "the worker outlived its parent"
        assert _wait_for(lambda: not _alive(cbc), timeout=1.0), "cbc outlived its worker"
        # the worker got SIGTERM (its death signal) and removed the run's folder before exiting
        assert list(tmpdir.iterdir()) == []
    finally:
        _reap_later([cbc, worker])


@pytest.mark.slow
@linux_only
@needs_cbc
def test_sigterm_to_pool_worker_cleans_up(busy_problem, tmp_path):
    """What the parent's runner does on an interrupt (terminate each worker)."""
    driver, worker, cbc, tmpdir = _start_pool(busy_problem, tmp_path)
    try:
        os.kill(worker, signal.SIGTERM)
        assert _wait_for(lambda: not _alive(worker), timeout=2.0)
        assert not _alive(cbc)
        assert list(tmpdir.iterdir()) == []
    finally:
        driver.kill()
        _reap_later([cbc, worker])


# ---- in process --------------------------------------------------------------------------------

@pytest.fixture
def saved_handlers():
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}
    yield
    for s, h in saved.items():
        signal.signal(s, h)


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="POSIX signals")
def test_install_turns_sigterm_and_sighup_into_keyboardinterrupt(saved_handlers):
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    assert signals.install() is True
    for sig in (signal.SIGTERM, signal.SIGHUP):
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), sig)
            time.sleep(1.0)     # the handler runs at the next bytecode; never reached


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="POSIX signals")
def test_install_keeps_ignored_and_foreign_handlers(saved_handlers):
    def foreign(signum, frame):
        pass

    signal.signal(signal.SIGHUP, signal.SIG_IGN)        # nohup
    signal.signal(signal.SIGTERM, foreign)
    signals.install()
    assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    assert signal.getsignal(signal.SIGTERM) is foreign


def test_install_outside_the_main_thread_changes_nothing(saved_handlers):
    before = signal.getsignal(signal.SIGTERM)
    out = []
    t = threading.Thread(target=lambda: out.append(signals.install()))
    t.start()
    t.join()
    assert out == [False]
    assert signal.getsignal(signal.SIGTERM) is before


@pytest.mark.skipif(backends._prctl is None, reason="Linux prctl")
def test_cbc_child_is_armed_with_a_parent_death_signal(tmp_path):
    """The preexec function really sets PR_SET_PDEATHSIG in the child: read it back there."""
    code = ("import ctypes, signal; v = ctypes.c_int(); "
            "ctypes.CDLL(None).prctl(2, ctypes.byref(v), 0, 0, 0); print(v.value)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         preexec_fn=backends._die_with_parent_preexec(), check=True).stdout
    assert int(out) == int(signal.SIGKILL)
    plain = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True).stdout
    assert int(plain) == 0
