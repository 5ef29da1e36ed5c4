"""solver.baselines: every schedule passes the simulator; hand-traced runs of each heuristic."""

import pytest

import solver
from solver import InfeasibleError, Node, Problem
from solver.baselines import BASELINES, dtr, get_baseline, greedy_paging, sqrtn
from solver.baselines.sqrtn import checkpoint_plan
from solver.generators import random_problem

OURS = ("store_all", "sqrtn", "dtr", "greedy_paging")


def node(i, kind, out, cj, *, pi=100.0, po=100.0, ws=0):
    return Node(i, f"n{i}", kind, out, compute_s=cj / 10, compute_j=cj, pagein_s=pi / 10,
                pagein_j=pi, pageout_s=po / 10, pageout_j=po, workspace_bytes=ws)


def four(budget=200, c0=1.0, po0=2.0, pi0=2.0):
    """f0 -> f1 -> loss -> bwd, bwd also reads f0; store-all peaks at 210 (the loss with f0 and
    f1 resident), so at 200 bytes f0 must leave RAM before the loss and return for bwd."""
    nodes = [node(0, "forward", 100, c0, po=po0, pi=pi0), node(1, "forward", 100, 2.0),
             node(2, "loss", 10, 3.0), node(3, "backward", 10, 4.0)]
    return Problem(nodes, [(0, 1), (1, 2), (2, 3), (0, 3)], ram_budget_bytes=budget)


def test_registry():
    assert set(OURS) <= set(BASELINES)
    assert get_baseline("dtr") is dtr and BASELINES["store_all"] is solver.store_all
    with pytest.raises(ValueError, match="unknown baseline 'belady'.*greedy_paging"):
        get_baseline("belady")


@pytest.mark.parametrize("name", OURS)
def test_every_schedule_passes_the_simulator(name):
    fn = BASELINES[name]
    fits = 0
    for seed in range(30):
        for frac in (0.0, 0.25, 0.5, 0.75, 1.0):
            p = random_problem(seed, T=5 + seed % 20, budget_frac=frac)
            try:
                s = fn(p)
            except InfeasibleError as e:
                assert name != "greedy_paging", e   # paging always reaches min_feasible_ram
                assert "budget" in str(e)
                continue
            fits += 1
            rep = solver.simulate(p, s)   # budgets enforced
            assert rep.peak_ram_bytes <= p.ram_budget_bytes
            assert s.strategy == name and s.problem_fingerprint == p.fingerprint
            assert s.predicted == rep.predicted()
            assert rep.n_compute >= p.T
    assert fits >= 30   # at least the budget at store-all's peak fits every strategy


def test_store_all_cannot_but_dtr_and_greedy_paging_can():
    p = four()
    with pytest.raises(InfeasibleError, match="210"):
        solver.store_all(p)
    assert dtr(p).predicted["peak_ram_bytes"] <= 200
    assert greedy_paging(p).predicted["peak_ram_bytes"] <= 200
    # and on generated problems wherever the budget is below store-all's peak
    beaten = 0
    for seed in range(40):
        p = random_problem(seed, T=12, budget_frac=0.5)
        if solver.store_all_peak(p) <= p.ram_budget_bytes:
            continue
        greedy_paging(p)   # never infeasible with unlimited flash
        try:
            dtr(p)
            beaten += 1
        except InfeasibleError:
            pass
    assert beaten >= 20


def test_dtr_hand_traced():
    p = four()
    s = dtr(p)
    assert s.instructions == [("compute", 0), ("compute", 1), ("free", 0), ("compute", 2),
                              ("free", 1), ("compute", 0), ("compute", 3), ("free", 0),
                              ("free", 2), ("free", 3)]
    assert s.predicted["energy_j"] == pytest.approx(1 + 2 + 3 + 4 + 1)
    assert s.predicted["peak_ram_bytes"] == 200


def test_dtr_evicts_the_cheapest_per_byte_and_staleness():
    # a (1 J) and b (100 J) are the same size; when d needs room, a is cheaper to recompute
    # (and staler) so DTR evicts a, and recomputes it for e
    nodes = [node(0, "forward", 100, 1.0), node(1, "forward", 100, 100.0),
             node(2, "forward", 100, 1.0), node(3, "backward", 1, 1.0),
             node(4, "backward", 1, 1.0), node(5, "backward", 1, 1.0)]
    p = Problem(nodes, [(2, 3), (0, 4), (1, 5)], ram_budget_bytes=300)
    s = dtr(p)
    assert s.instructions[:5] == [("compute", 0), ("compute", 1), ("compute", 2), ("free", 0),
                                  ("compute", 3)]
    assert s.instructions.count(("compute", 0)) == 2
    assert s.instructions.count(("compute", 1)) == 1
    assert s.predicted["energy_j"] == pytest.approx(105.0 + 1.0)
    # Belady on the same problem evicts the farthest next use instead: b (read by node 5)
    g = greedy_paging(p)
    assert g.instructions[:5] == [("compute", 0), ("compute", 1), ("compute", 2),
                                  ("page_out", 1), ("free", 1)]
    assert ("page_in", 1) in g.instructions and g.count("page_out") == 1
    assert g.predicted["energy_j"] == pytest.approx(105.0 + 200.0)


