"""The true optimum over every valid instruction sequence, for small problems (T <= ~8).

`optimal_unrestricted` searches the graph whose states are (set in RAM, set on flash, set computed
at least once) and whose edges are the five instructions under the rules of `solver.simulate`,
weighted by their energy. It is an A* search with the admissible, consistent estimate "energy of
computing every node not yet computed once". With a runtime budget each state keeps the labels
(energy, time) that no other label at that state dominates, and a label whose time plus the
compute time of the nodes still to be computed exceeds the budget is dropped; states are popped
in order of (estimated energy, time), so the first complete schedule popped is the cheapest one
within the budget.

Pruning, each safe (it removes no schedule that is cheaper than every one kept):
- a tensor is dead once every descendant of its node has been computed: nothing can read it any
  more (a recomputation only serves a descendant), so it is freed at once (and dropped from
  flash when there is a flash budget; without one its flash copy is ignored) and never
  recomputed or paged in;
- drop_flash is only considered when there is a flash budget (without one a flash copy costs
  nothing to keep and can only help);
- the search stops at the first complete state popped: instructions after that only add cost.
Everything else (recomputing anything any number of times, paging anything at any point,
freeing in any order) stays in the search space.
"""

from __future__ import annotations

import heapq
import math

from .errors import InfeasibleError
from .problem import Problem
from .schedule import Schedule
from .simulate import min_feasible_ram, simulate


class SearchLimitError(RuntimeError):
    """The search visited more states than max_states allowed (the problem is too large)."""


def optimal_unrestricted(problem: Problem, max_states: int = 2_000_000
                         ) -> tuple[float, Schedule]:
    """(energy_j, schedule) of a least-energy schedule among ALL valid instruction sequences.

    Honours the RAM, flash and runtime budgets of `problem`. The schedule is replayed by
    `solver.simulate` before it is returned and its energy is the simulator's.

    Raises InfeasibleError when no schedule fits the budgets, SearchLimitError when more than
    `max_states` states would have to be expanded.
    """
    if isinstance(max_states, bool) or not isinstance(max_states, int) or max_states < 1:
        raise ValueError(f"max_states must be a whole number >= 1, got {max_states!r}")
    budget, floor = problem.ram_budget_bytes, min_feasible_ram(problem)
    if budget is not None and floor > budget:
        raise InfeasibleError(
            f"no schedule fits: ram_budget_bytes {budget} is below min_feasible_ram {floor} "
            f"(static bytes plus the largest single compute's operands, output and workspace)")
    search = _Search(problem, max_states)
    instructions, energy = search.run()
    sched = Schedule(instructions, problem_fingerprint=problem.fingerprint, strategy="bruteforce",
                     ram_budget_bytes=problem.ram_budget_bytes,
                     extra={"bruteforce": {"states_expanded": search.expanded}})
    rep = simulate(problem, sched)
    if not math.isclose(rep.energy_j, energy, rel_tol=1e-9, abs_tol=1e-15):
        raise RuntimeError(f"bruteforce bug: search energy {energy!r} but the simulator says "
                           f"{rep.energy_j!r}")
    sched.predicted = rep.predicted()
    return rep.energy_j, sched


