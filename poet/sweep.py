"""Trade-off sweeps: solve one training step at many RAM budgets with many strategies.

    from poet.sweep import sweep
    from poet.plot import plot_sweep
    result = sweep("resnet18", device="rpi4", budgets=8, out_dir="sweeps/r18")
    result.rows            # one dict per (strategy, RAM budget[, runtime budget]), COLUMNS
    plot_sweep(result, "sweeps/r18/plots")

What a sweep does, in order:

1. Reads its input once, in this process: a `solver.Problem`, a problem JSON path, or a model (a
   `poet.modelspec.ModelSpec`, a zoo name or "module:function") plus a device, traced with torch
   here. Given a device, a problem made for another device is repriced (`poet.costs.reprice`).
2. Resolves the budgets (`resolve_budgets`, `resolve_runtime_budgets`) and forms one point per
   (strategy, RAM budget, runtime budget).
3. Looks every point up in the cache (`cache_dir`, by default ``out_dir/cache``): a file named by
   the sha256 of the problem fingerprint, the budgets, the strategy and the solver options.
4. Solves the others in parallel through a `concurrent.futures.Executor` (`solve_point` in each
   worker: plain data in, plain data out, no torch), writing each point's cache file atomically
   in this process as soon as it finishes. An interrupted sweep (Ctrl-C, a crash, a killed
   worker) loses nothing finished: run it again and it solves only the rest.
5. Sorts the rows (runtime budget, RAM budget, strategy in the order given), fills the per-budget
   column ``poet_le_all``, and writes ``out_dir/sweep.csv``, ``out_dir/sweep.json`` and
   ``out_dir/problem.json`` atomically (and, with ``save_schedules=True``, every schedule under
   ``out_dir/schedules/``).

The rows of a resumed sweep equal those of an uninterrupted one; ``solve_s`` is the time of the
solve that produced the cached point. When a worker process dies (killed, out of memory) the
default pool is replaced and the points it had not finished are submitted again (at most
MAX_POOL_RESTARTS times). A point whose solve raises (or that keeps killing its worker) becomes a
row with status "error" and the message in ``error``; it is not cached, so the next run tries it
again.

Executors: ``executor=None`` or "process" is a `ProcessPoolExecutor` on the "spawn" start method
(never fork: the parent may hold torch's threads); "serial" solves in this process; "dask" (or
giving `scheduler`) uses a Dask distributed client, ``scheduler="local"`` (the default) starting
a `LocalCluster` of two single-threaded worker processes and ``scheduler="tcp://host:port"``
connecting to a running one; any `concurrent.futures.Executor` instance is used as given (and
not shut down).
"""

from __future__ import annotations

import concurrent.futures as cf
import csv
import hashlib
import io
import json
import logging
import math
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import solver
from solver import InfeasibleError, Problem, Schedule
from solver.problem import atomic_file, read_json, write_json_atomic

from ._callable import make_module_callable
from .units import parse_budget

__all__ = ["COLUMNS", "STRATEGIES", "SolveOptions", "Point", "SweepResult", "sweep",
           "solve_point", "resolve_budgets", "resolve_runtime_budgets", "point_key",
           "poet_le_all", "write_csv", "read_csv"]

_log = logging.getLogger(__name__)

STRATEGIES = ("poet", "remat", "paging", "store_all", "sqrtn", "dtr", "greedy_paging")
SWEEP_FORMAT = "poet-sweep/1"
POINT_FORMAT = "poet-sweep-point/1"
MAX_COUNT = 1000          # a budget count larger than this is surely a size typed without unit
RELATIVE_SLACK = 1e-9     # poet_le_all: POET <= other * (1 + RELATIVE_SLACK)
MAX_POOL_RESTARTS = 2     # a dead worker process: replace the pool this often, then give up
DASK_LOCAL = {"n_workers": 2, "threads_per_worker": 1, "processes": True,
              "dashboard_address": None}

# The columns of a sweep row, in the order of sweep.csv. Units: bytes, seconds, joules.
COLUMNS = (
    "model",                   # problem.extra["model"] (or the name before "@")
    "device",                  # problem.extra["device"] (or the name after "@")
    "strategy",                # one of STRATEGIES
    "ram_budget_bytes",
    "runtime_budget_s",        # empty: no runtime limit
    "flash_budget_bytes",      # empty: unlimited flash
    "status",                  # optimal (proven within the gap) | feasible (a schedule, no
                               # proof: heuristics, or a MILP stopped by its time limit) |
                               # infeasible | timeout-without-solution | error (see "error")
    "energy_j",                # empty unless a schedule was found; likewise the next 11 columns
    "compute_j", "pagein_j", "pageout_j",
    "overhead_pct",            # energy above store-all, per cent of the store-all energy
    "time_s", "peak_ram_bytes", "peak_flash_bytes",
    "recomputes", "page_ins", "page_outs",
    "poet_le_all",             # per budget: POET's energy <= every other strategy's there
                               # (relative slack 1e-9); false if POET has no schedule where
                               # another strategy has one; empty without a POET row
    "gap",                     # (energy - bound) / energy, when the solver proved a bound
    "gap_overhead",            # (energy - bound) / (energy - store-all energy): the gap as a
                               # share of the overhead (0 when there is none)
    "bound_j",                 # the solver's proven lower bound on the energy, else empty
    "solve_s",                 # wall time of solver.solve for this point
    "backend",                 # which MILP backend ran (empty for heuristics)
    "source",                  # what produced the schedule: "milp" or a heuristic's name
    "store_all_energy_j",      # energy of one pass (no recompute, no paging)
    "min_feasible_ram_bytes",  # solver.min_feasible_ram(problem)
    "store_all_peak_bytes",    # solver.store_all_peak(problem)
    "error",                   # why there is no schedule (infeasible, timeout, error)
)
_SOLVER_COLUMNS = ("status", "energy_j", "compute_j", "pagein_j", "pageout_j", "time_s",
                   "peak_ram_bytes", "peak_flash_bytes", "recomputes", "page_ins", "page_outs",
                   "gap", "gap_overhead", "bound_j", "solve_s", "backend", "source", "error")
