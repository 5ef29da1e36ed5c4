"""lp_bound, cover_bound and min_feasible_budget."""

from __future__ import annotations

import math
import time

import pytest
from test_milp import BACKENDS, chain5

from solver import InfeasibleError, min_feasible_ram, solve, store_all_peak
from solver.bounds import cover_bound, gaps_of, lp_bound, min_feasible_budget
from solver.staged import staged_space
from solver.bruteforce_staged import optimal_staged
from solver.generators import random_problem


def test_lp_bound_is_store_all_when_store_all_fits():
    assert lp_bound(chain5(budget=11)) == pytest.approx(13.0)
    assert lp_bound(chain5(budget=None)) == pytest.approx(13.0)


def test_lp_bound_below_budget_minimum_raises():
    with pytest.raises(InfeasibleError, match="minimum feasible RAM is 8 B"):
        lp_bound(chain5(budget=7))


@pytest.mark.parametrize("backend", BACKENDS)
def test_lp_bound_lies_between_store_all_and_optimum(backend):
    p = chain5(c0=3.0)
    lb = lp_bound(p, backend=backend)
    assert 13.0 <= lb <= 15.0 + 1e-9
    for seed in range(5):
        q = random_problem(400 + seed, T=7, budget_frac=0.3)
        opt = optimal_staged(q).energy_j
        lb = lp_bound(q, backend=backend)
        e0 = q.store_all_energy_j
        assert e0 * (1 - 1e-9) <= lb <= opt * (1 + 1e-7)


def test_lp_bound_same_on_both_backends():
    if len(BACKENDS) < 2:
        pytest.skip("needs CBC and HiGHS")
    q = random_problem(410, T=7, budget_frac=0.2)
    assert lp_bound(q, backend="cbc") == pytest.approx(lp_bound(q, backend="highs"), rel=1e-6)


# ---- the segment-cover bound ----------------------------------------------------------------
def test_cover_bound_of_chain5_by_hand():
    """chain5 at 8 bytes: f0 (4 B) is read at stages 1 and 4, so its one gap spans stages 2 and
    3. At L's compute f1 (4) and L (1) leave 3 B, at b1's f1, L and b1 leave 1 B: f0 must go, and
    its cheapest copy is a page-in (1 J, the page-out left out) or a recompute (c0 J). Store-all
    spends 3 + 5 + 1 + 2 + 2 = 13 J."""
    p = chain5(c0=3.0)
    (g,) = gaps_of(staged_space(p))
    assert (g.node, g.after, g.before, list(g.stages), g.cost_j) == (0, 1, 4, [2, 3], 1.0)
    for backend in BACKENDS:
        assert cover_bound(p, backend=backend) == pytest.approx(14.0, rel=1e-6)
        assert cover_bound(p, "paging", backend=backend) == pytest.approx(14.0, rel=1e-6)
        assert cover_bound(p, "remat", backend=backend) == pytest.approx(16.0, rel=1e-6)
    # the optima it bounds: page out and in (2 J), or recompute f0 (3 J) when paging is off
    assert optimal_staged(p).energy_j == pytest.approx(15.0)
    assert optimal_staged(p, paging=False).energy_j == pytest.approx(16.0)
    assert cover_bound(chain5(budget=11)) == pytest.approx(13.0)   # store-all fits
    assert cover_bound(chain5(budget=None)) == pytest.approx(13.0)


def test_cover_bound_is_inf_when_no_gap_can_make_room():
    """Without paging and with f0 not recomputable the 8-byte chain5 has no plan at all."""
    p = chain5(c0=3.0)
    space = staged_space(p, remat=False, paging=False)
    assert cover_bound(p, "remat", space=space) == math.inf


