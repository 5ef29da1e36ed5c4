"""A greedy in the spirit of Dynamic Tensor Rematerialization (Kirisame et al., ICLR 2021).

Nodes run in id order. When a compute would exceed the RAM budget, the resident tensor with the
lowest score h = cost / (size x staleness) is freed, where cost is the energy of recomputing it
now (its own compute plus that of every ancestor that would have to be recomputed with it,
DTR's "evicted neighbourhood"), size its bytes and staleness the number of instructions since it
was last read or written. Operands of the pending computes are never evicted. A later compute
that needs an evicted tensor recomputes it on demand, recursively. Tensors are freed as soon as
no later instruction reads them. There is no paging.
"""

from __future__ import annotations

from ..errors import InfeasibleError
from ..problem import Problem
from ..schedule import Schedule
from ._common import Planner, materialize


def dtr(problem: Problem, *, deadline: float | None = None) -> Schedule:
    """The DTR-style schedule for problem.ram_budget_bytes (None = unlimited: no eviction).

    Raises InfeasibleError when, at some compute, even evicting every unpinned tensor leaves too
    little room (or when the result breaks the runtime or flash budget).
    deadline (a time.perf_counter() value): raises solver.errors.DeadlineReached once it passes.
    """
    m = Planner(problem, deadline=deadline)

    def reserve(nbytes: int, exclude: frozenset[int]) -> None:
        while m.ram_room() < nbytes:
            candidates = [x for x in m.resident() if x not in exclude and m.out[x] > 0]
            if not candidates:
                pinned = sorted(x for x in m.resident() if x in exclude)
                raise InfeasibleError(
                    f"dtr cannot make room for {nbytes} more bytes (static "
                    f"{problem.static_bytes} + resident {m.ram - problem.static_bytes} bytes, "
                    f"budget {problem.ram_budget_bytes}): everything resident is an operand of a "
                    f"pending compute (nodes {pinned}); raise ram_budget_bytes")
            m.apply("free", min(candidates, key=lambda x: (_score(m, x), -m.out[x], x)))

    for i in range(problem.T):
        if not m.done[i]:
            materialize(m, i, frozenset(), reserve)
    return m.schedule("dtr")


def _score(m: Planner, x: int) -> float:
    """h(x) = recompute energy / (bytes x staleness); lower is evicted first."""
    staleness = m.clock - m.last_use[x] + 1
    return _recompute_cost(m, x) / (m.out[x] * staleness)


def _recompute_cost(m: Planner, x: int) -> float:
    """Energy to recompute x from what is resident now: x plus its non-resident ancestors."""
    nodes, preds = m.problem.nodes, m.problem.preds
    seen = {x}
    stack = [x]
    cost = 0.0
    while stack:
        v = stack.pop()
        cost += nodes[v].compute_j
        for p in preds[v]:
            if p not in seen and not m.in_ram[p]:
                seen.add(p)
                stack.append(p)
    return cost