def test_greedy_paging_hand_traced():
    p = four(c0=5.0, po0=1.0, pi0=0.5)
    s = greedy_paging(p)
    assert s.instructions == [("compute", 0), ("compute", 1), ("page_out", 0), ("free", 0),
                              ("compute", 2), ("free", 1), ("page_in", 0), ("compute", 3),
                              ("free", 0), ("free", 2), ("free", 3)]
    assert s.predicted["energy_j"] == pytest.approx(5 + 2 + 3 + 4 + 1 + 0.5)
    assert s.predicted["peak_flash_bytes"] == 100


def test_greedy_paging_respects_a_flash_budget():
    p = four(c0=5.0, po0=1.0, pi0=0.5)
    with pytest.raises(InfeasibleError, match="flash in use 0 of 99"):
        greedy_paging(p.with_budgets(flash_budget_bytes=99))
    s = greedy_paging(p.with_budgets(flash_budget_bytes=100))
    assert s.count("drop_flash") == 1   # f0 leaves flash once nothing reads it
    assert solver.simulate(p.with_budgets(flash_budget_bytes=100), s).peak_flash_bytes == 100


@pytest.mark.parametrize("name", ("dtr", "greedy_paging"))
def test_without_a_budget_adaptive_baselines_are_store_all(name):
    for seed in range(10):
        p = random_problem(seed, T=15).with_budgets(ram_budget_bytes=None)
        assert BASELINES[name](p).instructions == solver.store_all(p).instructions


def chain(F, skip=None):
    """F forward layers, a loss, and F backward nodes b_k reading the gradient from above and
    f_k (its own layer's output). Every size 100 B; f_k costs k + 1 J."""
    nodes = [node(k, "forward", 100, k + 1.0) for k in range(F)]
    nodes.append(node(F, "loss", 100, 1.0))
    edges = [(k - 1, k) for k in range(1, F + 1)]
    for j, k in enumerate(reversed(range(F))):   # b_k has id F + 1 + j
        b = F + 1 + j
        nodes.append(node(b, "backward", 100, 1.0))
        edges += [(b - 1, b), (k, b)]
    if skip:
        edges.append(skip)
    return Problem(nodes, edges)


def test_sqrtn_checkpoints_of_a_chain():
    # 9 layers: segments of ceil(sqrt 9) = 3, boundaries after the 3rd and 6th; the last
    # segment (6, 7, 8) is kept whole
    cps, discard = checkpoint_plan(chain(9))
    assert cps == {2, 5} and discard == [0, 1, 3, 4]
    # an edge 1 -> 3 jumps over 2: the boundary moves to the next articulation point
    cps, discard = checkpoint_plan(chain(9, skip=(1, 3)))
    assert cps == {3, 6} and discard == [0, 1, 2, 4, 5]
    assert checkpoint_plan(chain(2)) == (set(), [])


def test_sqrtn_recomputes_each_dropped_layer_once():
    p = chain(9)
    s = sqrtn(p)
    rep = solver.simulate(p, s)
    assert s.extra["checkpoints"] == [2, 5]
    assert rep.n_recompute == 4 and rep.n_page_in == 0
    recomputed = [i for i in range(p.T) if s.instructions.count(("compute", i)) == 2]
    assert recomputed == [0, 1, 3, 4]
    base = sum(n.compute_j for n in p.nodes)
    assert rep.energy_j == pytest.approx(base + 1 + 2 + 4 + 5)
    assert rep.peak_ram_bytes < solver.store_all_peak(p)


@pytest.mark.parametrize("F, s", [(16, 4), (64, 8)])
def test_sqrtn_peak_grows_like_sqrt_n(F, s):
    # s - 1 checkpoints, the last segment of F - (s - 1) s layers, the loss and b_{F-1}'s output
    # at b_{F-1}; store-all holds all F layers there
    p = chain(F)
    assert solver.simulate(p, sqrtn(p)).peak_ram_bytes == 100 * ((s - 1) + (F - (s - 1) * s) + 2)
    assert solver.store_all_peak(p) == 100 * (F + 2)


def test_sqrtn_reports_the_peak_it_reached():
    with pytest.raises(InfeasibleError, match="RAM peak of 210 bytes"):
        sqrtn(four())   # two forward layers: nothing to checkpoint, so store-all's 210


