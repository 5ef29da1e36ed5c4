"""poet.extract: tracing a training step into a layer graph, and what the graph promises.

Every check runs on real traces; replays run the traced ATen ops on real tensors and compare
with eager PyTorch bitwise (threads pinned to 1).
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import solver
from poet import zoo
from poet._extract import ExtractError, extract
from poet.graph import TrainingGraph, run_node
from poet.opcosts import FLOP_OVERRIDES

from conftest import rnn_bitwise

REPO = Path(__file__).resolve().parents[1]
FAST_ZOO = ["mlp", "cnn_dropout_bn", "bert", "resnet18", "vgg11", "ds_cnn", "sensor_cnn1d"]
SLOW_ZOO = ["mobilenetv2"]
assert sorted(FAST_ZOO + SLOW_ZOO) == sorted(zoo.names())


# ---------------------------------------------------------------------------- helpers


# bitwise comparisons with eager need one intra-op thread (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("one_thread")


_CACHE: dict[tuple, tuple[TrainingGraph, zoo.ZooModel]] = {}


def zoo_graph(name: str, batch_size: int = 1, **kwargs) -> tuple[TrainingGraph, zoo.ZooModel]:
    """Trace a zoo model once per test session (extract leaves the model untouched)."""
    key = (name, batch_size, repr(sorted(kwargs.items())))
    if key not in _CACHE:
        zm = zoo.get(name, batch_size=batch_size)
        _CACHE[key] = (extract(zm.model, zm.loss_fn, zm.inputs, zm.targets, **kwargs), zm)
    return _CACHE[key]


def as_tuple(x):
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def eager_step(model, loss_fn, x, y, seed=7, trainable=None):
    """One eager step on a copy of ``model``: (copy, loss). Gradients land in copy's .grad."""
    m = copy.deepcopy(model)
    if trainable is not None:
        for n, p in m.named_parameters():
            p.requires_grad_(n in trainable)
    torch.manual_seed(seed)
    loss = loss_fn(m(*as_tuple(x)), y)
    loss.backward()
    return m, loss.detach()


def replay(graph, model, x, y, seed=7):
    """Run every node in id order on a copy of ``model``, keeping only node outputs."""
    m = copy.deepcopy(model)
    torch.manual_seed(seed)
    values = graph.static_values(m, x, y)
    for node in graph.nodes:
        values.update(run_node(graph, node, values))
    return m, values


def assert_replay_bitwise(graph, zm, seed=7, sizes_exact=True, grads_bitwise=True):
    model, loss_fn, x, y = zm
    eager, loss = eager_step(model, loss_fn, x, y, seed, trainable=set(graph.trainable))
    replayed, values = replay(graph, model, x, y, seed)
    if sizes_exact:
        assert_out_bytes_are_real(graph, values)
    assert torch.equal(values[graph.loss_value], loss)
    grads = {n: p.grad for n, p in eager.named_parameters() if p.grad is not None}
    assert set(grads) == set(graph.grad_values)
    for pname, value in graph.grad_values.items():
        if grads_bitwise:
            assert torch.equal(values[value], grads[pname]), pname
        else:
            diff = (values[value] - grads[pname]).abs().max()
            assert diff <= 1e-6 * grads[pname].abs().max(), (pname, float(diff))
    for (bname, b_eager), (_, b_replay) in zip(eager.named_buffers(), replayed.named_buffers()):
        assert torch.equal(b_eager, b_replay), bname
    assert torch.equal(torch.get_rng_state(), _rng_after_eager(model, loss_fn, x, y, seed))


def assert_out_bytes_are_real(graph, values):
    """out_bytes equals the real storage of the values each node hands on."""
    for node in graph.nodes:
        storages = {}
        for name in node.outputs:
            t = values[name]
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        assert sum(storages.values()) == node.out_bytes, node.name


def _rng_after_eager(model, loss_fn, x, y, seed):
    state = torch.get_rng_state()
    eager_step(model, loss_fn, x, y, seed)
    after = torch.get_rng_state()
    torch.set_rng_state(state)
    return after


def eager_flops(model, loss_fn, x, y) -> int:
    m = copy.deepcopy(model)
    with FlopCounterMode(display=False, custom_mapping=FLOP_OVERRIDES) as counter:
        loss_fn(m(*as_tuple(x)), y).backward()
    return counter.get_total_flops()


