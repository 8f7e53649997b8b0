"""ONNX export of the pose networks, the project's ONNX Runtime session settings, and the parity check.

Export uses PyTorch's TorchScript-based exporter (`dynamo=False`): a static graph at a fixed batch and input size,
exported in seconds, with constant folding (BatchNorm is folded into the convolutions by ONNX Runtime's graph
optimiser). `optimize_graph` then applies the project's graph choices, each an exact reformulation (see there).
"""
from __future__ import annotations

import io
import math
import warnings
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


def _single_output_conv_as_transpose(graph: onnx.GraphProto) -> None:
    """Rewrite every stride-1 "same" Conv with one output channel (the CSW spatial 7x7 conv, 2 -> 1) as the
    ConvTranspose with the flipped kernel: the same sums. ONNX Runtime would otherwise run it in its blocked NCHWc
    layout with the output padded to 8 or 16 channels, 8-16x the work plus a reorder."""
    initializers = {init.name: init for init in graph.initializer}
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    for index in range(len(graph.node)):
        node = graph.node[index]
        if node.op_type != "Conv" or node.input[1] not in initializers or uses[node.input[1]] != 1:
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
        graph.node[index].CopyFrom(helper.make_node(
            "ConvTranspose", list(node.input), list(node.output), name=f"{node.name}_transposed",
            kernel_shape=[kh, kw], pads=[kh // 2, kw // 2, kh // 2, kw // 2],
        ))


def optimize_graph(graph: onnx.ModelProto) -> onnx.ModelProto:
    """The project's ONNX graph choices, each computing the same function as the exported graph:

    - a single-output "same" convolution runs as the equivalent ConvTranspose (see `_single_output_conv_as_transpose`).
    """
    _single_output_conv_as_transpose(graph.graph)
    return graph


def ort_session(graph: onnx.ModelProto | str | Path, threads: int = 2, spinning: bool = True):
    """An ONNX Runtime CPU session with the project's settings: all graph optimisations (constant folding,
    Conv+BN+activation fusion, NCHWc layout), `threads` intra-op threads, sequential execution, and worker threads
    that spin between operators (`spinning`; turn off on a machine shared with other work)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    source = graph.SerializeToString() if isinstance(graph, onnx.ModelProto) else str(graph)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    onnx.save(graph, str(temporary))
    temporary.replace(path)
    return path
