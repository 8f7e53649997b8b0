"""ONNX export of the pose networks, the project's ONNX Runtime session settings, and the parity check.

Export uses PyTorch's TorchScript-based exporter (`dynamo=False`): a static graph at a fixed batch and input size,
exported in seconds, with constant folding (BatchNorm is folded into the convolutions by ONNX Runtime's graph
optimiser). `optimize_graph` then applies the project's graph choices, each an exact reformulation (see there).
"""
from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper
from torch import nn

OPSET = 17
INPUT_NAME = "image"
OUTPUT_NAME = "heatmaps"


def conditioned_random_weights(model: nn.Module, input_size: tuple[int, int], seed: int = 0) -> nn.Module:
    """Re-draw `model`'s weights in place so that an untrained network behaves numerically like a trained one.

    A freshly built network (conv weights N(0, 0.001)) outputs heatmaps of about 1e-18 with denormal intermediates:
    parity checks pass vacuously and CPU timings hit slow denormal paths. Here conv and linear weights are drawn
    N(0, 1/fan_in), biases N(0, 0.1), BatchNorm scales U(0.1, 0.2) (small, so that deep residual stacks stay well
    conditioned) and shifts N(0, 0.1); BatchNorm statistics are then estimated on 4 random images of `input_size`
    (H, W) pixels, variances floored at 1e-2. Outputs are O(0.1-10) and float32 agrees with float64 to ~1e-5.
    """
    generator = torch.Generator().manual_seed(seed)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                module.weight.normal_(0.0, math.sqrt(1.0 / module.weight[0].numel()), generator=generator)
                if module.bias is not None:
                    module.bias.normal_(0.0, 0.1, generator=generator)
        for norm in norms:
            norm.weight.uniform_(0.1, 0.2, generator=generator)
            norm.bias.normal_(0.0, 0.1, generator=generator)
            norm.reset_running_stats()
            norm.momentum = None
        model.train()
        model(torch.randn(4, 3, *input_size, generator=generator))
        for norm in norms:
            norm.momentum = 0.1
            norm.running_var.clamp_(min=1e-2)
    return model.eval()


def export_onnx(
    model: nn.Module, input_size: tuple[int, int], batch_size: int = 1, optimize: bool = True
) -> onnx.ModelProto:
    """Export `model` (eval mode) for input (batch_size, 3, H, W) -> output (batch_size, 17, H/4, W/4).

    The graph has input `image` and output `heatmaps` with static shapes; `optimize` applies `optimize_graph`.
    """
    model = model.eval()
    buffer = io.BytesIO()
    example = torch.zeros(batch_size, 3, *input_size)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (example,), buffer, dynamo=False, opset_version=OPSET, do_constant_folding=True,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
        )
    graph = onnx.load_from_string(buffer.getvalue())
    return optimize_graph(graph) if optimize else graph


