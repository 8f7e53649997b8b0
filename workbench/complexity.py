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

The rest of the module builds the complexity report (`measure_rows`, `write_report`): these counts beside the
published figures (`workbench.published`), measured latency, peak memory and throughput (`workbench.latency`,
`workbench.fast_inference`, `workbench.export`), as Markdown, CSV and two plots.
"""
from __future__ import annotations

import copy
import csv
import io
import json
import platform
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from math import prod
from pathlib import Path
from typing import Any

import torch
from fvcore.nn import FlopCountAnalysis
from fvcore.nn.jit_analysis import JitModelAnalysis
from fvcore.nn.jit_handles import batchnorm_flop_jit, get_shape
from torch import nn
from tqdm import tqdm

from model import build_model
from workbench.errors import WorkbenchError
from workbench.export import conditioned_random_weights, export_onnx, ort_session, run_session
from workbench.fast_inference import fast_model
from workbench.files import write_atomic
from workbench.latency import Timing, peak_memory_bytes, set_threads, throughput, time_cuda_events, time_interleaved
from workbench.published import published_row, published_rows, row_convention

Handle = Callable[[list[Any], list[Any]], int]

G = 2**30
M = 2**20


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
    `aten::avg_pool2d` (one flop per input element), which fvcore 0.1.5 lacks."""
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
class MeasuredAP:
    """An AP the project measured itself: `model` at `input_size` (H, W), AP in percent, and where it comes from."""

    model: str
    input_size: tuple[int, int]
    ap: float
    source: str


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


def load_measured_ap(paths: list[str]) -> list[MeasuredAP]:
    """The project's own APs from evaluation outputs (`python -m workbench evaluate` writes `metrics.json`: "AP"
    as a fraction, the model and input size under "settings"). A file must name its model and input size."""
    found = []
    for path in map(Path, paths):
        try:
            data = json.loads(path.read_text())
            settings = data.get("settings", data)
            model, size, ap = settings["model"], tuple(int(v) for v in settings["input_size"]), data["AP"]
        except (OSError, ValueError) as error:
            raise WorkbenchError(f"cannot read metrics file {path} ({error}). Pass a metrics.json written by "
                                 "`python -m workbench evaluate`.") from None
        except (KeyError, TypeError):
            raise WorkbenchError(f"{path} lacks AP, settings.model or settings.input_size. Pass a metrics.json "
                                 "written by `python -m workbench evaluate`.") from None
        if ap is not None:
            data_name = Path(str(settings.get("annotations", path.parent.name))).stem
            found.append(MeasuredAP(model, size, float(ap) * (100.0 if ap <= 1.0 else 1.0), data_name))
    return found


def _percent(value: float | None, reference: float | None) -> float | None:
    return None if value is None or not reference else 100.0 * (value - reference) / reference


