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

`measure_rows` then times the models (`workbench.speed.latency`, `workbench.speed.compiled`,
`workbench.speed.onnx_export`): latency, peak memory and throughput; `workbench.reports.complexity` writes the report.
"""
from __future__ import annotations

import copy
import tempfile
import warnings
from pathlib import Path
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
from workbench.speed.ncnn_export import NcnnRunner
from workbench.speed.onnx_export import conditioned_random_weights, export_onnx
from workbench.speed.engines import (COMPILED_VARIANT, CPU_ENGINES, CUDA_ENGINES, build_engine, engine_missing,
                                     engine_parity, peak_resident_bytes)
from workbench.speed.latency import (Timing, interleaved_seconds, paired_ratio, peak_memory_bytes, set_threads,
                                     throughput, time_cuda_events, time_interleaved)
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
    """How latency is measured: CPU `threads` (throughput and the legacy columns) and `thread_counts` (the batch-1
    latency per engine is measured at each; empty: `threads` only); per model `repeats` interleaved rounds after
    `warmup` calls, stopping after `budget_s` seconds (at least 5 rounds); throughput at `throughput_batch` images
    per call over `throughput_repeats` rounds; the compiled PyTorch path is `fast_variants[0]`
    (`workbench.speed.compiled`, built the same way for every model; empty: no compiled engine); ONNX Runtime on
    or off and its worker spinning (off: spinning workers would steal the cores from the calls timed between
    them); the optional `engines` ("openvino", "ncnn"; a missing package becomes a note); CUDA when available;
    `paired_baseline`: a model whose engines are timed in the same rounds as every other model's, so that time ratios
    to it are medians of per-round ratios (None: not timed; ratios then come from medians taken minutes apart)."""

    threads: int = 2
    repeats: int = 30
    warmup: int = 3
    budget_s: float = 30.0
    throughput_batch: int = 32
    throughput_repeats: int = 5
    fast_variants: tuple[str, ...] = ("jit",)
    onnx: bool = True
    spinning: bool = False
    cuda: bool = field(default_factory=torch.cuda.is_available)
    thread_counts: tuple[int, ...] = (1, 2)
    engines: tuple[str, ...] = ("openvino", "ncnn")
    paired_baseline: str | None = "lite_hrnet_18"

    def cpu_engines(self) -> list[str]:
        """The CPU engines these settings ask for, in `CPU_ENGINES` order (availability not checked)."""
        wanted = {"eager", *self.engines}
        if self.fast_variants:
            wanted.add("compiled")
        if self.onnx:
            wanted.add("onnxruntime")
        return [name for name in CPU_ENGINES if name in wanted]


QUICK_SPEED = SpeedSettings(repeats=3, warmup=1, budget_s=5.0, throughput_batch=1, throughput_repeats=2,
                            fast_variants=("jit",), thread_counts=(), engines=(), paired_baseline=None)
"""The quick mode (CI, the app's "Compute now"): eager, compiled ("jit") and ONNX Runtime at one thread count,
throughput at batch 1 on the same engines (each model exported and compiled once), no paired baseline; the command
line's --quick adds OpenVINO and ncnn unless --engines says otherwise."""


@dataclass
class ComplexityRow:
    """Everything measured for one model at one input size (H, W).

    Operation counts are for one image. `latency` maps "eager", "fast" and "onnxruntime" to per-image timings at
    batch 1 (CPU); `max_abs_diff` the largest difference of "fast" and "onnxruntime" outputs to eager; `throughput`
    images per second at the batch of `SpeedSettings`; `cuda_latency` "eager" and "fast" on CUDA (CUDA events);
    `peak_memory` bytes allocated during one batch-1 inference (eager, CPU).

    Per engine (`workbench.speed.engines`): `engine_latency[(engine, threads)]` batch-1 timings (CPU engines at
    each thread count, CUDA engines with thread count 0, CUDA events), `max_abs_diff[engine]` the parity to
    eager, `engine_throughput[engine]` images per second at the throughput batch, `engine_peak_memory[engine]`
    the growth of peak resident memory during one batch-1 call, `engine_notes[engine]` why an engine has no
    figures (package missing, export failed), `engine_ratio[(engine, threads)]` the time relative to the paired
    baseline's same engine timed in the same rounds (median of per-round ratios).
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
    engine_latency: dict[tuple[str, int], Timing] = field(default_factory=dict)
    engine_throughput: dict[str, float] = field(default_factory=dict)
    engine_peak_memory: dict[str, int | None] = field(default_factory=dict)
    engine_notes: dict[str, str] = field(default_factory=dict)
    engine_ratio: dict[tuple[str, int], float] = field(default_factory=dict)

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


BASELINE_KEY = "paired baseline: "
"""Prefix of the baseline's calls among a model's own (engine names) in one round of `measure_speed`."""


class PairedBaseline:
    """The baseline model's runners (`name` at each input size, weights re-drawn like every timed model's), built
    once per input size, engine and thread count and kept for the next model; one ONNX export, one compiled network
    and one ncnn export per input size serve every thread count, as in `measure_speed`; ncnn files go to `folder`."""

    def __init__(self, name: str, folder: str | Path) -> None:
        self.name = name
        self.folder = Path(folder)
        self._models: dict[tuple[int, int], nn.Module] = {}
        self._graphs: dict[tuple[int, int], Any] = {}
        self._runners: dict[tuple[tuple[int, int], str, int], Any] = {}

    def runner(self, engine: str, size: tuple[int, int], threads: int, variant: str) -> Any:
        """The baseline's runner on `engine` for batch-1 images of `size` (H, W) with `threads` CPU threads."""
        size = tuple(size)
        key = (size, engine, threads)
        if key in self._runners:
            return self._runners[key]
        if size not in self._models:
            self._models[size] = conditioned_random_weights(build_model(self.name, input_size=size).eval(), size)
        built = next((r for (s, e, _), r in self._runners.items() if (s, e) == (size, engine)), None)
        if built is not None and engine in ("eager", "compiled", "ncnn"):
            # PyTorch follows set_threads; ncnn reloads its exported files with the new thread count
            self._runners[key] = built if engine != "ncnn" else NcnnRunner(built.exported, threads)
            return self._runners[key]
        if engine in ("onnxruntime", "openvino") and size not in self._graphs:
            self._graphs[size] = export_onnx(self._models[size], size)
        self._runners[key] = build_engine(engine, self._models[size], size, 1, threads, self._graphs.get(size),
                                          self.folder / f"{size[0]}x{size[1]}", variant)
        return self._runners[key]


