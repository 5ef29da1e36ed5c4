"""poet.executor and poet.replay.verify: schedules executed on real tensors equal eager PyTorch, and match the simulator.

Exactness: every check below runs with torch.set_num_threads(1) and expects gradients, loss and
buffers bitwise equal to eager ``loss.backward()``: the executor performs the traced ATen calls
in the traced order whatever the schedule (recomputes and page-ins reproduce identical bytes),
so nothing in the arithmetic changes. Memory: the executor's measured RAM (unique storages) must
equal the simulator's trace at every instruction, and flash bytes the schedule's page-outs.
"""

from __future__ import annotations

import collections
import copy
import json
import os
import tempfile
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import poet
import solver
from poet import zoo
from poet.costs import make_problem
from poet.errors import ReplayError
from poet.executor import execute
from poet.flash import FlashFolder
from poet.graph import run_node
from poet.replay import verify
from poet.resolve import resolve_problem, structural_problem
from solver import Schedule, ScheduleError
from solver.baselines import get_baseline

from conftest import rnn_bitwise
from replay_schedules import mixed, page_all, recompute_all

_GRAPHS: dict = {}


# bitwise comparisons with eager need one intra-op thread (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("one_thread")


def traced(name: str, batch_size: int, **options):
    """(graph, zoo model, problem priced on rpi4), traced once per session."""
    key = (name, batch_size, tuple(sorted(options.items())))
    if key not in _GRAPHS:
        zm = zoo.get(name, batch_size=batch_size)
        graph = poet.extract(zm.model, zm.loss_fn, zm.inputs, zm.targets, **options)
        _GRAPHS[key] = (graph, zm, make_problem(graph, "rpi4"))
    return _GRAPHS[key]


def budget_between(problem, fraction: float):
    """The problem with a RAM budget `fraction` of the way from the minimum to the store-all peak."""
    lo, hi = solver.min_feasible_ram(problem), solver.store_all_peak(problem)
    return problem.with_budgets(ram_budget_bytes=int(lo + fraction * (hi - lo)))


def make_schedule(problem, strategy: str) -> Schedule:
    if strategy == "store_all":
        return solver.store_all(problem)
    if strategy == "sqrtn":
        return get_baseline("sqrtn")(problem)
    if strategy in ("dtr", "greedy_paging"):
        return get_baseline(strategy)(budget_between(problem, 0.25))
    return {"recompute_all": recompute_all, "page_all": page_all, "mixed": mixed}[strategy](problem)


def paged_bytes(problem, schedule, op: str) -> int:
    """Sum of out_bytes over the schedule's `op` instructions (hand sum, independent of the simulator)."""
    return sum(problem.nodes[i].out_bytes for o, i in schedule.instructions if o == op)


def flash_dirs() -> set[str]:
    return {p for p in os.listdir(tempfile.gettempdir()) if p.startswith("poet-flash-")}


def assert_exact(graph, zm, problem, schedule):
    """verify() passes with bitwise gradients, the simulator's RAM trace and the schedule's flash bytes."""
    report = verify(graph, schedule, zm.model, zm.inputs, zm.targets, problem=problem)
    assert report.passed, report.failures
    assert report.bitwise and report.max_abs_grad_diff == 0.0 and report.loss_diff == 0.0
    assert report.max_buffer_diff == 0.0 and report.rng_equal
    sim = solver.simulate(problem, schedule, check_budgets=False)
    assert report.measured_peak_bytes == report.predicted_peak_bytes == sim.peak_ram_bytes
    assert report.trace_equal
    assert report.measured_flash_written == paged_bytes(problem, schedule, "page_out")
    assert report.measured_flash_read == paged_bytes(problem, schedule, "page_in")
    assert report.instant_peak_bytes <= report.measured_peak_bytes
    assert report.value_mismatches == [] and report.frees_not_released == 0
    return report


FAST = [("mlp", 2), ("cnn_dropout_bn", 2), ("bert", 2), ("vgg11", 1), ("mobilenetv2", 1)]
BASELINES = ["store_all", "dtr", "greedy_paging", "sqrtn"]


