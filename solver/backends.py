"""MILP backends behind one call: CBC and HiGHS through PuLP, Gurobi where it is licensed, and
the optional SCIP (pyscipopt, through PuLP) and OR-Tools CP-SAT where installed (solver.cpsat).

`run(prob, backend, ...)` solves a PuLP problem and leaves the values on its variables. It
returns a `BackendResult` whose `status` is one of "optimal" (a proof within the gap), "feasible"
(an incumbent, no proof), "infeasible" (proven), "no-solution" (stopped without an incumbent),
with the solver's best bound and a trajectory of (seconds, incumbent, bound) for time-to-gap
figures. Only a solution status of "optimal"/"feasible" means the variable values are a solution:
a time-limited PuLP run says LpStatus "Optimal" with sol_status 2, and CBC without an incumbent
still fills in fractional values.

Backend facts this module works around (TOOLCHAIN.md): CBC's bound is only in its log, so CBC is
run as a subprocess with its output parsed (and killed by a watchdog when it overruns its time
limit, which it does during preprocessing of large models); HiGHS reports its bound through
`getInfo()` and its incumbents through callbacks; HiGHS' reported objective is not trusted
when a start was given (callers recompute it from the decoded solution).

Child processes: a CBC run is the only process this package starts. It is killed, and its
temporary folder (the model, the start and the solution files) removed, whenever the run ends
early: on any exception in the caller, KeyboardInterrupt included. On Linux the child also gets
SIGKILL from the kernel when the thread that started it dies (prctl PR_SET_PDEATHSIG), so a
SIGKILLed caller leaves no solver behind (only the folder, which no process can remove then).
While a run lives it is registered, so that a signal handler or a watcher thread can end every
run of this process at once (`stop_children`; poet.signals uses it in pool workers).
"""

from __future__ import annotations

import ctypes
import importlib.util
import logging
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pulp

from .options import check_solve_options

log = logging.getLogger(__name__)

BACKENDS = ("auto", "cbc", "highs", "gurobi")
# run() also takes these where installed; solve() does not offer them (benchmarks/backends.py
# measured them against HiGHS on our models: neither wins)
OPTIONAL_BACKENDS = ("scip", "cpsat")


@dataclass
class BackendResult:
    """What a backend run produced. Objective values and bounds are in model units."""

    backend: str
    status: str
    objective: float | None = None      # as the solver reports it (recompute it to trust it)
    bound: float | None = None          # best proven lower bound, None if unknown
    solve_s: float = 0.0
    trajectory: list[tuple[float, float | None, float | None]] = field(default_factory=list)
    log_text: str = ""
    message: str = ""

    @property
    def has_solution(self) -> bool:
        return self.status in ("optimal", "feasible")


# ---------------------------------------------------------------------------------------------
# availability
# ---------------------------------------------------------------------------------------------
def cbc_path() -> str | None:
    """A CBC binary: `cbc` on PATH, else the one bundled with PuLP; None if neither runs."""
    found = shutil.which("cbc")
    if found:
        return found
    bundled = pulp.apis.coin_api.PULP_CBC_CMD.pulp_cbc_path
    return bundled if bundled and os.access(bundled, os.X_OK) else None


def _gurobi_available() -> bool:
    try:
        return bool(pulp.GUROBI(msg=False).available())
    except Exception:  # noqa: BLE001 -- gurobipy missing, or its licence refused: unavailable
        return False


def _importable(module: str, load: bool = True) -> bool:
    """Whether `module` imports (load=False: is installed, found without importing it)."""
    try:
        if not load:
            return importlib.util.find_spec(module) is not None
        __import__(module)
    except ImportError:
        return False
    return True


def available_backends() -> list[str]:
    """The backends that can run here (a subset of "cbc", "highs", "gurobi", "scip", "cpsat")."""
    out = []
    if cbc_path():
        out.append("cbc")
    if _importable("highspy"):
        out.append("highs")
    if _gurobi_available():
        out.append("gurobi")
    if _importable("pyscipopt", load=False):      # both slow to import: only when run
        out.append("scip")
    if _importable("ortools", load=False):
        out.append("cpsat")
    return out


