"""The project's fast PyTorch inference paths: the same function as the eager model, with less overhead.

Variants (`FAST_VARIANTS`):
- "jit": TorchScript trace, then `torch.jit.freeze`, which inlines the weights as constants, folds every BatchNorm
  into the preceding convolution and removes the Python interpreter from the loop.
- "jit_channels_last": the same on a channels_last (NHWC) model and input.
- "compile": `torch.compile` (Inductor) with weight freezing: fused, generated kernels (the CSW reductions and
  multiplications become a few loops), the fastest path on the CPU. Compiling takes minutes on a small CPU, so it
  is not among `DEFAULT_FAST_VARIANTS`; `benchmarks/speed_targets.py` uses it.
"""
from __future__ import annotations

import copy
import warnings
from collections.abc import Callable

import torch
from torch import nn

FAST_VARIANTS = ("jit", "jit_channels_last", "compile")
DEFAULT_FAST_VARIANTS = ("jit", "jit_channels_last")

Forward = Callable[[torch.Tensor], torch.Tensor]


def _frozen_trace(model: nn.Module, example: torch.Tensor) -> Forward:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, example, check_trace=False)
        return torch.jit.freeze(traced.eval())


def _compiled(model: nn.Module, example: torch.Tensor) -> Forward:
    compiled = torch.compile(model, dynamic=False, options={"freezing": True})
    with torch.no_grad():
        compiled(example)
    return compiled


def fast_model(
    model: nn.Module, input_size: tuple[int, int], variant: str = "jit", batch_size: int = 1, device: str = "cpu"
) -> Forward:
    """A fast forward of `model` for images (batch_size, 3, H, W) on `device`, built by `variant` (see the module
    doc). The eager `model` is left as it is; call the result under `torch.inference_mode()` or `no_grad()`."""
    if variant not in FAST_VARIANTS:
        raise ValueError(f"unknown fast variant {variant!r}; choose one of {', '.join(FAST_VARIANTS)}")
    network = copy.deepcopy(model).eval().to(device)
    example = torch.zeros(batch_size, 3, *input_size, device=device)
    if variant == "jit":
        return _frozen_trace(network, example)
    if variant == "jit_channels_last":
        network = network.to(memory_format=torch.channels_last)
        forward = _frozen_trace(network, example.contiguous(memory_format=torch.channels_last))
        return lambda images: forward(images.contiguous(memory_format=torch.channels_last))
    return _compiled(network, example)
