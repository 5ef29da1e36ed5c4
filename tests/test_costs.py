"""poet.costs: node prices against hand-computed numbers, and make_problem on a small graph."""

from dataclasses import dataclass

import pytest

import solver
from solver.problem import COST_FIELDS
from poet.costs import (COST_MODEL, NodeCounts, graph_to_problem, make_problem, price_node,
                        reprice, roofline_price)
from poet.graph import GraphNode, TrainingGraph
from poet.profiles import Profile, load_profile

REL = 1e-12


def toy_profile() -> Profile:
    """Round numbers so every cost below can be checked by hand."""
    return Profile(
        name="toydev", description="hand-made device for tests",
        flops_per_s=1e6, active_power_w=0.5, mem_bandwidth_bytes_per_s=1e5,
        ram_bytes=65536, flash_bytes=1 << 20, element_bytes=4, flash_storage="test card",
        flash_read_bytes_per_s=1e4, flash_write_bytes_per_s=5e3,
        flash_read_latency_s=1e-3, flash_write_latency_s=2e-3,
        flash_read_power_w=0.1, flash_write_power_w=0.2,
        sources={"compute": "hand", "memory": "hand", "flash": "hand"})


# ---- price_node -------------------------------------------------------------------------------

def test_compute_bound_node():
    # F = 2000 + 500 = 2500 FLOP -> 2.5 ms; memory 150 B / 1e5 B/s = 1.5 ms; max is 2.5 ms
    c = price_node(toy_profile(), flops=2000, extra_flops=500, bytes_read=100, bytes_written=50)
    assert c["compute_s"] == pytest.approx(2.5e-3, rel=REL)
    assert c["compute_j"] == pytest.approx(0.5 * 2.5e-3, rel=REL)            # 1.25 mJ


def test_memory_bound_node():
    # F = 100 FLOP -> 0.1 ms; memory (800 + 400) B / 1e5 B/s = 12 ms; max is 12 ms
    c = price_node(toy_profile(), flops=100, bytes_read=800, bytes_written=400)
    assert c["compute_s"] == pytest.approx(1.2e-2, rel=REL)
    assert c["compute_j"] == pytest.approx(6e-3, rel=REL)
    # a node the FLOP counter scores at 0 still costs its memory traffic
    z = price_node(toy_profile(), flops=0, bytes_read=1000, bytes_written=1000)
    assert z["compute_s"] == pytest.approx(2e-2, rel=REL) and z["compute_j"] == pytest.approx(1e-2)


def test_paging_costs():
    c = price_node(toy_profile(), flops=0, out_bytes=1000)
    assert c["pageout_s"] == pytest.approx(2e-3 + 1000 / 5e3, rel=REL)       # 0.202 s
    assert c["pageout_j"] == pytest.approx(0.2 * 0.202, rel=REL)             # 40.4 mJ
    assert c["pagein_s"] == pytest.approx(1e-3 + 1000 / 1e4, rel=REL)        # 0.101 s
    assert c["pagein_j"] == pytest.approx(0.1 * 0.101, rel=REL)              # 10.1 mJ
    assert c["compute_s"] == 0 and c["compute_j"] == 0


def test_zero_byte_output_pages_for_free():
    c = price_node(toy_profile(), flops=10, out_bytes=0)
    assert (c["pagein_s"], c["pagein_j"], c["pageout_s"], c["pageout_j"]) == (0, 0, 0, 0)


def test_builtin_profile_matches_poet_cost_model():
    """On the nRF52840, compute energy is POET's flop / FLOPS_PER_WATT and paging energy is
    (latency + bytes / throughput) * MEMORY_POWER (POET's poet/power_computation.py)."""
    m4 = load_profile("nrf52840")
    flops, out = 3_000_000, 65536
    c = price_node(m4, flops=flops, bytes_read=4 * 65536, bytes_written=out, out_bytes=out)
    poet_flops = 16283 * 100 * 1000 / 255.6237
    poet_flops_per_joule = poet_flops / (0.003328 * 3.3)
    assert c["compute_s"] == pytest.approx(flops / poet_flops, rel=1e-8)    # compute-bound
    assert c["compute_j"] == pytest.approx(flops / poet_flops_per_joule, rel=1e-8)
    assert c["pagein_j"] == pytest.approx((0.109e-3 + out / 4616.51e3) * 0.33, rel=1e-12)
    assert c["pageout_j"] == pytest.approx((0.113e-3 + out / 4440e3) * 0.33, rel=1e-12)


