"""Issue #12's memory table: where the bytes of one training step go on a small device.

    python benchmarks/mcu_memory.py [--models ds_cnn sensor_cnn1d] [--optimizer sgd] [--json out.json]
    python benchmarks/mcu_memory.py --replay [--models ...] [--optimizers sgd sgd_momentum_wd adam]
                                    [--time-limit S] [--device esp32s3] [--trains bias last2]
                                    [--json out.json]

For MobileNetV2-0.35 at 96 and 128 (MCUNetV3's layout), the DS-CNN keyword spotter and the zoo's
sensor and image CNNs: one row per training choice of `poet.fit` (train = last, bias, the last k
blocks, all; weights in RAM or flash; update buffered or fused) with the static bytes split into
trained parameters, gradient buffers, optimizer state, buffers and the batch, the frozen bytes kept
in flash, the minimum RAM of any schedule, the store-all peak, and the built-in devices it fits
(minimum RAM within the usable RAM and, for weights in flash, frozen weights within the program
flash). Memory only: nothing is solved. Batch 1, fp32 (the models' own dtype).

``--replay`` (issue #12) proves every row, for each optimizer (the project's defaults,
`poet.modelspec.DEFAULT_HYPERPARAMETERS`: SGD; SGD with momentum and weight decay; Adam): the
graph traced with that optimizer, priced on a device (esp32s3 by default: it only prices, and
its program flash holds every row's frozen weights), solved with strategy "poet" at the row's
own minimum RAM (`solver.min_feasible_ram`), then three steps of `poet.ScheduledStep` against an
eager copy: RAM measured at every instruction equal to the simulator's, frozen weights read
from the memory-mapped file and outside the RAM, loss, parameters, optimizer state, buffers and
RNG state bitwise eager's, and `poet.verify` passing. The schedule column is the solve's source
("milp", "lp_neighbourhood" or the heuristic the MILP did not beat; "none": no schedule).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from poet.fit import fit
from poet.profiles import list_profiles
from poet.units import format_bytes

MODELS = {
    "mbv2-0.35@96": ("mobilenetv2", {"width": 0.35, "resolution": 96, "layout": "imagenet"}),
    "mbv2-0.35@128": ("mobilenetv2", {"width": 0.35, "resolution": 128, "layout": "imagenet"}),
    "ds_cnn": ("ds_cnn", {}),
    "sensor_cnn1d": ("sensor_cnn1d", {}),
    "cnn_dropout_bn": ("cnn_dropout_bn", {}),
}
HEADER = ["model", "train", "weights", "update", "trained", "grads", "opt state", "buffers", "batch",
          "in flash", "min RAM", "store-all", "fits"]


def table_rows(label: str, optimizer: str) -> tuple[list[dict], float]:
    name, options = MODELS[label]
    start = time.perf_counter()
    report = fit(name, "all", options=options, optimizer=optimizer, solve=False)
    seconds = time.perf_counter() - start
    by_choice: dict[tuple, dict] = {}
    for r in report.rows:
        key = (r.train, r.weights if r.frozen_params else "-", r.update)
        entry = by_choice.setdefault(key, {
            "model": label, "train": r.train, "weights": key[1], "update": r.update,
            "trained_params": r.trained_params, "grads": r.grads,
            "optimizer_state": r.optimizer_state, "buffers": r.buffers, "batch": r.batch,
            "frozen_params": r.frozen_params, "frozen_in_flash": r.frozen_in_flash,
            "min_ram_bytes": r.min_ram_bytes, "store_all_peak_bytes": r.store_all_peak_bytes,
            "fits": []})
        if r.fits:
            entry["fits"].append(r.device)
    rows = sorted(by_choice.values(), key=lambda e: (e["min_ram_bytes"], e["train"]))
    return rows, seconds


SMALL = 64 * 2**20  # devices with less usable RAM are listed by name; larger ones counted


def _fits_cell(fits: list[str], devices) -> str:
    small = [p.name for p in devices if p.usable_ram_bytes < SMALL and p.name in fits]
    large = sum(p.usable_ram_bytes >= SMALL and p.name in fits for p in devices)
    text = ", ".join(small) if small else "no MCU"
    return text + (f" (+{large} larger)" if large else "")


# =========================================================================== replay (--replay)

# CLI name -> the project's optimizer kind; hyperparameters are poet.modelspec's defaults
# (DEFAULT_HYPERPARAMETERS: SGD lr 0.01; SGD lr 0.01, momentum 0.9, weight decay 1e-4; Adam lr 1e-3)
REPLAY_OPTIMIZERS = {"sgd": "sgd", "sgd_momentum_wd": "sgd_momentum", "adam": "adam"}
REPLAY_DEVICE = "esp32s3"  # prices only; its 6 MiB program flash holds every row's frozen weights
REPLAY_STEPS = 3
REPLAY_HEADER = ["model", "train", "weights", "update", "optimizer", "min RAM", "schedule",
                 "recomp", "page-in", "peak pred = meas", "trace", "params", "state", "verify",
                 "s"]
CHECKS = ("static_excludes_frozen", "weights_mapped", "trace_equal", "peak_equal", "loss_bitwise",
          "params_bitwise", "state_bitwise", "buffers_bitwise", "rng_equal", "trained",
          "verify_passed")


def replay_choices(label: str, *, batch_size: int = 1, seed: int = 0, trains=None,
                   weights=("ram", "flash"), updates=("buffered", "fused")):
    """The zoo step of `label` (a key of MODELS) and its rows: (train label, train value, weights,
    update), the training choices `poet.fit` tries (weights "flash" only where something is
    frozen; train="all" has one row per update, its weights column "-")."""
    from poet.fit import _as_step
    from poet.fit_choices import SPARSE_KS, train_choices

    name, options = MODELS[label]
    step = _as_step(name, batch_size, seed, options)
    everything = all(p.requires_grad for p in step.model.parameters())
    rows = []
    for tlabel, train in train_choices(step.model, step.inputs, SPARSE_KS):
        if trains is not None and tlabel not in trains:
            continue
        arg = list(train) if isinstance(train, tuple) else train
        # train_choices drops any choice that trains what "all" trains: the others freeze some
        places = ["ram"] if tlabel == "all" and everything else list(weights)
        rows += [(tlabel, arg, w, u) for w in places for u in updates]
    return step, rows


def _state_equal(opt_a, opt_b, pa, pb) -> bool:
    """The optimizer state of parameter `pa` in `opt_a` equals that of `pb` in `opt_b` bitwise
    (same entries; tensors and numbers compared as tensors)."""
    import torch

    sa, sb = opt_a.state.get(pa, {}), opt_b.state.get(pb, {})
    return set(sa) == set(sb) and all(
        bool(torch.equal(torch.as_tensor(sa[k]), torch.as_tensor(sb[k]))) for k in sa)


def _step_temporaries(opt) -> int:
    """Run ``opt.step()`` and return the peak bytes of the temporaries it allocates (storages
    that end up as optimizer state are not temporaries): RAM above the static bytes while the
    buffered update runs after the scheduled step."""
    import torch

    from poet.updates import _Allocations

    mode = _Allocations()
    with mode:
        opt.step()
    state = {t.untyped_storage().data_ptr() for s in opt.state.values() for t in s.values()
             if isinstance(t, torch.Tensor)}
    return mode.peak(state)


def replay_row(step, model_label: str, train_label: str, train, weights: str, update: str,
               opt_name: str, *, device=REPLAY_DEVICE, time_limit_s: float = 20.0,
               gap: float = 1e-2, steps: int = REPLAY_STEPS) -> dict:
    """One row of the memory table replayed: the POET schedule at the row's own minimum RAM run
    `steps` times by `poet.ScheduledStep` beside an eager copy (``loss.backward(); opt.step()``),
    both from the same weights and RNG state. Returns the row's figures and checks (CHECKS; ``ok``
    when all hold; ``error`` when something raised, ``schedule`` "none" when the solve found no
    schedule). The solve stops at relative `gap` or `time_limit_s`: any POET schedule at the
    minimum will do."""
    import copy

    import torch

    import poet
    import solver
    from poet.costs import make_problem
    from poet.modelspec import make_optimizer

    started = time.perf_counter()
    kind = REPLAY_OPTIMIZERS[opt_name]
    row = {"model": model_label, "train": train_label, "weights": weights, "update": update,
           "optimizer": opt_name, "device": str(device), "steps": steps, "ok": False, "error": None}
    xs, y = step.inputs, step.targets
    x = xs[0] if len(xs) == 1 else xs
    model, eager = copy.deepcopy(step.model), copy.deepcopy(step.model)
    opt = make_optimizer(kind, model.parameters())
    try:
        graph = poet.extract(model, step.loss_fn, xs, y, train=train, optimizer=opt, update=update,
                             name=step.label)
        trained = set(graph.trainable)
        for n, p in eager.named_parameters():
            p.requires_grad_(n in trained)
        eager_opt = make_optimizer(kind, eager.parameters())
        problem = make_problem(graph, device, weights=weights)
        frozen = int(graph.static_breakdown.get("frozen_params", 0))
        in_flash = frozen if weights == "flash" else 0
        if not frozen:
            row["weights"] = "-"  # nothing frozen: RAM and flash are the same row
        row.update(frozen_bytes=frozen, frozen_in_flash=in_flash,
                   static_excludes_frozen=problem.static_bytes == graph.static_bytes - in_flash)
        min_ram = solver.min_feasible_ram(problem)
        budgeted = problem.with_budgets(ram_budget_bytes=min_ram)
        row.update(min_ram_bytes=min_ram, store_all_peak_bytes=solver.store_all_peak(problem))
        result = solver.solve(budgeted, strategy="poet", time_limit_s=time_limit_s, threads=1,
                              gap=gap)
        row.update(status=result.status, source=result.source, milp_status=result.milp_status,
                   schedule="none" if result.schedule is None else (result.source or "?"))
        if result.schedule is None:
            row["seconds"] = time.perf_counter() - started
            return row
        schedule = result.schedule
        sim = solver.simulate(budgeted, schedule)
        row.update(recomputes=sim.n_recompute, page_ins=sim.n_page_in, page_outs=sim.n_page_out,
                   predicted_peak_bytes=sim.peak_ram_bytes)
        ours = poet.ScheduledStep(model, step.loss_fn, schedule, graph=graph, problem=budgeted,
                                  optimizer=opt, update=update)
        before = {n: p.detach().clone() for n, p in model.named_parameters() if n in trained}
        trace_ok = peak_ok = loss_ok = rng_ok = True
        mapped, measured, step_temps = [], 0, 0
        for _ in range(steps):
            rng0 = torch.get_rng_state()
            if update == "buffered":
                opt.zero_grad()
            loss = ours(x, y)
            if update == "buffered":  # the step ends with only static bytes resident
                step_temps = max(step_temps, _step_temporaries(opt))
            rng_ours = torch.get_rng_state()
            torch.set_rng_state(rng0)
            eager_opt.zero_grad()
            eager_loss = step.loss_fn(eager(*xs), y)
            eager_loss.backward()
            eager_opt.step()
            rng_ok &= bool(torch.equal(rng_ours, torch.get_rng_state()))
            res = ours.last_result
            trace_ok &= res.ram_trace == sim.ram_trace
            peak_ok &= res.peak_ram_bytes == sim.peak_ram_bytes
            loss_ok &= bool(torch.equal(loss, eager_loss.detach()))
            measured = max(measured, res.peak_ram_bytes)
            mapped.append(res.weights_file_bytes)
        ep = dict(eager.named_parameters())
        params = dict(model.named_parameters())
        row.update(
            measured_peak_bytes=measured, trace_equal=trace_ok, peak_equal=peak_ok,
            loss_bitwise=loss_ok, rng_equal=rng_ok, weights_file_bytes=min(mapped),
            weights_mapped=(min(mapped) >= frozen > 0) if in_flash else max(mapped) == 0,
            params_bitwise=all(torch.equal(p, ep[n]) for n, p in params.items()),
            state_bitwise=all(_state_equal(opt, eager_opt, p, ep[n]) for n, p in params.items()),
            buffers_bitwise=all(torch.equal(b, eb) for (_, b), eb in
                                zip(model.named_buffers(), eager.buffers())),
            trained=any(not torch.equal(params[n], b) for n, b in before.items()))
        if update == "buffered":  # outside the schedule: not among the CHECKS, reported apart
            predicted = int(graph.extra.get("optimizer_step_workspace_bytes", 0))
            row.update(opt_step_peak_bytes=budgeted.static_bytes + step_temps,
                       opt_step_within_min=budgeted.static_bytes + step_temps <= min_ram,
                       opt_step_predicted_bytes=predicted, opt_step_counted=predicted == step_temps)
        report = poet.verify(graph, schedule, model, x, y, problem=budgeted, optimizer=opt)
        row.update(verify_passed=bool(report.passed and report.params_bitwise
                                      and report.optimizer_state_bitwise and report.trace_equal),
                   verify_failures=list(report.failures))
        row["ok"] = all(row[k] for k in CHECKS)
    except Exception as exc:  # noqa: BLE001 - a benchmark row reports what broke and goes on
        text = " ".join(str(exc).split())
        row["error"] = f"{type(exc).__name__}: {text[:300]}"
    row["seconds"] = time.perf_counter() - started
    return row


def _replay_cells(r: dict) -> list[str]:
    if r.get("error") and "min_ram_bytes" not in r:
        return [r["model"], r["train"], r["weights"], r["update"], r["optimizer"], "-", "error",
                *["-"] * 7, f"{r['seconds']:.1f}"]
    yes = lambda k: "-" if k not in r else ("yes" if r[k] else "NO")  # noqa: E731
    peak = "-"
    if "measured_peak_bytes" in r:
        same = "=" if r["predicted_peak_bytes"] == r["measured_peak_bytes"] else "!="
        peak = f"{format_bytes(r['predicted_peak_bytes'])} {same} {format_bytes(r['measured_peak_bytes'])}"
    return [r["model"], r["train"], r["weights"], r["update"], r["optimizer"],
            format_bytes(r["min_ram_bytes"]), r.get("schedule", "-"),
            str(r.get("recomputes", "-")), str(r.get("page_ins", "-")), peak, yes("trace_equal"),
            yes("params_bitwise"), yes("state_bitwise"),
            "error" if r.get("error") else yes("verify_passed"), f"{r['seconds']:.1f}"]


def replay_main(args) -> int:
    from poet.cli_tables import table

    rows: list[dict] = []
    print(f"replay: POET at each row's minimum RAM, priced on {args.device}, {REPLAY_STEPS} steps, "
          f"solve time limit {args.time_limit:g} s, 1 torch thread, batch 1, fp32", flush=True)
    for label in args.models:
        step, choices = replay_choices(label, trains=args.trains)
        for tlabel, train, weights, update in choices:
            for opt_name in args.optimizers:
                r = replay_row(step, label, tlabel, train, weights, update, opt_name,
                               device=args.device, time_limit_s=args.time_limit)
                rows.append(r)
                print(" | ".join(_replay_cells(r)), flush=True)
                if r.get("error"):
                    print(f"#   error: {r['error']}", flush=True)
                elif not r["ok"]:
                    failed = [k for k in CHECKS if not r.get(k)]
                    print(f"#   failed: {', '.join(failed)} {r.get('verify_failures') or ''}", flush=True)
    print()
    print(table([_replay_cells(r) for r in rows], REPLAY_HEADER))
    n_ok = sum(r["ok"] for r in rows)
    print(f"{n_ok} of {len(rows)} rows replayed bitwise")
    buffered = [r for r in rows if "opt_step_peak_bytes" in r]
    over = [r for r in buffered if not r["opt_step_within_min"]]
    counted = sum(r["opt_step_counted"] for r in buffered)
    print(f"buffered rows whose opt.step() temporaries equal poet's count "
          f"(optimizer_step_workspace_bytes): {counted} of {len(buffered)}")
    print(f"buffered rows whose opt.step() after the step needs more than the step's own minimum "
          f"(static bytes + its temporaries; poet fit's minimum RAM includes it): {len(over)} of "
          f"{len(buffered)}")
    for r in over:
        print(f"#   {r['model']} {r['train']} {r['weights']} {r['optimizer']}: opt.step() "
              f"{format_bytes(r['opt_step_peak_bytes'])} > min RAM {format_bytes(r['min_ram_bytes'])}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": str(args.device), "steps": REPLAY_STEPS,
                       "time_limit_s": args.time_limit, "rows": rows}, f, indent=2)
    return 0 if n_ok == len(rows) else 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--optimizer", default="sgd")
    ap.add_argument("--json")
    ap.add_argument("--replay", action="store_true",
                    help="replay every row's POET schedule at its minimum RAM against eager")
    ap.add_argument("--optimizers", nargs="+", default=list(REPLAY_OPTIMIZERS),
                    choices=list(REPLAY_OPTIMIZERS), help="--replay: the optimizers")
    ap.add_argument("--time-limit", type=float, default=20.0, help="--replay: seconds per solve")
    ap.add_argument("--device", default=REPLAY_DEVICE, help="--replay: the profile that prices")
    ap.add_argument("--trains", nargs="+", help="--replay: only these train choices (all, bias, "
                                                 "last, last2, ...)")
    args = ap.parse_args(argv)
    if not args.time_limit > 0:
        ap.error(f"--time-limit must be a number of seconds > 0, got {args.time_limit!r}")
    bad = [t for t in args.trains or () if t not in ("all", "bias", "last")
           and not (t.startswith("last") and t[4:].isdigit())]
    if bad:
        ap.error(f"--trains must be all, bias, last or last<k>, got {bad[0]!r}")
    import torch

    from poet.cli_tables import table

    torch.set_num_threads(1)
    if args.replay:
        return replay_main(args)
    devices = [p for p in list_profiles()]
    print("usable RAM: " + ", ".join(f"{p.name} {format_bytes(p.usable_ram_bytes)}" for p in devices))
    everything, cells = [], []
    for label in args.models:
        rows, seconds = table_rows(label, args.optimizer)
        everything += rows
        for e in rows:
            fits = e["fits"]
            cells.append([label, e["train"], e["weights"], e["update"],
                          *(format_bytes(e[k]) for k in ("trained_params", "grads", "optimizer_state",
                                                         "buffers", "batch", "frozen_in_flash",
                                                         "min_ram_bytes", "store_all_peak_bytes")),
                          _fits_cell(fits, devices)])
        print(f"# {label}: {len(rows)} choices in {seconds:.1f} s", file=sys.stderr)
    print(f"optimizer {args.optimizer}, batch 1, fp32")
    print(table(cells, HEADER))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"optimizer": args.optimizer, "rows": everything}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
