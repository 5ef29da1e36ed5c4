"""The order of first computes (solver.reductions.Reorder, candidate_orders) and solve()'s use of
it, judged by the unrestricted brute force; and statuses that match the reported gap."""

from __future__ import annotations

import math
import time

import pytest

from solver import InfeasibleError, simulate
from solver.bruteforce import optimal_unrestricted
from solver.bruteforce_staged import optimal_staged
from solver.generators import random_problem
from solver.reductions import Reorder, candidate_orders, greedy_order
from solver.result import within_gap
from solver.call import check_args
from solver.solve import solve

# seed 39 (T=7): f0 forks into f1 (7 KiB) and f2 (8 KiB), which join in the loss. The given
# order (f1 first) costs 0.014138887 J at best in the staged space; with f2 first the staged
# optimum is the unrestricted one, 0.013911813 J (both figures from the two brute forces).
FORK = 39


def _is_topological(problem, order):
    pos = {v: k for k, v in enumerate(order)}
    return sorted(order) == list(range(problem.T)) and all(pos[i] < pos[j]
                                                           for i, j in problem.edges)


def test_reorder_apply_forward_invert_keep_every_figure():
    p = random_problem(FORK, T=7)
    order = (0, 2, 1, 3, 5, 4, 6)
    q, back = Reorder(order).apply(p)
    assert back == order and q.T == p.T and q.fingerprint != p.fingerprint
    assert [n.name for n in q.nodes] == [p.nodes[i].name for i in order]
    assert (1, 2) not in q.edges and (2, 3) in q.edges      # f1 (old 1) is now node 2
    best = optimal_staged(q)
    sched = Reorder.invert(best.schedule, p, order)
    assert sched.problem_fingerprint == p.fingerprint
    assert sched.instructions[:3] == [("compute", 0), ("compute", 2), ("compute", 1)]
    rep_p, rep_q = simulate(p, sched), simulate(q, best.schedule)
    assert (rep_p.energy_j, rep_p.time_s, rep_p.peak_ram_bytes) == (
        rep_q.energy_j, rep_q.time_s, rep_q.peak_ram_bytes)
    assert Reorder(order).forward(sched, q).instructions == best.schedule.instructions
    assert Reorder(range(7)).apply(p)[0] is p


def test_reorder_rejects_orders_that_are_not_topological():
    p = random_problem(FORK, T=7)
    with pytest.raises(ValueError, match="permutation of the node ids 0..6"):
        Reorder((0, 1, 2)).apply(p)
    with pytest.raises(ValueError, match="before its operand 0"):
        Reorder((1, 0, 2, 3, 4, 5, 6)).apply(p)


def test_greedy_orders_are_topological_and_differ_on_a_fork():
    for seed in range(40):
        p = random_problem(seed, T=4 + seed % 6)
        for o in (greedy_order(p), greedy_order(p, largest_first=True)):
            assert _is_topological(p, o)
        cands = candidate_orders(p)
        assert cands[0] == tuple(range(p.T)) and len(set(cands)) == len(cands)
    p = random_problem(FORK, T=7)
    # least growth first, ties to the latest: f1 (7 KiB) before f2 (8 KiB), bwd5 before bwd4
    assert greedy_order(p) == (0, 1, 2, 3, 5, 4, 6)
    assert greedy_order(p, largest_first=True) == (0, 2, 1, 3, 4, 5, 6)


def test_solve_finds_the_order_the_given_one_misses():
    p = random_problem(FORK, T=7)
    free = optimal_unrestricted(p)[0]
    assert free == pytest.approx(0.013911813, rel=1e-9)
    given = solve(p, gap=0.0, reorder=False)
    assert given.objective_j == pytest.approx(0.014138887, rel=1e-9)
    res = solve(p, gap=0.0)
    assert res.status == "optimal" and res.objective_j == pytest.approx(free, rel=1e-9)
    assert simulate(p, res.schedule).energy_j == pytest.approx(res.objective_j, rel=1e-12)
    assert res.schedule.problem_fingerprint == p.fingerprint
    assert res.bound_j <= res.objective_j * (1 + 1e-9)
    assert [o["order"] for o in res.orders] == list(range(len(candidate_orders(p))))
    assert min(o["objective_j"] for o in res.orders) == pytest.approx(free, rel=1e-9)


