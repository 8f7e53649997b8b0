"""Parameter and FLOP counters: fvcore's own count and the two conventions of the published tables.

All counters trace the model once with fvcore's `FlopCountAnalysis` on a zero input of shape (1, 3, H, W) and
return a plain operation count for one image (divide by `workbench.speed.published.G` = 2**30 for the papers' "G",
by its `M` = 2**20 for the Lite-HRNet README's "M", by 1e9 for fvcore's GFLOPs).

- `fvcore_flops`: fvcore's defaults (one multiply-add = one flop, every call counted, batch norm, pooling and
  upsampling counted, element-wise ops skipped) plus a handle for `aten::avg_pool2d` that counts one flop per input
  element like fvcore's `adaptive_avg_pool2d` handle; the Lite models pool with fixed kernels for ONNX.
- `convention_a_flops` (HRNet repository): for every convolution and linear layer, weight count x output H x W,
  every call counted; nothing else.
- `convention_b_flops` (Lite-HRNet repository's torchstat): convolution multiply-adds (transposed convolutions at
  their input resolution) plus bias, batch norm (2 per element), ReLU (1 per element), max and fixed-kernel average
  pooling (1 per input element) and nearest upsampling (1 per output pixel); a module that runs twice counts once.

`measure_rows` then times the models (`workbench.speed.latency`, `workbench.speed.compiled`, `workbench.speed.onnx_export`): latency,
peak memory and throughput; `workbench.reports.complexity` writes the report.
"""
from __future__ import annotations

import copy
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from math import prod
from typing import Any

import torch
from fvcore.nn import FlopCountAnalysis
from fvcore.nn.jit_analysis import JitModelAnalysis
from fvcore.nn.jit_handles import batchnorm_flop_jit, get_shape
from torch import nn
from tqdm import tqdm

from model import build_model
from workbench.speed.onnx_export import conditioned_random_weights, export_onnx, ort_session, run_session
from workbench.speed.compiled import fast_model
from workbench.speed.latency import Timing, peak_memory_bytes, set_threads, throughput, time_cuda_events, time_interleaved
from workbench.speed.published import row_convention

Handle = Callable[[list[Any], list[Any]], int]


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


def _analysis(model: nn.Module, input_size: tuple[int, int], handles: dict[str, Handle] | None, avg_pool: bool):
    """An fvcore analysis of `model` in eval mode on one zero image; `handles` replaces fvcore's if given."""
    inputs = (torch.zeros(1, 3, *input_size),)
    if handles is None:
        analysis = FlopCountAnalysis(model, inputs)
        if avg_pool:
            analysis.set_op_handle("aten::avg_pool2d", _input_elements)
    else:
        analysis = JitModelAnalysis(model, inputs).set_op_handle(**handles)
    return analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")


def _traced(
    model: nn.Module, input_size: tuple[int, int], handles: dict[str, Handle] | None, avg_pool: bool = True
) -> Any:
    was_training = model.training
    model.eval()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            analysis = _analysis(model, input_size, handles, avg_pool)
            analysis.total()
        return analysis
    finally:
        model.train(was_training)


def fvcore_flops(model: nn.Module, input_size: tuple[int, int] = (256, 192), count_avg_pool: bool = True) -> int:
    """fvcore's FLOP count for one image of `input_size` (H, W) pixels; `count_avg_pool` adds the handle for
    `aten::avg_pool2d` (one flop per input element), which fvcore's own handles lack."""
    return int(_traced(model, input_size, None, count_avg_pool).total())


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


@dataclass(frozen=True)
class SpeedSettings:
    """How latency is measured: CPU `threads`; per model `repeats` interleaved rounds after `warmup` calls,
    stopping after `budget_s` seconds (at least 5 rounds); throughput at `throughput_batch` images per call over
    `throughput_repeats` rounds; the fast PyTorch variants to try (the fastest is reported); ONNX Runtime on or
    off and its worker spinning (off by default: spinning ONNX Runtime workers would steal the cores from the
    PyTorch calls timed between them); CUDA when available."""

    threads: int = 2
    repeats: int = 30
    warmup: int = 3
    budget_s: float = 30.0
    throughput_batch: int = 32
    throughput_repeats: int = 5
    fast_variants: tuple[str, ...] = ("jit", "jit_channels_last")
    onnx: bool = True
    spinning: bool = False
    cuda: bool = field(default_factory=torch.cuda.is_available)


