"""Trade-off sweeps: solve one training step at many RAM budgets with many strategies.

    import poet
    from poet.plot import plot_sweep
    result = poet.sweep("resnet18", device="rpi4", budgets=8, out_dir="sweeps/r18")
    result.rows            # one dict per (strategy, RAM budget[, runtime budget]), COLUMNS
    plot_sweep(result, "sweeps/r18/plots")

What a sweep does, in order:

1. Reads its input once, in this process: a `solver.Problem`, a problem JSON path, or a model (a
   `poet.modelspec.ModelSpec`, a zoo name or "module:function") plus a device, traced with torch
   here. Given a device, a problem made for another device is repriced (`poet.costs.reprice`).
2. Resolves the budgets (`poet.budgets`) and forms one point per (strategy, RAM budget, runtime
   budget).
3. Looks every point up in the cache (`cache_dir`, by default ``out_dir/cache``): a file named by
   the sha256 of the problem fingerprint, the budgets, the strategy and the solver options. A
   cache file is input like any other: one that does not read, is for other inputs, or whose
   schedule does not simulate to its row (`check_cached_point`) is solved again, with a warning
   naming the file (logged on "poet.sweep" and kept in `SweepResult.warnings`).
4. Solves the others in parallel (`poet.runner`: a process pool, Dask, this process or any
   `concurrent.futures.Executor`; `solve_point` in each worker: plain data in, plain data out,
   no torch; the pool's workers die with this process, even when it is SIGKILLed), writing
   each point's cache file atomically in this process as soon as it finishes. An interrupted
   sweep (Ctrl-C, a crash, a killed worker) loses nothing finished: run it again and it solves
   only the rest.
5. Sorts the rows (runtime budget, RAM budget, strategy in the order given), fills the per-budget
   column ``poet_le_all``, and writes ``out_dir/sweep.csv``, ``out_dir/sweep.json`` and
   ``out_dir/problem.json`` atomically (and, with ``save_schedules=True``, every schedule under
   ``out_dir/schedules/``; `poet.sweepfiles`).

The rows of a resumed sweep equal those of an uninterrupted one; ``solve_s`` is the time of the
solve that produced the cached point. A point whose solve raises (or that keeps killing its
worker) becomes a row with status "error" and the message in ``error``; it is not cached, so the
next run tries it again.

This module is private: `poet.sweep` is the function `sweep` (``poet/__init__.py``), and
`poet.SweepResult` the result.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import solver
from solver import InfeasibleError, Problem, Schedule
from solver.options import check_gap, check_threads, check_time_limit
from solver.strategies import MILP_STRATEGIES, STRATEGIES

from .budgets import resolve_budgets, resolve_flash_budget, resolve_runtime_budgets
from .runner import Runner, executor_kind, progress_bar
from .sweepfiles import (COLUMNS, SOLVER_COLUMNS, load_point, model_device, read_sweep,
                         write_outputs, write_point)

__all__ = ["SolveOptions", "Point", "SweepResult", "sweep", "solve_point", "point_key",
           "check_cached_point", "poet_le_all", "RELATIVE_SLACK"]

_log = logging.getLogger("poet.sweep")

RELATIVE_SLACK = 1e-9     # poet_le_all: POET <= other * (1 + RELATIVE_SLACK)


# ---- the unit of work -----------------------------------------------------------------------

@dataclass(frozen=True)
class SolveOptions:
    """Options passed to `solver.solve` for every point; part of each point's cache key.
    Checked by `solver.options` (ValueError naming the option)."""

    time_limit_s: float = 60.0
    backend: str = "auto"
    threads: int | None = 1
    gap: float = 1e-4

    def __post_init__(self):
        check_time_limit(self.time_limit_s)
        if not isinstance(self.backend, str) or not self.backend:
            raise ValueError(f"backend must be a solver backend name such as 'auto', 'highs' or "
                             f"'cbc', got {self.backend!r}")
        check_threads(self.threads)
        check_gap(self.gap)

    def to_dict(self) -> dict:
        return {"time_limit_s": float(self.time_limit_s), "backend": self.backend,
                "threads": self.threads, "gap": float(self.gap)}


@dataclass(frozen=True)
class Point:
    """One solve of a sweep."""

    strategy: str
    ram_budget_bytes: int
    runtime_budget_s: float | None = None

    @property
    def at(self) -> tuple[str, int, float | None]:
        """(strategy, RAM budget, runtime budget): how results and files index the point."""
        return (self.strategy, self.ram_budget_bytes, self.runtime_budget_s)


def _key_inputs(fingerprint: str, point: Point, flash_budget_bytes: int | None,
                options: SolveOptions) -> dict:
    """What a point's result depends on (hashed into its key, stored in its cache file)."""
    return {"problem_fingerprint": fingerprint, "strategy": point.strategy,
            "ram_budget_bytes": point.ram_budget_bytes,
            "runtime_budget_s": point.runtime_budget_s,
            "flash_budget_bytes": flash_budget_bytes, "options": options.to_dict()}


