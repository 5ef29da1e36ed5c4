"""A Belady pager: compute every node once, in id order, and page only what must leave RAM.

When a compute (or a page-in of one of its operands) would exceed the RAM budget, the resident
tensor whose next use lies farthest in the future leaves RAM: it is written to flash first unless
a copy is already there, then freed. It is paged back in right before the compute that next
reads it. Operands of the current compute never leave. Tensors are freed right after their last
use (and, when a flash budget is set, dropped from flash then too; a tensor whose page-out would
overflow the flash budget is passed over for the next candidate). No recomputation.
"""

from __future__ import annotations

from ..errors import InfeasibleError
from ..problem import Problem
from ..schedule import Schedule
from ._common import Planner


def greedy_paging(problem: Problem, *, deadline: float | None = None) -> Schedule:
    """The Belady paging schedule for problem.ram_budget_bytes (None = unlimited: no paging).

    Raises InfeasibleError when the operands, output and workspace of one compute do not fit
    together, or when flash has no room for what must leave RAM.
    deadline (a time.perf_counter() value): raises solver.errors.DeadlineReached once it passes.
    """
    m = Planner(problem, deadline=deadline)
    succs = problem.succs

    def next_use(x: int) -> int:
        return min((c for c in succs[x] if not m.done[c]), default=problem.T)

    def reserve(nbytes: int, exclude: frozenset[int], what: str) -> None:
        while m.ram_room() < nbytes:
            candidates = sorted((x for x in m.resident() if x not in exclude and m.out[x] > 0),
                                key=lambda x: (-next_use(x), -m.out[x], x))
            for x in candidates:
                if m.on_flash[x]:
                    m.apply("free", x)
                    break
                if m.flash_room() >= m.out[x]:
                    m.apply("page_out", x)
                    m.apply("free", x)
                    break
            else:
                raise InfeasibleError(
                    f"greedy_paging cannot make room for {what} ({nbytes} more bytes; static "
                    f"{problem.static_bytes} + resident {m.ram - problem.static_bytes} bytes, "
                    f"RAM budget {problem.ram_budget_bytes}, flash in use {m.flash} of "
                    f"{problem.flash_budget_bytes}): nothing else can leave RAM")

    for i in range(problem.T):
        operands = problem.preds[i]
        pin = frozenset(operands) | {i}
        for p in operands:
            if not m.in_ram[p]:
                reserve(m.out[p], pin, f"page_in {p}")
                m.apply("page_in", p)
        reserve(m.compute_need(i), pin, f"compute {i}")
        m.apply("compute", i)
        m.free_unneeded()
    return m.schedule("greedy_paging")
