"""The simulator: the single definition of what a schedule means and what it costs.

Rules (docs/formats.md, "What a schedule means"):

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

`Machine` is the walker: the state after each instruction (what is in RAM and on flash, the RAM
and flash in use, the energy and time so far), with `apply(op, node)` enforcing the rules.
`simulate` is a loop over it; the baselines, the staged plans, the plots and the executor walk
schedules with it too, so there is one reading of the rules.
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
        return _predicted(self.energy_j, self.time_s, self.peak_ram_bytes, self.peak_flash_bytes)


def _predicted(energy_j: float, time_s: float, peak_ram: int, peak_flash: int) -> dict:
    """The "predicted" object of a schedule file (docs/formats.md)."""
    return {"energy_j": energy_j, "time_s": time_s, "peak_ram_bytes": peak_ram,
            "peak_flash_bytes": peak_flash}


class Machine:
    """The state of one training step while a schedule runs, instruction by instruction.

    After each `apply`: ``in_ram[i]`` / ``on_flash[i]`` (where node i's output is),
    ``computed[i]`` (how often i has been computed), ``ram`` / ``flash`` (bytes in use, static
    bytes included in ``ram``), ``during`` (RAM in use at the peak instant of the last
    instruction), ``step`` (instructions applied), ``energy_j`` / ``time_s`` and their ``split``
    by kind, the peaks, the paging counts, and the traces (``ram_trace[k]``: RAM in use during
    instruction k; ``ram_after[k]`` / ``flash_trace[k]``: RAM / flash in use after it). With
    check_budgets=False a breached budget is recorded in ``over_budget`` instead of raised;
    every other rule always raises.
    """

    def __init__(self, problem: Problem, *, check_budgets: bool = True):
        T = problem.T
        self.problem = problem
        self.check_budgets = check_budgets
        self.in_ram = [False] * T
        self.on_flash = [False] * T
        self.computed = [0] * T
        self.ram = problem.static_bytes
        self.flash = 0
        self.during = self.ram
        self.step = 0
        self.peak_ram, self.peak_index, self.peak_flash = self.ram, -1, 0
        self.energy_j = 0.0
        self.time_s = 0.0
        self.split = {"compute_j": 0.0, "pagein_j": 0.0, "pageout_j": 0.0,
                      "compute_s": 0.0, "pagein_s": 0.0, "pageout_s": 0.0}
        self.n_page_in = self.n_page_out = self.bytes_paged_in = self.bytes_paged_out = 0
        self.over_budget: list[str] = []
        self.ram_trace: list[int] = []
        self.ram_after: list[int] = []
        self.flash_trace: list[int] = []

    # ---- queries -------------------------------------------------------------------------
    def resident(self) -> list[int]:
        """Ids of the nodes whose output is in RAM, in id order."""
        return [i for i, r in enumerate(self.in_ram) if r]

    def flashed(self) -> list[int]:
        """Ids of the nodes whose output is on flash, in id order."""
        return [i for i, f in enumerate(self.on_flash) if f]

    def compute_need(self, i: int) -> int:
        """Bytes a compute of i adds at its peak instant: its output and its workspace."""
        n = self.problem.nodes[i]
        return n.out_bytes + n.workspace_bytes

    def check(self, op: str, i: int) -> str | None:
        """The rule `op i` would break in the current state, or None (budgets not included)."""
        p = self.problem
        if not 0 <= i < p.T:
            return f"node {i} does not exist (ids are 0..{p.T - 1})"
        if op == "compute":
            missing = [q for q in p.preds[i] if not self.in_ram[q]]
            if missing:
                return (f"operands not in RAM: {missing} "
                        f"(every predecessor must be resident to compute)")
            if self.in_ram[i]:
                return "output already in RAM (free it before recomputing)"
        elif op == "page_out":
            if not self.in_ram[i]:
                return "page_out needs the tensor in RAM"
            if self.on_flash[i]:
                return "already on flash (page_out twice without drop_flash)"
        elif op == "page_in":
            if not self.on_flash[i]:
                return "page_in needs the tensor on flash (page it out first)"
            if self.in_ram[i]:
                return "page_in of a tensor already in RAM"
        elif op == "free":
            if not self.in_ram[i]:
                return "free of a tensor that is not in RAM"
        elif op == "drop_flash":
            if not self.on_flash[i]:
                return "drop_flash of a tensor that is not on flash"
        else:
            return f"op {op!r} is not an instruction"
        return None

    def error(self, op: str, i: int, rule: str) -> ScheduleError:
        """A ScheduleError for the instruction about to be applied, naming index, node and rule."""
        p = self.problem
        name = p.nodes[i].name if 0 <= i < p.T else "?"
        return ScheduleError(f"instruction {self.step} ({op} {i}, node {name!r}): {rule}")

    # ---- the step ------------------------------------------------------------------------
    def apply(self, op: str, i: int) -> int:
        """Run one instruction; return the RAM in use at its peak instant.

        Raises ScheduleError naming the instruction index, the node and the rule broken (a
        breached budget too, unless check_budgets is False)."""
        rule = self.check(op, i)
        if rule is not None:
            raise self.error(op, i, rule)
        n = self.problem.nodes[i]
        during = self.ram
        if op == "compute":
            during = self.ram + n.out_bytes + n.workspace_bytes
            self.ram += n.out_bytes
            self.in_ram[i] = True
            self.computed[i] += 1
            self._spend("compute", n.compute_s, n.compute_j)
        elif op == "page_out":
            self.on_flash[i] = True
            self.flash += n.out_bytes
            self.n_page_out += 1
            self.bytes_paged_out += n.out_bytes
            self._spend("pageout", n.pageout_s, n.pageout_j)
        elif op == "page_in":
            self.ram += n.out_bytes
            during = self.ram
            self.in_ram[i] = True
            self.n_page_in += 1
            self.bytes_paged_in += n.out_bytes
            self._spend("pagein", n.pagein_s, n.pagein_j)
        elif op == "free":
            self.in_ram[i] = False
            self.ram -= n.out_bytes
        else:  # drop_flash
            self.on_flash[i] = False
            self.flash -= n.out_bytes
        self._check_budgets(op, i, during)
        if during > self.peak_ram:
            self.peak_ram, self.peak_index = during, self.step
        self.peak_flash = max(self.peak_flash, self.flash)
        self.during = during
        self.step += 1
        self.ram_trace.append(during)
        self.ram_after.append(self.ram)
        self.flash_trace.append(self.flash)
        return during

    def _spend(self, kind: str, seconds: float, joules: float) -> None:
        self.energy_j += joules
        self.time_s += seconds
        self.split[f"{kind}_j"] += joules
        self.split[f"{kind}_s"] += seconds

    def _check_budgets(self, op: str, i: int, during: int) -> None:
        k = self.step
        ram_budget = self.problem.ram_budget_bytes
        flash_budget = self.problem.flash_budget_bytes
        if ram_budget is not None and during > ram_budget:
            msg = f"RAM budget exceeded: {during} bytes in use > budget {ram_budget}"
            if self.check_budgets:
                raise self.error(op, i, msg)
            if not self.over_budget or not self.over_budget[-1].startswith("RAM"):
                self.over_budget.append(f"RAM at instruction {k}: {msg}")
        if flash_budget is not None and self.flash > flash_budget:
            msg = f"flash budget exceeded: {self.flash} bytes on flash > budget {flash_budget}"
            if self.check_budgets:
                raise self.error(op, i, msg)
            self.over_budget.append(f"flash at instruction {k}: {msg}")

    def finish(self) -> None:
        """Check the end of the step: every node computed, the runtime budget kept."""
        p = self.problem
        never = [i for i in range(p.T) if self.computed[i] == 0]
        if never:
            names = ", ".join(f"{i} ({p.nodes[i].name!r})" for i in never[:5])
            more = f" and {len(never) - 5} more" if len(never) > 5 else ""
            raise ScheduleError(f"end of schedule (after {self.step} instructions): "
                                f"the step is incomplete, never computed: {names}{more}")
        if p.runtime_budget_s is not None and self.time_s > p.runtime_budget_s * (1 + 1e-9):
            msg = (f"runtime budget exceeded: {self.time_s:.6g} s > budget "
                   f"{p.runtime_budget_s:.6g} s")
            if self.check_budgets:
                raise ScheduleError(f"end of schedule: {msg}")
            self.over_budget.append(msg)

    # ---- results -----------------------------------------------------------------------------
    def predicted(self) -> dict:
        """The totals so far as a schedule file's "predicted" object."""
        return _predicted(self.energy_j, self.time_s, self.peak_ram, self.peak_flash)

    def report(self) -> SimReport:
        """The SimReport of the instructions applied so far (call `finish` first to check the
        step is complete)."""
        n_compute = sum(self.computed)
        return SimReport(
            energy_j=self.energy_j, time_s=self.time_s, peak_ram_bytes=self.peak_ram,
            peak_flash_bytes=self.peak_flash, peak_index=self.peak_index,
            ram_trace=list(self.ram_trace), ram_after=list(self.ram_after),
            flash_trace=list(self.flash_trace), split=dict(self.split), n_compute=n_compute,
            n_recompute=n_compute - self.problem.T, n_page_in=self.n_page_in,
            n_page_out=self.n_page_out, bytes_paged_out=self.bytes_paged_out,
            bytes_paged_in=self.bytes_paged_in, over_budget=list(self.over_budget))


def check_fingerprint(problem: Problem, schedule: Schedule) -> None:
    """ScheduleError unless the schedule carries no fingerprint or the problem's."""
    fp = schedule.problem_fingerprint
    if fp is not None and fp != problem.fingerprint:
        raise ScheduleError(
            f"the schedule was made for another problem (fingerprint "
            f"{fp[:19]}..., this problem is {problem.fingerprint[:19]}...)")


def simulate(problem: Problem, schedule: Schedule, *, check_budgets: bool = True) -> SimReport:
    """Replay `schedule` on `problem` symbolically.

    Raises ScheduleError naming the instruction index, the node and the rule broken. With
    check_budgets=False the budgets are not enforced (the report's `over_budget` lists which
    would have been exceeded); every other rule still is.
    """
    check_fingerprint(problem, schedule)
    m = Machine(problem, check_budgets=check_budgets)
    for op, i in schedule.instructions:
        m.apply(op, i)
    m.finish()
    return m.report()


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
