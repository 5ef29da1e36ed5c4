"""poet.explain: per-layer rows, the peak instruction and its resident set, by hand on a small
problem and against the simulator on a traced one."""

import json

import pytest

import solver
from poet.explain import (EXPLAIN_HEADER, explain, explain_json, explain_rows, explain_table,
                          resident_rows)
from solver import Node, Problem, Schedule, ScheduleError


def node(i, name, kind, out, cj, oj=0.7, ij=0.9, ws=0):
    return Node(i, name, kind, out, compute_s=cj / 10, compute_j=cj, pagein_s=0.01, pagein_j=ij,
                pageout_s=0.01, pageout_j=oj, workspace_bytes=ws)


@pytest.fixture
def five():
    """f0 -> f1 -> loss -> b1 -> b0; b1 also reads f1, b0 also reads f0; static 1000 B.
    Costs in J are binary fractions, so the sums below are exact."""
    nodes = [node(0, "conv1", "forward", 100, 1.0, oj=0.25, ij=0.5),
             node(1, "layer1.0.conv1", "forward", 200, 2.0, ws=50),
             node(2, "loss", "loss", 10, 0.5),
             node(3, "layer1.0.conv1.backward", "backward", 50, 3.0),
             node(4, "conv1.backward", "backward", 30, 4.0)]
    edges = [(0, 1), (1, 2), (2, 3), (1, 3), (3, 4), (0, 4)]
    return Problem(nodes, edges, static_bytes=1000, ram_budget_bytes=2000, name="five@hand")


# conv1 is paged out and back in (for the recompute and for its gradient); layer1.0.conv1 is
# recomputed. RAM during each instruction (static 1000 B):
#  0 compute 0   1100      5 free 1      1210      10 free 2     1150
#  1 page_out 0  1100      6 page_in 0   1110      11 compute 4  1180
#  2 compute 1   1350 (200 out + 50 workspace)     12-14 frees
#  3 free 0      1300      7 compute 1   1360 <- peak: 1000 + 100 + 200 + 10 + 50 workspace
#  4 compute 2   1210      8 compute 3   1360 (a tie: the first is the peak)
#                          9 free 1      1360
MIXED = [("compute", 0), ("page_out", 0), ("compute", 1), ("free", 0), ("compute", 2),
         ("free", 1), ("page_in", 0), ("compute", 1), ("compute", 3), ("free", 1), ("free", 2),
         ("compute", 4), ("free", 0), ("free", 3), ("free", 4)]


def sched(problem, ins, strategy="custom"):
    return Schedule(ins, problem_fingerprint=problem.fingerprint, strategy=strategy,
                    ram_budget_bytes=problem.ram_budget_bytes)


def test_rows_by_hand(five):
    e = explain(five, sched(five, MIXED))
    got = [(r.id, r.name, r.kind, r.out_bytes, r.computes, r.page_outs, r.page_ins, r.at_peak,
            r.extra_j) for r in e.rows]
    assert got == [
        (0, "conv1", "forward", 100, 1, 1, 1, "RAM+flash", 0.25 + 0.5),
        (1, "layer1.0.conv1", "forward", 200, 2, 0, 0, "RAM", 2.0),
        (2, "loss", "loss", 10, 1, 0, 0, "RAM", 0.0),
        (3, "layer1.0.conv1.backward", "backward", 50, 1, 0, 0, "-", 0.0),
        (4, "conv1.backward", "backward", 30, 1, 0, 0, "-", 0.0),
    ]
    assert [(r.recompute_j, r.pageout_j, r.pagein_j) for r in e.rows[:2]] == [
        (0.0, 0.25, 0.5), (2.0, 0.0, 0.0)]
    # energy: 1 + 2 + 0.5 + 3 + 4 = 10.5 J store-all, + 2.75 J = 13.25 J
    assert e.store_all_energy_j == 10.5
    assert e.energy_j == 13.25
    assert e.extra_j == 2.75 == e.energy_j - five.store_all_energy_j
    assert (e.recomputes, e.page_outs, e.page_ins) == (1, 1, 1)
    assert [r.id for r in e.changed()] == [0, 1]


def test_peak_and_resident_set_by_hand(five):
    s = sched(five, MIXED)
    e = explain(five, s)
    assert e.peak_index == 7                       # 1360 B; instruction 8 ties and comes later
    assert e.peak_instruction == ("compute", 1)
    assert e.peak_ram_bytes == 1360
    assert [(r.what, r.id, r.bytes) for r in e.resident] == [
        ("static", None, 1000), ("tensor", 1, 200), ("tensor", 0, 100), ("tensor", 2, 10),
        ("workspace", 1, 50)]
    assert sum(r.bytes for r in e.resident) == solver.simulate(five, s).peak_ram_bytes
    assert resident_rows(e)[1] == ["layer1.0.conv1 (node 1)", "200 B", "14.7%"]
    assert resident_rows(e)[-1][0] == "workspace of layer1.0.conv1 (node 1)"


def test_rows_follow_the_step_not_the_ids():
    """Two independent inputs computed in the order 1, 0: the rows come in that order."""
    nodes = [node(0, "a", "forward", 8, 1.0), node(1, "b", "forward", 16, 1.0),
             node(2, "loss", "loss", 4, 1.0)]
    p = Problem(nodes, [(0, 2), (1, 2)], static_bytes=0)
    e = explain(p, sched(p, [("compute", 1), ("compute", 0), ("compute", 2)]))
    assert [r.name for r in e.rows] == ["b", "a", "loss"]
    # the peak is the last compute: 16 + 8 + 4 B, everything resident, largest first
    assert e.peak_index == 2
    assert [(r.what, r.id) for r in e.resident] == [("static", None), ("tensor", 1),
                                                    ("tensor", 0), ("tensor", 2)]


