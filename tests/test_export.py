"""ONNX export parity for every model, the project's graph rewrite, the fast PyTorch paths and the export command."""
from __future__ import annotations

import re

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from model import build_model, model_names
from model.weighting import SingleResolutionCSW
from workbench.cli import main
from workbench.speed.onnx_export import (GRAPH_REWRITES, MAX_TREE_MIN_PLANE, conditioned_random_weights, export_onnx, onnx_parity,
                              optimize_graph, ort_session, profile_operators, run_session)
from workbench.speed.compiled import fast_model

SIZE = (64, 64)


@pytest.mark.parametrize("name", model_names())
def test_onnx_export_matches_pytorch_for_every_model(name):
    network = conditioned_random_weights(build_model(name, input_size=SIZE), SIZE)
    session = ort_session(export_onnx(network, SIZE, batch_size=2), threads=1)
    assert run_session(session, np.zeros((2, 3, *SIZE), np.float32)).shape == (2, 17, 16, 16)
    assert onnx_parity(network, session, SIZE, batch_size=2) < 1e-4


def test_conditioned_weights_give_trained_scale_outputs_reproducibly():
    first = conditioned_random_weights(build_model("small_hrnet_w16", input_size=SIZE), SIZE, seed=3)
    second = conditioned_random_weights(build_model("small_hrnet_w16", input_size=SIZE), SIZE, seed=3)
    images = torch.randn(2, 3, *SIZE)
    with torch.no_grad():
        out = first(images)
        assert torch.equal(out, second(images))
    assert 0.01 < out.std().item() < 100


