"""The same staged MILP on every backend, side by side: HiGHS, CBC, SCIP and CP-SAT.

    python benchmarks/backends.py p.json [q.json ...] [--fractions 0.25 0.5 0.75]
                                  [--backends highs cbc scip cpsat] [--time-limit 60]
                                  [--gap 1e-4] [--threads 2] [--repeats 1] [--json out.json]
                                  [--option cpsat:mip_var_scaling=512]
    python benchmarks/backends.py p.json --remat [--max-computes 3] [...]

Problem files only (write them with `poet inspect ... --out p.json`): no torch here. For each
problem and budget (25/50/75% of the way from the minimum feasible RAM to the store-all peak) the
staged MILP of "poet" is built once, with the best heuristic as MIP start and its energy as
cutoff (what `solver.solve` gives its full-MILP phase), and each backend solves that same model in
turn (the backends interleaved, `--repeats` rounds). Columns: seconds to a 1% gap of total energy
(the backend's own incumbent and bound), seconds to the end, the final objective (the decoded
schedule, simulated), the bound, the gap to the bound and the gap to the LP bound (HiGHS' LP
relaxation, the same for every backend), all in joules of total energy. CP-SAT's bound is that of
its own rounding of the continuous columns (no bound of the MILP): shown in brackets.

--remat compares, for the recompute-only strategy, `solver.solve(strategy="remat")` (the default
pipeline on HiGHS: heuristics, LP, neighbourhood, staged MILP) with CP-SAT's interval model
(`solver.cpsat.remat_intervals`, hinted with the best remat heuristic), same time limit and
threads; the interval model's bound holds within its limits on computes and slots only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from solver import Problem, min_feasible_ram, store_all_peak
from solver import backends
from solver.milp import build_milp
from solver.phases import decode, lp_relaxation
from solver.starts import best_start, run_baseline
from solver.strategies import fallbacks

_GRID_BOUND = re.compile(r"rounded model (?P<v>[-+0-9.eE]+)")


def prepare(problem: Problem, frac: float, threads: int | None):
    """(problem at the budget, model, MIP start plan, cutoff, start energy J, LP bound J)."""
    lo, hi = min_feasible_ram(problem), store_all_peak(problem)
    p = problem.with_budgets(ram_budget_bytes=lo + int(frac * (hi - lo)))
    model = build_milp(p, remat=True, paging=True)
    found = {}
    for name in fallbacks("poet")[1:]:
        got = run_baseline(p, name)
        if got is not None:
            found[name] = got
    plan = best_start(p, model, found)
    start_j = min(r.energy_j for _, r in found.values()) if found else None
    sc = model.scaling
    cutoff = None
    if start_j is not None:
        c = sc.to_overhead(start_j)
        cutoff = c + 1e-7 * (sc.objective_per_store_all + abs(c))
    lp_units, _ = lp_relaxation(model, "highs", 300.0, threads)
    lp_j = model.to_energy_j(lp_units) if lp_units is not None else None
    return p, model, plan, cutoff, start_j, lp_j


def time_to_gap(traj, model, gap: float) -> float | None:
    """First second of the run's trajectory at which incumbent - bound <= gap x incumbent (J)."""
    for s, inc, bnd in traj:
        if inc is None or bnd is None:
            continue
        inc_j, bnd_j = model.to_energy_j(inc), model.to_energy_j(bnd)
        if inc_j - bnd_j <= gap * inc_j:
            return s
    return None


def run_one(p, model, plan, cutoff, lp_j, backend, time_limit, gap, threads, options) -> dict:
    if plan is not None:
        model.set_start(plan)
    e0 = p.store_all_energy_j
    t0 = time.perf_counter()
    res = backends.run(model.prob, backend, time_limit_s=time_limit, threads=threads,
                       gap_rel=gap, gap_abs=gap * model.scaling.objective_per_store_all,
                       start=plan is not None, cutoff=cutoff, options=options.get(backend))
    wall = time.perf_counter() - t0
    obj_j = None
    if res.has_solution:
        _, rep = decode(p, model, "poet", backend)
        obj_j = rep.energy_j
    bound_j = model.to_energy_j(res.bound) if res.bound is not None else None
    grid = _GRID_BOUND.search(res.message or "")
    shown_bound = bound_j if bound_j is not None else (
        model.to_energy_j(float(grid.group("v"))) if grid else None)
    gap_j = (obj_j - bound_j) / obj_j if obj_j and bound_j is not None else None
    t_1pct = time_to_gap(res.trajectory, model, 0.01)
    if t_1pct is None and gap_j is not None and gap_j <= 0.01:
        t_1pct = wall       # the trajectory never showed it (CBC's log, HiGHS' presolve): the end
    return {
        "problem": p.name, "backend": backend, "status": res.status, "t_1pct_s": t_1pct,
        "t_end_s": wall, "objective_j": obj_j,
        "overhead": obj_j / e0 - 1 if obj_j is not None else None, "bound_j": bound_j,
        "shown_bound_j": shown_bound, "bound_is_milp": bound_j is not None,
        "gap": gap_j, "gap_lp": (obj_j - lp_j) / obj_j if obj_j and lp_j is not None else None,
        "message": res.message,
    }


