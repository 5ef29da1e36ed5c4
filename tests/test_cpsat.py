"""The optional backends SCIP (pyscipopt) and CP-SAT (ortools) on the staged MILP: each
schedule simulated and equal to the staged brute force's optimum on small graphs; starts,
cutoffs, relaxations and the names the backends are known by."""

from __future__ import annotations

import dataclasses

import pytest

from solver import InfeasibleError, Problem, backends, simulate, store_all_peak
from solver.bruteforce_staged import optimal_staged
from solver.generators import random_problem
from solver.milp import build_milp
from solver.phases import lp_relaxation
from solver.plans import plan_to_schedule

from test_milp import chain5

OPTIONAL = [pytest.param("scip", marks=pytest.mark.skipif(
                not backends._importable("pyscipopt"), reason="pyscipopt is not installed")),
            pytest.param("cpsat", marks=pytest.mark.skipif(
                not backends._importable("ortools"), reason="ortools is not installed"))]


def _solve(problem, backend, **kw):
    model = build_milp(problem)
    res = backends.run(model.prob, backend, time_limit_s=30, threads=1, gap_rel=0.0,
                       gap_abs=0.0, **kw)
    return model, res


def _energy(problem, model):
    rep = simulate(problem, plan_to_schedule(problem, model.plan()))
    assert rep.peak_ram_bytes <= problem.ram_budget_bytes
    assert rep.energy_j == pytest.approx(model.energy_value_j(), rel=1e-6)
    return rep.energy_j


@pytest.mark.parametrize("backend", OPTIONAL)
@pytest.mark.parametrize("c0,expected", [(3.0, 15.0), (1.0, 12.0)])
def test_chain5_by_hand(backend, c0, expected):
    p = chain5(c0=c0)           # page f0 out and in (2 J) or recompute it (c0), whichever is less
    model, res = _solve(p, backend)
    assert res.has_solution
    assert _energy(p, model) == pytest.approx(expected, rel=1e-9)
    if backend == "scip":
        assert res.status == "optimal" and res.bound == pytest.approx(res.objective, abs=1e-6)
    else:                       # CP-SAT's bound is of its rounded model: never reported as one
        assert res.status == "feasible" and res.bound is None


@pytest.mark.parametrize("backend", OPTIONAL)
@pytest.mark.parametrize("seed", range(4))
def test_random_dags_match_the_staged_bruteforce(backend, seed):
    p = random_problem(100 + seed, T=4 + seed)
    try:
        best = optimal_staged(p).energy_j
    except InfeasibleError:
        best = None
    model, res = _solve(p, backend)
    if best is None:
        assert not res.has_solution
        return
    assert res.has_solution, res.message
    assert _energy(p, model) == pytest.approx(best, rel=1e-6)


@pytest.mark.parametrize("backend", OPTIONAL)
def test_start_and_cutoff_keep_the_optimum(backend):
    p = random_problem(103, T=7)
    best = optimal_staged(p).energy_j
    model = build_milp(p)
    lp_units, _ = lp_relaxation(model, "highs", 30.0, 1)
    # the optimum itself, found by HiGHS, as start; the cutoff a hair above it
    backends.run(model.prob, "highs", time_limit_s=30, gap_rel=0.0, gap_abs=0.0)
    opt_units = model.overhead_value()
    assert model.energy_value_j() == pytest.approx(best, rel=1e-6)
    res = backends.run(model.prob, backend, time_limit_s=30, threads=1, gap_rel=0.0,
                       gap_abs=0.0, start=True, cutoff=opt_units + 1e-6)
    assert res.has_solution, res.message
    assert _energy(p, model) == pytest.approx(best, rel=1e-6)
    assert lp_units <= opt_units + 1e-9


@pytest.mark.parametrize("backend", OPTIONAL)
def test_relaxation_equals_highs_lp(backend):
    p = random_problem(104, T=8)
    model = build_milp(p)
    ref, _ = lp_relaxation(model, "highs", 30.0, 1)
    got, _ = lp_relaxation(model, backend, 30.0, 1)
    assert ref is not None and got == pytest.approx(ref, rel=1e-6, abs=1e-9)


