"""FLOPs and RAM traffic of one ATen op of the traced step, without running it.

``op_flops`` counts the matmul-like work of the ops ``torch.utils.flop_counter`` registers
(matmuls, convolutions and their backward, the CUDA attention kernels), 2 FLOPs per
multiply-accumulate (MAC), with torch's formulas except where poet has its own rule
(``FLOP_OVERRIDES``): torch 2.13's ``convolution_backward`` formula ignores ``groups`` in
the weight-gradient term, so it counts a depthwise layer's backward ``channels`` times too
high. ``FlopCounterMode(custom_mapping=FLOP_OVERRIDES)`` on an eager step gives the same
total as the sum of ``op_flops`` over its graph. ``op_extra_flops`` estimates the work the
counter ignores with the per-element constants below (and counts exactly what it can: bias
adds, the CPU attention kernel, the CPU LSTM layer). ``op_traffic`` is the bytes an op reads
(its distinct tensor arguments, each capped by its storage) and writes (its results, or the
written argument of an in-place op). A node's counts are the sums over its ops.

The convolution rule (dense: a product with a padding zero counts like any other). A
convolution pairs every weight element with every output position it reaches, so
``MACs = numel(dense side) * prod(weight.shape[1:])``, where the dense side is the output of
a plain convolution (weight ``C_out x C_in/groups x k...``) and the input of a transposed one
(weight ``C_in x C_out/groups x k...``, each input element scattered over ``C_out/groups x
k...`` outputs); stride, padding, dilation and output_padding enter through those shapes.
Its backward computes, as ``output_mask`` asks, grad_input (the same pairs, run from
grad_output through the weight) and grad_weight (the same pairs, run from input and
grad_output): each costs the forward's MACs; grad_bias is a sum over grad_output
(``op_extra_flops``, one FLOP per grad_output element). A frozen layer's backward computes
only grad_input, the first layer's only grad_weight (and grad_bias).
"""

from __future__ import annotations

import math
import operator
from typing import Any

import torch
import torch.fx
from torch._ops import OpOverload
from torch.utils import flop_counter
from torch.utils._pytree import tree_map

from poet.fxnodes import arg_nodes, is_inplace, storage_nbytes, tensor_leaves, tensor_nbytes

__all__ = ["op_flops", "op_extra_flops", "op_traffic", "conv_flops", "FLOP_OVERRIDES"]

aten = torch.ops.aten

# Work the flop counter ignores (estimates, not measurements), in FLOPs per element of the op's
# first input unless noted. Elementwise ops and anything not listed: 1 per output element.
# Reductions (sum, mean, pooling, nll_loss): 1 per input element. Data movement, allocation
# and indexing (_FREE_OPS): 0. The CPU attention kernel and its backward, which the counter
# does not register: torch's own formulas for the GPU attention kernels (sdpa_flop_count,
# sdpa_backward_flop_count: 2 and 5 matmuls) plus the softmax constants per score element.
_NORM_FWD_PER_ELEM = 8      # mean, variance (2 passes), normalise, scale and shift
_NORM_BWD_PER_ELEM = 10     # two reductions over the gradient plus the elementwise combination
_SOFTMAX_FWD_PER_ELEM = 5   # max, subtract, exp, sum, divide (log for log-softmax)
_SOFTMAX_BWD_PER_ELEM = 4   # product, row sum, subtract, multiply
_FREE_OPS = {  # data movement, allocation and indexing: no arithmetic
    "empty", "empty_like", "empty_strided", "zeros", "zeros_like", "ones", "ones_like", "full", "full_like",
    "new_zeros", "new_ones", "new_empty", "new_full", "new_empty_strided", "scalar_tensor", "arange",
    "fill", "fill_", "zero", "zero_", "clone", "copy", "copy_", "_to_copy", "cat", "stack", "embedding",
    "index_select", "gather", "select_backward", "slice_backward", "as_strided_scatter", "constant_pad_nd",
    "lift_fresh_copy", "_unsafe_index", "index", "slice_scatter", "select_scatter", "repeat", "expand_copy",
    "permute_copy", "view_copy", "t_copy", "transpose_copy", "unsqueeze_copy", "squeeze_copy", "alias_copy",
    "split_with_sizes_copy", "unbind_copy", "detach_copy",
}
_REDUCTIONS = {"sum", "mean", "amax", "amin", "max", "min", "prod", "var", "std", "var_mean", "std_mean",
               "norm", "linalg_vector_norm", "logsumexp", "argmax", "argmin", "any", "all", "cumsum",
               "max_pool2d_with_indices", "max_pool3d_with_indices", "avg_pool2d", "avg_pool3d",
               "_adaptive_avg_pool2d", "_adaptive_avg_pool3d", "adaptive_max_pool2d", "nll_loss_forward",
               "nll_loss2d_forward"}
