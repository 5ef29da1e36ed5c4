"""lp_bound and min_feasible_budget."""

from __future__ import annotations

import pytest
from test_milp import BACKENDS, chain5

from solver import InfeasibleError, min_feasible_ram, store_all_peak
from solver.bounds import lp_bound, min_feasible_budget
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
