"""The memory model of a small device: frozen weights in flash, fused (TTE) updates, and the
executor that runs both (issue #12 items 2, 3, 6).

Hand counts: a tiny MLP, Linear(8, 16) -> ReLU -> Linear(16, 4), batch 2, cross entropy.
fc1 ("0") holds 16*8 + 16 = 144 floats (576 B), fc2 ("2") 4*16 + 4 = 68 floats (272 B); the
batch is 2*8 floats (64 B) and 2 int64 targets (16 B).
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import poet
import solver
from poet.costs import make_problem, reprice
from poet.errors import ReplayError
from poet.executor import execute, prepare
from poet.resolve import structural_problem
from solver import Schedule

pytestmark = pytest.mark.usefixtures("one_thread")

FC1, FC2, BATCH = 4 * (16 * 8 + 16), 4 * (4 * 16 + 4), 2 * 8 * 4 + 2 * 8


def tiny():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    return model, torch.randn(2, 8), torch.tensor([0, 3])


def numel_bytes(module: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


# ---- static split and peaks by hand ------------------------------------------------------------

@pytest.mark.parametrize("train,update", [("all", "buffered"), ("all", "fused"),
                                          ("last", "buffered"), ("last", "fused")])
def test_static_split_by_hand(train, update):
    model, x, y = tiny()
    assert numel_bytes(model[0]) == FC1 and numel_bytes(model[2]) == FC2
    g = poet.extract(model, F.cross_entropy, x, y, train=train, update=update)
    trained = FC1 + FC2 if train == "all" else FC2
    frozen = 0 if train == "all" else FC1
    grads = trained if update == "buffered" else 0
    assert g.static_breakdown == {"trained_params": trained, "frozen_params": frozen, "grads": grads,
                                  "optimizer_state": 0, "buffers": 0, "inputs": BATCH, "constants": 0}
    assert g.static_bytes == trained + frozen + grads + BATCH
    ram = make_problem(g, "nrf52840", weights="ram")
    flash = make_problem(g, "nrf52840", weights="flash")
    assert ram.static_bytes == g.static_bytes and flash.static_bytes == g.static_bytes - frozen
    assert flash.extra["weights"] == "flash" and flash.extra["weights_flash_bytes"] == frozen
    assert ram.extra["weights"] == "ram" and ram.extra["weights_flash_bytes"] == 0
    assert (flash.fingerprint != ram.fingerprint) == (frozen > 0)


def test_store_all_peaks_by_hand():
    """train=all: the gradient is counted once (buffered: in its static buffer, not again as the
    backward node's output) or not at all (fused: a node output freed after its update)."""
    model, x, y = tiny()
    act = 2 * 16 * 4  # one 2x16 float activation
    buffered = poet.extract(model, F.cross_entropy, x, y, update="buffered")
    p = make_problem(buffered, "nrf52840")
    # the backward of fc2 hands on only grad_input (2x16), not its weight/bias gradients
    assert buffered.node("2.backward").out_bytes == act
    assert buffered.node("0.backward").out_bytes == 0
    # peak at the ReLU's backward: relu output, fc2's grad_input and its own output resident
    assert solver.simulate(p, solver.store_all(p)).peak_ram_bytes == 2 * (FC1 + FC2) + BATCH + 3 * act
    fused = poet.extract(model, F.cross_entropy, x, y, update="fused")
    q = make_problem(fused, "nrf52840")
    # peak at fc1's backward: the ReLU backward's output plus fc1's gradients (576 B)
    assert fused.node("0.backward").out_bytes == FC1
    assert solver.simulate(q, solver.store_all(q)).peak_ram_bytes == FC1 + FC2 + BATCH + act + FC1


def test_frozen_weights_leave_the_ram():
    model, x, y = tiny()
    g = poet.extract(model, F.cross_entropy, x, y, train="last")
    ram = make_problem(g, "nrf52840", weights="ram")
    flash = make_problem(g, "nrf52840")  # the profile's default: weights = "flash"
    assert flash.extra["weights"] == "flash"
    peak_ram = solver.simulate(ram, solver.store_all(ram)).peak_ram_bytes
    peak_flash = solver.simulate(flash, solver.store_all(flash)).peak_ram_bytes
    assert peak_ram - peak_flash == FC1
    # a "device" RAM budget is the usable RAM: 256 KiB less the 32 KiB reserve
    assert make_problem(g, "nrf52840", ram_budget="device").ram_budget_bytes == 262144 - 32768


# ---- pricing the flash reads --------------------------------------------------------------------

def test_flash_read_time_and_energy_by_hand():
    model, x, y = tiny()
    g = poet.extract(model, F.cross_entropy, x, y, train="last")
    prof = poet.load_profile("nrf52840")
    pf = prof.program_flash
    ram = make_problem(g, prof, weights="ram")
    flash = make_problem(g, prof, weights="flash")
    fc1 = g.node("0").id
    assert g.frozen_bytes_read()[fc1] == FC1 and sum(g.frozen_bytes_read()) == FC1  # only fc1 reads them
    n_ram, n_flash = ram.nodes[fc1], flash.nodes[fc1]
    extra_s = FC1 / pf.read_bytes_per_s
    assert n_flash.compute_s == pytest.approx(n_ram.compute_s + extra_s, rel=1e-12)
    assert n_flash.compute_j == pytest.approx(prof.active_power_w * (n_ram.compute_s + extra_s)
                                              + FC1 * pf.read_j_per_byte, rel=1e-12)
    for a, b in zip(ram.nodes, flash.nodes):
        if a.id != fc1:
            assert (a.compute_s, a.compute_j) == (b.compute_s, b.compute_j)
    assert n_flash.extra["frozen_bytes_read"] == FC1
    # repricing from the recorded counts gives the same problem, either way round
    assert reprice(ram, prof, weights="flash").fingerprint == flash.fingerprint
    assert reprice(flash, prof, weights="ram").fingerprint == ram.fingerprint
    assert reprice(flash, prof, weights="flash").static_bytes == flash.static_bytes
    # every compute of fc1 pays the read again: a recompute of it costs its priced energy twice
    s = solver.store_all(flash)
    rec = Schedule(instructions=[("compute", 0), ("free", 0), *s.instructions],
                   problem_fingerprint=flash.fingerprint, strategy="test")
    assert solver.simulate(flash, rec).energy_j == pytest.approx(
        solver.simulate(flash, s).energy_j + n_flash.compute_j, rel=1e-12)


class Wide(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.body = nn.Linear(512, hidden)
        self.head = nn.Linear(hidden, 2)

    def forward(self, x):
        return self.head(torch.relu(self.body(x)))


def test_weights_over_the_program_flash_raise_naming_the_sizes():
    torch.manual_seed(0)
    model = Wide(448)
    g = poet.extract(model, F.cross_entropy, torch.randn(1, 512), torch.tensor([1]), train="last")
    frozen = 4 * (512 * 448 + 448)
    assert g.frozen_param_bytes == frozen == 919296
    # nRF52840: 1 MiB flash, 256 KiB reserved: 786432 B free
    with pytest.raises(ValueError, match=r"frozen weights \(919296 B .*\) do not fit .*capacity_bytes "
                                         r"1048576 B .* - reserved_bytes 262144 B .* = 786432 B .* free, "
                                         r"132864 B .* short; train more of the model"):
        make_problem(g, "nrf52840")
    assert make_problem(g, "nrf52840", weights="ram").static_bytes == g.static_bytes
    # RP2040: paging shares the 2 MiB chip, whose profile sets 1 MiB aside for it beside 256 KiB
    # of firmware: 2 MiB - 256 KiB - 1 MiB = 786432 B are left for weights
    with pytest.raises(ValueError, match=r"rp2040.toml: the frozen weights \(919296 B .*do not fit "
                                         r"in the program flash.*786432 B \(768 KiB\) free"):
        make_problem(g, "rp2040", flash_budget="device")
    small = poet.extract(nn.Sequential(nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10)),
                         F.cross_entropy, torch.randn(1, 256), torch.tensor([1]), train="last")
    p = make_problem(small, "rp2040", flash_budget="device")
    assert p.flash_budget_bytes == 2**20                  # the paging area, as the profile sets it
    assert p.extra["weights_flash_bytes"] == 4 * (256 * 256 + 256)
    assert make_problem(g, "rp2040", weights="ram", flash_budget="device").flash_budget_bytes == 2**20
    with pytest.raises(ValueError, match="weights must be one of"):
        make_problem(g, "rp2040", weights="rom")


# ---- optimizers and update nodes ----------------------------------------------------------------

def test_optimizer_instances_give_their_kind():
    """The kind and the optimizer-state bytes of each optimizer, the bytes checked against the
    state torch itself holds after one eager step (Adam's moments and its 0-d step tensors)."""
    model, x, y = tiny()
    p = FC1 + FC2
    tensors = len(list(model.parameters()))
    cases = [(lambda ps: torch.optim.SGD(ps, lr=0.1), "sgd", 0, 0),
             (lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9), "sgd_momentum", 1, 0),
             (lambda ps: torch.optim.Adam(ps), "adam", 2, 4),
             (lambda ps: torch.optim.AdamW(ps, amsgrad=True), "adam_amsgrad", 3, 4)]
    for make, kind, buffers, step_bytes in cases:
        g = poet.extract(model, F.cross_entropy, x, y, optimizer=make(model.parameters()))
        assert g.optimizer == kind
        assert g.static_breakdown["optimizer_state"] == buffers * p + step_bytes * tensors
        eager = copy.deepcopy(model)
        opt = make(eager.parameters())
        F.cross_entropy(eager(x), y).backward()
        opt.step()
        held = sum(t.numel() * t.element_size() for st in opt.state.values() for t in st.values()
                   if torch.is_tensor(t))
        assert g.static_breakdown["optimizer_state"] == held, kind
    assert poet.extract(model, F.cross_entropy, x, y, optimizer="adam").static_breakdown["optimizer_state"] \
        == 2 * p + 4 * tensors
    for bad, what in [(torch.optim.SGD(model.parameters(), lr=0.1, foreach=True), "foreach=True"),
                      (torch.optim.LBFGS(model.parameters()), "LBFGS is not supported"),
                      (torch.optim.SGD(model[2].parameters(), lr=0.1), "does not hold the trained")]:
        with pytest.raises(ValueError, match=what):
            poet.extract(model, F.cross_entropy, x, y, optimizer=bad)
    with pytest.raises(ValueError, match="update must be one of"):
        poet.extract(model, F.cross_entropy, x, y, update="eager")


