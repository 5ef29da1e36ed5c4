"""`poet fit` benchmark: the wall time of `poet.fit.fit` for each MCU-class zoo model on one device.

    python benchmarks/fit.py [--device nrf52840] [--models ds_cnn sensor_cnn1d] [--time-limit 5]
                             [--battery 2.4kJ] [--json out.json] [--check]

One row per model: the choices tried (rows), how many fit, how many needed a MILP (store-all
peak above the usable RAM), the seconds spent tracing and solving and in all, and the best line.
Target (issue #13): every model of the list in under a minute on 2 cores; `--check` exits with
status 1 when the total is 60 s or more.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from poet.fit import fit

MODELS = {
    "sensor_cnn1d": ("sensor_cnn1d", {}),
    "cnn_dropout_bn": ("cnn_dropout_bn", {}),
    "ds_cnn": ("ds_cnn", {}),
    "mlp": ("mlp", {}),
    "mbv2-0.35@96": ("mobilenetv2", {"width": 0.35, "resolution": 96, "layout": "imagenet"}),
    "mbv2-0.35@128": ("mobilenetv2", {"width": 0.35, "resolution": 128, "layout": "imagenet"}),
}
TARGET_S = 60.0


def measure(label: str, device: str, time_limit: float, battery: str) -> dict:
    name, options = MODELS[label]
    start = time.perf_counter()
    report = fit(name, device, options=options, time_limit_s=time_limit, battery=battery)
    seconds = time.perf_counter() - start
    return {"model": label, "rows": len(report.rows), "fit": sum(r.fits for r in report.rows),
            "milp": sum(r.fits and r.store_all_peak_bytes > r.usable_ram_bytes for r in report.rows),
            "max_gap": max((r.gap for r in report.rows if r.gap is not None), default=None),
            "trace_s": report.trace_seconds, "solve_s": report.solve_seconds, "seconds": seconds,
            "best": report.best_line()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="nrf52840")
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--time-limit", type=float, default=5.0)
    ap.add_argument("--battery", default="2.4kJ")
    ap.add_argument("--json")
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    out = []
    header = f"{'model':<14} {'rows':>4} {'fit':>4} {'milp':>4} {'max gap':>8} {'trace s':>8} " \
             f"{'solve s':>8} {'total s':>8}  best"
    print(f"poet fit on {args.device}, time limit {args.time_limit:g} s per MILP row, "
          f"{os.cpu_count()} cores")
    print(header)
    for label in args.models:
        r = measure(label, args.device, args.time_limit, args.battery)
        out.append(r)
        gap = f"{100 * r['max_gap']:.2f}%" if r["max_gap"] is not None else "-"
        print(f"{r['model']:<14} {r['rows']:>4} {r['fit']:>4} {r['milp']:>4} {gap:>8} "
              f"{r['trace_s']:>8.1f} {r['solve_s']:>8.1f} {r['seconds']:>8.1f}  {r['best']}",
              flush=True)
    total = sum(r["seconds"] for r in out)
    print(f"total {total:.1f} s (target: under {TARGET_S:.0f} s)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": args.device, "rows": out, "total_s": total}, f, indent=2)
    return 1 if args.check and total >= TARGET_S else 0


if __name__ == "__main__":
    sys.exit(main())