@pytest.mark.parametrize("kwargs, name", [
    (dict(flops=-1), "flops"),
    (dict(flops=1, extra_flops=float("nan")), "extra_flops"),
    (dict(flops=1, bytes_read=float("inf")), "bytes_read"),
    (dict(flops=1, bytes_written="10"), "bytes_written"),
    (dict(flops=1, out_bytes=True), "out_bytes"),
])
def test_price_node_rejects_bad_amounts(kwargs, name):
    with pytest.raises(ValueError, match=f"^{name} must be a finite number >= 0"):
        price_node(toy_profile(), **kwargs)


def test_price_node_needs_a_profile():
    with pytest.raises(TypeError, match="load_profile"):
        price_node("nrf52840", flops=1)


# ---- make_problem -----------------------------------------------------------------------------

def toy_graph() -> TrainingGraph:
    """A hand-built TrainingGraph: fc1 -> relu -> loss -> relu_bw -> fc1_bw (plus skips)."""
    def node(i, name, kind, flops, extra, read, written, out, workspace, module, aten=()):
        return GraphNode(id=i, name=name, kind=kind, module_path=module, flops=flops,
                         extra_flops=extra, bytes_read=read, bytes_written=written,
                         out_bytes=out, workspace_bytes=workspace, aten_nodes=list(aten))
    #              flops  extra  read  written  out  workspace
    nodes = [node(0, "fc1", "forward", 2000, 500, 100, 50, 1000, 0, "fc1", ["aten.addmm"]),
             node(1, "relu", "forward", 100, 0, 800, 400, 2000, 500, "act", ["aten.relu"]),
             node(2, "loss", "loss", 10, 0, 8, 4, 4, 0, "", ["aten.mse_loss"]),
             node(3, "relu_bw", "backward", 60000, 0, 3000, 2000, 2000, 0, "act"),
             node(4, "fc1_bw", "backward", 3000, 0, 1000, 1000, 1000, 0, "fc1")]
    edges = [(0, 1), (1, 2), (2, 3), (1, 3), (0, 4), (3, 4)]
    return TrainingGraph(name="toy", nodes=nodes, edges=edges, static_bytes=100,
                         static_breakdown={"params": 100}, granularity="layer", optimizer="sgd",
                         trainable=[], fx_graph=None, placeholders=[], loss_value="",
                         grad_values={}, num_aten_ops=5, num_nonview_ops=5)


# hand-computed on toy_profile():   compute_s = max(F / 1e6, (R + W) / 1e5)
EXPECTED_COMPUTE_S = [2.5e-3,    # max(2500/1e6, 150/1e5)
                      1.2e-2,    # max(100/1e6, 1200/1e5)
                      1.2e-4,    # max(10/1e6, 12/1e5)
                      6.0e-2,    # max(60000/1e6, 5000/1e5)
                      2.0e-2]    # max(3000/1e6, 2000/1e5)
STORE_ALL_S = 0.09462            # their sum
# store-all peak: static 100; fc1 +1000; relu +2000 (+500 workspace) -> 3600; loss +4 -> 3104;
# relu_bw +2000 -> 5104 (then relu and loss are freed: 3100); fc1_bw +1000 -> 4100
STORE_ALL_PEAK = 5104


def test_make_problem_node_costs_are_hand_sums():
    p = make_problem(toy_graph(), toy_profile())
    assert p.name == "toy@toydev"
    assert [n.compute_s for n in p.nodes] == pytest.approx(EXPECTED_COMPUTE_S, rel=REL)
    assert [n.compute_j for n in p.nodes] == pytest.approx(
        [0.5 * s for s in EXPECTED_COMPUTE_S], rel=REL)
    # paging: out 1000 B -> out 0.202 s / 40.4 mJ, in 0.101 s / 10.1 mJ;
    #         out 2000 B -> out 0.402 s / 80.4 mJ, in 0.201 s / 20.1 mJ; 4 B -> 2.8 ms, 1.4 ms
    assert [n.pageout_s for n in p.nodes] == pytest.approx([0.202, 0.402, 2.8e-3, 0.402, 0.202],
                                                           rel=REL)
    assert [n.pageout_j for n in p.nodes] == pytest.approx(
        [0.0404, 0.0804, 5.6e-4, 0.0804, 0.0404], rel=REL)
    assert [n.pagein_s for n in p.nodes] == pytest.approx([0.101, 0.201, 1.4e-3, 0.201, 0.101],
                                                          rel=REL)
    assert [n.pagein_j for n in p.nodes] == pytest.approx(
        [0.0101, 0.0201, 1.4e-4, 0.0201, 0.0101], rel=REL)
    assert [n.out_bytes for n in p.nodes] == [1000, 2000, 4, 2000, 1000]
    assert [n.workspace_bytes for n in p.nodes] == [0, 500, 0, 0, 0]
    assert [n.kind for n in p.nodes] == ["forward", "forward", "loss", "backward", "backward"]
    assert p.edges == [(0, 1), (1, 2), (2, 3), (1, 3), (0, 4), (3, 4)]
    assert p.static_bytes == 100
    assert (p.ram_budget_bytes, p.runtime_budget_s, p.flash_budget_bytes) == (None, None, None)
    assert p.extra["device"] == "toydev" and p.extra["model"] == "toy"
    assert p.extra["element_bytes"] == 4 and p.extra["cost_model"] == COST_MODEL
    assert p.nodes[0].extra == {"flops": 2000, "extra_flops": 500, "bytes_read": 100,
                                "bytes_written": 50, "module_path": "fc1",
                                "aten_nodes": ["aten.addmm"]}
    # the store-all schedule costs the sum of the compute costs
    report = solver.simulate(p, solver.store_all(p))
    assert report.energy_j == pytest.approx(0.5 * STORE_ALL_S, rel=REL)
    assert report.time_s == pytest.approx(STORE_ALL_S, rel=REL)
    assert report.peak_ram_bytes == STORE_ALL_PEAK


