"""sqrt(n) checkpointing (Chen, Xu, Zhang, Guestrin 2016, "Training Deep Nets with Sublinear
Memory Cost"), generalised to DAGs.

The n forward nodes are cut into segments of about sqrt(n) nodes. At a segment boundary after
forward node v the checkpoints are v's frontier: v and the sources of any skip connection that
crosses the boundary, so that the next segment can be recomputed from checkpoints alone.
Boundaries go on articulation points of the forward graph (nodes no forward edge jumps over,
whose frontier is the node itself) where one lies within one to two segment lengths, else on the
node there with the smallest frontier. During the forward pass the outputs of forward nodes
before the last boundary that are not checkpoints are freed as soon as the forward pass no longer
reads them; the last segment is kept, as checkpoint_sequential does. During the backward pass a
needed forward output that is gone is recomputed on demand (recursively, from the checkpoints)
and held while a backward node still to come reads it directly. Other tensors are freed right
after their last use.

The strategy does not adapt to the budget: if its peak exceeds problem.ram_budget_bytes it raises
InfeasibleError stating the peak it reached.
"""

from __future__ import annotations

import math

from ..problem import Problem
from ..schedule import Schedule
from ._common import Planner, materialize


def sqrtn(problem: Problem, *, deadline: float | None = None) -> Schedule:
    """The sqrt(n)-checkpointing schedule. Raises InfeasibleError if it exceeds a budget.
    deadline (a time.perf_counter() value): raises solver.errors.DeadlineReached once it passes.
    """
    checkpoints, discardable = checkpoint_plan(problem)
    m = Planner(problem, deadline=deadline)
    kinds = [n.kind for n in problem.nodes]

    def unlimited(nbytes: int, exclude: frozenset[int]) -> None:
        return None   # sqrt(n) does not evict for room; the budget is checked at the end

    for i in range(problem.T):
        if m.done[i]:
            continue
        materialize(m, i, frozenset(), unlimited)
        # a dropped layer leaves RAM once the forward pass no longer reads it (in the forward
        # pass) or once no node still to be computed reads it (in the backward pass: its
        # recomputation served the present segment, a later one recomputes it again)
        forward_pass = kinds[i] != "backward"
        for x in discardable:
            if m.in_ram[x] and all(m.done[c] for c in problem.succs[x]
                                   if not (forward_pass and kinds[c] == "backward")):
                m.apply("free", x)
    return m.schedule("sqrtn", extra={"checkpoints": sorted(checkpoints)})


def checkpoint_plan(problem: Problem) -> tuple[set[int], list[int]]:
    """(checkpoints, discardable): the tensors kept at the segment boundaries, and the forward
    nodes whose outputs the forward pass frees early (those before the last boundary that are
    not checkpoints).

    A boundary after forward node v keeps v's frontier: v and every earlier non-backward node
    with a non-backward consumer after v (the source of a skip connection over v), so that the
    next segment can be recomputed from the checkpoints alone. Segments hold about
    ceil(sqrt(n)) of the n forward nodes: each boundary is chosen among the next segment-length
    to twice that forward nodes, preferring the fewest frontier tensors (the first articulation
    point, whose frontier is itself, when there is one), then the fewest frontier bytes, then
    the earliest. Fewer than three forward nodes: no checkpoints (nothing worth recomputing)."""
    kinds = [n.kind for n in problem.nodes]
    forward = [i for i, k in enumerate(kinds) if k == "forward"]
    n = len(forward)
    if n < 3:
        return set(), []
    seg = math.ceil(math.sqrt(n))
    frontier = _frontiers(problem)
    size = {v: sum(problem.nodes[u].out_bytes for u in frontier[v]) for v in forward}
    boundaries: list[int] = []
    start = 0
    while start + seg - 1 < n - 1:   # the last forward node is used right away: never a boundary
        window = forward[start + seg - 1:min(start + 2 * seg - 1, n - 1)]
        best = min(window, key=lambda v: _boundary_rank(frontier[v], size[v], v))
        boundaries.append(best)
        start = forward.index(best) + 1
    if not boundaries:
        return set(), []
    checkpoints = set().union(*(frontier[v] for v in boundaries))
    last = boundaries[-1]
    return checkpoints, [v for v in forward if v < last and v not in checkpoints]


def _boundary_rank(frontier: set[int], nbytes: int, v: int) -> tuple[int, int, int]:
    """Sort key of a candidate boundary: fewer tensors, then (if more than one) fewer bytes, then
    earlier, so segments stay near sqrt(n) long on chains."""
    return (len(frontier), nbytes if len(frontier) > 1 else 0, v)


def _frontiers(problem: Problem) -> dict[int, set[int]]:
    """frontier[v] for each forward node v: the non-backward nodes u <= v read by a
    non-backward node after v (v itself whenever anything reads it before the backward)."""
    kinds = [n.kind for n in problem.nodes]
    last_reader = {u: max((w for w in problem.succs[u] if kinds[w] != "backward"), default=-1)
                   for u in range(problem.T) if kinds[u] != "backward"}
    live: set[int] = set()
    out: dict[int, set[int]] = {}
    for v in range(problem.T):
        if kinds[v] == "backward":
            continue
        live.add(v)
        live = {u for u in live if last_reader[u] > v}
        if kinds[v] == "forward":
            out[v] = set(live)
    return out