def test_names_and_availability():
    avail = backends.available_backends()
    for name, module in (("scip", "pyscipopt"), ("cpsat", "ortools")):
        assert (name in avail) == backends._importable(module)
        assert name not in backends.BACKENDS        # solve() does not offer them
    with pytest.raises(ValueError, match="backend must be one of .*scip, cpsat, got 'glpk'"):
        backends.resolve_backend("glpk")


# ---- the interval model of recomputation (CP-SAT's own) ------------------------------------------
def _remat_only(problem):
    """The problem with paging priced out of reach (1 MJ a page), so the unrestricted brute
    force finds the recompute-only optimum (or nothing below 1 MJ when none fits)."""
    nodes = [dataclasses.replace(n, pagein_j=1e6, pageout_j=1e6) for n in problem.nodes]
    return Problem(nodes, problem.edges, static_bytes=problem.static_bytes,
                   ram_budget_bytes=problem.ram_budget_bytes)


needs_ortools = pytest.mark.skipif(not backends._importable("ortools"),
                                   reason="ortools is not installed")


@needs_ortools
@pytest.mark.parametrize("seed", [2, 9, 17])
def test_remat_intervals_equal_the_unrestricted_bruteforce(seed):
    from solver.bruteforce import optimal_unrestricted
    from solver.cpsat import remat_intervals
    p = _remat_only(random_problem(seed, T=4 + seed % 4, budget_frac=0.05))
    best, best_sched = optimal_unrestricted(p)
    assert best < 1e6 and best > p.store_all_energy_j        # recomputation is needed
    res = remat_intervals(p, time_limit_s=20, threads=1)
    assert res.status == "optimal"
    rep = simulate(p, res.schedule)                           # a valid schedule within budget
    assert rep.peak_ram_bytes <= p.ram_budget_bytes and rep.n_page_in == 0
    assert rep.energy_j == pytest.approx(best, rel=1e-9)
    assert res.bound_j <= rep.energy_j and res.bound_j == pytest.approx(best, rel=1e-6)
    hinted = remat_intervals(p, time_limit_s=20, threads=1, start=best_sched)
    assert hinted.report.energy_j == pytest.approx(best, rel=1e-9)


@needs_ortools
def test_remat_intervals_limits_and_refusals():
    from solver.cpsat import remat_intervals
    p = _remat_only(random_problem(17, T=5, budget_frac=0.05))
    assert store_all_peak(p) > p.ram_budget_bytes
    # one compute per node: store-all only, which does not fit
    assert remat_intervals(p, max_computes=1, threads=1).status == "infeasible"
    assert remat_intervals(p, extra_slots=0, threads=1).status == "infeasible"
    with pytest.raises(ValueError, match="runtime_budget_s must be None"):
        remat_intervals(p.with_budgets(runtime_budget_s=1.0))
    with pytest.raises(ValueError, match="max_computes must be"):
        remat_intervals(p, max_computes=0)


@pytest.mark.parametrize("backend", OPTIONAL)
def test_an_infeasible_milp_and_progress_lines(backend):
    p = chain5()
    model = build_milp(p, remat=False, paging=False)    # nothing fits 8 bytes without either
    res = backends.run(model.prob, backend, time_limit_s=30, threads=1)
    # SCIP proves it; CP-SAT's INFEASIBLE is of its rounded model, so it claims no proof
    assert res.status == ("infeasible" if backend == "scip" else "no-solution")
    lines: list[str] = []
    # continuous keep columns: with binary ones both solvers finish in presolve, no incumbent line
    model = build_milp(chain5(c0=3.0), integer_keep=False)
    res = backends.run(model.prob, backend, time_limit_s=30, threads=1, progress=lines.append)
    assert res.has_solution and _energy(p, model) == pytest.approx(15.0)
    assert any(ln.startswith(f"{backend}: incumbent") for ln in lines)
    assert res.trajectory and all(a[0] <= b[0] for a, b in zip(res.trajectory, res.trajectory[1:]))