def measure_speed(row: ComplexityRow, model: nn.Module, settings: SpeedSettings,
                  progress: Callable[[str], None] = lambda stage: None,
                  baseline: PairedBaseline | None = None) -> ComplexityRow:
    """Fill `row`'s per-engine latency (each thread count, engines interleaved), parity, peak memory, throughput
    and CUDA timings for `model` (weights as given); engines that cannot run here get a note instead. With a
    `baseline` of another model, its runners on the same engines join every round, and `row.engine_ratio` holds the
    paired time ratios."""
    size, model = row.input_size, model.eval()
    images = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(1))
    array = images.numpy()
    wanted = settings.cpu_engines()
    usable = []
    for name in wanted:
        note = engine_missing(name)
        if note:
            row.engine_notes[name] = note
        else:
            usable.append(name)
    graph = None
    if any(name in usable for name in ("onnxruntime", "openvino")):
        progress("onnx export")
        graph = export_onnx(model, size)
    variant = settings.fast_variants[0] if settings.fast_variants else COMPILED_VARIANT
    row.fast_variant = variant if "compiled" in usable else None
    with tempfile.TemporaryDirectory(prefix="engines-") as folder:
        runners: dict[str, Any] = {}
        for threads in settings.thread_counts or (settings.threads,):
            set_threads(threads)
            built = {}
            for name in list(usable):
                if name in ("eager", "compiled", "ncnn") and name in runners:
                    # PyTorch follows set_threads; ncnn reloads its exported files (its convolutions keep the
                    # thread count they were loaded with)
                    built[name] = runners[name] if name != "ncnn" else NcnnRunner(runners[name].exported, threads)
                    continue
                progress(f"building {name}, {threads} thread(s)")
                try:
                    built[name] = build_engine(name, model, size, 1, threads, graph, folder, variant)
                except Exception as error:  # an engine's own failure is a note, not the end of the report
                    row.engine_notes[name] = f"failed to build: {str(error).splitlines()[0][:200]}"
                    usable.remove(name)
                    continue
                if name not in row.max_abs_diff:
                    row.max_abs_diff[name] = engine_parity(built[name], model, size)
                if name in ("eager", "compiled", "ncnn"):
                    runners[name] = built[name]
            calls = {name: (lambda r=runner: r(array)) for name, runner in built.items()}
            if baseline is not None and baseline.name != row.model:
                progress(f"building {baseline.name} beside it, {threads} thread(s)")
                for name in built:
                    paired = baseline.runner(name, size, threads, variant)
                    calls[BASELINE_KEY + name] = lambda r=paired: r(array)
            progress(f"latency, {threads} thread(s)")
            seconds = interleaved_seconds(calls, settings.repeats, settings.warmup, settings.budget_s)
            for name in built:
                row.engine_latency[(name, threads)] = Timing.of(seconds[name])
                if BASELINE_KEY + name in seconds:
                    row.engine_ratio[(name, threads)] = paired_ratio(seconds[name], seconds[BASELINE_KEY + name])
        set_threads(settings.threads)
        for name in usable:
            timing = row.engine_latency.get((name, settings.threads))
            if timing is None:
                continue
            legacy = {"compiled": "fast"}.get(name, name)
            if legacy in ("eager", "fast", "onnxruntime"):
                row.latency[legacy] = timing
        if "compiled" in row.max_abs_diff:
            row.max_abs_diff["fast"] = row.max_abs_diff["compiled"]
        progress("peak memory")
        with torch.inference_mode():
            row.peak_memory = peak_memory_bytes(lambda: model(images))
        for name, runner in built.items():
            row.engine_peak_memory[name] = peak_resident_bytes(lambda r=runner: r(array))
        _measure_throughput(row, model, settings, usable, folder, progress, runners.get("ncnn"),
                            built if threads == settings.threads else {})
    if settings.cuda:
        progress("cuda")
        _measure_cuda(row, model, settings)
    return row


