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
    # the canonical form of docs/formats.md, computed by hand
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


# ---- the fingerprint recipe of docs/formats.md, in standard-library Python only ---------------

_INT_FIELDS = ("id", "out_bytes", "workspace_bytes")
_COST_FIELDS = ("compute_s", "compute_j", "pagein_s", "pagein_j", "pageout_s", "pageout_j")


def documented_fingerprint(doc: dict) -> str:
    """docs/formats.md, "The fingerprint": each node with its optional fields filled in (name
    "n<id>", workspace_bytes 0) and unknown fields kept, the byte fields as JSON integers and the
    costs as floats; the edges as in the file; static_bytes (0 when absent); sorted keys, no
    spaces, sha256 hex."""
    import hashlib
    nodes = []
    for raw in doc["nodes"]:
        n = dict(raw)
        n.setdefault("name", f"n{n['id']}")
        n.setdefault("workspace_bytes", 0)
        n.update({k: int(n[k]) for k in _INT_FIELDS})
        n.update({k: float(n[k]) for k in _COST_FIELDS})
        nodes.append(n)
    canonical = {"nodes": nodes, "edges": doc.get("edges", []),
                 "static_bytes": int(doc.get("static_bytes", 0))}
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def _file_with_every_field():
    return {"format": "poet-problem/1", "name": "three", "static_bytes": 1000,
            "ram_budget_bytes": 1300, "runtime_budget_s": None, "flash_budget_bytes": None,
            "edges": [[0, 1], [0, 2], [1, 2]], "tool": {"by": "someone"},
            "nodes": [
                {"id": 0, "name": "n0", "kind": "forward", "out_bytes": 100, "workspace_bytes": 0,
                 "compute_s": 0.5, "compute_j": 1.0, "pagein_s": 0.01, "pagein_j": 0.02,
                 "pageout_s": 0.03, "pageout_j": 1e-05, "color": "red"},
                {"id": 1, "name": "loss", "kind": "loss", "out_bytes": 4, "workspace_bytes": 0,
                 "compute_s": 0.25, "compute_j": 0.0, "pagein_s": 0.0, "pagein_j": 0.0,
                 "pageout_s": 0.0, "pageout_j": 0.0},
                {"id": 2, "name": "grad", "kind": "backward", "out_bytes": 100,
                 "workspace_bytes": 50, "compute_s": 1.5e-7, "compute_j": 123456.789,
                 "pagein_s": 0.1, "pagein_j": 0.2, "pageout_s": 0.3, "pageout_j": 0.4}]}


def test_fingerprint_follows_the_documented_recipe(tmp_path):
    full = _file_with_every_field()
    sparse = json.loads(json.dumps(full))
    for n in sparse["nodes"]:
        if n["workspace_bytes"] == 0:
            del n["workspace_bytes"]      # optional, 0 when absent
    del sparse["nodes"][0]["name"]        # optional, "n<id>" when absent
    sparse["nodes"][1]["compute_j"] = 0   # a cost written as a JSON integer
    sparse["nodes"][0]["out_bytes"] = 100.0
    expected = documented_fingerprint(full)
    assert documented_fingerprint(sparse) == expected
    paths = {}
    for label, doc in (("full", full), ("sparse", sparse)):
        paths[label] = tmp_path / f"{label}.json"
        paths[label].write_text(json.dumps(doc))
    loaded = {label: Problem.load(path) for label, path in paths.items()}
    assert loaded["full"].fingerprint == loaded["sparse"].fingerprint == expected
    loaded["sparse"].save(tmp_path / "again.json")
    again = json.loads((tmp_path / "again.json").read_text())
    assert Problem.load(tmp_path / "again.json").fingerprint == expected
    assert documented_fingerprint(again) == expected
    assert again["nodes"][0]["workspace_bytes"] == 0 and again["nodes"][0]["color"] == "red"
    # budgets and name are not hashed; a problem built in code hashes as its file does
    assert loaded["full"].with_budgets(ram_budget_bytes=None, name="x").fingerprint == expected
    built = Problem([Node(**{k: v for k, v in n.items() if k in _INT_FIELDS + _COST_FIELDS
                             + ("name", "kind")}, extra={"color": "red"} if i == 0 else {})
                     for i, n in enumerate(full["nodes"])],
                    [tuple(e) for e in full["edges"]], static_bytes=1000.0)
    assert built.fingerprint == expected


def test_node_fields_are_read_as_their_file_form():
    n = Node(0, "a", "forward", 100.0, compute_s=1, compute_j=0, pagein_s=0, pagein_j=0,
             pageout_s=0, pageout_j=0, workspace_bytes=8.0)
    assert type(n.out_bytes) is int and type(n.workspace_bytes) is int
    assert all(type(getattr(n, f)) is float for f in _COST_FIELDS)
    with pytest.raises(ProblemError, match=r"nodes\[0\]\.out_bytes must be a whole number"):
        Problem([Node(0, "a", "forward", 1.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)], [])