@pytest.mark.parametrize("name,batch", FAST)
@pytest.mark.parametrize("strategy", BASELINES)
def test_baseline_schedules_replay_exactly(name, batch, strategy):
    graph, zm, problem = traced(name, batch)
    schedule = make_schedule(problem, strategy)
    report = assert_exact(graph, zm, problem, schedule)
    if strategy == "greedy_paging" and name != "mlp":  # mlp's minimum is its store-all peak
        assert report.n_page_in > 0 and report.measured_flash_written > 0
    if strategy in ("dtr", "sqrtn") and name != "mlp":
        assert report.n_recompute > 0


@pytest.mark.slow
@pytest.mark.parametrize("strategy", BASELINES + ["mixed"])
def test_resnet18_schedules_replay_exactly(strategy):
    graph, zm, problem = traced("resnet18", 1)
    assert_exact(graph, zm, problem, make_schedule(problem, strategy))


@pytest.mark.parametrize("name,batch", [("mlp", 2), ("cnn_dropout_bn", 2), ("bert", 1)])
@pytest.mark.parametrize("strategy", ["recompute_all", "page_all", "mixed"])
def test_extreme_schedules_recompute_and_page_everything(name, batch, strategy):
    """Every forward node (dropout and BatchNorm included) recomputed or paged for each reader."""
    graph, zm, problem = traced(name, batch)
    schedule = make_schedule(problem, strategy)
    report = assert_exact(graph, zm, problem, schedule)
    random_nodes = [n.id for n in graph.nodes if n.random]
    counts = [sum(1 for op, i in schedule.instructions if op == "compute" and i == r) for r in random_nodes]
    if strategy == "recompute_all" and random_nodes:
        assert max(counts) > 1  # dropout really was recomputed
    if strategy == "page_all":
        assert report.n_recompute == 0 and report.n_page_in > 0


def test_op_granularity_replays_exactly():
    graph, zm, problem = traced("cnn_dropout_bn", 2, granularity="op")
    assert graph.T > 21
    for strategy in ("store_all", "mixed"):
        assert_exact(graph, zm, problem, make_schedule(problem, strategy))


def test_measured_node_sizes_equal_the_extractor_figures():
    """Each node's output storages and its peak temporaries, measured while it runs, equal
    out_bytes and workspace_bytes of the graph (so the simulator's compute peak is real)."""
    for name, batch in [("cnn_dropout_bn", 2), ("bert", 2), ("mobilenetv2", 1)]:
        graph, zm, problem = traced(name, batch)
        res = execute(graph, solver.store_all(problem), copy.deepcopy(zm.model), zm.inputs, zm.targets,
                      problem=problem)
        assert res.node_out_bytes == {n.id: n.out_bytes for n in graph.nodes}
        assert res.node_workspace_bytes == {n.id: n.workspace_bytes for n in graph.nodes}
        assert any(n.workspace_bytes > 0 for n in graph.nodes)


def test_ram_trace_hand_computed_on_mlp():
    """mlp store-all: RAM during instruction k, summed by hand from the graph's byte counts."""
    graph, zm, problem = traced("mlp", 2)
    schedule = solver.store_all(problem)
    res = execute(graph, schedule, copy.deepcopy(zm.model), zm.inputs, zm.targets, problem=problem)
    resident: set[int] = set()
    expected = []
    for op, i in schedule.instructions:
        held = graph.static_bytes + sum(graph.nodes[j].out_bytes for j in resident)
        if op == "compute":
            expected.append(held + graph.nodes[i].out_bytes + graph.nodes[i].workspace_bytes)
            resident.add(i)
        else:
            expected.append(held)
            resident.discard(i)
    assert res.ram_trace == expected
    assert res.peak_ram_bytes == max(expected)
    assert res.n_compute == graph.T and res.n_recompute == 0 and res.flash_bytes_written == 0


