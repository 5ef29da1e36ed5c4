"""What a schedule does to each layer, and what is in RAM at its peak (`poet explain`).

    expl = poet.explain.explain(problem, schedule)
    expl.rows            # one ExplainRow per node, in step order (the order of first computes)
    expl.peak_index      # the instruction at which RAM in use is largest (ties: the first)
    expl.resident        # what holds RAM at that instant: static bytes, tensors, workspace
    explain_table(expl)  # the text `poet explain` prints; explain_json(expl) the JSON form

The schedule is replayed by the simulator's own walker (`solver.Machine`), so the counts, the peak
and the energy are the simulator's; budgets are not enforced (an over-budget schedule is explained
too, and `over_budget` says what it breaks), every other rule is, and a broken schedule raises
solver.ScheduleError naming the instruction.

Energy over store-all, per node: (computes - 1) x compute_j + page-outs x pageout_j + page-ins x
pagein_j. Store-all computes every node once and pages nothing, so the sum over the rows is the
schedule's energy minus `problem.store_all_energy_j`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from solver import Machine, Problem, Schedule
from solver.simulate import check_fingerprint

from .cli_tables import kv, table
from .units import format_bytes, format_energy, format_time

__all__ = ["ExplainRow", "Resident", "Explanation", "explain", "explain_rows", "resident_rows",
           "summary_rows", "explain_table", "explain_json", "EXPLAIN_HEADER", "RESIDENT_HEADER",
           "PLACES"]

# where a node's output is at the peak instant
PLACES = ("RAM", "flash", "RAM+flash", "-")


@dataclass(frozen=True)
class ExplainRow:
    """One node: how often the schedule computes and pages it, where it is at the peak, and the
    joules it adds over store-all (`extra_j` = `recompute_j` + `pageout_j` + `pagein_j`)."""

    id: int
    name: str
    kind: str
    out_bytes: int
    computes: int
    page_outs: int
    page_ins: int
    at_peak: str
    recompute_j: float
    pageout_j: float
    pagein_j: float
    extra_j: float

    @property
    def recomputes(self) -> int:
        return self.computes - 1

    @property
    def differs(self) -> bool:
        """True when store-all would treat the node otherwise (recomputed or paged)."""
        return self.computes != 1 or self.page_outs > 0 or self.page_ins > 0


@dataclass(frozen=True)
class Resident:
    """One share of the RAM in use at the peak: "static" (parameters, gradient buffers, optimizer
    state, the batch), a "tensor" (a node output in RAM) or the "workspace" of the node being
    computed. `id` and `name` are the node's (None for static)."""

    what: str
    bytes: int
    id: int | None = None
    name: str | None = None


@dataclass
class Explanation:
    """A schedule explained: per-node rows in step order, the peak instant and what it holds.

    `peak_instruction` is ``(op, node id)`` of instruction `peak_index`; `resident` lists static
    bytes first, then each resident tensor largest first (ties: lower id first), then the
    workspace of a compute, and sums to `peak_ram_bytes`.
    """

    problem_name: str
    strategy: str
    rows: list[ExplainRow]
    peak_index: int
    peak_instruction: tuple[str, int]
    peak_ram_bytes: int
    resident: list[Resident]
    energy_j: float
    store_all_energy_j: float
    time_s: float
    peak_flash_bytes: int
    ram_budget_bytes: int | None
    n_instructions: int
    over_budget: list[str] = field(default_factory=list)

    @property
    def extra_j(self) -> float:
        """Joules above store-all: the sum of the rows' `extra_j`."""
        return sum(r.extra_j for r in self.rows)

    @property
    def recomputes(self) -> int:
        return sum(r.recomputes for r in self.rows)

    @property
    def page_outs(self) -> int:
        return sum(r.page_outs for r in self.rows)

    @property
    def page_ins(self) -> int:
        return sum(r.page_ins for r in self.rows)

    def changed(self) -> list[ExplainRow]:
        """The rows that differ from store-all (recomputed or paged), in step order."""
        return [r for r in self.rows if r.differs]


def _place(in_ram: bool, on_flash: bool) -> str:
    if in_ram and on_flash:
        return "RAM+flash"
    return "RAM" if in_ram else "flash" if on_flash else "-"


