"""The segment-cover heuristic: a schedule read off the covering problem of `solver.bounds`, made
aware of what each recompute needs.

The covering problem of `bounds.cover_bound` says which gaps (`bounds.Gap`: a node between two
reads) to drop; it does not say where the dropped copy comes back, nor that a recompute needs its
operands. Here a dropped gap's node comes back at the stage that reads it next, by a page-in
where the staged space allows one there and it costs less than a recompute with its page-out,
else by a recompute (a gap allowing neither is kept). A recompute of i in stage u needs each
operand q of i resident there: q is, when u is a stage that reads q or lies in a kept gap of q;
otherwise (q dead by then, or its gap dropped) q is recomputed (or paged in) in stage u too,
with a column y[u,q] of its own and the same rule for its operands in turn:

    min  sum_g cost_g x_g + sum_(u,q) cost_q y[u,q]
    s.t. sum_{g spans t} b_g (1 - x_g) <= B - b_t - w_t - sum_{operands i of t} b_i   (every t)
         y[u,q] >= r                       (q dead at u; r: the recompute that reads q)
         y[u,q] >= r + x_s - 1             (s: q's gap that spans u)

with x, y binary. Every solution is a staged plan (`plans.StagedPlan`: the recomputes and
page-ins, stage by stage) whose energy is the objective plus the page-outs; the rows look only at
each stage's own compute, so the plan's minimal-residency schedule is simulated, and where it
runs over the RAM budget the rows of those stages are tightened by the excess and the problem
solved again (at most MAX_ROUNDS times). On op-level MobileNetV2 with three times its
bottlenecks (T = 1,318, nRF52840, 50% of the budget range) it gave +0.634% over store-all in
about 15 s where DTR gives +0.766%, within 6.5e-4 of the segment-cover bound (one run, an
experiment with the same model).
"""

from __future__ import annotations

import logging
import time

import pulp

from . import backends
from .bounds import add_cover_rows, check_deadline, gaps_of
from .errors import DeadlineReached, ScheduleError
from .plans import PlanError, StagedPlan, plan_to_schedule
from .problem import Problem
from .reductions import objective_scale
from .schedule import Schedule
from .simulate import Machine, SimReport, simulate
from .staged import StagedSpace, staged_space
from .strategies import get_strategy

log = logging.getLogger(__name__)

MAX_ROUNDS = 3


def cover_plan(problem: Problem, strategy: str = "poet", backend: str = "auto",
               time_limit_s: float = 10, threads: int | None = None,
               space: StagedSpace | None = None) -> tuple[Schedule, SimReport] | None:
    """The segment-cover heuristic's schedule and its report when it fits every budget, else
    None (no RAM budget, nothing to drop, no solution in the time, or still over the budget
    after MAX_ROUNDS). time_limit_s bounds all of its covering MILPs together."""
    if problem.ram_budget_bytes is None:
        return None
    spec = get_strategy(strategy)
    t_end = time.perf_counter() + time_limit_s
    extra: dict[int, int] = {}
    try:
        if space is None:
            space = staged_space(problem, remat=spec.remat, paging=spec.paging, deadline=t_end)
        for _ in range(MAX_ROUNDS):
            got = _round(problem, space, extra, backend, t_end, threads)
            if got is None or isinstance(got, tuple):
                return got
    except DeadlineReached as e:
        log.info("cover plan: %s", e)
    return None


def _round(problem: Problem, space: StagedSpace, extra: dict[int, int], backend: str,
           t_end: float, threads: int | None) -> tuple[Schedule, SimReport] | bool | None:
    """One round: the schedule if it fits, True if it ran over the RAM budget (`extra` then
    tightened), None if there is none to be had."""
    if t_end - time.perf_counter() <= 0.05:
        return None
    plan = _solve(problem, space, extra, backend, t_end, threads)
    if plan is None:
        return None
    try:
        sched = plan_to_schedule(problem, plan, strategy="cover_plan")
        rep = simulate(problem, sched, check_budgets=False)
    except (PlanError, ScheduleError) as e:      # a rule the model's reading missed
        log.info("cover plan: %s", e)
        return None
    if not rep.over_budget:
        sched.predicted = rep.predicted()
        return sched, rep
    over = _excess_by_stage(problem, sched)
    if not over:
        return None                # over a flash or runtime budget: nothing to tighten
    for t, excess in over.items():
        extra[t] = extra.get(t, 0) + excess
    return True


