"""solver.generators.random_problem: determinism, structure, budgets, argument checks."""

import pytest

import solver
from solver import Problem
from solver.generators import SHAPES, random_problem


def forward_edges(p):
    kinds = [n.kind for n in p.nodes]
    return [(i, j) for i, j in p.edges if kinds[i] == kinds[j] == "forward"]


def test_same_seed_same_problem_and_different_seeds_differ():
    for seed in range(20):
        a, b = random_problem(seed), random_problem(seed)
        assert a.to_dict() == b.to_dict() and a.fingerprint == b.fingerprint
    fps = {random_problem(seed, T=7).fingerprint for seed in range(20)}
    assert len(fps) == 20
    # a pinned value: the generator must not drift silently between versions
    p = random_problem(7, T=7, shape="chain", budget_frac=0.5)
    assert (p.T, p.name) == (7, "random-chain-T7-seed7")
    assert [n.kind for n in p.nodes] == ["forward"] * 3 + ["loss"] + ["backward"] * 3
    # f0 -> f1 -> f2 -> loss; b2 reads the loss and f1, b1 reads b2 and f0, b0 reads b1 and f0
    assert p.edges == [(0, 1), (0, 5), (0, 6), (1, 2), (1, 4), (2, 3), (3, 4), (4, 5), (5, 6)]
    assert [n.out_bytes // 1024 for n in p.nodes] == [4, 7, 8, 1, 4, 1, 1]
    # store-all peaks computing f2 with f0 and f1 resident; the minimum leaves out f0 (4 KiB);
    # half way between the two
    assert (p.static_bytes, p.nodes[2].workspace_bytes) == (7168, 1024)
    assert solver.store_all_peak(p) == 7168 + (4 + 7 + 8 + 1) * 1024
    assert solver.min_feasible_ram(p) == 7168 + (7 + 8 + 1) * 1024
    assert p.ram_budget_bytes == 7168 + (7 + 8 + 1) * 1024 + 2048


@pytest.mark.parametrize("shape", SHAPES)
def test_structure_of_a_training_step(shape):
    for seed in range(15):
        for T in (3, 5, 7, 8, 12, 25):
            p = random_problem(seed, T, shape=shape)
            kinds = [n.kind for n in p.nodes]
            F = kinds.count("forward")
            assert p.T == T and kinds.count("loss") == 1
            assert kinds == ["forward"] * F + ["loss"] + ["backward"] * (T - 1 - F)
            assert T - 1 - F >= F   # a backward node per layer, the rest sinks
            loss = F
            # every forward node reaches the loss; every backward node descends from it
            for i in range(F):
                assert any(j <= loss for j in p.succs[i] if kinds[j] != "backward")
            for j in range(F + 1, T):
                assert p.preds[j] and max(p.preds[j]) >= loss
            # sizes and costs
            for n in p.nodes:
                assert n.out_bytes > 0 and n.out_bytes % 1024 == 0
                assert 0 <= n.workspace_bytes <= 2048
                assert min(n.compute_j, n.compute_s, n.pagein_j, n.pagein_s,
                           n.pageout_j, n.pageout_s) > 0
            lo, hi = solver.min_feasible_ram(p), solver.store_all_peak(p)
            assert lo <= p.ram_budget_bytes <= hi
            assert p.runtime_budget_s is None and p.flash_budget_bytes is None


def test_shapes_differ_as_named():
    for seed in range(10):
        fe = forward_edges(random_problem(seed, 13, shape="chain"))
        F = len(fe) + 1
        assert fe == [(k, k + 1) for k in range(F - 1)]
        fe = forward_edges(random_problem(seed, 13, shape="skip"))
        assert any(j - i >= 2 for i, j in fe)   # a residual edge over at least one layer
        p = random_problem(seed, 13, shape="diamond")
        fe = forward_edges(p)
        assert (0, 1) in fe and (0, 2) in fe and (1, 3) in fe and (2, 3) in fe
        assert (1, 2) not in fe   # the two branches are independent


def test_budget_frac_ends_and_validation():
    p0 = random_problem(3, T=8, budget_frac=0.0)
    p1 = random_problem(3, T=8, budget_frac=1.0)
    assert p0.ram_budget_bytes == solver.min_feasible_ram(p0)
    assert p1.ram_budget_bytes == solver.store_all_peak(p1)
    assert p0.fingerprint == p1.fingerprint   # only the budget differs
    for bad, match in [(dict(T=2), "T must be"), (dict(T=4.0), "T must be"),
                       (dict(shape="ring"), "shape must be one of chain, diamond"),
                       (dict(budget_frac=1.5), "budget_frac must be"),
                       (dict(budget_frac=True), "budget_frac must be")]:
        with pytest.raises(ValueError, match=match):
            random_problem(0, **bad)
    with pytest.raises(TypeError, match="seed must be an int"):
        random_problem("0")


def test_paging_is_sometimes_cheaper_and_sometimes_dearer_than_recompute():
    cheaper = dearer = 0
    for seed in range(40):
        for n in random_problem(seed, T=9).nodes:
            if n.pagein_j + n.pageout_j < n.compute_j:
                cheaper += 1
            else:
                dearer += 1
    assert cheaper >= 20 and dearer >= 20


def test_most_problems_from_t7_have_a_budget_range_and_round_trip(tmp_path):
    ranged = sum(solver.min_feasible_ram(p) < solver.store_all_peak(p)
                 for p in (random_problem(s, T=7) for s in range(50)))
    assert ranged >= 25
    p = random_problem(11, T=9)
    p.save(tmp_path / "p.json")
    q = Problem.load(tmp_path / "p.json")
    assert q == p and q.extra["generator"]["seed"] == 11