_NORMS_FWD = {"native_batch_norm", "_native_batch_norm_legit", "_native_batch_norm_legit_functional",
              "_native_batch_norm_legit_no_training", "native_layer_norm", "native_group_norm", "_fused_rms_norm",
              "_batch_norm_with_update", "_batch_norm_no_update"}
_NORMS_BWD = {"native_batch_norm_backward", "native_layer_norm_backward", "native_group_norm_backward",
              "_fused_rms_norm_backward", "batch_norm_backward"}
_SOFTMAX_FWD = {"_softmax", "_log_softmax", "_safe_softmax"}
_SOFTMAX_BWD = {"_softmax_backward_data", "_log_softmax_backward_data"}
_CPU_SDPA = "_scaled_dot_product_flash_attention_for_cpu"
# The CPU LSTM layer (mkldnn_rnn_layer), which the counter does not register: exact matmul FLOPs,
# 2 x rows x (w_ih + w_hh elements) forward and twice that backward (grad of the input and hidden
# state, grad of both weights), plus per gate pre-activation element: two bias adds, the sum of
# the two products and the activation (its backward: the same four, estimated alike).
_RNN_LAYERS = {"mkldnn_rnn_layer": 2, "mkldnn_rnn_layer_backward": 4}
_RNN_PER_GATE_ELEM = 4


def _val(a: Any) -> Any:
    return a.meta.get("val") if isinstance(a, torch.fx.Node) else a


def _shape(x: Any) -> Any:
    return x.shape if isinstance(x, torch.Tensor) else x


def _numel(shape: Any) -> int:
    return math.prod(shape)


def conv_flops(x_shape: Any, w_shape: Any, out_shape: Any, transposed: bool) -> int:
    """FLOPs (2 x MACs) of a convolution, plain or transposed, any groups/stride/dilation.

    ``w_shape[1:]`` is ``C_in/groups x k...`` (plain) or ``C_out/groups x k...`` (transposed):
    the weight elements each element of the dense side (output of a plain convolution, input of a
    transposed one) meets.
    """
    dense = x_shape if transposed else out_shape
    return 2 * _numel(dense) * _numel(w_shape[1:])


def _conv_forward_flop(x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed, *args,
                       out_shape=None, **kwargs) -> int:
    """``aten.convolution`` / ``aten._convolution``: poet's rule (agrees with torch's)."""
    return conv_flops(x_shape, w_shape, out_shape, bool(transposed))


def _conv_backward_flop(grad_out_shape, x_shape, w_shape, _bias_sizes, _stride, _padding, _dilation,
                        transposed, _output_padding, _groups, output_mask, out_shape=None, **kwargs) -> int:
    """``aten.convolution_backward``: the forward's FLOPs once for grad_input and once for
    grad_weight, each only where ``output_mask`` asks for it (grad_bias: see op_extra_flops)."""
    # the forward's output is grad_output's shape; its input is x
    forward = conv_flops(x_shape, w_shape, grad_out_shape, bool(transposed))
    return forward * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


# poet's own formulas for ops whose torch formula is wrong (or that must agree with such a rule),
# in FlopCounterMode's custom_mapping form: fn(*argument shapes, out_shape=..., **kwargs) -> FLOPs.
FLOP_OVERRIDES: dict[Any, Any] = {
    aten.convolution: _conv_forward_flop,
    aten._convolution: _conv_forward_flop,
    aten.convolution_backward: _conv_backward_flop,
}