def store_all_report(graph):
    from poet.costs import make_problem
    from poet.profiles import load_profile

    problem = make_problem(graph, load_profile("rpi4"))
    return problem, solver.simulate(problem, solver.store_all(problem))


def check_structure(graph: TrainingGraph):
    """Invariants every graph must satisfy."""
    T = graph.T
    assert [n.id for n in graph.nodes] == list(range(T))
    assert len({n.name for n in graph.nodes}) == T, "names are unique"
    assert all(0 <= u < v < T for u, v in graph.edges), "every edge goes forward"
    assert graph.edges == sorted(set(graph.edges))
    kinds = "".join({"forward": "f", "loss": "l", "backward": "b"}[n.kind] for n in graph.nodes)
    first_loss = kinds.index("l")
    assert set(kinds[:first_loss]) == {"f"} and "f" not in kinds[first_loss:]
    producer = graph.producer()
    for n in graph.nodes:
        assert n.out_bytes >= 0 and n.workspace_bytes >= 0 and n.flops >= 0 and n.extra_flops >= 0
        for value in n.inputs:
            assert producer[value] < n.id and (producer[value], n.id) in graph.edges
    assert sum(len(n.grads) for n in graph.nodes) == len(graph.grad_values)
    assert graph.static_bytes == sum(graph.static_breakdown.values())


# ---------------------------------------------------------------------------- zoo models


@pytest.mark.parametrize("name", FAST_ZOO + [pytest.param(n, marks=pytest.mark.slow) for n in SLOW_ZOO])
def test_zoo_graph_flops_structure_and_store_all(name):
    graph, zm = zoo_graph(name)
    check_structure(graph)
    assert graph.total_flops == eager_flops(*zm)  # exact, not only within 1%
    assert graph.total_flops > 0 and graph.total_extra_flops > 0
    problem, report = store_all_report(graph)
    assert problem.T == graph.T
    assert report.peak_ram_bytes >= graph.static_bytes + max(n.out_bytes for n in graph.nodes)


def test_resnet18_layer_graph_is_recognisable():
    """Out of place (inplace=False): every module call is a node of its own."""
    graph, _ = zoo_graph("resnet18", inplace=False)
    assert 100 <= graph.T <= 300  # low hundreds (measured: 127)
    assert graph.num_nonview_ops == 181
    names = [n.name for n in graph.nodes]
    for expected in ["conv1", "bn1", "relu", "layer1.0.conv1", "layer1.0:add", "layer1.0.relu#2",
                     "layer4.1.bn2", "fc", "loss", "fc.backward", "layer1.0.conv1.backward", "conv1.backward"]:
        assert expected in names, expected
    assert [n.kind for n in graph.nodes].count("loss") == 1
    bn = graph.node("layer1.0.bn1")
    assert bn.module_path == "layer1.0.bn1" and bn.kind == "forward"
    # BatchNorm keeps the output and the saved mean and invstd: 64x32x32 + 2x64 floats
    assert bn.out_bytes == 4 * (64 * 32 * 32 + 2 * 64)
    # the residual add reads the block input (relu of the stem) and bn2's output
    add = graph.node("layer1.0:add")
    preds = {graph.nodes[u].name for u in graph.preds[add.id]}
    assert preds == {"relu", "layer1.0.bn2"}
    # flops of conv1 (3->64, 3x3, 32x32 output) by hand: 2 * 64*32*32 * 3*3*3
    assert graph.node("conv1").flops == 2 * 64 * 32 * 32 * 27


