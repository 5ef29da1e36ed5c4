"""One solve per candidate order of first computes (`solver.reductions.candidate_orders`), for
`solver.solve`. The result's space is the union of the orders' staged spaces, and its bound the
least of the orders' bounds, so one order with a weak bound keeps the whole gap open. The time
goes where that gap is:

1. every order's MILP is built and its LP relaxation solved (the union's first bound);
2. the LP neighbourhood of every order, each from its own start (the heuristics), so that the
   best schedule of any order sets the others' cutoffs before their full MILPs;
3. the full MILP, in passes over the orders whose bound is still not within the gap of the best
   schedule, the order with the cheapest schedule of its own first, each in an equal share of the
   time left (what one order does not use goes to the next, and a later pass gives an order cut
   short by its share the time the others left). Its cutoff is the best schedule's energy less the
   gap (proving that nothing below it lies in the order's space is all the union's gap needs),
   unless the order's own start is that schedule (the solver then stops at the gap of that
   incumbent); the bound an order proves is the least of its solver's bound and its cutoff.

An order whose bound is within the gap of the best schedule gets no more time; the call ends as
soon as the union's bound is within the gap. The cheapest schedule is mapped back to the original
ids (`Reorder.invert`) and simulated on the original problem.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from .errors import InfeasibleError
from .plans import plan_energy
from .problem import Problem
from .reductions import Reorder
from .result import SolveResult, gaps, within_gap
from .schedule import Schedule
from .simulate import SimReport, simulate
from .call import Call
from .solve import (_after_lp, _full_milp, _lp_phase, _neighbourhood_phase, _NoMilp, _pick_best,
                    _prepare_milp, _Search, _without_milp)
from .starts import Found, best_start, run_baseline

# Candidate orders other than the given one are tried only when the given order's MILP has at most
# this many columns: each order's LP relaxation then takes about a second (ResNet-18, 13k columns,
# 1.2 s here), while on a 250-node chain (42k columns) three orders left each a third of the time
# and no LP finished in its share (a 3.6e-2 gap at 60 s where the given order alone reaches 6e-4).
MAX_ORDER_COLUMNS = 25_000

# Passes of the full MILP over the orders still open (a later pass restarts an order's branch and
# bound, with the time the others left and the cutoff of the best schedule since).
MAX_PASSES = 3


@dataclass
class _Order:
    """One candidate order's solve: its reordering, problem and search, the best lower bound
    proven on its staged space (the LP's, then its full MILPs'; inf: nothing in it, or nothing
    below a cutoff that is the best schedule found), the cheapest schedule its own phases found,
    and its full-MILP runs."""

    k: int
    red: Reorder
    q: Problem
    search: _Search
    bound_j: float | None = None
    own_j: float = math.inf
    runs: int = 0
    last_run_s: float = 0.0
    last_cutoff_j: float | None = None
    exhausted: bool = False       # its last run ended before its time without closing the gap
    error: InfeasibleError | None = None
    solve_s: float = 0.0

    def raise_bound(self, b: float | None) -> None:
        if b is not None:
            self.bound_j = b if self.bound_j is None else max(self.bound_j, b)

    def closed(self, best_j: float | None, gap: float) -> bool:
        """Whether this order's bound is within `gap` of the best schedule (or it is empty)."""
        b = self.bound_j
        if b is None:
            return False
        if math.isinf(b):
            return True
        return best_j is not None and within_gap(gaps(best_j, b, 0.0)[0], gap)


@dataclass
class _Best:
    """The cheapest schedule so far, in the original ids, and where it came from."""

    sched: Schedule
    rep: SimReport
    source: str
    k: int | None = None          # the order whose phases found it (None: a heuristic, a start)


