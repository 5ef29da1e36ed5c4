"""The files of a sweep: the row columns, sweep.csv, sweep.json and the per-point cache.

    write_csv(rows, "sw/sweep.csv"); rows = read_csv("sw/sweep.csv")   # the same rows back
    write_point(cache_dir, key, inputs, {"row": ..., "schedule": ...})
    read_point(cache_dir / f"{key}.json", key)                         # or None

Every file is written atomically (a temp file renamed into place), so an interrupted sweep
leaves either the old file or the new one. A cache file is named by the point's key
(`poet._sweep.point_key`) and holds the solver columns of its row and its schedule.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from solver import Problem, Schedule
from solver.problem import atomic_file, read_json, write_json_atomic

__all__ = ["COLUMNS", "SOLVER_COLUMNS", "SWEEP_FORMAT", "POINT_FORMAT", "write_csv", "read_csv",
           "load_point", "read_point", "write_point", "write_outputs", "read_sweep", "model_device"]

_log = logging.getLogger(__name__)

SWEEP_FORMAT = "poet-sweep/1"
POINT_FORMAT = "poet-sweep-point/1"

# The columns of a sweep row, in the order of sweep.csv. Units: bytes, seconds, joules.
COLUMNS = (
    "model",                   # problem.extra["model"] (or the name before "@")
    "device",                  # problem.extra["device"] (or the name after "@")
    "strategy",                # one of solver.STRATEGIES
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
    "store_all_energy_j",      # Problem.store_all_energy_j: one pass, no recompute, no paging
    "min_feasible_ram_bytes",  # solver.min_feasible_ram(problem)
    "store_all_peak_bytes",    # solver.store_all_peak(problem)
    "error",                   # why there is no schedule (infeasible, timeout, error)
)
# the columns a solve fills in (the rest are the point's and the problem's)
SOLVER_COLUMNS = ("status", "energy_j", "compute_j", "pagein_j", "pageout_j", "time_s",
                  "peak_ram_bytes", "peak_flash_bytes", "recomputes", "page_ins", "page_outs",
                  "gap", "gap_overhead", "bound_j", "solve_s", "backend", "source", "error")
_INT_COLUMNS = {"ram_budget_bytes", "flash_budget_bytes", "peak_ram_bytes", "peak_flash_bytes",
                "recomputes", "page_ins", "page_outs", "min_feasible_ram_bytes",
                "store_all_peak_bytes"}
_STR_COLUMNS = {"model", "device", "strategy", "status", "backend", "source", "error"}


def model_device(problem: Problem) -> tuple[str, str | None]:
    """(model, device) of a problem: its extra fields, else its name "model@device"."""
    name = problem.name or ""
    model = problem.extra.get("model")
    device = problem.extra.get("device")
    if not isinstance(model, str) or not model:
        model = name.split("@")[0] or "problem"
    if not isinstance(device, str) or not device:
        device = name.split("@")[1] if "@" in name else None
    return model, device


# ---- sweep.csv ------------------------------------------------------------------------------

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
    with atomic_file(Path(path), newline="") as f:
        f.write(buf.getvalue())


def _typed(column: str, text: str):
    if text == "":
        return None
    if column in _STR_COLUMNS:
        return text
    if column == "poet_le_all":
        return text == "true"
    if column in _INT_COLUMNS:
        return int(text)
    return float(text)


def read_csv(path: str | os.PathLike) -> list[dict]:
    """Rows from a sweep.csv, with numbers, booleans and empty cells (None) typed back."""
    with open(path, newline="", encoding="utf-8") as f:
        return [{c: _typed(c, raw.get(c, "")) for c in COLUMNS} for raw in csv.DictReader(f)]


# ---- the per-point cache --------------------------------------------------------------------

def load_point(path: Path, key: str) -> tuple[dict | None, str | None]:
    """A cache file's contents checked for form: (data, None); (None, None) if the file does not
    exist; (None, why) if it cannot be read (not UTF-8, not JSON, nested too deep, NaN) or is
    not a point of this key. The contents are not trusted beyond that: `poet._sweep` simulates
    the schedule again before it uses the point."""
    try:
        data = read_json(path, what="sweep cache")
    except FileNotFoundError:
        return None, None
    except (OSError, ValueError) as e:     # the loader's error names the file already
        return None, str(e).replace(f"{path}: ", "", 1)
    if not isinstance(data, dict) or data.get("format") != POINT_FORMAT:
        return None, f"not a sweep cache file (format must be {POINT_FORMAT!r})"
    if data.get("key") != key:
        return None, "its key is not the file's name"
    if not isinstance(data.get("row"), dict):
        return None, "its row is not a JSON object"
    return data, None


def read_point(path: Path, key: str) -> dict | None:
    """A cached point, or None if the file is missing, unreadable or for another key (a
    warning naming the file is logged for the last two)."""
    data, why = load_point(path, key)
    if why is not None:
        _log.warning("ignoring cache file %s: %s", path, why)
    return data


def write_point(cache_dir: Path, key: str, inputs: dict, out: dict) -> None:
    """Write one finished point ({"row", "schedule"}) as cache_dir/<key>.json."""
    write_json_atomic(cache_dir / f"{key}.json", {
        "format": POINT_FORMAT, "key": key, "inputs": inputs, "row": out["row"],
        "schedule": out["schedule"], "pid": os.getpid(), "finished_at": time.time()})


# ---- sweep.json and the folder --------------------------------------------------------------

def schedule_name(strategy: str, budget: int, runtime: float | None) -> str:
    """The file name of a point's schedule under out_dir/schedules/."""
    rt = "" if runtime is None else f"_{runtime:.6g}s"
    return f"{strategy}_{budget}B{rt}.json"