def test_resnet18_in_place_relus_and_adds_join_their_producers():
    """inplace=True: the 9 ReLUs right after a BatchNorm (stem and each block's
    first) and the 8 residual adds with the ReLU after each run in place inside the BatchNorm
    node before them: 127 - 9 - 2*8 = 102 nodes, the same FLOPs, the backward nodes unchanged."""
    out_of_place, _ = zoo_graph("resnet18", inplace=False)
    graph, _ = zoo_graph("resnet18", inplace=True)
    assert graph.T == out_of_place.T - 25 == 102
    assert graph.total_flops == out_of_place.total_flops
    assert graph.total_extra_flops == out_of_place.total_extra_flops
    names = [n.name for n in graph.nodes]
    assert "relu" not in names and "layer1.0:add" not in names and "layer1.0.relu#2" not in names
    assert graph.node("bn1").extra["inplace"] == ["relu"]
    bn2 = graph.node("layer1.0.bn2")
    assert bn2.extra["inplace"] == ["add", "relu"]
    assert {graph.nodes[u].name for u in graph.preds[bn2.id]} == {"bn1", "layer1.0.conv2"}
    # the block's output lives in bn2's output buffer: 64x32x32 floats, + the saved mean and invstd
    assert bn2.out_bytes == out_of_place.node("layer1.0.bn2").out_bytes == 4 * (64 * 32 * 32 + 2 * 64)
    for name in ["layer1.0.relu#2.backward", "layer1.0.relu.backward", "relu.backward", "conv1.backward"]:
        assert name in names, name
    backward = [n.name for n in out_of_place.nodes if n.kind == "backward"]
    assert [n.name for n in graph.nodes if n.kind == "backward"] == backward


@pytest.mark.parametrize("name", ["cnn_dropout_bn", "bert", "resnet18",
                                  pytest.param("mobilenetv2", marks=pytest.mark.slow)])
def test_layer_replay_reproduces_eager_bitwise(name):
    graph, zm = zoo_graph(name, batch_size=2)
    assert_replay_bitwise(graph, zm)


def test_recomputing_any_node_is_safe():
    """No node writes into another node's tensor: recompute every node after the full step
    (scratch buffers for BatchNorm statistics, the RNG state of the first run for dropout)
    and every stored value stays as it was while each recomputed output matches bitwise."""
    for name in ["cnn_dropout_bn", "bert"]:
        graph, (model, loss_fn, x, y) = zoo_graph(name, batch_size=2)
        m = copy.deepcopy(model)
        torch.manual_seed(3)
        values = graph.static_values(m, x, y)
        rng_before = {}
        for node in graph.nodes:
            rng_before[node.id] = torch.get_rng_state()
            values.update(run_node(graph, node, values))
        snapshot = {k: v.clone() for k, v in values.items() if isinstance(v, torch.Tensor)}
        for node in graph.nodes:
            scratch = dict(values)
            for ph in node.mutates:
                scratch[ph] = values[ph].clone()
            state = torch.get_rng_state()
            if node.random:
                torch.set_rng_state(rng_before[node.id])
            again = run_node(graph, node, scratch)
            torch.set_rng_state(state)
            for k, v in again.items():
                assert torch.equal(v, values[k]), (name, node.name, k)
            for k, v in snapshot.items():
                assert torch.equal(values[k], v), (name, node.name, "changed", k)


def test_mutates_and_random_flags():
    graph, _ = zoo_graph("cnn_dropout_bn")
    roles = {p.fx_name: p.qualname for p in graph.placeholders}
    bn1 = graph.node("bn1")
    assert sorted(roles[m] for m in bn1.mutates) == ["bn1.num_batches_tracked", "bn1.running_mean",
                                                      "bn1.running_var"]
    assert [n.name for n in graph.nodes if n.random] == ["dropout"]
    assert [n.name for n in graph.nodes if n.mutates] == ["bn1", "bn2"]
    # no in-place op is left on another node's tensor: only bernoulli_ and buffer updates
    inplace = sorted({str(n.target) for n in graph.fx_graph.graph.nodes
                      if isinstance(n.target, torch._ops.OpOverload) and n.target._schema.name.endswith("_")})
    assert inplace == ["aten.add_.Tensor", "aten.bernoulli_.float"]


def test_grad_values_have_parameter_shapes():
    graph, (model, *_ ) = zoo_graph("bert")
    params = dict(model.named_parameters())
    assert set(graph.grad_values) == set(params)  # tied lm_head/tok_embed weight counted once
    for pname, value in graph.grad_values.items():
        assert tuple(graph.fx_node(value).meta["val"].shape) == tuple(params[pname].shape)
    owner = {p: n.name for n in graph.nodes for p in n.grads}
    assert owner["tok_embed.weight"] == "tok_embed.backward"
    assert owner["layers.0.linear1.weight"] == "layers.0.linear1.backward"


# ---------------------------------------------------------------------------- hand-computed values


class Chain(nn.Module):
    """Four elementwise ops: two temporaries (a, b), exp's result is saved for backward."""

    def forward(self, x):
        a = x * 2
        b = a + 1
        c = b.exp()
        return c * 3


class ChainNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(8, 8)
        self.chain = Chain()
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc2(self.chain(self.fc1(x)))


def test_workspace_out_bytes_and_costs_by_hand():
    torch.manual_seed(0)
    model = ChainNet()
    x, y = torch.randn(4, 8), torch.randint(0, 3, (4,))
    graph = extract(model, F.cross_entropy, x, y)
    chain = graph.node("chain")
    t = 4 * 8 * 4  # one 4x8 float32 tensor
    # a and b live together during the add, b and c during exp (c is an output): peak 2 tensors
    assert chain.workspace_bytes == 2 * t
    assert chain.out_bytes == 2 * t  # c (saved by exp's backward) and the result
    assert chain.flops == 0 and chain.extra_flops == 4 * 32  # 4 elementwise ops, 1 FLOP per element
    assert chain.bytes_written == 4 * t
    assert chain.bytes_read == 4 * t  # each op reads one 4x8 tensor (scalars are not tensors)
    assert chain.aten_nodes and all(graph.fx_node(a).target.__name__.split(".")[0] in ("mul", "add", "exp")
                                    for a in chain.aten_nodes)
    fc1 = graph.node("fc1")
    assert fc1.flops == 2 * 4 * 8 * 8 and fc1.out_bytes == t and fc1.workspace_bytes == 0
    fc2 = graph.node("fc2")
    assert fc2.flops == 2 * 4 * 8 * 3
    params = 4 * (8 * 8 + 8 + 8 * 3 + 3)
    inputs = t + 4 * 8  # x float32, y int64
    assert graph.static_breakdown == {"trained_params": params, "frozen_params": 0, "grads": params,
                                      "optimizer_state": 0, "buffers": 0, "inputs": inputs, "constants": 0}
    adam = extract(model, F.cross_entropy, x, y, optimizer="adam")
    assert adam.static_bytes == 4 * params + 4 * 4 + inputs  # params, grads, two moments, 4 step counts
    momentum = extract(model, F.cross_entropy, x, y, optimizer="sgd_momentum", train="bias")
    biases = 4 * (8 + 3)
    assert momentum.static_breakdown["grads"] == biases and momentum.static_breakdown["optimizer_state"] == biases


def test_mlp_static_bytes_and_op_counts():
    graph, _ = zoo_graph("mlp")
    params = 4 * (64 * 128 + 128 + 128 * 128 + 128 + 128 * 10 + 10)
    assert graph.static_breakdown["trained_params"] == params == graph.static_breakdown["grads"]
    assert graph.static_breakdown["frozen_params"] == 0
    assert graph.static_breakdown["inputs"] == 4 * 64 + 8
    assert [n.name for n in graph.nodes] == [
        "fc1", "act1", "fc2", "act2", "fc3", "loss",
        "fc3.backward", "act2.backward", "fc2.backward", "act1.backward", "fc1.backward"]
    # addmm forward + two mm backward per Linear (the first layer needs no input gradient)
    assert graph.total_flops == 3 * 2 * (64 * 128 + 128 * 128 + 128 * 10) - 2 * 64 * 128


# ---------------------------------------------------------------------------- other shapes of model


class UNet(nn.Module):
    """A small U-Net: long skip connections joined by torch.cat, ConvTranspose2d and Upsample."""

    def __init__(self, c: int = 4):
        super().__init__()

        def block(i, o):
            return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(inplace=True))

        self.enc1, self.enc2, self.mid = block(3, c), block(c, 2 * c), block(2 * c, 4 * c)
        self.pool = nn.MaxPool2d(2)
        self.up2 = nn.ConvTranspose2d(4 * c, 2 * c, 2, stride=2)
        self.dec2 = block(4 * c, 2 * c)
        self.up1 = nn.Upsample(scale_factor=2, mode="nearest")
        self.dec1 = block(3 * c, c)
        self.head = nn.Conv2d(c, 2, 1)

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(self.pool(e1))
        m = self.mid(self.pool(e2))
        d2 = self.dec2(torch.cat([self.up2(m), e2], 1))
        return self.head(self.dec1(torch.cat([self.up1(d2), e1], 1)))


