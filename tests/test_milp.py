"""The staged MILP: hand-checked instances, its index sets, its decoder, and agreement with the
staged brute force (and, on the slow test, with the unrestricted search)."""

from __future__ import annotations

import math
import random

import pytest

from solver import InfeasibleError, Node, Problem, backends, simulate, store_all
from solver.bruteforce_staged import optimal_staged
from solver.generators import random_problem
from solver.milp import build_milp, milp_size
from solver.plans import (
    PlanError,
    StagedPlan,
    drop_useless,
    plan_energy,
    plan_to_instructions,
    plan_to_schedule,
    schedule_to_plan,
    store_all_plan,
)
from solver.staged import staged_space

BACKENDS = [b for b in ("highs", "cbc") if b in backends.available_backends()]


def _node(i, name, kind, out, cj, *, pin=10.0, pout=10.0, cs=1.0, pins=1.0, pouts=1.0):
    return Node(i, name, kind, out, compute_s=cs, compute_j=cj, pagein_s=pins, pagein_j=pin,
                pageout_s=pouts, pageout_j=pout)


def chain5(c0=3.0, budget=8, **kw) -> Problem:
    """f0 -> f1 -> L -> b1 -> b0 with b1 reading f1 and b0 reading f0 (sizes 4,4,1,2,2 bytes).

    Store-all peaks at 11 bytes (f0, f1, L, b1 at b1's compute); every compute fits in 8. At 8
    bytes f0 cannot stay through stage 3 (f1 + L + b1 = 7 bytes are needed there), so it is
    either recomputed in stage 4 (c0 joules) or paged out and back in (1 + 1 joules)."""
    nodes = [_node(0, "f0", "forward", 4, c0, pin=1.0, pout=1.0, pins=2.0, pouts=2.0),
             _node(1, "f1", "forward", 4, 5.0),
             _node(2, "L", "loss", 1, 1.0),
             _node(3, "b1", "backward", 2, 2.0),
             _node(4, "b0", "backward", 2, 2.0)]
    edges = [(0, 1), (1, 2), (1, 3), (2, 3), (3, 4), (0, 4)]
    return Problem(nodes, edges, static_bytes=0, ram_budget_bytes=budget, name="chain5", **kw)


def solve_model(problem, backend="highs", **kw):
    model = build_milp(problem, **kw)
    res = backends.run(model.prob, backend, time_limit_s=60, gap_rel=0.0, gap_abs=0.0)
    return model, res


# ---- hand-checked instance ----------------------------------------------------------------------
def test_chain5_store_all_peak_and_minimum():
    from solver import min_feasible_ram, store_all_peak
    p = chain5()
    assert store_all_peak(p) == 11          # f0 + f1 + L + b1 = 4 + 4 + 1 + 2
    assert min_feasible_ram(p) == 8         # b0: b1 + f0 + b0, and f1: f0 + f1


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("remat,paging,c0,expected", [
    # store-all energy is c0 + 5 + 1 + 2 + 2
    (True, True, 3.0, 13 + 2),      # page f0 out and in (1 + 1) beats recomputing it (3)
    (True, True, 1.0, 11 + 1),      # recomputing f0 (1) beats paging (2)
    (True, False, 3.0, 13 + 3),     # Checkmate: recompute f0
    (False, True, 1.0, 11 + 2),     # paging only: page f0
])
def test_chain5_optimum_by_hand(backend, remat, paging, c0, expected):
    p = chain5(c0=c0)
    model, res = solve_model(p, backend, remat=remat, paging=paging)
    assert res.status == "optimal"
    sched = plan_to_schedule(p, model.plan())
    rep = simulate(p, sched)
    assert rep.energy_j == pytest.approx(expected, rel=1e-9)
    assert model.energy_value_j() == pytest.approx(expected, rel=1e-6)
    assert rep.peak_ram_bytes <= 8
    assert optimal_staged(p, remat=remat, paging=paging).energy_j == pytest.approx(expected)