def op_flops(n: torch.fx.Node) -> int:
    """FLOPs of the ops the flop counter registers: poet's rule where it has one
    (``FLOP_OVERRIDES``), else torch's formula; 0 for ops the counter does not know."""
    target = n.target
    if not isinstance(target, OpOverload):
        return 0
    packet = target.overloadpacket
    args = torch.fx.node.map_arg(n.args, _val)
    kwargs = torch.fx.node.map_arg(n.kwargs, _val)
    rule = FLOP_OVERRIDES.get(packet)
    if rule is not None:
        shapes, kw_shapes, out_shape = tree_map(_shape, (args, kwargs, n.meta.get("val")))
        return int(rule(*shapes, out_shape=out_shape, **kw_shapes))
    formula = flop_counter.flop_registry.get(packet)
    if formula is None:
        return 0
    return int(formula(*args, out_val=n.meta.get("val"), **kwargs))


def _counted_op_extra_flops(op: str, n: torch.fx.Node) -> int:
    """Work the counter leaves out of the ops it registers: bias adds and the bias gradient."""
    if op in ("convolution", "_convolution") and len(n.args) > 2 and n.args[2] is not None:
        return sum(t.numel() for t in tensor_leaves(n.meta.get("val")))  # + bias per output element
    if op in ("addmm", "baddbmm"):
        return sum(t.numel() for t in tensor_leaves(n.meta.get("val")))  # + self per output element
    if op == "convolution_backward":
        mask = n.args[10] if len(n.args) > 10 else n.kwargs.get("output_mask")
        if mask is not None and mask[2]:
            return _val(n.args[0]).numel()  # grad_bias: a sum over grad_output
    return 0


def op_extra_flops(n: torch.fx.Node) -> int:
    """Estimated FLOPs of work the flop counter ignores (see the constants above)."""
    target = n.target
    if not isinstance(target, OpOverload):
        return 0
    op = target._schema.name.split("::")[-1]
    if target.overloadpacket in flop_counter.flop_registry:
        return _counted_op_extra_flops(op, n)
    out = tensor_leaves(n.meta.get("val"))
    out_numel = sum(t.numel() for t in out)
    first_in = _val(n.args[0]) if n.args else None
    in_numel = first_in.numel() if isinstance(first_in, torch.Tensor) else out_numel
    if op == _CPU_SDPA:
        q, k, v = (_val(a).shape for a in n.args[:3])
        return int(flop_counter.sdpa_flop_count(q, k, v)) + _SOFTMAX_FWD_PER_ELEM * q[0] * q[1] * q[2] * k[2]
    if op == _CPU_SDPA + "_backward":
        grad_out, q, k, v = (_val(a).shape for a in n.args[:4])
        return int(flop_counter.sdpa_backward_flop_count(grad_out, q, k, v)) + \
            _SOFTMAX_BWD_PER_ELEM * q[0] * q[1] * q[2] * k[2]
    if op in _RNN_LAYERS:
        # input (steps x batch x features, or packed rows x features); w_ih, w_hh: gates*H x in, gates*H x H
        w_ih, w_hh = (_val(a) for a in n.args[1:3])
        rows = in_numel // first_in.shape[-1]
        gate_elems = rows * w_ih.shape[0]
        return _RNN_LAYERS[op] * rows * (w_ih.numel() + w_hh.numel()) + _RNN_PER_GATE_ELEM * gate_elems
    if op in _FREE_OPS or op.rstrip("_") in _FREE_OPS:
        return 0
    if op == "embedding_dense_backward":
        return in_numel  # one add per grad_output element into its row, not per row of the table
    if op in _NORMS_FWD:
        return _NORM_FWD_PER_ELEM * in_numel
    if op in _NORMS_BWD:
        return _NORM_BWD_PER_ELEM * in_numel
    if op in _SOFTMAX_FWD:
        return _SOFTMAX_FWD_PER_ELEM * in_numel
    if op in _SOFTMAX_BWD:
        return _SOFTMAX_BWD_PER_ELEM * in_numel
    if op in _REDUCTIONS:
        return in_numel
    return out_numel  # elementwise ops and anything else: one FLOP per output element


def op_traffic(n: torch.fx.Node) -> tuple[int, int]:
    """(bytes read, bytes written) by one op: its distinct tensor arguments and its results."""
    if n.target is operator.getitem:
        return 0, 0
    read = 0
    for a in arg_nodes(n):
        v = a.meta.get("val")
        if isinstance(v, torch.Tensor):
            read += min(tensor_nbytes(v), storage_nbytes(v))
    if is_inplace(n):
        written = tensor_nbytes(_val(n.args[0]))
    else:
        written = sum(tensor_nbytes(t) for t in tensor_leaves(n.meta.get("val")))
    return read, written
