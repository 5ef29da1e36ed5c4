"""solver.bruteforce: hand-computed optima, an independent naive search, budgets, limits."""

import dataclasses
import heapq
import time

import pytest

import solver
from solver import InfeasibleError, Node, Problem
from solver.baselines import BASELINES
from solver.bruteforce import SearchLimitError, optimal_unrestricted
from solver.generators import random_problem


def node(i, kind, out, cj, *, cs=1.0, pi=100.0, po=100.0, pis=1.0, pos=1.0, ws=0):
    return Node(i, f"n{i}", kind, out, compute_s=cs, compute_j=cj, pagein_s=pis, pagein_j=pi,
                pageout_s=pos, pageout_j=po, workspace_bytes=ws)


def four(c0, po0, pi0, *, budget=200, pos0=1.0, pis0=1.0, **budgets):
    """f0 -> f1 -> loss -> bwd, and bwd also reads f0.

    Store-all peaks at 210 bytes (computing the loss with f0 and f1 resident); every compute
    needs at most 200 (f0 + f1). At 200 bytes f0 must leave RAM before the loss and come back
    for bwd, so the optimum is the four computes (c0 + 2 + 3 + 4) plus min(c0, po0 + pi0)."""
    nodes = [node(0, "forward", 100, c0, po=po0, pi=pi0, pos=pos0, pis=pis0),
             node(1, "forward", 100, 2.0),
             node(2, "loss", 10, 3.0),
             node(3, "backward", 10, 4.0)]
    return Problem(nodes, [(0, 1), (1, 2), (2, 3), (0, 3)], static_bytes=0,
                   ram_budget_bytes=budget, **budgets)


def test_hand_made_chain_where_recompute_is_cheaper():
    p = four(c0=1.0, po0=2.0, pi0=2.0)
    assert solver.min_feasible_ram(p) == 200 and solver.store_all_peak(p) == 210
    e, s = optimal_unrestricted(p)
    assert e == pytest.approx(1 + 2 + 3 + 4 + 1, rel=1e-12)
    assert s.instructions.count(("compute", 0)) == 2 and s.count("page_out") == 0
    assert s.strategy == "bruteforce" and s.predicted["peak_ram_bytes"] <= 200
    assert solver.simulate(p, s).energy_j == pytest.approx(e, rel=1e-12)


def test_hand_made_chain_where_paging_is_cheaper():
    p = four(c0=5.0, po0=1.0, pi0=0.5)
    e, s = optimal_unrestricted(p)
    assert e == pytest.approx(5 + 2 + 3 + 4 + 1 + 0.5, rel=1e-12)
    assert s.count("page_out") == 1 and s.count("page_in") == 1
    assert s.instructions.count(("compute", 0)) == 1


def test_without_a_binding_budget_the_optimum_computes_each_node_once():
    for budget in (None, 210, 10_000):
        e, s = optimal_unrestricted(four(c0=5.0, po0=1.0, pi0=0.5, budget=budget))
        assert e == pytest.approx(14.0, rel=1e-12)
        assert s.count("compute") == 4


def test_runtime_budget_switches_from_paging_to_recompute():
    # paging f0 costs 1.5 J but 6 s; recomputing it 5 J and 1 s; the four computes take 4 s
    kw = dict(c0=5.0, po0=1.0, pi0=0.5, pos0=3.0, pis0=3.0)
    e, s = optimal_unrestricted(four(**kw, runtime_budget_s=10.0))
    assert e == pytest.approx(15.5, rel=1e-12) and s.predicted["time_s"] == pytest.approx(10.0)
    e, s = optimal_unrestricted(four(**kw, runtime_budget_s=8.0))
    assert e == pytest.approx(19.0, rel=1e-12) and s.predicted["time_s"] == pytest.approx(5.0)
    with pytest.raises(InfeasibleError, match="no schedule fits"):
        optimal_unrestricted(four(**kw, runtime_budget_s=4.5))