def explain(problem: Problem, schedule: Schedule) -> Explanation:
    """Replay `schedule` on `problem` with `solver.Machine` and explain it per node.

    Raises solver.ScheduleError (from the walker) when the schedule breaks a rule, is
    incomplete, or was made for another problem. Budgets are recorded, not enforced.
    """
    if not isinstance(problem, Problem):
        raise ValueError(f"problem must be a solver.Problem, got {type(problem).__name__}")
    if not isinstance(schedule, Schedule):
        raise ValueError(f"schedule must be a solver.Schedule, got {type(schedule).__name__}")
    check_fingerprint(problem, schedule)
    T = problem.T
    m = Machine(problem, check_budgets=False)
    page_outs = [0] * T
    page_ins = [0] * T
    first_compute: list[int | None] = [None] * T
    best = None                   # (RAM during, index, in_ram, on_flash) of the first maximum
    for k, (op, i) in enumerate(schedule.instructions):
        before = (list(m.in_ram), list(m.on_flash)) if op in ("free", "drop_flash") else None
        during = m.apply(op, i)
        if op == "compute" and first_compute[i] is None:
            first_compute[i] = k
        elif op == "page_out":
            page_outs[i] += 1
        elif op == "page_in":
            page_ins[i] += 1
        if best is None or during > best[0]:
            # the state at the instruction's peak instant: a free / drop_flash still holds its
            # tensor while it runs (the simulator counts the RAM before it); the others hold
            # what they leave behind (a compute: its operands and its output)
            in_ram, on_flash = before if before is not None else (list(m.in_ram),
                                                                  list(m.on_flash))
            best = (during, k, in_ram, on_flash)
    m.finish()
    rep = m.report()
    during, k, in_ram, on_flash = best        # finish() guarantees at least one instruction
    op, j = schedule.instructions[k]

    resident = [Resident("static", problem.static_bytes)]
    tensors = sorted((i for i in range(T) if in_ram[i]),
                     key=lambda i: (-problem.nodes[i].out_bytes, i))
    resident += [Resident("tensor", problem.nodes[i].out_bytes, i, problem.nodes[i].name)
                 for i in tensors]
    if op == "compute" and problem.nodes[j].workspace_bytes:
        resident.append(Resident("workspace", problem.nodes[j].workspace_bytes, j,
                                 problem.nodes[j].name))

    rows = []
    for i in sorted(range(T), key=lambda i: first_compute[i]):
        n = problem.nodes[i]
        c = m.computed[i]
        re_j = (c - 1) * n.compute_j
        out_j = page_outs[i] * n.pageout_j
        in_j = page_ins[i] * n.pagein_j
        rows.append(ExplainRow(
            id=i, name=n.name, kind=n.kind, out_bytes=n.out_bytes, computes=c,
            page_outs=page_outs[i], page_ins=page_ins[i], at_peak=_place(in_ram[i], on_flash[i]),
            recompute_j=re_j, pageout_j=out_j, pagein_j=in_j, extra_j=re_j + out_j + in_j))
    budget = (schedule.ram_budget_bytes if schedule.ram_budget_bytes is not None
              else problem.ram_budget_bytes)
    return Explanation(
        problem_name=problem.name, strategy=schedule.strategy, rows=rows, peak_index=k,
        peak_instruction=(op, j), peak_ram_bytes=rep.peak_ram_bytes, resident=resident,
        energy_j=rep.energy_j, store_all_energy_j=problem.store_all_energy_j, time_s=rep.time_s,
        peak_flash_bytes=rep.peak_flash_bytes, ram_budget_bytes=budget,
        n_instructions=len(schedule), over_budget=list(rep.over_budget))


# ---- text and JSON --------------------------------------------------------------------------

EXPLAIN_HEADER = ["id", "name", "kind", "out", "computes", "page-outs", "page-ins", "at peak",
                  "+energy"]
RESIDENT_HEADER = ["in RAM at the peak", "bytes", "share"]