class SpatialConv(nn.Module):
    """A CSW-like 2 -> 1 7x7 "same" convolution, the pattern `optimize_graph` rewrites."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, 7, padding=3, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.conv(x[:, :2]))


def test_single_output_conv_runs_as_equivalent_conv_transpose():
    network = SpatialConv().eval()
    plain = export_onnx(network, (16, 12), optimize=False)
    rewritten = optimize_graph(onnx.load_from_string(plain.SerializeToString()))
    assert [n.op_type for n in rewritten.graph.node].count("ConvTranspose") == 1
    assert "Conv" not in [n.op_type for n in rewritten.graph.node]
    images = np.random.default_rng(0).standard_normal((1, 3, 16, 12)).astype(np.float32)
    expected = run_session(ort_session(plain, threads=1), images)
    assert np.abs(run_session(ort_session(rewritten, threads=1), images) - expected).max() < 1e-6


class CSWOnFeatures(nn.Module):
    """A 1x1 conv to an odd number of channels, then a single-resolution CSW block: every reduction the rewrites
    touch (channel mean and max of M_s, spatial mean and max of M_c) on one tensor."""

    def __init__(self, channels: int = 21) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, channels, 1)
        self.csw = SingleResolutionCSW(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.csw(self.conv(x))


@pytest.mark.parametrize("rewrite", list(GRAPH_REWRITES))
def test_each_graph_rewrite_computes_the_same_function(rewrite):
    size = (64, 48)
    assert size[0] * size[1] >= MAX_TREE_MIN_PLANE
    network = conditioned_random_weights(CSWOnFeatures(), size)
    plain = export_onnx(network, size, batch_size=2, optimize=False)
    rewritten = optimize_graph(onnx.load_from_string(plain.SerializeToString()), (rewrite,))
    removed, added = {
        "channel_mean_as_matmul": ("ReduceMean", "MatMul"),
        "channel_max_as_elementwise_max": ("ReduceMax", "Max"),
        "global_max_pool": ("MaxPool", "GlobalMaxPool"),
        "single_output_conv_as_transpose": ("Conv", "ConvTranspose"),
    }[rewrite]
    before, after = ([n.op_type for n in g.graph.node] for g in (plain, rewritten))
    assert removed in before and added in after
    assert after.count(removed) == before.count(removed) - 1
    images = np.random.default_rng(0).standard_normal((2, 3, *size)).astype(np.float32)
    expected = run_session(ort_session(plain, threads=1), images)
    assert np.abs(run_session(ort_session(rewritten, threads=1), images) - expected).max() < 1e-5
    assert onnx_parity(network, ort_session(rewritten, threads=1), size, batch_size=2) < 1e-4


def test_channel_max_keeps_reduce_max_on_small_planes():
    size = (32, 24)
    network = conditioned_random_weights(CSWOnFeatures(), size)
    rewritten = export_onnx(network, size)
    assert "ReduceMax" in [n.op_type for n in rewritten.graph.node]
    assert "Max" not in [n.op_type for n in rewritten.graph.node]


def test_lite_csw_hrnet_at_paper_size_with_every_rewrite_matches_pytorch():
    size = (256, 192)
    network = conditioned_random_weights(build_model("lite_csw_hrnet", input_size=size), size)
    graph = export_onnx(network, size, batch_size=2)
    ops = [n.op_type for n in graph.graph.node]
    assert "ReduceMean" not in ops and {"MatMul", "Max", "GlobalMaxPool", "ConvTranspose"} <= set(ops)
    assert onnx_parity(network, ort_session(graph, threads=1), size, batch_size=2, trials=1) < 1e-4


@pytest.mark.parametrize("name, variant", [("lite_csw_hrnet", "jit"), ("small_hrnet_w16", "jit_channels_last")])
def test_fast_paths_equal_eager(name, variant):
    network = conditioned_random_weights(build_model(name, input_size=SIZE), SIZE)
    forward = fast_model(network, SIZE, variant, batch_size=2)
    images = torch.randn(2, 3, *SIZE)
    with torch.inference_mode():
        assert (forward(images) - network(images)).abs().max().item() < 1e-4


def test_export_command_writes_a_checked_graph_and_prints_its_timing(tmp_path, capsys):
    path = tmp_path / "small.onnx"
    with pytest.raises(SystemExit) as stopped:
        main(["export", "small_hrnet_w16", "--size", "64x64", "--output", str(path), "--repeats", "2"])
    assert stopped.value.code == 0
    printed = capsys.readouterr().out
    assert "parity: max abs difference" in printed and "onnxruntime (2 threads, batch 1): median" in printed
    assert onnx.load(str(path)).graph.input[0].name == "image"
    refused = tmp_path / "refused.onnx"
    with pytest.raises(SystemExit) as stopped:
        main(["export", "small_hrnet_w16", "--size", "64x64", "--output", str(refused), "--tolerance", "0"])
    assert stopped.value.code == 2 and "nothing written" in capsys.readouterr().err
    assert not refused.exists()


def test_operator_profile_counts_every_kernel_of_each_run_per_graph():
    def graph(ops: list[str]) -> onnx.ModelProto:
        value = onnx.helper.make_tensor_value_info
        nodes = [onnx.helper.make_node(op, ["image" if i == 0 else f"t{i}", "image"], [f"t{i + 1}"], name=f"n{i}")
                 for i, op in enumerate(ops)]
        nodes[-1].output[0] = "heatmaps"
        return onnx.helper.make_model(onnx.helper.make_graph(
            nodes, "g", [value("image", onnx.TensorProto.FLOAT, [1, 3, 8, 8])],
            [value("heatmaps", onnx.TensorProto.FLOAT, [1, 3, 8, 8])]), opset_imports=[onnx.helper.make_opsetid("", 17)])

    images = np.ones((1, 3, 8, 8), np.float32)
    profiles = profile_operators({"adds": graph(["Add", "Add", "Mul"]), "subs": graph(["Sub"])}, images, threads=1,
                                 runs=4, warmup=2)
    assert {row.op_type: row.nodes for row in profiles["adds"]} == {"Add": 2, "Mul": 1}
    assert {row.op_type: row.nodes for row in profiles["subs"]} == {"Sub": 1}
    assert all(row.microseconds > 0 for rows in profiles.values() for row in rows)


def test_export_command_profiles_the_kernels_on_request(tmp_path, capsys):
    path = tmp_path / "small.onnx"
    with pytest.raises(SystemExit) as stopped:
        main(["export", "lite_csw_hrnet", "--size", "64x64", "--output", str(path), "--repeats", "2", "--profile"])
    assert stopped.value.code == 0
    printed = capsys.readouterr().out
    table = (tmp_path / "small.operators.csv").read_text().splitlines()
    assert table[0] == "op_type,nodes,microseconds" and len(table) > 5
    op_types = {line.split(",")[0] for line in table[1:]}
    assert {"ConvTranspose", "GlobalMaxPool", "Sigmoid"} <= op_types and "kernels per run by operator type" in printed


@pytest.mark.parametrize("command", [["export", "lite_csw_hrnet", "--repeats", "0"],
                                     ["export", "lite_csw_hrnet", "--threads", "-1"],
                                     ["complexity", "--throughput-batch", "two"],
                                     ["weights", "publish", "run", "--threads", "0"],
                                     ["app", "--threads", "0"]])
def test_counts_below_one_are_refused_before_any_work(command, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(command)
    assert stopped.value.code == 2
    assert re.search(r"argument --[a-z-]+: (must be at least 1, got|expected a whole number, got)",
                     capsys.readouterr().err)