@pytest.mark.parametrize("granularity", ["layer", "op"])
def test_unet_with_long_skips(granularity):
    torch.manual_seed(0)
    zm = zoo.ZooModel(UNet(), F.cross_entropy, torch.randn(2, 3, 16, 16), torch.randint(0, 2, (2, 16, 16)))
    graph = extract(*zm, granularity=granularity)
    check_structure(graph)
    assert graph.total_flops == eager_flops(*zm)
    assert_replay_bitwise(graph, zm)
    store_all_report(graph)
    if granularity == "layer":
        cat_nodes = [n for n in graph.nodes if n.name.startswith("UNet:cat")]
        assert len(cat_nodes) == 2
        enc1_relu = graph.node("enc1.2")
        assert (enc1_relu.id, cat_nodes[1].id) in graph.edges  # the long skip
        assert cat_nodes[1].id - enc1_relu.id > 10


def test_op_granularity_keeps_flops_and_splits_layers():
    layer, zm = zoo_graph("cnn_dropout_bn", batch_size=2)
    ops = extract(*zm, granularity="op")
    check_structure(ops)
    assert ops.total_flops == layer.total_flops and ops.total_extra_flops == layer.total_extra_flops
    assert ops.T > layer.T
    # every non-view ATen op is in exactly one op node (getitems ride with their producer)
    owned = [a for n in ops.nodes for a in n.aten_nodes]
    assert len(owned) == len(set(owned)) == ops.num_nonview_ops
    assert {n.extra["layer"] for n in ops.nodes} == {n.name for n in layer.nodes}
    assert_replay_bitwise(ops, zm)


class WithInplaceAfterView(nn.Module):
    """``h.mul_(2)`` after views of h were taken: later readers of the views must see the new h."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.fc2 = nn.Linear(4, 4)

    def forward(self, x):
        h = self.fc(x)
        v = h.view(-1)
        w = v[1:5]
        h.mul_(2)
        return self.fc2(v.view(2, 4) + h) + w.sum()


def test_inplace_op_rewritten_and_views_remade():
    torch.manual_seed(0)
    zm = zoo.ZooModel(WithInplaceAfterView(), F.cross_entropy, torch.randn(2, 4), torch.tensor([0, 3]))
    graph = extract(*zm)
    assert_replay_bitwise(graph, zm)
    assert not any(str(n.target) == "aten.mul_.Tensor" for n in graph.fx_graph.graph.nodes)


class SliceInplace(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        h = self.fc(x) * 1.0
        h[:, :2] *= 3
        return h


def test_inplace_write_into_a_slice_is_a_clear_error():
    with pytest.raises(ExtractError, match=r"in-place op aten\.mul_\.Tensor .*view.*torch\.cat or torch\.where"):
        extract(SliceInplace(), F.mse_loss, torch.randn(2, 4), torch.randn(2, 4))


class WithConstant(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.scale = torch.tensor([1.0, 2.0, 3.0, 4.0])  # a plain attribute, not a buffer

    def forward(self, x):
        return self.fc(x) * self.scale


def test_captured_constant_is_static_once():
    zm = zoo.ZooModel(WithConstant(), F.cross_entropy, torch.randn(2, 4), torch.tensor([0, 3]))
    graph = extract(*zm)
    constants = [p for p in graph.placeholders if p.role == "constant"]
    assert constants and all(p.nbytes == 16 for p in constants)
    assert graph.static_breakdown["constants"] == 16
    assert_replay_bitwise(graph, zm)


class Attention(nn.Module):
    """Self-attention through F.scaled_dot_product_attention (the CPU flash kernel)."""

    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(16, 48)
        self.out = nn.Linear(16, 16)

    def forward(self, x):
        q, k, v = self.qkv(x).view(2, 8, 3, 2, 8).permute(2, 0, 3, 1, 4).unbind(0)
        return self.out(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(2, 8, 16))


class Activations(nn.Module):
    """GroupNorm and in-place activations of several kinds, Dropout2d."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.norm = nn.GroupNorm(2, 8)
        self.silu, self.hswish = nn.SiLU(inplace=True), nn.Hardswish(inplace=True)
        self.leaky, self.elu = nn.LeakyReLU(inplace=True), nn.ELU(inplace=True)
        self.drop = nn.Dropout2d(0.3)
        self.fc = nn.Linear(8 * 6 * 6, 4)

    def forward(self, x):
        h = self.hswish(self.silu(self.norm(self.conv(x)))) * 1.0
        return self.fc(torch.flatten(self.drop(self.elu(self.leaky(h) + 0.0)), 1))


