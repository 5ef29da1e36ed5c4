"""The simulator: the single definition of what a schedule means and what it costs.

Rules (DESIGN.md, "Semantics of a schedule"):

- ``compute i``: every predecessor of i is in RAM and i is not; i's output (out_bytes) is
  allocated, and while it runs the node also holds workspace_bytes of temporaries, freed at its
  end. Costs compute_s, compute_j.
- ``page_out i``: i is in RAM and not on flash; afterwards it is on flash too (RAM unchanged).
  Costs pageout_s, pageout_j.
- ``page_in i``: i is on flash and not in RAM; allocates out_bytes in RAM. Costs pagein_s, pagein_j.
- ``free i``: i is in RAM; it leaves RAM. ``drop_flash i``: i is on flash; it leaves flash.
- RAM in use = static_bytes + bytes of every resident tensor; during a compute the output and the
  workspace count together with the operands. The peak over all instants must not exceed the RAM
  budget; flash in use likewise against the flash budget; the summed time must not exceed the
  runtime budget.
- The step is complete when every node has been computed at least once.

Energy and time are plain sums over the instructions, in instruction order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import InfeasibleError, ScheduleError
from .problem import Problem
from .schedule import Schedule


@dataclass
class SimReport:
    """What a schedule costs and how much memory it holds.

    ram_trace[k] is the RAM in use during instruction k (its peak instant: for a compute the
    operands, output and workspace together); ram_after[k] is the RAM held once it has finished.
    flash_trace[k] is the flash in use after instruction k.
    """

    energy_j: float
    time_s: float
    peak_ram_bytes: int
    peak_flash_bytes: int
    peak_index: int
    ram_trace: list[int]
    ram_after: list[int]
    flash_trace: list[int]
    split: dict[str, float]
    n_compute: int
    n_recompute: int
    n_page_in: int
    n_page_out: int
    bytes_paged_out: int
    bytes_paged_in: int
    over_budget: list[str] = field(default_factory=list)

    def predicted(self) -> dict:
        """The totals a Schedule file records under "predicted"."""
        return {"energy_j": self.energy_j, "time_s": self.time_s,
                "peak_ram_bytes": self.peak_ram_bytes, "peak_flash_bytes": self.peak_flash_bytes}


def _fail(k: int, op: str, node: int, problem: Problem, rule: str) -> ScheduleError:
    name = problem.nodes[node].name if 0 <= node < problem.T else "?"
    return ScheduleError(f"instruction {k} ({op} {node}, node {name!r}): {rule}")


def simulate(problem: Problem, schedule: Schedule, *, check_budgets: bool = True) -> SimReport:
    """Replay `schedule` on `problem` symbolically.

    Raises ScheduleError naming the instruction index, the node and the rule broken. With
    check_budgets=False the budgets are not enforced (the report's `over_budget` lists which
    would have been exceeded); every other rule still is.
    """
    if (schedule.problem_fingerprint is not None
            and schedule.problem_fingerprint != problem.fingerprint):
        raise ScheduleError(
            f"the schedule was made for another problem (fingerprint "
            f"{schedule.problem_fingerprint[:19]}..., this problem is {problem.fingerprint[:19]}...)")
    T = problem.T
    nodes = problem.nodes
    preds = problem.preds
    in_ram = [False] * T
    on_flash = [False] * T
    computed = [0] * T
    ram = problem.static_bytes
    flash = 0
    peak_ram, peak_index, peak_flash = ram, -1, 0
    ram_trace: list[int] = []
    ram_after: list[int] = []
    flash_trace: list[int] = []
    split = {"compute_j": 0.0, "pagein_j": 0.0, "pageout_j": 0.0,
             "compute_s": 0.0, "pagein_s": 0.0, "pageout_s": 0.0}
    energy = 0.0
    time = 0.0
    n_in = n_out = bytes_out = bytes_in = 0
    ram_budget = problem.ram_budget_bytes
    flash_budget = problem.flash_budget_bytes
    over: list[str] = []

    for k, (op, i) in enumerate(schedule.instructions):
        if not 0 <= i < T:
            raise _fail(k, op, i, problem, f"node {i} does not exist (ids are 0..{T - 1})")
        n = nodes[i]
        during = ram
        if op == "compute":
            missing = [p for p in preds[i] if not in_ram[p]]
            if missing:
                raise _fail(k, op, i, problem, f"operands not in RAM: {missing} "
                            f"(every predecessor must be resident to compute)")
            if in_ram[i]:
                raise _fail(k, op, i, problem, "output already in RAM (free it before recomputing)")
            during = ram + n.out_bytes + n.workspace_bytes
            ram += n.out_bytes
            in_ram[i] = True
            computed[i] += 1
            energy += n.compute_j
            time += n.compute_s
            split["compute_j"] += n.compute_j
            split["compute_s"] += n.compute_s
        elif op == "page_out":
            if not in_ram[i]:
                raise _fail(k, op, i, problem, "page_out needs the tensor in RAM")
            if on_flash[i]:
                raise _fail(k, op, i, problem, "already on flash (page_out twice without drop_flash)")
            on_flash[i] = True
            flash += n.out_bytes
            n_out += 1
            bytes_out += n.out_bytes
            energy += n.pageout_j
            time += n.pageout_s
            split["pageout_j"] += n.pageout_j
            split["pageout_s"] += n.pageout_s
        elif op == "page_in":
            if not on_flash[i]:
                raise _fail(k, op, i, problem, "page_in needs the tensor on flash (page it out first)")
            if in_ram[i]:
                raise _fail(k, op, i, problem, "page_in of a tensor already in RAM")
            ram += n.out_bytes
            during = ram
            in_ram[i] = True
            n_in += 1
            bytes_in += n.out_bytes
            energy += n.pagein_j
            time += n.pagein_s
            split["pagein_j"] += n.pagein_j
            split["pagein_s"] += n.pagein_s
        elif op == "free":
            if not in_ram[i]:
                raise _fail(k, op, i, problem, "free of a tensor that is not in RAM")
            in_ram[i] = False
            ram -= n.out_bytes
        else:  # drop_flash
            if not on_flash[i]:
                raise _fail(k, op, i, problem, "drop_flash of a tensor that is not on flash")
            on_flash[i] = False
            flash -= n.out_bytes
        if ram_budget is not None and during > ram_budget:
            msg = f"RAM budget exceeded: {during} bytes in use > budget {ram_budget}"
            if check_budgets:
                raise _fail(k, op, i, problem, msg)
            if not over or not over[-1].startswith("RAM"):
                over.append(f"RAM at instruction {k}: {msg}")
        if flash_budget is not None and flash > flash_budget:
            msg = f"flash budget exceeded: {flash} bytes on flash > budget {flash_budget}"
            if check_budgets:
                raise _fail(k, op, i, problem, msg)
            over.append(f"flash at instruction {k}: {msg}")
        if during > peak_ram:
            peak_ram, peak_index = during, k
        peak_flash = max(peak_flash, flash)
        ram_trace.append(during)
        ram_after.append(ram)
        flash_trace.append(flash)

    never = [i for i in range(T) if computed[i] == 0]
    if never:
        names = ", ".join(f"{i} ({nodes[i].name!r})" for i in never[:5])
        more = f" and {len(never) - 5} more" if len(never) > 5 else ""
        raise ScheduleError(f"end of schedule (after {len(schedule.instructions)} instructions): "
                            f"the step is incomplete, never computed: {names}{more}")
    if problem.runtime_budget_s is not None and time > problem.runtime_budget_s * (1 + 1e-9):
        msg = f"runtime budget exceeded: {time:.6g} s > budget {problem.runtime_budget_s:.6g} s"
        if check_budgets:
            raise ScheduleError(f"end of schedule: {msg}")
        over.append(msg)
    n_compute = sum(computed)
    return SimReport(
        energy_j=energy, time_s=time, peak_ram_bytes=peak_ram, peak_flash_bytes=peak_flash,
        peak_index=peak_index, ram_trace=ram_trace, ram_after=ram_after, flash_trace=flash_trace,
        split=split, n_compute=n_compute, n_recompute=n_compute - T, n_page_in=n_in,
        n_page_out=n_out, bytes_paged_out=bytes_out, bytes_paged_in=bytes_in, over_budget=over)


def store_all_instructions(problem: Problem) -> list[tuple[str, int]]:
    """Compute every node once in id order; free each tensor right after its last consumer
    (a node nobody reads, such as a gradient copied to its buffer, right after it is computed)."""
    last_use = list(range(problem.T))
    for i, j in problem.edges:
        last_use[i] = max(last_use[i], j)
    frees_after: list[list[int]] = [[] for _ in range(problem.T)]
    for i, t in enumerate(last_use):
        frees_after[t].append(i)
    out: list[tuple[str, int]] = []
    for t in range(problem.T):
        out.append(("compute", t))
        out.extend(("free", i) for i in sorted(frees_after[t]))
    return out


def store_all(problem: Problem, *, check_budget: bool = True) -> Schedule:
    """The store-all schedule: no recomputation, no paging.

    Raises InfeasibleError when its peak exceeds the problem's RAM budget (unless
    check_budget=False), stating the peak so the user knows what budget it needs.
    """
    sched = Schedule(store_all_instructions(problem), problem_fingerprint=problem.fingerprint,
                     strategy="store_all", ram_budget_bytes=problem.ram_budget_bytes)
    rep = simulate(problem, sched, check_budgets=False)
    if check_budget and rep.over_budget:
        raise InfeasibleError(
            f"store_all needs {rep.peak_ram_bytes} bytes of RAM (peak) but the budget is "
            f"{problem.ram_budget_bytes}: {rep.over_budget[0]}")
    sched.predicted = rep.predicted()
    return sched


def store_all_peak(problem: Problem) -> int:
    """Peak RAM of the store-all schedule: above this budget no remat or paging is ever needed."""
    return simulate(problem, store_all(problem, check_budget=False),
                    check_budgets=False).peak_ram_bytes


def min_feasible_ram(problem: Problem) -> int:
    """A lower bound on any schedule's peak: static bytes plus the largest working set of a
    single compute (its operands, its output and its workspace). Every schedule needs at least
    this much; whether a strategy reaches it depends on the strategy (paging reaches it when
    flash is unlimited)."""
    best = 0
    for n in problem.nodes:
        ws = sum(problem.nodes[p].out_bytes for p in problem.preds[n.id]) + n.out_bytes \
            + n.workspace_bytes
        best = max(best, ws)
    return problem.static_bytes + best
