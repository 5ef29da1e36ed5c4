"""The text the `poet` command prints: aligned tables, key: value blocks, and the rows each
command shows. Pure functions from results to strings and lists; nothing here prints."""

from __future__ import annotations

from .units import format_bytes, format_energy, format_time

__all__ = ["table", "kv", "profile_rows", "simulate_rows", "inspect_rows", "solve_rows",
           "solve_json", "verify_rows", "sweep_rows"]


def _is_number(cell: str) -> bool:
    try:
        float(cell.replace(",", "").rstrip("%x"))
        return True
    except ValueError:
        return False


def table(rows: list[list[str]], header: list[str]) -> str:
    """A plain, aligned text table (cells that are numbers right-aligned)."""
    cols = list(zip(header, *rows)) if rows else [(h,) for h in header]
    widths = [max(len(str(c)) for c in col) for col in cols]

    def fmt(row):
        return "  ".join(str(c).rjust(w) if _is_number(str(c)) else str(c).ljust(w)
                         for c, w in zip(row, widths)).rstrip()

    lines = [fmt(header), "  ".join("-" * w for w in widths)]
    lines += [fmt(r) for r in rows]
    return "\n".join(lines)


def kv(rows: list[list[str]]) -> str:
    """Key: value lines, keys padded to one width."""
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


PROFILE_HEADER = ["name", "device", "MFLOP/s", "nJ/FLOP", "RAM", "flash", "read MB/s",
                  "write MB/s"]


def profile_rows(profiles) -> list[list[str]]:
    """One row per device profile, in the columns of PROFILE_HEADER."""
    return [[p.name, p.description, f"{p.flops_per_s / 1e6:.4g}",
             f"{p.joules_per_flop * 1e9:.4g}", format_bytes(p.ram_bytes),
             format_bytes(p.flash_bytes), f"{p.flash_read_bytes_per_s / 1e6:,.2f}",
             f"{p.flash_write_bytes_per_s / 1e6:,.2f}"] for p in profiles]