def test_flash_budget_too_small_for_f0_forces_recompute():
    kw = dict(c0=5.0, po0=1.0, pi0=0.5)
    e, _ = optimal_unrestricted(four(**kw, flash_budget_bytes=99))
    assert e == pytest.approx(19.0, rel=1e-12)
    e, _ = optimal_unrestricted(four(**kw, flash_budget_bytes=100))
    assert e == pytest.approx(15.5, rel=1e-12)


def test_ram_below_the_minimum_is_infeasible():
    with pytest.raises(InfeasibleError, match="min_feasible_ram 200"):
        optimal_unrestricted(four(c0=1.0, po0=1.0, pi0=1.0, budget=199))


def test_three_nodes_the_search_may_reorder_computes():
    # a (100 B) and b (100 B, 50 B workspace) are independent; c reads both. In id order b runs
    # with a resident: 250 B. Computing b first peaks at 210 (c with a, b and its 10 B), so at a
    # 210 B budget the optimum is each node once, out of id order: no paging, no recompute.
    nodes = [node(0, "forward", 100, 1.0), node(1, "forward", 100, 1.0, ws=50),
             node(2, "loss", 10, 1.0)]
    p = Problem(nodes, [(0, 2), (1, 2)], ram_budget_bytes=210)
    assert solver.store_all_peak(p) == 250 and solver.min_feasible_ram(p) == 210
    e, s = optimal_unrestricted(p)
    assert e == pytest.approx(3.0)
    assert [i for op, i in s.instructions if op == "compute"] == [1, 0, 2]
    assert s.predicted["peak_ram_bytes"] == 210
    with pytest.raises(InfeasibleError, match="min_feasible_ram 210"):
        optimal_unrestricted(p.with_budgets(ram_budget_bytes=209))


def test_search_limit_and_argument_checks():
    p = four(c0=1.0, po0=2.0, pi0=2.0)
    with pytest.raises(SearchLimitError, match="max_states=1"):
        optimal_unrestricted(p, max_states=1)
    with pytest.raises(ValueError, match="max_states"):
        optimal_unrestricted(p, max_states=0)


# ---- an independent, unpruned search over the simulator's rules ------------------------------

def _moves(p: Problem, ram, flash, done):
    """Every instruction the simulator allows in this state: (energy, time, next state)."""
    budget = float("inf") if p.ram_budget_bytes is None else p.ram_budget_bytes
    fbudget = float("inf") if p.flash_budget_bytes is None else p.flash_budget_bytes
    n = p.nodes
    used = p.static_bytes + sum(n[i].out_bytes for i in ram)
    fused = sum(n[i].out_bytes for i in flash)
    for i in range(p.T):
        if i not in ram and all(q in ram for q in p.preds[i]) \
                and used + n[i].out_bytes + n[i].workspace_bytes <= budget:
            yield n[i].compute_j, n[i].compute_s, (ram | {i}, flash, done | {i})
        if i in flash and i not in ram and used + n[i].out_bytes <= budget:
            yield n[i].pagein_j, n[i].pagein_s, (ram | {i}, flash, done)
        if i in ram and i not in flash and fused + n[i].out_bytes <= fbudget:
            yield n[i].pageout_j, n[i].pageout_s, (ram, flash | {i}, done)
        if i in ram:
            yield 0.0, 0.0, (ram - {i}, flash, done)
        if i in flash:
            yield 0.0, 0.0, (ram, flash - {i}, done)


def naive_optimum(p: Problem) -> float:
    """Plain Dijkstra over (RAM set, flash set, computed set) with all five instructions allowed
    in every state, no pruning, no runtime budget; the goal is 'every node computed'."""
    start = (frozenset(), frozenset(), frozenset())
    dist = {start: 0.0}
    heap = [(0.0, 0, start)]
    tick = 0
    while heap:
        d, _, st = heapq.heappop(heap)
        if d > dist[st]:
            continue
        if len(st[2]) == p.T:
            return d
        for c, _t, s2 in _moves(p, *st):
            if d + c < dist.get(s2, float("inf")):
                dist[s2] = d + c
                tick += 1
                heapq.heappush(heap, (d + c, tick, s2))
    return float("inf")


