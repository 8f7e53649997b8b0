"""Why the time goes where it goes: time per operator type of two models on three engines, in one table.

- ONNX Runtime: its kernel profiler (`workbench.speed.onnx_export.profile_operators`), op types after its fusions;
- OpenVINO: the per-layer performance counters of a compiled model (`PERF_COUNT`), by layer type as executed;
- PyTorch eager: the profiler's self CPU time per aten operator.

Each engine names operators its own way; `operator_group` maps every name to one of a few groups shared by all
three (convolution, channel/spatial reductions, elementwise multiply, layout, ...), so the table compares like
with like. Times are per inference (batch 1), microseconds, averaged over `runs` calls.
"""
from __future__ import annotations

import importlib.util
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

GROUPS = ("convolution", "reduction", "pooling", "multiply/add", "activation", "resample", "layout/copy", "other")


def operator_group(name: str) -> str:
    """The shared group of an operator name of ONNX Runtime, OpenVINO or PyTorch (case-insensitive)."""
    n = name.lower().removeprefix("aten::")
    if "conv" in n or n in ("matmul", "addmm", "mm", "fullyconnected", "gemm", "fusedconv", "linear"):
        return "convolution"
    if n.startswith("reduce") or n in ("mean", "amax", "max", "sum", "mvn"):
        return "reduction"
    if "pool" in n:
        return "pooling"
    if n in ("mul", "add", "mul_", "add_", "eltwise", "multiply", "sub", "div", "fusedmul"):
        return "multiply/add"
    if n in ("sigmoid", "relu", "relu_", "clip", "hardtanh", "hardtanh_", "hardsigmoid", "subgraph"):
        return "activation"
    if n in ("resize", "interpolate", "upsample_nearest2d", "upsample_bilinear2d"):
        return "resample"
    if any(key in n for key in ("reorder", "transpose", "reshape", "concat", "split", "slice", "copy", "contiguous",
                                "view", "cat", "chunk", "permute", "shufflechannels", "gather", "flatten",
                                "unsqueeze", "squeeze", "expand")):
        return "layout/copy"
    return "other"


@dataclass(frozen=True)
class OperatorShare:
    """`microseconds` per inference spent by `engine` in operators of `group` for `model`, over `nodes` calls."""

    model: str
    engine: str
    group: str
    microseconds: float
    nodes: int


def _grouped(model: str, engine: str, items: list[tuple[str, float, int]]) -> list[OperatorShare]:
    totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    for name, micros, count in items:
        total = totals[operator_group(name)]
        total[0] += micros
        total[1] += count
    return [OperatorShare(model, engine, group, totals[group][0], int(totals[group][1]))
            for group in GROUPS if group in totals]


def onnxruntime_shares(graphs: dict, images: np.ndarray, threads: int, runs: int) -> list[OperatorShare]:
    from workbench.speed.onnx_export import profile_operators

    found = profile_operators(graphs, images, threads=threads, runs=runs)
    return [share for name, rows in found.items()
            for share in _grouped(name, "onnxruntime", [(r.op_type, r.microseconds, r.nodes) for r in rows])]


def openvino_shares(graphs: dict, images: np.ndarray, threads: int, runs: int) -> list[OperatorShare]:
    """OpenVINO's performance counters (executed layers only), by layer type, averaged over `runs` calls."""
    from workbench.speed.engines import openvino_model

    shares = []
    for name, graph in graphs.items():
        request = openvino_model(graph, threads, profile=True).create_infer_request()
        for _ in range(3):
            request.infer({0: images})
        totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
        for _ in range(runs):
            request.infer({0: images})
            for info in request.get_profiling_info():
                if str(info.status).endswith("EXECUTED") and not str(info.status).endswith("NOT_RUN"):
                    total = totals[info.node_type]
                    total[0] += info.real_time.total_seconds() * 1e6 / runs
                    total[1] += 1 / runs
        shares += _grouped(name, "openvino", [(kind, t[0], round(t[1])) for kind, t in totals.items()])
    return shares


