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

    p = add("simulate", "replay a schedule on a problem and print its energy, time and peaks",
            cmd_simulate)
    p.add_argument("problem", help="problem JSON file (poet-problem/1)")
    p.add_argument("schedule", help="schedule JSON file (poet-schedule/1)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
