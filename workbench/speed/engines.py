"""Inference engines, one interface: each turns a PyTorch model into a callable on float32 images (N, 3, H, W)
that returns heatmaps (N, 17, H/4, W/4) as numpy, built for a batch size and a CPU thread count.

CPU engines (`CPU_ENGINES`):
- "eager": PyTorch eager.
- "compiled": the project's compiled path (`workbench.speed.compiled.fast_model`), built the same way for every
  model (variant `COMPILED_VARIANT`, "jit" by default: a frozen TorchScript trace; "compile" (Inductor) takes
  minutes per model).
- "onnxruntime": the project's ONNX export (`workbench.speed.onnx_export`, graph rewrites on) in ONNX Runtime.
- "openvino": OpenVINO (PyPI `openvino`) reading the same ONNX graph, fp32 inference precision, latency hint.
- "ncnn": ncnn through pnnx (`workbench.speed.ncnn_export`), fp32.
CUDA engines (`CUDA_ENGINES`, when CUDA is present; timed with CUDA events): "cuda_eager", "cuda_compiled",
"ort_cuda" (ONNX Runtime's CUDA execution provider).

Every engine but eager and compiled is optional at run time: `engine_missing(name)` returns a note naming the
missing package instead of failing, and callers put that note in their report.
"""
from __future__ import annotations

import importlib.util
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from workbench.speed.compiled import fast_model

CPU_ENGINES = ("eager", "compiled", "onnxruntime", "openvino", "ncnn")
CUDA_ENGINES = ("cuda_eager", "cuda_compiled", "ort_cuda")
ENGINE_LABELS = {"eager": "PyTorch eager", "compiled": "PyTorch compiled", "onnxruntime": "ONNX Runtime",
                 "openvino": "OpenVINO", "ncnn": "ncnn (pnnx)", "cuda_eager": "CUDA eager",
                 "cuda_compiled": "CUDA compiled", "ort_cuda": "ONNX Runtime CUDA"}
COMPILED_VARIANT = "jit"
PARITY_TOLERANCE = 1e-4
"""Largest accepted max abs difference of an engine's heatmaps to eager PyTorch (fp32 engines)."""

Runner = Callable[[np.ndarray], np.ndarray]


def engine_missing(name: str) -> str | None:
    """None when `name` can run here, else a one-line note saying why not (package or CUDA missing)."""
    if name not in CPU_ENGINES + CUDA_ENGINES:
        raise ValueError(f"unknown engine {name!r}; choose one of {', '.join(CPU_ENGINES + CUDA_ENGINES)}")
    if name in CUDA_ENGINES and not torch.cuda.is_available():
        return "no CUDA device"
    if name == "openvino" and importlib.util.find_spec("openvino") is None:
        return "openvino not installed: `pip install -e '.[engines]'` (or `pip install openvino`)"
    if name == "ncnn":
        from workbench.speed.ncnn_export import ncnn_missing

        return ncnn_missing()
    if name == "ort_cuda":
        import onnxruntime

        if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            return "onnxruntime without CUDAExecutionProvider: `pip install onnxruntime-gpu`"
    return None


def available_engines(names: tuple[str, ...] = CPU_ENGINES + CUDA_ENGINES) -> tuple[list[str], dict[str, str]]:
    """The engines of `names` that can run here, and a note per engine that cannot."""
    notes = {name: note for name in names if (note := engine_missing(name))}
    return [name for name in names if name not in notes], notes


def _torch_runner(forward: Callable[[torch.Tensor], torch.Tensor], device: str = "cpu") -> Runner:
    def run(images: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            output = forward(torch.from_numpy(images).to(device))
            return output.cpu().numpy()

    return run


def openvino_model(graph, threads: int = 2, profile: bool = False):
    """An OpenVINO compiled model on the CPU from an ONNX graph (ModelProto or path): `threads` inference threads,
    latency hint (one stream), fp32 inference precision; `profile` turns on the per-layer performance counters."""
    import openvino as ov

    core = ov.Core()
    with tempfile.TemporaryDirectory() as folder:
        path = graph
        if not isinstance(graph, (str, Path)):
            import onnx

            path = Path(folder) / "model.onnx"
            onnx.save(graph, str(path))
        model = core.read_model(str(path))
        config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1,
                  "INFERENCE_PRECISION_HINT": "f32", "PERF_COUNT": profile}
        return core.compile_model(model, "CPU", config)


