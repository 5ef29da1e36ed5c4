"""The `poet` subcommands: ``cmd_<name>(args) -> exit code``, one per command of `poet.cli`.

Each reads its argparse namespace, calls the library, and prints (the text comes from
`poet.cli_tables`). Errors the user can fix raise ValueError / OSError with a message naming
the option; `poet.cli.main` turns them into one line on stderr and exit code 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from solver.options import check_gap, check_threads, check_time_limit
from solver.strategies import STRATEGIES, get_strategy

from .cli_tables import (PROFILE_HEADER, inspect_rows, kv, profile_rows, simulate_rows,
                         solve_json, solve_rows, sweep_rows, table, verify_rows)

__all__ = ["cmd_zoo", "cmd_profiles", "cmd_simulate", "cmd_inspect", "cmd_solve", "cmd_verify", "cmd_demo",
           "cmd_sweep", "cmd_plot", "DEMO_ORDER"]

# poet demo: the heuristics, then the MILP strategies, POET (whose schedule is verified) last
DEMO_ORDER = tuple(sorted(STRATEGIES, key=lambda s: (get_strategy(s).kind == "milp",
                                                      s == "poet")))


def _check_solver_options(args) -> None:
    """--time-limit, --threads and --gap, checked by solver.options before anything runs."""
    check_time_limit(args.time_limit, "--time-limit")
    if hasattr(args, "threads"):
        check_threads(args.threads, "--threads")
    if hasattr(args, "gap"):
        check_gap(args.gap, "--gap")


def _is_problem_file(name: str) -> bool:
    return name.endswith(".json") or Path(name).is_file()


def _model_options(pairs) -> dict[str, str]:
    """--model-opt KEY=VALUE pairs as a dict (values stay strings: the zoo reads them by the
    type each option declares)."""
    options: dict[str, str] = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ValueError(f"--model-opt: write KEY=VALUE (e.g. width=0.35), got {pair!r}")
        if key in options:
            raise ValueError(f"--model-opt: {key} is given twice")
        options[key] = value.strip()
    return options


def _spec_from_args(args):
    from .modelspec import ModelSpec, check_batch_size, check_seed

    train = args.train
    if "," in train or train not in ("all", "bias", "last"):
        train = [t for t in train.split(",") if t]
        if not train:
            raise ValueError(f"--train: give all, bias, last or a comma list of module names, "
                             f"got {args.train!r}")
    check_batch_size(args.batch_size, "--batch-size")
    check_seed(args.seed, "--seed")
    options = _model_options(getattr(args, "model_opt", None))
    if options and ":" not in args.model:
        from . import zoo
        if args.model in zoo.names():
            try:
                options = zoo.parse_options(args.model, options)
            except ValueError as e:
                raise ValueError(f"--model-opt: {e}") from None
    return ModelSpec(model=args.model, batch_size=args.batch_size, train=train,
                     optimizer=args.optimizer, seed=args.seed, options=options,
                     fold_bn=bool(getattr(args, "fold_bn", False)),
                     update=getattr(args, "update", "buffered"),
                     weights=getattr(args, "weights", None),
                     inplace=bool(getattr(args, "inplace", False)))


def _same_file(a, b) -> bool:
    """True if paths `a` and `b` name the same file (existing or not)."""
    try:
        pa, pb = Path(a), Path(b)
        if pa.exists() and pb.exists():
            return pa.samefile(pb)
        return pa.resolve() == pb.resolve()
    except OSError:
        return False


def _check_outputs(inputs: dict[str, str | None], outputs: dict[str, str | None]) -> None:
    """Refuse an output path equal to an input path or to another output (nothing is written)."""
    seen = {k: v for k, v in inputs.items() if v}
    for opt, path in outputs.items():
        if not path:
            continue
        for other, earlier in seen.items():
            if _same_file(path, earlier):
                raise ValueError(f"{opt} {path} is the same file as {other}; write it elsewhere")
        seen[opt] = path


def _dumps(obj) -> str:
    """Standard JSON (no NaN or Infinity) for --json output."""
    return json.dumps(obj, indent=1, allow_nan=False, default=str)


# ---- poet zoo / profiles / simulate / inspect ---------------------------------------------------
def cmd_zoo(args) -> int:
    from . import zoo

    if args.json:
        print(_dumps({name: [{"name": o.name, "type": o.type.__name__, "default": o.default,
                              "help": o.help} for o in zoo.options(name)]
                      for name in zoo.names()}))
        return 0
    for name in zoo.names():
        print(zoo.describe(name))
    return 0


def cmd_profiles(args) -> int:
    from .profiles import list_profiles

    profiles = list_profiles()
    if args.json:
        print(_dumps([p.to_dict() for p in profiles]))
        return 0
    print(table(profile_rows(profiles), PROFILE_HEADER))
    return 0


def cmd_simulate(args) -> int:
    from solver import Problem, Schedule, simulate

    problem = Problem.load(args.problem)
    schedule = Schedule.load(args.schedule)
    problem = _with_schedule_budget(problem, schedule)
    r = simulate(problem, schedule)
    if args.json:
        print(_dumps({"energy_j": r.energy_j, "time_s": r.time_s,
                          "peak_ram_bytes": r.peak_ram_bytes, "peak_flash_bytes": r.peak_flash_bytes,
                          "split": r.split, "recomputes": r.n_recompute, "page_ins": r.n_page_in,
                          "page_outs": r.n_page_out, "valid": True}))
        return 0
    print(f"{problem.name or args.problem}: schedule {schedule.strategy}")
    print(kv(simulate_rows(problem, schedule, r)))
    return 0


def _with_schedule_budget(problem, schedule):
    """The problem with the schedule's own RAM budget enforced too (the smaller of the two), as
    `poet verify` enforces it."""
    budgets = [b for b in (problem.ram_budget_bytes, schedule.ram_budget_bytes) if b is not None]
    if not budgets or min(budgets) == problem.ram_budget_bytes:
        return problem
    return problem.with_budgets(ram_budget_bytes=min(budgets))


def cmd_inspect(args) -> int:
    import solver
    from .modelspec import extract_problem

    spec = _spec_from_args(args)
    graph, problem = extract_problem(spec, args.device, granularity=args.granularity)
    kinds = {k: sum(1 for n in graph.nodes if n.kind == k) for k in ("forward", "loss", "backward")}
    info = {
        "model": spec.model, "device": problem.extra.get("device"), "train": spec.train,
        "batch_size": spec.batch_size, "granularity": args.granularity,
        "nodes": graph.T, "edges": len(graph.edges), "forward": kinds["forward"],
        "loss": kinds["loss"], "backward": kinds["backward"], "aten_ops": graph.num_aten_ops,
        "flops": graph.total_flops, "extra_flops": graph.total_extra_flops,
        "activation_bytes": graph.activation_bytes, "static_bytes": graph.static_bytes,
        "store_all_peak_bytes": solver.store_all_peak(problem),
        "min_feasible_ram_bytes": solver.min_feasible_ram(problem),
        "store_all_energy_j": problem.store_all_energy_j,
        "store_all_time_s": problem.store_all_time_s,
        "trace_s": graph.trace_seconds,
    }
    if args.out:
        problem.save(args.out)
        info["problem_file"] = str(args.out)
    if args.json:
        print(_dumps(info))
        return 0
    print(f"{spec.model} (batch {spec.batch_size}, train={spec.train}) on {info['device']}")
    print(kv(inspect_rows(graph, info, kinds)))
    if args.out:
        print(f"wrote {args.out}")
    return 0


# ---- poet solve --------------------------------------------------------------------------------
def _load_problem(args):
    """(problem, graph or None) from a problem JSON file or a model spec + device."""
    from solver import Problem
    from .costs import apply_budgets

    if _is_problem_file(args.model):
        _no_model_flags(args)
        problem = Problem.load(args.model)
        budgets = {"ram_budget": args.ram if args.ram is not None else problem.ram_budget_bytes,
                   "runtime_budget": (args.runtime if args.runtime is not None
                                      else problem.runtime_budget_s),
                   "flash_budget": (args.flash if args.flash is not None
                                    else problem.flash_budget_bytes)}
        if args.device:
            return _repriced(problem, args, budgets), None
        return apply_budgets(problem, None, **budgets), None
    if not args.device:
        raise ValueError("--device is required when MODEL is a model (not a problem JSON file)")
    from .modelspec import extract_problem
    graph, problem = extract_problem(_spec_from_args(args), args.device,
                                     ram_budget=args.ram, runtime_budget=args.runtime,
                                     flash_budget=args.flash, granularity=args.granularity)
    return problem, graph


def _no_model_flags(args, what: str = "a problem file") -> None:
    """Refuse model options that cannot take effect (MODEL is an already traced problem)."""
    if args.model_flags:
        raise ValueError(f"{', '.join(args.model_flags)}: {args.model} is {what}, already "
                         f"traced with its own model options; these apply to a model name")


def _repriced(problem, args, budgets):
    """A problem file priced for --device: repriced from the graph counts it records, or refused."""
    import dataclasses
    from .costs import has_counts, reprice

    if not has_counts(problem):
        raise ValueError(f"--device {args.device}: {args.model} records no graph counts to "
                         f"reprice from (it was not made by poet inspect/solve); solve it with "
                         f"the prices it has (omit --device), or trace the model on that device")
    repriced = reprice(problem, args.device, **budgets)
    kept = {k: v for k, v in problem.extra.items() if k in ("model_spec", "granularity")}
    return dataclasses.replace(repriced, extra={**repriced.extra, **kept})


def _strategy(args) -> str:
    strategy = args.strategy
    if args.no_remat or args.no_paging:
        if strategy != "poet":
            raise ValueError("--no-remat/--no-paging apply to --strategy poet only")
        strategy = {(True, True): "store_all", (True, False): "paging",
                    (False, True): "remat"}[(args.no_remat, args.no_paging)]
    return strategy


def _record_spec(problem, schedule) -> None:
    """Copy what `poet verify` needs to rebuild the model from the problem into the schedule."""
    if "model_spec" in problem.extra:
        schedule.extra["model_spec"] = problem.extra["model_spec"]
        schedule.extra["device"] = problem.extra.get("device")
        schedule.extra["granularity"] = problem.extra.get("granularity", "layer")
        if "weights" in problem.extra:
            schedule.extra["weights"] = problem.extra["weights"]


def cmd_solve(args) -> int:
    import solver

    _check_solver_options(args)
    strategy = _strategy(args)
    _check_outputs({"MODEL": args.model if _is_problem_file(args.model) else None},
                   {"--out": args.out, "--problem-out": args.problem_out})
    problem, _ = _load_problem(args)
    progress = None
    if not args.verbose and not args.json and sys.stderr.isatty():
        def progress(line: str) -> None:
            print(f"\r{line[:100]:<100}", end="", file=sys.stderr, flush=True)
    from .cli_advice import optimizer_step_note, what_would_fit

    try:
        result = solver.solve(problem, strategy=strategy, backend=args.backend,
                              time_limit_s=args.time_limit, threads=args.threads, gap=args.gap,
                              verbose=args.verbose, progress=progress)
    except solver.InfeasibleError as e:
        raise ValueError(f"{e}{what_would_fit(args, problem)}") from None
    if progress is not None:
        print("\r" + " " * 100 + "\r", end="", file=sys.stderr, flush=True)
    step_note = optimizer_step_note(problem)
    if step_note:
        print(f"poet: note: {step_note}", file=sys.stderr)
    if result.schedule is not None:
        _record_spec(problem, result.schedule)
        if args.out:
            result.schedule.save(args.out)
        if args.problem_out:
            problem.save(args.problem_out)
    if args.json:
        d = solve_json(problem, result)
        if args.explain and result.schedule is not None:
            from .explain import explain, explain_json
            d["explain"] = explain_json(explain(problem, result.schedule))
        print(_dumps(d))
    else:
        print(f"{problem.name}: strategy {strategy}")
        print(kv(solve_rows(problem, result)))
        if args.explain and result.schedule is not None:
            from .explain import explain, explain_table
            print()
            print(explain_table(explain(problem, result.schedule)))
        if args.out and result.schedule is not None:
            print(f"wrote {args.out}")
    return 0 if result.schedule is not None else 1


# ---- poet verify -------------------------------------------------------------------------------
def _recorded_device(device, where):
    """A device name read from a file: a built-in profile name only (a file's text is never
    opened as a path)."""
    from .costs import recorded_device

    return recorded_device(device, str(where))


def _verify_spec(args, schedule):
    """The model to rebuild: --model, else the one the schedule records (--batch-size applied)."""
    from .modelspec import ModelSpec

    from .modelspec import check_batch_size

    recorded = schedule.extra.get("model_spec")
    if args.model:
        return _spec_from_args(args)
    extra_flags = [f for f in args.model_flags if f != "--batch-size"]
    if extra_flags:
        raise ValueError(f"{', '.join(extra_flags)} apply with --model only (without it the "
                         f"schedule's recorded model options are used)")
    if recorded is None:
        raise ValueError(f"{args.schedule} records no model; name it with --model "
                         f"(a zoo name or module:function)")
    spec = ModelSpec.from_dict(recorded, where=str(args.schedule))
    if spec.is_code:
        raise ValueError(f"{args.schedule} records the model {spec.model!r}, a module:function; "
                         f"poet does not import code named in a file: if you trust it, pass "
                         f"--model {spec.model}")
    if args.batch_size_given:
        spec = spec.replace(batch_size=check_batch_size(args.batch_size, "--batch-size"))
    return spec


def _optimizer_for(spec, graph, model):
    """The optimizer the replay steps with: the spec's kind with poet's default hyperparameters
    (`poet.modelspec.DEFAULT_HYPERPARAMETERS`), over the parameters the graph trains."""
    from .modelspec import make_optimizer

    trained = set(graph.trainable)
    return make_optimizer(spec.optimizer, [p for n, p in model.named_parameters() if n in trained])


def cmd_verify(args) -> int:
    from solver import Problem, Schedule
    from poet import extract
    from .replay import verify

    schedule = Schedule.load(args.schedule)
    spec = _verify_spec(args, schedule)
    problem = Problem.load(args.problem) if args.problem else None
    model, loss_fn, inputs, targets = spec.load()
    granularity = schedule.extra.get("granularity", "layer")
    graph = extract(model, loss_fn, inputs, targets, granularity=granularity, train=spec.train,
                    optimizer=spec.optimizer, update=spec.update, inplace=spec.inplace,
                    name=spec.model.rsplit(":", 1)[-1])
    device = args.device or _recorded_device(schedule.extra.get("device"), args.schedule)
    rep = verify(graph, schedule, model, inputs, targets, problem=problem, loss_fn=loss_fn,
                 flash_dir=args.flash_dir, device=device,
                 optimizer=_optimizer_for(spec, graph, model))
    if args.json:
        print(_dumps(rep.to_dict()))
    else:
        print(f"{spec.model} (batch {spec.batch_size}, train={spec.train}): schedule "
              f"{schedule.strategy} from {args.schedule}")
        print(kv(verify_rows(rep)))
        if rep.passed:
            print("PASS")
        else:
            print("FAIL: " + "; ".join(rep.failures))
    return 0 if rep.passed else 1


# ---- poet demo ---------------------------------------------------------------------------------
def _demo_problem(args, out: Path):
    """Trace the demo model, price it, set the RAM budget; print what was traced."""
    import dataclasses

    import solver
    from poet import extract
    from .costs import make_problem
    from .modelspec import ModelSpec, check_batch_size
    from .units import format_bytes

    check_batch_size(args.batch_size, "--batch-size")
    args.seed, args.granularity, args.fold_bn = 0, "layer", False
    spec = _spec_from_args(args)
    model, loss_fn, inputs, targets = spec.load()
    graph = extract(model, loss_fn, inputs, targets, train=spec.train, optimizer=spec.optimizer,
                    update=spec.update, inplace=spec.inplace, name=args.model)
    free = make_problem(graph, args.device, weights=spec.weights)
    lo, hi = solver.min_feasible_ram(free), solver.store_all_peak(free)
    if args.budget is not None:
        budget = int(lo + args.budget * (hi - lo))
        how = f"{args.budget:.0%} of the way from the minimum feasible RAM to the store-all peak"
    else:
        budget = make_problem(graph, args.device, weights=spec.weights,
                              ram_budget=args.ram).ram_budget_bytes
        how = "the device's usable RAM" if str(args.ram).lower() == "device" else f"--ram {args.ram}"
    problem = free.with_budgets(ram_budget_bytes=budget)
    problem = dataclasses.replace(problem, extra={
        **problem.extra, "model_spec": spec.to_dict(), "granularity": "layer"})
    problem.save(out / "problem.json")
    split = ", ".join(f"{k.replace('_', ' ')} {format_bytes(v)}"
                      for k, v in graph.static_breakdown.items() if v)
    print(f"{args.model} (batch {args.batch_size}, train={spec.train}, {spec.optimizer}, "
          f"{spec.update} update, weights in {problem.extra.get('weights', 'ram')}) on "
          f"{args.device}: {graph.T} nodes, {len(graph.edges)} edges, traced in "
          f"{graph.trace_seconds:.2f} s")
    print(f"static {format_bytes(problem.static_bytes)} in RAM ({split})")
    print(f"RAM budget {format_bytes(budget)} ({how}); the minimum feasible RAM is "
          f"{format_bytes(lo)}, store-all (PyTorch's way: every activation kept) needs "
          f"{format_bytes(hi)}")
    print()
    return spec, (model, loss_fn, inputs, targets), graph, problem


def _demo_solves(problem, time_limit: float):
    """Solve every strategy (DEMO_ORDER); (table rows, POET's result or None)."""
    import solver
    from .units import format_bytes, format_energy

    rows, best = [], None
    store_all_j = problem.store_all_energy_j
    for strategy in DEMO_ORDER:
        try:
            res = solver.solve(problem, strategy=strategy, time_limit_s=time_limit)
        except solver.InfeasibleError:
            rows.append([strategy, "infeasible", "", "", "", "", ""])
            continue
        r = res.report
        rows.append([strategy, res.status, format_energy(r.energy_j),
                     f"{r.energy_j / store_all_j - 1:+.3%}", format_bytes(r.peak_ram_bytes),
                     f"{r.n_recompute}/{r.n_page_out}/{r.n_page_in}", f"{res.solve_s:.2f}"])
        if strategy == "poet":
            best = res
    return rows, best


def cmd_demo(args) -> int:
    """The main job on built-in defaults: trace, solve every strategy at one budget, verify."""
    from .explain import explain, explain_table
    from .replay import verify

    if args.budget is not None and not 0 <= args.budget <= 1:
        raise ValueError(f"--budget must be between 0 (the minimum feasible RAM) and 1 (the "
                         f"store-all peak), got {args.budget}")
    check_time_limit(args.time_limit, "--time-limit")
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    spec, (model, loss_fn, inputs, targets), graph, problem = _demo_problem(args, out)
    rows, best = _demo_solves(problem, args.time_limit)
    print(table(rows, ["strategy", "status", "energy", "vs store-all", "peak RAM",
                       "remat/out/in", "solve s"]))
    if best is None or best.schedule is None:
        print("POET found no schedule at this budget")
        return 1
    sched = best.schedule
    sched.extra.update({"model_spec": spec.to_dict(), "device": args.device,
                        "granularity": "layer", "weights": problem.extra.get("weights", "ram")})
    sched.save(out / "schedule.json")
    print()
    print("what the POET schedule does (the layers it recomputes or pages; poet explain shows all):")
    print(explain_table(explain(problem, sched), only_changed=True))
    print()
    rep = verify(graph, sched, model, inputs, targets, problem=problem, loss_fn=loss_fn,
                 optimizer=_optimizer_for(spec, graph, model))
    print("replayed on real tensors against eager PyTorch:")
    print(kv(verify_rows(rep)))
    print("PASS" if rep.passed else "FAIL: " + "; ".join(rep.failures))
    print(f"\nwrote {out / 'problem.json'} and {out / 'schedule.json'}")
    return 0 if rep.passed else 1


# ---- poet sweep / plot -------------------------------------------------------------------------
def cmd_sweep(args) -> int:
    from poet import sweep
    from .plot import plot_sweep
    from .units import format_energy

    strategies = tuple(s.strip() for s in args.strategies.split(",") if s.strip())
    bad = [s for s in strategies if s not in STRATEGIES]
    if bad:
        raise ValueError(f"--strategies: unknown {', '.join(bad)}; choose from "
                         f"{', '.join(STRATEGIES)}")
    _check_solver_options(args)
    budgets = (int(args.budgets) if args.budgets.isascii() and args.budgets.isdigit()
               else args.budgets)
    source = args.model
    if _is_problem_file(args.model):
        _no_model_flags(args)
    else:
        if not args.device:
            raise ValueError("--device is required when MODEL is a model (not a problem JSON)")
        source = _spec_from_args(args)
    runtime = [r for r in args.runtime_budgets.split(",")] if args.runtime_budgets else None
    executor = "dask" if args.scheduler else ("serial" if args.workers == 1 else None)
    try:
        result = sweep(source, device=args.device, budgets=budgets, strategies=strategies,
                       runtime_budgets=runtime, time_limit_s=args.time_limit,
                       backend=args.backend, threads=args.threads, gap=args.gap,
                       executor=executor, scheduler=args.scheduler,
                       workers=None if args.scheduler else args.workers, out_dir=args.out,
                       save_schedules=args.save_schedules, progress=not args.json)
    except ValueError as e:
        text = str(e)
        for name in ("budgets", "runtime_budgets", "workers"):
            if text.startswith(name):    # name the flag the user typed
                raise ValueError("--" + name.replace("_", "-") + text[len(name):]) from None
        raise
    plots = plot_sweep(result, args.out, formats=("png", args.format))
    if args.json:
        print(_dumps({"csv": str(result.csv_path), "json": str(result.json_path),
                      "plots": {k: [str(p) for p in v] for k, v in plots.items()},
                      "solved": result.n_solved, "cached": result.n_cached,
                      "warnings": list(result.warnings), "rows": result.rows}))
        return 0
    first = result.rows[0] if result.rows else {}
    store_all_j = first.get("store_all_energy_j", 0.0)
    print(f"{first.get('model', '')} on {first.get('device', '')}: energy per training step above "
          f"store-all ({format_energy(store_all_j)})")
    rows, header = sweep_rows(result, strategies)
    print(table(rows, header))
    print(f"\n{result.n_solved} points solved, {result.n_cached} from the cache")
    print(f"wrote {result.csv_path}, {result.json_path}")
    for paths in plots.values():
        print(f"wrote {', '.join(str(p) for p in paths)}")
    return 0


def cmd_plot(args) -> int:
    from solver import Problem, Schedule
    from poet import SweepResult
    from .plot import plot_ram_trace, plot_schedule_matrices, plot_sweep
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