def explain_rows(expl: Explanation, *, only_changed: bool = False) -> list[list[str]]:
    """The per-node table of `poet explain`, in the columns of EXPLAIN_HEADER: every node (a
    user greps it), or with only_changed=True only those recomputed or paged."""
    rows = expl.changed() if only_changed else expl.rows
    return [[str(r.id), r.name, r.kind, format_bytes(r.out_bytes), str(r.computes),
             str(r.page_outs), str(r.page_ins), r.at_peak,
             format_energy(r.extra_j) if r.extra_j else "-"] for r in rows]


def resident_rows(expl: Explanation) -> list[list[str]]:
    """What is in RAM at the peak instant, in the columns of RESIDENT_HEADER."""
    total = expl.peak_ram_bytes or 1
    out = []
    for r in expl.resident:
        label = ("static (parameters, gradient buffers, optimizer state, batch)"
                 if r.what == "static" else
                 f"{r.name} (node {r.id})" if r.what == "tensor" else
                 f"workspace of {r.name} (node {r.id})")
        out.append([label, format_bytes(r.bytes), f"{r.bytes / total:.1%}"])
    return out


def _peak_text(expl: Explanation) -> str:
    op, j = expl.peak_instruction
    name = next(r.name for r in expl.rows if r.id == j)
    return (f"instruction {expl.peak_index} of {expl.n_instructions} ({op} {j}, {name!r}): "
            f"{format_bytes(expl.peak_ram_bytes)} ({expl.peak_ram_bytes:,} B)")


def summary_rows(expl: Explanation) -> list[list[str]]:
    """The totals under the table: energy over store-all, counts, the peak instruction."""
    e0 = expl.store_all_energy_j
    share = f" ({expl.extra_j / e0:+.3%})" if e0 else ""
    rows = [
        ["energy", f"{format_energy(expl.energy_j)} = store-all {format_energy(e0)} + "
                   f"{format_energy(expl.extra_j)}{share}"],
        ["time", format_time(expl.time_s)],
        ["recomputes", str(expl.recomputes)],
        ["page-outs / page-ins", f"{expl.page_outs} / {expl.page_ins}"],
        ["peak RAM", _peak_text(expl) + (f", budget {format_bytes(expl.ram_budget_bytes)}"
                                         if expl.ram_budget_bytes is not None else "")],
        ["peak flash", format_bytes(expl.peak_flash_bytes)],
    ]
    rows += [["over budget", msg] for msg in expl.over_budget]
    return rows


def explain_table(expl: Explanation, *, only_changed: bool = False) -> str:
    """The whole text of `poet explain`: the per-node table (every row, or with only_changed
    the rows that differ from store-all), the totals, and what is resident at the peak."""
    rows = explain_rows(expl, only_changed=only_changed)
    head = f"{expl.problem_name or 'problem'}: {expl.strategy} schedule, {len(expl.rows)} nodes"
    if only_changed:
        head += f" ({len(rows)} differ from store-all; the others are computed once, not paged)"
    parts = [head, table(rows, EXPLAIN_HEADER) if rows else "(every node as in store-all)", "",
             kv(summary_rows(expl)), "", table(resident_rows(expl), RESIDENT_HEADER)]
    return "\n".join(parts)


def explain_json(expl: Explanation, *, only_changed: bool = False) -> dict:
    """The JSON form: plain dicts, lists, numbers and strings (standard JSON, no NaN)."""
    rows = expl.changed() if only_changed else expl.rows
    op, j = expl.peak_instruction
    return {
        "problem": expl.problem_name, "strategy": expl.strategy,
        "rows": [dict(asdict(r), recomputes=r.recomputes) for r in rows],
        "peak": {"index": expl.peak_index, "instruction": [op, j],
                 "ram_bytes": expl.peak_ram_bytes,
                 "resident": [asdict(r) for r in expl.resident]},
        "totals": {"energy_j": expl.energy_j, "store_all_energy_j": expl.store_all_energy_j,
                   "extra_j": expl.extra_j, "time_s": expl.time_s,
                   "recomputes": expl.recomputes, "page_outs": expl.page_outs,
                   "page_ins": expl.page_ins, "peak_ram_bytes": expl.peak_ram_bytes,
                   "peak_flash_bytes": expl.peak_flash_bytes,
                   "ram_budget_bytes": expl.ram_budget_bytes,
                   "instructions": expl.n_instructions},
        "over_budget": list(expl.over_budget),
    }