@pytest.mark.parametrize("what", ["problem", "schedule"])
def test_hostile_json_files_get_the_loaders_error_naming_the_file(tmp_path, what):
    from solver import Schedule, ScheduleError

    load, err = (Problem.load, ProblemError) if what == "problem" else (Schedule.load, ScheduleError)
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(err, match=r"deep\.json: not a valid .* JSON file"):
        load(deep)
    bad = tmp_path / "latin1.json"
    bad.write_bytes(b'{"name": "\xff\xfe"}')
    with pytest.raises(err, match=r"latin1\.json: not a valid .* JSON file: it is not UTF-8"):
        load(bad)


# ---- totals that overflow, empty problems (issue #11) --------------------------------------------
def _with_costs(**costs):
    return Problem([Node(i, f"n{i}", k, 100, **{**dict(compute_s=0.5, compute_j=1.0,
                                                       pagein_s=0.01, pagein_j=0.02,
                                                       pageout_s=0.03, pageout_j=0.04), **costs})
                    for i, k in enumerate(("forward", "loss", "backward"))],
                   [(0, 1), (0, 2), (1, 2)], ram_budget_bytes=300)


@pytest.mark.parametrize("costs,field", [
    ({"compute_j": 1e308}, "compute_j"),                  # 3e308: the sum itself is inf
    ({"pagein_s": 1e308 / 4}, "pagein_s"),                # sum finite, times T = 3 not
    ({"pageout_j": 1e308 / 4}, "pageout_j"),
])
def test_costs_whose_totals_overflow_are_refused_naming_the_field(costs, field):
    with pytest.raises(ProblemError, match=rf"^{field}: the sum over the 3 nodes .* overflows"):
        _with_costs(**costs)
    d = small().to_dict()                      # and from a file
    for n in d["nodes"]:
        n.update(costs)
    with pytest.raises(ProblemError, match=rf"^{field}:"):
        Problem.from_dict(d)


def test_cost_fields_that_overflow_only_together_are_named_together():
    with pytest.raises(ProblemError, match=r"^compute_j \+ pagein_j \+ pageout_j: .*overflows"):
        _with_costs(compute_j=1.2e307, pagein_j=1.2e307, pageout_j=1.2e307)
    assert _with_costs(compute_j=1e300).store_all_energy_j == pytest.approx(3e300)


def test_sizes_beyond_64_bits_are_refused():
    with pytest.raises(ProblemError, match=r"^out_bytes \+ workspace_bytes: .*at most 9223372036"):
        Problem.from_dict(_mutate(("nodes", 0, "out_bytes"), 2 ** 63))
    with pytest.raises(ProblemError, match=r"^ram_budget_bytes is 18446744073709551616; at most"):
        Problem.from_dict(_mutate(("ram_budget_bytes",), 2 ** 64))


def test_scaled_costs_that_overflow_are_refused_naming_the_field():
    # each sum is finite, but 1e10 s of page-in over a store-all time of 3e-320 s is not
    from solver.milp import build_milp
    p = _with_costs(compute_s=1e-320, pagein_s=1e10)
    with pytest.raises(ProblemError, match=r"nodes\[0\]\.pagein_s relative to the store-all time"):
        build_milp(p)


def test_zero_nodes_are_refused_in_one_line(tmp_path):
    with pytest.raises(ProblemError, match=r"^nodes is empty: a problem needs at least one node"):
        Problem([], [])
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"format": "poet-problem/1", "nodes": [], "edges": []}))
    with pytest.raises(ProblemError, match=r"^nodes is empty") as e:
        Problem.load(path)
    assert "\n" not in str(e.value)


# ---- file modes and folders of the atomic writer (issue #11 item 8) ------------------------------
@pytest.fixture
def umask_027():
    import os
    before = os.umask(0o027)
    yield
    os.umask(before)


def test_new_output_gets_the_mode_the_umask_gives(tmp_path, umask_027):
    import os
    import stat
    small().save(tmp_path / "p.json")
    with open(tmp_path / "ref", "w"):          # what open() gives a new file here
        pass
    mode = stat.S_IMODE(os.stat(tmp_path / "p.json").st_mode)
    assert mode == stat.S_IMODE(os.stat(tmp_path / "ref").st_mode) == 0o640


def test_overwritten_output_keeps_its_mode(tmp_path, umask_027):
    import os
    import stat
    path = tmp_path / "p.json"
    for want in (0o644, 0o600, 0o664):
        path.write_text("old")
        os.chmod(path, want)
        small().save(path)
        assert stat.S_IMODE(os.stat(path).st_mode) == want
        assert Problem.load(path) == small()


def test_missing_output_folder_names_the_output_path(tmp_path):
    target = tmp_path / "no" / "such" / "p.json"
    with pytest.raises(FileNotFoundError) as e:
        small().save(target)
    assert str(e.value) == f"cannot write {target}: the folder {target.parent} does not exist"
    assert ".tmp" not in str(e.value)
    s = solver.Schedule([("compute", 0)])
    with pytest.raises(FileNotFoundError, match=r"cannot write .*s\.json: the folder"):
        s.save(tmp_path / "nowhere" / "s.json")