def test_update_nodes_come_right_after_their_gradient():
    model, x, y = tiny()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    g = poet.extract(model, F.cross_entropy, x, y, update="fused", optimizer=opt)
    names = [n.name for n in g.nodes]
    assert names == ["0", "1", "2", "loss", "2.backward", "2.weight.update", "2.bias.update",
                     "1.backward", "0.backward", "0.weight.update", "0.bias.update"]
    for n in g.nodes:
        if "update_of" not in n.extra:
            assert not n.grads  # no gradient leaves the step
            continue
        producer = g.node(n.name.split(".")[0] + ".backward")
        assert n.kind == "backward" and n.out_bytes == 0 and g.preds[n.id] == [producer.id]
        numel = g.fx_node(n.static_inputs[0]).meta["val"].numel()
        # weight decay 2 + momentum 3 + the step 2 FLOPs per element; the decayed gradient is a
        # temporary of the parameter's size
        assert n.extra_flops == 7 * numel and n.workspace_bytes == 4 * numel
    assert g.node("2.backward").out_bytes == 2 * 16 * 4 + FC2  # grad_input + fc2's gradients
    adam = poet.extract(model, F.cross_entropy, x, y, update="fused", optimizer="adam")
    n = adam.node("0.weight.update")
    assert n.extra_flops == 13 * 128 and n.workspace_bytes == 2 * 4 * 128  # sqrt and quotient alive together