def write_outputs(result, out: Path, cdir: Path | None, keys: dict, save_schedules: bool) -> None:
    """Write problem.json, sweep.csv, sweep.json (and the schedules) of a `SweepResult` into
    `out`; `keys` maps (strategy, RAM budget, runtime budget) to the point's cache key."""
    result.problem.save(out / "problem.json")
    if save_schedules:
        (out / "schedules").mkdir(exist_ok=True)
        for (s, b, rt), sched in result.schedules.items():
            sched.save(out / "schedules" / schedule_name(s, b, rt))
    result.csv_path = out / "sweep.csv"
    result.json_path = out / "sweep.json"
    write_csv(result.rows, result.csv_path)
    rows_json = []
    cache_keys = []
    for r in result.rows:
        d = dict(r)
        at = (r["strategy"], r["ram_budget_bytes"], r["runtime_budget_s"])
        cache_keys.append(keys[at])
        if save_schedules and at in result.schedules:
            d["schedule_file"] = "schedules/" + schedule_name(*at)
        rows_json.append(d)
    model, dev = model_device(result.problem)
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


def _saved_schedule(row, key, cache_dir, folder: Path) -> Schedule | None:
    """A row's schedule: from the cache if it is still there, else from schedules/."""
    if key and cache_dir and (Path(cache_dir) / f"{key}.json").is_file():
        path = Path(cache_dir) / f"{key}.json"
        cached = read_point(path, key)
        if cached and cached.get("schedule"):
            try:
                return Schedule.from_dict(cached["schedule"])
            except ValueError as e:
                _log.warning("ignoring the schedule in cache file %s: %s", path, e)
    sf = row.get("schedule_file") if isinstance(row, dict) else None
    return Schedule.load(folder / sf) if sf else None


def read_sweep(path: str | os.PathLike) -> tuple[Path, dict[str, Any], Problem, dict]:
    """Read a sweep folder (or its sweep.json): (the sweep.json path, its data with the rows
    stripped of "schedule_file", the problem from problem.json, the schedules found by
    (strategy, RAM budget, runtime budget))."""
    p = Path(path)
    jp = p / "sweep.json" if p.is_dir() else p
    data = read_json(jp, what="sweep")
    if not isinstance(data, dict) or data.get("format") != SWEEP_FORMAT:
        raise ValueError(f"{jp}: not a sweep file (format must be {SWEEP_FORMAT!r})")
    problem = Problem.load(jp.parent / data.get("problem_file", "problem.json"))
    rows = data["rows"]
    schedules: dict = {}
    for r, key in zip(rows, data.get("cache_keys", [])):
        sched = _saved_schedule(r, key, data.get("cache_dir"), jp.parent)
        if isinstance(r, dict):
            r.pop("schedule_file", None)
        if sched is not None:
            schedules[(r["strategy"], r["ram_budget_bytes"], r["runtime_budget_s"])] = sched
    return jp, data, problem, schedules