def test_cover_bound_and_heuristic_keep_to_their_time_limit():
    """The time limit covers building: out of time, the bound is the store-all energy and the
    heuristic has nothing; a 2,000-node chain (its covering problem takes seconds to build)
    keeps to a 0.5 s limit."""
    from solver.coverplan import cover_plan
    assert cover_bound(chain5(c0=3.0), time_limit_s=1e-9) == 13.0
    assert cover_plan(chain5(c0=3.0), time_limit_s=1e-9) is None
    q = random_problem(1, 2000, shape="chain")
    lo, hi = min_feasible_ram(q), store_all_peak(q)
    q = q.with_budgets(ram_budget_bytes=(lo + hi) // 2)
    for run in (lambda: cover_bound(q, time_limit_s=0.5), lambda: cover_plan(q, time_limit_s=0.5)):
        t0 = time.perf_counter()
        run()
        assert time.perf_counter() - t0 < 0.5 + 1.0


@pytest.mark.slow
def test_cover_bound_never_above_the_staged_optimum_on_200_dags(capsys):
    """On the 200 random DAGs, for each MILP strategy: the bound lies between the store-all
    energy and the staged brute force's optimum, and inf only where nothing fits. Prints how
    often it is the optimum itself."""
    tight = n = 0
    for seed in range(200):
        p = random_problem(seed, T=4 + seed % 4)
        for strategy, flags in (("poet", {}), ("remat", {"paging": False}),
                                ("paging", {"remat": False})):
            b = cover_bound(p, strategy)
            try:
                opt = optimal_staged(p, **flags).energy_j
            except InfeasibleError:
                opt = math.inf
            assert p.store_all_energy_j * (1 - 1e-9) <= b <= opt * (1 + 1e-9), (seed, strategy)
            if math.isfinite(opt):
                n += 1
                tight += math.isclose(b, opt, rel_tol=1e-6)
    with capsys.disabled():
        print(f"\nsegment-cover bound = staged optimum on {tight} of {n} feasible cases")
    assert n >= 590


def test_solve_ends_at_the_cover_bound_before_any_milp():
    """chain5 at 8 bytes, gap 10%: the best heuristic (15 J, paging f0) is 13% above store-all
    but within 10% of the 14 J cover bound, so no MILP is built; at 5% the MILP proves 15 J, and
    neighbourhood=False skips phase 0."""
    p = chain5(c0=3.0)
    res = solve(p, gap=0.1)
    assert res.status == "optimal" and res.milp_status == "not-run"
    assert "segment-cover" in res.message and res.n_variables == 0
    assert res.bound_j == pytest.approx(14.0, rel=1e-6)
    assert res.objective_j == pytest.approx(15.0)
    for kw in ({"gap": 0.05}, {"gap": 0.1, "neighbourhood": False}):
        res = solve(p, **kw)
        assert res.status == "optimal" and res.n_variables > 0, kw
        assert res.objective_j == pytest.approx(15.0)


def test_min_feasible_budget_fast_is_the_largest_working_set():
    p = chain5()
    assert min_feasible_budget(p) == min_feasible_ram(p) == 8


def test_min_feasible_budget_exact_with_paging_reaches_the_minimum():
    assert min_feasible_budget(chain5(), exact=True) == 8
    assert min_feasible_budget(chain5(), exact=True, strategy="remat") == 8


def _least_budget_by_scan(problem, **kw):
    lo, hi = min_feasible_ram(problem), store_all_peak(problem)
    unit = 1024    # the generator's sizes are whole KiB
    base = problem.static_bytes
    k = -(-(lo - base) // unit)
    while base + k * unit < hi:
        try:
            optimal_staged(problem.with_budgets(ram_budget_bytes=base + k * unit), **kw)
            return base + k * unit
        except InfeasibleError:
            k += 1
    return hi


def test_min_feasible_budget_exact_remat_matches_a_scan():
    seen_above_minimum = 0
    for seed in range(8):
        p = random_problem(500 + seed, T=7)
        want = _least_budget_by_scan(p, paging=False)
        got = min_feasible_budget(p, exact=True, strategy="remat")
        assert got == want
        seen_above_minimum += got > min_feasible_ram(p)
    assert seen_above_minimum >= 1      # the exact search matters on some of them
