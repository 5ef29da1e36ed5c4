"""Advice: the `poet fit` and `poet explain` commands (what fits a chip, and what a schedule does
to each layer), and what `poet solve` adds to its messages (the cheapest change that would fit,
a note on the buffered opt.step()). `poet.cli` runs the commands; the shared argument handling is
in `poet.cli_commands`."""

from __future__ import annotations

from .cli_commands import (_check_solver_options, _dumps, _is_problem_file, _recorded_device,
                           _spec_from_args, _verify_spec, _with_schedule_budget)

__all__ = ["cmd_fit", "cmd_explain", "what_would_fit", "optimizer_step_note"]


# ---- poet fit ----------------------------------------------------------------------------------
def _choices(text, allowed, option):
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    bad = [t for t in items if t not in allowed]
    if not items or bad:
        raise ValueError(f"{option}: {', '.join(bad) or repr(text)} not among "
                         f"{', '.join(allowed)}")
    return items


def cmd_fit(args) -> int:
    from .fit import fit, fit_json, fit_table
    from .modelspec import UPDATE_NAMES, WEIGHTS_NAMES

    _check_solver_options(args)
    args.train, args.update, args.weights, args.fold_bn = "all", "buffered", None, False
    fit_inplace, args.inplace = bool(args.fit_inplace), False
    spec = _spec_from_args(args)
    device = args.device if args.device == "all" or "," not in args.device \
        else [d.strip() for d in args.device.split(",") if d.strip()]
    trains = None
    if args.trains:
        trains = [t.strip() for t in args.trains.split(",") if t.strip()]
        bad = [t for t in trains if not (t in ("all", "bias", "last") or
                                         (t.startswith("last") and t[4:].isdigit()))]
        if bad or not trains:
            raise ValueError(f"--train: {', '.join(bad) or repr(args.trains)} not among all, "
                             f"bias, last, last<k> (last2, last4, ...)")
    sparse = sorted({int(t[4:]) for t in trains or () if t.startswith("last") and t[4:]}) or None
    kw = {} if sparse is None else {"sparse": sparse}
    report = fit(spec, device, batch_size=spec.batch_size, seed=spec.seed, options=spec.options,
                 optimizer=spec.optimizer, trains=trains,
                 weights=_choices(args.weights_list, WEIGHTS_NAMES, "--weights"),
                 updates=_choices(args.updates, UPDATE_NAMES, "--update"),
                 fold_bn={"yes": True, "both": "both", None: False}[args.fit_fold],
                 inplace=fit_inplace,
                 battery=args.battery, time_limit_s=args.time_limit, gap=args.gap,
                 solve=not args.no_solve, **kw)
    if args.json:
        print(_dumps(fit_json(report)))
    else:
        print(fit_table(report))
    return 0


# ---- poet explain ------------------------------------------------------------------------------
def _explain_problem(args, schedule):
    """The problem a schedule is explained on: --problem, else the recorded zoo model traced and
    priced again on the recorded device (it must give the schedule's fingerprint)."""
    from solver import Problem
    from poet import extract
    from .costs import make_problem

    if args.problem:
        return Problem.load(args.problem)
    if schedule.extra.get("model_spec") is None:
        raise ValueError(f"{args.schedule} records no model; give the problem it was solved on "
                         f"with --problem")
    args.model, args.model_flags, args.batch_size_given = None, [], False
    spec = _verify_spec(args, schedule)
    device = _recorded_device(schedule.extra.get("device"), args.schedule)
    if device is None:
        raise ValueError(f"{args.schedule} records no device; give --problem")
    model, loss_fn, inputs, targets = spec.load()
    graph = extract(model, loss_fn, inputs, targets,
                    granularity=schedule.extra.get("granularity", "layer"), train=spec.train,
                    optimizer=spec.optimizer, update=spec.update, inplace=spec.inplace,
                    name=spec.model)
    weights = schedule.extra.get("weights")
    problem = make_problem(graph, device,
                           weights=weights if weights in ("ram", "flash") else spec.weights)
    if schedule.problem_fingerprint not in (None, problem.fingerprint):
        raise ValueError(f"{args.schedule} was made for another problem than {spec.model} traced "
                         f"on {device} gives today; give the problem with --problem")
    return problem


def cmd_explain(args) -> int:
    from solver import Schedule
    from .explain import explain, explain_json, explain_table

    schedule = Schedule.load(args.schedule)
    problem = _with_schedule_budget(_explain_problem(args, schedule), schedule)
    expl = explain(problem, schedule)
    if args.json:
        print(_dumps(explain_json(expl, only_changed=args.changed)))
    else:
        print(explain_table(expl, only_changed=args.changed))
    return 0


# ---- what poet solve adds to its messages ------------------------------------------------------
def what_would_fit(args, problem) -> str:
    """"; the device ... usable; <cheapest change>" for an infeasible solve of a model on a device
    (`poet.fit_fix.cheapest_fix`), or "" when MODEL is a problem file or nothing is known."""
    if _is_problem_file(args.model) or not args.device:
        return ""
    from .fit_fix import cheapest_fix
    from .profiles import load_profile
    from .units import format_bytes

    prof = load_profile(args.device)
    text = (f"; {prof.name} has {format_bytes(prof.ram_bytes)} of RAM, "
            f"{format_bytes(prof.usable_ram_bytes)} usable")
    spec = _spec_from_args(args)
    try:
        fix = cheapest_fix(spec.replace(fold_bn=False), args.device, train=spec.train, weights=spec.weights,
                           update=spec.update, optimizer=spec.optimizer,
                           batch_size=spec.batch_size, seed=spec.seed, options=spec.options,
                           fold_bn=spec.fold_bn, inplace=spec.inplace)
    except ValueError:
        fix = None
    return text + (f"; {fix}" if fix else "")


def optimizer_step_note(problem) -> str:
    """A line when the buffered opt.step() after the step would not fit the RAM budget (it runs
    outside the schedule, beside the static bytes), else ""."""
    step = problem.extra.get("optimizer_step_workspace_bytes")
    budget = problem.ram_budget_bytes
    if not isinstance(step, int) or budget is None or problem.static_bytes + step <= budget:
        return ""
    return (f"the opt.step() after this step needs {problem.static_bytes + step:,} B (static "
            f"{problem.static_bytes:,} B plus its temporaries, {step:,} B), over the RAM budget "
            f"of {budget:,} B; --update fused applies the optimizer inside the schedule")
