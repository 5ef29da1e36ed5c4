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
    "profiles": ["poet profiles", "poet profiles --json"],
    "simulate": ["poet simulate problem.json schedule.json",
                 "poet simulate problem.json schedule.json --json"],
}


def _table(rows: list[list[str]], header: list[str]) -> str:
    """A plain, aligned text table (numbers right-aligned)."""
    cols = list(zip(header, *rows)) if rows else [(h,) for h in header]
    widths = [max(len(str(c)) for c in col) for col in cols]

    def fmt(row):
        cells = []
        for c, w in zip(row, widths):
            c = str(c)
            numeric = c.replace(".", "", 1).replace(",", "").replace("-", "", 1).split(" ")[0].isdigit()
            cells.append(c.rjust(w) if numeric else c.ljust(w))
        return "  ".join(cells).rstrip()

    lines = [fmt(header), "  ".join("-" * w for w in widths)]
    lines += [fmt(r) for r in rows]
    return "\n".join(lines)


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
    print(_table(rows, ["", ""]).split("\n", 2)[2])
    return 0


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
