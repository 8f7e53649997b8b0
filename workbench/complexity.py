"""Parameter and FLOP counters: fvcore's own count and the two conventions of the published tables.

All counters trace the model once with fvcore's `FlopCountAnalysis` on a zero input of shape (1, 3, H, W) and
return a plain operation count for one image (divide by 2**30 for the papers' "G", by 2**20 for the Lite-HRNet
README's "M", by 1e9 for fvcore's GFLOPs as printed in the reference tables).

- `fvcore_flops`: fvcore's defaults (one multiply-add = one flop, every call counted, batch norm, pooling and
  upsampling counted, element-wise ops skipped) plus a handle for `aten::avg_pool2d` that counts one flop per input
  element like fvcore's `adaptive_avg_pool2d` handle; the Lite models pool with fixed kernels for ONNX.
- `convention_a_flops` (HRNet repository): for every convolution and linear layer, weight count x output H x W,
  every call counted; nothing else.
- `convention_b_flops` (Lite-HRNet repository's torchstat): convolution multiply-adds (transposed convolutions at
  their input resolution) plus bias, batch norm (2 per element), ReLU (1 per element), max and fixed-kernel average
  pooling (1 per input element) and nearest upsampling (1 per output pixel); a module that runs twice counts once.
"""
from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Callable
from math import prod
from typing import Any

import torch
from fvcore.nn import FlopCountAnalysis
from fvcore.nn.jit_analysis import JitModelAnalysis
from fvcore.nn.jit_handles import batchnorm_flop_jit, get_shape
from torch import nn

Handle = Callable[[list[Any], list[Any]], int]

CONVENTIONS = ("A", "B")


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (trainable or not), each shared tensor counted once."""
    return sum(p.numel() for p in model.parameters())


def _input_elements(inputs: list[Any], outputs: list[Any]) -> int:
    return prod(get_shape(inputs[0]))


def _output_pixels(inputs: list[Any], outputs: list[Any]) -> int:
    """N x H x W of the output: torchstat counts upsampling per output pixel, not per element."""
    shape = get_shape(outputs[0])
    return shape[0] * prod(shape[2:])


def _conv_weight_times_output_area(inputs: list[Any], outputs: list[Any]) -> int:
    """Convention A: weight count x output H x W (x N); a stride-2 transposed conv thus counts 4x its work."""
    out_shape = get_shape(outputs[0])
    return prod(get_shape(inputs[1])) * prod(out_shape[2:]) * out_shape[0]


def _linear_weight_times_batch(inputs: list[Any], outputs: list[Any]) -> int:
    out_shape = get_shape(outputs[0])
    return prod(out_shape) * get_shape(inputs[0])[-1]


def _conv_multiply_adds_plus_bias(inputs: list[Any], outputs: list[Any]) -> int:
    """Convention B: true multiply-adds (transposed: at the input resolution) plus one add per output for a bias."""
    x_shape, w_shape, out_shape = get_shape(inputs[0]), get_shape(inputs[1]), get_shape(outputs[0])
    transposed = bool(inputs[6].toIValue())
    area = prod((x_shape if transposed else out_shape)[2:])
    bias = prod(out_shape) if get_shape(inputs[2]) is not None else 0
    return x_shape[0] * prod(w_shape) * area + bias


CONVENTION_A_HANDLES: dict[str, Handle] = {
    "aten::_convolution": _conv_weight_times_output_area,
    "aten::linear": _linear_weight_times_batch,
}

CONVENTION_B_HANDLES: dict[str, Handle] = {
    "aten::_convolution": _conv_multiply_adds_plus_bias,
    "aten::linear": _linear_weight_times_batch,
    "aten::batch_norm": batchnorm_flop_jit,
    "aten::relu": _input_elements,
    "aten::relu_": _input_elements,
    "aten::hardtanh": _input_elements,
    "aten::hardtanh_": _input_elements,
    "aten::max_pool2d": _input_elements,
    "aten::avg_pool2d": _input_elements,
    "aten::upsample_nearest2d": _output_pixels,
}


def _analysis(model: nn.Module, input_size: tuple[int, int], handles: dict[str, Handle] | None):
    """An fvcore analysis of `model` in eval mode on one zero image; `handles` replaces fvcore's if given."""
    inputs = (torch.zeros(1, 3, *input_size),)
    if handles is None:
        analysis = FlopCountAnalysis(model, inputs).set_op_handle("aten::avg_pool2d", _input_elements)
    else:
        analysis = JitModelAnalysis(model, inputs).set_op_handle(**handles)
    return analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")


def _traced(model: nn.Module, input_size: tuple[int, int], handles: dict[str, Handle] | None) -> Any:
    was_training = model.training
    model.eval()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            analysis = _analysis(model, input_size, handles)
            analysis.total()
        return analysis
    finally:
        model.train(was_training)


def fvcore_flops(model: nn.Module, input_size: tuple[int, int] = (256, 192)) -> int:
    """fvcore's FLOP count for one image of `input_size` (H, W) pixels, with `aten::avg_pool2d` counted."""
    return int(_traced(model, input_size, None).total())


def convention_a_flops(model: nn.Module, input_size: tuple[int, int] = (256, 192)) -> int:
    """Convention A (HRNet repository) for one image of `input_size` (H, W): conv/linear weights x output area."""
    return int(_traced(model, input_size, CONVENTION_A_HANDLES).total())


def _module_calls(model: nn.Module, input_size: tuple[int, int]) -> dict[nn.Module, int]:
    """How many times each submodule's forward runs for one image."""
    calls: Counter[nn.Module] = Counter()
    handles = [m.register_forward_pre_hook(lambda mod, args: calls.update([mod])) for m in model.modules()]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, *input_size))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return dict(calls)


def convention_b_flops(model: nn.Module, input_size: tuple[int, int] = (256, 192)) -> int:
    """Convention B (Lite-HRNet's torchstat) for one image of `input_size` (H, W); each module counted once."""
    by_module = _traced(model, input_size, CONVENTION_B_HANDLES).by_module()
    calls = _module_calls(model, input_size)
    total = 0.0
    for name, module in model.named_modules():
        children = sum(by_module.get(f"{name}.{child}" if name else child, 0) for child, _ in module.named_children())
        own = by_module.get(name, 0) - children
        total += own / max(calls.get(module, 1), 1)
    return round(total)


def convention_flops(model: nn.Module, convention: str, input_size: tuple[int, int] = (256, 192)) -> int:
    """The FLOP count of `convention` ("A" or "B") for one image of `input_size` (H, W)."""
    counters = {"A": convention_a_flops, "B": convention_b_flops}
    return counters[convention](model, input_size)