def _openvino_runner(graph, threads: int) -> Runner:
    request = openvino_model(graph, threads).create_infer_request()

    def run(images: np.ndarray) -> np.ndarray:
        request.infer({0: images})
        return np.array(request.get_output_tensor(0).data, copy=True)

    return run


def build_engine(name: str, model: nn.Module, input_size: tuple[int, int], batch_size: int = 1, threads: int = 2,
                 graph=None, folder: str | Path | None = None, compiled_variant: str = COMPILED_VARIANT) -> Runner:
    """A runner of `model` on engine `name` for images (batch_size, 3, H, W) with `threads` CPU threads (PyTorch
    engines use the process's thread count: call `set_threads` first). `graph`: the project's ONNX export for this
    batch, reused if given; `folder`: where ncnn files go (a temporary folder if None). Raises RuntimeError
    naming the missing package when the engine cannot run here."""
    note = engine_missing(name)
    if note:
        raise RuntimeError(f"engine {name} unavailable: {note}")
    model = model.eval()
    if name == "eager":
        return _torch_runner(model)
    if name == "compiled":
        return _torch_runner(fast_model(model, input_size, compiled_variant, batch_size))
    if name == "cuda_eager":
        import copy

        return _torch_runner(copy.deepcopy(model).cuda(), "cuda")
    if name == "cuda_compiled":
        return _torch_runner(fast_model(model, input_size, compiled_variant, batch_size, device="cuda"), "cuda")
    if name in ("onnxruntime", "openvino", "ort_cuda") and graph is None:
        from workbench.speed.onnx_export import export_onnx

        graph = export_onnx(model, input_size, batch_size=batch_size)
    if name == "onnxruntime":
        from workbench.speed.onnx_export import ort_session, run_session

        session = ort_session(graph, threads, spinning=False)
        return lambda images: run_session(session, images)
    if name == "ort_cuda":
        import onnxruntime as ort

        session = ort.InferenceSession(graph.SerializeToString(), providers=["CUDAExecutionProvider"])
        return lambda images: session.run(None, {session.get_inputs()[0].name: images})[0]
    if name == "openvino":
        return _openvino_runner(graph, threads)
    from workbench.speed.ncnn_export import NcnnRunner, export_ncnn

    target = Path(folder) if folder else Path(tempfile.mkdtemp(prefix="ncnn-"))
    return NcnnRunner(export_ncnn(model, input_size, target, f"model_b{batch_size}", batch_size=1), threads)


def engine_parity(runner: Runner, model: nn.Module, input_size: tuple[int, int], batch_size: int = 1,
                  seed: int = 1) -> float:
    """Largest absolute difference between `runner` and eager `model` on random images N(0, 1)."""
    images = torch.randn(batch_size, 3, *input_size, generator=torch.Generator().manual_seed(seed))
    with torch.inference_mode():
        expected = model.eval()(images).numpy()
    return float(np.abs(np.asarray(runner(images.numpy())).reshape(expected.shape) - expected).max())


def peak_resident_bytes(call: Callable[[], Any]) -> int | None:
    """Growth of the process's peak resident memory (VmHWM) during one `call` above the resident memory before
    it (Linux: the peak is reset through /proc/self/clear_refs); covers every engine's own allocator, unlike
    PyTorch's allocator statistics. None where /proc does not allow it."""
    def field(name: str) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(name):
                return int(line.split()[1]) * 1024
        raise KeyError(name)

    try:
        before = field("VmRSS:")
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except (OSError, KeyError):
        return None
    call()
    try:
        return max(field("VmHWM:") - before, 0)
    except (OSError, KeyError):
        return None


def engine_versions() -> dict[str, str]:
    """Versions of the engines installed here (package name -> version)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("torch", "onnxruntime", "openvino", "ncnn", "pnnx"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            pass
    return found


def machine_description() -> str:
    """CPU model name and core count of this machine."""
    import platform

    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} logical CPUs"