def test_chain5_runtime_budget_forces_recompute():
    # paging f0 costs 2 + 2 s, recomputing it 1 s; with 3 s to spare paging no longer fits
    p = chain5(c0=3.0, runtime_budget_s=5.0 + 3.0)
    model, _ = solve_model(p)
    rep = simulate(p, plan_to_schedule(p, model.plan()))
    assert rep.energy_j == pytest.approx(16.0)
    assert rep.time_s <= 8.0
    assert optimal_staged(p).energy_j == pytest.approx(16.0)


def test_chain5_no_strategy_without_remat_or_paging():
    p = chain5()
    _, res = solve_model(p, remat=False, paging=False)
    assert res.status == "infeasible"
    with pytest.raises(InfeasibleError):
        optimal_staged(p, remat=False, paging=False)


def test_chain5_index_sets_by_hand():
    p = chain5()
    sp = staged_space(p)
    # b1 (3) has no consumer beyond the next node: never recomputed; nodes read last at:
    assert sp.recompute == (True, True, True, False, False)
    assert sp.horizon == (4, 3, 3, 4, 4)
    m = build_milp(p, forward_stages="all")
    assert sorted(m.R) == [(1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2), (4, 0)]
    assert len(m.P) == 8 and len(m.S) == 8 and sorted(m.O) == [0, 1, 2, 3]
    # by default the forward stage 1 (f1 reads f0 from the stage before: no skip) materialises
    # nothing
    m = build_milp(p)
    assert sorted(m.R) == [(2, 0), (2, 1), (3, 0), (3, 1), (3, 2), (4, 0)]
    assert len(m.P) == 7 and len(m.S) == 8
    # free positions: only consumers that may be computed in that stage, before its end
    assert sorted(m.F) == [(2, 0, 1), (3, 0, 1), (3, 1, 2)]
    off = build_milp(p, remat=False)
    assert not off.R and off.P and off.O
    off = build_milp(p, paging=False)
    assert off.R and not off.P and not off.O


def test_encode_of_optimal_plan_satisfies_every_row():
    p = chain5()
    opt = optimal_staged(p)
    model = build_milp(p)
    values = model.encode(opt.plan)
    assert values is not None and model.violations(values) == []
    obj = sum(c * values[v.name] for v, c in model.prob.objective.items())
    assert model.to_energy_j(obj) == pytest.approx(opt.energy_j)


# ---- plans and their schedules --------------------------------------------------------------------
def test_plan_to_instructions_frees_after_last_use():
    p = chain5()
    plan = StagedPlan(((( 0, "compute"),), ((1, "compute"),), ((2, "compute"),),
                       ((3, "compute"),), ((0, "page_in"), (4, "compute"))), frozenset({0}))
    ins = plan_to_instructions(p, plan)
    assert ins == [("compute", 0), ("page_out", 0), ("compute", 1), ("free", 0),
                   ("compute", 2), ("compute", 3), ("free", 1), ("free", 2),
                   ("page_in", 0), ("drop_flash", 0), ("compute", 4),
                   ("free", 0), ("free", 3), ("free", 4)]
    rep = simulate(p, plan_to_schedule(p, plan))
    assert rep.energy_j == pytest.approx(plan_energy(p, plan)) == pytest.approx(15.0)
    assert rep.peak_ram_bytes == 8


def test_plan_errors_name_stage_and_node():
    p = chain5()
    no_operand = StagedPlan(((( 0, "compute"),), ((1, "compute"),), ((2, "compute"),),
                             ((3, "compute"),), ((4, "compute"),)), frozenset())
    # f0 is kept in RAM through all stages in the minimal-residency reading: valid
    assert plan_to_instructions(p, no_operand)
    not_paged = StagedPlan(((( 0, "compute"),), ((1, "compute"),), ((2, "compute"),),
                            ((3, "compute"),), ((0, "page_in"), (4, "compute"))), frozenset())
    with pytest.raises(PlanError, match="stage 4: page_in of node 0"):
        plan_to_instructions(p, not_paged)
    wrong_end = StagedPlan(((( 0, "compute"),), ((1, "compute"),)), frozenset())
    with pytest.raises(PlanError, match="5 stages"):
        plan_to_instructions(p, wrong_end)