def solve_orders(call: Call, found: Found, neighbourhood: bool,
                 orders: list[tuple[int, ...]]) -> SolveResult:
    """Solve in every candidate order (`Reorder`), as the module docstring says; the cheapest
    schedule comes back with the least of the orders' bounds (None while one order has none)."""
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
    slots: list[_Order] = []
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
        slots.append(_Order(k, red, q, search, bound_j=search.lp_j))
        if len(orders) == 1:
            break
    if len(slots) == 1 and len(orders) == 1:
        return _after_lp(_sub_call(call, slots[0].q, 0, 1), slots[0].search, neighbourhood)
    best = None
    if found:
        name, (sched, rep) = min(found.items(), key=lambda kv: kv[1][1].energy_j)
        best = _Best(sched, rep, name)
    union = _Union(call, slots, best)
    if neighbourhood:
        union.neighbourhoods()
    union.setup_s = call.elapsed()
    union.full_milps()
    return union.result()


class _Union:
    """Phases 2 and 3 over the orders, and the result: the best schedule and the union's bound."""

    def __init__(self, call: Call, slots: list[_Order], best: _Best | None):
        self.call, self.slots, self.best = call, slots, best
        self.setup_s = 0.0
        self.last_run: _Order | None = None

    @property
    def best_j(self) -> float | None:
        return None if self.best is None else self.best.rep.energy_j

    def bound_j(self) -> float | None:
        """The least of the orders' bounds; None while one order has none."""
        bounds = [s.bound_j for s in self.slots]
        return None if None in bounds else min(bounds)

    def done(self) -> bool:
        """Whether the best schedule is within the gap of the union's bound."""
        b = self.bound_j()
        if b is not None and math.isinf(b):
            return True
        g = gaps(self.best_j, b, self.call.problem.store_all_energy_j)[0]
        return within_gap(g, self.call.gap)

    def open(self, slot: _Order) -> bool:
        return not slot.closed(self.best_j, self.call.gap)

    def offer(self, sub: Call, slot: _Order) -> None:
        """Hand the best schedule so far to an order's search: its start and cutoff if cheaper."""
        if self.best is not None and self.best.k != slot.k:
            _offer(sub, slot.search, "earlier order",
                   (slot.red.forward(self.best.sched, slot.q), self.best.rep))

    def take(self, slot: _Order, got: tuple[Schedule, SimReport], source: str) -> None:
        """A schedule an order's phase found (in its ids): the best so far if it is cheaper."""
        sched = Reorder.invert(got[0], self.call.problem, slot.red.order)
        rep = simulate(self.call.problem, sched)
        slot.own_j = min(slot.own_j, rep.energy_j)
        if self.best is None or rep.energy_j < self.best.rep.energy_j * (1 - 1e-12):
            self.best = _Best(sched, rep, source, slot.k)

    # -- phase 2 --------------------------------------------------------------------------------
    def neighbourhoods(self) -> None:
        """The LP neighbourhood of every order still open, each in an equal share of the time
        left, from its own start (the heuristics): each explores around its own LP optimum, and a
        schedule another order found would move its start there (ResNet-18 at 25%: the second
        order's neighbourhood from the first order's +0.213% found nothing; from its heuristic
        start, +0.207%, the optimum)."""
        for idx, slot in enumerate(self.slots):
            if self.done():
                return
            if not self.open(slot):
                continue
            sub = _sub_call(self.call, slot.q, slot.k, len(self.slots) - idx)
            _neighbourhood_phase(sub, slot.search)
            slot.solve_s = self.call.elapsed()
            phase = slot.search.phase
            if phase is not None and phase.schedule is not None:
                self.take(slot, (phase.schedule, phase.report), "lp_neighbourhood")

    # -- phase 3 --------------------------------------------------------------------------------
    def wants_run(self, slot: _Order) -> bool:
        """An open order gets a (first or further) full MILP unless its last one ended early
        without closing its gap, or a new run could only repeat it (the same cutoff, less
        time)."""
        if not self.open(slot) or slot.exhausted:
            return False
        if slot.runs == 0:
            return True
        tighter = (self.best_j is not None and slot.last_cutoff_j is not None
                   and self.best_j < slot.last_cutoff_j * (1 - 1e-9))
        return tighter or self.call.left() >= 1.5 * slot.last_run_s

    def full_milps(self) -> None:
        for _ in range(MAX_PASSES):
            todo = [s for s in self.slots if self.wants_run(s)]
            if not todo or self.done():
                return
            todo.sort(key=lambda s: (s.own_j, -math.inf if s.bound_j is None else s.bound_j))
            for idx, slot in enumerate(todo):
                if self.done():
                    return
                if not self.open(slot):
                    continue
                if self.call.left() - slot.search.handover_s <= 0.1:
                    return
                self.full_milp(_sub_call(self.call, slot.q, slot.k, len(todo) - idx), slot)

    def full_milp(self, sub: Call, slot: _Order) -> None:
        """One full-MILP run of an order, cut off at the best schedule less the gap; its bound
        (no more than that cutoff) raises the order's."""
        search, call = slot.search, self.call
        self.offer(sub, slot)
        best_j = self.best_j
        if call.warm_start and best_j is not None and not (
                search.start is not None
                and plan_energy(sub.problem, search.start) <= best_j * (1 + 1e-9)):
            # no start as good as the best schedule: without an incumbent the solver cannot stop
            # at the gap, so the cutoff is where the gap is (a start that good keeps its cutoff:
            # the solver then stops at the gap of its incumbent, the same proof, and sooner)
            search.cutoff = search.cutoff_for(best_j * (1 - call.gap * (1 - 1e-6)))
        cut_j = search.joules(search.cutoff) if search.cutoff is not None else None
        limit = sub.left() - search.handover_s
        n0 = len(search.trajectory)
        run = _full_milp(sub, search)
        self.last_run = slot
        slot.runs += 1
        slot.last_run_s, slot.last_cutoff_j = run.solve_s, best_j
        slot.solve_s = call.elapsed()
        if search.common.get("milp_status") == "not-run":
            slot.exhausted = True
            return
        if search.cutoff is not None and run.bound is not None:
            run.bound = min(run.bound, search.cutoff)    # nothing below the cutoff, at best
        if cut_j is not None:        # the solver's bounds hold for schedules below the cutoff
            search.trajectory[n0:] = [(s, o, None if b is None else min(b, cut_j))
                                      for s, o, b in search.trajectory[n0:]]
        try:
            res = _pick_best(sub, search, run)
        except InfeasibleError as e:      # nothing at all in this order's space
            slot.error, slot.bound_j = e, math.inf
            return
        if run.status == "infeasible":
            # nothing below the cutoff (nothing at all without one) in this order's space
            slot.raise_bound(cut_j if cut_j is not None else math.inf)
        elif res.bound_j is not None:
            slot.raise_bound(res.bound_j if cut_j is None else min(res.bound_j, cut_j))
        search.trajectory.append((call.elapsed(), None, slot.bound_j))
        if res.schedule is not None and res.source == "milp":
            self.take(slot, (res.schedule, res.report), "milp")
            if call.warm_start and res.objective_j < (search.best_j or math.inf):
                # a further run starts from it (the columns still hold its values)
                search.best_j, search.start = res.objective_j, search.model.plan()
                search.cutoff = search.cutoff_for(res.objective_j)
        if self.open(slot) and run.solve_s < 0.9 * limit:
            slot.exhausted = True

    # -- the result -----------------------------------------------------------------------------
    def result(self) -> SolveResult:
        call = self.call
        if self.best is None:
            if all(s.bound_j is not None and math.isinf(s.bound_j) for s in self.slots):
                errs = [s.error for s in self.slots if s.error is not None]
                raise errs[0] if errs else call.infeasible("no schedule of its space fits")
            return call.result("timeout-without-solution", None, None, bound_j=self.bound_j(),
                               orders=self.summaries(), **self.merged())
        b = self.bound_j()
        bound = None if b is None or math.isinf(b) else b
        if b is not None and math.isinf(b):   # every order proved nothing below its cutoff
            bound = self.best_j
        g = gaps(self.best_j, bound, call.problem.store_all_energy_j)[0]
        status = "optimal" if within_gap(g, call.gap) else "feasible"
        return call.result(status, self.best.sched, self.best.rep, bound_j=bound,
                           source=self.best.source, orders=self.summaries(), **self.merged())

    def summaries(self) -> list[dict]:
        """One dict per order: its index among the candidates, status, the cheapest schedule its
        search knew (its own or one handed to it), its bound, the seconds at its last phase and
        its full-MILP runs."""
        out = []
        for s in self.slots:
            if s.bound_j is not None and math.isinf(s.bound_j):    # nothing in its space
                out.append({"order": s.k, "status": "infeasible", "objective_j": None,
                            "bound_j": None, "solve_s": s.solve_s, "runs": s.runs})
                continue
            known = [s.own_j] + [r.energy_j for _, (_, r) in s.search.found.items()]
            obj = min(known)
            obj = None if math.isinf(obj) else obj
            bound = s.bound_j
            g = gaps(obj, bound, s.q.store_all_energy_j)[0]
            out.append({"order": s.k, "status": "optimal" if within_gap(g, self.call.gap)
                        else "feasible", "objective_j": obj, "bound_j": bound,
                        "solve_s": s.solve_s, "runs": s.runs})
        return out

    def merged(self) -> dict:
        """The fields of the combined result: model size and backend of the order that found the
        best schedule (the given order's for a heuristic), the last full MILP's status and
        message, and every order's trajectory merged (the best schedule so far, and the least of
        the orders' bounds so far once every order has one)."""
        slots = self.slots
        w = next((s for s in slots if self.best is not None and s.k == self.best.k), slots[0])
        src = w if "milp_status" in w.search.common else self.last_run
        common = dict(src.search.common) if src is not None else {}
        if "milp_status" not in common and self.done():
            common = {"milp_status": "optimal",
                      "message": "within the gap of the orders' LP relaxations"}
        out: dict = {"n_variables": w.search.model.n_variables,
                     "n_constraints": w.search.model.n_constraints, "backend": w.search.backend,
                     "setup_s": self.setup_s, "build_s": sum(s.search.build_s for s in slots),
                     **{k: v for k, v in common.items() if k in ("milp_status", "message",
                                                                 "milp_objective_j")}}
        base: dict[str, float] = {}
        for s in slots:
            for name, e in s.search.baselines_j.items():
                base.setdefault(name, e)
        out["baselines_j"] = base
        events = sorted((t, idx, o, b) for idx, s in enumerate(slots)
                        for t, o, b in s.search.trajectory)
        latest: list[float | None] = [None] * len(slots)
        best_o, traj = None, []
        for t, idx, o, b in events:
            if o is not None:
                best_o = o if best_o is None else min(best_o, o)
            if b is not None:
                latest[idx] = b if latest[idx] is None else max(latest[idx], b)
            union = None if None in latest else min(latest)
            if union is not None and best_o is not None and math.isinf(union):
                union = best_o
            traj.append((t, best_o, union if union is None or math.isfinite(union) else None))
        out["trajectory"] = traj
        return out


def _sub_call(call: Call, problem: Problem, k: int, shares: int) -> Call:
    """The call for order k on its reordered problem: the same clock and options, a deadline one
    of `shares` equal parts of the time left, progress lines tagged with the order."""
    share = max(call.left(), 0.0) / shares
    return dataclasses.replace(call, problem=problem, time_limit_s=call.elapsed() + share,
                               progress=None if call.progress is None else
                               (lambda m: call.say(f"order {k}: {m}")))


def _offer(call: Call, search: _Search, name: str, got: tuple[Schedule, SimReport]) -> None:
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
