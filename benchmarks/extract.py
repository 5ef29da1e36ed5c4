"""Extraction benchmark: one row per zoo model.

    python benchmarks/extract.py [--models resnet18 bert] [--batch-size 1] [--repeats 3]
                                 [--granularity layer] [--json out.json]

Columns: ATen ops in the traced step, non-view ops, graph nodes, edges, total FLOPs (what
torch.utils.flop_counter counts), extra FLOPs (our estimate of what it does not), activation
bytes (sum of node outputs), static bytes (params, grads, optimizer state, buffers, batch) and
the wall time of ``poet.extract`` (median of ``--repeats`` runs, tracing included).
Exits with status 1 if ResNet-18 takes 30 s or more (the requirement for batch 1).

    python benchmarks/extract.py --flop-rule [--device nrf52840]

The convolution FLOP fix (issue #12): MobileNetV2-0.35 at 96x96 (ImageNet layout, train=all,
batch 1) traced twice, once with poet's own ``convolution_backward`` rule
(``poet.opcosts.FLOP_OVERRIDES``, the default) and once with torch's formula alone (the overrides
emptied for that trace), each priced on ``--device`` with ``poet.costs.make_problem``: total
FLOPs, store-all energy and time. The totals are checked against an independent count, torch's
``FlopCounterMode`` on an eager step with and without the same overrides.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

from poet import zoo
from poet._extract import extract

RESNET_LIMIT_S = 30.0


def measure(name: str, batch_size: int, repeats: int, granularity: str) -> dict:
    model, loss_fn, x, y = zoo.get(name, batch_size=batch_size)
    times = []
    graph = None
    for _ in range(repeats):
        start = time.perf_counter()
        graph = extract(model, loss_fn, x, y, granularity=granularity)
        times.append(time.perf_counter() - start)
    row = graph.summary()
    row["model"] = name
    row["trace_seconds"] = statistics.median(times)
    return row


def flop_rule_rows(device: str) -> list[dict]:
    """Store-all FLOPs, energy and time of MobileNetV2-0.35@96 with torch's formula and poet's rule."""
    import copy

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from poet import opcosts
    from poet.costs import make_problem

    zm = zoo.get("mobilenetv2", width=0.35, resolution=96, layout="imagenet")
    saved = dict(opcosts.FLOP_OVERRIDES)
    rows = []
    for rule in ("torch's formula", "poet's rule"):
        if rule == "torch's formula":
            opcosts.FLOP_OVERRIDES.clear()
        try:
            graph = extract(copy.deepcopy(zm.model), zm.loss_fn, zm.inputs, zm.targets, train="all")
        finally:
            opcosts.FLOP_OVERRIDES.update(saved)
        mapping = {} if rule == "torch's formula" else saved
        with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
            zm.loss_fn(copy.deepcopy(zm.model)(zm.inputs), zm.targets).backward()
        problem = make_problem(graph, device)
        rows.append({"rule": rule, "flops": graph.total_flops, "eager_counter_flops":
                     counter.get_total_flops(), "store_all_energy_j": problem.store_all_energy_j,
                     "store_all_time_s": problem.store_all_time_s})
    return rows


def _si(value: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.2f}{unit}"
    return f"{value:.0f}"


def format_table(rows: list[dict]) -> str:
    header = ["model", "ATen ops", "non-view", "nodes", "edges", "FLOPs", "extra FLOPs",
              "activ. bytes", "static bytes", "trace s"]
    lines = [[r["model"], str(r["aten_ops"]), str(r["nonview_ops"]), str(r["nodes"]), str(r["edges"]),
              _si(r["flops"]), _si(r["extra_flops"]), _si(r["activation_bytes"]), _si(r["static_bytes"]),
              f"{r['trace_seconds']:.2f}"] for r in rows]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    out = ["  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(header, widths)))]
    out.append("  ".join("-" * w for w in widths))
    for line in lines:
        out.append("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths))))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=zoo.names(), choices=zoo.names())
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--granularity", default="layer", choices=["layer", "op"])
    parser.add_argument("--json", help="also write the rows to this JSON file")
    parser.add_argument("--flop-rule", action="store_true",
                        help="MobileNetV2-0.35@96 with torch's conv FLOP formula and with poet's rule")
    parser.add_argument("--device", default="nrf52840", help="device profile for --flop-rule")
    args = parser.parse_args(argv)
    if args.flop_rule:
        rows = flop_rule_rows(args.device)
        print(f"MobileNetV2-0.35@96 (imagenet layout), train=all, batch 1, store-all on {args.device}")
        print(f"{'FLOP rule':16s} {'graph FLOPs':>12s} {'eager counter':>13s} {'energy J':>9s} {'time s':>8s}")
        for r in rows:
            print(f"{r['rule']:16s} {_si(r['flops']):>12s} {_si(r['eager_counter_flops']):>13s} "
                  f"{r['store_all_energy_j']:9.4f} {r['store_all_time_s']:8.3f}")
        b, a = rows
        print(f"energy {b['store_all_energy_j'] / a['store_all_energy_j']:.2f}x lower with poet's rule")
        ok = all(r["flops"] == r["eager_counter_flops"] for r in rows)
        if not ok:
            print("FAIL: the graph's FLOPs differ from FlopCounterMode on the eager step")
        return 0 if ok else 1
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    rows = [measure(name, args.batch_size, args.repeats, args.granularity) for name in args.models]
    print(f"poet.extract, granularity={args.granularity}, batch size {args.batch_size}, "
          f"median of {args.repeats} runs")
    print(format_table(rows))
    if args.json:
        tmp = f"{args.json}.tmp{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(rows, fh, indent=2)
        os.replace(tmp, args.json)
    slow = [r for r in rows if r["model"] == "resnet18" and r["trace_seconds"] >= RESNET_LIMIT_S]
    if slow and args.batch_size == 1:
        print(f"FAIL: resnet18 extraction took {slow[0]['trace_seconds']:.1f} s (limit {RESNET_LIMIT_S:.0f} s)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
