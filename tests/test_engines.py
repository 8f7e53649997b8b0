"""The inference engines of the complexity report (issue 16): parity of every installed CPU engine on a small network,
a missing engine noted and not fatal, `export --format ncnn` through the CLI, the per-operator breakdown table and its
sentences, the panel's note on a report without latency, and label placement."""
from __future__ import annotations

import importlib.util

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from workbench.cli import main
from workbench.speed import engines
from workbench.speed.complexity import ComplexityRow, PairedBaseline, SpeedSettings, measure_speed
from workbench.speed.engines import CPU_ENGINES, PARITY_TOLERANCE, build_engine, engine_missing, engine_parity
from workbench.speed.latency import Timing
from workbench.speed.operators import OperatorShare, breakdown_sentences, breakdown_table, operator_group


def tiny_pose_net() -> nn.Module:
    """(N, 3, 32, 32) -> (N, 17, 8, 8): two strided convolutions with BN and ReLU, a channel-and-spatial weighting
    (mean/max reductions, sigmoid, broadcast multiply) like CSW's, a 1x1 head."""

    class Weighting(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            spatial = torch.sigmoid(x.mean(1, keepdim=True) + x.amax(1, keepdim=True))
            return x * spatial

    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1),
                         nn.BatchNorm2d(16), nn.ReLU(), Weighting(), nn.Conv2d(16, 17, 1)).eval()


@pytest.mark.parametrize("engine", CPU_ENGINES)
def test_each_installed_cpu_engine_matches_eager_pytorch(engine, tmp_path):
    missing = engine_missing(engine)
    if missing:
        pytest.skip(f"{engine}: {missing} (noted in the report, see the next test)")
    net = tiny_pose_net()
    runner = build_engine(engine, net, (32, 32), batch_size=1, threads=1, folder=tmp_path)
    output = runner(np.zeros((1, 3, 32, 32), np.float32))
    assert np.asarray(output).reshape(1, 17, 8, 8).dtype == np.float32
    assert engine_parity(runner, net, (32, 32)) < PARITY_TOLERANCE


def test_a_missing_engine_is_noted_in_the_row_and_the_report(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("openvino", "ncnn") else real(name, *a))
    assert "openvino not installed" in engine_missing("openvino") and "ncnn not installed" in engine_missing("ncnn")
    with pytest.raises(RuntimeError, match="openvino not installed"):
        build_engine("openvino", tiny_pose_net(), (32, 32))
    row = ComplexityRow("tiny", (32, 32), 1, 1, 1, 1, "B")
    settings = SpeedSettings(threads=1, repeats=2, warmup=1, budget_s=1.0, throughput_batch=2, throughput_repeats=1,
                             fast_variants=(), onnx=False, cuda=False, thread_counts=(1,), engines=("openvino", "ncnn"))
    measure_speed(row, tiny_pose_net(), settings)
    assert set(row.engine_notes) == {"openvino", "ncnn"} and ("eager", 1) in row.engine_latency
    from workbench.reports.complexity import engine_table

    header, lines = engine_table([row], threads=1)
    noted = [line for line in lines if line[2] == "OpenVINO"]
    assert noted and noted[0][3].startswith("not measured: openvino not installed")


def test_a_paired_baseline_runs_in_the_same_rounds_and_gives_the_table_its_ratio(tmp_path):
    from workbench.reports.complexity import engine_table, fastest_sentence

    settings = SpeedSettings(threads=1, repeats=3, warmup=1, budget_s=None, throughput_batch=1, throughput_repeats=1,
                             fast_variants=(), onnx=False, cuda=False, thread_counts=(1,), engines=())
    baseline = PairedBaseline("lite_hrnet_18", tmp_path)
    rows = [ComplexityRow(f"tiny{i}", (64, 64), 1, 1, 1, 1, "B") for i in range(2)]
    for row in rows:
        measure_speed(row, tiny_pose_net(), settings, baseline=baseline)
    assert baseline.runner("eager", (64, 64), 1, "jit") is baseline.runner("eager", (64, 64), 1, "jit")
    assert baseline.runner("eager", (64, 64), 2, "jit") is baseline.runner("eager", (64, 64), 1, "jit")
    ratio = rows[0].engine_ratio[("eager", 1)]
    assert ratio > 0 and rows[0].engine_latency[("eager", 1)].runs == 3
    _, lines = engine_table(rows[:1], threads=1)
    assert lines[0][4] == f"{ratio:.2f}"

    timing = Timing(10.0, 9.0, 12.0, 5)
    csw, lh = (ComplexityRow(name, (256, 192), 1, 1, 1, 1, "B") for name in ("lite_csw_hrnet", "lite_hrnet_18"))
    csw.engine_ratio[("ncnn", 2)] = 1.234
    sentence = fastest_sentence([csw, lh], {"lite_csw_hrnet": ("ncnn", timing), "lite_hrnet_18": ("ncnn", timing)}, 2)
    assert "ratio 1.23 (median of per-round ratios" in sentence
    sentence = fastest_sentence([csw, lh], {"lite_csw_hrnet": ("ncnn", timing), "lite_hrnet_18": ("openvino", timing)},
                                2)
    assert "ratio 1.00 (ratio of medians taken in different rounds" in sentence


