"""What the heuristic baselines share: a RAM/flash book-keeper that writes instructions, and the
final check that turns an instruction list into a verified `Schedule`.

The book-keeper (`Machine`) applies the rules of `solver.simulate` as it goes, so a baseline can
ask what fits before it acts; the simulator then replays the finished list independently.
"""

from __future__ import annotations

from ..errors import InfeasibleError
from ..problem import Problem
from ..schedule import Schedule
from ..simulate import simulate


class Machine:
    """The state of RAM and flash while a baseline builds its instruction list.

    `done[i]` says whether node i has been computed at least once; `last_use[i]` is the clock
    value of the last instruction that read or wrote i (the staleness DTR's score needs).
    """

    def __init__(self, problem: Problem):
        self.problem = problem
        T = problem.T
        self.out = [n.out_bytes for n in problem.nodes]
        self.in_ram = [False] * T
        self.on_flash = [False] * T
        self.done = [False] * T
        self.last_use = [0] * T
        self.ram = problem.static_bytes
        self.flash = 0
        self.clock = 0
        self.instructions: list[tuple[str, int]] = []

    # ---- queries ------------------------------------------------------------------------
    def ram_room(self) -> float:
        """Bytes still free under the RAM budget (infinite without one)."""
        b = self.problem.ram_budget_bytes
        return float("inf") if b is None else b - self.ram

    def flash_room(self) -> float:
        b = self.problem.flash_budget_bytes
        return float("inf") if b is None else b - self.flash

    def compute_need(self, i: int) -> int:
        """Bytes a compute of i adds at its peak instant: its output and its workspace."""
        return self.out[i] + self.problem.nodes[i].workspace_bytes

    def resident(self) -> list[int]:
        return [i for i, r in enumerate(self.in_ram) if r]

    def needed(self) -> list[bool]:
        """needed[x]: some instruction still to come must read x. True when a consumer of x has
        not been computed yet, or when a consumer is out of RAM (and not on flash) and itself
        still needed, so that recomputing it will read x."""
        p = self.problem
        need = [False] * p.T
        for x in reversed(range(p.T)):
            need[x] = any(not self.done[c]
                          or (need[c] and not self.in_ram[c] and not self.on_flash[c])
                          for c in p.succs[x])
        return need

    # ---- instructions -------------------------------------------------------------------
    def _emit(self, op: str, i: int) -> None:
        self.instructions.append((op, i))
        self.clock += 1
        self.last_use[i] = self.clock

    def compute(self, i: int) -> None:
        for q in self.problem.preds[i]:
            assert self.in_ram[q], f"operand {q} of node {i} not in RAM"
            self.last_use[q] = self.clock + 1
        self._emit("compute", i)
        self.in_ram[i] = True
        self.done[i] = True
        self.ram += self.out[i]

    def free(self, i: int) -> None:
        self._emit("free", i)
        self.in_ram[i] = False
        self.ram -= self.out[i]

    def page_out(self, i: int) -> None:
        self._emit("page_out", i)
        self.on_flash[i] = True
        self.flash += self.out[i]

    def page_in(self, i: int) -> None:
        self._emit("page_in", i)
        self.in_ram[i] = True
        self.ram += self.out[i]

    def drop_flash(self, i: int) -> None:
        self._emit("drop_flash", i)
        self.on_flash[i] = False
        self.flash -= self.out[i]

    def free_unneeded(self, keep: set[int] | frozenset[int] = frozenset()) -> None:
        """Free every resident tensor no later instruction reads (except those in `keep`); with a
        flash budget, also drop such tensors from flash."""
        need = self.needed()
        for x in range(self.problem.T):
            if need[x] or x in keep:
                continue
            if self.in_ram[x]:
                self.free(x)
            if self.on_flash[x] and self.problem.flash_budget_bytes is not None:
                self.drop_flash(x)


def finish(problem: Problem, instructions: list[tuple[str, int]], strategy: str,
           extra: dict | None = None) -> Schedule:
    """Wrap `instructions` into a Schedule, replay it with the simulator and fill `predicted`.

    Raises InfeasibleError when the replay exceeds a budget of the problem (RAM, flash or
    runtime), quoting the peak reached; ScheduleError (from the simulator) means a bug in the
    baseline, not a property of the problem.
    """
    sched = Schedule(instructions, problem_fingerprint=problem.fingerprint, strategy=strategy,
                     ram_budget_bytes=problem.ram_budget_bytes, extra=dict(extra or {}))
    rep = simulate(problem, sched, check_budgets=False)
    if rep.over_budget:
        raise InfeasibleError(
            f"{strategy} does not fit the budgets: it reached a RAM peak of {rep.peak_ram_bytes} "
            f"bytes (budget {problem.ram_budget_bytes}), {rep.peak_flash_bytes} bytes of flash "
            f"(budget {problem.flash_budget_bytes}) and {rep.time_s:.6g} s (budget "
            f"{problem.runtime_budget_s}); first breach: {rep.over_budget[0]}")
    sched.predicted = rep.predicted()
    return sched


def materialize(m: Machine, target: int, pinned: frozenset[int], reserve) -> None:
    """Bring `target` into RAM by computing it, first recomputing (recursively, depth first) any
    of its operands that are not resident. Operands made resident for a pending compute are
    pinned: `reserve(nbytes, exclude)` must make room for nbytes more without freeing anything in
    `exclude` (it raises InfeasibleError when it cannot). After each compute, tensors no later
    instruction reads are freed. Iterative, so deep chains are fine.
    """
    preds = m.problem.preds
    stack: list[tuple[int, frozenset[int]]] = [(target, pinned)]
    while stack:
        v, pin = stack[-1]
        if m.in_ram[v]:
            stack.pop()
            continue
        pin_v = pin | frozenset(preds[v]) | {v}
        missing = [p for p in preds[v] if not m.in_ram[p]]
        if missing:
            # operands are pinned by pin_v, so once made resident they stay until v runs
            stack.extend((p, pin_v) for p in reversed(missing))
            continue
        reserve(m.compute_need(v), pin_v)
        m.compute(v)
        stack.pop()
        m.free_unneeded(keep=pin)   # what v's compute read for the last time