def csv_record(row: ComplexityRow, measured: list[MeasuredAP] = ()) -> dict[str, Any]:
    """One flat CSV record of `row` with its published figures; GFLOPs in units of 1e9 (fvcore) or 2^30."""
    published = published_row(row.model, row.input_size)
    recomputed = row.convention_ops()
    reference = published.reference_recomputed_ops() if published else None
    table2 = published.paper_row("seed_table2") if published else None
    table3 = published.paper_row("seed_table3") if published else None
    paper = table2 or table3
    record: dict[str, Any] = {
        "model": row.model,
        "input": f"{row.input_size[0]}x{row.input_size[1]}",
        "parameters": row.parameters,
        "fvcore GFLOPs (1e9)": round(row.fvcore / 1e9, 4),
        "convention": row.convention,
        "convention A GFLOPs (2^30)": round(row.convention_a / G, 4),
        "convention B GFLOPs (2^30)": round(row.convention_b / G, 4),
        "convention B MFLOPs (2^20)": round(row.convention_b / M, 1),
        "recomputed GFLOPs (2^30)": round(recomputed / G, 4),
        "table-rows recomputed GFLOPs (2^30)": None if reference is None else round(reference / G, 4),
        "recomputed vs table-rows (%)": _round(_percent(recomputed, reference), 2),
        "published GFLOPs (2^30)": None if not published or not published.reference
        else round(published.reference_published_ops() / G, 4),
        "paper GFLOPs": paper.gflops if paper else None,
        "recomputed vs paper (%)": _round(_percent(recomputed / G, paper.gflops if paper else None), 1),
        "paper params (M)": paper.params_m if paper else None,
        "paper AP val2017": table2.ap if table2 else None,
        "paper AP test-dev2017": table3.ap if table3 else None,
        "table-rows AP": published.reference.get("ap") if published and published.reference else None,
        "measured AP": "; ".join(f"{m.ap:.1f} ({m.source})" for m in measured
                                 if m.model == row.model and m.input_size == row.input_size) or None,
    }
    for backend, label in (("eager", "latency ms"), ("fast", "fast latency ms"), ("onnxruntime", "onnxruntime latency ms")):
        timing = row.latency.get(backend)
        record[f"{label} (median, batch 1)"] = _round(timing and timing.median_ms, 2)
        record[f"{label} (min)"] = _round(timing and timing.min_ms, 2)
        record[f"{label} (max)"] = _round(timing and timing.max_ms, 2)
    record["fast variant"] = row.fast_variant
    record["fast max abs diff"] = row.max_abs_diff.get("fast")
    record["onnxruntime max abs diff"] = row.max_abs_diff.get("onnxruntime")
    record["peak memory MB (batch 1)"] = _round(row.peak_memory and row.peak_memory / 1e6, 1)
    for backend in ("eager", "fast", "onnxruntime"):
        record[f"{backend} images/s (batch N)"] = _round(row.throughput.get(backend), 1)
    record["throughput batch N"] = row.throughput_batch
    for backend in ("eager", "fast"):
        timing = row.cuda_latency.get(backend)
        record[f"cuda {backend} latency ms (median, batch 1)"] = _round(timing and timing.median_ms, 3)
    return record


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _cell(value: Any, digits: int | None = None) -> str:
    if value is None:
        return "-"
    if digits is not None and isinstance(value, float):
        return f"{value:.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _sci(value: float | None) -> str:
    return "-" if value is None else f"{value:.1e}"


def _timing_cell(timing: Timing | None) -> str:
    return "-" if timing is None else f"{timing.median_ms:.1f} [{timing.min_ms:.1f}-{timing.max_ms:.1f}]"