def test_executor_refuses_reads_after_an_update_and_double_updates():
    model, x, y = tiny()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    g = poet.extract(model, F.cross_entropy, x, y, update="fused", optimizer=opt)
    prob = structural_problem(g)
    b2, w2 = g.node("2.backward").id, g.node("2.weight.update").id
    head = [("compute", i) for i in range(w2 + 1)]
    rest = [("compute", i) for i in range(w2 + 1, g.T)]
    late_read = Schedule(instructions=head + [("free", b2), ("compute", b2)] + rest, strategy="test")
    assert solver.simulate(prob, late_read).n_recompute == 1  # a valid schedule for the simulator
    with pytest.raises(ReplayError, match="already updated the parameter"):
        prepare(g, late_read, prob)
    twice = Schedule(instructions=head + [("free", w2), ("compute", w2)] + rest, strategy="test")
    with pytest.raises(ReplayError, match="twice"):
        prepare(g, twice, prob)
    with pytest.raises(ReplayError, match="pass the torch optimizer"):
        execute(g, solver.store_all(prob), model, x, y, problem=prob)


# ---- replays at the minimum RAM -----------------------------------------------------------------

class Deep(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Linear(12, 24)
        self.blocks = nn.ModuleList(nn.Linear(24, 24) for _ in range(4))
        self.head = nn.Linear(24, 5)

    def forward(self, x):
        h = torch.relu(self.stem(x))
        skip = h
        for b in self.blocks:
            h = torch.tanh(b(h))
        return self.head(h + skip)


OPTIMIZERS = {
    "sgd": lambda ps: torch.optim.SGD(ps, lr=0.05),
    "sgd_momentum_wd": lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=1e-4),
    "adam": lambda ps: torch.optim.Adam(ps, lr=1e-3),
}