def naive_timed_optimum(p: Problem) -> float:
    """Label correcting with the whole Pareto front of (energy, time) at every state, labels over
    the runtime budget dropped; the least energy among complete labels."""
    cap = p.runtime_budget_s * (1 + 1e-9)
    start = (frozenset(), frozenset(), frozenset())
    front = {start: [(0.0, 0.0)]}
    todo = [(start, 0.0, 0.0)]
    best = float("inf")
    while todo:
        st, e, t = todo.pop()
        if (e, t) not in front.get(st, []):
            continue   # superseded since it was queued
        if len(st[2]) == p.T:
            best = min(best, e)
            continue
        for c, dt, s2 in _moves(p, *st):
            e2, t2 = e + c, t + dt
            if t2 > cap:
                continue
            labels = front.setdefault(s2, [])
            if any(a <= e2 and b <= t2 for a, b in labels):
                continue
            labels[:] = [(a, b) for a, b in labels if not (e2 <= a and t2 <= b)] + [(e2, t2)]
            todo.append((s2, e2, t2))
    return best


@pytest.mark.parametrize("seed", range(30))
def test_pruned_search_equals_unpruned_search(seed):
    p = random_problem(seed, T=5 + seed % 3, budget_frac=(seed % 4) / 4)
    if seed % 2:   # a flash budget that holds the largest tensor but not everything
        p = p.with_budgets(flash_budget_bytes=max(nd.out_bytes for nd in p.nodes))
    want = naive_optimum(p)
    try:
        got, s = optimal_unrestricted(p)
    except InfeasibleError:
        assert want == float("inf")
        return
    assert got == pytest.approx(want, rel=1e-9)
    assert solver.simulate(p, s).energy_j == got


def test_runtime_budget_equals_an_unpruned_pareto_search():
    outcomes = {"tighter": 0, "infeasible": 0}
    for seed in range(24):
        p = random_problem(500 + seed, T=5 + seed % 2, budget_frac=(seed % 3) / 4)
        # paging made cheap in energy but slow, so the time budget can bite
        p = dataclasses.replace(p, nodes=[dataclasses.replace(
            nd, pagein_j=nd.pagein_j / 10, pageout_j=nd.pageout_j / 10,
            pagein_s=nd.pagein_s * 10, pageout_s=nd.pageout_s * 10) for nd in p.nodes])
        e_free, free = optimal_unrestricted(p)
        # just under the time of the least-energy schedule: that schedule no longer fits
        p = p.with_budgets(runtime_budget_s=free.predicted["time_s"] * (1 - 1e-6))
        want = naive_timed_optimum(p)
        try:
            got, s = optimal_unrestricted(p)
        except InfeasibleError:
            assert want == float("inf"), seed
            outcomes["infeasible"] += 1
            continue
        assert got == pytest.approx(want, rel=1e-9), seed
        assert s.predicted["time_s"] <= p.runtime_budget_s * (1 + 1e-9)
        assert got > e_free
        outcomes["tighter"] += 1
    assert outcomes["tighter"] >= 3 and outcomes["infeasible"] >= 3, outcomes


def test_bruteforce_never_loses_to_a_baseline_on_50_random_problems():
    beaten = 0
    for seed in range(50):
        frac = None if seed % 6 == 5 else (seed % 6) / 4   # 0, .25, .5, .75, 1, random
        p = random_problem(1000 + seed, T=5 + seed % 4, budget_frac=frac)
        e, s = optimal_unrestricted(p)
        assert e >= sum(nd.compute_j for nd in p.nodes) * (1 - 1e-12)   # each node at least once
        assert solver.simulate(p, s).peak_ram_bytes <= p.ram_budget_bytes
        for name, fn in BASELINES.items():
            try:
                b = fn(p).predicted["energy_j"]
            except InfeasibleError:
                continue
            assert e <= b * (1 + 1e-9), (seed, name, e, b)
            beaten += e < b * (1 - 1e-9)
    assert beaten > 0   # the baselines are not all optimal everywhere


def test_t7_is_fast():
    worst = 0.0
    for seed in range(20):
        p = random_problem(seed, T=7, budget_frac=0.0)
        t0 = time.perf_counter()
        optimal_unrestricted(p)
        worst = max(worst, time.perf_counter() - t0)
    assert worst < 2.0