QUICK_SPEED = SpeedSettings(repeats=3, warmup=1, budget_s=5.0, throughput_batch=2, throughput_repeats=2,
                            fast_variants=("jit",))


@dataclass
class ComplexityRow:
    """Everything measured for one model at one input size (H, W).

    Operation counts are for one image. `latency` maps "eager", "fast" and "onnxruntime" to per-image timings at
    batch 1 (CPU); `max_abs_diff` the largest difference of "fast" and "onnxruntime" outputs to eager; `throughput`
    images per second at the batch of `SpeedSettings`; `cuda_latency` "eager" and "fast" on CUDA (CUDA events);
    `peak_memory` bytes allocated during one batch-1 inference (eager, CPU).
    """

    model: str
    input_size: tuple[int, int]
    parameters: int
    fvcore: int
    convention_a: int
    convention_b: int
    convention: str
    latency: dict[str, Timing] = field(default_factory=dict)
    fast_variant: str | None = None
    max_abs_diff: dict[str, float] = field(default_factory=dict)
    throughput: dict[str, float] = field(default_factory=dict)
    throughput_batch: int | None = None
    cuda_latency: dict[str, Timing] = field(default_factory=dict)
    peak_memory: int | None = None
    cuda_peak_memory: int | None = None

    def convention_ops(self) -> int:
        """The recomputed count under the convention of the model's published row."""
        return self.convention_a if self.convention == "A" else self.convention_b


def count_row(name: str, input_size: tuple[int, int], model: nn.Module) -> ComplexityRow:
    """Parameters and the three FLOP counts of `model` (built as `name`) at `input_size` (H, W)."""
    return ComplexityRow(
        model=name,
        input_size=tuple(input_size),
        parameters=count_parameters(model),
        fvcore=fvcore_flops(model, input_size),
        convention_a=convention_a_flops(model, input_size),
        convention_b=convention_b_flops(model, input_size),
        convention=row_convention(name),
    )


def _max_abs_diff(forward: Callable[[torch.Tensor], Any], reference: torch.Tensor, images: torch.Tensor) -> float:
    output = forward(images)
    output = torch.from_numpy(output) if not isinstance(output, torch.Tensor) else output
    return float((output.cpu() - reference).abs().max())


def measure_speed(row: ComplexityRow, model: nn.Module, settings: SpeedSettings,
                  progress: Callable[[str], None] = lambda stage: None) -> ComplexityRow:
    """Fill `row`'s latency, parity, peak memory, throughput and CUDA timings for `model` (weights as given)."""
    set_threads(settings.threads)
    size, model = row.input_size, model.eval()
    images = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        reference = model(images)
        progress("fast paths")
        fast = {variant: fast_model(model, size, variant) for variant in settings.fast_variants}
        calls: dict[str, Callable[[], Any]] = {"eager": lambda: model(images)}
        calls.update({f"fast:{v}": (lambda f=f: f(images)) for v, f in fast.items()})
        session = None
        if settings.onnx:
            progress("onnx export")
            session = ort_session(export_onnx(model, size), settings.threads, settings.spinning)
            array = images.numpy()
            calls["onnxruntime"] = lambda: run_session(session, array)
        progress("latency")
        timings = time_interleaved(calls, settings.repeats, settings.warmup, settings.budget_s)
        row.latency["eager"] = timings["eager"]
        if fast:
            row.fast_variant = min(fast, key=lambda v: timings[f"fast:{v}"].median_ms)
            row.latency["fast"] = timings[f"fast:{row.fast_variant}"]
            row.max_abs_diff["fast"] = _max_abs_diff(fast[row.fast_variant], reference, images)
        if session is not None:
            row.latency["onnxruntime"] = timings["onnxruntime"]
            row.max_abs_diff["onnxruntime"] = _max_abs_diff(lambda x: run_session(session, x.numpy()), reference, images)
        progress("peak memory")
        row.peak_memory = peak_memory_bytes(lambda: model(images))
        _measure_throughput(row, model, settings, progress)
        if settings.cuda:
            progress("cuda")
            _measure_cuda(row, model, settings)
    return row