def simulate_rows(problem, schedule, r) -> list[list[str]]:
    """What `poet simulate` shows of a SimReport `r`."""
    budget = problem.ram_budget_bytes
    return [
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


def inspect_rows(graph, info: dict, kinds: dict) -> list[list[str]]:
    """What `poet inspect` shows of a traced graph and its totals (`info`)."""
    return [
        ["nodes", f"{graph.T} ({kinds['forward']} forward, {kinds['loss']} loss, "
                  f"{kinds['backward']} backward; {graph.num_aten_ops} ATen ops)"],
        ["edges", str(len(graph.edges))],
        ["FLOPs", f"{graph.total_flops:,} counted + {graph.total_extra_flops:,} estimated"],
        ["activation bytes", format_bytes(graph.activation_bytes)],
        ["static bytes", f"{format_bytes(graph.static_bytes)} ("
                         + ", ".join(f"{k} {format_bytes(v)}"
                                     for k, v in graph.static_breakdown.items() if v) + ")"],
        ["store-all peak RAM", format_bytes(info["store_all_peak_bytes"])],
        ["minimum feasible RAM", format_bytes(info["min_feasible_ram_bytes"])],
        ["store-all energy", format_energy(info["store_all_energy_j"])],
        ["store-all time", format_time(info["store_all_time_s"])],
        ["trace time", f"{graph.trace_seconds:.2f} s"],
    ]


def solve_rows(problem, result) -> list[list[str]]:
    """What `poet solve` shows of a SolveResult."""
    r = result.report
    store_all_j = problem.store_all_energy_j
    rows = [["status", result.status]]
    if result.message:
        rows.append(["note", " ".join(str(result.message).split())])
    if r is None:
        return rows
    overhead = r.energy_j / store_all_j - 1 if store_all_j else 0.0
    rows += [
        ["energy", f"{format_energy(r.energy_j)} = compute {format_energy(r.split['compute_j'])}"
                   f" + page-in {format_energy(r.split['pagein_j'])}"
                   f" + page-out {format_energy(r.split['pageout_j'])}"],
        ["vs store-all", f"{format_energy(store_all_j)} ({overhead:+.3%})"],
        ["time", format_time(r.time_s) + (f" (budget {format_time(problem.runtime_budget_s)})"
                                          if problem.runtime_budget_s else "")],
        ["peak RAM", format_bytes(r.peak_ram_bytes) + (
            f" (budget {format_bytes(problem.ram_budget_bytes)})"
            if problem.ram_budget_bytes is not None else "")],
        ["peak flash", format_bytes(r.peak_flash_bytes)],
        ["recomputations", str(r.n_recompute)],
        ["page-outs / page-ins", f"{r.n_page_out} / {r.n_page_in}"],
    ]
    if result.gap is not None:
        rows.append(["gap", f"{result.gap:.2e} of total energy"
                     + (f", {result.gap_overhead:.2%} of the overhead above store-all"
                        if getattr(result, "gap_overhead", None) is not None else "")])
    if result.bound_j is not None:
        rows.append(["lower bound", format_energy(result.bound_j)])
    rows.append(["solve time", f"{result.solve_s:.2f} s ({result.backend}, "
                               f"{result.n_variables} variables, {result.n_constraints} rows)"
                 if result.n_variables else f"{result.solve_s:.2f} s"])
    return rows


def solve_json(problem, result) -> dict:
    """What `poet solve --json` prints of a SolveResult."""
    r = result.report
    d = {"problem": problem.name, "fingerprint": problem.fingerprint, "strategy": result.strategy,
         "status": result.status, "objective_j": result.objective_j, "bound_j": result.bound_j,
         "gap": result.gap, "gap_overhead": getattr(result, "gap_overhead", None),
         "solve_s": result.solve_s, "backend": result.backend,
         "milp_status": result.milp_status, "message": result.message,
         "n_variables": result.n_variables, "n_constraints": result.n_constraints,
         "ram_budget_bytes": problem.ram_budget_bytes,
         "store_all_energy_j": problem.store_all_energy_j}
    if r is not None:
        d.update({"energy_j": r.energy_j, "time_s": r.time_s, "peak_ram_bytes": r.peak_ram_bytes,
                  "peak_flash_bytes": r.peak_flash_bytes, "split": r.split,
                  "recomputes": r.n_recompute, "page_outs": r.n_page_out,
                  "page_ins": r.n_page_in})
    return d


def verify_rows(rep) -> list[list[str]]:
    """What `poet verify` (and `poet demo`) show of a replay report."""
    return [
        ["peak RAM", f"predicted {format_bytes(rep.predicted_peak_bytes)} "
                     f"({rep.predicted_peak_bytes:,} B), measured "
                     f"{format_bytes(rep.measured_peak_bytes)} ({rep.measured_peak_bytes:,} B)"
                     + ("" if rep.trace_equal else
                        f"; traces differ first at instruction {rep.first_trace_mismatch}")],
        ["flash written", f"predicted {rep.predicted_flash_written:,} B, "
                          f"measured {rep.measured_flash_written:,} B"],
        ["flash read", f"predicted {rep.predicted_flash_read:,} B, "
                       f"measured {rep.measured_flash_read:,} B"],
        *([] if getattr(rep, "update", "buffered") == "fused" else
          [["gradients", f"max |diff| {rep.max_abs_grad_diff:.3g} (scale {rep.grad_scale:.3g}, "
                         f"relative {rep.max_rel_grad_diff:.3g})"
                         + ("; bitwise equal to eager" if rep.bitwise else "")]]),
        *([["parameters", f"after the {rep.update} update: max |diff| {rep.max_param_diff:.3g}"
                          + ("; bitwise equal to eager backward() + step()"
                             if rep.params_bitwise else "")],
           ["optimizer state", "bitwise equal to eager" if rep.optimizer_state_bitwise
                               else "differs from eager"]]
          if getattr(rep, "params_compared", False) else []),
        *([["weights in flash", f"{format_bytes(rep.weights_file_bytes)} memory-mapped from a "
                                f"file, outside the RAM counted"]]
          if getattr(rep, "weights_file_bytes", 0) else []),
        ["loss", f"{rep.loss:.6g} (eager {rep.eager_loss:.6g})"],
        ["buffers", f"max |diff| {rep.max_buffer_diff:.3g}"],
        ["instructions", f"{rep.n_instructions} ({rep.n_recompute} recomputes, "
                         f"{rep.n_page_out} page-outs, {rep.n_page_in} page-ins)"],
        ["CPU time", f"executor {rep.executor_seconds:.3f} s, eager {rep.eager_seconds:.3f} s"],
    ]


def sweep_rows(result, strategies) -> tuple[list[list[str]], list[str]]:
    """(rows, header) of `poet sweep`'s table: per RAM budget (no runtime limit), each
    strategy's energy above store-all in per cent ("infeasible" without a schedule), and POET's
    poet_le_all."""
    le = {r["ram_budget_bytes"]: r.get("poet_le_all") for r in result.rows
          if r["runtime_budget_s"] is None and r["strategy"] == "poet"}
    store_all_j = result.rows[0]["store_all_energy_j"] if result.rows else 0.0

    def cell(e):
        if e is None:
            return "infeasible"
        if not store_all_j:
            return format_energy(e)
        return f"{(e / store_all_j - 1) * 100:+.3f}%"

    rows = [[format_bytes(line["ram_budget_bytes"])] + [cell(line.get(s)) for s in strategies]
            + [str(le.get(line["ram_budget_bytes"], ""))] for line in result.energy_table()]
    return rows, ["RAM budget", *strategies, "POET <= all"]