def _solve(problem: Problem, space: StagedSpace, extra: dict[int, int], backend: str,
           t_end: float, threads: int | None) -> StagedPlan | None:
    """Build and solve the chain-aware covering MILP by t_end (a `time.perf_counter()` value;
    DeadlineReached once it passes while building); its plan, or None without a solution."""
    nodes, preds, succs = problem.nodes, problem.preds, problem.succs
    last_read = [max(succs[q], default=q) for q in range(problem.T)]
    prob = pulp.LpProblem("cover_plan", pulp.LpMinimize)
    objective = []
    gaps = gaps_of(space, t_end)
    how: list[str | None] = []
    x: list[pulp.LpVariable | None] = []
    spanning: dict[tuple[int, int], int] = {}          # (node, stage) -> its gap spanning it
    for k, g in enumerate(gaps):
        check_deadline(t_end, "building the segment-cover heuristic", k, len(gaps), "gaps")
        u, i = g.before, g.node
        n = nodes[i]
        comp, page = space.can_recompute(u, i), space.can_page_in(u, i)
        h = ("page_in" if page and (not comp or n.pagein_j + n.pageout_j < n.compute_j) else
             "compute" if comp else None)
        how.append(h)
        v = None if h is None else prob.add_variable(f"x_{k}", 0, 1, cat=pulp.LpBinary)
        x.append(v)
        if v is not None:
            objective.append((v, nodes[i].compute_j if h == "compute" else nodes[i].pagein_j))
        for t in g.stages:
            spanning[(i, t)] = k
    y: dict[tuple[int, int], pulp.LpVariable] = {}
    work: list[tuple[int, int]] = []
    wants: dict[tuple[int, int], list[int]] = {}    # (stage, recomputed node) -> its y operands

    def need(u: int, i: int, q: int, reader: pulp.LpVariable) -> None:
        """Operand q of i must be resident at i's recompute in stage u when `reader` is 1."""
        if q in preds[u]:
            return                               # u reads q: resident all through stage u
        k = spanning.get((q, u))
        dead = u > last_read[q]
        if not dead and (k is None or x[k] is None):
            return                               # in a gap that is always kept
        if not (space.can_recompute(u, q) or space.can_page_in(u, q)):
            # q cannot be had in stage u: the reader cannot run, or only with q's gap kept
            prob.addConstraint(reader <= 0 if dead else reader + x[k] <= 1)
            return
        if (u, q) not in y:
            comp = space.can_recompute(u, q)
            y[(u, q)] = prob.add_variable(f"y_{u}_{q}", 0, 1, cat=pulp.LpBinary)
            objective.append((y[(u, q)], nodes[q].compute_j if comp else nodes[q].pagein_j))
            if comp:
                work.append((u, q))
        wants.setdefault((u, i), []).append(q)
        prob.addConstraint(y[(u, q)] >= reader if dead else y[(u, q)] >= reader + x[k] - 1)

    for k, g in enumerate(gaps):
        if how[k] == "compute":
            for q in set(preds[g.node]):
                need(g.before, g.node, q, x[k])
    while work:
        check_deadline(t_end, "building the segment-cover heuristic", len(y), None,
                       "operand columns")
        u, q = work.pop()
        for r in set(preds[q]):
            need(u, q, r, y[(u, q)])
    e0 = problem.store_all_energy_j
    scale = objective_scale(problem) / e0 if e0 > 0 else 1.0
    prob.setObjective(pulp.LpAffineExpression([(v, c * scale) for v, c in objective if c > 0]))
    if add_cover_rows(prob, problem, gaps, x, t_end, "building the segment-cover heuristic",
                      extra) is None:
        return None
    check_deadline(t_end, "building the segment-cover heuristic", problem.T, problem.T, "stages")
    res = backends.run(prob, backend, time_limit_s=t_end - time.perf_counter(), threads=threads,
                       gap_rel=1e-4)
    if not res.has_solution:
        return None
    # the plan: the dropped gaps' copies, then the operands their recomputes need, transitively
    # (a y at 1 that no recompute of the plan reads would be a copy nobody reads: left out)
    mats: list[dict[int, str]] = [{} for _ in range(problem.T)]
    paged = set()
    todo = []
    for k, g in enumerate(gaps):
        if x[k] is not None and (x[k].value() or 0) > 0.5:
            mats[g.before][g.node] = how[k]
            todo.append((g.before, g.node))
    while todo:
        u, i = todo.pop()
        for q in wants.get((u, i), ()) if mats[u][i] == "compute" else ():
            if q not in mats[u] and (y[(u, q)].value() or 0) > 0.5:
                mats[u][q] = "compute" if space.can_recompute(u, q) else "page_in"
                todo.append((u, q))
    for u, m in enumerate(mats):
        paged.update(i for i, h in m.items() if h == "page_in")
    stages = tuple(tuple(sorted(m.items())) + ((t, "compute"),) for t, m in enumerate(mats))
    return StagedPlan(stages, frozenset(paged))


def _excess_by_stage(problem: Problem, sched: Schedule) -> dict[int, int]:
    """Bytes over the RAM budget at the worst compute or page-in of each stage (stage t runs
    from just after t-1's first compute to t's) where the schedule runs over it."""
    m = Machine(problem, check_budgets=False)
    seen: set[int] = set()
    out: dict[int, int] = {}
    for op, i in sched.instructions:
        stage = len(seen)            # stage t: after t-1's first compute, up to t's own
        m.apply(op, i)
        if op == "compute":
            seen.add(i)
        excess = m.during - problem.ram_budget_bytes
        if excess > 0 and op in ("compute", "page_in"):      # where RAM grows
            out[stage] = max(out.get(stage, 0), excess)
    return out