def test_gradients_and_loss_match_eager_values():
    graph, zm, problem = traced("cnn_dropout_bn", 2)
    model = copy.deepcopy(zm.model)
    rng = torch.get_rng_state()
    res = execute(graph, recompute_all(problem), model, zm.inputs, zm.targets, problem=problem)
    eager = copy.deepcopy(zm.model)
    torch.set_rng_state(rng)
    loss = zm.loss_fn(eager(zm.inputs), zm.targets)
    loss.backward()
    assert torch.equal(res.loss, loss.detach())
    assert set(res.grads) == {n for n, _ in eager.named_parameters()}
    for n, p in eager.named_parameters():
        assert torch.equal(res.grads[n], p.grad), n
    for (n, b), (_, e) in zip(model.named_buffers(), eager.named_buffers()):
        assert torch.equal(b, e), n  # running statistics updated exactly once
    assert int(model.bn1.num_batches_tracked) == 1


def test_frees_really_release_memory():
    graph, zm, problem = traced("cnn_dropout_bn", 2)
    res = execute(graph, mixed(problem), copy.deepcopy(zm.model), zm.inputs, zm.targets, problem=problem)
    assert res.frees_not_released == 0
    assert res.scratch_bytes > 0  # RNG states and BatchNorm snapshots of recomputed nodes


def test_verify_leaves_model_grads_and_rng_untouched():
    graph, zm, problem = traced("cnn_dropout_bn", 2)
    model = copy.deepcopy(zm.model)
    model.fc.bias.grad = torch.ones_like(model.fc.bias)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    report = verify(graph, mixed(problem), model, zm.inputs, zm.targets, problem=problem)
    assert report.passed
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert torch.equal(model.fc.bias.grad, torch.ones_like(model.fc.bias)) and model.fc.weight.grad is None
    assert torch.equal(torch.get_rng_state(), rng)
    d = report.to_dict()
    assert json.loads(json.dumps(d))["passed"] is True
    assert report.lines()[0].startswith("verify PASSED")


def test_verify_fails_when_the_graph_misstates_memory():
    """A graph whose out_bytes are wrong: replay still gives eager gradients, but verify reports
    that the measured RAM differs from the prediction (the check can fail)."""
    graph, zm, _ = traced("cnn_dropout_bn", 2)
    wrong = copy.copy(graph)
    wrong.nodes = [copy.copy(n) for n in graph.nodes]
    wrong.nodes[0].out_bytes += 4
    wrong.extra = dict(graph.extra)
    problem = structural_problem(wrong)
    report = verify(wrong, solver.store_all(problem), zm.model, zm.inputs, zm.targets, problem=problem)
    assert not report.passed and report.bitwise
    assert not report.trace_equal and report.first_trace_mismatch == 0
    assert report.measured_peak_bytes == report.predicted_peak_bytes - 4
    assert any("measured RAM differs" in f for f in report.failures)


def test_verify_without_problem_uses_structure_or_recorded_device():
    graph, zm, problem = traced("mlp", 2)
    schedule = solver.store_all(problem)
    report = verify(graph, schedule, zm.model, zm.inputs, zm.targets)
    assert report.passed and not report.fingerprint_checked and report.energy_j == 0.0
    schedule.extra["device"] = "rpi4"
    report = verify(graph, schedule, zm.model, zm.inputs, zm.targets)
    assert report.passed and report.fingerprint_checked
    assert report.energy_j == pytest.approx(solver.simulate(problem, schedule).energy_j, rel=1e-12)


# --------------------------------------------------------------------------- refusals


def test_schedule_for_another_model_is_refused():
    graph, zm, problem = traced("cnn_dropout_bn", 2)
    _, _, other = traced("mlp", 2)
    foreign = solver.store_all(other)
    with pytest.raises(ReplayError, match="nodes but the traced graph"):
        execute(graph, foreign, zm.model, zm.inputs, zm.targets, problem=other)
    with pytest.raises(ReplayError, match="another problem"):
        execute(graph, foreign, zm.model, zm.inputs, zm.targets, problem=problem)
    foreign.extra["device"] = "rpi4"
    with pytest.raises(ReplayError, match="made for another graph"):
        resolve_problem(graph, foreign)
    # the same graph priced on another device is another problem too
    with pytest.raises(ReplayError, match="made for another graph"):
        resolve_problem(graph, solver.store_all(problem), device="nrf52840")