def resolve_backend(name: str) -> str:
    """The concrete backend for `name`: "auto" is HiGHS where installed (faster on our graphs,
    see benchmarks/solve.py), else CBC. Raises ValueError naming the available backends."""
    if name not in BACKENDS + OPTIONAL_BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS + OPTIONAL_BACKENDS)}, "
                         f"got {name!r}")
    avail = available_backends()
    if name == "auto":
        for pick in ("highs", "cbc", "gurobi"):
            if pick in avail:
                return pick
        raise ValueError("no MILP backend is available: install highspy, or make PuLP's CBC "
                         "binary executable")
    if name not in avail:
        raise ValueError(f"backend {name!r} is not available here (available: "
                         f"{', '.join(avail) or 'none'})"
                         + {"gurobi": "; Gurobi needs gurobipy and a licence",
                            "scip": "; SCIP needs pyscipopt", "cpsat": "; CP-SAT needs ortools"
                            }.get(name, ""))
    return name


# ---------------------------------------------------------------------------------------------
# the common entry point
# ---------------------------------------------------------------------------------------------
def run(prob: pulp.LpProblem, backend: str = "auto", *, time_limit_s: float = 300.0,
        threads: int | None = None, gap_rel: float = 1e-4, gap_abs: float | None = None,
        start: bool = False, cutoff: float | None = None, relax: bool = False,
        verbose: bool = False, progress: Callable[[str], None] | None = None,
        options: dict | None = None,
        stop: Callable[[float, float | None, float | None], bool] | None = None) -> BackendResult:
    """Solve `prob` (a minimisation) with `backend`; values are left on the variables.

    start=True passes the variables' initial values as a MIP start (CBC: `-mips`; HiGHS:
    `setSolution`; Gurobi: warm start). cutoff: only solutions with objective <= cutoff are
    wanted (CBC `-cutoff`, HiGHS `objective_bound`, Gurobi `Cutoff`). The run stops at whichever
    of gap_rel (relative) and gap_abs (absolute, model units) is met first. relax=True solves the
    LP relaxation. verbose streams the solver's own output to stdout; progress(str) receives a
    line per new incumbent. options: solver-specific settings (HiGHS option names and values;
    CBC command-line options as {"name": value}; Gurobi parameters). stop(seconds, incumbent,
    bound), if given, is asked as the search runs and ends it early (status "feasible" with the
    incumbent so far) when it returns True; HiGHS honours it, CBC and Gurobi only stop at the
    time limit; SCIP and CP-SAT honour it too. SCIP runs on one thread whatever `threads` says
    (PuLP's interface has no parallel mode); CP-SAT solves a relaxation with GLOP.
    """
    backend = resolve_backend(backend)
    time_limit_s, threads, gap_rel = check_solve_options(time_limit_s, threads, gap_rel)
    if backend in OPTIONAL_BACKENDS:
        from . import cpsat      # imports this module: loaded only when it is needed
        runner = {"scip": cpsat.run_scip, "cpsat": cpsat.run_cpsat}[backend]
    else:
        runner = {"cbc": _run_cbc, "highs": _run_highs, "gurobi": _run_gurobi}[backend]
    t0 = time.perf_counter()
    res = runner(prob, time_limit_s=float(time_limit_s), threads=threads, gap_rel=gap_rel,
                 gap_abs=gap_abs, start=start, cutoff=cutoff, relax=relax, verbose=verbose,
                 progress=progress, options=dict(options or {}), stop=stop)
    res.solve_s = time.perf_counter() - t0
    log.info("%s: %s in %.2f s (objective %s, bound %s)", backend, res.status, res.solve_s,
             res.objective, res.bound)
    return res


# ---------------------------------------------------------------------------------------------
# HiGHS (in process, through pulp.HiGHS)
# ---------------------------------------------------------------------------------------------
_banner_done = False