def test_cuda_engines_are_noted_without_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert engines.engine_missing("cuda_eager") == "no CUDA device"
    usable, notes = engines.available_engines(("eager", "cuda_compiled", "ort_cuda"))
    assert usable == ["eager"] and set(notes) == {"cuda_compiled", "ort_cuda"}


@pytest.mark.slow
def test_export_ncnn_through_the_cli_checks_parity(tmp_path, capsys):
    if engine_missing("ncnn"):
        pytest.skip(engine_missing("ncnn"))
    with pytest.raises(SystemExit) as stopped:
        main(["export", "small_hrnet_w16", "--format", "ncnn", "--size", "64x64", "--repeats", "2", "--threads", "1",
              "--output", str(tmp_path)])
    assert stopped.value.code == 0
    printed = capsys.readouterr().out
    assert (tmp_path / "small_hrnet_w16_64x64.ncnn.param").is_file()
    assert (tmp_path / "small_hrnet_w16_64x64.ncnn.bin").stat().st_size > 1_000_000
    difference = float(printed.split("max abs difference to PyTorch ")[1].split()[0])
    assert difference < 1e-4 and "ncnn (1 threads, batch 1" in printed
    assert not list(tmp_path.glob(".*tmp"))


def test_operator_groups_table_and_sentences():
    assert operator_group("FusedConv") == operator_group("aten::convolution") == operator_group("Convolution") \
        == "convolution"
    assert operator_group("ReduceMean") == operator_group("aten::amax") == "reduction"
    assert operator_group("ReorderInput") == operator_group("Reorder") == "layout/copy"
    assert operator_group("aten::mul") == operator_group("Eltwise") == "multiply/add"
    shares = [OperatorShare("a", "onnxruntime", "convolution", 1000.0, 10),
              OperatorShare("a", "onnxruntime", "reduction", 3000.0, 20),
              OperatorShare("b", "onnxruntime", "convolution", 2000.0, 10),
              OperatorShare("b", "onnxruntime", "reduction", 500.0, 5)]
    header, rows = breakdown_table(shares, ["a", "b"])
    assert header == ["operator group", "onnxruntime a ms (%)", "onnxruntime b ms (%)"]
    assert rows[0] == ["convolution", "1.00 (25%)", "2.00 (80%)"] and rows[-1] == ["total", "4.00", "2.50"]
    first, second = breakdown_sentences(shares, "a", "b")
    assert "75% of a's time against 20% of b's on onnxruntime" in first
    assert "+2.50 ms in them (most in reduction, +2.50 ms) and -1.00 ms in convolutions on onnxruntime" in second


def test_the_panel_says_when_a_report_lacks_latency():
    from workbench.app.complexity_panel import latency_note

    counted = pd.DataFrame({"model": ["a"], "parameters": [1]})
    assert "holds no latency" in latency_note(counted) and "--counts-only" in latency_note(counted)
    timed = counted.assign(**{"latency ms (median, batch 1)": [3.0]})
    assert "Latency measured" in latency_note(timed)


def test_close_labels_are_placed_apart():
    from workbench.reports.complexity import _figure, place_labels

    figure = _figure(6, 4)
    axes = figure.subplots()
    axes.scatter([1.0, 1.01, 3.0], [1.0, 1.0, 2.0])
    axes.set_xlim(0, 4)
    axes.set_ylim(0, 3)
    place_labels(axes, [(1.0, 1.0, "Lite-HRNet-18"), (1.01, 1.0, "Lite CSW-HRNet"), (3.0, 2.0, "far")])
    figure.canvas.draw()
    boxes = [text.get_window_extent() for text in axes.texts]
    assert len(boxes) == 3 and not boxes[0].overlaps(boxes[1])


def test_fastest_paths_and_engine_table_ratios():
    from workbench.reports.complexity import engine_table, fastest_paths

    csw = ComplexityRow("lite_csw_hrnet", (256, 192), 1, 95, 1, 1, "B")
    lite = ComplexityRow("lite_hrnet_18", (256, 192), 1, 100, 1, 1, "B")
    for row, ms in ((csw, {"eager": 30.0, "onnxruntime": 12.0}), (lite, {"eager": 30.0, "onnxruntime": 10.0})):
        for engine, value in ms.items():
            row.engine_latency[(engine, 2)] = Timing(value, value, value, 3)
    assert {m: e for m, (e, _) in fastest_paths([csw, lite], 2).items()} == {"lite_csw_hrnet": "onnxruntime",
                                                                             "lite_hrnet_18": "onnxruntime"}
    header, lines = engine_table([csw, lite], 2)
    ort = next(line for line in lines if line[0] == "lite_csw_hrnet" and line[2] == "ONNX Runtime")
    assert ort[4] == "1.20" and ort[5] == "0.95"