_INT_COLUMNS = {"ram_budget_bytes", "flash_budget_bytes", "peak_ram_bytes", "peak_flash_bytes",
                "recomputes", "page_ins", "page_outs", "min_feasible_ram_bytes",
                "store_all_peak_bytes"}
_STR_COLUMNS = {"model", "device", "strategy", "status", "backend", "source", "error"}


# ---- the unit of work -----------------------------------------------------------------------

@dataclass(frozen=True)
class SolveOptions:
    """Options passed to `solver.solve` for every point; part of each point's cache key."""

    time_limit_s: float = 60.0
    backend: str = "auto"
    threads: int | None = 1
    gap: float = 1e-4

    def __post_init__(self):
        t = self.time_limit_s
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0:
            raise ValueError(f"time_limit_s must be a number of seconds > 0, got {t!r}")
        if not isinstance(self.backend, str) or not self.backend:
            raise ValueError(f"backend must be a solver backend name such as 'auto', 'highs' or "
                             f"'cbc', got {self.backend!r}")
        th = self.threads
        if th is not None and (isinstance(th, bool) or not isinstance(th, int) or th < 1):
            raise ValueError(f"threads must be a whole number >= 1 or None, got {th!r}")
        g = self.gap
        if isinstance(g, bool) or not isinstance(g, (int, float)) or not 0 <= g < 1:
            raise ValueError(f"gap must be a relative gap in [0, 1), got {g!r}")

    def to_dict(self) -> dict:
        return {"time_limit_s": float(self.time_limit_s), "backend": self.backend,
                "threads": self.threads, "gap": float(self.gap)}


@dataclass(frozen=True)
class Point:
    """One solve of a sweep."""

    strategy: str
    ram_budget_bytes: int
    runtime_budget_s: float | None = None