def pytorch_shares(models: dict[str, nn.Module], images: np.ndarray, runs: int) -> list[OperatorShare]:
    """Self CPU time per aten operator of eager PyTorch (the profiler), averaged over `runs` calls."""
    from torch.profiler import ProfilerActivity, profile

    from workbench.speed.latency import _quiet_stderr

    tensor = torch.from_numpy(images)
    shares = []
    for name, model in models.items():
        with torch.inference_mode():
            for _ in range(2):
                model(tensor)
            with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU]) as recording:
                for _ in range(runs):
                    model(tensor)
        items = [(event.key, event.self_cpu_time_total / runs, round(event.count / runs))
                 for event in recording.key_averages() if event.key.startswith("aten::")]
        shares += _grouped(name, "pytorch", items)
    return shares


def operator_breakdown(models: dict[str, nn.Module], input_size: tuple[int, int] = (256, 192), threads: int = 2,
                       runs: int = 10) -> tuple[list[OperatorShare], list[str]]:
    """Time per operator group of each of `models` (name -> network, weights as given) at batch 1 on ONNX
    Runtime, OpenVINO (if installed) and PyTorch eager; returns the shares and notes for engines left out."""
    from workbench.speed.latency import set_threads
    from workbench.speed.onnx_export import export_onnx

    set_threads(threads)
    images = torch.randn(1, 3, *input_size, generator=torch.Generator().manual_seed(3)).numpy()
    graphs = {name: export_onnx(model, input_size) for name, model in models.items()}
    shares, notes = onnxruntime_shares(graphs, images, threads, runs), []
    if importlib.util.find_spec("openvino") is None:
        notes.append("OpenVINO not installed: no performance counters (`pip install -e '.[engines]'`).")
    else:
        shares += openvino_shares(graphs, images, threads, runs)
    shares += pytorch_shares(models, images, runs)
    return shares, notes


def breakdown_table(shares: list[OperatorShare], models: list[str]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the one table: a row per operator group, per engine and model the time per inference
    (ms) and its share of that engine's total for that model."""
    engines = [e for e in ("onnxruntime", "openvino", "pytorch") if any(s.engine == e for s in shares)]
    totals = {(s.model, s.engine): 0.0 for s in shares}
    for s in shares:
        totals[(s.model, s.engine)] += s.microseconds
    lookup = {(s.model, s.engine, s.group): s for s in shares}
    header = ["operator group"] + [f"{e} {m} ms (%)" for e in engines for m in models]
    rows = []
    for group in GROUPS + ("total",):
        line = [group]
        for engine in engines:
            for model in models:
                total = totals.get((model, engine), 0.0)
                if group == "total":
                    line.append(f"{total / 1000:.2f}")
                    continue
                share = lookup.get((model, engine, group))
                line.append("-" if share is None or not total
                            else f"{share.microseconds / 1000:.2f} ({100 * share.microseconds / total:.0f}%)")
        rows.append(line)
    return header, rows


def breakdown_sentences(shares: list[OperatorShare], first: str, second: str) -> list[str]:
    """Two sentences on what the table shows, per engine: the share of each model's time that goes to the
    memory-bound groups (reductions, pooling, multiplies, layout), and how many milliseconds `first` spends there
    and in convolutions beyond `second`."""
    def total(model: str, engine: str, groups: tuple[str, ...] | None = None) -> float:
        return sum(s.microseconds for s in shares
                   if s.model == model and s.engine == engine and (groups is None or s.group in groups))

    memory_bound = ("reduction", "pooling", "multiply/add", "layout/copy")
    engines = [e for e in ("onnxruntime", "openvino", "pytorch") if total(first, e) and total(second, e)]
    if not engines:
        return []
    shares_text = [f"{100 * total(first, e, memory_bound) / total(first, e):.0f}% of {first}'s time against "
                   f"{100 * total(second, e, memory_bound) / total(second, e):.0f}% of {second}'s on {e}"
                   for e in engines]
    extra = []
    for e in engines:
        deltas = {g: total(first, e, (g,)) - total(second, e, (g,)) for g in GROUPS}
        largest = max(memory_bound, key=deltas.get)
        extra.append(f"{sum(deltas[g] for g in memory_bound) / 1000:+.2f} ms in them (most in {largest}, "
                     f"{deltas[largest] / 1000:+.2f} ms) and {deltas['convolution'] / 1000:+.2f} ms in convolutions "
                     f"on {e}")
    return [f"The memory-bound operators (reductions, pooling, multiplies and adds, layout copies) take "
            f"{'; '.join(shares_text)}.",
            f"Against {second}, {first} spends {'; '.join(extra)}."]
