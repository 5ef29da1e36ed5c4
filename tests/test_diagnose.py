"""What an infeasible request is told (issue #13): what the minimum consists of, no range when
the minimum is the store-all peak, and no flash hint when flash cannot help."""

import dataclasses

import pytest

import solver
from solver import InfeasibleError, Node, Problem
from solver.diagnose import infeasible_message, largest_working_set


def _node(i, name, kind, out, ws=0):
    return Node(i, name, kind, out, 0.1, 1.0, 0.01, 0.02, 0.03, 0.04, workspace_bytes=ws)


def _pair():
    """a -> g: every schedule holds both at g's compute, so the minimum is the store-all peak."""
    return Problem([_node(0, "fc1", "forward", 1000), _node(1, "fc1.backward", "backward", 500, 20)],
                   [(0, 1)], static_bytes=3000, name="pair")


def _chain():
    """a -> b -> c -> loss -> gc -> gb -> ga with skip edges: store-all > minimum."""
    names = ["a", "b", "c", "loss", "gc", "gb", "ga"]
    kinds = ["forward"] * 3 + ["loss"] + ["backward"] * 3
    nodes = [_node(i, n, k, 100 * (i + 1)) for i, (n, k) in enumerate(zip(names, kinds))]
    edges = [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 6), (2, 4), (1, 5), (0, 6)]
    return Problem(nodes, edges, static_bytes=50, name="chain")


def test_minimum_equal_to_peak_offers_no_range():
    p = _pair().with_budgets(ram_budget_bytes=4000)
    assert solver.min_feasible_ram(p) == solver.store_all_peak(p) == 3000 + 1000 + 500 + 20
    with pytest.raises(InfeasibleError) as e:
        solver.solve(p, strategy="poet", time_limit_s=10)
    msg = str(e.value)
    assert "between" not in msg and " to " not in msg.split("store-all")[-1]
    assert "store-all needs the same, so 4,520 B is what every schedule needs" in msg
    # what it is made of: static plus the largest working set, and its layer
    assert "static 3,000 B plus the largest single working set, 1,520 B, of node 1 " \
           "('fc1.backward'" in msg


def test_ram_bound_with_a_flash_budget_gets_no_flash_hint():
    p = _chain()
    lo = solver.min_feasible_ram(p)
    q = p.with_budgets(ram_budget_bytes=lo - 1, flash_budget_bytes=10_000)
    msg = infeasible_message(q, "poet", f"ram_budget_bytes {lo - 1} is below the minimum")
    assert "flash" not in msg.split("strategy 'poet' reaches")[0].lower()
    assert "relax" not in msg
    hi = solver.store_all_peak(p)
    assert f"from {lo:,} to {hi:,} B can work" in msg


def test_flash_bound_request_names_the_flash_budget():
    p = _chain()
    lo = solver.min_feasible_ram(p)
    q = p.with_budgets(ram_budget_bytes=lo, flash_budget_bytes=1)
    msg = infeasible_message(q, "poet", "the MILP has no schedule")
    assert msg.endswith("or relax flash_budget_bytes")


def test_largest_working_set_by_hand():
    p = _chain()
    # node 6 (ga): operands gb (600) and a (100), output 700 -> 1,400; node 5 (gb): gc 500 + b 200
    # + 600 = 1,300; node 4 (gc): loss 400 + c 300 + 500 = 1,200
    assert largest_working_set(p) == (6, 1400)
    assert solver.min_feasible_ram(p) == 50 + 1400


def test_static_split_is_shown_only_when_it_adds_up():
    p = _pair()
    good = dataclasses.replace(p, extra={"static_breakdown": {"trained_params": 2000,
                                                               "optimizer_state": 1000}})
    msg = infeasible_message(good, "poet", "x")
    assert "static 3,000 B (trained params 2,000 B, optimizer state 1,000 B)" in msg
    bad = dataclasses.replace(p, extra={"static_breakdown": {"trained_params": 7}})
    assert "trained params" not in infeasible_message(bad, "poet", "x")
