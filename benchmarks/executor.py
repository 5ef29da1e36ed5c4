"""Executor speed and schedule overheads on a zoo model (ResNet-18 by default, 32x32 inputs).

    .venv/bin/python benchmarks/executor.py [--model resnet18] [--batch 1] [--repeats 10] [--threads N]
                                            [--device rpi4] [--budget 0.25] [--time-limit 60]
                                            [--json] [--check]

``--model`` takes a zoo name: ``resnet18`` (few large ops) and ``mobilenetv2`` (many small
depthwise ops, where the executor's per-op Python work shows most) are the two to compare.

1. Time per training step (median of --repeats steps, after two warm-up steps, eager and
   executor steps interleaved so load drift hits both alike) of eager ``loss.backward()`` and
   of the executor running the store-all schedule (``poet.ScheduledStep``: the same ATen ops
   plus the executor's bookkeeping). The executor should be at most 1.5x slower
   (``--check`` exits with status 1 if it is not).
2. Real schedules at a tight RAM budget (``--budget``: the fraction of the way from the minimum
   feasible RAM to the store-all peak): DTR (recompute), greedy paging, and the MILP
   (``solver.solve``, strategy "poet"). For each: the simulator's device
   prediction (time and energy on ``--device``, and the overhead over store-all) next to the
   measured CPU seconds of the executor on this machine, the measured vs predicted peak RAM,
   and the flash bytes really written.

Device time and energy are predictions of the cost model; CPU seconds are what this machine
took to run the same instructions (paging goes to files in a temporary folder on local disk).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time

import torch

import poet
import solver
from poet import zoo
from poet.costs import make_problem
from poet.executor import prepare, run_prepared
from solver.baselines import get_baseline


def _time_steps(fns: dict, model_copies: dict, repeats: int) -> dict[str, list[float]]:
    """Run each fn once per round (interleaved), `repeats` rounds after 2 warm-up rounds."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(repeats + 2):
        for k, fn in fns.items():
            model_copies[k].zero_grad(set_to_none=True)
            t0 = time.perf_counter()
            fn()
            dt = time.perf_counter() - t0
            if r >= 2:
                times[k].append(dt)
    return times


def _schedules(problem, budgeted, time_limit_s: float):
    out = {"store_all": solver.store_all(problem)}
    for name in ("dtr", "greedy_paging"):
        try:
            out[name] = get_baseline(name)(budgeted)
        except solver.InfeasibleError as e:
            print(f"# {name}: infeasible at this budget ({e})", file=sys.stderr)
    result = solver.solve(budgeted, strategy="poet", time_limit_s=time_limit_s)
    if result.schedule is not None:
        out["poet (MILP)"] = result.schedule
    else:
        print(f"# solver.solve found no schedule ({result.status}): MILP row skipped", file=sys.stderr)
    return out


def _print_table(info: dict) -> None:
    """The human-readable report of `main`."""
    args_batch, repeats, device = info["batch"], info["repeats"], info["device"]
    eager_s, store_s = info["eager_step_s"], info["executor_store_all_step_s"]
    eager_min, store_min = info["eager_step_min_s"], info["executor_store_all_step_min_s"]
    ratio, rows = info["executor_over_eager"], info["rows"]
    budget, lo, hi = info["budget_bytes"], info["min_feasible_bytes"], info["store_all_peak_bytes"]
    mib = 2 ** 20
    print(f"{info['model']}, batch {args_batch}, {info['threads']} thread(s), median of {repeats} steps")
    print(f"eager backward():           {eager_s * 1e3:8.1f} ms/step (min {eager_min * 1e3:.1f})")
    print(f"executor, store-all:        {store_s * 1e3:8.1f} ms/step (min {store_min * 1e3:.1f})  "
          f"{ratio:.2f}x eager (limit 1.5x: {'ok' if ratio <= 1.5 else 'EXCEEDED'})")
    print(f"eager backward() + SGD step: {info['eager_step_with_opt_s'] * 1e3:7.1f} ms/step")
    print(f"executor, fused SGD updates: {info['executor_fused_step_s'] * 1e3:7.1f} ms/step  "
          f"{info['fused_over_eager']:.2f}x eager; static {info['fused_static_bytes']} B "
          f"(buffered: {info['buffered_static_bytes']} B)")
    print(f"\nRAM budget {budget / mib:.2f} MiB (minimum {lo / mib:.2f}, "
          f"store-all peak {hi / mib:.2f}); device predictions on {device}")
    head = (f"{'schedule':14s} {'remat':>5s} {'p-in':>5s} {'flash MiB':>9s} {'peak pred/meas MiB':>19s} "
            f"{'dev time s':>10s} {'dev J':>9s} {'dev +E%':>8s} {'dev +t%':>8s} {'CPU ms':>8s} {'CPU +%':>7s}")
    print(head)
    for r in rows:
        print(f"{r['schedule']:14s} {r['recomputes']:5d} {r['page_ins']:5d} "
              f"{r['flash_written_bytes'] / mib:9.2f} "
              f"{r['peak_predicted_bytes'] / mib:9.2f}/{r['peak_measured_bytes'] / mib:<9.2f} "
              f"{r['device_time_s']:10.4f} {r['device_energy_j']:9.4f} "
              f"{100 * r['device_energy_overhead']:8.2f} {100 * r['device_time_overhead']:8.2f} "
              f"{r['cpu_step_s'] * 1e3:8.1f} {100 * r['cpu_overhead']:7.1f}")