def _digest(fn, seeds=range(20), T=14, frac=0.3):
    """sha256 of the instruction lists (or "infeasible") of `fn` on random problems."""
    import hashlib
    import json
    h = hashlib.sha256()
    for seed in seeds:
        try:
            ins = fn(random_problem(seed, T=T, budget_frac=frac)).instructions
        except InfeasibleError:
            ins = "infeasible"
        h.update(json.dumps(ins).encode())
    return h.hexdigest()


def test_schedules_are_pinned():
    # recorded from the baselines before they were moved onto solver.simulate.Machine: any
    # change to what a heuristic emits shows here
    p = random_problem(0, T=9, budget_frac=0.2)
    c, f, pi, po = "compute", "free", "page_in", "page_out"
    assert dtr(p).instructions == [
        (c, 0), (c, 1), (c, 2), (f, 1), (c, 3), (f, 0), (c, 4), (f, 3), (c, 5), (f, 2), (f, 4),
        (c, 0), (c, 1), (f, 0), (c, 6), (f, 1), (f, 5), (c, 0), (c, 7), (f, 6), (c, 8), (f, 0),
        (f, 7), (f, 8)]
    assert greedy_paging(p).instructions == [
        (c, 0), (c, 1), (c, 2), (po, 0), (f, 0), (po, 1), (f, 1), (c, 3), (c, 4), (f, 3), (c, 5),
        (f, 2), (f, 4), (pi, 1), (c, 6), (f, 1), (f, 5), (pi, 0), (c, 7), (f, 6), (c, 8), (f, 0),
        (f, 7), (f, 8)]
    assert sqrtn(random_problem(5, T=12, shape="chain", budget_frac=1.0)).instructions == [
        (c, 0), (c, 1), (f, 0), (c, 2), (f, 1), (c, 3), (c, 4), (c, 5), (f, 4), (c, 6), (f, 3),
        (f, 5), (c, 7), (f, 6), (c, 0), (c, 1), (c, 8), (f, 2), (f, 7), (c, 9), (f, 1), (f, 9),
        (c, 10), (f, 8), (c, 11), (f, 0), (f, 10), (f, 11)]
    assert _digest(dtr) == "22cf1d0fd7995eec6169327bf1a2d8b7b5c789d9b82bb55c4cc2b4a147873503"
    assert _digest(greedy_paging) == \
        "f540c24a66cb65c66a23e223b66f346ec30e029ce60a002e98dae476a78d50d2"
    assert _digest(sqrtn) == "798eaae056a983eea19ec1b9710c9294cc0d621f90aa37202dc4fa9d5e519b0f"


def test_baselines_are_the_registry_heuristics():
    from solver.strategies import HEURISTICS, REGISTRY
    assert tuple(BASELINES) == HEURISTICS
    assert all(BASELINES[n] is REGISTRY[n].function for n in HEURISTICS)


def test_planner_walks_with_the_simulator_rules():
    from solver import ScheduleError
    from solver.baselines._common import Planner
    m = Planner(four())
    m.apply("compute", 0)
    m.apply("compute", 1)
    assert m.instructions == [("compute", 0), ("compute", 1)] and m.done[:2] == [True, True]
    assert m.last_use[:2] == [2, 2] and m.clock == 2     # compute 1 read 0
    assert m.ram_room() == 0 and m.flash_room() == float("inf")
    with pytest.raises(ScheduleError, match="output already in RAM"):
        m.apply("compute", 1)
    m.free_unneeded()                 # 1 is read by the loss, 0 by bwd: nothing goes
    assert m.resident() == [0, 1] and m.needed() == [True, True, True, False]


# ---- Planner.is_needed: the lazy form of needed() (issue 14, part 3) ------------------------------
def _needed_reference(m):
    """needed() by its definition, one reverse sweep over every node (the form it replaced)."""
    p = m.problem
    need = [False] * p.T
    for x in reversed(range(p.T)):
        need[x] = any(not m.done[c] or (need[c] and not m.in_ram[c] and not m.on_flash[c])
                      for c in p.succs[x])
    return need


@pytest.mark.parametrize("seed", range(8))
def test_is_needed_matches_the_definition_along_every_baseline_walk(seed, monkeypatch):
    from solver.baselines import _common
    from solver.baselines.dtr import dtr
    from solver.baselines.greedy_paging import greedy_paging
    from solver.generators import random_problem
    checked = []
    real_apply = _common.Planner.apply

    def apply_and_check(self, op, i):
        out = real_apply(self, op, i)
        memo = {}
        got = [self.is_needed(x, memo) for x in range(self.problem.T)]
        assert got == _needed_reference(self) == self.needed()
        assert self._in_ram == set(self.resident()) and self._on_flash == set(self.flashed())
        checked.append(1)
        return out

    monkeypatch.setattr(_common.Planner, "apply", apply_and_check)
    p = random_problem(700 + seed, T=12 + seed, budget_frac=0.2)
    for fn in (dtr, greedy_paging):
        try:
            fn(p)
        except solver.InfeasibleError:
            pass
    assert len(checked) > 2 * p.T