@pytest.mark.parametrize("update", ["fused", "buffered"])
@pytest.mark.parametrize("opt_name", list(OPTIMIZERS))
def test_three_steps_at_minimum_ram_bitwise_eager(opt_name, update):
    """A POET schedule at its minimum feasible RAM (frozen stem in flash) replayed three steps:
    RAM measured at every instruction equals the simulator's, the frozen weights are read from
    the memory-mapped file and outside the count, parameters and optimizer state equal eager
    ``loss.backward(); opt.step()`` bitwise."""
    torch.manual_seed(1)
    base = Deep()
    x, y = torch.randn(6, 12), torch.tensor([0, 1, 2, 3, 4, 0])
    train = ["blocks", "head"]
    model, eager = copy.deepcopy(base), copy.deepcopy(base)
    eager.stem.requires_grad_(False)
    opt = OPTIMIZERS[opt_name]([p for n, p in model.named_parameters() if not n.startswith("stem")])
    eager_opt = OPTIMIZERS[opt_name]([p for n, p in eager.named_parameters() if not n.startswith("stem")])
    graph = poet.extract(model, F.cross_entropy, x, y, train=train, optimizer=opt, update=update)
    problem = make_problem(graph, "nrf52840")
    assert problem.extra["weights"] == "flash"
    assert problem.static_bytes == graph.static_bytes - numel_bytes(base.stem)
    budgeted = problem.with_budgets(ram_budget_bytes=solver.min_feasible_ram(problem))
    schedule = solver.solve(budgeted, strategy="poet", time_limit_s=20).schedule
    sim = solver.simulate(budgeted, schedule)
    assert sim.n_recompute + sim.n_page_in > 0  # it really recomputes or pages
    step = poet.ScheduledStep(model, F.cross_entropy, schedule, graph=graph, problem=budgeted,
                              optimizer=opt, update=update)
    for _ in range(3):
        if update == "buffered":
            opt.zero_grad()
        step(x, y)
        if update == "buffered":
            opt.step()
        eager_opt.zero_grad()
        F.cross_entropy(eager(x), y).backward()
        eager_opt.step()
        res = step.last_result
        assert res.ram_trace == sim.ram_trace and res.peak_ram_bytes == sim.peak_ram_bytes
        assert res.weights_file_bytes >= numel_bytes(base.stem)
        assert res.n_updates == (len(graph.trainable) if update == "fused" else 0)
    for (name, a), b in zip(model.named_parameters(), eager.parameters()):
        assert torch.equal(a, b), name
        sa, sb = opt.state.get(a, {}), eager_opt.state.get(b, {})
        assert set(sa) == set(sb)
        for k in sa:
            assert torch.equal(torch.as_tensor(sa[k]), torch.as_tensor(sb[k])), (name, k)
    assert not torch.equal(model.head.weight, base.head.weight)  # it trained
    report = poet.verify(graph, schedule, model, x, y, problem=budgeted, optimizer=opt)
    assert report.passed, report.failures
    assert report.params_compared and report.params_bitwise and report.optimizer_state_bitwise
    assert report.trace_equal and report.weights_file_bytes > 0


# ---- the benchmark's replay of a memory-table row -------------------------------------------