def point_key(fingerprint: str, point: Point, flash_budget_bytes: int | None,
              options: SolveOptions) -> str:
    """The cache key of a point: sha256 (hex) of the canonical JSON of the problem fingerprint,
    the three budgets, the strategy and the solver options."""
    canonical = json.dumps({"problem_fingerprint": fingerprint, "strategy": point.strategy,
                            "ram_budget_bytes": point.ram_budget_bytes,
                            "runtime_budget_s": point.runtime_budget_s,
                            "flash_budget_bytes": flash_budget_bytes,
                            "options": options.to_dict()},
                           sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def solve_point(problem: Problem, point: Point, options: SolveOptions,
                starts: Sequence[dict] = ()) -> dict:
    """Solve one point (runs in a worker; no torch, no files): returns
    {"row": the solver columns of its row, "schedule": the schedule as a dict or None}.

    A strategy that cannot fit the budgets gives status "infeasible" (solver.InfeasibleError), a
    MILP stopped by its time limit without any schedule "timeout-without-solution". Every
    schedule is replayed by `solver.simulate` with the budgets enforced, so a row's numbers are
    the simulator's.
    `starts`: schedules (as dicts) of other strategies at this point, passed to solve() as
    starts (the sweep gives POET the remat-only and paging-only schedules).
    Unexpected exceptions propagate (the sweep records them as status "error").
    """
    from solver.solve import solve   # imports PuLP: only where solves run

    p = problem.with_budgets(ram_budget_bytes=point.ram_budget_bytes,
                             runtime_budget_s=point.runtime_budget_s)
    row: dict[str, Any] = {c: None for c in _SOLVER_COLUMNS}
    t0 = time.perf_counter()
    try:
        result = solve(p, strategy=point.strategy, backend=options.backend,
                       time_limit_s=options.time_limit_s, threads=options.threads,
                       gap=options.gap, starts=[Schedule.from_dict(s) for s in starts])
    except InfeasibleError as e:
        row.update(status="infeasible", solve_s=time.perf_counter() - t0, error=str(e))
        return {"row": row, "schedule": None}
    row["solve_s"] = time.perf_counter() - t0
    row["status"] = result.status
    row["backend"] = result.backend
    row["source"] = result.source
    for col in ("gap", "gap_overhead", "bound_j"):
        v = getattr(result, col)
        row[col] = float(v) if v is not None and math.isfinite(v) else None
    sched = result.schedule
    if sched is None:
        row["error"] = result.message or f"the solver stopped ({result.status}) without a schedule"
        return {"row": row, "schedule": None}
    rep = solver.simulate(p, sched)   # budgets enforced: a violation is a bug, not a row
    row.update(energy_j=rep.energy_j,
               compute_j=rep.split["compute_j"], pagein_j=rep.split["pagein_j"],
               pageout_j=rep.split["pageout_j"], time_s=rep.time_s,
               peak_ram_bytes=rep.peak_ram_bytes, peak_flash_bytes=rep.peak_flash_bytes,
               recomputes=rep.n_recompute, page_ins=rep.n_page_in, page_outs=rep.n_page_out)
    return {"row": row, "schedule": sched.to_dict()}


# ---- budgets ----------------------------------------------------------------------------------

_BUDGET_FORMS = ("an int N (N budgets from the minimum feasible to the store-all peak), "
                 "'start:stop:count' ('64KiB:1MiB:12', 'min:peak:8'), a comma list "
                 "('256KiB,512KiB,0.9x') or a list of sizes (ints are bytes there)")


def _one_budget(value, problem: Problem, lo: int, hi: int, where: str) -> int:
    """One RAM budget in bytes: bytes, a size, a multiple of the store-all peak ("0.9x"),
    "min" (the minimum feasible RAM), "peak" (the store-all peak) or "device"."""
    if isinstance(value, str):
        low = value.strip().lower()
        if low == "min":
            return lo
        if low in ("peak", "max"):
            return hi
    try:
        kind, number = parse_budget(value, "ram")
    except ValueError as e:
        raise ValueError(f"budgets: {where}: {e}") from None
    if kind == "bytes":
        return int(number)
    if kind == "multiple":
        return math.floor(number * hi)
    if kind == "device":
        device = problem.extra.get("device")
        if not isinstance(device, str):
            raise ValueError(f"budgets: {where}: 'device' needs a problem made for a device "
                             f"(problem.extra['device']); give a size instead")
        from .profiles import load_profile
        return load_profile(device).ram_bytes
    raise ValueError(f"budgets: {where}: {value!r} is not a RAM budget; give {_BUDGET_FORMS}")


def _count(value, where: str) -> int:
    if isinstance(value, str):
        value = value.strip()
        if not value.isdigit():
            raise ValueError(f"budgets: {where}: the count must be a whole number >= 2, "
                             f"got {value!r}")
        value = int(value)
    if value < 2 or value > MAX_COUNT:
        raise ValueError(f"budgets: {where}: the count must be 2..{MAX_COUNT} (both ends are "
                         f"included), got {value} (for a single budget give a list such as "
                         f"['256KiB']; for a size in bytes write it with a unit, '{value}B')")
    return value


def _spaced(start: int, stop: int, n: int) -> list[int]:
    return [start + round(k * (stop - start) / (n - 1)) for k in range(n)]


def resolve_budgets(problem: Problem, budgets) -> list[int]:
    """The RAM budgets of a sweep in bytes, ascending, without repeats.

    - an int N >= 2 (or a string of digits): N budgets evenly spaced from
      `solver.min_feasible_ram` to `solver.store_all_peak`, both included, rounded to whole bytes
      (fewer when the range holds fewer whole bytes; one when the two are equal);
    - "start:stop:count": count budgets evenly spaced from start to stop (each a size, a
      multiple "0.9x", "min" or "peak");
    - "a,b,c" or a list/tuple: those budgets (in a list an int is bytes; strings as above).

    Raises ValueError naming the argument and the accepted forms.
    """
    lo, hi = solver.min_feasible_ram(problem), solver.store_all_peak(problem)
    if isinstance(budgets, bool):
        raise ValueError(f"budgets: {budgets!r} is not a budget list; give {_BUDGET_FORMS}")
    if isinstance(budgets, int):
        out = _spaced(lo, hi, _count(budgets, "count"))
    elif isinstance(budgets, str):
        text = budgets.strip()
        if text.isdigit():
            out = _spaced(lo, hi, _count(text, "count"))
        elif ":" in text:
            parts = text.split(":")
            if len(parts) != 3:
                raise ValueError(f"budgets: {budgets!r}: a range is 'start:stop:count' "
                                 f"(three fields), got {len(parts)}")
            a = _one_budget(parts[0], problem, lo, hi, "range start")
            b = _one_budget(parts[1], problem, lo, hi, "range stop")
            if b < a:
                raise ValueError(f"budgets: {budgets!r}: stop ({b} bytes) is below start "
                                 f"({a} bytes)")
            out = _spaced(a, b, _count(parts[2], "range count"))
        else:
            items = [t for t in text.split(",") if t.strip()]
            if not items:
                raise ValueError(f"budgets: {budgets!r} names no budget; give {_BUDGET_FORMS}")
            out = [_one_budget(t, problem, lo, hi, f"item {k} ({t.strip()!r})")
                   for k, t in enumerate(items)]
    elif isinstance(budgets, Sequence):
        if not budgets:
            raise ValueError(f"budgets is an empty list; give {_BUDGET_FORMS}")
        out = [_one_budget(b, problem, lo, hi, f"item {k} ({b!r})") for k, b in enumerate(budgets)]
    else:
        raise ValueError(f"budgets: {budgets!r} ({type(budgets).__name__}) is not a budget "
                         f"list; give {_BUDGET_FORMS}")
    return sorted(set(out))


def resolve_runtime_budgets(problem: Problem, runtime_budgets) -> list[float | None]:
    """Runtime budgets in seconds (None = no limit): None -> [None]; else one or a list (or a
    comma string) of seconds (2.5, "250ms") or multiples of the store-all time ("1.5x"),
    "none" for no limit. Ascending, no limit last, without repeats."""
    if runtime_budgets is None:
        return [None]
    if isinstance(runtime_budgets, str):
        items: list = [t for t in runtime_budgets.split(",") if t.strip()]
    elif isinstance(runtime_budgets, (int, float)) and not isinstance(runtime_budgets, bool):
        items = [runtime_budgets]
    elif isinstance(runtime_budgets, Sequence):
        items = list(runtime_budgets)
    else:
        raise ValueError(f"runtime_budgets: {runtime_budgets!r} is not a list of runtime budgets; "
                         f"give seconds (2.5, '250ms'), multiples of the store-all time ('1.5x') "
                         f"or None")
    if not items:
        raise ValueError("runtime_budgets is empty; give None for no runtime limit")
    out: set[float | None] = set()
    for k, v in enumerate(items):
        try:
            kind, number = parse_budget(v, "runtime")
        except ValueError as e:
            raise ValueError(f"runtime_budgets: item {k}: {e}") from None
        if kind == "none":
            out.add(None)
        elif kind == "seconds":
            out.add(float(number))
        else:  # multiple
            base = math.fsum(n.compute_s for n in problem.nodes)
            if base <= 0:
                raise ValueError(f"runtime_budgets: item {k} ({v!r}): the store-all time is 0 s, "
                                 f"so a multiple of it is no budget; give seconds")
            out.add(number * base)
    return sorted(out, key=lambda v: (v is None, v or 0.0))


# ---- input ------------------------------------------------------------------------------------

def _load_input(problem_or_spec, device) -> Problem:
    """A Problem from whatever the sweep was given (see `sweep`)."""
    from .modelspec import ModelSpec

    if isinstance(problem_or_spec, Problem):
        problem = problem_or_spec
    elif isinstance(problem_or_spec, ModelSpec) or (
            isinstance(problem_or_spec, str) and not problem_or_spec.endswith(".json")
            and not Path(problem_or_spec).is_file()):
        spec = problem_or_spec if isinstance(problem_or_spec, ModelSpec) \
            else ModelSpec(model=problem_or_spec)
        if device is None:
            raise ValueError(f"device is required to sweep a model ({spec.model!r}); give a "
                             f"profile name such as 'rpi4' or a TOML path (or a problem JSON file)")
        from .modelspec import extract_problem
        _, problem = extract_problem(spec, device)
        return problem
    elif isinstance(problem_or_spec, (str, os.PathLike)):
        problem = Problem.load(problem_or_spec)
    else:
        raise TypeError(f"problem_or_spec must be a solver.Problem, a problem JSON path, a "
                        f"poet.modelspec.ModelSpec or a model name, got "
                        f"{type(problem_or_spec).__name__}")
    if device is not None:
        from .profiles import load_profile
        want = load_profile(device).name
        if problem.extra.get("device") != want:
            from .costs import reprice
            problem = reprice(problem, device)
    return problem


def _model_device(problem: Problem) -> tuple[str, str | None]:
    name = problem.name or ""
    model = problem.extra.get("model")
    device = problem.extra.get("device")
    if not isinstance(model, str) or not model:
        model = name.split("@")[0] or "problem"
    if not isinstance(device, str) or not device:
        device = name.split("@")[1] if "@" in name else None
    return model, device


# ---- result -----------------------------------------------------------------------------------

@dataclass
class SweepResult:
    """The rows of a sweep and where they were written.

    `rows`: one dict per point with the COLUMNS (None for an empty cell), sorted by runtime
    budget (no limit last), RAM budget, then strategy in the order given. `problem`: the swept
    problem (its budgets unset). `n_solved` / `n_cached`: points solved in this run / read from
    the cache. `schedule(strategy, budget)` returns a point's schedule.
    """

    rows: list[dict]
    problem: Problem
    strategies: tuple[str, ...]
    budgets: list[int]
    runtime_budgets: list[float | None]
    options: SolveOptions
    n_solved: int = 0
    n_cached: int = 0
    out_dir: Path | None = None
    csv_path: Path | None = None
    json_path: Path | None = None
    schedules: dict[tuple[str, int, float | None], Schedule] = field(default_factory=dict,
                                                                     repr=False)

    def schedule(self, strategy: str, ram_budget_bytes: int,
                 runtime_budget_s: float | None = None) -> Schedule | None:
        """The schedule of one point, or None (infeasible, or not kept)."""
        return self.schedules.get((strategy, int(ram_budget_bytes), runtime_budget_s))

    def energy_table(self, runtime_budget_s: float | None = None) -> list[dict]:
        """One dict per RAM budget: {"ram_budget_bytes": b, <strategy>: energy_j or None, ...}."""
        out: dict[int, dict] = {}
        for r in self.rows:
            if r["runtime_budget_s"] != runtime_budget_s:
                continue
            d = out.setdefault(r["ram_budget_bytes"], {"ram_budget_bytes": r["ram_budget_bytes"]})
            d[r["strategy"]] = r["energy_j"]
        return [out[b] for b in sorted(out)]

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SweepResult":
        """Read a sweep written by `sweep` (its folder or its sweep.json), with the problem
        (problem.json beside it) and the schedules (from schedules/ or the cache, if present)."""
        p = Path(path)
        jp = p / "sweep.json" if p.is_dir() else p
        data = read_json(jp, what="sweep")
        if not isinstance(data, dict) or data.get("format") != SWEEP_FORMAT:
            raise ValueError(f"{jp}: not a sweep file (format must be {SWEEP_FORMAT!r})")
        problem = Problem.load(jp.parent / data.get("problem_file", "problem.json"))
        rows = data["rows"]
        schedules: dict = {}
        cache_dir = data.get("cache_dir")
        for r, key in zip(rows, data.get("cache_keys", [])):
            sched = None
            sf = r.get("schedule_file") if isinstance(r, dict) else None
            if key and cache_dir and (Path(cache_dir) / f"{key}.json").is_file():
                cached = _read_cache(Path(cache_dir) / f"{key}.json", key)
                if cached and cached.get("schedule"):
                    sched = Schedule.from_dict(cached["schedule"])
            if sched is None and sf:
                sched = Schedule.load(jp.parent / sf)
            if isinstance(r, dict):
                r.pop("schedule_file", None)
            if sched is not None:
                schedules[(r["strategy"], r["ram_budget_bytes"], r["runtime_budget_s"])] = sched
        opts = SolveOptions(**data["solver_options"])
        return cls(rows=rows, problem=problem, strategies=tuple(data["strategies"]),
                   budgets=list(data["budgets"]), runtime_budgets=list(data["runtime_budgets"]),
                   options=opts, out_dir=jp.parent, csv_path=jp.parent / "sweep.csv",
                   json_path=jp, schedules=schedules)


# ---- the cache --------------------------------------------------------------------------------

def _read_cache(path: Path, key: str) -> dict | None:
    """A cached point, or None if the file is missing, unreadable or for another key."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        _log.warning("ignoring unreadable cache file %s (%s); solving that point again", path, e)
        return None
    if not isinstance(data, dict) or data.get("format") != POINT_FORMAT or data.get("key") != key \
            or not isinstance(data.get("row"), dict):
        _log.warning("ignoring cache file %s: not a point of this sweep", path)
        return None
    return data


def _write_cache(cache_dir: Path, key: str, inputs: dict, out: dict) -> None:
    write_json_atomic(cache_dir / f"{key}.json", {
        "format": POINT_FORMAT, "key": key, "inputs": inputs, "row": out["row"],
        "schedule": out["schedule"], "pid": os.getpid(), "finished_at": time.time()})


# ---- executors --------------------------------------------------------------------------------

class _Runner:
    """An executor and how to stop it: owned ones are shut down (worker processes terminated on
    an interrupt); one given by the caller is left running."""

    @staticmethod
    def kind(executor, scheduler) -> str:
        """"instance", "serial", "process" or "dask"; ValueError for anything else."""
        if isinstance(executor, cf.Executor):
            if scheduler is not None:
                raise ValueError("give either an executor instance or scheduler, not both")
            return "instance"
        if executor is None:
            executor = "dask" if scheduler is not None else "process"
        if executor in ("serial", "process", "dask"):
            if scheduler is not None and executor != "dask":
                raise ValueError(f"scheduler={scheduler!r} applies to executor='dask' only")
            if executor == "dask" and scheduler is not None and scheduler != "local" and not (
                    isinstance(scheduler, str) and "://" in scheduler):
                raise ValueError(f"scheduler must be 'local' or a Dask scheduler address such "
                                 f"as 'tcp://10.0.0.5:8786', got {scheduler!r}")
            return executor
        raise ValueError(f"executor must be None, 'process', 'serial', 'dask' or a "
                         f"concurrent.futures.Executor, got {executor!r}")

    def __init__(self, executor, scheduler, n_points: int):
        self.owned = True
        self.cleanup: list[Callable[[], None]] = []
        kind = self.kind(executor, scheduler)
        self.serial = kind == "serial"
        self.executor = None
        if kind == "instance":
            self.executor, self.owned = executor, False
        elif kind == "process":
            self.workers = max(1, min(os.cpu_count() or 1, n_points))
            self.executor = self._pool()
        elif kind == "dask":
            self.executor = self._dask(scheduler or "local")
        self.restarts_left = MAX_POOL_RESTARTS if kind == "process" else 0

    def _pool(self) -> cf.ProcessPoolExecutor:
        return cf.ProcessPoolExecutor(max_workers=self.workers,
                                      mp_context=multiprocessing.get_context("spawn"))

    def can_restart(self) -> bool:
        """Whether a broken process pool (a worker killed, say by the OOM killer) may be
        replaced by a new one: only our own pool, at most MAX_POOL_RESTARTS times."""
        return self.restarts_left > 0

    def restart(self) -> None:
        self.restarts_left -= 1
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.executor = self._pool()

    def _dask(self, scheduler: str):
        try:
            from dask.distributed import Client, LocalCluster
        except ImportError:
            raise ImportError("executor='dask' needs dask.distributed, which is not installed: "
                              "pip install 'poet-energy[dask]' (or \"dask[distributed]\")"
                              ) from None
        if scheduler == "local":
            cluster = LocalCluster(**DASK_LOCAL)
            self.cleanup.append(cluster.close)
            client = Client(cluster)
        else:
            client = Client(scheduler)
        self.cleanup.insert(0, client.close)
        return client.get_executor()

    def close(self, interrupted: bool) -> None:
        if self.serial or not self.owned:
            return
        ex = self.executor
        if interrupted and isinstance(ex, cf.ProcessPoolExecutor):
            # stop the solves now: a running task cannot be cancelled otherwise (Python 3.14 has
            # terminate_workers(); before it, the pool's own process table)
            terminate = getattr(ex, "terminate_workers", None)
            if terminate is not None:
                terminate()
            else:
                for proc in list((getattr(ex, "_processes", None) or {}).values()):
                    if proc.is_alive():
                        proc.terminate()
        try:
            if isinstance(ex, cf.ProcessPoolExecutor):
                ex.shutdown(wait=not interrupted, cancel_futures=True)
            else:   # Dask's ClientExecutor cancels its pending futures itself
                ex.shutdown(wait=not interrupted)
        finally:
            for fn in self.cleanup:
                try:
                    fn()
                except Exception as e:  # a failed close must not hide the sweep's own error
                    _log.warning("closing the Dask client/cluster failed: %s", e)


def _progress_bar(total: int, initial: int, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm
    return tqdm(total=total, initial=initial, desc="sweep", unit="point", file=sys.stderr,
                dynamic_ncols=True, smoothing=0.1)


# ---- the sweep --------------------------------------------------------------------------------

def sweep(problem_or_spec, *, device=None, budgets=8, strategies=STRATEGIES,
          runtime_budgets=None, flash_budget="keep", time_limit_s: float = 60,
          backend: str = "auto", threads: int | None = 1, gap: float = 1e-4, executor=None,
          scheduler: str | None = None, out_dir: str | os.PathLike | None = None,
          cache_dir: str | os.PathLike | None = None, save_schedules: bool = False,
          progress: bool = True) -> SweepResult:
    """Solve `problem_or_spec` at every (strategy, RAM budget, runtime budget) and tabulate.

    problem_or_spec: a solver.Problem, a problem JSON path, a poet.modelspec.ModelSpec, or a
        model name (zoo name or "module:function") with `device`. With `device` a problem
        priced for another device is repriced for this one.
    budgets: see `resolve_budgets` (default 8 from the minimum feasible RAM to the store-all
        peak). runtime_budgets: see `resolve_runtime_budgets` (default: no runtime limit).
    flash_budget: "keep" (the problem's own), None (unlimited), bytes or a size.
    strategies: names from STRATEGIES, in the order rows are sorted by.
    time_limit_s, backend, threads, gap: passed to `solver.solve` (and part of the cache key).
    executor, scheduler: where the solves run (module docstring).
    out_dir: where sweep.csv, sweep.json and problem.json go (None: nothing is written).
    cache_dir: the per-point cache (default out_dir/"cache"; None without out_dir: no cache).
    save_schedules: also write every schedule to out_dir/schedules/.
    progress: a tqdm bar on stderr (points done, time left).

    Raises ValueError/TypeError for bad arguments before anything is solved; KeyboardInterrupt
    passes through after the worker processes are stopped (finished points stay cached).
    """
    options = SolveOptions(time_limit_s=time_limit_s, backend=backend, threads=threads, gap=gap)
    if isinstance(strategies, str):
        strategies = [s for s in strategies.split(",") if s.strip()]
    strategies = tuple(s.strip() for s in strategies)
    bad = [s for s in strategies if s not in STRATEGIES]
    if bad or not strategies:
        raise ValueError(f"strategies: {bad or 'none given'}; allowed: {', '.join(STRATEGIES)}")
    if len(set(strategies)) != len(strategies):
        raise ValueError(f"strategies lists a name twice: {list(strategies)}")
    if save_schedules and out_dir is None:
        raise ValueError("save_schedules=True needs out_dir (the schedules go to "
                         "out_dir/schedules)")
    _Runner.kind(executor, scheduler)    # a bad executor fails now, not after the tracing
    from solver.backends import BACKENDS
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")

    problem = _load_input(problem_or_spec, device)
    if flash_budget != "keep":
        kind, number = parse_budget(flash_budget, "flash")
        if kind == "device":
            from .profiles import load_profile
            dev = device or problem.extra.get("device")
            if not dev:
                raise ValueError("flash_budget='device' needs a device: give device= or a "
                                 "problem made for one, or give a size")
            number = load_profile(dev).flash_bytes
        problem = problem.with_budgets(flash_budget_bytes=number)
    problem = problem.with_budgets(ram_budget_bytes=None, runtime_budget_s=None)
    ram_budgets = resolve_budgets(problem, budgets)
    rt_budgets = resolve_runtime_budgets(problem, runtime_budgets)

    out = Path(out_dir) if out_dir is not None else None
    cdir = Path(cache_dir) if cache_dir is not None else (out / "cache" if out else None)
    for d in (out, cdir):
        if d is not None:
            d.mkdir(parents=True, exist_ok=True)

    model, dev = _model_device(problem)
    fp = problem.fingerprint
    common = {"model": model, "device": dev,
              "flash_budget_bytes": problem.flash_budget_bytes,
              "store_all_energy_j": math.fsum(n.compute_j for n in problem.nodes),
              "min_feasible_ram_bytes": solver.min_feasible_ram(problem),
              "store_all_peak_bytes": solver.store_all_peak(problem)}
    # hard points first (the MILPs at tight budgets), so the pool's tail is short
    milp = {"poet": 0, "remat": 0, "paging": 0}
    points = sorted((Point(s, b, rt) for rt in rt_budgets for b in ram_budgets for s in strategies),
                    key=lambda p: (p.strategy not in milp, p.ram_budget_bytes,
                                   strategies.index(p.strategy)))
    keys = {pt: point_key(fp, pt, problem.flash_budget_bytes, options) for pt in points}
    done: dict[Point, dict] = {}
    if cdir is not None:
        for pt in points:
            cached = _read_cache(cdir / f"{keys[pt]}.json", keys[pt])
            if cached is not None:
                done[pt] = cached
    n_cached = len(done)
    todo = [pt for pt in points if pt not in done]
    _log.info("sweep %s: %d points (%d budgets x %d strategies x %d runtime budgets), %d cached",
              problem.name or model, len(points), len(ram_budgets), len(strategies),
              len(rt_budgets), n_cached)

    bar = _progress_bar(len(points), n_cached, progress)

    def finish(pt: Point, result: dict | None, exc: BaseException | None) -> None:
        if exc is not None:
            row = {c: None for c in _SOLVER_COLUMNS}
            row.update(status="error", error=f"{type(exc).__name__}: {exc}")
            _log.error("sweep point %s at %d bytes failed: %s", pt.strategy, pt.ram_budget_bytes,
                       row["error"])
            done[pt] = {"row": row, "schedule": None}
        else:
            done[pt] = result
            if cdir is not None:
                inputs = {"problem_fingerprint": fp, "strategy": pt.strategy,
                          "ram_budget_bytes": pt.ram_budget_bytes,
                          "runtime_budget_s": pt.runtime_budget_s,
                          "flash_budget_bytes": problem.flash_budget_bytes,
                          "options": options.to_dict()}
                _write_cache(cdir, keys[pt], inputs, result)
        if bar is not None:
            bar.update(1)

    # POET's space holds remat-only's and paging-only's: a POET point is solved after those at
    # its budget and starts from their schedules, so it is never worse than either (a MILP
    # stopped at a relative gap could otherwise land a hair above one of them)
    seeds = [s for s in ("remat", "paging") if s in strategies]

    def starts_of(pt: Point) -> list[dict]:
        if pt.strategy != "poet":
            return []
        got = [done.get(Point(s, pt.ram_budget_bytes, pt.runtime_budget_s)) for s in seeds]
        return [g["schedule"] for g in got if g and g.get("schedule")]

    phases = [[pt for pt in todo if pt.strategy != "poet" or not seeds],
              [pt for pt in todo if pt.strategy == "poet" and seeds]]
    n_solved = 0
    runner = _Runner(executor, scheduler, len(todo)) if todo else None
    interrupted = False
    try:
        for phase in phases:
            if runner is None or not phase:
                continue
            if runner.serial:
                for pt in phase:
                    try:
                        res = solve_point(problem, pt, options, starts_of(pt))
                    except Exception as e:
                        finish(pt, None, e)
                    else:
                        finish(pt, res, None)
                        n_solved += 1
                continue
            pending = list(phase)
            while pending:
                broken: list[Point] = []
                futures = {runner.executor.submit(solve_point, problem, pt, options,
                                                  starts_of(pt)): pt
                           for pt in pending}
                try:
                    for fut in cf.as_completed(futures):
                        pt = futures[fut]
                        try:
                            res = fut.result()
                        except BrokenProcessPool as e:
                            if runner.can_restart():
                                broken.append(pt)
                            else:
                                finish(pt, None, e)
                        except Exception as e:
                            finish(pt, None, e)
                        else:
                            finish(pt, res, None)
                            n_solved += 1
                except BaseException:
                    for f in futures:
                        f.cancel()
                    raise
                if broken:
                    _log.warning("a worker process died; restarting the pool for the %d points "
                                 "it had not finished", len(broken))
                    runner.restart()
                pending = broken
    except BaseException:
        interrupted = True
        raise
    finally:
        if runner is not None:
            runner.close(interrupted)
        if bar is not None:
            bar.close()

    rows, schedules = [], {}
    for pt in points:
        entry = done[pt]
        row = {c: None for c in COLUMNS}
        row.update(common)
        row.update({k: entry["row"].get(k) for k in _SOLVER_COLUMNS})
        row.update(strategy=pt.strategy, ram_budget_bytes=pt.ram_budget_bytes,
                   runtime_budget_s=pt.runtime_budget_s)
        e_all = common["store_all_energy_j"]
        if row["energy_j"] is not None and e_all > 0:
            # the simulator and fsum add the same terms in another order: a difference of
            # rounding size is no overhead
            diff = row["energy_j"] - e_all
            row["overhead_pct"] = 0.0 if abs(diff) <= 1e-12 * e_all else diff / e_all * 100.0
        rows.append(row)
        if entry.get("schedule"):
            schedules[(pt.strategy, pt.ram_budget_bytes, pt.runtime_budget_s)] = \
                Schedule.from_dict(entry["schedule"])
    rows.sort(key=lambda r: (r["runtime_budget_s"] is None, r["runtime_budget_s"] or 0.0,
                             r["ram_budget_bytes"], strategies.index(r["strategy"])))
    poet_le_all(rows)

    result = SweepResult(rows=rows, problem=problem, strategies=strategies, budgets=ram_budgets,
                         runtime_budgets=rt_budgets, options=options, n_solved=n_solved,
                         n_cached=n_cached, out_dir=out, schedules=schedules)
    if out is not None:
        _write_outputs(result, out, cdir, keys, save_schedules)
    return result


def poet_le_all(rows: list[dict]) -> list[dict]:
    """Fill the column poet_le_all in place (and return the rows): for each (RAM budget, runtime
    budget), True when POET has a schedule whose energy is <= every other strategy's energy
    there times (1 + 1e-9), or when no strategy has one; False otherwise; None when the budget
    has no POET row."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["ram_budget_bytes"], r["runtime_budget_s"]), []).append(r)
    for group in groups.values():
        mine = [r for r in group if r["strategy"] == "poet"]
        others = [r["energy_j"] for r in group
                  if r["strategy"] != "poet" and r["energy_j"] is not None]
        if not mine:
            value = None
        elif mine[0]["energy_j"] is None:
            value = not others
        else:
            e = mine[0]["energy_j"]
            value = all(e <= o * (1 + RELATIVE_SLACK) for o in others)
        for r in group:
            r["poet_le_all"] = value
    return rows


# ---- writing ----------------------------------------------------------------------------------

def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    return str(v)


def write_csv(rows: Iterable[dict], path: str | os.PathLike) -> None:
    """Write rows as CSV with the COLUMNS header (empty cell = none; booleans true/false; floats
    with every digit) atomically."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for r in rows:
        w.writerow([_cell(r.get(c)) for c in COLUMNS])
    _write_text_atomic(Path(path), buf.getvalue())


def read_csv(path: str | os.PathLike) -> list[dict]:
    """Rows from a sweep.csv, with numbers, booleans and empty cells (None) typed back."""
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        for raw in csv.DictReader(f):
            row: dict[str, Any] = {}
            for c in COLUMNS:
                v = raw.get(c, "")
                if v == "":
                    row[c] = None
                elif c in _STR_COLUMNS:
                    row[c] = v
                elif c == "poet_le_all":
                    row[c] = v == "true"
                elif c in _INT_COLUMNS:
                    row[c] = int(v)
                else:
                    row[c] = float(v)
            rows.append(row)
    return rows


def _write_text_atomic(path: Path, text: str) -> None:
    with atomic_file(path, newline="") as f:
        f.write(text)


def _schedule_name(strategy: str, budget: int, runtime: float | None) -> str:
    rt = "" if runtime is None else f"_{runtime:.6g}s"
    return f"{strategy}_{budget}B{rt}.json"


def _write_outputs(result: SweepResult, out: Path, cdir: Path | None, keys: dict,
                   save_schedules: bool) -> None:
    result.problem.save(out / "problem.json")
    if save_schedules:
        (out / "schedules").mkdir(exist_ok=True)
        for (s, b, rt), sched in result.schedules.items():
            sched.save(out / "schedules" / _schedule_name(s, b, rt))
    result.csv_path = out / "sweep.csv"
    result.json_path = out / "sweep.json"
    write_csv(result.rows, result.csv_path)
    rows_json = []
    cache_keys = []
    for r in result.rows:
        d = dict(r)
        pt = Point(r["strategy"], r["ram_budget_bytes"], r["runtime_budget_s"])
        cache_keys.append(keys[pt])
        if save_schedules and (pt.strategy, pt.ram_budget_bytes, pt.runtime_budget_s) \
                in result.schedules:
            d["schedule_file"] = "schedules/" + _schedule_name(*pt.__dict__.values())
        rows_json.append(d)
    model, dev = _model_device(result.problem)
    write_json_atomic(result.json_path, {
        "format": SWEEP_FORMAT, "model": model, "device": dev,
        "problem_name": result.problem.name, "problem_fingerprint": result.problem.fingerprint,
        "problem_file": "problem.json",
        "strategies": list(result.strategies), "budgets": result.budgets,
        "runtime_budgets": result.runtime_budgets, "solver_options": result.options.to_dict(),
        "columns": list(COLUMNS), "rows": rows_json,
        "cache_dir": str(cdir.resolve()) if cdir is not None else None,
        "cache_keys": cache_keys if cdir is not None else [],
    })


# ``poet.sweep`` is both this module and the function (see poet/_callable.py).
make_module_callable(__name__, sweep)
