"""FLOPs and RAM traffic of one ATen op of the traced step, without running it.

``op_flops`` is what ``torch.utils.flop_counter`` counts (its registry covers matmuls,
convolutions and their backward, the CUDA attention kernels; everything else counts 0).
``op_extra_flops`` estimates the work the counter ignores with the per-element constants
below. ``op_traffic`` is the bytes an op reads (its distinct tensor arguments, each capped by
its storage) and writes (its results, or the written argument of an in-place op). A node's
counts are the sums over its ops.
"""

from __future__ import annotations

import operator
from typing import Any

import torch
import torch.fx
from torch._ops import OpOverload
from torch.utils import flop_counter

from poet.fxnodes import arg_nodes, is_inplace, storage_nbytes, tensor_leaves, tensor_nbytes

__all__ = ["op_flops", "op_extra_flops", "op_traffic"]

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


def _val(a: Any) -> Any:
    return a.meta.get("val") if isinstance(a, torch.fx.Node) else a


def op_flops(n: torch.fx.Node) -> int:
    """FLOPs as ``torch.utils.flop_counter`` counts them (0 for ops it does not know)."""
    target = n.target
    if not isinstance(target, OpOverload):
        return 0
    formula = flop_counter.flop_registry.get(target.overloadpacket)
    if formula is None:
        return 0
    args = torch.fx.node.map_arg(n.args, _val)
    kwargs = torch.fx.node.map_arg(n.kwargs, _val)
    return int(formula(*args, out_val=n.meta.get("val"), **kwargs))


def op_extra_flops(n: torch.fx.Node) -> int:
    """Estimated FLOPs of work the flop counter ignores (see the constants above)."""
    target = n.target
    if not isinstance(target, OpOverload) or target.overloadpacket in flop_counter.flop_registry:
        return 0
    op = target._schema.name.split("::")[-1]
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
    if op in _FREE_OPS or op.rstrip("_") in _FREE_OPS:
        return 0
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