def _mcu_memory_benchmark():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "mcu_memory.py"
    spec = importlib.util.spec_from_file_location("mcu_memory_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_replays_sensor_rows_bitwise():
    """`benchmarks/mcu_memory.py --replay` on two rows of the sensor CNN with fused Adam: train=last
    with frozen weights in flash (the fc layer's 64*6 + 6 floats train; the rest is mapped from
    the weights file and outside the RAM) and train=all (the minimum needs recomputes and paging)."""
    bench = _mcu_memory_benchmark()
    step, rows = bench.replay_choices("sensor_cnn1d", trains=["all", "last"], weights=["flash"],
                                      updates=["fused"])
    assert [(t, w, u) for t, _, w, u in rows] == [("all", "ram", "fused"), ("last", "flash", "fused")]
    total = sum(p.numel() * p.element_size() for p in step.model.parameters())
    fc = 4 * (64 * 6 + 6)
    built = [p.detach().clone() for p in step.model.parameters()]
    for (label, train, weights, update), frozen in zip(rows, [0, total - fc]):
        r = bench.replay_row(step, "sensor_cnn1d", label, train, weights, update, "adam",
                             device="nrf52840", time_limit_s=10)
        assert r["error"] is None and r["schedule"] != "none", r
        failed = [k for k in bench.CHECKS if r[k] is not True]
        assert not failed and r["ok"], (label, failed, r.get("verify_failures"))
        assert r["frozen_bytes"] == frozen and r["frozen_in_flash"] == frozen
        assert r["weights"] == ("-" if label == "all" else "flash")
        if frozen:
            assert r["weights_file_bytes"] >= frozen
        assert r["predicted_peak_bytes"] == r["measured_peak_bytes"] <= r["min_ram_bytes"]
        if label == "all":
            assert r["recomputes"] + r["page_ins"] > 0  # the minimum is below store-all
    # each row trains copies: the step's model is left as built
    assert all(torch.equal(a, b) for a, b in zip(step.model.parameters(), built))


@pytest.mark.parametrize("make", [
    lambda ps: torch.optim.Adam(ps, foreach=False),
    lambda ps: torch.optim.Adam(ps, weight_decay=1e-2, foreach=False),
    lambda ps: torch.optim.AdamW(ps, amsgrad=True, foreach=False),
    lambda ps: torch.optim.SGD(ps, lr=0.1, weight_decay=1e-4, foreach=False),
    lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4, foreach=False),
], ids=["adam", "adam_wd", "adamw_amsgrad", "sgd_wd", "sgd_nesterov_wd"])
def test_buffered_opt_step_temporaries_equal_what_torch_allocates(make):
    """With update="buffered", the opt.step() after the step allocates temporaries beside the
    static bytes (Adam: the square root and the quotient, while the previous parameter's denom
    lives). The graph's figure equals the storages torch allocates in a steady-state step, and
    poet.fit's minimum RAM includes it."""
    from poet.fit import fit
    from poet.updates import _Allocations

    zm = poet.zoo.get("sensor_cnn1d")
    model = copy.deepcopy(zm.model)
    opt = make(model.parameters())
    g = poet.extract(model, zm.loss_fn, zm.inputs, zm.targets, optimizer=opt)
    for _ in range(2):  # the first step creates the state (static bytes); the second is steady
        opt.zero_grad()
        zm.loss_fn(model(zm.inputs), zm.targets).backward()
        mode = _Allocations()
        with mode:
            opt.step()
    assert g.extra["optimizer_step_workspace_bytes"] == mode.peak(set()) > 0
    assert make_problem(g, "nrf52840").extra["optimizer_step_workspace_bytes"] == mode.peak(set())
    other = copy.deepcopy(zm.model)
    fused = poet.extract(other, zm.loss_fn, zm.inputs, zm.targets, update="fused",
                         optimizer=make(other.parameters()))
    assert "optimizer_step_workspace_bytes" not in fused.extra  # inside the update nodes there


def test_fit_minimum_includes_the_buffered_opt_step():
    """sensor_cnn1d, train=all, Adam, buffered: its largest parameter is the 10,240-float conv
    weight (64 x 32 x 5), so opt.step() needs 2 x 40,960 B of temporaries plus the 32-float BatchNorm
    bias before it (its denom still alive) beside the static bytes, above the step's own minimum."""
    from poet.fit import fit

    model = poet.zoo.get("sensor_cnn1d").model
    assert max(p.numel() for p in model.parameters()) == 64 * 32 * 5
    row = fit("sensor_cnn1d", "nrf52840", optimizer="adam", trains=["all"], updates=["buffered"],
              solve=False).rows[0]
    assert row.optimizer_step_bytes == 2 * 40_960 + 32 * 4
    assert row.min_ram_bytes == row.static_ram_bytes + row.optimizer_step_bytes
