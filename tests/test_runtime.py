"""poet.runtime.ScheduledStep: training with a schedule equals eager training, bitwise on CPU."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F

import poet
import solver
from poet import zoo
from poet.costs import make_problem
from poet.errors import ReplayError
from poet.runtime import ScheduledStep
from solver import ScheduleError
from solver.baselines import get_baseline

from replay_schedules import mixed, page_all, recompute_all


# bitwise comparisons with eager need one intra-op thread (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def cnn():
    zm = zoo.get("cnn_dropout_bn", batch_size=4)
    graph = poet.extract(zm.model, zm.loss_fn, zm.inputs, zm.targets)
    return zm, graph, make_problem(graph, "nrf52840")


def batches(n: int, batch_size: int = 4, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(batch_size, 3, 16, 16, generator=gen), torch.randint(0, 10, (batch_size,), generator=gen))
            for _ in range(n)]


def train(model, step_fn, data, *, momentum=0.9, seed=123):
    """20-style loop: SGD with momentum; returns the losses."""
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=momentum)
    torch.manual_seed(seed)
    losses = []
    for x, y in data:
        opt.zero_grad()
        losses.append(float(step_fn(x, y)))
        opt.step()
    return losses


def eager_step(model, loss_fn):
    def step(x, y):
        loss = loss_fn(model(x), y)
        loss.backward()
        return loss.detach()
    return step


def assert_same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


@pytest.mark.parametrize("make", [recompute_all, page_all, mixed])
def test_twenty_steps_equal_eager_training(cnn, make):
    """Dropout and BatchNorm recomputed (or paged) in every step: same losses, parameters and
    running statistics as eager training, bitwise."""
    zm, graph, problem = cnn
    schedule = make(problem)
    data = batches(20)
    ours, ref = copy.deepcopy(zm.model), copy.deepcopy(zm.model)
    step = ScheduledStep(ours, zm.loss_fn, schedule, graph=graph, problem=problem)
    assert step.fingerprint_checked
    ours_losses = train(ours, step, data)
    ref_losses = train(ref, eager_step(ref, zm.loss_fn), data)
    assert ours_losses == ref_losses
    assert_same_state(ours, ref)
    assert int(ours.bn1.num_batches_tracked) == 20
    assert step.last_result.peak_ram_bytes == solver.simulate(problem, schedule, check_budgets=False).peak_ram_bytes


def test_baseline_schedule_under_a_budget_trains_like_eager(cnn):
    zm, graph, problem = cnn
    lo, hi = solver.min_feasible_ram(problem), solver.store_all_peak(problem)
    budgeted = problem.with_budgets(ram_budget_bytes=(lo + hi) // 2)
    schedule = get_baseline("dtr")(budgeted)
    assert schedule.count("compute") > graph.T
    ours, ref = copy.deepcopy(zm.model), copy.deepcopy(zm.model)
    step = ScheduledStep(ours, zm.loss_fn, schedule, graph=graph, problem=budgeted)
    data = batches(5)
    assert train(ours, step, data) == train(ref, eager_step(ref, zm.loss_fn), data)
    assert_same_state(ours, ref)
    assert step.last_result.peak_ram_bytes <= budgeted.ram_budget_bytes


def test_gradients_accumulate_like_backward(cnn):
    zm, graph, problem = cnn
    ours, ref = copy.deepcopy(zm.model), copy.deepcopy(zm.model)
    step = ScheduledStep(ours, zm.loss_fn, mixed(problem), graph=graph, problem=problem)
    (x1, y1), (x2, y2) = batches(2)
    torch.manual_seed(7)
    step(x1, y1)
    step(x2, y2)  # no zero_grad in between: gradients add up
    torch.manual_seed(7)
    zm.loss_fn(ref(x1), y1).backward()
    zm.loss_fn(ref(x2), y2).backward()
    for (n, p), (_, q) in zip(ours.named_parameters(), ref.named_parameters()):
        assert torch.equal(p.grad, q.grad), n


def test_traces_on_first_call_with_recorded_spec_and_device(tmp_path):
    """A schedule saved with its model spec and device: the step traces the model itself on the
    first batch, with the recorded train= setting, and checks the fingerprint on that device."""
    zm = zoo.get("cnn_dropout_bn", batch_size=2)
    graph = poet.extract(zm.model, zm.loss_fn, zm.inputs, zm.targets, train="bias")
    problem = make_problem(graph, "nrf52840")
    schedule = mixed(problem)
    schedule.extra.update({"model_spec": {"model": "cnn_dropout_bn", "batch_size": 2, "train": "bias",
                                          "optimizer": "sgd", "seed": 0},
                           "device": "nrf52840", "granularity": "layer"})
    path = tmp_path / "s.json"
    schedule.save(path)
    ours, ref = copy.deepcopy(zm.model), copy.deepcopy(zm.model)
    step = ScheduledStep(ours, zm.loss_fn, path)
    assert step.graph is None and "not traced yet" in repr(step)
    torch.manual_seed(3)
    loss = step(zm.inputs, zm.targets)
    assert step.fingerprint_checked and step.graph.trainable == [n for n, _ in ours.named_parameters()
                                                                 if n.endswith("bias")]
    for n, p in ref.named_parameters():
        p.requires_grad_(n.endswith("bias"))
    torch.manual_seed(3)
    ref_loss = zm.loss_fn(ref(zm.inputs), zm.targets)
    ref_loss.backward()
    assert torch.equal(loss, ref_loss.detach())
    for (n, p), (_, q) in zip(ours.named_parameters(), ref.named_parameters()):
        if n.endswith("bias"):
            assert torch.equal(p.grad, q.grad), n
        else:
            assert p.grad is None and q.grad is None, n


def test_example_inputs_trace_at_construction(cnn):
    zm, graph, problem = cnn
    step = ScheduledStep(copy.deepcopy(zm.model), zm.loss_fn, solver.store_all(problem), device="nrf52840",
                         example_inputs=zm.inputs, example_targets=zm.targets)
    assert step.graph is not None and step.graph.T == graph.T and step.fingerprint_checked
    assert step.problem.fingerprint == problem.fingerprint


# --------------------------------------------------------------------------- refusals


def test_schedule_for_another_model_is_refused(cnn):
    zm, graph, problem = cnn
    mlp = zoo.get("mlp", batch_size=2)
    mlp_graph = poet.extract(mlp.model, mlp.loss_fn, mlp.inputs, mlp.targets)
    foreign = solver.store_all(make_problem(mlp_graph, "nrf52840"))
    step = ScheduledStep(copy.deepcopy(zm.model), zm.loss_fn, foreign, device="nrf52840")
    with pytest.raises(ReplayError, match="made for another graph"):
        step(zm.inputs, zm.targets)
    # same model, other batch size: other graph, other fingerprint
    other_batch = zoo.get("cnn_dropout_bn", batch_size=2)
    g2 = poet.extract(other_batch.model, other_batch.loss_fn, other_batch.inputs, other_batch.targets)
    schedule2 = solver.store_all(make_problem(g2, "nrf52840"))
    with pytest.raises(ReplayError, match="made for another graph"):
        ScheduledStep(copy.deepcopy(zm.model), zm.loss_fn, schedule2, device="nrf52840",
                      example_inputs=zm.inputs, example_targets=zm.targets)
    with pytest.raises(ReplayError):
        ScheduledStep(copy.deepcopy(zm.model), zm.loss_fn, schedule2, graph=graph, problem=problem)


def test_corrupted_schedule_file_is_refused(tmp_path, cnn):
    zm, graph, problem = cnn
    path = tmp_path / "s.json"
    solver.store_all(problem).save(path)
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    with pytest.raises(ScheduleError, match="not a valid schedule JSON"):
        ScheduledStep(zm.model, zm.loss_fn, path)
    d = json.loads(text)
    d["instructions"][3] = ["compute", "x"]
    path.write_text(json.dumps(d))
    with pytest.raises(ScheduleError, match=r"instructions\[3\]"):
        ScheduledStep(zm.model, zm.loss_fn, path)
    d = json.loads(text)
    d["instructions"] = d["instructions"][1:]  # starts with a node whose operands are missing
    path.write_text(json.dumps(d))
    with pytest.raises(ScheduleError, match="instruction 0"):
        ScheduledStep(zm.model, zm.loss_fn, path, graph=graph, problem=problem)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json"]


def test_batch_of_another_shape_is_refused(cnn):
    zm, graph, problem = cnn
    step = ScheduledStep(copy.deepcopy(zm.model), zm.loss_fn, solver.store_all(problem), graph=graph,
                         problem=problem)
    x, y = batches(1, batch_size=3)[0]
    with pytest.raises(ReplayError, match=r"shape \(3, 3, 16, 16\).*traced for shape \(4, 3, 16, 16\)"):
        step(x, y)
    x, y = batches(1)[0]
    with pytest.raises(ReplayError, match="dtype torch.float64"):
        step(x.double(), y)
    step(x, y)  # the right shape still works


def test_mode_switch_is_refused(cnn):
    zm, graph, problem = cnn
    model = copy.deepcopy(zm.model)
    step = ScheduledStep(model, zm.loss_fn, solver.store_all(problem), graph=graph, problem=problem)
    model.eval()
    with pytest.raises(ReplayError, match=r"traced in train\(\) mode and is now in eval\(\)"):
        step(zm.inputs, zm.targets)


def test_bad_arguments_are_refused(cnn):
    zm, graph, problem = cnn
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        ScheduledStep(lambda x: x, zm.loss_fn, solver.store_all(problem))
    with pytest.raises(TypeError, match="schedule must be"):
        ScheduledStep(zm.model, zm.loss_fn, [("compute", 0)])
    with pytest.raises(ValueError, match="both example_inputs and example_targets"):
        ScheduledStep(zm.model, zm.loss_fn, solver.store_all(problem), example_inputs=zm.inputs)
    with pytest.raises(TypeError, match="loss_fn must be callable"):
        ScheduledStep(zm.model, None, solver.store_all(problem))
    assert F.cross_entropy is zm.loss_fn


@pytest.mark.skipif(not hasattr(solver, "solve"), reason="solver.solve has not landed yet")
def test_milp_schedule_trains_like_eager(cnn):
    zm, graph, problem = cnn
    lo, hi = solver.min_feasible_ram(problem), solver.store_all_peak(problem)
    budgeted = problem.with_budgets(ram_budget_bytes=lo + (hi - lo) // 5)
    schedule = solver.solve(budgeted, strategy="poet", time_limit_s=30).schedule
    ours, ref = copy.deepcopy(zm.model), copy.deepcopy(zm.model)
    step = ScheduledStep(ours, zm.loss_fn, schedule, graph=graph, problem=budgeted)
    data = batches(20)
    assert train(ours, step, data) == train(ref, eager_step(ref, zm.loss_fn), data)
    assert_same_state(ours, ref)
    assert step.last_result.peak_ram_bytes <= budgeted.ram_budget_bytes
