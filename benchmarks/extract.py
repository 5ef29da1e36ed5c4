"""Extraction benchmark: one row per zoo model.

    python benchmarks/extract.py [--models resnet18 bert] [--batch-size 1] [--repeats 3]
                                 [--granularity layer] [--json out.json]

Columns: ATen ops in the traced step, non-view ops, graph nodes, edges, total FLOPs (what
torch.utils.flop_counter counts), extra FLOPs (our estimate of what it does not), activation
bytes (sum of node outputs), static bytes (params, grads, optimizer state, buffers, batch) and
the wall time of ``poet.extract`` (median of ``--repeats`` runs, tracing included).
Exits with status 1 if ResNet-18 takes 30 s or more (the requirement for batch 1).
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
    args = parser.parse_args(argv)
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