def _silence_highs_banner() -> None:
    """HiGHS prints a copyright banner to stdout the first time a solver object is created in a
    process, before any option can turn output off; create that first object with fd 1 sent to
    /dev/null so that library users (and the CLI's JSON output) see nothing."""
    global _banner_done
    if _banner_done:
        return
    _banner_done = True
    import highspy
    try:
        sys.stdout.flush()
        saved = os.dup(1)
    except (OSError, ValueError):
        highspy.Highs()
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)


_INTERRUPT = threading.Event()


def request_interrupt() -> None:
    """Ask a running in-process solve (HiGHS) to stop: its next callback interrupts it and the
    backend raises KeyboardInterrupt when it returns (a signal handler calls this: an exception
    raised inside HiGHS' callback does not reach the caller)."""
    _INTERRUPT.set()


def _run_highs(prob, *, time_limit_s, threads, gap_rel, gap_abs, start, cutoff, relax, verbose,
               progress, options, stop=None) -> BackendResult:
    import highspy
    _silence_highs_banner()
    _INTERRUPT.clear()      # a request from before this run was raised as KeyboardInterrupt already
    traj: list[tuple[float, float | None, float | None]] = []
    on_incumbent, on_tick = _highs_callbacks(traj, time.perf_counter() + time_limit_s, progress,
                                             stop)

    class _Highs(pulp.HiGHS):
        def createAndConfigureSolver(self, lp):
            super().createAndConfigureSolver(lp)
            h = lp.solverModel
            if cutoff is not None and not relax:
                h.setOptionValue("objective_bound", float(cutoff))
            for key, value in options.items():
                h.setOptionValue(key, value)
            if not relax:
                h.cbMipImprovingSolution += on_incumbent
                h.cbMipInterrupt += on_tick

        def callSolver(self, lp):
            if start and not relax:
                sol = highspy.HighsSolution()
                sol.col_value = [float(v.varValue or 0.0) for v in lp.variables()]
                sol.value_valid = True
                lp.solverModel.setSolution(sol)
            super().callSolver(lp)

    if threads is not None:
        highspy.Highs.resetGlobalScheduler(True)
    solver = _Highs(mip=not relax, msg=verbose, timeLimit=time_limit_s, gapRel=gap_rel,
                    gapAbs=gap_abs, threads=threads)
    try:
        prob.solve(solver)
    except Exception:   # an interrupt while PuLP fills highspy's model comes out as a TypeError
        if not _INTERRUPT.is_set():
            raise
    if _INTERRUPT.is_set():
        _INTERRUPT.clear()
        raise KeyboardInterrupt("interrupted during the HiGHS solve")
    return _highs_result(prob.solverModel, relax, traj)


def _highs_callbacks(traj: list, deadline: float, progress, stop):
    """HiGHS' incumbent and interrupt callbacks: both append (seconds, incumbent, bound) to
    traj; the interrupt one also stops the run 5 s past the deadline (a watchdog behind HiGHS'
    own limit) or when stop(seconds, incumbent, bound) says so."""
    def finite(v: float) -> float | None:
        return v if math.isfinite(v) else None

    def on_incumbent(e):
        d = e.data_out
        traj.append((d.running_time, d.objective_function_value, d.mip_dual_bound))
        if progress is not None:
            progress(f"highs: incumbent {d.objective_function_value:.6g}, bound "
                     f"{d.mip_dual_bound:.6g} at {d.running_time:.1f} s")

    def on_tick(e):
        d = e.data_out
        last = traj[-1] if traj else None
        if last is None or last[2] != d.mip_dual_bound or last[1] != d.mip_primal_bound:
            traj.append((d.running_time, finite(d.mip_primal_bound), d.mip_dual_bound))
        if _INTERRUPT.is_set() or time.perf_counter() > deadline + 5.0:
            e.interrupt()
        elif stop is not None and stop(d.running_time, finite(d.mip_primal_bound),
                                       finite(d.mip_dual_bound)):
            e.interrupt()

    return on_incumbent, on_tick