def remat_rows(p: Problem, frac: float, time_limit: float, gap: float, threads: int,
               max_computes: int) -> list[dict]:
    """solve(strategy="remat") and remat_intervals on the same problem and budget."""
    from solver.cpsat import remat_intervals
    from solver.solve import solve
    e0 = p.store_all_energy_j
    rows = []
    t0 = time.perf_counter()
    res = solve(p, strategy="remat", time_limit_s=time_limit, threads=threads, gap=gap)
    rows.append({"backend": "solve/remat", "status": res.status, "t_1pct_s":
                 res.time_to_gap(0.01), "t_end_s": time.perf_counter() - t0,
                 "objective_j": res.objective_j, "bound_j": res.bound_j})
    found = [run_baseline(p, n) for n in fallbacks("remat")[1:]]
    found = [f for f in found if f is not None]
    start = min(found, key=lambda f: f[1].energy_j)[0] if found else None
    t0 = time.perf_counter()
    iv = remat_intervals(p, max_computes=max_computes, time_limit_s=time_limit,
                         threads=threads, start=start)
    rows.append({"backend": f"intervals(C={max_computes})", "status": iv.status,
                 "t_1pct_s": None, "t_end_s": time.perf_counter() - t0,
                 "objective_j": iv.report.energy_j if iv.report else None,
                 "bound_j": iv.bound_j})
    for r in rows:
        obj, b = r["objective_j"], r["bound_j"]
        r.update(problem=p.name, fraction=frac, shown_bound_j=b, bound_is_milp=True,
                 overhead=obj / e0 - 1 if obj is not None else None, message="",
                 gap=(obj - b) / obj if obj and b is not None else None, gap_lp=None)
    return rows


def fmt(v, kind=None) -> str:
    """A table cell, as benchmarks/solve.py writes them (gaps with two decimals here)."""
    from solve import _fmt   # benchmarks/solve.py: this script's folder is on sys.path

    return _fmt(v, "e2" if kind == "e" else kind)


def table(rows: list[dict]) -> str:
    head = ["problem", "budget", "backend", "status", "t 1% s", "t end s", "objective J",
            "overhead", "bound J", "gap", "gap to LP"]
    cells = [head]
    for r in rows:
        b = fmt(r["shown_bound_j"], "j")
        cells.append([r["problem"], f"{int(round(100 * r['fraction']))}%", r["backend"],
                      r["status"], fmt(r["t_1pct_s"], "s"), fmt(r["t_end_s"], "s"),
                      fmt(r["objective_j"], "j"), fmt(r["overhead"], "pct"),
                      b if r["bound_is_milp"] or b == "-" else f"[{b}]",
                      fmt(r["gap"], "e"), fmt(r["gap_lp"], "e")])
    w = [max(len(c[i]) for c in cells) for i in range(len(head))]
    lines = ["  ".join(c[i].ljust(w[i]) for i in range(len(head))) for c in cells]
    lines.insert(1, "  ".join("-" * x for x in w))
    return "\n".join(lines)


def parse_options(items: list[str]) -> dict:
    """"cpsat:mip_var_scaling=512" -> {"cpsat": {"mip_var_scaling": 512.0}}."""
    out: dict = {}
    for item in items:
        m = re.fullmatch(r"(\w+):([\w/]+)=(.+)", item)
        if not m:
            raise SystemExit(f"--option {item!r} is not backend:name=value")
        value: object = m.group(3)
        for cast in (int, float):
            try:
                value = cast(m.group(3))
                break
            except ValueError:
                continue
        out.setdefault(m.group(1), {})[m.group(2)] = value
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("problems", nargs="+", help="problem JSON files")
    ap.add_argument("--fractions", nargs="*", type=float, default=[0.25, 0.5, 0.75])
    ap.add_argument("--backends", nargs="*", default=None,
                    help="default: every available one of highs, cbc, scip, cpsat")
    ap.add_argument("--time-limit", type=float, default=60.0)
    ap.add_argument("--gap", type=float, default=1e-4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--option", action="append", default=[],
                    help="a backend's own setting, backend:name=value (repeatable)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--remat", action="store_true",
                    help="recompute only: solve(strategy='remat') against CP-SAT's intervals")
    ap.add_argument("--max-computes", type=int, default=3,
                    help="with --remat: computes per node in the interval model")
    args = ap.parse_args(argv)
    options = parse_options(args.option)
    avail = backends.available_backends()
    names = args.backends or [b for b in ("highs", "cbc", "scip", "cpsat") if b in avail]
    rows = []
    for path in args.problems:
        problem = Problem.load(path)
        for frac in args.fractions:
            if args.remat:
                lo, hi = min_feasible_ram(problem), store_all_peak(problem)
                p = problem.with_budgets(ram_budget_bytes=lo + int(frac * (hi - lo)))
                for _ in range(args.repeats):
                    for row in remat_rows(p, frac, args.time_limit, args.gap, args.threads,
                                          args.max_computes):
                        rows.append(row)
                        print(table([row]).splitlines()[-1], file=sys.stderr, flush=True)
                continue
            p, model, plan, cutoff, start_j, lp_j = prepare(problem, frac, args.threads)
            print(f"{p.name} at {int(round(100 * frac))}%: {model.n_variables} columns, start "
                  f"{fmt(start_j, 'j')} J, LP bound {fmt(lp_j, 'j')} J", file=sys.stderr,
                  flush=True)
            for _ in range(args.repeats):
                for be in names:
                    row = {"fraction": frac, "start_j": start_j, "lp_j": lp_j,
                           **run_one(p, model, plan, cutoff, lp_j, be, args.time_limit,
                                     args.gap, args.threads, options)}
                    rows.append(row)
                    print(table([row]).splitlines()[-1], file=sys.stderr, flush=True)
    print(table(rows))
    print(f"\n{os.cpu_count()} cores (shared with other jobs: timings are noisy); threads "
          f"{args.threads} (SCIP: 1); gap {args.gap:g}; time limit {args.time_limit:g} s per run")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