class _Search:
    """A* over (ram, flash, done) bitmasks; see the module docstring."""

    def __init__(self, problem: Problem, max_states: int):
        self.p = problem
        self.max_states = max_states
        self.expanded = 0
        T = self.T = problem.T
        nodes = problem.nodes
        self.out = [n.out_bytes for n in nodes]
        self.need = [n.out_bytes + n.workspace_bytes for n in nodes]
        self.pred_mask = [sum(1 << q for q in problem.preds[i]) for i in range(T)]
        desc = [0] * T
        for i in reversed(range(T)):
            for c in problem.succs[i]:
                desc[i] |= (1 << c) | desc[c]
        self.desc = desc
        inf = math.inf
        self.ram_cap = inf if problem.ram_budget_bytes is None \
            else problem.ram_budget_bytes - problem.static_bytes
        self.flash_cap = inf if problem.flash_budget_bytes is None else problem.flash_budget_bytes
        self.flash_budget = problem.flash_budget_bytes is not None
        self.time_cap = inf if problem.runtime_budget_s is None \
            else problem.runtime_budget_s * (1 + 1e-9)
        self.timed = problem.runtime_budget_s is not None
        self._bytes: dict[int, int] = {}
        self._rest: dict[int, tuple[float, float]] = {}
        self._dead: dict[int, int] = {}

    # ---- cached functions of a mask ----------------------------------------------------
    def bytes_of(self, mask: int) -> int:
        b = self._bytes.get(mask)
        if b is None:
            b = sum(self.out[i] for i in range(self.T) if mask >> i & 1)
            self._bytes[mask] = b
        return b

    def rest(self, done: int) -> tuple[float, float]:
        """(energy, time) of computing once every node not in `done`: a lower bound on what any
        completion still costs."""
        r = self._rest.get(done)
        if r is None:
            ns = self.p.nodes
            left = [i for i in range(self.T) if not done >> i & 1]
            r = (sum(ns[i].compute_j for i in left), sum(ns[i].compute_s for i in left))
            self._rest[done] = r
        return r

    def dead(self, done: int) -> int:
        """Computed nodes all of whose descendants are computed: nothing reads them again."""
        d = self._dead.get(done)
        if d is None:
            d = 0
            for i in range(self.T):
                if done >> i & 1 and self.desc[i] & ~done == 0:
                    d |= 1 << i
            self._dead[done] = d
        return d

    # ---- the search --------------------------------------------------------------------
    def run(self) -> tuple[list[tuple[str, int]], float]:
        """(instructions, energy) of the first complete state popped: the optimum. Raises
        InfeasibleError when the reachable states hold no complete one, SearchLimitError past
        max_states expansions."""
        full = (1 << self.T) - 1
        # labels: parent index and the instructions leading from the parent's state to this one
        self.parent: list[int] = [-1]
        self.moves: list[tuple[tuple[str, int], ...]] = [()]
        self.best_t: dict[tuple[int, int, int], float] = {}   # closed states -> least time
        self.heap = [(self.rest(0)[0], 0.0, 0, 0.0, 0, 0, 0)]  # f, t, label, g, ram, flash, done
        self.counter = 0
        best_t, heap = self.best_t, self.heap
        while heap:
            _, t, lab, g, ram, flash, done = heapq.heappop(heap)
            key = (ram, flash, done)
            if key in best_t and t >= best_t[key]:
                continue
            best_t[key] = t
            if done == full:
                return self._path(self.parent, self.moves, lab), g
            self.expanded += 1
            if self.expanded > self.max_states:
                raise SearchLimitError(
                    f"bruteforce expanded more than max_states={self.max_states} states on a "
                    f"problem with T={self.T}; it is meant for T <= ~8 (raise max_states to "
                    f"insist)")
            self._expand(g, t, lab, ram, flash, done)
        raise InfeasibleError(
            f"no schedule fits the budgets (RAM {self.p.ram_budget_bytes}, flash "
            f"{self.p.flash_budget_bytes}, runtime {self.p.runtime_budget_s}); "
            f"{self.expanded} states explored")

    def _expand(self, g: float, t: float, lab: int, ram: int, flash: int, done: int) -> None:
        """Push every state one instruction away from (ram, flash, done), under the budgets."""
        out, need, pred_mask, push = self.out, self.need, self.pred_mask, self._push
        ns = self.p.nodes
        ram_used = self.bytes_of(ram)
        flash_used = self.bytes_of(flash) if self.flash_budget else 0
        dead = self.dead(done)
        for i in range(self.T):
            bit = 1 << i
            if dead & bit:
                continue
            n = ns[i]
            if ram & bit:
                push(g, t, lab, ram & ~bit, flash, done, (("free", i),))
                if not flash & bit and flash_used + out[i] <= self.flash_cap:
                    push(g + n.pageout_j, t + n.pageout_s, lab, ram, flash | bit, done,
                         (("page_out", i),))
            else:
                if pred_mask[i] & ~ram == 0 and ram_used + need[i] <= self.ram_cap:
                    push(g + n.compute_j, t + n.compute_s, lab, ram | bit, flash, done | bit,
                         (("compute", i),))
                if flash & bit and ram_used + out[i] <= self.ram_cap:
                    push(g + n.pagein_j, t + n.pagein_s, lab, ram | bit, flash, done,
                         (("page_in", i),))
            if self.flash_budget and flash & bit:
                push(g, t, lab, ram, flash & ~bit, done, (("drop_flash", i),))

    def _push(self, g: float, t: float, lab: int, ram: int, flash: int, done: int,
              ins: tuple[tuple[str, int], ...]) -> None:
        """Queue the state reached from label `lab` by `ins` at energy g and time t, after
        freeing (and, with a flash budget, dropping) what is dead; skip it if it cannot meet
        the runtime budget or a label at least as fast has closed it."""
        T = self.T
        # a node whose descendants are all computed is dead: free (and drop) it now
        dead = self.dead(done)
        if ram & dead:
            gone = ram & dead
            ins = ins + tuple(("free", i) for i in range(T) if gone >> i & 1)
            ram &= ~dead
        if flash & dead:
            if self.flash_budget:
                gone = flash & dead
                ins = ins + tuple(("drop_flash", i) for i in range(T) if gone >> i & 1)
            flash &= ~dead
        key = (ram, flash, done)
        if not self.timed:
            t = 0.0
        elif t + self.rest(done)[1] > self.time_cap:
            return
        if key in self.best_t and t >= self.best_t[key]:
            return
        self.counter += 1
        self.parent.append(lab)
        self.moves.append(ins)
        heapq.heappush(self.heap, (g + self.rest(done)[0], t, self.counter, g, ram, flash, done))

    @staticmethod
    def _path(parent: list[int], moves: list[tuple], lab: int) -> list[tuple[str, int]]:
        chunks = []
        while lab >= 0:
            chunks.append(moves[lab])
            lab = parent[lab]
        return [ins for chunk in reversed(chunks) for ins in chunk]