def _highs_result(h, relax: bool, traj: list) -> BackendResult:
    """The BackendResult of a finished HiGHS run (h: the highspy.Highs object)."""
    import highspy
    info = h.getInfo()
    ms = h.getModelStatus()
    MS = highspy.HighsModelStatus
    has = info.primal_solution_status == int(highspy.SolutionStatus.kSolutionStatusFeasible)
    if relax:
        status = "optimal" if ms == MS.kOptimal else (
            "infeasible" if ms in (MS.kInfeasible, MS.kUnboundedOrInfeasible) else "no-solution")
        obj = info.objective_function_value if status == "optimal" else None
        return BackendResult("highs", status, obj, obj, message=h.modelStatusToString(ms))
    bound = info.mip_dual_bound if math.isfinite(info.mip_dual_bound) else None
    if ms == MS.kOptimal and has:
        status = "optimal"
    elif ms in (MS.kInfeasible, MS.kUnboundedOrInfeasible) or (ms == MS.kObjectiveBound
                                                                 and not has):
        status = "infeasible"
    elif has:
        status = "feasible"
    else:
        status = "no-solution"
    obj = info.objective_function_value if has else None
    return BackendResult("highs", status, obj, bound, trajectory=traj,
                         message=h.modelStatusToString(ms))


# ---------------------------------------------------------------------------------------------
# child processes: registered while they run; killed with their parent
# ---------------------------------------------------------------------------------------------
_PR_SET_PDEATHSIG = 1           # <linux/prctl.h>

# The CBC processes and temporary folders of the runs in progress in this process. Plain dict and
# set operations are atomic under the GIL, so a signal handler may read them without a lock
# (a lock held by the interrupted main thread would deadlock the handler).
_live_procs: dict[int, subprocess.Popen] = {}
_live_dirs: set[str] = set()