def _fused_times(zm, args) -> dict:
    """Store-all step with update="fused" (SGD, momentum 0.9) against eager backward() + step()."""
    eager_model, ex_model = copy.deepcopy(zm.model), copy.deepcopy(zm.model)
    eager_opt = torch.optim.SGD(eager_model.parameters(), lr=1e-3, momentum=0.9)
    ex_opt = torch.optim.SGD(ex_model.parameters(), lr=1e-3, momentum=0.9)
    graph = poet.extract(ex_model, zm.loss_fn, zm.inputs, zm.targets, optimizer=ex_opt, update="fused")
    problem = make_problem(graph, args.device)
    prep = prepare(graph, solver.store_all(problem), problem)

    def eager_step():
        zm.loss_fn(eager_model(zm.inputs), zm.targets).backward()
        eager_opt.step()

    fns = {"eager+step": eager_step,
           "fused": lambda: run_prepared(prep, ex_model, zm.inputs, zm.targets, optimizer=ex_opt)}
    times = _time_steps(fns, {"eager+step": eager_model, "fused": ex_model}, args.repeats)
    e, f = statistics.median(times["eager+step"]), statistics.median(times["fused"])
    return {"eager_step_with_opt_s": e, "executor_fused_step_s": f, "fused_over_eager": f / e,
            "fused_static_bytes": problem.static_bytes, "buffered_static_bytes": graph.static_bytes
            + graph.static_breakdown["trained_params"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="resnet18", help="zoo model (resnet18, mobilenetv2, ...)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    ap.add_argument("--device", default="rpi4", help="profile for the predicted time and energy")
    ap.add_argument("--budget", type=float, default=0.25,
                    help="RAM budget as the fraction of the way from minimum to store-all peak")
    ap.add_argument("--time-limit", type=float, default=60.0, help="MILP time limit (s)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--check", action="store_true", help="exit 1 if the executor is > 1.5x eager")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    zm = zoo.get(args.model, batch_size=args.batch)
    graph = poet.extract(zm.model, zm.loss_fn, zm.inputs, zm.targets)
    problem = make_problem(graph, args.device)
    lo, hi = solver.min_feasible_ram(problem), solver.store_all_peak(problem)
    budgeted = problem.with_budgets(ram_budget_bytes=int(lo + args.budget * (hi - lo)))
    schedules = _schedules(problem, budgeted, args.time_limit)

    # 1. store-all executor vs eager
    eager_model = copy.deepcopy(zm.model)
    models: dict = {"eager": eager_model}
    fns = {"eager": lambda: zm.loss_fn(eager_model(zm.inputs), zm.targets).backward()}
    prepared = {}
    for name, sched in schedules.items():
        m = copy.deepcopy(zm.model)
        prep = prepare(graph, sched, problem if name == "store_all" else budgeted)
        prepared[name] = prep
        models[name] = m
        fns[name] = (lambda p=prep, m=m: run_prepared(p, m, zm.inputs, zm.targets, into_model=True))
    # eager vs store-all first, on their own; then the schedules (with store-all again) together
    times = _time_steps({k: fns[k] for k in ("eager", "store_all")}, models, args.repeats)
    phase1 = dict(times)
    times = _time_steps({k: fns[k] for k in schedules}, models, args.repeats)
    med = {k: statistics.median(v) for k, v in times.items()}
    eager_s, store_s = statistics.median(phase1["eager"]), statistics.median(phase1["store_all"])
    eager_min, store_min = min(phase1["eager"]), min(phase1["store_all"])
    ratio = store_s / eager_s

    # 3. the new features on: fused SGD (momentum) updates inside the step, weights placement of
    # the device profile, against eager loss.backward(); opt.step()
    fused = _fused_times(zm, args)

    rows = []
    store_sim = solver.simulate(problem, schedules["store_all"])
    for name, sched in schedules.items():
        prob = problem if name == "store_all" else budgeted
        sim = solver.simulate(prob, sched)
        res = run_prepared(prepared[name], copy.deepcopy(zm.model), zm.inputs, zm.targets)
        rows.append({
            "schedule": name,
            "recomputes": sim.n_recompute, "page_ins": sim.n_page_in,
            "flash_written_bytes": res.flash_bytes_written,
            "peak_predicted_bytes": sim.peak_ram_bytes, "peak_measured_bytes": res.peak_ram_bytes,
            "device_time_s": sim.time_s, "device_energy_j": sim.energy_j,
            "device_energy_overhead": sim.energy_j / store_sim.energy_j - 1,
            "device_time_overhead": sim.time_s / store_sim.time_s - 1,
            "cpu_step_s": med[name], "cpu_overhead": med[name] / med["store_all"] - 1,
        })
    info = {
        "model": args.model, "batch": args.batch, "threads": torch.get_num_threads(), "device": args.device,
        "repeats": args.repeats, "eager_step_s": eager_s, "executor_store_all_step_s": store_s,
        "eager_step_min_s": eager_min, "executor_store_all_step_min_s": store_min,
        "executor_over_eager": ratio, "within_1_5x": ratio <= 1.5,
        "budget_bytes": budgeted.ram_budget_bytes, "min_feasible_bytes": lo, "store_all_peak_bytes": hi,
        "rows": rows, **fused,
    }
    if args.json:
        print(json.dumps(info, indent=1))
    else:
        _print_table(info)
    return 1 if args.check and ratio > 1.5 else 0


if __name__ == "__main__":
    sys.exit(main())