class Recurrent(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(8, 16, batch_first=True, num_layers=2)
        self.gru = nn.GRU(16, 8, batch_first=True)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(self.gru(self.lstm(x)[0])[0][:, -1])


def _mha_loss(out, t):
    return F.cross_entropy(out[0].flatten(0, 1), t)


def _token_loss(out, t):
    return F.cross_entropy(out.flatten(0, 1), t.flatten())


BLOCKS = {
    "sdpa": lambda: (Attention(), _token_loss, torch.randn(2, 8, 16), torch.randint(0, 16, (2, 8))),
    "activations": lambda: (Activations(), F.cross_entropy, torch.randn(2, 3, 8, 8), torch.tensor([1, 3])),
    "mha": lambda: (nn.MultiheadAttention(16, 4, dropout=0.2, batch_first=True), _mha_loss,
                    (torch.randn(2, 8, 16),) * 3, torch.randint(0, 16, (16,))),
    "prenorm_gelu": lambda: (nn.Sequential(
        nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True, activation="gelu", norm_first=True),
        nn.Flatten(), nn.Linear(128, 2)), F.cross_entropy, torch.randn(2, 8, 16), torch.tensor([0, 1])),
    "lstm_gru": lambda: (Recurrent(), F.cross_entropy, torch.randn(2, 5, 8), torch.tensor([0, 2])),
}


@pytest.mark.parametrize("block", list(BLOCKS))
def test_torch_nn_building_blocks(block):
    torch.manual_seed(0)
    zm = zoo.ZooModel(*BLOCKS[block]())
    graph = extract(*zm)
    check_structure(graph)
    assert graph.total_flops == eager_flops(*zm)
    # the CPU LSTM's fake kernel reports a 0-byte workspace where the real one allocates it
    assert_replay_bitwise(graph, zm, sizes_exact=block != "lstm_gru",
                          grads_bitwise=block != "lstm_gru" or rnn_bitwise())
    store_all_report(graph)
    if block == "sdpa":  # q, k, v: B=2, H=2, L=S=8, D=8; FLOP counts by hand
        b, h, l, d = 2, 2, 8, 8
        fwd, bwd = [n for n in graph.nodes if "scaled_dot_product" in n.name]
        assert fwd.extra_flops == 2 * (2 * b * h * l * l * d) + 5 * b * h * l * l
        # torch's formula for SDPA backward: recompute q.k^T, then four matmuls for the gradients
        assert bwd.extra_flops == 5 * (2 * b * h * l * l * d) + 4 * b * h * l * l


# ---------------------------------------------------------------------------- partial training


def test_partial_training_modes_shrink_the_graph():
    for name in ["resnet18", "bert"]:
        full, _ = zoo_graph(name)
        _, full_report = store_all_report(full)
        for mode in ["bias", "last"]:
            part, _ = zoo_graph(name, train=mode)
            check_structure(part)
            _, report = store_all_report(part)
            assert part.T < full.T, (name, mode)
            assert report.peak_ram_bytes < full_report.peak_ram_bytes, (name, mode)
    bias, _ = zoo_graph("resnet18", train="bias")
    assert bias.trainable and all(p.endswith(".bias") for p in bias.trainable)
    last, _ = zoo_graph("resnet18", train="last")
    assert last.trainable == ["fc.weight", "fc.bias"] == sorted(last.grad_values, reverse=True)
    assert not any(n.name.startswith("layer") and n.kind == "backward" for n in last.nodes)
    # TinyOL on BERT: the last module called is lm_head, whose weight is tok_embed's
    bert_last, _ = zoo_graph("bert", train="last")
    assert bert_last.trainable == ["tok_embed.weight"]


def test_partial_training_on_other_models_never_grows():
    for name in ["mlp", "cnn_dropout_bn", "vgg11"]:
        full, _ = zoo_graph(name)
        _, full_report = store_all_report(full)
        for mode in ["bias", "last"]:
            part, _ = zoo_graph(name, train=mode)
            _, report = store_all_report(part)
            assert part.T <= full.T and report.peak_ram_bytes < full_report.peak_ram_bytes, (name, mode)