def markdown_report(rows: list[ComplexityRow], settings: SpeedSettings | None, measured: list[MeasuredAP],
                    notes: list[str], command: str) -> str:
    """The report as Markdown: method, operation counts against the published figures, latency table, the
    published rows without a model in the zoo, and the plots."""
    import fvcore
    import onnxruntime


    records = [csv_record(row, measured) for row in rows]
    lines = [
        "# Complexity and speed",
        "",
        f"Written by `{command}`.",
        f"Machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} PyTorch threads at "
        f"start; torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, fvcore {fvcore.__version__}.",
        "",
        "## How the figures are counted",
        "",
        "- **fvcore GFLOPs (1e9)**: fvcore 0.1.5's FlopCountAnalysis on one image: one multiply-add is one flop, every "
        "call counts, batch norm, pooling and upsampling count, element-wise ops (sigmoid, mul, add) and reductions "
        "fvcore does not know (max pooling, channel mean/max) count zero. fvcore has no handle for "
        "`aten::avg_pool2d`; the project registers one that counts one flop per input element, like fvcore's own "
        "`adaptive_avg_pool2d` handle (the Lite models pool with fixed kernels where the official code pools "
        "adaptively, for ONNX).",
        "- **Convention A** (HRNet repository, G = 2^30): for every convolution and linear layer, weight count x "
        "output H x W, every call counted, nothing else.",
        "- **Convention B** (Lite-HRNet repository's torchstat, G = 2^30, M = 2^20): convolution multiply-adds "
        "(transposed convolutions at their input resolution) plus bias, batch norm (2 per element), ReLU (1 per "
        "element), max and fixed-kernel average pooling (1 per input element) and nearest upsampling (1 per output "
        "pixel); a module that runs more than once counts once.",
        "- **recomputed**: the project's count under the convention the model's published row used "
        "(shared/reference/table-rows.md), against table-rows.md's recomputed figure and the seed paper's printed one.",
        "",
        *[f"- {note}" for note in notes],
        "",
        "## Operation counts against the published figures",
        "",
        "| model | input | params | fvcore GFLOPs | conv. | recomputed G | table-rows recomputed G | diff % | "
        "paper G | diff % | conv. B M (2^20) | conv. A G |",
        "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in records:
        lines.append(
            f"| {r['model']} | {r['input']} | {r['parameters']:,} | {r['fvcore GFLOPs (1e9)']:.4f} | {r['convention']} "
            f"| {r['recomputed GFLOPs (2^30)']:.4f} | {_cell(r['table-rows recomputed GFLOPs (2^30)'], 4)} "
            f"| {_cell(r['recomputed vs table-rows (%)'], 2)} | {_cell(r['paper GFLOPs'], 2)} "
            f"| {_cell(r['recomputed vs paper (%)'], 1)} | {r['convention B MFLOPs (2^20)']:.1f} "
            f"| {r['convention A GFLOPs (2^30)']:.3f} |"
        )
    if settings is not None and any(row.latency for row in rows):
        lines += [
            "",
            f"## Latency, memory and throughput (CPU, {settings.threads} threads)",
            "",
            "Per image at batch 1, milliseconds: median [min-max] over the rounds run; eager PyTorch, the fast "
            "PyTorch path (its variant named) and ONNX Runtime were timed interleaved, one call of each per round. "
            "`max abs diff`: largest difference to eager on a random input. Peak memory: bytes PyTorch's allocator "
            "held above the weights during one eager batch-1 inference. Throughput: images per second at batch N.",
            "",
            "| model | input | eager ms | fast ms (variant) | onnxruntime ms | fast / eager | ort / eager | "
            "max abs diff fast, ort | peak MB | images/s eager, fast, ort (N) |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row, r in zip(rows, records):
            eager, fast, ort = (row.latency.get(k) for k in ("eager", "fast", "onnxruntime"))
            lines.append(
                f"| {row.model} | {r['input']} | {_timing_cell(eager)} | {_timing_cell(fast)} ({row.fast_variant or '-'}) "
                f"| {_timing_cell(ort)} | {_cell(fast and eager and fast.median_ms / eager.median_ms, 2)} "
                f"| {_cell(ort and eager and ort.median_ms / eager.median_ms, 2)} "
                f"| {_sci(row.max_abs_diff.get('fast'))}, {_sci(row.max_abs_diff.get('onnxruntime'))} "
                f"| {_cell(r['peak memory MB (batch 1)'], 1)} "
                f"| {', '.join(_cell(row.throughput.get(k), 1) for k in ('eager', 'fast', 'onnxruntime'))} "
                f"({_cell(row.throughput_batch)}) |"
            )
    if any(row.cuda_latency for row in rows):
        lines += ["", "## CUDA (CUDA events, batch 1)", "", "| model | input | eager ms | fast ms | peak MB |",
                  "|---|---|---:|---:|---:|"]
        for row, r in zip(rows, records):
            lines.append(f"| {row.model} | {r['input']} | {_timing_cell(row.cuda_latency.get('eager'))} "
                         f"| {_timing_cell(row.cuda_latency.get('fast'))} "
                         f"| {_cell(row.cuda_peak_memory and row.cuda_peak_memory / 1e6, 1)} |")
    outside = [p for p in published_rows() if not p.in_zoo]
    if outside:
        lines += ["", "## Published rows without a model in the zoo", "",
                  "| row | input | params | published | AP |", "|---|---|---:|---:|---:|"]
        for p in outside:
            ref = p.reference
            lines.append(f"| {p.label} | {p.input_size[0]}x{p.input_size[1]} | {ref['params']:,} "
                         f"| {ref['gflops']} {ref['unit']} | {ref['ap']} |")
    lines += ["", "## Plots", "", f"![FLOPs against AP]({FLOPS_AP_PLOT})", "",
              f"![Latency against FLOPs]({LATENCY_PLOT})", "",
              "Sources of every published figure: workbench/published_figures.yaml.", ""]
    return "\n".join(lines)


FLOPS_AP_PLOT = "complexity_flops_ap.png"
LATENCY_PLOT = "complexity_latency_flops.png"


def flops_ap_figure(rows: list[ComplexityRow], measured: list[MeasuredAP]):
    """Figure 9 of the paper, redrawn: GFLOPs against AP, (a) Table 2 (val2017) at 256x192, (b) Table 3
    (test-dev2017) at 384x288. Filled: the paper's printed GFLOPs; hollow: the project's recount under the row's
    convention (G = 2^30); stars: APs the project measured (`measured`, at the recount)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recount = {(r.model, r.input_size): r.convention_ops() / G for r in rows}
    figure, panels = plt.subplots(1, 2, figsize=(12, 5))
    for axes, source, size, title in ((panels[0], "seed_table2", (256, 192), "(a) COCO val2017, 256x192"),
                                      (panels[1], "seed_table3", (384, 288), "(b) COCO test-dev2017, 384x288")):
        for published in published_rows():
            paper = published.paper_row(source)
            if paper is None or published.input_size != size:
                continue
            point = axes.scatter(paper.gflops, paper.ap, s=40)
            axes.annotate(published.label, (paper.gflops, paper.ap), xytext=(4, 4), textcoords="offset points",
                          fontsize=8)
            if (published.model, size) in recount:
                x = recount[(published.model, size)]
                axes.scatter(x, paper.ap, s=40, facecolors="none", edgecolors=point.get_facecolor())
                axes.plot([paper.gflops, x], [paper.ap, paper.ap], color=point.get_facecolor()[0], lw=0.8)
        for m in measured:
            if m.input_size == size and (m.model, size) in recount:
                axes.scatter(recount[(m.model, size)], m.ap, marker="*", s=120, color="black")
                axes.annotate(f"{m.model} measured ({m.source})", (recount[(m.model, size)], m.ap),
                              xytext=(4, -10), textcoords="offset points", fontsize=7)
        axes.set_xscale("log")
        axes.set_xlabel("GFLOPs (filled: paper; hollow: project recount, row's convention)")
        axes.set_ylabel("AP (%)")
        axes.set_title(title)
        axes.grid(alpha=0.3, which="both")
    figure.tight_layout()
    return figure


def latency_flops_figure(rows: list[ComplexityRow]):
    """Measured CPU latency (ms, median, batch 1) against fvcore GFLOPs per input size, one marker per backend:
    where the points leave the FLOPs order, FLOPs mislead."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({r.input_size for r in rows})
    figure, panels = plt.subplots(1, len(sizes), figsize=(6 * len(sizes), 5), squeeze=False)
    for axes, size in zip(panels[0], sizes):
        chosen = [r for r in rows if r.input_size == size and r.latency]
        for backend, marker in (("eager", "o"), ("fast", "s"), ("onnxruntime", "^")):
            points = [(r.fvcore / 1e9, r.latency[backend].median_ms, r.model) for r in chosen if backend in r.latency]
            if points:
                axes.scatter([p[0] for p in points], [p[1] for p in points], marker=marker, label=backend)
        for r in chosen:
            axes.annotate(r.model, (r.fvcore / 1e9, r.latency["eager"].median_ms), xytext=(4, 4),
                          textcoords="offset points", fontsize=8)
        axes.set_xscale("log")
        axes.set_yscale("log")
        axes.set_xlabel("fvcore GFLOPs (1e9)")
        axes.set_ylabel("latency per image (ms, median, batch 1)")
        axes.set_title(f"{size[0]}x{size[1]}")
        axes.grid(alpha=0.3, which="both")
        if chosen:
            axes.legend()
        else:
            axes.text(0.5, 0.5, "no latency measured (--counts-only)", ha="center", transform=axes.transAxes)
    figure.tight_layout()
    return figure


def write_report(rows: list[ComplexityRow], directory, settings: SpeedSettings | None = None,
                 measured: list[MeasuredAP] = (), notes: list[str] = (), command: str = "") -> list:
    """Write complexity.md, complexity.csv and the two plots into `directory` (each atomically); returns the paths."""
    import matplotlib.pyplot as plt

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    records = [csv_record(row, list(measured)) for row in rows]
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=list(records[0]) if records else ["model"])
    writer.writeheader()
    writer.writerows(records)
    paths = [directory / "complexity.md", directory / "complexity.csv", directory / FLOPS_AP_PLOT,
             directory / LATENCY_PLOT]
    text = markdown_report(rows, settings, list(measured), list(notes), command)
    write_atomic(paths[0], lambda p: p.write_text(text))
    write_atomic(paths[1], lambda p: p.write_text(table.getvalue()))
    for path, figure in ((paths[2], flops_ap_figure(rows, list(measured))), (paths[3], latency_flops_figure(rows))):
        write_atomic(path, lambda p, f=figure: f.savefig(p, dpi=120))
        plt.close(figure)
    return paths


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
                     "(`workbench.export.conditioned_random_weights`): the N(0, 0.001) initialisation gives ~1e-18 "
                     "activations and denormal slow paths, and speed does not otherwise depend on the values.")
    return rows, notes
