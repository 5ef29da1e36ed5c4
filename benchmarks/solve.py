"""MILP benchmark: one row per (problem, budget, backend).

    python benchmarks/solve.py [problem.json ...] [--zoo resnet18 vgg11 ...] [--profile nrf52840]
                               [--backends highs cbc] [--fractions 0.25 0.5 0.75]
                               [--time-limit 60] [--gap 1e-4] [--threads N] [--json out.json]
                               [--check]
    python benchmarks/solve.py --scale [--chains 250 500 1000 2000] [--no-zoo] [--time-limit 60]

Budgets lie 25/50/75% of the way from the minimum feasible RAM (static bytes plus the largest
single compute) to the store-all peak. Columns: variables and constraints of the staged MILP,
the status, how many orders of first computes were solved, seconds spent in the heuristics and
in building the MILP(s) (both within the solve), seconds to a 1% gap (total energy) and to the end
of the solve, the final gap both
as a share of total energy and of the overhead above store-all, the energy overhead over
store-all, the number of recomputes and page-ins, and which solver produced the schedule (the
MILP, or a heuristic it could not beat). Zoo graphs need the extractor (torch); problem files do
not. --check exits with status 1 unless layer-level ResNet-18 reaches a total gap of 1% within
5 s and of 1e-4 within 60 s at every budget with the default backend (the project's targets).
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
from solver.backends import available_backends, resolve_backend
from solver.solve import solve

TARGET_GAP = 1e-4
TARGET_S = 60.0
TARGET_FIRST_GAP = 0.01
TARGET_FIRST_S = 5.0


def _zoo_spec(spec: str) -> tuple[str, dict]:
    """"bert" or "bert:num_layers=8,seq_len=16" -> (name, options); option values are ints,
    floats or strings."""
    name, _, rest = spec.partition(":")
    options = {}
    for item in filter(None, rest.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"zoo option {item!r} in {spec!r} is not key=value")
        for cast in (int, float, str):
            try:
                options[key] = cast(value)
                break
            except ValueError:
                continue
    return name, options


# the scale curve's deeper ResNets: BasicBlocks per stage (op level: T = 37 + 72 N, 1,045 at 14)
DEEP_RESNET_BLOCKS = (4, 8, 14)
# depth beyond what the zoo builds: (option, the zoo's largest value, None where the zoo has no
# such option; the zoo class that takes it), built on the zoo's batch and loss
_DEEPER = {"bert": ("num_layers", 4, "TinyBERT"), "resnet18": ("blocks", None, "ResNet18"),
           "mobilenetv2": ("repeats", None, "MobileNetV2")}
# the scale curve's deeper MobileNetV2s: each bottleneck of Table 2 repeated this many times as
# often (op level: T = 452 at 1, the zoo's)
DEEP_MOBILENET_REPEATS = (2, 3)


def _deeper_model(cls: str, key: str, value: int, options: dict):
    """The zoo class `cls` with `key` = value beyond what the zoo builds. MobileNetV2 takes no
    depth option: "repeats" multiplies every stage's number of bottlenecks (the n of the
    paper's Table 2), on the zoo's width, classes and layout."""
    from poet import zoo
    if cls != "MobileNetV2":
        return getattr(zoo, cls)(**{key: value}, **options)

    class DeepMobileNetV2(zoo.MobileNetV2):
        SETTINGS = tuple((t, c, n * value, s) for t, c, n, s in zoo.MobileNetV2.SETTINGS)
        PAPER_SETTINGS = tuple((t, c, n * value, s) for t, c, n, s in
                               zoo.MobileNetV2.PAPER_SETTINGS)

    return DeepMobileNetV2(num_classes=options.get("num_classes", 10),
                           width_mult=options.get("width", 0.5),
                           layout=options.get("layout", "cifar"))


def zoo_problems(names: list[str], profile: str,
                 granularities: tuple[str, ...] = ("layer",)) -> list[Problem]:
    """Problems for zoo models (batch 1) priced on `profile`; op-level ones are named name/op.
    A name may carry builder options: "bert:num_layers=8"; "resnet18:blocks=8" has 8
    BasicBlocks per stage instead of 2."""
    import torch

    from poet import zoo
    from poet.costs import make_problem
    from poet._extract import extract
    out = []
    for spec in names:
        name, options = _zoo_spec(spec)
        for gran in granularities:
            key, zoo_max, cls = _DEEPER.get(name, (None, None, None))
            if key in options and (zoo_max is None or options[key] > zoo_max):
                others = {k: v for k, v in options.items() if k != key}
                _, loss_fn, x, y = zoo.get(name, batch_size=1, **others)
                torch.manual_seed(0)
                model = _deeper_model(cls, key, options[key], others)
            else:
                model, loss_fn, x, y = zoo.get(name, batch_size=1, **options)
            graph = extract(model, loss_fn, x, y, granularity=gran)
            label = spec.replace(":", "(").replace(",", " ") + (")" if options else "")
            label = label if gran == "layer" else f"{label}/op"
            out.append(make_problem(graph, profile, name=f"{label}@{profile}"))
    return out


def run_row(problem: Problem, frac: float, backend: str, time_limit: float, gap: float,
            threads: int | None) -> dict:
    lo, hi = min_feasible_ram(problem), store_all_peak(problem)
    budget = lo + int(frac * (hi - lo))
    p = problem.with_budgets(ram_budget_bytes=budget)
    t0 = time.perf_counter()
    res = solve(p, backend=backend, time_limit_s=time_limit, gap=gap, threads=threads)
    wall = time.perf_counter() - t0
    e0 = res.store_all_energy_j
    row = {
        "problem": problem.name, "T": problem.T, "fraction": frac, "budget_bytes": budget,
        "backend": backend, "variables": res.n_variables, "constraints": res.n_constraints,
        "status": res.status, "source": res.source, "t_1pct_s": res.time_to_gap(0.01),
        "t_final_s": wall, "heuristics_s": res.heuristics_s, "build_s": res.build_s,
        "gap": res.gap, "gap_overhead": res.gap_overhead, "orders": len(res.orders) or 1,
        "overhead": (res.objective_j / e0 - 1) if res.objective_j is not None and e0 else None,
        "recomputes": res.report.n_recompute if res.report else None,
        "page_ins": res.report.n_page_in if res.report else None,
        "best_baseline_overhead": (min(res.baselines_j.values()) / e0 - 1)
        if res.baselines_j and e0 else None,
    }
    return row


def _fmt(v, kind):
    """A table cell: "s" seconds, "e" / "e2" a gap (1 or 2 decimals), "j" joules, "pct" a share."""
    if v is None:
        return "-"
    if kind == "s":
        return f"{v:.1f}"
    if kind == "e":
        return f"{v:.1e}"
    if kind == "e2":
        return f"{v:.2e}"
    if kind == "j":
        return f"{v:.6g}"
    if kind == "pct":
        return f"{100 * v:.3f}%"
    return str(v)


COLUMNS = [("problem", "problem", None), ("T", "T", None), ("budget", "fraction", None),
           ("backend", "backend", None), ("vars", "variables", None),
           ("cons", "constraints", None), ("status", "status", None),
           ("orders", "orders", None), ("heur s", "heuristics_s", "s"),
           ("build s", "build_s", "s"), ("t 1% s", "t_1pct_s", "s"), ("t end s", "t_final_s", "s"),
           ("gap", "gap", "e"), ("gap/ovh", "gap_overhead", "e"),
           ("overhead", "overhead", "pct"), ("heur. ovh", "best_baseline_overhead", "pct"),
           ("recomp", "recomputes", None), ("page-ins", "page_ins", None),
           ("from", "source", None)]


def format_table(rows: list[dict]) -> str:
    cells = [[h for h, _, _ in COLUMNS]]
    for r in rows:
        cells.append([_fmt(r[k], kind) if k != "fraction" else f"{int(100 * r[k])}%"
                      for _, k, kind in COLUMNS])
    widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join(c[i].ljust(widths[i]) for i in range(len(COLUMNS))) for c in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("problems", nargs="*", help="problem JSON files")
    ap.add_argument("--zoo", nargs="*", default=None,
                    help="zoo models to extract and price (default with no files: resnet18); "
                         "builder options after a colon: bert:num_layers=8")
    ap.add_argument("--profile", default="nrf52840", help="device profile for zoo models")
    ap.add_argument("--backends", nargs="*", default=None,
                    help="backends to compare (default: every available one)")
    ap.add_argument("--fractions", nargs="*", type=float, default=[0.25, 0.5, 0.75])
    ap.add_argument("--time-limit", type=float, default=TARGET_S)
    ap.add_argument("--gap", type=float, default=TARGET_GAP)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    ap.add_argument("--granularity", nargs="*", default=None, choices=["layer", "op"],
                    help="zoo graphs at these granularities (default layer)")
    ap.add_argument("--scale", action="store_true",
                    help="scale curve: zoo graphs (all models, BERT with 4 and 8 blocks, "
                         "ResNet-18 with 4, 8 and 14 blocks per stage and MobileNetV2 with 2 and "
                         "3 times its bottlenecks, layer and op level unless given) smallest "
                         "first, at 50%% of the budget range, default backend, gap 1e-3 and 600 s "
                         "unless given; a model family stops at its first graph that misses")
    ap.add_argument("--chains", nargs="*", type=int, default=[],
                    help="with --scale: also random training-step chains of these sizes "
                         "(solver.generators, no extractor needed)")
    ap.add_argument("--no-zoo", action="store_true",
                    help="with --scale: only the problem files and --chains")
    ap.add_argument("--check", action="store_true",
                    help="exit 1 unless ResNet-18 meets the 1%%-in-5-s and 1e-4-in-60-s targets")
    args = ap.parse_args(argv)
    if args.scale:
        return scale_curve(args, ap)

    problems = [Problem.load(f) for f in args.problems]
    zoo = args.zoo if args.zoo is not None else ([] if problems else ["resnet18"])
    if zoo:
        try:
            problems += zoo_problems(zoo, args.profile, tuple(args.granularity or ["layer"]))
        except ImportError as e:
            print(f"zoo graphs skipped (the extractor is not available: {e})", file=sys.stderr)
    backends = args.backends or [b for b in ("highs", "cbc", "gurobi")
                                 if b in available_backends()]
    default = resolve_backend("auto")
    rows = []
    for p in problems:
        for frac in args.fractions:
            for be in backends:
                row = run_row(p, frac, be, args.time_limit, args.gap, args.threads)
                rows.append(row)
                print(format_table([row]).splitlines()[-1], file=sys.stderr, flush=True)
    print(format_table(rows))
    print(f"\n{os.cpu_count()} cores; default backend: {default}; gap {args.gap:g}; time limit "
          f"{args.time_limit:g} s")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    target_rows = [r for r in rows if r["problem"].lower().startswith("resnet18")
                   and r["backend"] == default]
    if target_rows:
        met = all(r["status"] == "optimal" and r["gap"] is not None and r["gap"] <= TARGET_GAP
                  and r["t_final_s"] <= TARGET_S and r["t_1pct_s"] is not None
                  and r["t_1pct_s"] <= TARGET_FIRST_S for r in target_rows)
        print(f"target (ResNet-18, gap {TARGET_FIRST_GAP:g} within {TARGET_FIRST_S:g} s and "
              f"{TARGET_GAP:g} within {TARGET_S:g} s, {default}): {'met' if met else 'MISSED'}")
        if args.check and not met:
            return 1
    return 0


def _family(problem: Problem) -> str:
    """A graph's family for the scale curve: its name without the builder options and the
    device ("bert(num_layers=8)/op@nrf52840" -> "bert/op")."""
    name = problem.name.split("@")[0]
    return re.sub(r"\(.*?\)|^chain\d+$", lambda m: "chain" if m.group(0).startswith("chain") else "", name)


def scale_curve(args, ap) -> int:
    """Solve time against graph size: every graph, smallest first, at 50% of its budget range;
    a family (model and granularity) is followed up to its first graph that misses the gap in
    the time limit, and larger graphs of that family are skipped."""
    from solver.generators import random_problem
    gap = args.gap if args.gap != ap.get_default("gap") else 1e-3
    limit = args.time_limit if args.time_limit != ap.get_default("time_limit") else 600.0
    problems = [Problem.load(f) for f in args.problems]
    problems += [random_problem(1, T, shape="chain").with_budgets(name=f"chain{T}")
                 for T in args.chains]
    if not args.no_zoo:
        from poet import zoo as zoo_mod
        names = args.zoo or (zoo_mod.names() + [f"bert:num_layers={n}" for n in (4, 8)]
                             + [f"resnet18:blocks={n}" for n in DEEP_RESNET_BLOCKS]
                             + [f"mobilenetv2:repeats={n}" for n in DEEP_MOBILENET_REPEATS])
        problems += zoo_problems(names, args.profile, tuple(args.granularity or ["layer", "op"]))
    problems.sort(key=lambda p: p.T)
    backend = (args.backends or [resolve_backend("auto")])[0]
    rows = []
    missed: set[str] = set()
    for p in problems:
        if min_feasible_ram(p) == store_all_peak(p) or _family(p) in missed:
            continue        # nothing to decide, or a smaller graph of its family missed
        row = run_row(p, 0.5, backend, limit, gap, args.threads)
        rows.append(row)
        print(format_table([row]).splitlines()[-1], file=sys.stderr, flush=True)
        if not _reached(row, gap):
            missed.add(_family(p))
    print(format_table(rows))
    last_ok = [r for r in rows if _reached(r, gap)]
    print(f"\n{os.cpu_count()} cores; {backend}; gap {gap:g}; time limit {limit:g} s; largest "
          f"graph that reached the gap: "
          + (f"{last_ok[-1]['problem']} (T={last_ok[-1]['T']})" if last_ok else "none")
          + (f"; missed first in: {', '.join(sorted(missed))}" if missed else ""))
    return 0


def _reached(row: dict, gap: float) -> bool:
    return row["status"] == "optimal" and row["gap"] is not None and row["gap"] <= gap


if __name__ == "__main__":
    sys.exit(main())