@pytest.mark.slow
def test_200_random_dags_staged_with_orders_against_unrestricted(capsys):
    """solve() with the candidate orders reaches the unrestricted optimum on at least 199 of the
    200 random DAGs of test_milp's comparison, and is never worse than the given order alone
    (the staged brute force of that order: the MILP space without the reduction)."""
    t0 = time.perf_counter()
    differ, before, n = [], 0, 0
    for seed in range(200):
        p = random_problem(seed, T=4 + seed % 4)
        try:
            free = optimal_unrestricted(p)[0]
        except InfeasibleError:
            with pytest.raises(InfeasibleError):
                solve(p, gap=0.0)
            continue
        n += 1
        given = optimal_staged(p).energy_j
        res = solve(p, gap=0.0)
        assert res.status == "optimal"
        assert simulate(p, res.schedule).energy_j == pytest.approx(res.objective_j, rel=1e-12)
        assert res.objective_j <= given * (1 + 1e-9)
        assert res.objective_j >= free * (1 - 1e-9)
        before += not math.isclose(given, free, rel_tol=1e-6)
        if not math.isclose(res.objective_j, free, rel_tol=1e-6):
            differ.append((seed, res.objective_j / free - 1))
    with capsys.disabled():
        print(f"\nstaged with candidate orders vs unrestricted: {len(differ)} of {n} differ "
              f"(given order alone: {before}); {time.perf_counter() - t0:.0f} s")
    assert before == 5 and n == 200
    assert len(differ) <= 1



# seeds (T = 4 + seed % 4) with two or three candidate orders where store-all does not fit
SEVERAL_ORDERS = (6, 26, 39)


def _staged_optima(p):
    """Each candidate order's staged optimum (brute force; inf where its space is empty)."""
    out = []
    for order in candidate_orders(p):
        try:
            out.append(optimal_staged(Reorder(order).apply(p)[0]).energy_j)
        except InfeasibleError:
            out.append(math.inf)
    return out


@pytest.mark.parametrize("seed", SEVERAL_ORDERS)
def test_every_orders_bound_holds_under_cutoffs_at_the_gap(seed):
    """The full MILPs of the orders run cut off at the best schedule less the gap: every
    order's bound, the union's and every bound of the trajectory stay at or below the staged
    brute force, and an optimal status is a gap the brute force confirms."""
    p = random_problem(seed, T=4 + seed % 4)
    optima = _staged_optima(p)
    union = min(optima)
    assert len(optima) >= 2 and math.isfinite(union)
    for gap, neighbourhood in ((0.0, False), (0.02, False), (0.02, True)):
        res = solve(p, gap=gap, neighbourhood=neighbourhood)
        assert res.status == "optimal", (gap, neighbourhood)
        assert res.bound_j <= union * (1 + 1e-9)
        assert res.objective_j * (1 - gap) <= union * (1 + 1e-9)
        assert simulate(p, res.schedule).energy_j == pytest.approx(res.objective_j, rel=1e-12)
        if res.milp_status == "not-run":     # a heuristic within the gap of store-all's energy
            assert not res.orders and gap > 0   # or of the segment-cover bound (phase 0)
            assert res.bound_j == p.store_all_energy_j or "segment-cover" in res.message
            continue
        assert [o["order"] for o in res.orders] == list(range(len(optima)))
        for o in res.orders:
            assert o["bound_j"] <= optima[o["order"]] * (1 + 1e-9), (gap, o)
        bounds = [b for _, _, b in res.trajectory if b is not None]
        assert bounds == sorted(bounds) and bounds[-1] <= union * (1 + 1e-9)
        if gap == 0.0:
            assert res.objective_j == pytest.approx(union, rel=1e-9)


def test_an_order_within_the_gap_after_its_lp_gets_no_full_milp():
    """An order whose LP bound is already within the gap of the best schedule gets no full
    MILP run; one that is not gets one (without phases 1 and 2 every order runs it). The gaps
    stay below most heuristics' overhead: a schedule within the gap of store-all's energy, or of
    the segment-cover bound, ends the call before any order is built."""
    from solver.bounds import lp_bound
    closed = opened = 0
    for seed in SEVERAL_ORDERS:
        p = random_problem(seed, T=4 + seed % 4)
        for gap in (0.002, 0.005, 0.01, 0.02, 0.05):
            res = solve(p, gap=gap)
            assert res.status == "optimal"
            for o, order in zip(res.orders, candidate_orders(p)):
                lp = lp_bound(Reorder(order).apply(p)[0])
                if lp >= res.objective_j * (1 - gap) * (1 + 1e-9):
                    assert o["runs"] == 0, (seed, gap, o)
                    closed += 1
        plain = solve(p, gap=0.0, neighbourhood=False)
        assert all(o["runs"] >= 1 for o in plain.orders)
        opened += len(plain.orders)
    assert closed >= 8 and opened >= 6

# ---- statuses that match the numbers -----------------------------------------------------------
def test_a_feasible_result_within_the_requested_gap_is_optimal():
    p = random_problem(FORK, T=7)
    sched = optimal_staged(p).schedule
    rep = simulate(p, sched)
    call = check_args(p, "poet", "auto", 10, None, 1e-3, True, False, None)
    near = call.result("feasible", sched, rep, bound_j=rep.energy_j * (1 - 6.6e-4))
    assert near.status == "optimal" and near.gap == pytest.approx(6.6e-4, rel=1e-6)
    far = call.result("feasible", sched, rep, bound_j=rep.energy_j * (1 - 2e-3))
    assert far.status == "feasible"
    assert call.result("feasible", sched, rep).status == "feasible"      # no bound, no proof
    assert within_gap(1e-3, 1e-3) and not within_gap(1.001e-3, 1e-3) and not within_gap(None, 1)