def test_sparse_update_by_module_names_replays_bitwise():
    graph, zm = zoo_graph("cnn_dropout_bn", batch_size=2, train=["conv2", "fc", "bn1.bias"])
    assert graph.trainable == ["bn1.bias", "conv2.weight", "conv2.bias", "fc.weight", "fc.bias"]
    assert "conv1.backward" not in [n.name for n in graph.nodes]
    assert_replay_bitwise(graph, zm)


def test_model_is_left_untouched():
    zm = zoo.get("cnn_dropout_bn")
    zm.model.conv1.weight.requires_grad_(False)
    flags = {n: p.requires_grad for n, p in zm.model.named_parameters()}
    state = {k: v.clone() for k, v in zm.model.state_dict().items()}
    rng = torch.get_rng_state()
    for train in ["all", "bias", "last", ["conv1"]]:
        graph = extract(*zm, train=train)
        assert {n: p.requires_grad for n, p in zm.model.named_parameters()} == flags
    assert all(torch.equal(v, zm.model.state_dict()[k]) for k, v in state.items())
    assert torch.equal(rng, torch.get_rng_state())
    assert zm.model.training
    # "all" means the parameters that require grad: frozen conv1.weight gets no gradient
    graph = extract(*zm, train="all")
    assert "conv1.weight" not in graph.grad_values and "conv1.bias" in graph.grad_values
    # hooks are gone: the model's forward runs without annotating anything
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in zm.model.modules())


def test_frozen_front_needs_no_backward():
    torch.manual_seed(0)
    model = ChainNet()
    model.fc1.requires_grad_(False)
    x, y = torch.randn(4, 8), torch.randint(0, 3, (4,))
    graph = extract(model, F.cross_entropy, x, y)
    names = [n.name for n in graph.nodes]
    assert "fc1.backward" not in names and "chain.backward" not in names  # nothing upstream trains
    assert graph.trainable == ["fc2.weight", "fc2.bias"]
    assert_replay_bitwise(graph, zoo.ZooModel(model, F.cross_entropy, x, y))


# ---------------------------------------------------------------------------- errors


class DataDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        h = self.fc(x)
        if h.sum() > 0:
            return h * 2
        return h


def test_data_dependent_control_flow_is_a_clear_error():
    with pytest.raises(ExtractError) as info:
        extract(DataDependent(), F.mse_loss, torch.randn(2, 4), torch.randn(2, 4))
    text = str(info.value)
    assert "depends on the value of a tensor" in text
    assert "DataDependent" in text and "torch.where" in text


def test_bad_arguments_name_the_argument():
    model, loss_fn, x, y = zoo.get("mlp")
    with pytest.raises(ValueError, match="granularity must be one of"):
        extract(model, loss_fn, x, y, granularity="block")
    with pytest.raises(ValueError, match="optimizer must be one of"):
        extract(model, loss_fn, x, y, optimizer="rmsprop")
    with pytest.raises(ValueError, match="train must be one of"):
        extract(model, loss_fn, x, y, train="most")
    with pytest.raises(ValueError, match="'fc9'.*neither a module nor a parameter"):
        extract(model, loss_fn, x, y, train=["fc9"])
    with pytest.raises(ValueError, match="model must be a torch.nn.Module"):
        extract(lambda t: t, loss_fn, x, y)
    with pytest.raises(ValueError, match="example_inputs must be tensors"):
        extract(model, loss_fn, [x, 3], y)
    with pytest.raises(ExtractError, match="loss_fn must return a scalar tensor"):
        extract(model, lambda out, t: out, x, y)
    model.requires_grad_(False)
    with pytest.raises(ValueError, match="selects no parameter"):
        extract(model, loss_fn, x, y)


def test_poet_extract_spellings():
    import poet

    model, loss_fn, x, y = zoo.get("mlp")
    graph = poet.extract(model, loss_fn, x, y)
    assert graph.T == 11
    assert poet.extract.ExtractError is ExtractError and poet.ExtractError is ExtractError
    # the function lives in the private module poet._extract; no module shadows it
    assert poet.extract is extract and type(poet.extract).__name__ == "function"
    assert "poet.extract" not in sys.modules and type(sys.modules["poet._extract"]).__name__ == "module"


# ---------------------------------------------------------------------------- views of the graph


