"""One solve per candidate order of first computes (`solver.reductions.candidate_orders`): every
order's MILP is built and its LP relaxation solved first, then the neighbourhood and full-MILP
phases run order by order on a share of the time left; the best schedule is mapped back to the
original ids, and the bound is the least of the orders' bounds. `solver.solve` calls it."""

from __future__ import annotations

import dataclasses
import math

from .errors import InfeasibleError
from .problem import Problem
from .reductions import Reorder
from .result import SolveResult, gaps, within_gap
from .schedule import Schedule
from .simulate import SimReport, simulate
from .solve import _after_lp, _Call, _lp_phase, _NoMilp, _prepare_milp, _Search, _without_milp
from .starts import Found, best_start, run_baseline

# ---------------------------------------------------------------------------------------------
# Orders of first computes: one solve per candidate order, the best schedule, the union's bound
# ---------------------------------------------------------------------------------------------
def solve_orders(call: _Call, found: Found, neighbourhood: bool,
                  orders: list[tuple[int, ...]]) -> SolveResult:
    """Solve in every candidate order (`Reorder`): first build each order's MILP and solve its LP
    relaxation (so the union's bound is known early), then run phases 2 and 3 order by order, each
    in an equal share of the time left and started from the best schedule so far. The cheapest
    schedule (inverted to the original ids and simulated on the original problem) comes back with
    the least of the orders' bounds, a bound on the union of their staged spaces (None if one
    order has none)."""
    problem = call.problem
    for k, order in enumerate(orders[1:], 1):   # store-all in another order: nothing is cheaper
        q, _ = Reorder(order).apply(problem)
        sa = run_baseline(q, "store_all")
        if sa is not None:
            sched = Reorder.invert(sa[0], problem, order)
            rep = simulate(problem, sched)
            return call.result("optimal", sched, rep, bound_j=rep.energy_j,
                               source="store_all",
                               baselines_j={**{n: v[1].energy_j for n, v in found.items()},
                                            "store_all": rep.energy_j},
                               orders=[{"order": k, "status": "optimal",
                                        "objective_j": rep.energy_j, "bound_j": rep.energy_j}])
    searches: list[tuple[int, Reorder, Problem, _Search]] = []
    for k, order in enumerate(orders):
        red = Reorder(order)
        q, _ = red.apply(problem)
        sub = _sub_call(call, q, k, len(orders) - k)
        try:
            search = _prepare_milp(sub, {n: (red.forward(s_, q), r_)
                                         for n, (s_, r_) in found.items()})
        except _NoMilp as e:
            if k == 0:        # the given order's model cannot be had: the others' neither
                return _without_milp(call, found, e.milp_status, str(e))
            break
        if k == 0 and search.model.n_variables > MAX_ORDER_COLUMNS:
            orders = orders[:1]               # too large to solve several times over
        if neighbourhood:
            _lp_phase(sub, search)
        searches.append((k, red, q, search))
        if len(orders) == 1:
            break
    if len(searches) == 1 and len(orders) == 1:
        k, red, q, search = searches[0]
        return _after_lp(_sub_call(call, q, 0, 1), search, neighbourhood)
    best: tuple[Schedule, SimReport, SolveResult | None] | None = None
    if found:
        _, (sched, rep) = min(found.items(), key=lambda kv: kv[1][1].energy_j)
        best = (sched, rep, None)
    runs: list[tuple[int, SolveResult | None, InfeasibleError | None]] = []
    for idx, (k, red, q, search) in enumerate(searches):
        sub = _sub_call(call, q, k, len(searches) - idx)
        if best is not None and best[2] is not None:
            _offer(sub, search, "earlier order", (red.forward(best[0], q), best[1]))
        try:
            res = _after_lp(sub, search, neighbourhood)
        except InfeasibleError as e:
            runs.append((k, None, e))
            continue
        runs.append((k, res, None))
        if res.schedule is not None:
            sched = Reorder.invert(res.schedule, problem, red.order)
            rep = simulate(problem, sched)
            if best is None or rep.energy_j < best[1].energy_j * (1 - 1e-12):
                best = (sched, rep, res)
    if best is None:
        errs = [e for _, _, e in runs if e is not None]
        if len(errs) == len(runs):
            raise errs[0]
        return call.result("timeout-without-solution", None, None,
                           orders=_order_summaries(runs), **_merged(runs, None))
    bounds = [r.bound_j for _, r, e in runs if e is None]
    bound = min(bounds) if bounds and None not in bounds else None
    sched, rep, res = best
    source = res.source if res is not None else min(found.items(),
                                                   key=lambda kv: kv[1][1].energy_j)[0]
    status = "optimal" if within_gap(gaps(rep.energy_j, bound, problem.store_all_energy_j)[0],
                                     call.gap) else "feasible"
    return call.result(status, sched, rep, bound_j=bound, source=source,
                       orders=_order_summaries(runs), **_merged(runs, res))