def _attributes(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _static_shapes(model: onnx.ModelProto) -> dict[str, list[int]]:
    """Every tensor's shape, from one ONNX Runtime run on zeros with all tensors as outputs (the export fixes batch
    and input size; ONNX shape inference cannot follow the exporter's shape arithmetic through `chunk`)."""
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    known = {output.name for output in probe.graph.output} | {init.name for init in probe.graph.initializer}
    names = [name for node in probe.graph.node for name in node.output if name and name not in known]
    probe.graph.output.extend(helper.make_empty_tensor_value_info(name) for name in names)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feeds = {}
    for value in probe.graph.input:
        if value.name not in known:
            tensor = value.type.tensor_type
            dtype = helper.tensor_dtype_to_np_dtype(tensor.elem_type)
            feeds[value.name] = np.zeros([d.dim_value for d in tensor.shape.dim], dtype)
    outputs = [output.name for output in session.get_outputs()]
    shapes = {name: list(np.shape(value)) for name, value in zip(outputs, session.run(outputs, feeds))}
    shapes.update({init.name: list(init.dims) for init in probe.graph.initializer})
    return shapes


def _consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    """Tensor name -> the nodes that read it (a graph output counts as a reader)."""
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    for output in graph.output:
        consumers.setdefault(output.name, []).append(output)
    return consumers


def _constant(graph: onnx.GraphProto, name: str, value: np.ndarray) -> str:
    graph.initializer.append(numpy_helper.from_array(value, name))
    return name


def _replace(graph: onnx.GraphProto, replacements: dict[str, list[onnx.NodeProto]]) -> None:
    """Put each node whose first output is a key of `replacements` by that list of nodes, keeping the order."""
    nodes = [new for node in graph.node for new in replacements.get(node.output[0], [node])]
    del graph.node[:]
    graph.node.extend(nodes)


def _channel_reduction(node: onnx.NodeProto, op_type: str, shapes: dict[str, list[int]]) -> list[int] | None:
    """The (N, C, H, W) input shape if `node` is `op_type` over the channel axis only, keeping dims."""
    if node.op_type != op_type or len(node.input) != 1:
        return None
    attrs, shape = _attributes(node), shapes.get(node.input[0], [])
    channels_only = list(attrs.get("axes", [])) in ([1], [-3]) and attrs.get("keepdims", 1) == 1
    return shape if channels_only and len(shape) == 4 and 0 not in shape else None


def _channel_mean_as_matmul(model: onnx.ModelProto, shapes: dict[str, list[int]]) -> None:
    """ReduceMean over the channels of (N, C, H, W) -> MatMul of a (1, C) row of 1/C with the (N, C, H*W) view,
    reshaped to (N, 1, H, W): the same average. ONNX Runtime's channel-axis reduction walks across the channel
    planes (and thrashes the cache when a plane is a multiple of 4 KiB, as 64 x 48 floats are); its matrix product
    streams the planes at full vector width."""
    graph, replacements = model.graph, {}
    for node in graph.node:
        shape = _channel_reduction(node, "ReduceMean", shapes)
        if shape is None:
            continue
        n, c, h, w = shape
        name = node.name
        flat = _constant(graph, f"{name}/flat_shape", np.array([n, c, h * w], np.int64))
        row = _constant(graph, f"{name}/mean_row", np.full((1, c), 1.0 / c, np.float32))
        back = _constant(graph, f"{name}/map_shape", np.array([n, 1, h, w], np.int64))
        replacements[node.output[0]] = [
            helper.make_node("Reshape", [node.input[0], flat], [f"{name}/flat"], name=f"{name}/flatten"),
            helper.make_node("MatMul", [row, f"{name}/flat"], [f"{name}/mean"], name=f"{name}/matmul"),
            helper.make_node("Reshape", [f"{name}/mean", back], list(node.output), name=f"{name}/unflatten"),
        ]
    _replace(graph, replacements)


MAX_TREE_MIN_PLANE = 64 * 48


def _channel_max_as_elementwise_max(model: onnx.ModelProto, shapes: dict[str, list[int]]) -> None:
    """ReduceMax over the channels of (N, C, H, W) with planes of at least `MAX_TREE_MIN_PLANE` pixels -> a
    halving tree of elementwise Max: the maximum of the first ceil(C/2) channels and the last ceil(C/2) (they
    overlap by one when C is odd, which max ignores), repeated down to one channel. The same maximum. ONNX
    Runtime's channel-axis ReduceMax walks across the planes (see `_channel_mean_as_matmul`); its Max streams
    them. On smaller planes the tree's extra nodes cost more than they save, so those keep ReduceMax."""
    graph, replacements = model.graph, {}
    for node in graph.node:
        shape = _channel_reduction(node, "ReduceMax", shapes)
        if shape is None or shape[1] < 2 or shape[2] * shape[3] < MAX_TREE_MIN_PLANE:
            continue
        name, channels, level, current, nodes = node.name, shape[1], 0, node.input[0], []
        axis = _constant(graph, f"{name}/axis", np.array([1], np.int64))
        while channels > 1:
            half = (channels + 1) // 2
            bounds = [_constant(graph, f"{name}/level{level}/{what}", np.array([value], np.int64))
                      for what, value in (("start", 0), ("half", half), ("rest", channels - half), ("end", channels))]
            first, last, maximum = (f"{name}/level{level}/{what}" for what in ("first", "last", "max"))
            output = maximum if half > 1 else node.output[0]
            nodes += [
                helper.make_node("Slice", [current, bounds[0], bounds[1], axis], [first], name=first),
                helper.make_node("Slice", [current, bounds[2], bounds[3], axis], [last], name=last),
                helper.make_node("Max", [first, last], [output], name=maximum),
            ]
            channels, current, level = half, output, level + 1
        replacements[node.output[0]] = nodes
    _replace(graph, replacements)


def _global_max_pool(model: onnx.ModelProto, shapes: dict[str, list[int]]) -> None:
    """A MaxPool whose window is its whole unpadded input, as `adaptive_max_pool2d(x, 1)` exports, ->
    GlobalMaxPool: the same maximum, by ONNX Runtime's vectorised kernel instead of its generic pooling loop."""
    for node in model.graph.node:
        if node.op_type != "MaxPool":
            continue
        attrs, shape = _attributes(node), shapes.get(node.input[0], [])
        whole = len(shape) == 4 and list(attrs.get("kernel_shape", [])) == shape[2:]
        plain = not any(attrs.get("pads", [])) and attrs.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET")
        if len(node.output) == 1 and whole and plain:
            node.CopyFrom(helper.make_node("GlobalMaxPool", list(node.input), list(node.output), name=node.name))


def _single_output_conv_as_transpose(model: onnx.ModelProto, shapes: dict[str, list[int]]) -> None:
    """Rewrite every stride-1 "same" Conv with one output channel (the CSW spatial 7x7 conv, 2 -> 1) as the
    ConvTranspose with the flipped kernel: the same sums. ONNX Runtime would otherwise run it in its blocked NCHWc
    layout with the output padded to 8 or 16 channels, 8-16x the work plus a reorder."""
    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    consumers = _consumers(graph)
    for node in graph.node:
        if node.op_type != "Conv" or node.input[1] not in initializers or len(consumers[node.input[1]]) != 1:
            continue
        weight = numpy_helper.to_array(initializers[node.input[1]])
        attrs = _attributes(node)
        kh, kw = weight.shape[2:] if weight.ndim == 4 else (0, 0)
        same = list(attrs.get("pads", [0, 0, 0, 0])) == [kh // 2, kw // 2, kh // 2, kw // 2] and kh % 2 and kw % 2
        unit = all(v == 1 for v in list(attrs.get("strides", [1])) + list(attrs.get("dilations", [1])))
        if weight.ndim != 4 or weight.shape[0] != 1 or attrs.get("group", 1) != 1 or not same or not unit:
            continue
        flipped = np.ascontiguousarray(weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
        initializers[node.input[1]].CopyFrom(numpy_helper.from_array(flipped, node.input[1]))
        node.CopyFrom(helper.make_node(
            "ConvTranspose", list(node.input), list(node.output), name=f"{node.name}_transposed",
            kernel_shape=[kh, kw], pads=[kh // 2, kw // 2, kh // 2, kw // 2],
        ))


GRAPH_REWRITES = {
    "channel_mean_as_matmul": _channel_mean_as_matmul,
    "channel_max_as_elementwise_max": _channel_max_as_elementwise_max,
    "global_max_pool": _global_max_pool,
    "single_output_conv_as_transpose": _single_output_conv_as_transpose,
}


def optimize_graph(graph: onnx.ModelProto, rewrites: tuple[str, ...] | None = None) -> onnx.ModelProto:
    """The project's ONNX graph choices, in place: the `GRAPH_REWRITES` named in `rewrites` (default all), each
    an exact reformulation that computes the same function as the exported graph (see each one's doc)."""
    shapes = _static_shapes(graph)
    for name in GRAPH_REWRITES if rewrites is None else rewrites:
        GRAPH_REWRITES[name](graph, shapes)
    return graph


def ort_session(graph: onnx.ModelProto | str | Path, threads: int = 2, spinning: bool = True,
                profile_prefix: str | None = None):
    """An ONNX Runtime CPU session with the project's settings: all graph optimisations (constant folding,
    Conv+BN+activation fusion, NCHWc layout), `threads` intra-op threads, sequential execution, and worker threads
    that spin between operators (`spinning`; turn off on a machine shared with other work). With `profile_prefix`
    the session profiles every kernel into `<profile_prefix>_<time>.json` (see `profile_operators`)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    source = graph.SerializeToString() if isinstance(graph, onnx.ModelProto) else str(graph)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


@dataclass(frozen=True)
class OperatorTime:
    """One operator type's share of an ONNX Runtime run: `nodes` kernels per run taking `microseconds` per run."""

    op_type: str
    nodes: int
    microseconds: float


def profile_operators(graphs: dict[str, onnx.ModelProto], images: np.ndarray, threads: int = 2, runs: int = 20,
                      warmup: int = 3) -> dict[str, list[OperatorTime]]:
    """Kernel time per operator type of each graph in ONNX Runtime with the project's session settings (spinning
    off), from its profiler over `runs` rounds on `images` (N, 3, H, W) after `warmup` untimed ones; every round
    runs each graph once in a shuffled order, so machine load hits all alike. Rows slowest first.

    The op types are those ONNX Runtime executes after its fusions and NCHWc layout rewrite (e.g. FusedConv,
    ReorderInput/ReorderOutput), so the node counts show how many kernels each run dispatches."""
    import json
    import random
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        sessions = {name: ort_session(graph, threads, spinning=False, profile_prefix=str(Path(folder) / f"p{i}"))
                    for i, (name, graph) in enumerate(graphs.items())}
        order, shuffler = list(sessions), random.Random(0)
        for _ in range(warmup + runs):
            shuffler.shuffle(order)
            for name in order:
                run_session(sessions[name], images)
        events = {name: json.loads(Path(session.end_profiling()).read_text()) for name, session in sessions.items()}
    return {name: _operator_times(found, warmup, runs) for name, found in events.items()}


def _operator_times(events: list[dict], warmup: int, runs: int) -> list[OperatorTime]:
    """Per-op-type kernel time per run from an ONNX Runtime profile, without the first `warmup` runs."""
    model_runs = sorted((e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
                        key=lambda e: e["ts"])
    timed_from = model_runs[warmup - 1]["ts"] + model_runs[warmup - 1]["dur"] if warmup else 0
    counts: dict[str, int] = {}
    totals: dict[str, float] = {}
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time") and event["ts"] >= timed_from:
            op_type = event["args"]["op_name"]
            counts[op_type] = counts.get(op_type, 0) + 1
            totals[op_type] = totals.get(op_type, 0.0) + event["dur"]
    rows = [OperatorTime(op_type, round(counts[op_type] / runs), totals[op_type] / runs) for op_type in counts]
    return sorted(rows, key=lambda row: -row.microseconds)


def operators_table(rows: list[OperatorTime]) -> str:
    """`profile_operators` rows as aligned text: op type, nodes, microseconds and share of the total per run."""
    total = sum(row.microseconds for row in rows) or 1.0
    lines = [f"{'operator':22s} {'nodes':>6s} {'us/run':>10s} {'share':>7s}"]
    lines += [f"{row.op_type:22s} {row.nodes:6d} {row.microseconds:10.1f} {100 * row.microseconds / total:6.1f}%"
              for row in rows]
    lines.append(f"{'total':22s} {sum(row.nodes for row in rows):6d} {total:10.1f} {100.0:6.1f}%")
    return "\n".join(lines)


def operators_csv(rows: list[OperatorTime]) -> str:
    """`profile_operators` rows as CSV text: op_type, nodes, microseconds."""
    return "op_type,nodes,microseconds\n" + "".join(f"{r.op_type},{r.nodes},{r.microseconds:.1f}\n" for r in rows)


def run_session(session, images: np.ndarray) -> np.ndarray:
    """Run `session` on float32 images (N, 3, H, W); returns heatmaps (N, 17, H/4, W/4)."""
    return session.run(None, {session.get_inputs()[0].name: images})[0]


def onnx_parity(
    model: nn.Module, session, input_size: tuple[int, int], batch_size: int = 1, trials: int = 2, seed: int = 0
) -> float:
    """Largest absolute difference between `model` and the ONNX Runtime `session` over `trials` random inputs
    N(0, 1) of shape (batch_size, 3, H, W)."""
    generator = torch.Generator().manual_seed(seed)
    worst = 0.0
    for _ in range(trials):
        images = torch.randn(batch_size, 3, *input_size, generator=generator)
        with torch.no_grad():
            expected = model.eval()(images).numpy()
        worst = max(worst, float(np.abs(run_session(session, images.numpy()) - expected).max()))
    return worst


def save_onnx(graph: onnx.ModelProto, path: str | Path) -> Path:
    """Write `graph` to `path` atomically (a temporary file, then rename)."""
    from workbench.common.files import write_atomic

    return write_atomic(path, lambda temporary: onnx.save(graph, str(temporary)))