def _measure_throughput(row: ComplexityRow, model: nn.Module, settings: SpeedSettings, engines: list[str],
                        folder: str, progress: Callable[[str], None], ncnn_runner: Any = None,
                        batch_one: dict[str, Any] | None = None) -> None:
    """Images per second at the throughput batch per engine, interleaved; ncnn (no batch axis) reuses its batch-1
    network image by image; at batch 1 the latency's runners `batch_one` (built at `settings.threads`) are reused
    instead of exporting and compiling every engine again."""
    batch = settings.throughput_batch
    reused = batch_one if batch == 1 and batch_one else {}
    progress(f"throughput at batch {batch}")
    set_threads(settings.threads)
    images = torch.randn(batch, 3, *row.input_size, generator=torch.Generator().manual_seed(2)).numpy()
    graph = export_onnx(model, row.input_size, batch_size=batch) \
        if {"onnxruntime", "openvino"} & (set(engines) - set(reused)) else None
    calls: dict[str, Callable[[], Any]] = {}
    for name in engines:
        try:
            if name in reused:
                runner = reused[name]
            elif name == "ncnn" and ncnn_runner is not None:
                runner = NcnnRunner(ncnn_runner.exported, settings.threads)
            else:
                runner = build_engine(name, model, row.input_size, batch, settings.threads, graph,
                                      Path(folder) / "throughput", row.fast_variant or COMPILED_VARIANT)
        except Exception as error:
            row.engine_notes.setdefault(name, f"throughput not measured: {str(error).splitlines()[0][:200]}")
            continue
        calls[name] = lambda r=runner: r(images)
        if row.engine_peak_memory.get(name) is None and name in ("onnxruntime", "openvino"):
            row.engine_peak_memory[name] = peak_resident_bytes(lambda r=runner: r(images))
    timings = time_interleaved(calls, settings.throughput_repeats, 1, None)
    row.engine_throughput = {name: throughput(timing, batch) for name, timing in timings.items()}
    row.throughput = {{"compiled": "fast"}.get(k, k): v for k, v in row.engine_throughput.items()
                      if k in ("eager", "compiled", "onnxruntime")}
    row.throughput_batch = batch


def _measure_cuda(row: ComplexityRow, model: nn.Module, settings: SpeedSettings) -> None:
    """CUDA engines (eager, compiled, ONNX Runtime's CUDA provider) timed with CUDA events; peak memory from the
    CUDA allocator. Untested here (no GPU): built from the same `build_engine` as the CPU paths."""
    array = torch.randn(1, 3, *row.input_size).numpy()
    for name in CUDA_ENGINES:
        note = engine_missing(name)
        if note:
            row.engine_notes[name] = note
            continue
        runner = build_engine(name, model, row.input_size, 1, settings.threads,
                              export_onnx(model, row.input_size) if name == "ort_cuda" else None,
                              compiled_variant=row.fast_variant or COMPILED_VARIANT)
        row.max_abs_diff[name] = engine_parity(runner, model, row.input_size)
        timing = time_cuda_events(lambda r=runner: r(array), settings.repeats, settings.warmup)
        row.engine_latency[(name, 0)] = timing
        row.cuda_latency[{"cuda_eager": "eager", "cuda_compiled": "fast"}.get(name, name)] = timing
    network = copy.deepcopy(model).cuda()
    images = torch.randn(1, 3, *row.input_size, device="cuda")
    with torch.inference_mode():
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
    progress; the settings' paired baseline is timed in every model's rounds. Returns the rows and the report's
    notes (the avg_pool2d check, the weights used for timing)."""
    rows, notes = [], []
    bar = tqdm([(m, s) for m in models for s in sizes], desc="complexity", unit="model", disable=not show_progress)
    with tempfile.TemporaryDirectory(prefix="baseline-") as folder:
        baseline = PairedBaseline(settings.paired_baseline, folder) \
            if settings is not None and settings.paired_baseline else None
        for name, size in bar:
            bar.set_postfix_str(f"{name} {size[0]}x{size[1]}: counting")
            model = build_model(name, input_size=size).eval()
            row = count_row(name, size, model)
            if name in ("lite_hrnet_18", "lite_csw_hrnet") and size == (256, 192):
                notes.append(avg_pool_note(model, name, size))
            if settings is not None:
                conditioned_random_weights(model, size)
                measure_speed(row, model, settings,
                              lambda stage: bar.set_postfix_str(f"{name} {size[0]}x{size[1]}: {stage}"), baseline)
            rows.append(row)
    if settings is not None:
        notes.append("Timings use untrained networks whose weights were re-drawn at trained-network scale "
                     "(`workbench.speed.onnx_export.conditioned_random_weights`): the N(0, 0.001) initialisation "
                     "gives ~1e-18 activations and denormal slow paths, and speed does not otherwise depend on the "
                     "values.")
    return rows, notes