def test_to_networkx_and_summary():
    graph, _ = zoo_graph("cnn_dropout_bn")
    g = graph.to_networkx()
    assert g.number_of_nodes() == graph.T and sorted(g.edges) == graph.edges
    assert g.nodes[0]["name"] == "conv1" and g.nodes[0]["flops"] == graph.nodes[0].flops
    import networkx as nx

    assert nx.is_directed_acyclic_graph(g)
    s = graph.summary()
    assert s["nodes"] == graph.T and s["flops"] == graph.total_flops and json.dumps(s)
    assert graph.preds[graph.node("bn1").id] == [graph.node("conv1").id]


# ---------------------------------------------------------------------------- determinism

_DUMP = textwrap.dedent("""
    import json, sys
    from poet import zoo
    from poet._extract import extract
    out = {}
    for name in sys.argv[1:]:
        g = extract(*zoo.get(name))
        out[name] = [[n.name, n.kind, n.flops, n.extra_flops, n.out_bytes, n.workspace_bytes, n.bytes_read,
                      n.bytes_written, n.fx_nodes, n.outputs] for n in g.nodes] + [g.edges, g.static_bytes]
    print(json.dumps(out))
""")


def _dump_in_subprocess(names):
    proc = subprocess.run([sys.executable, "-c", _DUMP, *names], capture_output=True, text=True, cwd=REPO,
                          timeout=600, check=True)
    return json.loads(proc.stdout)


@pytest.mark.parametrize("names", [["mlp", "cnn_dropout_bn", "bert"],
                                   pytest.param(["resnet18", "vgg11", "mobilenetv2"], marks=pytest.mark.slow)])
def test_two_processes_give_identical_graphs(names):
    first = _dump_in_subprocess(names)
    second = _dump_in_subprocess(names)
    assert first == second
    assert set(first) == set(names)
    graph, _ = zoo_graph(names[0])
    assert [n[0] for n in first[names[0]][:-2]] == [n.name for n in graph.nodes]


class WithUnused(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.spare = nn.Linear(4, 3)  # never called

    def forward(self, x):
        return self.fc(x)


def test_unused_trained_parameter_gets_no_gradient_node():
    zm = zoo.ZooModel(WithUnused(), F.cross_entropy, torch.randn(2, 4), torch.tensor([0, 2]))
    graph = extract(*zm)
    assert graph.extra["unused_params"] == ["spare.weight", "spare.bias"]
    assert set(graph.grad_values) == {"fc.weight", "fc.bias"}
    assert graph.static_breakdown["grads"] == 4 * 2 * (4 * 3 + 3)  # the optimizer still holds both
    assert_replay_bitwise(graph, zm)


class _RaisesInForward(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        raise RuntimeError("sensor offline\nsecond line")


def test_a_forward_that_fails_while_finding_layers_is_one_line_naming_the_purpose():
    from poet.fit_choices import model_blocks

    model, x, y = _RaisesInForward(), torch.randn(2, 3), torch.tensor([0, 1])
    state = torch.random.get_rng_state()
    with pytest.raises(ExtractError, match=r"^train='last' \(to find the last layer\) could not run the "
                                           r"model's forward: RuntimeError: sensor offline$"):
        extract(model, F.cross_entropy, x, y, train="last")
    with pytest.raises(ExtractError, match=r"^poet fit \(to find the model's blocks\) could not run"):
        model_blocks(model, (x,))
    assert torch.equal(torch.random.get_rng_state(), state)


def test_a_batchnorm_backward_with_its_input_gradient_masked_off_allocates_none():
    """train="bias" after a frozen bias-free conv: the BatchNorm's backward computes only its bias
    gradient (output_mask [False, False, True]). The CPU kernel returns no grad_input (the fake
    kernel does): no workspace, 16 floats written, and the replay measures what is predicted."""
    import solver
    from poet.executor import execute
    from poet.resolve import structural_problem

    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv1d(3, 16, 5, padding=2, bias=False), nn.BatchNorm1d(16), nn.ReLU(),
                      nn.Flatten(), nn.Linear(16 * 32, 4))
    x, y = torch.randn(1, 3, 32), torch.tensor([2])
    g = extract(m, F.cross_entropy, x, y, train="bias")
    n = g.node("1.backward")
    assert n.workspace_bytes == 0 and n.bytes_written == 16 * 4
    p = structural_problem(g)
    s = solver.store_all(p)
    res = execute(g, s, m, x, y, problem=p)
    assert res.node_workspace_bytes[n.id] == 0
    assert res.ram_trace == solver.simulate(p, s).ram_trace