def _load_prctl():
    """libc's prctl as a ctypes function, resolved once here (never in a freshly forked child);
    None where there is none (not Linux, or no libc to load)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    fn.restype = ctypes.c_int
    return fn


_prctl = _load_prctl()


def set_parent_death_signal(sig: int) -> bool:
    """Ask the kernel to send `sig` to this process when the thread that created it ends (Linux
    PR_SET_PDEATHSIG). False where that is not available (then nothing changes)."""
    if _prctl is None:
        return False
    return _prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0


def _die_with_parent_preexec():
    """A preexec_fn for Popen that makes the child get SIGKILL when its parent thread dies, or
    None where prctl is missing. It checks the parent afterwards: if the parent died between the
    fork and the prctl call, the child ends at once instead of running as an orphan."""
    if _prctl is None:
        return None
    parent = os.getpid()
    prctl = _prctl

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return preexec


def _wait_dead(proc: subprocess.Popen) -> None:
    """Block until a killed child has exited without reaping it (Popen reaps it later)."""
    waitid = getattr(os, "waitid", None)
    if waitid is None:
        return
    try:
        waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
    except (ChildProcessError, OSError):
        pass


def _kill(proc: subprocess.Popen) -> None:
    """SIGKILL a child and wait until it is dead, taking none of Popen's locks (an interrupted
    `Popen.wait` may hold one); reap it if that can be done without blocking."""
    try:
        os.kill(proc.pid, signal.SIGKILL)
    except OSError:     # already reaped
        return
    _wait_dead(proc)
    proc.poll()


def stop_children() -> int:
    """Kill every CBC process this process started that still runs, wait until each is dead, and
    remove the temporary folders of the runs in progress; returns how many were killed.

    Meant for a signal handler or a watcher thread that is about to end the process (a pool
    worker whose parent died, say): it takes no lock, and the runs it ends fail in their own
    thread if the process lives on. Ordinary code does not need it: a run cleans up after itself
    on any exception."""
    killed = 0
    for proc in list(_live_procs.values()):
        if proc.returncode is None:
            _kill(proc)
            killed += 1
    for folder in list(_live_dirs):
        shutil.rmtree(folder, ignore_errors=True)
    return killed


# ---------------------------------------------------------------------------------------------
# CBC (a subprocess we own, so it can be watched and its log parsed)
# ---------------------------------------------------------------------------------------------
_CBC_PROGRESS = re.compile(
    r"Cbc0010I After \d+ nodes, \d+ on tree, (?P<best>[-+0-9.eE]+|1e\+50) best solution, "
    r"best possible (?P<bound>[-+0-9.eE]+) \((?P<t>[0-9.]+) seconds\)")
_CBC_INCUMBENT = re.compile(
    r"Cbc00(?:04|12)I Integer solution of (?P<best>[-+0-9.eE]+) found.*\((?P<t>[0-9.]+) seconds\)")
_CBC_FINAL = {
    "objective": re.compile(r"^Objective value:\s+(?P<v>[-+0-9.eE]+)", re.MULTILINE),
    "bound": re.compile(r"^Lower bound:\s+(?P<v>[-+0-9.eE]+)", re.MULTILINE),
    "nodes": re.compile(r"^Enumerated nodes:\s+(?P<v>\d+)", re.MULTILINE),
}


def parse_cbc_log(text: str) -> dict:
    """Final objective, lower bound and node count, the result line, and the (seconds,
    incumbent, bound) trajectory, from a CBC log."""
    out: dict = {"trajectory": []}
    for key, rx in _CBC_FINAL.items():
        m = rx.search(text)
        out[key] = float(m.group("v")) if m else None
    m = re.search(r"^Result - (.*)$", text, re.MULTILINE)
    out["result"] = m.group(1).strip() if m else ""
    best = None
    bound = None
    for line in text.splitlines():
        m = _CBC_INCUMBENT.search(line)
        if m:
            best = float(m.group("best"))
            out["trajectory"].append((float(m.group("t")), best, bound))
            continue
        m = _CBC_PROGRESS.search(line)
        if m:
            v = float(m.group("best"))
            best = v if v < 1e49 else None
            bound = float(m.group("bound"))
            out["trajectory"].append((float(m.group("t")), best, bound))
    return out


def _run_cbc(prob, *, time_limit_s, threads, gap_rel, gap_abs, start, cutoff, relax, verbose,
             progress, options, stop=None) -> BackendResult:
    path = cbc_path()
    tmp = tempfile.mkdtemp(prefix="poet-cbc-")
    _live_dirs.add(tmp)
    try:
        mps, sol, mst = (os.path.join(tmp, n) for n in ("model.mps", "model.sol", "start.mst"))
        vs, vnames, cnames, _ = prob.writeMPS(mps, rename=1)
        helper = pulp.COIN_CMD(path=path, msg=False)
        if start and not relax:
            helper.writesol(mst, prob, vs, vnames, cnames)
        args = _cbc_args(path, mps, sol, mst if start and not relax else None,
                         time_limit_s=time_limit_s, threads=threads, gap_rel=gap_rel,
                         gap_abs=gap_abs, cutoff=cutoff, relax=relax, options=options)
        text, killed = _cbc_process(args, time_limit_s, verbose, progress)
        parsed = parse_cbc_log(text)
        if killed or not os.path.exists(sol):
            return BackendResult("cbc", "no-solution", bound=None, log_text=text,
                                 trajectory=parsed["trajectory"],
                                 message="stopped by the watchdog" if killed else
                                 "cbc wrote no solution file")
        _, values, _, _, _, sol_status = helper.readsol_MPS(sol, prob, vs, vnames, cnames)
        with open(sol) as f:
            head = f.readline()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        _live_dirs.discard(tmp)
    return _cbc_result(prob, text, parsed, head, values, sol_status, relax)


def _cbc_args(path, mps, sol, mst, *, time_limit_s, threads, gap_rel, gap_abs, cutoff, relax,
              options) -> list[str]:
    """CBC's command line: the model, the start (mst, if any), the limits, then solve and
    write every column's value to sol."""
    args = [path, mps]
    if mst is not None:
        args += ["-mips", mst]
    args += ["-sec", f"{time_limit_s:g}", "-timeMode", "elapsed"]
    if not relax:
        args += ["-ratio", f"{gap_rel:g}"]
        if gap_abs is not None:
            args += ["-allow", f"{gap_abs:g}"]
        if cutoff is not None:
            args += ["-cutoff", repr(float(cutoff))]
    if threads is not None:
        args += ["-threads", str(threads)]
    for key, value in options.items():
        args += [f"-{key}", str(value)]
    return args + ["-initialSolve" if relax else "-solve", "-printingOptions", "all",
                   "-solution", sol]


