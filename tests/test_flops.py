"""FLOP counts of single ATen ops against hand counts (issue #12 item 5).

Every expected figure is written out here from the op's shapes, 2 FLOPs per multiply-accumulate
(MAC), never taken from poet or from torch's counter. A convolution's MACs: output elements x
C_in/groups x kernel elements (plain), input elements x C_out/groups x kernel elements
(transposed); its backward costs that once for grad_input and once for grad_weight, each only
where autograd needs it.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from poet._extract import extract
from poet.fxnodes import is_view
from poet.opcosts import FLOP_OVERRIDES, op_extra_flops, op_flops

aten = torch.ops.aten


def traced_ops(model, x, *, train="all", target=None):
    """The non-view ATen ops of one traced training step (MSE against zeros unless `target`)."""
    torch.manual_seed(0)
    if target is None:
        with torch.no_grad():
            target = torch.zeros_like(model(x))
    graph = extract(model, F.mse_loss, x, target, granularity="op", train=train)
    return [n for n in graph.fx_graph.graph.nodes
            if n.op == "call_function" and isinstance(n.target, torch._ops.OpOverload) and not is_view(n)]


def only(ops, packet, index=None):
    found = [n for n in ops if n.target.overloadpacket is packet]
    if index is None:
        assert len(found) == 1, [str(n.target) for n in found]
        return found[0]
    return found[index]


def conv_out(size, k, stride, pad, dil):
    return (size + 2 * pad - dil * (k - 1) - 1) // stride + 1


def convT_out(size, k, stride, pad, dil, out_pad):
    return (size - 1) * stride - 2 * pad + dil * (k - 1) + out_pad + 1


# ---------------------------------------------------------------------------- the case


def test_depthwise_3x3_backward_is_within_1pct_of_the_hand_count():
    # a 64-channel depthwise 3x3 (padding 1) on 1x64x32x32, after a 1x1 conv so that both
    # grad_input and grad_weight are needed
    model = nn.Sequential(nn.Conv2d(64, 64, 1, bias=False), nn.Conv2d(64, 64, 3, padding=1, groups=64, bias=False))
    ops = traced_ops(model, torch.randn(1, 64, 32, 32))
    forward_hand = 2 * (1 * 64 * 32 * 32) * (64 // 64) * 3 * 3          # 1,179,648
    backward_hand = 2 * forward_hand                                     # grad_input + grad_weight
    dw_forward = only(ops, aten.convolution, 1)
    dw_backward = only(ops, aten.convolution_backward, 0)               # backward runs last layer first
    assert list(dw_backward.args[10]) == [True, True, False]
    assert abs(op_flops(dw_forward) - forward_hand) <= 0.01 * forward_hand
    assert abs(op_flops(dw_backward) - backward_hand) <= 0.01 * backward_hand
    assert backward_hand == 2_359_296 and op_flops(dw_backward) == backward_hand  # exact in fact


# ---------------------------------------------------------------------------- every convolution

# (name, dims, C_in, C_out, groups, kernel, stride, padding, dilation, transposed, output_padding, size)
CONVS = [
    ("conv2d_groups1_stride2_dilation2", 2, 4, 6, 1, 3, 2, 1, 2, False, 0, 16),
    ("conv2d_groups4", 2, 16, 8, 4, 3, 1, 1, 1, False, 0, 8),
    ("conv2d_depthwise_stride2", 2, 12, 12, 12, 3, 2, 1, 1, False, 0, 9),
    ("conv2d_depthwise_multiplier2", 2, 6, 12, 6, 5, 1, 2, 1, False, 0, 7),
    ("conv1d_groups4_dilation3", 1, 8, 12, 4, 3, 1, 0, 3, False, 0, 20),
    ("conv3d_groups2", 3, 4, 6, 2, 3, 1, 1, 1, False, 0, 5),
    ("conv_transpose2d_groups1_stride2", 2, 4, 6, 1, 3, 2, 1, 1, True, 1, 5),
    ("conv_transpose2d_groups2_stride2", 2, 4, 6, 2, 3, 2, 0, 1, True, 0, 5),
    ("conv_transpose1d_depthwise_dilation2", 1, 6, 6, 6, 3, 1, 0, 2, True, 0, 11),
]


def conv_module(dims, c_in, c_out, groups, k, stride, pad, dil, transposed, out_pad, bias=True):
    if transposed:
        cls = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}[dims]
        return cls(c_in, c_out, k, stride, pad, out_pad, groups=groups, bias=bias, dilation=dil)
    cls = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[dims]
    return cls(c_in, c_out, k, stride, pad, dil, groups=groups, bias=bias)


def hand_forward(dims, c_in, c_out, groups, k, stride, pad, dil, transposed, out_pad, size, batch=2):
    """2 x MACs of the forward, from the shapes alone."""
    if transposed:  # every input element meets C_out/groups x k^dims weights
        return 2 * batch * c_in * size ** dims * (c_out // groups) * k ** dims
    out = conv_out(size, k, stride, pad, dil)
    return 2 * batch * c_out * out ** dims * (c_in // groups) * k ** dims


# which of grad_input, grad_weight, grad_bias the convolution's backward computes, and how the
# model asks for it
MASKS = {
    "all": ((True, True, True), "all"),        # a trained conv after a trained 1x1: all three
    "frozen": ((True, False, False), ["0"]),   # only the 1x1 before it trains: grad_input only
    "first": ((False, True, True), None),      # the conv is the model's first layer: no grad_input
}


@pytest.mark.parametrize("mask", list(MASKS))
@pytest.mark.parametrize("case", CONVS, ids=[c[0] for c in CONVS])
def test_convolution_forward_and_backward_match_the_hand_count(case, mask):
    _, dims, c_in, c_out, groups, k, stride, pad, dil, transposed, out_pad, size = case
    (want_input, want_weight, want_bias), train = MASKS[mask]
    conv = conv_module(dims, c_in, c_out, groups, k, stride, pad, dil, transposed, out_pad)
    pre = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[dims](c_in, c_in, 1, bias=False)
    model = nn.Sequential(conv) if mask == "first" else nn.Sequential(pre, conv)
    ops = traced_ops(model, torch.randn(2, c_in, *[size] * dims), train=train or "all")
    forward = hand_forward(dims, c_in, c_out, groups, k, stride, pad, dil, transposed, out_pad, size)

    conv_fwd = only(ops, aten.convolution, -1)
    conv_bwd = only(ops, aten.convolution_backward, 0)
    assert tuple(conv_bwd.args[10]) == (want_input, want_weight, want_bias)
    out_size = convT_out(size, k, stride, pad, dil, out_pad) if transposed else conv_out(size, k, stride, pad, dil)
    assert tuple(conv_fwd.meta["val"].shape) == (2, c_out, *[out_size] * dims)
    out_elems = 2 * c_out * out_size ** dims
    assert op_flops(conv_fwd) == forward
    assert op_extra_flops(conv_fwd) == out_elems                 # + bias per output element
    assert op_flops(conv_bwd) == forward * (want_input + want_weight)
    assert op_extra_flops(conv_bwd) == out_elems * want_bias     # grad_bias: the sum of grad_output


# ---------------------------------------------------------------------------- matmuls


def test_linear_on_a_sequence_counts_addmm_and_both_mm():
    b, length, k, n = 2, 5, 7, 3
    model = nn.Sequential(nn.Linear(k, k), nn.Linear(k, n))
    ops = traced_ops(model, torch.randn(b, length, k))
    addmm = only(ops, aten.addmm, 1)
    assert op_flops(addmm) == 2 * (b * length) * k * n
    assert op_extra_flops(addmm) == b * length * n        # + bias per output element
    # backward of the second Linear: grad_input (bl x n @ n x k) and grad_weight (n x bl @ bl x k)
    mms = [n_ for n_ in ops if n_.target.overloadpacket is aten.mm]
    assert [op_flops(m) for m in mms[:2]] == [2 * b * length * n * k] * 2
    assert all(op_extra_flops(m) == 0 for m in mms)


class BatchedMatmuls(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(3, 5, 4))
        self.bias = nn.Parameter(torch.randn(3, 6, 2))
        self.v = nn.Parameter(torch.randn(3, 4, 2))

    def forward(self, x):                                 # x: 3 x 6 x 5
        return torch.baddbmm(self.bias, torch.bmm(x, self.w), self.v)


def test_bmm_and_baddbmm_hand_counts():
    ops = traced_ops(BatchedMatmuls(), torch.randn(3, 6, 5))
    bmm_fwd = only(ops, aten.bmm, 0)
    baddbmm = only(ops, aten.baddbmm)
    assert op_flops(bmm_fwd) == 2 * 3 * 6 * 4 * 5         # b x m x n x k
    assert op_extra_flops(bmm_fwd) == 0
    assert op_flops(baddbmm) == 2 * 3 * 6 * 2 * 4
    assert op_extra_flops(baddbmm) == 3 * 6 * 2           # + self per output element
    # backward: baddbmm's two operand gradients (v is a leaf, h = bmm(x, w) needs one), then w's
    backward = [op_flops(n) for n in ops if n.target.overloadpacket is aten.bmm][1:]
    assert sorted(backward) == sorted([2 * 3 * 6 * 4 * 2, 2 * 3 * 4 * 2 * 6, 2 * 3 * 5 * 4 * 6])


class SelfAttention(nn.Module):
    def __init__(self, embed=16, heads=2):
        super().__init__()
        self.pre = nn.Linear(embed, embed)
        self.mha = nn.MultiheadAttention(embed, heads, batch_first=True)

    def forward(self, x):
        h = self.pre(x)
        return self.mha(h, h, h, need_weights=False)[0]


def test_attention_hand_counts():
    b, length, e, heads = 2, 8, 16, 2
    d = e // heads
    ops = traced_ops(SelfAttention(e, heads), torch.randn(b, length, e))
    rows = b * length
    # q, k, v projections: one packed (rows x e) @ (e x 3e) product, bias added separately
    assert op_flops(only(ops, aten.mm, 0)) == 2 * rows * e * 3 * e
    scores = 2 * b * heads * length * length * d           # q @ k^T, and (weights @ v) alike
    sdpa = only(ops, aten._scaled_dot_product_flash_attention_for_cpu)
    sdpa_bwd = only(ops, aten._scaled_dot_product_flash_attention_for_cpu_backward)
    # 2 products + softmax (5 per score element); backward: recomputed scores + 4 gradient products
    assert op_extra_flops(sdpa) == 2 * scores + 5 * b * heads * length * length
    assert op_extra_flops(sdpa_bwd) == 5 * scores + 4 * b * heads * length * length
    out_proj = only(ops, aten.addmm, 1)
    assert op_flops(out_proj) == 2 * rows * e * e and op_extra_flops(out_proj) == rows * e


# ---------------------------------------------------------------------------- ops torch does not count


def test_cpu_lstm_layer_counts_its_matmuls():
    steps, batch, i, h = 5, 2, 8, 16

    class Seq(nn.Module):
        def __init__(self):
            super().__init__()
            self.pre = nn.Linear(i, i)
            self.lstm = nn.LSTM(i, h, batch_first=True)

        def forward(self, x):
            return self.lstm(self.pre(x))[0]

    ops = traced_ops(Seq(), torch.randn(batch, steps, i))
    rows, gates = steps * batch, 4 * h
    macs = rows * (gates * i + gates * h)                 # x @ w_ih^T and h @ w_hh^T at every step
    gate_work = 4 * rows * gates                          # two bias adds, the sum, the activation
    fwd = only(ops, aten.mkldnn_rnn_layer)
    bwd = only(ops, aten.mkldnn_rnn_layer_backward)
    assert op_extra_flops(fwd) == 2 * macs + gate_work == 33_280
    assert op_extra_flops(bwd) == 2 * 2 * macs + gate_work  # grads of x, h, w_ih, w_hh


def test_embedding_backward_counts_one_add_per_gradient_element():
    model = nn.Sequential(nn.Embedding(1000, 8), nn.Linear(8, 2))
    idx = torch.randint(0, 1000, (2, 5))
    ops = traced_ops(model, idx, target=torch.zeros(2, 5, 2))
    assert op_extra_flops(only(ops, aten.embedding_dense_backward)) == 2 * 5 * 8  # not 1000 x 8


# ---------------------------------------------------------------------------- a whole network


def _div8(v):
    r = max(8, int(v + 4) // 8 * 8)
    return r + 8 if r < 0.9 * v else r


def _cbr(i, o, k, s, g=1):
    return [nn.Conv2d(i, o, k, s, (k - 1) // 2, groups=g, bias=False), nn.BatchNorm2d(o), nn.ReLU6()]


class _Block(nn.Module):
    def __init__(self, i, o, s, t):
        super().__init__()
        h = i * t
        self.res = s == 1 and i == o
        self.conv = nn.Sequential(*(_cbr(i, h, 1, 1) if t != 1 else []), *_cbr(h, h, 3, s, h),
                                  nn.Conv2d(h, o, 1, bias=False), nn.BatchNorm2d(o))

    def forward(self, x):
        return x + self.conv(x) if self.res else self.conv(x)


def mobilenetv2(width=0.35, classes=10):
    """MobileNetV2 (Sandler et al. 2018, Table 2), ImageNet layout, channels rounded to 8."""
    c = _div8(32 * width)
    layers = _cbr(3, c, 3, 2)
    for t, ch, n, s in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                        (6, 160, 3, 2), (6, 320, 1, 1)):
        for r in range(n):
            layers.append(_Block(c, _div8(ch * width), s if r == 0 else 1, t))
            c = _div8(ch * width)
    return nn.Sequential(*layers, *_cbr(c, 1280, 1, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1280, classes))


@pytest.mark.slow
def test_mobilenetv2_035_at_96_total_flops_equal_the_hand_count():
    torch.manual_seed(0)
    model, x, y = mobilenetv2(), torch.randn(1, 3, 96, 96), torch.tensor([1])
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    out_shapes = {}
    hooks = [m.register_forward_hook(lambda m, i, o: out_shapes.__setitem__(m, o.shape)) for m in layers]
    with torch.no_grad():
        model(x)
    for hk in hooks:
        hk.remove()
    hand = 0
    for m in layers:  # forward + grad_weight, + grad_input except for the stem
        macs = math.prod(out_shapes[m]) * math.prod(m.weight.shape[1:])
        hand += 2 * macs * (2 if m is layers[0] else 3)
    assert hand == 62_010_912
    graph = extract(model, F.cross_entropy, x, y, train="all")
    assert graph.total_flops == hand
    # poet's rule plugged into torch's counter gives the same total on the eager step
    with FlopCounterMode(display=False, custom_mapping=FLOP_OVERRIDES) as counter:
        F.cross_entropy(copy.deepcopy(model)(x), y).backward()
    assert counter.get_total_flops() == hand