def test_table_shows_every_row_or_only_the_changed(five):
    e = explain(five, sched(five, MIXED))
    rows = explain_rows(e)
    assert len(rows) == 5 and len(rows[0]) == len(EXPLAIN_HEADER)
    assert rows[0] == ["0", "conv1", "forward", "100 B", "1", "1", "1", "RAM+flash", "750 mJ"]
    assert rows[1][-1] == "2.00 J" and rows[2][-1] == "-"
    assert [r[1] for r in explain_rows(e, only_changed=True)] == ["conv1", "layer1.0.conv1"]
    text = explain_table(e)
    for name in ("conv1.backward", "layer1.0.conv1.backward", "loss"):
        assert any(line.split()[1:2] == [name] for line in text.splitlines())
    assert "instruction 7 of 15 (compute 1, 'layer1.0.conv1'): 1.3 KiB (1,360 B)" in text
    assert "13.2 J = store-all 10.5 J + 2.75 J (+26.190%)" in text
    short = explain_table(e, only_changed=True)
    assert "conv1.backward" not in short.split("\n\n")[0]
    assert "2 differ from store-all" in short


def test_store_all_adds_nothing(five):
    e = explain(five, solver.store_all(five))
    assert all(not r.differs and r.extra_j == 0 for r in e.rows)
    assert e.energy_j == five.store_all_energy_j
    assert explain_table(e, only_changed=True).splitlines()[1] == "(every node as in store-all)"


def test_json_is_plain_standard_json(five):
    e = explain(five, sched(five, MIXED))
    d = json.loads(json.dumps(explain_json(e), allow_nan=False))
    assert d["peak"]["index"] == 7 and d["peak"]["instruction"] == ["compute", 1]
    assert d["peak"]["resident"][0] == {"what": "static", "bytes": 1000, "id": None, "name": None}
    assert d["rows"][0]["recomputes"] == 0 and d["rows"][1]["recomputes"] == 1
    assert d["rows"][0]["at_peak"] == "RAM+flash"
    assert d["totals"]["extra_j"] == 2.75 and d["totals"]["page_ins"] == 1
    assert [r["id"] for r in explain_json(e, only_changed=True)["rows"]] == [0, 1]


def test_over_budget_is_explained_not_refused(five):
    tight = five.with_budgets(ram_budget_bytes=1300)
    e = explain(tight, sched(tight, MIXED))
    assert e.peak_ram_bytes == 1360
    assert e.over_budget and e.over_budget[0].startswith("RAM at instruction 2")


def test_broken_schedules_are_refused(five):
    with pytest.raises(ScheduleError, match="instruction 0"):
        explain(five, sched(five, [("compute", 1)]))
    with pytest.raises(ScheduleError, match="never computed"):
        explain(five, sched(five, [("compute", 0)]))
    other = Schedule(MIXED, problem_fingerprint="sha256:" + "0" * 64)
    with pytest.raises(ScheduleError, match="made for another problem"):
        explain(five, other)
    with pytest.raises(ValueError, match="schedule must be a solver.Schedule"):
        explain(five, MIXED)


@pytest.fixture(scope="module")
def mlp_problem():
    pytest.importorskip("torch")
    from poet.modelspec import ModelSpec, extract_problem
    _, problem = extract_problem(ModelSpec("mlp"), "nrf52840")
    return problem


def test_a_traced_model_matches_the_simulator(mlp_problem):
    """`poet inspect mlp --device nrf52840`, solved by POET under a budget store-all does not
    meet: 0.6x the store-all peak when that is feasible, else halfway between the minimum
    feasible RAM and the store-all peak."""
    p = mlp_problem
    peak, low = solver.store_all_peak(p), solver.min_feasible_ram(p)
    budget = int(0.6 * peak) if int(0.6 * peak) >= low else (low + peak) // 2
    q = p.with_budgets(ram_budget_bytes=budget)
    result = solver.solve(q, strategy="poet")
    rep = solver.simulate(q, result.schedule)
    e = explain(q, result.schedule)
    assert sorted(r.id for r in e.rows) == list(range(p.T))
    assert [r.name for r in sorted(e.rows, key=lambda r: r.id)] == [n.name for n in p.nodes]
    assert sum(r.computes for r in e.rows) == rep.n_compute
    assert (e.recomputes, e.page_outs, e.page_ins) == (rep.n_recompute, rep.n_page_out,
                                                      rep.n_page_in)
    assert e.recomputes + e.page_ins > 0, "the budget forces the schedule off store-all"
    assert e.extra_j == pytest.approx(rep.energy_j - p.store_all_energy_j, rel=1e-9, abs=1e-15)
    assert sum(r.recompute_j for r in e.rows) == pytest.approx(
        rep.split["compute_j"] - p.store_all_energy_j, abs=1e-12)
    assert sum(r.pagein_j for r in e.rows) == pytest.approx(rep.split["pagein_j"])
    assert sum(r.bytes for r in e.resident) == rep.peak_ram_bytes == e.peak_ram_bytes
    assert e.peak_index == rep.peak_index
    assert rep.ram_trace[e.peak_index] == max(rep.ram_trace)
    assert e.resident[0].bytes == p.static_bytes