def test_schedule_to_plan_round_trip():
    for seed in range(6):
        p = random_problem(seed, T=6)
        plan = optimal_staged(p).plan
        back = schedule_to_plan(p, plan_to_schedule(p, plan))
        assert back == plan
    p = chain5()
    assert schedule_to_plan(p, store_all(p, check_budget=False)).counts() == {
        "recomputes": 0, "page_ins": 0, "page_outs": 0}


# ---- agreement with the staged brute force ---------------------------------------------------------
def _agree(problem, backend, **kw):
    model, res = solve_model(problem, backend, **kw)
    try:
        best = optimal_staged(problem, **kw).energy_j
    except InfeasibleError:
        best = None
    if best is None:
        assert res.status == "infeasible"
        return None
    assert res.status == "optimal"
    rep = simulate(problem, plan_to_schedule(problem, model.plan()))
    assert rep.energy_j == pytest.approx(model.energy_value_j(), rel=1e-6)
    assert rep.energy_j == pytest.approx(best, rel=1e-6)
    return rep.energy_j


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed", range(6))
def test_random_dags_match_staged_bruteforce(backend, seed):
    _agree(random_problem(100 + seed, T=4 + seed % 4), backend)


def test_binary_keep_columns_and_keepcap_rows_lose_no_plan():
    """S binary with the keepcap rows (integer_keep, the default) removes no plan: on random DAGs
    at tight budgets the staged brute force's optimal plan encodes to 0/1 values of S and F
    that meet every row, and the MILP's optimum equals the brute force's, as it does with S
    continuous and no keepcap rows."""
    from solver import min_feasible_ram, store_all_peak
    checked = shared = 0
    for seed in range(48):
        q = random_problem(700 + seed, T=5 + seed % 3)
        lo, hi = min_feasible_ram(q), store_all_peak(q)
        if hi <= lo:
            continue
        p = q.with_budgets(ram_budget_bytes=lo + (hi - lo) * (1 + seed % 3) // 4)
        try:
            opt = optimal_staged(p)
        except InfeasibleError:
            continue
        model = build_milp(p)
        shared += len(model.S) - len(set(model.S.values()))     # quiet runs merged
        assert all(v.cat == "Integer" for v in model.S.values())
        assert any(c.name.startswith("keepcap_") for c in model.prob.constraints())
        values = model.encode(opt.plan)
        assert values is not None and model.violations(values) == []
        assert {values[v.name] for v in list(model.S.values()) + list(model.F.values())} <= {0, 1}
        res = backends.run(model.prob, "highs", time_limit_s=60, gap_rel=0.0, gap_abs=0.0)
        assert res.status == "optimal"
        assert model.energy_value_j() == pytest.approx(opt.energy_j, rel=1e-6)
        cont, res = solve_model(p, integer_keep=False)
        assert res.status == "optimal" and not any(v.cat == "Integer" for v in cont.S.values())
        assert not any(c.name.startswith("keepcap_") for c in cont.prob.constraints())
        assert cont.energy_value_j() == pytest.approx(opt.energy_j, rel=1e-6)
        for m, keep in ((model, True), (cont, False)):     # milp_size counts both forms
            size = milp_size(m.space, runtime=False, integer_keep=keep)
            cons = m.prob.constraints()
            assert (size.columns, size.rows, size.nonzeros) == (
                m.n_variables, len(cons), sum(len(c) for c in cons) + len(m.prob.objective))
        checked += 1
    assert checked >= 20 and shared >= 10


def test_quiet_stages_share_one_keep_column():
    """Without recomputation or paging, f0 of chain5 is read in stages 1 and 4 only: stages 2 and
    3 neither read, materialise nor free it, so S[2..4, f0] are one column with no keep row
    between them (S[2,f0] <= S[1,f0] stays: stage 1 reads f0); f1 (read by L in stage 2 and b1 in 3) has no quiet stage. 8 (stage, node)
    keep pairs, 6 columns. The optimum (store-all at its 11-byte peak) is unchanged."""
    p = chain5(budget=11)
    m = build_milp(p, remat=False, paging=False)
    assert sorted(m.S) == [(1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2), (4, 0), (4, 3)]
    assert m.S[(2, 0)] is m.S[(3, 0)] is m.S[(4, 0)]
    assert len({v.name for v in m.S.values()}) == 6
    keeps = sorted(c.name for c in m.prob.constraints() if c.name.startswith("keep_"))
    assert keeps == ["keep_1_0", "keep_2_1"]         # keep_2_0 and keep_3_0 are gone
    assert milp_size(m.space, runtime=False).columns == m.n_variables
    res = backends.run(m.prob, "highs", time_limit_s=60, gap_rel=0.0, gap_abs=0.0)
    assert res.status == "optimal" and m.energy_value_j() == pytest.approx(
        sum(n.compute_j for n in p.nodes))


@pytest.mark.parametrize("case", ["remat", "paging", "runtime", "flash"])
def test_random_dags_match_with_options(case):
    for seed in range(3):
        p = random_problem(200 + seed, T=6)
        kw = {}
        rng = random.Random(seed)
        if case == "remat":
            kw = {"paging": False}
        elif case == "paging":
            kw = {"remat": False}
        elif case == "runtime":
            t0 = p.store_all_time_s
            p = p.with_budgets(runtime_budget_s=t0 * rng.uniform(1.0, 1.3))
        else:
            p = p.with_budgets(flash_budget_bytes=int(
                sum(n.out_bytes for n in p.nodes) * rng.uniform(0.1, 0.5)))
        _agree(p, BACKENDS[0], **kw)


def _odd_sizes(problem, budget_frac):
    """The problem with sizes in bytes that share no common unit (x 997 + 1), so the MILP's
    memory rows use a power-of-two scale; budget placed at budget_frac again."""
    from solver import min_feasible_ram, store_all_peak
    nodes = [Node(n.id, n.name, n.kind, n.out_bytes * 997 + 1, n.compute_s, n.compute_j,
                  n.pagein_s, n.pagein_j, n.pageout_s, n.pageout_j,
                  workspace_bytes=n.workspace_bytes * 997 + (n.workspace_bytes > 0))
             for n in problem.nodes]
    q = Problem(nodes, problem.edges, static_bytes=problem.static_bytes * 997)
    lo, hi = min_feasible_ram(q), store_all_peak(q)
    return q.with_budgets(ram_budget_bytes=lo + int(budget_frac * (hi - lo)))


@pytest.mark.parametrize("seed", range(4))
def test_scaled_memory_rows_with_flash_and_runtime_budgets(seed):
    p = _odd_sizes(random_problem(600 + seed, T=7), 0.2 + 0.2 * seed)
    assert build_milp(p).mem_b[0] != int(build_milp(p).mem_b[0])   # the scale is in use
    flash = int(sum(n.out_bytes for n in p.nodes) * 0.3)
    t0 = p.store_all_time_s
    for q in (p, p.with_budgets(flash_budget_bytes=flash),
              p.with_budgets(flash_budget_bytes=flash, runtime_budget_s=t0 * 1.2)):
        _agree(q, BACKENDS[0])


@pytest.mark.slow
def test_200_random_dags_against_both_bruteforces(capsys):
    """MILP == staged brute force on all 200 (both backends); against the unrestricted search
    the MILP is optimal on at least 95%. Prints the figures for the docs."""
    from solver.bruteforce import optimal_unrestricted
    differ = []
    n = 0
    for seed in range(200):
        p = random_problem(seed, T=4 + seed % 4)
        energies = [_agree(p, b) for b in BACKENDS]
        assert len(set(energies)) == 1 or all(
            math.isclose(e, energies[0], rel_tol=1e-6) for e in energies)
        e_staged = energies[0]
        try:
            e_free = optimal_unrestricted(p)[0]
        except InfeasibleError:
            e_free = None
        assert (e_staged is None) == (e_free is None)
        if e_staged is None:
            continue
        n += 1
        assert e_staged >= e_free * (1 - 1e-9)
        if not math.isclose(e_staged, e_free, rel_tol=1e-6):
            differ.append((p.name, e_staged / e_free - 1))
    with capsys.disabled():
        worst = max((d for _, d in differ), default=0.0)
        print(f"\nstaged MILP vs unrestricted optimum: {len(differ)} of {n} feasible DAGs differ"
              f" (worst +{100 * worst:.1f}%): "
              + ", ".join(f"{name} +{100 * d:.2f}%" for name, d in differ))
    assert len(differ) <= 0.05 * n


# ---- the reductions: apply / invert ----------------------------------------------------------------
def test_scale_apply_and_invert():
    from solver.reductions import Scale, memory_unit
    p = _odd_sizes(random_problem(601, T=7), 0.4)
    scaled, sc = Scale().apply(p)
    assert sc.unit_bytes == memory_unit(p) and sc.store_all_energy_j == p.store_all_energy_j
    assert scaled.b == build_milp(p).mem_b
    assert scaled.ram < sc.units(p.ram_budget_bytes - p.static_bytes) * scaled.shift + 1e-12
    assert Scale.invert(0.0, sc) == p.store_all_energy_j
    for e in (p.store_all_energy_j, 1.5 * p.store_all_energy_j):
        assert Scale.invert(sc.to_overhead(e), sc) == pytest.approx(e, rel=1e-12)
    plain, _ = Scale(objective_scale=1.0, mem_scale=False).apply(p)
    assert plain.shift == 1.0 and all(b == int(b) for b in plain.b)


def test_stage_apply_invert_and_project():
    from solver.reductions import Stage
    p = random_problem(103, T=6)
    space, back = Stage(paging=False).apply(p)
    assert back is p and not any(space.pageable) and space.horizon == staged_space(
        p, paging=False).horizon
    plan = optimal_staged(p).plan
    sched = Stage.invert(plan, p, strategy="x")
    assert sched.strategy == "x" and simulate(p, sched).energy_j == pytest.approx(
        plan_energy(p, plan), rel=1e-12)
    assert Stage.project(sched, p) == plan


def test_plan_rules_are_the_machines():
    """A plan's rules are checked by solver.simulate.Machine: its rule, with the plan's stage."""
    p = chain5()
    wrong_node_paged = StagedPlan(((( 0, "compute"),), ((1, "compute"),), ((2, "compute"),),
                                   ((3, "compute"),), ((0, "page_in"), (4, "compute"))),
                                  frozenset({1}))
    with pytest.raises(PlanError, match=r"stage 4: page_in of node 0: page_in needs the tensor "
                                        r"on flash"):
        plan_to_instructions(p, wrong_node_paged)
    with pytest.raises(PlanError, match="stage 4: page_in of node 0"):
        drop_useless(p, wrong_node_paged)
    assert schedule_to_plan(p, store_all(p, check_budget=False)) == store_all_plan(p)


def _options_by_rescan(space, t):
    """The materialisations of stage t by the definition: every live node the stage may
    materialise, then, until nothing changes, drop those that must be read in t but have no
    reader computable in t."""
    p = space.problem
    opts = {k: (space.recompute[k], space.pageable[k]) for k in range(t)
            if space.horizon[k] >= t and (space.recompute[k] or space.pageable[k])
            and space._may_materialise(t, k)}
    changed = True
    while changed:
        changed = False
        comp = {k for k, (r, _) in opts.items() if r} | {t}
        for k, (r, pg) in list(opts.items()):
            has_reader = any(j in comp for j in p.succs[k])
            r2 = r and (has_reader or not space.must_be_read(t, k, "compute"))
            p2 = pg and (has_reader or not space.must_be_read(t, k, "page_in"))
            if (r2, p2) != (r, pg):
                changed = True
                if r2 or p2:
                    opts[k] = (r2, p2)
                else:
                    del opts[k]
    return opts


@pytest.mark.parametrize("seed", range(24))
@pytest.mark.parametrize("options", [{}, {"read_in_stage": "page_in"}, {"read_in_stage": "none"},
                                     {"forward_stages": "all", "backward_remat": "all"}])
def test_staged_space_layout_is_the_definitions(seed, options):
    """staged_space's worklist layout gives the index sets of the rescan-until-stable definition."""
    p = random_problem(seed, 10 + seed % 15)
    sp = staged_space(p, **options)
    for t in range(p.T):
        assert sp._options[t] == _options_by_rescan(sp, t), t
        assert sp.live(t) == [i for i in range(t) if sp.horizon[i] >= t]