def test_broken_schedule_is_refused_before_anything_runs():
    graph, zm, problem = traced("cnn_dropout_bn", 2)
    model = copy.deepcopy(zm.model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    bad = Schedule([("compute", 1)], problem_fingerprint=problem.fingerprint)
    with pytest.raises(ScheduleError, match=r"instruction 0 \(compute 1"):
        execute(graph, bad, model, zm.inputs, zm.targets, problem=problem)
    incomplete = Schedule(solver.store_all(problem).instructions[:-3], problem_fingerprint=problem.fingerprint)
    with pytest.raises(ScheduleError, match="incomplete"):
        execute(graph, incomplete, model, zm.inputs, zm.targets, problem=problem)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_batch_of_another_shape_is_refused():
    graph, zm, problem = traced("cnn_dropout_bn", 2)
    x = torch.randn(3, 3, 16, 16)
    y = torch.zeros(3, dtype=torch.long)
    with pytest.raises(ReplayError, match=r"inputs\[0\] has shape \(3, 3, 16, 16\).*\(2, 3, 16, 16\)"):
        execute(graph, solver.store_all(problem), zm.model, x, y, problem=problem)
    with pytest.raises(ReplayError, match=r"targets\[0\].*dtype torch.int32"):
        execute(graph, solver.store_all(problem), zm.model, zm.inputs, zm.targets.int(), problem=problem)


class TwoDropouts(nn.Module):
    """Two independent dropout branches: a schedule may run them in either order."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(8, 8)
        self.b = nn.Linear(8, 8)
        self.drop_a = nn.Dropout(0.5)
        self.drop_b = nn.Dropout(0.5)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        return self.head(self.drop_a(self.a(x)) + self.drop_b(self.b(x)))


def test_random_nodes_out_of_eager_order_are_refused():
    torch.manual_seed(0)
    model, x, y = TwoDropouts(), torch.randn(4, 8), torch.tensor([0, 1, 0, 1])
    graph = poet.extract(model, F.cross_entropy, x, y)
    problem = structural_problem(graph)
    ra, rb = (graph.node(n).id for n in ("drop_a", "drop_b"))
    order = list(range(graph.T))
    # run branch b (its linear and dropout) before branch a where the graph allows it
    a_side = [graph.node("a").id, ra]
    b_side = [graph.node("b").id, rb]
    assert max(a_side) < min(b_side) or max(b_side) < min(a_side)
    first, second = (a_side, b_side) if ra < rb else (b_side, a_side)
    rest = [i for i in order if i not in first + second]
    swapped = [i for i in rest if i < min(first + second)] + second + first + \
        [i for i in rest if i > min(first + second)]
    schedule = Schedule([("compute", i) for i in swapped])
    solver.simulate(problem, schedule, check_budgets=False)  # a valid schedule...
    rng = torch.get_rng_state()
    with pytest.raises(ReplayError, match="eager \\(id\\) order"):  # ...that cannot replay dropout exactly
        execute(graph, schedule, model, x, y)
    assert torch.equal(torch.get_rng_state(), rng)
    report = verify(graph, Schedule([("compute", i) for i in order]), model, x, y)
    assert report.passed and report.bitwise


# --------------------------------------------------------------------------- flash folder


def test_flash_folder_round_trip_keeps_layout_and_sizes(tmp_path):
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    tensors = {
        "transposed": base.t(),                                 # non-contiguous
        "mask": torch.tensor([True, False, True]),
        "ints": torch.arange(5, dtype=torch.int64),
        "half": torch.ones(3, dtype=torch.float16),
        "empty": torch.empty(0, 3),
    }
    shared = torch.arange(10.0)
    tensors["shared_a"] = shared
    tensors["shared_b"] = shared[2:7]                           # view into the same storage
    with FlashFolder(tmp_path) as flash:
        folder = flash.path
        assert folder.parent == tmp_path and folder.name.startswith("poet-flash-")
        written = flash.write(3, tensors)
        # 24*4 + 3 + 5*8 + 3*2 + 0 + 10*4 (the shared storage once)
        assert written == 96 + 3 + 40 + 6 + 0 + 40
        assert (folder / "node3.bin").stat().st_size == written
        meta = json.loads((folder / "node3.json").read_text())
        assert meta["format"] == "poet-flash/1" and sum(meta["storages"]) == written
        back, nread = flash.read(3)
        assert nread == written and flash.bytes_on_flash == written
        for name, t in tensors.items():
            assert back[name].dtype == t.dtype and back[name].stride() == t.stride()
            assert torch.equal(back[name], t), name
        assert back["shared_a"].untyped_storage().data_ptr() == back["shared_b"].untyped_storage().data_ptr()
        flash.drop(3)
        assert flash.bytes_on_flash == 0 and not (folder / "node3.bin").exists()
        flash.write(4, {"x": base})
    assert not folder.exists() and list(tmp_path.iterdir()) == []


def test_corrupt_flash_file_is_detected(tmp_path):
    with FlashFolder(tmp_path) as flash:
        flash.write(0, {"x": torch.ones(8)})
        with open(flash.path / "node0.bin", "r+b") as f:
            f.truncate(12)
        with pytest.raises(ReplayError, match="has 12 bytes, its sidecar says 32"):
            flash.read(0)
        flash.write(1, {"y": torch.ones(2)})
        meta = json.loads((flash.path / "node1.json").read_text())
        meta["tensors"][0]["storage"] = 5
        (flash.path / "node1.json").write_text(json.dumps(meta))
        with pytest.raises(ReplayError, match="bad tensor entry"):
            flash.read(1)
        meta["tensors"][0].update(storage=0, dtype="os.system")
        (flash.path / "node1.json").write_text(json.dumps(meta))
        with pytest.raises(ReplayError, match="unknown dtype"):
            flash.read(1)
        (flash.path / "node0.json").write_text("{not json")
        with pytest.raises(ReplayError, match="missing or corrupt"):
            flash.read(0)


def test_flash_dir_must_exist_be_a_folder_and_be_writable(tmp_path):
    graph, zm, problem = traced("cnn_dropout_bn", 2)
    schedule = page_all(problem)
    before = flash_dirs()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        execute(graph, schedule, zm.model, zm.inputs, zm.targets, flash_dir=tmp_path / "missing")
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file, not a folder"):
        execute(graph, schedule, zm.model, zm.inputs, zm.targets, flash_dir=a_file)
    with pytest.raises(NotADirectoryError, match="file.txt is a file"):
        execute(graph, schedule, zm.model, zm.inputs, zm.targets, flash_dir=a_file / "sub")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]
    assert flash_dirs() == before


def test_unwritable_flash_dir_is_refused(tmp_path):
    graph, zm, problem = traced("cnn_dropout_bn", 2)
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        target = locked
    else:  # root writes through chmod; /sys is mounted read-only in containers
        target = Path("/sys")
        try:
            Path(tempfile.mkdtemp(dir=target)).rmdir()
            pytest.skip("running as root and /sys is writable here: no unwritable folder to test")
        except OSError:
            pass
    try:
        with pytest.raises(PermissionError, match="not writable|cannot create a folder"):
            execute(graph, page_all(problem), zm.model, zm.inputs, zm.targets, flash_dir=target)
    finally:
        if target != Path("/sys"):
            target.chmod(0o700)


def test_flash_folder_is_removed_after_success_and_after_failure(tmp_path, monkeypatch):
    graph, zm, problem = traced("cnn_dropout_bn", 2)
    schedule = page_all(problem)
    res = execute(graph, schedule, copy.deepcopy(zm.model), zm.inputs, zm.targets, flash_dir=tmp_path)
    assert res.flash_bytes_written == paged_bytes(problem, schedule, "page_out") > 0
    assert res.flash_meta_bytes > 0 and res.peak_flash_bytes > 0
    assert list(tmp_path.iterdir()) == []
    before = flash_dirs()

    def failing_read(self, node_id):
        raise OSError(f"simulated read failure of node {node_id}")

    monkeypatch.setattr(FlashFolder, "read", failing_read)
    with pytest.raises(OSError, match="simulated read failure"):
        execute(graph, schedule, copy.deepcopy(zm.model), zm.inputs, zm.targets, flash_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(OSError, match="simulated read failure"):
        execute(graph, schedule, copy.deepcopy(zm.model), zm.inputs, zm.targets)
    assert flash_dirs() == before


def test_verify_rejects_bad_tolerances_and_missing_loss_fn():
    graph, zm, problem = traced("mlp", 2)
    schedule = solver.store_all(problem)
    with pytest.raises(ValueError, match="atol must be a finite number >= 0"):
        verify(graph, schedule, zm.model, zm.inputs, zm.targets, atol=-1.0)
    with pytest.raises(ValueError, match="rtol must be"):
        verify(graph, schedule, zm.model, zm.inputs, zm.targets, rtol=float("nan"))
    bare = copy.copy(graph)
    bare.extra = {k: v for k, v in graph.extra.items() if k != "loss_fn"}
    with pytest.raises(ReplayError, match="needs the loss function"):
        verify(bare, schedule, zm.model, zm.inputs, zm.targets)
    assert verify(bare, schedule, zm.model, zm.inputs, zm.targets, loss_fn=zm.loss_fn).passed


# --------------------------------------------------------------------------- MILP schedules

@pytest.mark.parametrize("name,batch", [("cnn_dropout_bn", 2), ("mlp", 2)])
@pytest.mark.parametrize("strategy", ["poet", "remat", "paging"])
@pytest.mark.parametrize("fraction", [0.2, 0.6])
def test_milp_schedules_replay_exactly(name, batch, strategy, fraction):
    graph, zm, problem = traced(name, batch)
    budgeted = budget_between(problem, fraction)
    schedule = solver.solve(budgeted, strategy=strategy, time_limit_s=10, gap=1e-2).schedule
    report = assert_exact(graph, zm, budgeted, schedule)
    assert report.measured_peak_bytes <= budgeted.ram_budget_bytes
    if strategy == "remat":
        assert report.n_page_in == 0 and report.measured_flash_written == 0
    if strategy == "paging":
        assert report.n_recompute == 0


@pytest.mark.slow
@pytest.mark.parametrize("name,batch", [("bert", 1), ("resnet18", 1), ("mobilenetv2", 1), ("vgg11", 1)])
@pytest.mark.parametrize("strategy", ["poet", "remat", "paging"])
@pytest.mark.parametrize("fraction", [0.2, 0.6])
def test_milp_schedules_replay_exactly_large(name, batch, strategy, fraction):
    graph, zm, problem = traced(name, batch)
    budgeted = budget_between(problem, fraction)
    schedule = solver.solve(budgeted, strategy=strategy, time_limit_s=10, gap=1e-2).schedule
    assert_exact(graph, zm, budgeted, schedule)


# --------------------------------------------------------------------------- recurrent models


class RecurrentStack(nn.Module):
    """LSTM, GRU, LSTM, GRU (hidden 8) and a linear head: room below the store-all peak even at
    layer granularity, where the MILP mixes recomputes and page-ins."""

    def __init__(self, hidden: int = 8):
        super().__init__()
        self.rnns = nn.ModuleList([nn.LSTM(6, hidden, batch_first=True), nn.GRU(hidden, hidden, batch_first=True),
                                   nn.LSTM(hidden, hidden, batch_first=True), nn.GRU(hidden, hidden, batch_first=True)])
        self.head = nn.Linear(hidden, 4)

    def forward(self, x):
        for rnn in self.rnns:
            x = rnn(x)[0]
        return self.head(x[:, -1])


class Recurrent(nn.Module):
    """An LSTM and/or a GRU over (batch, steps, 6 features), then a linear head on the last step."""

    def __init__(self, kind: str, hidden: int):
        super().__init__()
        self.lstm = nn.LSTM(6, hidden, batch_first=True) if "lstm" in kind else None
        self.gru = nn.GRU(hidden if self.lstm is not None else 6, hidden, batch_first=True) \
            if "gru" in kind else None
        self.head = nn.Linear(hidden, 4)

    def forward(self, x):
        if self.lstm is not None:
            x = self.lstm(x)[0]
        if self.gru is not None:
            x = self.gru(x)[0]
        return self.head(x[:, -1])


def traced_recurrent(kind: str, hidden: int):
    """(graph at op granularity, zoo model, problem on rpi4) for batch 3, 10 steps, 6 features.

    At layer granularity every schedule of these models is store-all (its peak is the minimum);
    op by op there is room below the store-all peak."""
    key = ("recurrent", kind, hidden)
    if key not in _GRAPHS:
        torch.manual_seed(0)
        zm = zoo.ZooModel(Recurrent(kind, hidden), F.cross_entropy, torch.randn(3, 10, 6),
                          torch.tensor([0, 1, 3]))
        graph = poet.extract(*zm, granularity="op")
        _GRAPHS[key] = (graph, zm, make_problem(graph, "rpi4"))
    return _GRAPHS[key]


RECURRENT_BASELINES = {"dtr": 0.6, "greedy_paging": 0.25}  # baseline -> budget fraction (min .. store-all)


def run_in_id_order(graph, zm) -> dict:
    """Every node through ``poet.graph.run_node`` in id order (on a copy of the model): the values."""
    values = graph.static_values(copy.deepcopy(zm.model), zm.inputs, zm.targets)
    for node in graph.nodes:
        values.update(run_node(graph, node, values))
    return values


def recurrent_schedule(problem, strategy: str):
    """A baseline's schedule below the store-all peak: DTR recomputes, greedy paging pages in
    (asserted, so the test cannot pass on a schedule that does neither)."""
    budgeted = budget_between(problem, RECURRENT_BASELINES[strategy])
    assert budgeted.ram_budget_bytes < solver.store_all_peak(problem)
    schedule = get_baseline(strategy)(budgeted)
    sim = solver.simulate(budgeted, schedule)
    assert (sim.n_recompute if strategy == "dtr" else sim.n_page_in) > 0
    return budgeted, schedule


def assert_recurrent_replay(graph, zm, problem, schedule, *, bitwise_to_eager: bool):
    """verify() on a recurrent model: the executor's loss and gradients equal those of the graph's
    own evaluator (run_node in id order) bitwise, and eager's (bitwise where the extracted graph is
    and `rnn_bitwise()` holds; else within 1e-6), recomputes and page-ins reproduce the first
    compute's bytes, frees release.

    The RAM trace is not compared, because the extracted sizes are off in two known places
    (extractor matters): torch's fake CPU LSTM kernel reports a 0-byte workspace output where
    the real one allocates it (``mkldnn_rnn_layer`` out_bytes too small), and at op granularity
    an ``unsafe_split`` node is given out_bytes for chunks that are views of the ``addmm``
    node's storage (real: 0 new bytes). The measured sizes must differ from the graph's only there."""
    report = verify(graph, schedule, zm.model, zm.inputs, zm.targets, problem=problem)
    assert report.value_mismatches == [] and report.frees_not_released == 0 and report.rng_equal
    assert report.loss_diff == 0.0 and report.max_rel_grad_diff <= 1e-6
    if rnn_bitwise():
        assert report.bitwise == bitwise_to_eager
    res = execute(graph, schedule, copy.deepcopy(zm.model), zm.inputs, zm.targets, problem=problem)
    values = run_in_id_order(graph, zm)
    assert torch.equal(res.loss, values[graph.loss_value])
    assert set(res.grads) == set(graph.grad_values)
    for qualname, value in graph.grad_values.items():
        assert torch.equal(res.grads[qualname], values[value]), qualname
    known = {"aten.mkldnn_rnn_layer.default", "aten.unsafe_split.Tensor"}
    for i, nbytes in res.node_out_bytes.items():
        targets = {str(graph.fx_node(a).target) for a in graph.nodes[i].aten_nodes}
        assert nbytes == graph.nodes[i].out_bytes or targets & known, (graph.nodes[i].name, nbytes)


@pytest.mark.parametrize("kind,hidden", [("lstm_gru", 12), ("lstm_gru", 8)])
@pytest.mark.parametrize("strategy", list(RECURRENT_BASELINES))
def test_recurrent_scheduled_step_matches_eager(kind, hidden, strategy):
    """The issue's LSTM+GRU (hidden 12) crashed the executor below its store-all peak: the CPU
    LSTM keeps its workspace only with grad mode on, which the executor now switches per op as
    run_node does. Bitwise equal to eager at hidden 8; see the xfail below for the GRU at
    hidden 12. (A plain LSTM has no room: op by op its minimum RAM is its store-all peak.)"""
    graph, zm, problem = traced_recurrent(kind, hidden)
    budgeted, schedule = recurrent_schedule(problem, strategy)
    assert_recurrent_replay(graph, zm, budgeted, schedule, bitwise_to_eager=(kind, hidden) != ("lstm_gru", 12))


def test_recurrent_milp_step_recomputes_and_pages_bitwise():
    """One step scheduled by the MILP below the store-all peak with both recomputes and page-ins
    (LSTM and GRU layers recomputed and paged), bitwise equal to eager."""
    torch.manual_seed(0)
    zm = zoo.ZooModel(RecurrentStack(), F.cross_entropy, torch.randn(3, 10, 6), torch.tensor([0, 1, 3]))
    graph = poet.extract(*zm)
    problem = make_problem(graph, "nrf52840")
    # 10% of the way up: the gradients are static buffers, not node outputs (update="buffered"),
    # so the step needs less RAM than before and 20% no longer forces a page-in
    budgeted = budget_between(problem, 0.1)
    assert budgeted.ram_budget_bytes < solver.store_all_peak(problem)
    schedule = solver.solve(budgeted, strategy="poet", time_limit_s=10).schedule
    sim = solver.simulate(budgeted, schedule)
    assert sim.n_recompute > 0 and sim.n_page_in > 0
    computes = collections.Counter(i for op, i in schedule.instructions if op == "compute")
    paged_in = {i for op, i in schedule.instructions if op == "page_in"}
    rnn = {n.id for n in graph.nodes if n.module_path.startswith("rnns")}
    assert rnn & {i for i, c in computes.items() if c > 1} and rnn & paged_in
    assert_recurrent_replay(graph, zm, budgeted, schedule, bitwise_to_eager=True)


@pytest.mark.xfail(strict=True, reason="the extracted GRU backward is not bitwise eager's at hidden 12 "
                                       "(run_node alone differs by ~1e-8): an extractor matter")
def test_gru_hidden_12_graph_is_bitwise_eager():
    graph, zm, _ = traced_recurrent("lstm_gru", 12)
    eager = copy.deepcopy(zm.model)
    zm.loss_fn(eager(zm.inputs), zm.targets).backward()
    values = run_in_id_order(graph, zm)
    grads = dict(eager.named_parameters())
    assert all(torch.equal(values[v], grads[q].grad) for q, v in graph.grad_values.items())


def test_replay_names_stay_where_they_were():
    """poet.verify / poet.execute and the poet.replay names keep working after the split."""
    import poet.replay as replay

    assert poet.verify is verify and poet.execute is execute and replay.execute is execute
    assert replay.FlashFolder is FlashFolder and replay.ReplayError is ReplayError
    assert replay.structural_problem is structural_problem and replay.resolve_problem is resolve_problem