@pytest.mark.parametrize("ram, expected", [
    (None, None),
    ("256KiB", 262144),
    ("1.5MiB", 1572864),
    (3000, 3000),
    ("device", 65536),                       # toy_profile().ram_bytes
    ("0.5x", STORE_ALL_PEAK // 2),           # 2552
    ("0.75x", 3828),                         # floor(0.75 * 5104)
    ("1x", STORE_ALL_PEAK),
])
def test_ram_budget_forms(ram, expected):
    assert make_problem(toy_graph(), toy_profile(), ram_budget=ram).ram_budget_bytes == expected


@pytest.mark.parametrize("runtime, expected", [
    (None, None), (2.5, 2.5), ("2.5s", 2.5), ("250ms", 0.25), ("1.5x", 1.5 * STORE_ALL_S),
])
def test_runtime_budget_forms(runtime, expected):
    p = make_problem(toy_graph(), toy_profile(), runtime_budget=runtime)
    if expected is None:
        assert p.runtime_budget_s is None
    else:
        assert p.runtime_budget_s == pytest.approx(expected, rel=REL)


@pytest.mark.parametrize("flash, expected", [
    (None, None), ("device", 1 << 20), ("64KiB", 65536), (4096, 4096),
])
def test_flash_budget_forms(flash, expected):
    assert make_problem(toy_graph(), toy_profile(),
                        flash_budget=flash).flash_budget_bytes == expected


@pytest.mark.parametrize("kwargs, needle", [
    (dict(flash_budget="0.5x"), "not meaningful for flash"),
    (dict(ram_budget="lots"), "RAM budget"),
    (dict(ram_budget=0.5), "'0.5x'"),
    (dict(runtime_budget="device"), "runtime budget"),
    (dict(runtime_budget="-1s"), "runtime budget"),
])
def test_bad_budgets(kwargs, needle):
    with pytest.raises(ValueError) as e:
        make_problem(toy_graph(), toy_profile(), **kwargs)
    assert needle in str(e.value)


def test_runtime_multiple_of_zero_time_is_refused():
    g = toy_graph()
    for n in g.nodes:
        n.flops = n.extra_flops = n.bytes_read = n.bytes_written = 0
    with pytest.raises(ValueError, match="store-all time of this graph is 0 s"):
        make_problem(g, toy_profile(), runtime_budget="1.5x")


def test_bad_graph_node_is_named():
    g = toy_graph()
    g.nodes[1].flops = -5
    with pytest.raises(ValueError, match=r"graph node 1 \('relu'\): flops must be"):
        make_problem(g, toy_profile())
    g = toy_graph()
    g.nodes[2].out_bytes = 4.5
    with pytest.raises(ValueError, match=r"graph node 2 \('loss'\)"):
        make_problem(g, toy_profile())
    g = toy_graph()
    g.nodes[2].kind = "optimizer"
    with pytest.raises(solver.ProblemError, match="nodes\\[2\\].kind"):
        make_problem(g, toy_profile())
    g = toy_graph()
    g.edges.append((4, 0))
    with pytest.raises(solver.ProblemError, match="cycle|backwards"):
        make_problem(g, toy_profile())


def test_problem_round_trips_through_json(tmp_path):
    p = make_problem(toy_graph(), toy_profile(), ram_budget="0.5x", runtime_budget="1.5x",
                     flash_budget="device", name="toy-test")
    path = tmp_path / "p.json"
    p.save(path)
    q = solver.Problem.load(path)
    assert q.to_dict() == p.to_dict()
    assert q.fingerprint == p.fingerprint
    assert q.name == "toy-test"
    assert (q.ram_budget_bytes, q.flash_budget_bytes) == (2552, 1 << 20)
    assert q.runtime_budget_s == pytest.approx(1.5 * STORE_ALL_S, rel=REL)
    assert q.extra["budget_request"] == {"ram": "0.5x", "runtime": "1.5x", "flash": "device"}
    assert q.nodes[1].extra["aten_nodes"] == ["aten.relu"]


def test_make_problem_takes_a_profile_name():
    p = make_problem(toy_graph(), "m4", ram_budget="device")
    assert p.name == "toy@nrf52840" and p.ram_budget_bytes == 262144 - 32768  # usable RAM: less ram_reserve_bytes
    assert p.nodes[3].compute_s == pytest.approx(
        max(60000 / (16283 * 100 * 1000 / 255.6237), 5000 / 2.56e8), rel=1e-9)


def test_reprice_equals_pricing_the_graph_again():
    p = make_problem(toy_graph(), toy_profile(), ram_budget="0.5x")
    for device in ("mkr1000", "rpi4", "jetson_orin_nano"):
        direct = make_problem(toy_graph(), device, ram_budget="device", runtime_budget="2x")
        again = reprice(p, device, ram_budget="device", runtime_budget="2x")
        assert again.to_dict() == direct.to_dict()
        assert again.fingerprint == direct.fingerprint


def test_reprice_needs_recorded_counts():
    p = make_problem(toy_graph(), toy_profile())
    bare = solver.Problem.from_dict({**p.to_dict(), "nodes": [
        {k: v for k, v in n.to_dict().items() if k != "flops"} for n in p.nodes]})
    with pytest.raises(ValueError, match="node 0 .* has no flops"):
        reprice(bare, "nrf52840")


def test_price_node_gives_the_node_cost_fields():
    c = price_node(toy_profile(), flops=1e6, out_bytes=10)
    assert c == {"compute_s": 1.0, "compute_j": 0.5, "pagein_s": 1e-3 + 1e-3,
                 "pagein_j": 0.1 * 2e-3, "pageout_s": 2e-3 + 2e-3, "pageout_j": 0.2 * 4e-3}
    assert tuple(c) == COST_FIELDS
    node = solver.Node(id=0, name="a", kind="forward", out_bytes=10, **c)
    assert node.compute_j == 0.5 and node.pageout_s == 2e-3 + 2e-3


def test_reprice_rejects_bad_recorded_counts():
    p = make_problem(toy_graph(), toy_profile())
    bad = solver.Problem.from_dict({**p.to_dict(), "nodes": [
        {**n.to_dict(), "bytes_read": -3 if n.id == 1 else n.extra["bytes_read"]}
        for n in p.nodes]})
    with pytest.raises(ValueError, match=r"problem node 1 \('relu'\): bytes_read must be a finite"):
        reprice(bad, "nrf52840")


# ---- graph_to_problem: one conversion, any price ----------------------------------------------

def test_graph_to_problem_without_a_price_is_the_structure():
    g = toy_graph()
    p = graph_to_problem(g)
    assert p.name == "toy" and p.extra == {}
    assert all(getattr(n, f) == 0.0 for n in p.nodes for f in COST_FIELDS)
    assert [n.out_bytes for n in p.nodes] == [1000, 2000, 4, 2000, 1000]
    assert [n.workspace_bytes for n in p.nodes] == [0, 500, 0, 0, 0]
    assert p.edges == [tuple(e) for e in g.edges] and p.static_bytes == 100
    assert (p.ram_budget_bytes, p.runtime_budget_s, p.flash_budget_bytes) == (None, None, None)
    assert solver.simulate(p, solver.store_all(p)).peak_ram_bytes == STORE_ALL_PEAK
    # the counts travel with it: pricing the structure equals pricing the graph
    priced = make_problem(g, "rpi4").to_dict()
    # make_problem also records the graph's static split, which a bare problem does not carry
    assert priced.pop("static_breakdown") == g.static_breakdown
    assert reprice(p, "rpi4").to_dict() == priced


def test_graph_to_problem_takes_any_price():
    seen = []

    def price(counts):
        seen.append(counts)
        return {**dict.fromkeys(COST_FIELDS, 0.0), "compute_s": counts.flops / 1000}

    p = graph_to_problem(toy_graph(), price, name="mine", extra={"note": 1})
    assert (p.name, p.extra) == ("mine", {"note": 1})
    assert [n.compute_s for n in p.nodes] == [2.0, 0.1, 0.01, 60.0, 3.0]
    assert seen[1] == NodeCounts(flops=100, extra_flops=0, bytes_read=800, bytes_written=400,
                                 out_bytes=2000)
    with pytest.raises(ValueError, match=r"graph node 0 \('fc1'\): the price returned "
                                         r"\['compute_s'\]; it must return .* compute_j"):
        graph_to_problem(toy_graph(), lambda counts: {"compute_s": 1.0})


def test_make_problem_is_graph_to_problem_with_the_roofline_price():
    g, prof = toy_graph(), toy_profile()
    p = make_problem(g, prof, ram_budget="0.5x")
    q = graph_to_problem(g, roofline_price(prof), name=p.name, extra=p.extra)
    assert q.fingerprint == p.fingerprint and q.name == p.name
    assert q.with_budgets(ram_budget_bytes=p.ram_budget_bytes).to_dict() == p.to_dict()


def test_node_counts_are_checked_and_plain():
    import numpy as np

    c = NodeCounts(flops=np.int64(3), extra_flops=np.float64(0.5), bytes_read=2, bytes_written=1,
                   out_bytes=8)
    assert type(c.flops) is int and type(c.extra_flops) is float
    with pytest.raises(ValueError, match="^out_bytes must be a finite number >= 0"):
        NodeCounts(flops=1, out_bytes=-1)
    with pytest.raises(TypeError, match="load_profile"):
        roofline_price("rpi4")


# ---- any object with the TrainingGraph attributes works (duck typing) --------------------------

@dataclass
class _Node:
    id: int
    name: str
    kind: str
    flops: int
    extra_flops: int
    bytes_read: int
    bytes_written: int
    out_bytes: int
    workspace_bytes: int


@dataclass
class _Graph:
    nodes: list
    edges: list
    static_bytes: int
    name: str


def test_duck_typed_graph():
    g = _Graph(nodes=[_Node(0, "a", "forward", 1000, 0, 0, 0, 10, 0),
                      _Node(1, "b", "loss", 0, 0, 500, 500, 4, 0)],
               edges=[(0, 1)], static_bytes=0, name="duck")
    p = make_problem(g, toy_profile())
    assert [n.compute_s for n in p.nodes] == pytest.approx([1e-3, 1e-2], rel=REL)
    assert "module_path" not in p.nodes[0].extra
    del g.nodes[1].bytes_read
    with pytest.raises(ValueError, match="graph node 1 has no bytes_read"):
        make_problem(g, toy_profile())


# ---- a traced model ---------------------------------------------------------------------------

def test_extracted_mlp_on_nrf52840():
    """Costs of a really traced step follow the formulas with the nRF52840's numbers."""
    torch = pytest.importorskip("torch")
    import poet

    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    graph = poet.extract(model, torch.nn.MSELoss(), torch.randn(2, 8), torch.randn(2, 4))
    p = make_problem(graph, "nrf52840", ram_budget="0.5x", runtime_budget="1.5x")
    assert p.name == f"{graph.name}@nrf52840" and p.T == graph.T
    assert p.edges == [tuple(e) for e in graph.edges] and p.static_bytes == graph.static_bytes
    flops_per_s, bandwidth, watts = 16283 * 100 * 1000 / 255.6237, 2.56e8, 0.003328 * 3.3
    for gn, n in zip(graph.nodes, p.nodes):
        seconds = max((gn.flops + gn.extra_flops) / flops_per_s,
                      (gn.bytes_read + gn.bytes_written) / bandwidth)
        assert n.compute_s == pytest.approx(seconds, rel=1e-8)
        assert n.compute_j == pytest.approx(watts * seconds, rel=1e-8)
        # a zero-byte output (the first layer's backward: its gradients go to static buffers)
        # is never paged
        assert n.pagein_j == pytest.approx(0.33 * (0.109e-3 + gn.out_bytes / 4616.51e3)
                                           if gn.out_bytes else 0.0, rel=1e-12)
        assert (n.out_bytes, n.workspace_bytes) == (gn.out_bytes, gn.workspace_bytes)
    assert p.ram_budget_bytes == solver.store_all_peak(p) // 2
    assert p.runtime_budget_s == pytest.approx(1.5 * sum(n.compute_s for n in p.nodes), rel=REL)
