"""Issue #12's memory table: where the bytes of one training step go on a small device.

    python benchmarks/mcu_memory.py [--models ds_cnn sensor_cnn1d] [--optimizer sgd] [--json out.json]

For MobileNetV2-0.35 at 96 and 128 (MCUNetV3's layout), the DS-CNN keyword spotter and the zoo's
sensor and image CNNs: one row per training choice of `poet.fit` (train = last, bias, the last k
blocks, all; weights in RAM or flash; update buffered or fused) with the static bytes split into
trained parameters, gradient buffers, optimizer state, buffers and the batch, the frozen bytes kept
in flash, the minimum RAM of any schedule, the store-all peak, and the built-in devices it fits
(minimum RAM within the usable RAM and, for weights in flash, frozen weights within the program
flash). Memory only: nothing is solved. Batch 1, fp32 (the models' own dtype).
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--optimizer", default="sgd")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    import torch

    from poet.cli_tables import table

    torch.set_num_threads(1)
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