def _measure_throughput(row: ComplexityRow, model: nn.Module, settings: SpeedSettings,
                        progress: Callable[[str], None]) -> None:
    batch = settings.throughput_batch
    progress(f"throughput at batch {batch}")
    images = torch.randn(batch, 3, *row.input_size, generator=torch.Generator().manual_seed(2))
    calls: dict[str, Callable[[], Any]] = {"eager": lambda: model(images)}
    if row.fast_variant:
        forward = fast_model(model, row.input_size, row.fast_variant, batch_size=batch)
        calls["fast"] = lambda: forward(images)
    if settings.onnx:
        session = ort_session(export_onnx(model, row.input_size, batch_size=batch), settings.threads, settings.spinning)
        array = images.numpy()
        calls["onnxruntime"] = lambda: run_session(session, array)
    timings = time_interleaved(calls, settings.throughput_repeats, 1, None)
    row.throughput = {name: throughput(timing, batch) for name, timing in timings.items()}
    row.throughput_batch = batch


def _measure_cuda(row: ComplexityRow, model: nn.Module, settings: SpeedSettings) -> None:
    network = copy.deepcopy(model).cuda()
    images = torch.randn(1, 3, *row.input_size, device="cuda")
    row.cuda_latency["eager"] = time_cuda_events(lambda: network(images), settings.repeats, settings.warmup)
    if row.fast_variant:
        forward = fast_model(model, row.input_size, row.fast_variant, device="cuda")
        row.cuda_latency["fast"] = time_cuda_events(lambda: forward(images), settings.repeats, settings.warmup)
    row.cuda_peak_memory = peak_memory_bytes(lambda: network(images), device="cuda")


def avg_pool_note(model: nn.Module, name: str, input_size: tuple[int, int]) -> str:
    """A sentence that verifies the `aten::avg_pool2d` handle's effect on `model`'s fvcore count."""
    with_handle, without = fvcore_flops(model, input_size), fvcore_flops(model, input_size, count_avg_pool=False)
    return (f"Check of the avg_pool2d handle: {name} at {input_size[0]}x{input_size[1]} counts {with_handle / 1e9:.4f} "
            f"fvcore GFLOPs with it and {without / 1e9:.4f} without ({with_handle - without:,} flops of fixed-kernel "
            "average pooling).")


def measure_rows(models: list[str], sizes: list[tuple[int, int]], settings: SpeedSettings | None,
                 show_progress: bool = True) -> tuple[list[ComplexityRow], list[str]]:
    """Count (and, with `settings`, time) every model of `models` at every size of `sizes` (H, W), with tqdm
    progress. Returns the rows and the report's notes (the avg_pool2d check, the weights used for timing)."""
    rows, notes = [], []
    bar = tqdm([(m, s) for m in models for s in sizes], desc="complexity", unit="model", disable=not show_progress)
    for name, size in bar:
        bar.set_postfix_str(f"{name} {size[0]}x{size[1]}: counting")
        model = build_model(name, input_size=size).eval()
        row = count_row(name, size, model)
        if name in ("lite_hrnet_18", "lite_csw_hrnet") and size == (256, 192):
            notes.append(avg_pool_note(model, name, size))
        if settings is not None:
            conditioned_random_weights(model, size)
            measure_speed(row, model, settings, lambda stage: bar.set_postfix_str(f"{name} {size[0]}x{size[1]}: {stage}"))
        rows.append(row)
    if settings is not None:
        notes.append("Timings use untrained networks whose weights were re-drawn at trained-network scale "
                     "(`workbench.speed.onnx_export.conditioned_random_weights`): the N(0, 0.001) initialisation gives ~1e-18 "
                     "activations and denormal slow paths, and speed does not otherwise depend on the values.")
    return rows, notes
