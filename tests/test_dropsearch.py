"""solver.dropsearch: its byte count against the simulator, hand-counted optima, and the schedule
it adds to a MILP solve (on BERT, where it beats DTR)."""

import random

import pytest

from solver import Node, Problem, solve
from solver.bruteforce import optimal_unrestricted
from solver.dropsearch import DropSearch, drop_search
from solver.generators import random_problem
from solver.plans import plan_energy, plan_to_schedule
from solver.simulate import simulate
from solver.strategies import get_strategy


def node(i, kind, out, cj, *, pi=100.0, po=100.0, ws=0):
    return Node(i, f"n{i}", kind, out, compute_s=cj / 10, compute_j=cj, pagein_s=pi / 10,
                pagein_j=pi, pageout_s=po / 10, pageout_j=po, workspace_bytes=ws)


def four(budget=200, c0=1.0, po0=2.0, pi0=2.0):
    """f0 -> f1 -> loss -> bwd, bwd also reads f0; at 200 bytes f0 must leave RAM before the loss
    and come back for bwd (store-all: c0 + 2 + 3 + 4 J)."""
    nodes = [node(0, "forward", 100, c0, po=po0, pi=pi0), node(1, "forward", 100, 2.0),
             node(2, "loss", 10, 3.0), node(3, "backward", 10, 4.0)]
    return Problem(nodes, [(0, 1), (1, 2), (2, 3), (0, 3)], ram_budget_bytes=budget)


@pytest.mark.parametrize("c0, po0, pi0, remat, paging, want", [
    (1.0, 2.0, 2.0, True, True, 11.0),      # 10 J + recompute f0 (1 J), not paging it (4 J)
    (10.0, 1.0, 1.0, True, True, 21.0),     # 19 J + paging (2 J), not recomputing (10 J)
    (10.0, 1.0, 1.0, True, False, 29.0),    # remat only: 19 J + the recompute
    (1.0, 2.0, 2.0, False, True, 14.0),     # paging only: 10 J + the page-out and page-in
])
def test_hand_counted_four(c0, po0, pi0, remat, paging, want):
    p = four(c0=c0, po0=po0, pi0=pi0)
    plan = drop_search(p, remat=remat, paging=paging)
    rep = simulate(p, plan_to_schedule(p, plan))
    assert rep.energy_j == pytest.approx(want) == plan_energy(p, plan)
    assert rep.peak_ram_bytes <= 200


def test_holds_a_dropouts_input_instead_of_its_output():
    """f1 (200 B, 0.1 J) is read by the backward; its input f0 (100 B, 5 J) only by f1. At the
    loss (workspace 200 B) f1 cannot stay, f0 can: hold f0 and recompute f1 from it (+0.1 J),
    not f0 and f1 (+5.1 J), nor page f1 (+200 J). Store-all is 8.1 J; the brute force agrees."""
    nodes = [node(0, "forward", 100, 5.0), node(1, "forward", 200, 0.1),
             node(2, "forward", 10, 1.0), node(3, "loss", 10, 1.0, ws=200),
             node(4, "backward", 10, 1.0)]
    p = Problem(nodes, [(0, 1), (1, 2), (2, 3), (3, 4), (1, 4)], ram_budget_bytes=350)
    plan = drop_search(p)
    rep = simulate(p, plan_to_schedule(p, plan))
    assert rep.energy_j == pytest.approx(8.2)
    assert optimal_unrestricted(p)[0] == pytest.approx(8.2)
    assert plan.stages[4] == ((1, "compute"), (4, "compute"))


def _random_modes(ds: DropSearch, rng: random.Random) -> dict:
    return {i: rng.choice(allowed) for i, allowed in ds.allowed.items() if rng.random() < 0.5}


@pytest.mark.parametrize("seed", range(60))
def test_byte_count_is_the_simulators(seed):
    """The search's own walk gives the simulator's peak, and its overflow is 0 exactly when the
    simulator accepts the schedule under the budgets (random graphs, random choices; a flash
    budget on every third)."""
    p = random_problem(seed, 8 + seed % 12)
    if seed % 3 == 0:
        p = p.with_budgets(flash_budget_bytes=4 * 1024)
    ds = DropSearch(p)
    rng = random.Random(seed)
    for _ in range(5):
        plan = ds.plan(_random_modes(ds, rng))
        sched = plan_to_schedule(p, plan)
        free = simulate(p, sched, check_budgets=False)
        over, peak = ds.overflow(plan)
        assert peak == free.peak_ram_bytes
        assert (over == 0) == (not free.over_budget)


@pytest.mark.parametrize("seed", range(40))
def test_plans_fit_and_never_beat_the_optimum(seed):
    """Whatever it returns fits the budget and costs at least the unrestricted optimum."""
    p = random_problem(seed, 8 + seed % 5)
    plan = drop_search(p)
    if plan is None:
        return
    rep = simulate(p, plan_to_schedule(p, plan))
    assert rep.energy_j >= optimal_unrestricted(p)[0] * (1 - 1e-9)


def test_a_long_chain_needs_no_recursion():
    """A 2,000-node chain recomputes chains hundreds of nodes long without a RecursionError."""
    p = random_problem(3, 2000, shape="chain", budget_frac=0.1)
    plan = drop_search(p, max_evals=300)
    if plan is not None:
        simulate(p, plan_to_schedule(p, plan))


@pytest.fixture(scope="module")
def bert4():
    pytest.importorskip("torch")
    from poet import zoo
    from poet._extract import extract
    from poet.costs import make_problem
    from solver import min_feasible_ram, store_all_peak
    model, loss_fn, x, y = zoo.get("bert", batch_size=1, num_layers=4)
    p = make_problem(extract(model, loss_fn, x, y), "nrf52840")
    lo, hi = min_feasible_ram(p), store_all_peak(p)
    return p.with_budgets(ram_budget_bytes=lo + (hi - lo) // 2)


def test_beats_dtr_on_layer_level_bert(bert4):
    """4-block layer-level BERT on an nRF52840 at 50% of its range: DTR +8.1% over store-all,
    this search +4.5% (the MILP's best after 400 s was +4.3%)."""
    from solver.starts import run_baseline, run_drop_search
    e0 = bert4.store_all_energy_j
    dtr = run_baseline(bert4, "dtr")[1].energy_j
    sched, rep = run_drop_search(bert4, get_strategy("remat"), {}, 60.0, None)
    assert rep.energy_j / e0 - 1 < 0.05 < dtr / e0 - 1
    # the drop search's 5% of 60 s is 3 s, the whole search here; a 3% gap ends the solve once
    # the LP bound (about +2%) is in, instead of after 60 s of MILP
    res = solve(bert4, strategy="remat", time_limit_s=60, threads=1, gap=0.03)
    assert res.baselines_j["drop_search"] == pytest.approx(rep.energy_j)   # the whole search
    assert res.objective_j <= rep.energy_j * (1 + 1e-12)