def point_key(fingerprint: str, point: Point, flash_budget_bytes: int | None,
              options: SolveOptions) -> str:
    """The cache key of a point: sha256 (hex) of the canonical JSON of the problem fingerprint,
    the three budgets, the strategy and the solver options."""
    canonical = json.dumps(_key_inputs(fingerprint, point, flash_budget_bytes, options),
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
    row: dict[str, Any] = {c: None for c in SOLVER_COLUMNS}
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


# ---- the result -----------------------------------------------------------------------------

@dataclass
class SweepResult:
    """The rows of a sweep and where they were written.

    `rows`: one dict per point with the COLUMNS (None for an empty cell), sorted by runtime
    budget (no limit last), RAM budget, then strategy in the order given. `problem`: the swept
    problem (its budgets unset). `n_solved` / `n_cached`: points solved in this run / read from
    the cache. `warnings`: one line per cache file that did not check out and was solved again
    (also logged on the "poet.sweep" logger). `schedule(strategy, budget)` returns a point's
    schedule.
    """

    rows: list[dict]
    problem: Problem
    strategies: tuple[str, ...]
    budgets: list[int]
    runtime_budgets: list[float | None]
    options: SolveOptions
    n_solved: int = 0
    n_cached: int = 0
    warnings: list[str] = field(default_factory=list)
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
        jp, data, problem, schedules = read_sweep(path)
        return cls(rows=data["rows"], problem=problem, strategies=tuple(data["strategies"]),
                   budgets=list(data["budgets"]), runtime_budgets=list(data["runtime_budgets"]),
                   options=SolveOptions(**data["solver_options"]), out_dir=jp.parent,
                   csv_path=jp.parent / "sweep.csv", json_path=jp, schedules=schedules)


def poet_le_all(rows: list[dict]) -> list[dict]:
    """Fill the column poet_le_all in place (and return the rows): for each (RAM budget, runtime
    budget), True when POET has a schedule whose energy is <= every other strategy's energy
    there times (1 + RELATIVE_SLACK), or when no strategy has one; False otherwise; None when
    the budget has no POET row. (The slack lets two schedules of equal energy whose costs the
    simulator adds up in different orders count as equal.)"""
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


# ---- the sweep ------------------------------------------------------------------------------

def sweep(problem_or_spec, *, device=None, budgets=8, strategies=STRATEGIES,
          runtime_budgets=None, flash_budget="keep", time_limit_s: float = 60,
          backend: str = "auto", threads: int | None = 1, gap: float = 1e-4, executor=None,
          scheduler: str | None = None, workers: int | None = None,
          out_dir: str | os.PathLike | None = None,
          cache_dir: str | os.PathLike | None = None, save_schedules: bool = False,
          progress: bool = True) -> SweepResult:
    """Solve `problem_or_spec` at every (strategy, RAM budget, runtime budget) and tabulate.

    problem_or_spec: a solver.Problem, a problem JSON path, a poet.modelspec.ModelSpec, or a
        model name (zoo name or "module:function") with `device`. With `device` a problem
        priced for another device is repriced for this one.
    budgets: see `poet.budgets.resolve_budgets` (default 8 from the minimum feasible RAM to the
        store-all peak). runtime_budgets: see `poet.budgets.resolve_runtime_budgets` (default:
        no runtime limit).
    flash_budget: "keep" (the problem's own), None (unlimited), bytes or a size.
    strategies: names from solver.STRATEGIES, in the order rows are sorted by.
    time_limit_s, backend, threads, gap: passed to `solver.solve` (and part of the cache key).
    executor, scheduler: where the solves run (`poet.runner`).
    workers: the number of worker processes of the process pool (executor None or "process";
        default one per core, never more than there are points to solve); 1 is also accepted
        with executor="serial". The workers die with this process (even on SIGKILL).
    out_dir: where sweep.csv, sweep.json and problem.json go (None: nothing is written).
    cache_dir: the per-point cache (default out_dir/"cache"; None without out_dir: no cache).
        A cached point is used only if it checks out: its file reads as a point of this key,
        its inputs are this point's, its schedule simulates on this problem within the point's
        budgets and gives the row's energy, time, peaks and counts. Otherwise it is solved again
        (and its file rewritten), with a warning naming the file (`SweepResult.warnings`).
    save_schedules: also write every schedule to out_dir/schedules/.
    progress: a tqdm bar on stderr (points done, time left).

    Raises ValueError/TypeError for bad arguments (budgets included) before anything is solved
    or written; KeyboardInterrupt
    passes through after the worker processes are stopped (finished points stay cached).
    """
    options = SolveOptions(time_limit_s=time_limit_s, backend=backend, threads=threads, gap=gap)
    strategies = _check_arguments(strategies, backend, executor, scheduler, workers, out_dir,
                                  save_schedules)
    problem = _load_input(problem_or_spec, device)
    if flash_budget != "keep":
        problem = problem.with_budgets(
            flash_budget_bytes=resolve_flash_budget(problem, flash_budget, device))
    problem = problem.with_budgets(ram_budget_bytes=None, runtime_budget_s=None)
    ram_budgets = resolve_budgets(problem, budgets)
    rt_budgets = resolve_runtime_budgets(problem, runtime_budgets)

    out = Path(out_dir) if out_dir is not None else None
    cdir = Path(cache_dir) if cache_dir is not None else (out / "cache" if out else None)
    for d in (out, cdir):
        if d is not None:
            d.mkdir(parents=True, exist_ok=True)

    run = _Run(problem, options, strategies, cdir,
               _points(strategies, ram_budgets, rt_budgets))
    _log.info("sweep %s: %d points (%d budgets x %d strategies x %d runtime budgets), %d cached",
              problem.name or model_device(problem)[0], len(run.points), len(ram_budgets),
              len(strategies), len(rt_budgets), run.n_cached)
    run.solve(executor, scheduler, workers, progress)
    rows, schedules = run.rows()
    result = SweepResult(rows=rows, problem=problem, strategies=strategies, budgets=ram_budgets,
                         runtime_budgets=rt_budgets, options=options, n_solved=run.n_solved,
                         n_cached=run.n_cached, warnings=run.warnings, out_dir=out,
                         schedules=schedules)
    if out is not None:
        write_outputs(result, out, cdir, {pt.at: k for pt, k in run.keys.items()},
                      save_schedules)
    return result


def _check_arguments(strategies, backend, executor, scheduler, workers, out_dir,
                     save_schedules) -> tuple[str, ...]:
    """The strategies as a tuple of names; ValueError for a bad argument (before any tracing)."""
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
    kind = executor_kind(executor, scheduler)   # a bad executor fails now, not after tracing
    _check_workers(workers, kind)
    from solver.backends import BACKENDS
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    return strategies


def _check_workers(workers, kind: str) -> None:
    """workers: None or a whole number >= 1, for the process pool (1 also for "serial")."""
    if workers is None:
        return
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a whole number >= 1 (worker processes) or None (one "
                         f"per core), got {workers!r}")
    if kind == "serial" and workers != 1:
        raise ValueError(f"workers={workers} contradicts executor='serial' (one process); give "
                         f"executor=None for a pool of {workers} processes")
    if kind in ("dask", "instance"):
        what = "the Dask cluster" if kind == "dask" else "the executor given"
        raise ValueError(f"workers applies to the process pool (executor=None or 'process') "
                         f"only; with {kind} the pool size is that of {what}: leave workers None")


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


def _points(strategies: tuple[str, ...], ram_budgets: list[int],
            rt_budgets: list[float | None]) -> list[Point]:
    """Every point, the hard ones first (the MILPs at tight budgets), so the pool's tail is
    short."""
    return sorted((Point(s, b, rt) for rt in rt_budgets for b in ram_budgets for s in strategies),
                  key=lambda p: (p.strategy not in MILP_STRATEGIES, p.ram_budget_bytes,
                                 strategies.index(p.strategy)))


# ---- worker processes that die with the sweep ------------------------------------------------

class _SweepRunner(Runner):
    """`poet.runner.Runner` whose process pool has `workers` processes (None: the runner's
    default, one per core); like the runner's own pool they die with this process
    (`poet.signals.worker_init`), and a pool replaced after a worker died is made the same way."""

    def __init__(self, executor, scheduler, n_tasks: int, workers: int | None):
        self.requested_workers, self.n_tasks = workers, n_tasks
        super().__init__(executor, scheduler, n_tasks)

    def _pool(self) -> cf.ProcessPoolExecutor:
        if self.requested_workers is not None:
            self.workers = max(1, min(self.requested_workers, self.n_tasks))
        return super()._pool()


# ---- the points of one sweep ----------------------------------------------------------------

_NO_SCHEDULE_STATUSES = ("infeasible", "timeout-without-solution")
_SCHEDULE_STATUSES = ("optimal", "feasible")
# the row's columns that simulating its schedule gives again: floats within 1e-9, ints exactly
_SIMULATED = {"energy_j": "energy_j", "time_s": "time_s", "peak_ram_bytes": "peak_ram_bytes",
              "peak_flash_bytes": "peak_flash_bytes", "recomputes": "n_recompute",
              "page_ins": "n_page_in", "page_outs": "n_page_out"}
_SPLIT = ("compute_j", "pagein_j", "pageout_j")
_FLOAT_COLUMNS = ("gap", "gap_overhead", "bound_j", "solve_s")
_TEXT_COLUMNS = ("backend", "source", "error")


def check_cached_point(problem: Problem, pt: Point, inputs: dict, data: dict) -> str | None:
    """Why a cached point (a cache file's contents, its form checked by
    `poet.sweepfiles.load_point`) cannot be used for `pt` of `problem`, or None when it can.
    `inputs`: what the point depends on (`_key_inputs`). Its schedule is simulated again."""
    if data.get("inputs") != inputs:
        got = data.get("inputs")
        fp = got.get("problem_fingerprint") if isinstance(got, dict) else None
        if fp != inputs["problem_fingerprint"]:
            return f"it was solved for another problem (fingerprint {str(fp)[:19]}...)"
        return "its inputs (budgets, strategy, solver options) are not this point's"
    row = data["row"]
    status = row.get("status")
    for col in _FLOAT_COLUMNS:
        v = row.get(col)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))
                              or not math.isfinite(v)):
            return f"its row's {col} is {v!r}, not a finite number or null"
    for col in _TEXT_COLUMNS:
        if row.get(col) is not None and not isinstance(row.get(col), str):
            return f"its row's {col} is {row.get(col)!r}, not a string or null"
    sched_dict = data.get("schedule")
    if sched_dict is None:
        if status not in _NO_SCHEDULE_STATUSES:
            return f"its row has status {status!r} but no schedule"
        filled = [c for c in (*_SIMULATED, *_SPLIT) if row.get(c) is not None]
        return f"its row has {', '.join(filled)} but no schedule" if filled else None
    if status not in _SCHEDULE_STATUSES:
        return f"its row has status {status!r} and a schedule"
    try:
        sched = Schedule.from_dict(sched_dict)
        if sched.problem_fingerprint != problem.fingerprint:
            return "its schedule was made for another problem (fingerprint " \
                   f"{str(sched.problem_fingerprint)[:19]}...)"
        p = problem.with_budgets(ram_budget_bytes=pt.ram_budget_bytes,
                                 runtime_budget_s=pt.runtime_budget_s)
        rep = solver.simulate(p, sched)
    except Exception as e:    # data from a file: whatever breaks, the point is solved again
        return f"its schedule does not simulate: {type(e).__name__}: {e}"
    got = {col: getattr(rep, attr) for col, attr in _SIMULATED.items()}
    got.update({col: rep.split[col] for col in _SPLIT})
    for col, want in got.items():
        have = row.get(col)
        if isinstance(have, bool) or not isinstance(have, (int, float)):
            return f"its row's {col} is {have!r}; the schedule simulates to {want!r}"
        same = have == want if isinstance(want, int) else math.isclose(have, want,
                                                                       rel_tol=1e-9)
        if not same:
            return f"its row's {col} is {have!r}; the schedule simulates to {want!r}"
    return None


