"""What the heuristic baselines share: a `Planner` that writes instructions while it walks them
with the simulator's own `Machine`, and `materialize`, the recursive recompute-on-demand.

A baseline asks the planner what fits (`ram_room`, `flash_room`, `needed`) before it acts, and
every instruction it emits goes through `solver.simulate.Machine.apply`, so the rules are read in
one place: a baseline that breaks one gets the simulator's ScheduleError at the instruction.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ..errors import DeadlineReached, InfeasibleError
from ..problem import Problem
from ..schedule import Schedule
from ..simulate import Machine

# reserve(nbytes, exclude): make room for nbytes more in RAM without freeing anything in exclude
Reserve = Callable[[int, frozenset[int]], None]


class Planner(Machine):
    """A `Machine` that records the instructions applied to it, for a baseline building a schedule.

    Budgets are not enforced while planning (check_budgets=False: a baseline asks `ram_room`
    first, and `schedule` turns a breach into InfeasibleError). On top of the machine's state:
    ``instructions`` (applied so far), ``out[i]`` (node i's output bytes), ``done[i]`` (i has
    been computed at least once), ``clock`` (instructions applied) and ``last_use[i]`` (the clock
    value of the last instruction that read or wrote i: the staleness DTR's score needs).
    With a deadline (a `time.perf_counter()` value), `apply` raises DeadlineReached once it has
    passed.
    """

    def __init__(self, problem: Problem, deadline: float | None = None):
        super().__init__(problem, check_budgets=False)
        self.deadline = deadline
        T = problem.T
        self.out = [n.out_bytes for n in problem.nodes]
        self.done = [False] * T
        self.last_use = [0] * T
        self.clock = 0
        self.instructions: list[tuple[str, int]] = []
        self._in_ram: set[int] = set()        # ids with in_ram[i] (kept by apply)
        self._on_flash: set[int] = set()      # ids with on_flash[i]
        self._dead: set[int] = set()          # computed, and so is every descendant

    # ---- queries ------------------------------------------------------------------------
    def ram_room(self) -> float:
        """Bytes still free under the RAM budget (infinite without one)."""
        b = self.problem.ram_budget_bytes
        return float("inf") if b is None else b - self.ram

    def flash_room(self) -> float:
        """Bytes still free under the flash budget (infinite without one)."""
        b = self.problem.flash_budget_bytes
        return float("inf") if b is None else b - self.flash

    def needed(self) -> list[bool]:
        """needed[x]: some instruction still to come must read x. True when a consumer of x has
        not been computed yet, or when a consumer is out of RAM (and not on flash) and itself
        still needed, so that recomputing it will read x. O(T + edges)."""
        memo: dict[int, bool] = {}
        return [self.is_needed(x, memo) for x in range(self.problem.T)]

    def is_needed(self, x: int, memo: dict[int, bool]) -> bool:
        """needed()[x], exploring only the consumers the answer depends on: a consumer not yet
        computed settles it at once, and only consumers out of RAM and off flash are followed.
        `memo` carries answers between calls made on the same state (pass a new dict after any
        instruction)."""
        got = memo.get(x)
        if got is not None:
            return got
        succs, done, in_ram, on_flash = self.problem.succs, self.done, self.in_ram, self.on_flash
        dead = self._dead
        stack = [x]
        while stack:          # iterative: chains of freed tensors can be thousands long
            v = stack[-1]
            if v in memo:
                stack.pop()
                continue
            if v in dead:
                memo[v] = False
                stack.pop()
                continue
            if not all(done[c] for c in succs[v]):
                memo[v] = True
                stack.pop()
                continue
            if all(c in dead for c in succs[v]):
                # every descendant is computed: nothing will ever read v again (done is
                # permanent), whatever happens to RAM and flash
                dead.add(v)
                memo[v] = False
                stack.pop()
                continue
            gone = [c for c in succs[v] if not in_ram[c] and not on_flash[c] and c not in dead]
            pending = [c for c in gone if c not in memo]
            if pending:
                stack.extend(pending)
                continue
            memo[v] = any(memo[c] for c in gone)
            stack.pop()
        return memo[x]

    # ---- instructions -------------------------------------------------------------------
    def apply(self, op: str, i: int) -> int:
        """Apply and record `op i` (see `Machine.apply`); a compute also marks its operands and
        i as used now, any other instruction i alone."""
        during = super().apply(op, i)
        if op in ("compute", "page_in"):
            self._in_ram.add(i)
        elif op == "free":
            self._in_ram.discard(i)
        elif op == "page_out":
            self._on_flash.add(i)
        elif op == "drop_flash":
            self._on_flash.discard(i)
        self.instructions.append((op, i))
        self.clock += 1
        if self.deadline is not None and time.perf_counter() > self.deadline:
            raise DeadlineReached("running a heuristic", self.clock, None, "instructions")
        if op == "compute":
            self.done[i] = True
            for q in self.problem.preds[i]:
                self.last_use[q] = self.clock
        self.last_use[i] = self.clock
        return during

    def free_unneeded(self, keep: set[int] | frozenset[int] = frozenset()) -> None:
        """Free every resident tensor no later instruction reads (except those in `keep`); with a
        flash budget, also drop such tensors from flash."""
        # only tensors held somewhere can be freed; whether one is needed is decided on the
        # state before any of these frees (a free of an unneeded tensor changes no answer)
        held = set(self._in_ram)
        if self.problem.flash_budget_bytes is not None:
            held |= self._on_flash
        memo: dict[int, bool] = {}
        for x in sorted(held):
            if x in keep or self.is_needed(x, memo):
                continue
            if self.in_ram[x]:
                self.apply("free", x)
            if self.on_flash[x] and self.problem.flash_budget_bytes is not None:
                self.apply("drop_flash", x)

    # ---- the result ---------------------------------------------------------------------
    def schedule(self, strategy: str, extra: dict | None = None) -> Schedule:
        """The recorded instructions as a Schedule with `predicted` filled in from this walk.

        Raises InfeasibleError when the walk exceeded a budget of the problem (RAM, flash or
        runtime), quoting the peak reached; ScheduleError when the step is incomplete (a bug in
        the baseline, not a property of the problem).
        """
        self.finish()
        p = self.problem
        if self.over_budget:
            raise InfeasibleError(
                f"{strategy} does not fit the budgets: it reached a RAM peak of {self.peak_ram} "
                f"bytes (budget {p.ram_budget_bytes}), {self.peak_flash} bytes of flash "
                f"(budget {p.flash_budget_bytes}) and {self.time_s:.6g} s (budget "
                f"{p.runtime_budget_s}); first breach: {self.over_budget[0]}")
        return Schedule(list(self.instructions), problem_fingerprint=p.fingerprint,
                        strategy=strategy, ram_budget_bytes=p.ram_budget_bytes,
                        predicted=self.predicted(), extra=dict(extra or {}))


def materialize(m: Planner, target: int, pinned: frozenset[int], reserve: Reserve) -> None:
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
        m.apply("compute", v)
        stack.pop()
        m.free_unneeded(keep=pin)   # what v's compute read for the last time
