"""The `poet` command line. Library code never prints; this module does.

Every subcommand is a function `cmd_<name>(args) -> int`; errors the user can fix (bad file,
bad size, infeasible budget) become one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap

EXAMPLES = {
    "sweep": ["poet sweep resnet18 --device nrf52840 --budgets 8 --out sweeps/r18-m4",
              "poet sweep bert --device rpi4 --budgets 1MiB:2.5MiB:6 --strategies poet,remat,paging",
              "poet sweep p.json --budgets 256KiB,384KiB,512KiB --time-limit 30 --out sw",
              "poet sweep resnet18 --device rpi4 --scheduler local --out sw      (Dask LocalCluster)",
              "poet sweep resnet18 --device rpi4 --scheduler tcp://10.0.0.5:8786 --out sw"],
    "plot": ["poet plot sweeps/r18-m4", "poet plot sweeps/r18-m4 --budget 96MiB --format pdf",
             "poet plot --problem p.json --schedule s.json --out plots/"],
    "verify": ["poet verify s.json", "poet verify s.json --model resnet18 --batch-size 1",
               "poet verify s.json --problem p.json --flash-dir /mnt/sd/poet"],
    "solve": ["poet solve resnet18 --device rpi4 --ram 100MiB --out s.json",
              "poet solve mlp --device nrf52840 --ram 0.9x --runtime 1.5x",
              "poet solve problem.json --ram 256KiB --backend cbc --time-limit 60",
              "poet solve vgg11 --device jetson_tx2 --ram 0.8x --no-paging --json"],
    "demo": ["poet demo", "poet demo --model mlp --device nrf52840"],
    "inspect": ["poet inspect resnet18 --device rpi4",
                "poet inspect mlp --device nrf52840 --train bias --out mlp.json",
                "poet inspect mypkg.models:make --device m4 --batch-size 4"],
    "profiles": ["poet profiles", "poet profiles --json"],
    "simulate": ["poet simulate problem.json schedule.json",
                 "poet simulate problem.json schedule.json --json"],
}


def _is_number(cell: str) -> bool:
    try:
        float(cell.replace(",", "").rstrip("%x"))
        return True
    except ValueError:
        return False


def _table(rows: list[list[str]], header: list[str]) -> str:
    """A plain, aligned text table (cells that are numbers right-aligned)."""
    cols = list(zip(header, *rows)) if rows else [(h,) for h in header]
    widths = [max(len(str(c)) for c in col) for col in cols]

    def fmt(row):
        return "  ".join(str(c).rjust(w) if _is_number(str(c)) else str(c).ljust(w)
                         for c, w in zip(row, widths)).rstrip()

    lines = [fmt(header), "  ".join("-" * w for w in widths)]
    lines += [fmt(r) for r in rows]
    return "\n".join(lines)


def _kv(rows: list[list[str]]) -> str:
    """Key: value lines, keys padded to one width."""
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


def _epilog(name: str) -> str:
    return "examples:\n" + "\n".join(f"  {e}" for e in EXAMPLES.get(name, []))


# ---- poet profiles ---------------------------------------------------------------------------
def cmd_profiles(args) -> int:
    from .profiles import list_profiles
    from .units import format_bytes

    profiles = list_profiles()
    if args.json:
        print(json.dumps([p.to_dict() for p in profiles], indent=1))
        return 0
    rows = []
    for p in profiles:
        rows.append([p.name, p.description, f"{p.flops_per_s / 1e6:.4g}",
                     f"{p.joules_per_flop * 1e9:.4g}", format_bytes(p.ram_bytes),
                     format_bytes(p.flash_bytes), f"{p.flash_read_bytes_per_s / 1e6:,.2f}",
                     f"{p.flash_write_bytes_per_s / 1e6:,.2f}"])
    print(_table(rows, ["name", "device", "MFLOP/s", "nJ/FLOP", "RAM", "flash",
                        "read MB/s", "write MB/s"]))
    return 0


# ---- poet simulate ---------------------------------------------------------------------------
def cmd_simulate(args) -> int:
    from solver import Problem, Schedule, simulate
    from .units import format_bytes, format_energy, format_time

    problem = Problem.load(args.problem)
    schedule = Schedule.load(args.schedule)
    r = simulate(problem, schedule)
    if args.json:
        print(json.dumps({"energy_j": r.energy_j, "time_s": r.time_s,
                          "peak_ram_bytes": r.peak_ram_bytes, "peak_flash_bytes": r.peak_flash_bytes,
                          "split": r.split, "recomputes": r.n_recompute, "page_ins": r.n_page_in,
                          "page_outs": r.n_page_out, "valid": True}, indent=1))
        return 0
    budget = problem.ram_budget_bytes
    rows = [
        ["valid", "yes (every rule of the semantics holds)"],
        ["energy", f"{format_energy(r.energy_j)} (compute {format_energy(r.split['compute_j'])}, "
                   f"page-in {format_energy(r.split['pagein_j'])}, "
                   f"page-out {format_energy(r.split['pageout_j'])})"],
        ["time", format_time(r.time_s)],
        ["peak RAM", f"{format_bytes(r.peak_ram_bytes)}"
                     + (f" of {format_bytes(budget)} budget" if budget is not None else "")],
        ["peak flash", format_bytes(r.peak_flash_bytes)],
        ["instructions", f"{len(schedule)} ({r.n_recompute} recomputes, {r.n_page_out} page-outs, "
                         f"{r.n_page_in} page-ins)"],
    ]
    print(f"{problem.name or args.problem}: schedule {schedule.strategy}")
    print(_kv(rows))
    return 0


# ---- poet inspect ----------------------------------------------------------------------------
def _spec_from_args(args):
    from .modelspec import ModelSpec

    train = args.train
    if "," in train or train not in ("all", "bias", "last"):
        train = [t for t in train.split(",") if t]
    return ModelSpec(model=args.model, batch_size=args.batch_size, train=train,
                     optimizer=args.optimizer, seed=args.seed)


def cmd_inspect(args) -> int:
    import solver
    from .modelspec import extract_problem
    from .units import format_bytes

    spec = _spec_from_args(args)
    graph, problem = extract_problem(spec, args.device, granularity=args.granularity)
    kinds = {k: sum(1 for n in graph.nodes if n.kind == k) for k in ("forward", "loss", "backward")}
    peak = solver.store_all_peak(problem)
    low = solver.min_feasible_ram(problem)
    info = {
        "model": spec.model, "device": problem.extra.get("device"), "train": spec.train,
        "batch_size": spec.batch_size, "granularity": args.granularity,
        "nodes": graph.T, "edges": len(graph.edges), "forward": kinds["forward"],
        "loss": kinds["loss"], "backward": kinds["backward"], "aten_ops": graph.num_aten_ops,
        "flops": graph.total_flops, "extra_flops": graph.total_extra_flops,
        "activation_bytes": graph.activation_bytes, "static_bytes": graph.static_bytes,
        "store_all_peak_bytes": peak, "min_feasible_ram_bytes": low,
        "store_all_energy_j": sum(n.compute_j for n in problem.nodes),
        "store_all_time_s": sum(n.compute_s for n in problem.nodes),
        "trace_s": graph.trace_seconds,
    }
    if args.out:
        problem.save(args.out)
        info["problem_file"] = str(args.out)
    if args.json:
        print(json.dumps(info, indent=1))
        return 0
    from .units import format_energy, format_time
    rows = [
        ["nodes", f"{graph.T} ({kinds['forward']} forward, {kinds['loss']} loss, "
                  f"{kinds['backward']} backward; {graph.num_aten_ops} ATen ops)"],
        ["edges", str(len(graph.edges))],
        ["FLOPs", f"{graph.total_flops:,} counted + {graph.total_extra_flops:,} estimated"],
        ["activation bytes", format_bytes(graph.activation_bytes)],
        ["static bytes", f"{format_bytes(graph.static_bytes)} ("
                         + ", ".join(f"{k} {format_bytes(v)}"
                                     for k, v in graph.static_breakdown.items() if v) + ")"],
        ["store-all peak RAM", format_bytes(peak)],
        ["minimum feasible RAM", format_bytes(low)],
        ["store-all energy", format_energy(info["store_all_energy_j"])],
        ["store-all time", format_time(info["store_all_time_s"])],
        ["trace time", f"{graph.trace_seconds:.2f} s"],
    ]
    print(f"{spec.model} (batch {spec.batch_size}, train={spec.train}) on {info['device']}")
    print(_kv(rows))
    if args.out:
        print(f"wrote {args.out}")
    return 0


def _add_model_args(p, *, device_required=True):
    p.add_argument("model", help="a zoo name (mlp, resnet18, mobilenetv2, vgg11, bert, "
                                 "cnn_dropout_bn) or module:function returning (model, loss_fn, "
                                 "inputs, targets)")
    p.add_argument("--device", required=device_required,
                   help="a built-in profile name (see `poet profiles`) or a path to a TOML profile")
    p.add_argument("--batch-size", type=int, default=1, help="batch size (default 1)")
    p.add_argument("--train", default="all",
                   help="all | bias | last | a comma list of module names to update (default all)")
    p.add_argument("--optimizer", default="sgd", choices=["sgd", "sgd_momentum", "adam"],
                   help="optimizer whose state counts as static memory (default sgd)")
    p.add_argument("--granularity", default="layer", choices=["layer", "op"],
                   help="one node per layer call (default) or per ATen op")
    p.add_argument("--seed", type=int, default=0, help="seed of the model's weights and batch")


# ---- poet solve --------------------------------------------------------------------------------
def _load_problem(args):
    """(problem, graph or None) from a problem JSON file or a model spec + device."""
    from pathlib import Path

    from solver import Problem
    from .costs import apply_budgets

    if args.model.endswith(".json") or Path(args.model).is_file():
        problem = Problem.load(args.model)
        budgets = {}
        if args.ram is not None:
            budgets["ram_budget"] = args.ram
        else:
            budgets["ram_budget"] = problem.ram_budget_bytes
        budgets["runtime_budget"] = (args.runtime if args.runtime is not None
                                     else problem.runtime_budget_s)
        budgets["flash_budget"] = (args.flash if args.flash is not None
                                   else problem.flash_budget_bytes)
        return apply_budgets(problem, args.device, **budgets), None
    if not args.device:
        raise ValueError("--device is required when MODEL is a model (not a problem JSON file)")
    from .modelspec import extract_problem
    graph, problem = extract_problem(_spec_from_args(args), args.device,
                                     ram_budget=args.ram, runtime_budget=args.runtime,
                                     flash_budget=args.flash, granularity=args.granularity)
    return problem, graph


def _strategy(args) -> str:
    strategy = args.strategy
    if args.no_remat or args.no_paging:
        if strategy != "poet":
            raise ValueError("--no-remat/--no-paging apply to --strategy poet only")
        strategy = {(True, True): "store_all", (True, False): "paging",
                    (False, True): "remat"}[(args.no_remat, args.no_paging)]
    return strategy


def _solve_rows(problem, result) -> list[list[str]]:
    from .units import format_bytes, format_energy, format_time

    r = result.report
    store_all_j = sum(n.compute_j for n in problem.nodes)
    rows = [["status", result.status]]
    if r is None:
        return rows
    overhead = r.energy_j / store_all_j - 1 if store_all_j else 0.0
    rows += [
        ["energy", f"{format_energy(r.energy_j)} = compute {format_energy(r.split['compute_j'])}"
                   f" + page-in {format_energy(r.split['pagein_j'])}"
                   f" + page-out {format_energy(r.split['pageout_j'])}"],
        ["vs store-all", f"{format_energy(store_all_j)} ({overhead:+.3%})"],
        ["time", format_time(r.time_s) + (f" (budget {format_time(problem.runtime_budget_s)})"
                                          if problem.runtime_budget_s else "")],
        ["peak RAM", format_bytes(r.peak_ram_bytes) + (
            f" (budget {format_bytes(problem.ram_budget_bytes)})"
            if problem.ram_budget_bytes is not None else "")],
        ["peak flash", format_bytes(r.peak_flash_bytes)],
        ["recomputations", str(r.n_recompute)],
        ["page-outs / page-ins", f"{r.n_page_out} / {r.n_page_in}"],
    ]
    if result.gap is not None:
        rows.append(["gap", f"{result.gap:.2e} of total energy"
                     + (f", {result.gap_overhead:.2%} of the overhead above store-all"
                        if getattr(result, "gap_overhead", None) is not None else "")])
    if result.bound_j is not None:
        rows.append(["lower bound", format_energy(result.bound_j)])
    rows.append(["solve time", f"{result.solve_s:.2f} s ({result.backend}, "
                               f"{result.n_variables} variables, {result.n_constraints} rows)"
                 if result.n_variables else f"{result.solve_s:.2f} s"])
    return rows


def _result_json(problem, result) -> dict:
    r = result.report
    d = {"problem": problem.name, "fingerprint": problem.fingerprint, "strategy": result.strategy,
         "status": result.status, "objective_j": result.objective_j, "bound_j": result.bound_j,
         "gap": result.gap, "gap_overhead": getattr(result, "gap_overhead", None),
         "solve_s": result.solve_s, "backend": result.backend,
         "n_variables": result.n_variables, "n_constraints": result.n_constraints,
         "ram_budget_bytes": problem.ram_budget_bytes,
         "store_all_energy_j": sum(n.compute_j for n in problem.nodes)}
    if r is not None:
        d.update({"energy_j": r.energy_j, "time_s": r.time_s, "peak_ram_bytes": r.peak_ram_bytes,
                  "peak_flash_bytes": r.peak_flash_bytes, "split": r.split,
                  "recomputes": r.n_recompute, "page_outs": r.n_page_out,
                  "page_ins": r.n_page_in})
    return d


def cmd_solve(args) -> int:
    import solver

    problem, _ = _load_problem(args)
    strategy = _strategy(args)
    progress = None
    if not args.verbose and not args.json and sys.stderr.isatty():
        def progress(line: str) -> None:
            print(f"\r{line[:100]:<100}", end="", file=sys.stderr, flush=True)
    result = solver.solve(problem, strategy=strategy, backend=args.backend,
                          time_limit_s=args.time_limit, threads=args.threads, gap=args.gap,
                          verbose=args.verbose, progress=progress)
    if progress is not None:
        print("\r" + " " * 100 + "\r", end="", file=sys.stderr, flush=True)
    if result.schedule is not None:
        if "model_spec" in problem.extra:
            result.schedule.extra["model_spec"] = problem.extra["model_spec"]
            result.schedule.extra["device"] = problem.extra.get("device")
            result.schedule.extra["granularity"] = problem.extra.get("granularity", "layer")
        if args.out:
            result.schedule.save(args.out)
        if args.problem_out:
            problem.save(args.problem_out)
    if args.json:
        print(json.dumps(_result_json(problem, result), indent=1))
    else:
        print(f"{problem.name}: strategy {strategy}")
        print(_kv(_solve_rows(problem, result)))
        if args.out and result.schedule is not None:
            print(f"wrote {args.out}")
    return 0 if result.schedule is not None else 1


# ---- poet verify -------------------------------------------------------------------------------
def _verify_rows(rep) -> list[list[str]]:
    from .units import format_bytes

    return [
        ["peak RAM", f"predicted {format_bytes(rep.predicted_peak_bytes)} "
                     f"({rep.predicted_peak_bytes:,} B), measured "
                     f"{format_bytes(rep.measured_peak_bytes)} ({rep.measured_peak_bytes:,} B)"
                     + ("" if rep.trace_equal else
                        f"; traces differ first at instruction {rep.first_trace_mismatch}")],
        ["flash written", f"predicted {rep.predicted_flash_written:,} B, "
                          f"measured {rep.measured_flash_written:,} B"],
        ["flash read", f"predicted {rep.predicted_flash_read:,} B, "
                       f"measured {rep.measured_flash_read:,} B"],
        ["gradients", f"max |diff| {rep.max_abs_grad_diff:.3g} (scale {rep.grad_scale:.3g}, "
                      f"relative {rep.max_rel_grad_diff:.3g})"
                      + ("; bitwise equal to eager" if rep.bitwise else "")],
        ["loss", f"{rep.loss:.6g} (eager {rep.eager_loss:.6g})"],
        ["buffers", f"max |diff| {rep.max_buffer_diff:.3g}"],
        ["instructions", f"{rep.n_instructions} ({rep.n_recompute} recomputes, "
                         f"{rep.n_page_out} page-outs, {rep.n_page_in} page-ins)"],
        ["CPU time", f"executor {rep.executor_seconds:.3f} s, eager {rep.eager_seconds:.3f} s"],
    ]


def cmd_verify(args) -> int:
    from solver import Problem, Schedule
    from .extract import extract
    from .modelspec import ModelSpec
    from .replay import verify

    schedule = Schedule.load(args.schedule)
    recorded = schedule.extra.get("model_spec")
    if args.model:
        spec = _spec_from_args(args)
    elif recorded is not None:
        spec = ModelSpec.from_dict(recorded)
        if args.batch_size_given:
            spec = ModelSpec(spec.model, args.batch_size, spec.train, spec.optimizer, spec.seed)
    else:
        raise ValueError(f"{args.schedule} records no model; name it with --model "
                         f"(a zoo name or module:function)")
    problem = Problem.load(args.problem) if args.problem else None
    model, loss_fn, inputs, targets = spec.load()
    granularity = schedule.extra.get("granularity", "layer")
    graph = extract(model, loss_fn, inputs, targets, granularity=granularity, train=spec.train,
                    optimizer=spec.optimizer, name=spec.model.rsplit(":", 1)[-1])
    device = args.device or schedule.extra.get("device")
    rep = verify(graph, schedule, model, inputs, targets, problem=problem, loss_fn=loss_fn,
                 flash_dir=args.flash_dir, device=device)
    if args.json:
        print(json.dumps(rep.to_dict(), indent=1))
    else:
        print(f"{spec.model} (batch {spec.batch_size}, train={spec.train}): schedule "
              f"{schedule.strategy} from {args.schedule}")
        print(_kv(_verify_rows(rep)))
        if rep.passed:
            print("PASS")
        else:
            print("FAIL: " + "; ".join(rep.failures))
    return 0 if rep.passed else 1


# ---- poet demo ---------------------------------------------------------------------------------
def cmd_demo(args) -> int:
    """The main job on built-in defaults: trace, solve every strategy at one budget, verify."""
    import dataclasses
    from pathlib import Path

    import solver
    from .extract import extract
    from .costs import make_problem
    from .modelspec import ModelSpec
    from .replay import verify
    from .units import format_bytes, format_energy

    if not 0 <= args.budget <= 1:
        raise ValueError(f"--budget must be between 0 (the minimum feasible RAM) and 1 (the "
                         f"store-all peak), got {args.budget}")
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    spec = ModelSpec(args.model, batch_size=args.batch_size)
    model, loss_fn, inputs, targets = spec.load()
    graph = extract(model, loss_fn, inputs, targets, name=args.model)
    free = make_problem(graph, args.device)
    lo, hi = solver.min_feasible_ram(free), solver.store_all_peak(free)
    budget = int(lo + args.budget * (hi - lo))
    problem = free.with_budgets(ram_budget_bytes=budget)
    problem = dataclasses.replace(problem, extra={
        **problem.extra, "model_spec": spec.to_dict(), "granularity": "layer"})
    problem.save(out / "problem.json")
    print(f"{args.model} (batch {args.batch_size}) on {args.device}: {graph.T} nodes, "
          f"{len(graph.edges)} edges, traced in {graph.trace_seconds:.2f} s")
    print(f"RAM budget {format_bytes(budget)}: {args.budget:.0%} of the way from the minimum "
          f"feasible {format_bytes(lo)} to the store-all peak {format_bytes(hi)}")
    print()
    rows, best = [], None
    store_all_j = sum(n.compute_j for n in problem.nodes)
    for strategy in ("store_all", "sqrtn", "dtr", "greedy_paging", "remat", "paging", "poet"):
        try:
            res = solver.solve(problem, strategy=strategy, time_limit_s=args.time_limit)
        except solver.InfeasibleError:
            rows.append([strategy, "infeasible", "", "", "", "", ""])
            continue
        r = res.report
        rows.append([strategy, res.status, format_energy(r.energy_j),
                     f"{r.energy_j / store_all_j - 1:+.3%}", format_bytes(r.peak_ram_bytes),
                     f"{r.n_recompute}/{r.n_page_out}/{r.n_page_in}", f"{res.solve_s:.2f}"])
        if strategy == "poet":
            best = res
    print(_table(rows, ["strategy", "status", "energy", "vs store-all", "peak RAM",
                        "remat/out/in", "solve s"]))
    if best is None or best.schedule is None:
        print("POET found no schedule at this budget")
        return 1
    sched = best.schedule
    sched.extra.update({"model_spec": spec.to_dict(), "device": args.device,
                        "granularity": "layer"})
    sched.save(out / "schedule.json")
    print()
    rep = verify(graph, sched, model, inputs, targets, problem=problem, loss_fn=loss_fn)
    print("replayed on real tensors against eager PyTorch:")
    print(_kv(_verify_rows(rep)))
    print("PASS" if rep.passed else "FAIL: " + "; ".join(rep.failures))
    print(f"\nwrote {out / 'problem.json'} and {out / 'schedule.json'}")
    return 0 if rep.passed else 1


# ---- poet sweep --------------------------------------------------------------------------------
def cmd_sweep(args) -> int:
    from pathlib import Path

    from .plot import plot_sweep
    from .sweep import STRATEGIES, sweep
    from .units import format_bytes, format_energy

    strategies = tuple(s.strip() for s in args.strategies.split(",") if s.strip())
    bad = [s for s in strategies if s not in STRATEGIES]
    if bad:
        raise ValueError(f"--strategies: unknown {', '.join(bad)}; choose from "
                         f"{', '.join(STRATEGIES)}")
    budgets = int(args.budgets) if args.budgets.isdigit() else args.budgets
    source = args.model
    if not (args.model.endswith(".json") or Path(args.model).is_file()):
        if not args.device:
            raise ValueError("--device is required when MODEL is a model (not a problem JSON)")
        source = _spec_from_args(args)
    runtime = [r for r in args.runtime_budgets.split(",")] if args.runtime_budgets else None
    executor = "dask" if args.scheduler else ("serial" if args.workers == 1 else None)
    result = sweep(source, device=args.device, budgets=budgets, strategies=strategies,
                   runtime_budgets=runtime, time_limit_s=args.time_limit, backend=args.backend,
                   threads=args.threads, gap=args.gap, executor=executor,
                   scheduler=args.scheduler, out_dir=args.out,
                   save_schedules=args.save_schedules, progress=not args.json)
    plots = plot_sweep(result, args.out, formats=("png", args.format))
    if args.json:
        print(json.dumps({"csv": str(result.csv_path), "json": str(result.json_path),
                          "plots": {k: [str(p) for p in v] for k, v in plots.items()},
                          "solved": result.n_solved, "cached": result.n_cached,
                          "rows": result.rows}, indent=1, default=str))
        return 0
    header = ["RAM budget"] + [s for s in strategies] + ["POET <= all"]
    rows = []
    le = {}
    for r in result.rows:
        if r["runtime_budget_s"] is None and r["strategy"] == "poet":
            le[r["ram_budget_bytes"]] = r.get("poet_le_all")
    store_all_j = result.rows[0]["store_all_energy_j"] if result.rows else 0.0

    def cell(e):
        if e is None:
            return "infeasible"
        if not store_all_j:
            return format_energy(e)
        pct = (e / store_all_j - 1) * 100
        return f"{0.0 if abs(pct) < 5e-4 else pct:+.3f}%"   # no "-0.000%" from rounding

    for line in result.energy_table():
        b = line["ram_budget_bytes"]
        rows.append([format_bytes(b)] + [cell(line.get(s)) for s in strategies]
                    + [str(le.get(b, ""))])
    first = result.rows[0] if result.rows else {}
    print(f"{first.get('model', '')} on {first.get('device', '')}: energy per training step above "
          f"store-all ({format_energy(store_all_j)})")
    print(_table(rows, header))
    print(f"\n{result.n_solved} points solved, {result.n_cached} from the cache")
    print(f"wrote {result.csv_path}, {result.json_path}")
    for name, paths in plots.items():
        print(f"wrote {', '.join(str(p) for p in paths)}")
    return 0


# ---- poet plot ---------------------------------------------------------------------------------
def cmd_plot(args) -> int:
    from pathlib import Path

    from solver import Problem, Schedule
    from .plot import plot_ram_trace, plot_schedule_matrices, plot_sweep
    from .sweep import SweepResult
    from .units import parse_bytes

    formats = ("png", args.format)
    if args.schedule or args.problem:
        if not (args.schedule and args.problem):
            raise ValueError("--schedule and --problem go together (the plots of one schedule)")
        problem, schedule = Problem.load(args.problem), Schedule.load(args.schedule)
        if args.budget:
            problem = problem.with_budgets(ram_budget_bytes=parse_bytes(args.budget))
        out = Path(args.out or ".")
        out.mkdir(parents=True, exist_ok=True)
        written = {"schedule_matrices": plot_schedule_matrices(problem, schedule,
                                                               out / "schedule_matrices",
                                                               formats=formats),
                   "ram_trace": plot_ram_trace(problem, schedule, out / "ram_trace",
                                               formats=formats)}
    else:
        if not args.sweep_dir:
            raise ValueError("give a sweep folder (from poet sweep --out), or --problem and "
                             "--schedule")
        result = SweepResult.load(args.sweep_dir)
        budget = parse_bytes(args.budget) if args.budget else None
        written = plot_sweep(result, args.out or args.sweep_dir, strategy=args.strategy,
                             ram_budget_bytes=budget, formats=formats)
    for paths in written.values():
        print(f"wrote {', '.join(str(p) for p in paths)}")
    return 0


# ---- entry point -------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="poet",
        description="Energy-optimal training schedules (rematerialization + paging) for small "
                    "devices.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=textwrap.dedent("""\
            examples:
              poet profiles                         the built-in device profiles
              poet simulate p.json s.json           check a schedule and print what it costs
            """))
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def add(name, help_, func):
        p = sub.add_parser(name, help=help_, description=help_, epilog=_epilog(name),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(func=func)
        return p

    p = add("profiles", "list the built-in device profiles", cmd_profiles)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p = add("inspect", "trace a model's training step and print its graph and memory",
            cmd_inspect)
    _add_model_args(p)
    p.add_argument("--out", help="write the problem JSON here")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p = add("solve", "find the least-energy schedule that fits the budgets", cmd_solve)
    _add_model_args(p, device_required=False)
    p.add_argument("--ram", help="RAM budget: bytes, 256KiB, 1.5MiB, 'device', or a multiple of "
                                 "the store-all peak (0.8x); default: no limit")
    p.add_argument("--runtime", help="runtime budget: seconds (2.5, 250ms) or a multiple of the "
                                     "store-all time (1.5x); default: no limit")
    p.add_argument("--flash", help="flash budget: bytes or 'device'; default: no limit")
    p.add_argument("--strategy", default="poet",
                   choices=["poet", "remat", "paging", "store_all", "sqrtn", "dtr",
                            "greedy_paging"], help="default poet (remat + paging)")
    p.add_argument("--no-remat", action="store_true", help="forbid recomputation")
    p.add_argument("--no-paging", action="store_true", help="forbid paging (Checkmate)")
    p.add_argument("--backend", default="auto", choices=["auto", "cbc", "highs", "gurobi"])
    p.add_argument("--time-limit", type=float, default=300.0, help="seconds (default 300)")
    p.add_argument("--threads", type=int, default=None, help="solver threads")
    p.add_argument("--gap", type=float, default=1e-4, help="relative gap to stop at (1e-4)")
    p.add_argument("--out", help="write the schedule JSON here")
    p.add_argument("--problem-out", help="write the problem JSON here")
    p.add_argument("--verbose", action="store_true", help="stream the solver's own output")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p = add("verify", "replay a schedule on real tensors and compare with eager PyTorch",
            cmd_verify)
    p.add_argument("schedule", help="schedule JSON file (from poet solve)")
    p.add_argument("--model", help="override the model the schedule records (zoo name or "
                                   "module:function)")
    p.add_argument("--batch-size", type=int, default=None, help="batch size (default: recorded)")
    p.add_argument("--train", default="all", help="with --model: all | bias | last | modules")
    p.add_argument("--optimizer", default="sgd", choices=["sgd", "sgd_momentum", "adam"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", help="price on this device (default: the one the schedule records)")
    p.add_argument("--problem", help="the problem JSON the schedule was solved on")
    p.add_argument("--flash-dir", help="folder to page to (default: a temporary folder)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p = add("demo", "the main job: trace a built-in model, solve every strategy at one budget, "
                    "and verify the POET schedule on real tensors", cmd_demo)
    p.add_argument("--model", default="resnet18", help="zoo model (default resnet18, 32x32)")
    p.add_argument("--device", default="nrf52840", help="device profile (default nrf52840)")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--budget", type=float, default=0.5,
                   help="RAM budget as a fraction of the way from the minimum feasible RAM (0) "
                        "to the store-all peak (1); default 0.5")
    p.add_argument("--time-limit", type=float, default=60.0, help="seconds per solve (60)")
    p.add_argument("--out-dir", default="out/demo", help="where to write problem.json and "
                                                         "schedule.json (out/demo)")

    p = add("sweep", "solve many RAM budgets with many strategies; write a table and plots",
            cmd_sweep)
    _add_model_args(p, device_required=False)
    p.add_argument("--budgets", default="8",
                   help="N (evenly from the minimum feasible RAM to the store-all peak), "
                        "START:STOP:N (64KiB:1MiB:12), or a comma list (256KiB,0.95x); default 8")
    p.add_argument("--strategies", default="poet,remat,paging,store_all,sqrtn,dtr,greedy_paging",
                   help="comma list (default: all seven)")
    p.add_argument("--runtime-budgets", help="comma list of runtime budgets (2.5s,1.2x)")
    p.add_argument("--time-limit", type=float, default=60.0, help="seconds per solve (60)")
    p.add_argument("--backend", default="auto", choices=["auto", "cbc", "highs", "gurobi"])
    p.add_argument("--threads", type=int, default=1, help="solver threads per point (1)")
    p.add_argument("--gap", type=float, default=1e-4)
    p.add_argument("--workers", type=int, default=None,
                   help="1 = solve in this process; default: a process pool, one per core")
    p.add_argument("--scheduler", help="solve on Dask: 'local' (a LocalCluster) or tcp://HOST:PORT")
    p.add_argument("--out", required=True, help="folder for sweep.csv, sweep.json, the plots "
                                                "and the cache (a rerun resumes from it)")
    p.add_argument("--save-schedules", action="store_true", help="also write every schedule")
    p.add_argument("--format", default="svg", choices=["svg", "pdf"], help="vector copy")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p = add("plot", "draw the trade-off plots of a sweep, or the plots of one schedule", cmd_plot)
    p.add_argument("sweep_dir", nargs="?", help="a folder written by poet sweep")
    p.add_argument("--out", help="where the figures go (default: the sweep folder)")
    p.add_argument("--strategy", default="poet", help="whose schedule to draw (poet)")
    p.add_argument("--budget", help="RAM budget of the schedule to draw (default: the tightest)")
    p.add_argument("--problem", help="a problem JSON (with --schedule)")
    p.add_argument("--schedule", help="a schedule JSON (with --problem)")
    p.add_argument("--format", default="svg", choices=["svg", "pdf"], help="vector copy")

    p = add("simulate", "replay a schedule on a problem and print its energy, time and peaks",
            cmd_simulate)
    p.add_argument("problem", help="problem JSON file (poet-problem/1)")
    p.add_argument("schedule", help="schedule JSON file (poet-schedule/1)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "command", None) == "verify":
        args.batch_size_given = args.batch_size is not None
        if args.batch_size is None:
            args.batch_size = 1
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("poet: interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, PermissionError, IsADirectoryError, OSError) as e:
        msg = str(e).replace("\n", " ")
        print(f"poet {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
