"""solver.Problem: JSON round trip, validation errors, fingerprint, atomic save."""

import json
import math

import pytest

import solver
from solver import Node, Problem, ProblemError


def node(i, kind="forward", out=100, ws=0, cj=1.0):
    return Node(i, f"n{i}", kind, out, compute_s=0.5, compute_j=cj, pagein_s=0.01,
                pagein_j=0.02, pageout_s=0.03, pageout_j=0.04, workspace_bytes=ws)


def small():
    return Problem([node(0), node(1, "loss", 4), node(2, "backward", 100, ws=50)],
                   [(0, 1), (0, 2), (1, 2)], static_bytes=1000, ram_budget_bytes=1300,
                   name="tiny")


def test_round_trip_keeps_unknown_fields(tmp_path):
    d = small().to_dict()
    d["tool"] = {"by": "someone"}
    d["nodes"][1]["color"] = "red"
    p = Problem.from_dict(d)
    path = tmp_path / "p.json"
    p.save(path)
    back = json.loads(path.read_text())
    assert back["tool"] == {"by": "someone"}
    assert back["nodes"][1]["color"] == "red"
    q = Problem.load(path)
    assert q == p and q.fingerprint == p.fingerprint
    assert q.nodes[2].workspace_bytes == 50
    assert q.preds[2] == [0, 1] and q.succs[0] == [1, 2]


def test_workspace_defaults_to_zero():
    d = small().to_dict()
    del d["nodes"][0]["workspace_bytes"]
    assert Problem.from_dict(d).nodes[0].workspace_bytes == 0


def test_fingerprint_ignores_name_and_budgets_but_not_costs():
    p = small()
    assert p.with_budgets(ram_budget_bytes=5000, name="x").fingerprint == p.fingerprint
    d = p.to_dict()
    d["nodes"][0]["compute_j"] = 1.5
    assert Problem.from_dict(d).fingerprint != p.fingerprint
    # the canonical form of DESIGN.md, computed by hand
    import hashlib
    canon = json.dumps({"nodes": p.to_dict()["nodes"], "edges": [[0, 1], [0, 2], [1, 2]],
                        "static_bytes": 1000}, sort_keys=True, separators=(",", ":"))
    assert p.fingerprint == "sha256:" + hashlib.sha256(canon.encode()).hexdigest()


def _mutate(path, value):
    d = small().to_dict()
    target = d
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return d


@pytest.mark.parametrize("path,value,message", [
    (("nodes", 1, "id"), 5, "nodes[1].id is 5"),
    (("edges",), [[0, 1], [2, 1]], "goes backwards"),
    (("edges",), [[0, 7]], "names node 7, which does not exist"),
    (("edges",), [[1, 1]], "self-loop"),
    (("nodes", 0, "out_bytes"), -1, "nodes[0].out_bytes must be >= 0"),
    (("nodes", 2, "compute_j"), -0.5, "nodes[2].compute_j must be >= 0"),
    (("nodes", 2, "pagein_s"), math.nan, "nodes[2].pagein_s must be finite"),
    (("nodes", 0, "kind"), "sideways", "allowed: forward, loss, backward"),
    (("nodes", 0, "out_bytes"), "big", "nodes[0].out_bytes must be a whole number"),
    (("static_bytes",), -3, "static_bytes must be >= 0"),
    (("ram_budget_bytes",), 1.5, "ram_budget_bytes must be a whole number"),
    (("runtime_budget_s",), 0, "runtime_budget_s must be > 0"),
    (("format",), "poet-problem/9", "this version reads 'poet-problem/1'"),
    (("nodes",), "none", "nodes is missing or not a list"),
])
def test_bad_problems_name_the_field(path, value, message):
    with pytest.raises(ProblemError, match=repr(message)[1:-1].replace("[", r"\[").replace("]", r"\]")
                       .replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        Problem.from_dict(_mutate(path, value))


def test_cycle_is_named():
    d = small().to_dict()
    d["edges"] = [[0, 1], [1, 2], [2, 1]]
    with pytest.raises(ProblemError, match=r"cycle: 1 -> 2 -> 1"):
        Problem.from_dict(d)


def test_nan_in_file_is_rejected(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps(small().to_dict()).replace('"compute_j": 1.0', '"compute_j": NaN', 1))
    with pytest.raises(ProblemError, match="not a valid problem JSON"):
        Problem.load(path)


def test_not_json(tmp_path):
    path = tmp_path / "p.json"
    path.write_text("{nodes: ")
    with pytest.raises(ProblemError, match="not a valid problem JSON"):
        Problem.load(path)


def test_failed_save_keeps_old_file(tmp_path):
    path = tmp_path / "p.json"
    small().save(path)
    before = path.read_text()
    bad = small()
    object.__setattr__(bad, "extra", {"oops": object()})  # not serialisable
    with pytest.raises(TypeError):
        bad.save(path)
    assert path.read_text() == before
    assert [f.name for f in tmp_path.iterdir()] == ["p.json"]


def test_with_budgets_rejects_unknown():
    with pytest.raises(TypeError, match="allowed"):
        small().with_budgets(ram=3)
    with pytest.raises(ProblemError, match="ram_budget_bytes must be >= 0"):
        small().with_budgets(ram_budget_bytes=-1)


def test_exports():
    assert solver.Problem is Problem