def _cbc_process(args: list[str], time_limit_s: float, verbose: bool,
                 progress) -> tuple[str, bool]:
    """Run CBC, streaming its log (to stdout if verbose, incumbent lines to progress); kill it
    when it overruns its limit by 5 s + 5%, and at once on any exception here (such as
    KeyboardInterrupt from a signal). Returns (log text, killed)."""
    lines: list[str] = []
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, text=True, bufsize=1,
                            preexec_fn=_die_with_parent_preexec())
    _live_procs[proc.pid] = proc

    def pump():
        for line in proc.stdout:
            lines.append(line)
            if verbose:
                sys.stdout.write(line)
            if progress is not None and _CBC_INCUMBENT.search(line):
                progress("cbc: " + line.strip())

    try:
        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        grace = 5.0 + 0.05 * time_limit_s
        killed = False
        try:
            proc.wait(timeout=time_limit_s + grace)
        except subprocess.TimeoutExpired:
            killed = True
            proc.kill()
            proc.wait()
            log.warning("cbc overran its %.0f s limit by %.0f s and was stopped", time_limit_s,
                        grace)
        reader.join(timeout=5.0)
    except BaseException:
        _kill(proc)
        raise
    finally:
        _live_procs.pop(proc.pid, None)
    return "".join(lines), killed


def _cbc_result(prob, text: str, parsed: dict, head: str, values, sol_status,
                relax: bool) -> BackendResult:
    """The BackendResult of a CBC run that wrote a solution file (its first line: head); the
    values are put on prob's variables when they are a solution."""
    result = parsed["result"].lower()
    if head.startswith("Infeasible") or "infeasible" in result:
        return BackendResult("cbc", "infeasible", log_text=text, message=head.strip(),
                             trajectory=parsed["trajectory"])
    has = sol_status in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible)
    if has:
        prob.assignVarsVals(values)
    obj = parsed["objective"] if parsed["objective"] is not None else (
        pulp.value(prob.objective) if has else None)
    if relax:
        st = "optimal" if head.startswith("Optimal") else "no-solution"
        return BackendResult("cbc", st, obj if st == "optimal" else None,
                             obj if st == "optimal" else None, log_text=text, message=head.strip())
    if not has:
        return BackendResult("cbc", "no-solution", log_text=text, message=head.strip(),
                             trajectory=parsed["trajectory"], bound=parsed["bound"])
    proven = head.startswith("Optimal")
    bound = parsed["bound"]
    if proven and bound is None:
        bound = obj
    return BackendResult("cbc", "optimal" if proven else "feasible", obj, bound,
                         trajectory=parsed["trajectory"], log_text=text, message=head.strip())


# ---------------------------------------------------------------------------------------------
# Gurobi (through pulp.GUROBI, only where gurobipy and a licence are present)
# ---------------------------------------------------------------------------------------------
def _run_gurobi(prob, *, time_limit_s, threads, gap_rel, gap_abs, start, cutoff, relax, verbose,
                progress, options, stop=None) -> BackendResult:
    params = dict(options)
    if gap_abs is not None:
        params["MIPGapAbs"] = gap_abs
    if cutoff is not None and not relax:
        params["Cutoff"] = cutoff
    solver = pulp.GUROBI(mip=not relax, msg=verbose, timeLimit=time_limit_s, gapRel=gap_rel,
                         threads=threads, warmStart=start and not relax, **params)
    prob.solve(solver)
    m = prob.solverModel
    has = prob.sol_status in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible)
    if prob.status == pulp.LpStatusInfeasible:
        return BackendResult("gurobi", "infeasible")
    if not has:
        return BackendResult("gurobi", "no-solution")
    obj = float(m.ObjVal)
    bound = obj if relax else float(m.ObjBound)
    proven = prob.sol_status == pulp.LpSolutionOptimal
    return BackendResult("gurobi", "optimal" if proven else "feasible", obj, bound)
