"""The `poet` command line: ``poet COMMAND ...`` (the `poet` script, or ``python -m poet.cli``).

This module builds the parser and runs a command; the commands are in `poet.cli_commands` and
the text they print in `poet.cli_tables`. Library code never prints; the commands do. Errors
the user can fix (bad file, bad size, infeasible budget) become one line on stderr and exit
code 2, never a traceback; an interrupt exits with 130.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
import traceback

from solver.backends import BACKENDS
from solver.strategies import STRATEGIES

from . import cli_advice as advice
from . import cli_commands as commands
from .modelspec import OPTIMIZER_NAMES, UPDATE_NAMES, WEIGHTS_NAMES
from . import signals

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
    "demo": ["poet demo", "poet demo --model cnn_dropout_bn --device nrf52840 --batch-size 4",
             "poet demo --model resnet18 --device rpi4 --ram 0.5x --update buffered"],
    "inspect": ["poet inspect resnet18 --device rpi4",
                "poet inspect mlp --device nrf52840 --train bias --out mlp.json",
                "poet inspect mypkg.models:make --device m4 --batch-size 4"],
    "profiles": ["poet profiles", "poet profiles --json"],
    "zoo": ["poet zoo", "poet inspect mobilenetv2 --device nrf52840 --model-opt width=0.35 "
            "--model-opt resolution=128 --model-opt layout=imagenet --train last"],
    "fit": ["poet fit ds_cnn --device nrf52840", "poet fit sensor_cnn1d --device all --battery "
            "1000mAh@3.7V", "poet fit mobilenetv2 --model-opt width=0.35 --model-opt "
            "resolution=128 --model-opt layout=imagenet --device stm32f746 --no-solve"],
    "explain": ["poet explain s.json --problem p.json", "poet explain out/demo/schedule.json",
                "poet explain s.json --problem p.json --changed --json"],
    "simulate": ["poet simulate problem.json schedule.json",
                 "poet simulate problem.json schedule.json --json"],
}

def _epilog(name: str) -> str:
    return "examples:\n" + "\n".join(f"  {e}" for e in EXAMPLES.get(name, []))


def _add_model_args(p, *, device_required=True):
    p.add_argument("model", help="a zoo name (`poet zoo` lists them and their options), a "
                                 "problem JSON file where the command takes one, or "
                                 "module:function returning (model, loss_fn, inputs, targets)")
    p.add_argument("--device", required=device_required,
                   help="a built-in profile name (see `poet profiles`) or a path to a TOML profile")
    p.add_argument("--batch-size", type=int, default=None, help="batch size (default 1)")
    p.add_argument("--train", default=None,
                   help="all | bias | last | a comma list of module names to update (default all)")
    p.add_argument("--optimizer", default=None, choices=list(OPTIMIZER_NAMES),
                   help="optimizer whose state counts as static memory (default sgd)")
    p.add_argument("--update", default=None, choices=list(UPDATE_NAMES),
                   help="buffered: PyTorch's backward() then step(), one gradient buffer per "
                        "trained parameter (default); fused: each gradient applied as soon as it "
                        "is computed, no gradient buffers (MCUNetV3's Tiny Training Engine)")
    p.add_argument("--weights", default=None, choices=list(WEIGHTS_NAMES),
                   help="where frozen parameters live: flash (read in place, out of RAM) or ram; "
                        "default: the profile's")
    p.add_argument("--granularity", default=None, choices=["layer", "op"],
                   help="one node per layer call (default) or per ATen op")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the model's weights and batch (default 0)")
    _add_model_opt(p)
    p.add_argument("--inplace", action="store_true", default=None,
                   help="run elementwise ops (ReLU, ReLU6, residual adds) in place where no "
                        "later reader needs their input, as microcontroller kernels do")
    p.add_argument("--fold-bn", action="store_true", default=None,
                   help="fold each frozen BatchNorm into the convolution before it, as "
                        "microcontroller deployments do (frozen BatchNorms then use their "
                        "running statistics)")


def _add_model_opt(p):
    p.add_argument("--model-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="a zoo model option, e.g. --model-opt width=0.35 --model-opt "
                        "resolution=128 (repeat for more; `poet zoo` lists them)")


def _add_json(p):
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


# ---- one function per command's arguments ------------------------------------------------------
def _zoo_args(p):
    _add_json(p)


def _profiles_args(p):
    _add_json(p)


def _inspect_args(p):
    _add_model_args(p)
    p.add_argument("--out", help="write the problem JSON here")
    _add_json(p)


def _solve_args(p):
    _add_model_args(p, device_required=False)
    p.add_argument("--ram", help="RAM budget: bytes, 256KiB, 1.5MiB, 'device', or a multiple of "
                                 "the store-all peak (0.8x); default: no limit")
    p.add_argument("--runtime", help="runtime budget: seconds (2.5, 250ms) or a multiple of the "
                                     "store-all time (1.5x); default: no limit")
    p.add_argument("--flash", help="flash budget: bytes or 'device'; default: no limit")
    p.add_argument("--strategy", default="poet", choices=list(STRATEGIES),
                   help="default poet (remat + paging)")
    p.add_argument("--no-remat", action="store_true", help="forbid recomputation")
    p.add_argument("--no-paging", action="store_true", help="forbid paging (Checkmate)")
    p.add_argument("--backend", default="auto", choices=list(BACKENDS))
    p.add_argument("--time-limit", type=float, default=300.0, help="seconds (default 300)")
    p.add_argument("--threads", type=int, default=None, help="solver threads")
    p.add_argument("--gap", type=float, default=1e-4, help="relative gap to stop at (1e-4)")
    p.add_argument("--out", help="write the schedule JSON here")
    p.add_argument("--problem-out", help="write the problem JSON here")
    p.add_argument("--verbose", action="store_true", help="stream the solver's own output")
    p.add_argument("--explain", action="store_true",
                   help="also print what the schedule does to each layer (as poet explain)")
    _add_json(p)


def _fit_args(p):
    p.add_argument("model", help="a zoo name (`poet zoo`) or module:function")
    p.add_argument("--device", default="nrf52840",
                   help="a profile name or TOML path, a comma list, or 'all' (every built-in); "
                        "default nrf52840")
    p.add_argument("--batch-size", type=int, default=None, help="batch size (default 1)")
    p.add_argument("--seed", type=int, default=None, help="seed of the weights and batch (0)")
    p.add_argument("--optimizer", default=None, choices=list(OPTIMIZER_NAMES),
                   help="optimizer whose state is counted (default sgd)")
    _add_model_opt(p)
    p.add_argument("--train", dest="trains", default=None,
                   help="comma list of the choices to try among all, bias, last, last2, last4, "
                        "last8 (default: all of them)")
    p.add_argument("--weights", dest="weights_list", default="ram,flash",
                   help="comma list among ram, flash (default both)")
    p.add_argument("--update", dest="updates", default="buffered,fused",
                   help="comma list among buffered, fused (default both)")
    p.add_argument("--fold-bn", dest="fit_fold", nargs="?", const="yes", default=None,
                   choices=["yes", "both"],
                   help="fold frozen BatchNorms (yes), or try with and without (both)")
    p.add_argument("--inplace", dest="fit_inplace", action="store_true",
                   help="run elementwise ops (ReLU, residual adds) in place where that is exact")
    p.add_argument("--battery", help="energy of one battery charge: 2.4kJ, 3.7Wh, 1000mAh@3.7V")
    p.add_argument("--time-limit", type=float, default=5.0, help="seconds per solve (5)")
    p.add_argument("--gap", type=float, default=1e-2, help="relative gap per solve (1e-2)")
    p.add_argument("--no-solve", action="store_true", help="memory only: no schedule is solved")
    _add_json(p)


def _explain_args(p):
    p.add_argument("schedule", help="schedule JSON file (from poet solve)")
    p.add_argument("--problem", help="the problem JSON it was solved on (default: trace the zoo "
                                     "model the schedule records again, on its device)")
    p.add_argument("--changed", action="store_true",
                   help="only the layers the schedule recomputes or pages")
    _add_json(p)


def _verify_args(p):
    p.add_argument("schedule", help="schedule JSON file (from poet solve)")
    p.add_argument("--model", help="override the model the schedule records (zoo name or "
                                   "module:function)")
    p.add_argument("--batch-size", type=int, default=None, help="batch size (default: recorded)")
    p.add_argument("--train", default=None, help="with --model: all | bias | last | modules")
    p.add_argument("--optimizer", default=None, choices=list(OPTIMIZER_NAMES),
                   help="with --model (default sgd)")
    p.add_argument("--update", default=None, choices=list(UPDATE_NAMES),
                   help="with --model (default buffered)")
    p.add_argument("--weights", default=None, choices=list(WEIGHTS_NAMES),
                   help="with --model (default: the profile's)")
    p.add_argument("--seed", type=int, default=None, help="with --model (default 0)")
    _add_model_opt(p)
    p.add_argument("--device", help="price on this device (default: the one the schedule records)")
    p.add_argument("--problem", help="the problem JSON the schedule was solved on")
    p.add_argument("--flash-dir", help="folder to page to (default: a temporary folder)")
    _add_json(p)


def _demo_args(p):
    p.add_argument("--model", default="ds_cnn",
                   help="zoo model (default ds_cnn: the DS-CNN keyword spotter on 49x10 MFCCs)")
    p.add_argument("--device", default="stm32f746",
                   help="device profile (default stm32f746: 320 KiB of RAM, 288 KiB usable)")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--train", default="all", help="all | bias | last | module names (all)")
    p.add_argument("--optimizer", default="sgd", choices=list(OPTIMIZER_NAMES))
    p.add_argument("--update", default="fused", choices=list(UPDATE_NAMES),
                   help="fused (default: each gradient applied as it is computed) or buffered")
    p.add_argument("--weights", default=None, choices=list(WEIGHTS_NAMES),
                   help="frozen weights in flash or ram (default: the profile's)")
    p.add_argument("--no-inplace", dest="inplace", action="store_false",
                   help="keep elementwise ops out of place (default: in place, as MCU kernels)")
    p.add_argument("--ram", default="device",
                   help="RAM budget: 'device' (the profile's usable RAM, default), a size, or a "
                        "multiple of the store-all peak (0.5x)")
    p.add_argument("--budget", type=float, default=None,
                   help="instead of --ram: a fraction of the way from the minimum feasible RAM "
                        "(0) to the store-all peak (1)")
    p.add_argument("--time-limit", type=float, default=20.0, help="seconds per solve (20)")
    p.add_argument("--out-dir", default="out/demo", help="where to write problem.json and "
                                                         "schedule.json (out/demo)")
    _add_model_opt(p)


def _sweep_args(p):
    _add_model_args(p, device_required=False)
    p.add_argument("--budgets", default="8",
                   help="N (evenly from the minimum feasible RAM to the store-all peak), "
                        "START:STOP:N (64KiB:1MiB:12), or a comma list (256KiB,0.95x); default 8")
    p.add_argument("--strategies", default=",".join(STRATEGIES),
                   help=f"comma list (default: all {len(STRATEGIES)})")
    p.add_argument("--runtime-budgets", help="comma list of runtime budgets (2.5s,1.2x)")
    p.add_argument("--time-limit", type=float, default=60.0, help="seconds per solve (60)")
    p.add_argument("--backend", default="auto", choices=list(BACKENDS))
    p.add_argument("--threads", type=int, default=1, help="solver threads per point (1)")
    p.add_argument("--gap", type=float, default=1e-4)
    p.add_argument("--workers", type=int, default=None,
                   help="1 = solve in this process; default: a process pool, one per core")
    p.add_argument("--scheduler", help="solve on Dask: 'local' (a LocalCluster) or tcp://HOST:PORT")
    p.add_argument("--out", required=True, help="folder for sweep.csv, sweep.json, the plots "
                                                "and the cache (a rerun resumes from it)")
    p.add_argument("--save-schedules", action="store_true", help="also write every schedule")
    p.add_argument("--format", default="svg", choices=["svg", "pdf"], help="vector copy")
    _add_json(p)


def _plot_args(p):
    p.add_argument("sweep_dir", nargs="?", help="a folder written by poet sweep")
    p.add_argument("--out", help="where the figures go (default: the sweep folder)")
    p.add_argument("--strategy", default="poet", help="whose schedule to draw (poet)")
    p.add_argument("--budget", help="RAM budget of the schedule to draw (default: the tightest)")
    p.add_argument("--problem", help="a problem JSON (with --schedule)")
    p.add_argument("--schedule", help="a schedule JSON (with --problem)")
    p.add_argument("--format", default="svg", choices=["svg", "pdf"], help="vector copy")


def _simulate_args(p):
    p.add_argument("problem", help="problem JSON file (poet-problem/1)")
    p.add_argument("schedule", help="schedule JSON file (poet-schedule/1)")
    _add_json(p)


# name -> (help, command, its arguments), in the order `poet --help` lists them
COMMANDS = {
    "zoo": ("list the built-in models and their --model-opt options", commands.cmd_zoo,
            _zoo_args),
    "profiles": ("list the built-in device profiles", commands.cmd_profiles, _profiles_args),
    "inspect": ("trace a model's training step and print its graph and memory",
                commands.cmd_inspect, _inspect_args),
    "solve": ("find the least-energy schedule that fits the budgets", commands.cmd_solve,
              _solve_args),
    "verify": ("replay a schedule on real tensors and compare with eager PyTorch",
               commands.cmd_verify, _verify_args),
    "demo": ("the main job: trace a built-in model, solve every strategy at one budget, "
             "and verify the POET schedule on real tensors", commands.cmd_demo, _demo_args),
    "sweep": ("solve many RAM budgets with many strategies; write a table and plots",
              commands.cmd_sweep, _sweep_args),
    "plot": ("draw the trade-off plots of a sweep, or the plots of one schedule",
             commands.cmd_plot, _plot_args),
    "simulate": ("replay a schedule on a problem and print its energy, time and peaks",
                 commands.cmd_simulate, _simulate_args),
    "fit": ("does my training fit this chip? every training choice (train, weights, update) "
            "with its memory, whether it fits, and the least energy per step",
            advice.cmd_fit, _fit_args),
    "explain": ("one row per layer: how often a schedule computes and pages it, where it lives "
                "at the peak, the energy it adds; and what is in RAM at the peak",
                advice.cmd_explain, _explain_args),
}


# ---- entry point -------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """argparse with its usage errors on one line: ``poet solve: error: ... (poet solve -h)``."""

    def error(self, message: str):
        msg = " ".join(message.split())
        self.exit(2, f"{self.prog}: error: {msg} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command (COMMANDS); each sets ``func`` to its cmd_<name>."""
    parser = _Parser(
        prog="poet",
        description="Energy-optimal training schedules (rematerialization + paging) for small "
                    "devices.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=textwrap.dedent("""\
            examples:
              poet profiles                         the built-in device profiles
              poet simulate p.json s.json           check a schedule and print what it costs
            """))
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name, (help_, func, add_args) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_, epilog=_epilog(name),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(func=func)
        add_args(p)
        p.add_argument("--debug", action="store_true",
                       help="print the full traceback of an error (e.g. one in your own model "
                            "code) instead of one line")
    return parser


# the model options' defaults; `args.model_flags` lists those the user gave (a problem file,
# already traced, takes none of them: the commands refuse them rather than ignore them)
MODEL_DEFAULTS = {"batch_size": 1, "train": "all", "optimizer": "sgd", "granularity": "layer",
                  "seed": 0, "update": "buffered"}


def _fill_model_defaults(args) -> None:
    given = []
    for dest, default in MODEL_DEFAULTS.items():
        if not hasattr(args, dest):
            continue
        if getattr(args, dest) is None:
            setattr(args, dest, default)
        else:
            given.append("--" + dest.replace("_", "-"))
    if getattr(args, "model_opt", None):
        given.append("--model-opt")
    if getattr(args, "weights", None):
        given.append("--weights")
    if getattr(args, "inplace", None):
        given.append("--inplace")
    elif hasattr(args, "inplace"):
        args.inplace = False
    if getattr(args, "fold_bn", None):
        given.append("--fold-bn")
    elif hasattr(args, "fold_bn"):
        args.fold_bn = False
    args.model_flags = given
    args.batch_size_given = "--batch-size" in given


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _fill_model_defaults(args)
    try:
        signals.install()
        return args.func(args)
    except KeyboardInterrupt:
        print("poet: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:   # `poet zoo | head`: the reader left; say nothing more
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0
    except (ValueError, FileNotFoundError, PermissionError, IsADirectoryError, OSError) as e:
        if args.debug:
            traceback.print_exception(e.__cause__ or e, file=sys.stderr)
        msg = " ".join(str(e).split())
        print(f"poet {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