# Candidate orders other than the given one are tried only when the given order's MILP has at most
# this many columns: each order's LP relaxation then takes about a second (ResNet-18, 13k columns,
# 1.2 s here), while on a 250-node chain (42k columns) three orders left each a third of the time
# and no LP finished in its share (a 3.6e-2 gap at 60 s where the given order alone reaches 6e-4).
MAX_ORDER_COLUMNS = 25_000


def _sub_call(call: _Call, problem: Problem, k: int, shares: int) -> _Call:
    """The call for order k on its reordered problem: the same clock and options, a deadline one
    of `shares` equal parts of the time left, progress lines tagged with the order."""
    share = max(call.left(), 0.0) / shares
    return dataclasses.replace(call, problem=problem, time_limit_s=call.elapsed() + share,
                               progress=None if call.progress is None else
                               (lambda m: call.say(f"order {k}: {m}")))


def _offer(call: _Call, search: _Search, name: str, got: tuple[Schedule, SimReport]) -> None:
    """Add a schedule to a search before its phases 2 and 3: it joins `found`, and if it is the
    cheapest so far it sets the cutoff and (where it has an image in the model) the MIP start."""
    search.found[name] = got
    e = got[1].energy_j
    if search.best_j is None or e < search.best_j:
        search.best_j = e
        if call.warm_start:
            search.cutoff = search.cutoff_for(e)
            start = best_start(call.problem, search.model, {name: got})
            if start is not None:
                search.start = start


def _order_summaries(runs) -> list[dict]:
    """One dict per order solved: its index among the candidates, status, joules and bound."""
    out = []
    for k, r, e in runs:
        if e is not None:
            out.append({"order": k, "status": "infeasible", "objective_j": None,
                        "bound_j": None})
        else:
            out.append({"order": k, "status": r.status, "objective_j": r.objective_j,
                        "bound_j": r.bound_j, "solve_s": r.solve_s})
    return out


def _merged(runs, winner: SolveResult | None) -> dict:
    """The fields of the combined result taken from the orders' results: the winner's model size,
    backend and messages; every order's trajectory merged (the best schedule so far, and the least
    of the orders' latest bounds once every order has one)."""
    done = [r for _, r, e in runs if e is None and r is not None]
    w = winner if winner is not None else (done[-1] if done else None)
    out: dict = {}
    if w is not None:
        out.update(n_variables=w.n_variables, n_constraints=w.n_constraints, backend=w.backend,
                   milp_status=w.milp_status, milp_objective_j=w.milp_objective_j,
                   message=w.message, setup_s=w.setup_s)
    out["build_s"] = sum(r.build_s for r in done)
    base: dict[str, float] = {}
    for r in done:
        for name, e in r.baselines_j.items():
            base.setdefault(name, e)
    out["baselines_j"] = base
    n = len(runs)
    events = sorted((s, idx, o, b) for idx, (_, r, e) in enumerate(runs)
                    if e is None and r is not None for s, o, b in r.trajectory)
    latest: list[float | None] = [None] * n
    for idx, (_, r, e) in enumerate(runs):
        if e is not None:
            latest[idx] = math.inf           # an infeasible order adds nothing to the union
    best_o, traj = None, []
    for s, idx, o, b in events:
        if o is not None:
            best_o = o if best_o is None else min(best_o, o)
        if b is not None:
            latest[idx] = b
        union = None if None in latest else min(latest)
        traj.append((s, best_o, None if union is None or not math.isfinite(union) else union))
    out["trajectory"] = traj
    return out