class _Run:
    """One sweep's points and what is known of them: the cache keys, the finished points
    ({"row", "schedule"} by point, cached ones included), how many were solved now."""

    def __init__(self, problem: Problem, options: SolveOptions, strategies: tuple[str, ...],
                 cdir: Path | None, points: list[Point]):
        self.problem, self.options, self.strategies, self.cdir = problem, options, strategies, cdir
        self.points = points
        fp, flash = problem.fingerprint, problem.flash_budget_bytes
        self.keys = {pt: point_key(fp, pt, flash, options) for pt in points}
        self.done: dict[Point, dict] = {}
        self.warnings: list[str] = []
        if cdir is not None:
            for pt in points:
                path = cdir / f"{self.keys[pt]}.json"
                cached, why = load_point(path, self.keys[pt])
                if cached is not None:
                    why = check_cached_point(problem, pt, _key_inputs(fp, pt, flash, options),
                                             cached)
                if why is None and cached is not None:
                    self.done[pt] = cached
                elif why is not None:
                    msg = (f"cache file {path} ({pt.strategy} at {pt.ram_budget_bytes} bytes) "
                           f"does not check out: {why}; solving that point again")
                    _log.warning("%s", msg)
                    self.warnings.append(msg)
        self.n_cached = len(self.done)
        self.n_solved = 0
        self.bar = None
        # POET's space holds remat-only's and paging-only's: a POET point is solved after those
        # at its budget and starts from their schedules, so it is never worse than either (a
        # MILP stopped at a relative gap could otherwise land a hair above one of them)
        self.seeds = [s for s in MILP_STRATEGIES if s != "poet" and s in strategies]

    def solve(self, executor, scheduler, workers: int | None, progress: bool) -> None:
        """Solve the points not cached: first all but POET, then POET from their schedules."""
        todo = [pt for pt in self.points if pt not in self.done]
        self.bar = progress_bar(len(self.points), self.n_cached, progress)
        runner = _SweepRunner(executor, scheduler, len(todo), workers) if todo else None
        phases = [[pt for pt in todo if pt.strategy != "poet" or not self.seeds],
                  [pt for pt in todo if pt.strategy == "poet" and self.seeds]]
        interrupted = False
        try:
            for phase in phases:
                if runner is not None and phase:
                    runner.run(phase, self._args, solve_point, self._finish)
        except BaseException:
            interrupted = True
            raise
        finally:
            if runner is not None:
                runner.close(interrupted)
            if self.bar is not None:
                self.bar.close()

    def _args(self, pt: Point) -> tuple:
        """solve_point's arguments for a point (POET's with the seeds' schedules as starts)."""
        starts = []
        if pt.strategy == "poet":
            got = [self.done.get(Point(s, pt.ram_budget_bytes, pt.runtime_budget_s))
                   for s in self.seeds]
            starts = [g["schedule"] for g in got if g and g.get("schedule")]
        return (self.problem, pt, self.options, starts)

    def _finish(self, pt: Point, result: dict | None, exc: BaseException | None) -> None:
        """Record a finished point (cached at once) or a failed one (an "error" row, not
        cached)."""
        if exc is not None:
            row = {c: None for c in SOLVER_COLUMNS}
            row.update(status="error", error=f"{type(exc).__name__}: {exc}")
            _log.error("sweep point %s at %d bytes failed: %s", pt.strategy, pt.ram_budget_bytes,
                       row["error"])
            self.done[pt] = {"row": row, "schedule": None}
        else:
            self.done[pt] = result
            self.n_solved += 1
            if self.cdir is not None:
                inputs = _key_inputs(self.problem.fingerprint, pt,
                                     self.problem.flash_budget_bytes, self.options)
                write_point(self.cdir, self.keys[pt], inputs, result)
        if self.bar is not None:
            self.bar.update(1)

    def rows(self) -> tuple[list[dict], dict]:
        """The sorted rows (poet_le_all filled in) and the schedules by Point.at."""
        p = self.problem
        model, dev = model_device(p)
        e_all = p.store_all_energy_j
        common = {"model": model, "device": dev, "flash_budget_bytes": p.flash_budget_bytes,
                  "store_all_energy_j": e_all,
                  "min_feasible_ram_bytes": solver.min_feasible_ram(p),
                  "store_all_peak_bytes": solver.store_all_peak(p)}
        rows, schedules = [], {}
        for pt in self.points:
            entry = self.done[pt]
            row = {c: None for c in COLUMNS}
            row.update(common)
            row.update({k: entry["row"].get(k) for k in SOLVER_COLUMNS})
            row.update(strategy=pt.strategy, ram_budget_bytes=pt.ram_budget_bytes,
                       runtime_budget_s=pt.runtime_budget_s)
            if row["energy_j"] is not None and e_all > 0:
                row["overhead_pct"] = (row["energy_j"] - e_all) / e_all * 100.0
            rows.append(row)
            if entry.get("schedule"):
                schedules[pt.at] = Schedule.from_dict(entry["schedule"])
        rows.sort(key=lambda r: (r["runtime_budget_s"] is None, r["runtime_budget_s"] or 0.0,
                                 r["ram_budget_bytes"], self.strategies.index(r["strategy"])))
        return poet_le_all(rows), schedules
