"""The FLOP counters on small networks whose counts are computed by hand, the published figures, the timing helpers
and the `python -m workbench complexity` command's files."""
from __future__ import annotations

import csv
import importlib.metadata
import json

import pytest
import torch
import torch.nn.functional as F
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import nn

from model import build_model, model_names
from workbench.cli import main
from workbench.speed.complexity import ComplexityRow, convention_a_flops, convention_b_flops, count_parameters, \
    fvcore_flops
from workbench.reports.complexity import flops_ap_figure, latency_flops_figure, load_measured_ap
from workbench.common.errors import WorkbenchError
from workbench.common.paths import REPO_ROOT
from workbench.speed.latency import Timing, interleaved_seconds, paired_ratio, peak_memory_bytes, time_interleaved
from workbench.speed.published import FIGURES_FILE, M, published_row, published_rows


def small_net() -> nn.Module:
    """(1, 3, 8, 8) -> conv 3x3 3->4 (no bias) -> BN -> ReLU -> max-pool 2 -> conv 1x1 4->2 (bias)."""
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Conv2d(4, 2, 1))


def test_counters_on_a_hand_computed_network():
    net = small_net()
    conv1, conv2 = 4 * 3 * 9 * 64, 2 * 4 * 16  # multiply-adds: weights x output area
    assert count_parameters(net) == 108 + 8 + 8 + 2
    assert fvcore_flops(net, (8, 8)) == conv1 + 2 * 4 * 64 + conv2  # BN counts 2 per element
    assert convention_a_flops(net, (8, 8)) == conv1 + conv2
    # B: + BN 2/element, ReLU 1/element, max-pool 1/input element, conv bias 1/output
    assert convention_b_flops(net, (8, 8)) == conv1 + 512 + 256 + 256 + conv2 + 2 * 16


class TwiceAndPooled(nn.Module):
    """The same 1x1 conv 3->3 run twice, then a fixed-kernel average pool and a nearest upsample."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1, bias=False)
        self.up = nn.Upsample(scale_factor=2.0, mode="nearest")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(F.avg_pool2d(self.conv(self.conv(x)), 2))


def test_module_run_twice_counts_once_only_in_convention_b_and_avg_pool_handle():
    net = TwiceAndPooled()
    per_call = 9 * 16  # 3x3 weights x 4x4 output
    pool, upsample_elements, upsample_pixels = 3 * 16, 3 * 16, 16
    assert convention_a_flops(net, (4, 4)) == 2 * per_call
    assert convention_b_flops(net, (4, 4)) == per_call + pool + upsample_pixels
    assert fvcore_flops(net, (4, 4)) == 2 * per_call + pool + upsample_elements
    assert fvcore_flops(net, (4, 4), count_avg_pool=False) == 2 * per_call + upsample_elements


def test_transposed_conv_and_linear_conventions():
    deconv = nn.ConvTranspose2d(3, 2, 4, 2, 1, bias=False)  # 4x4 -> 8x8, 96 weights
    assert convention_a_flops(deconv, (4, 4)) == 96 * 64  # at its output resolution (4x the real work)
    assert convention_b_flops(deconv, (4, 4)) == 96 * 16  # at its input resolution
    assert fvcore_flops(deconv, (4, 4)) == 96 * 16
    linear = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 10))
    assert convention_a_flops(linear, (4, 4)) == convention_b_flops(linear, (4, 4)) == 480


def test_lite_hrnet_18_matches_the_official_figures():
    net = build_model("lite_hrnet_18")
    assert count_parameters(net) == 1_130_769
    assert round(fvcore_flops(net, (256, 192)) / 1e9, 4) == 0.2663
    assert round(convention_b_flops(net, (256, 192)) / M, 1) == 205.2


def test_mobilenetv2_recount_is_within_two_percent_of_table_rows():
    net = build_model("mobilenetv2")
    row = published_row("mobilenetv2", (256, 192))
    assert row.convention == "B"
    assert convention_b_flops(net, (256, 192)) == pytest.approx(row.reference_recomputed_ops(), rel=0.02)


def test_published_figures_name_their_sources_and_zoo_models():
    rows = published_rows()
    zoo = set(model_names())
    assert {r.model for r in rows if r.in_zoo} == zoo
    for row in rows:
        assert row.convention in ("A", "B")
        assert all(p.source in row.sources for p in row.paper)
        assert row.reference is None or row.reference["source"] in row.sources
    lite = published_row("lite_hrnet_18", (256, 192))
    assert lite.reference["params"] == 1_130_769 and lite.reference_recomputed_ops() == pytest.approx(205.2 * M)
    assert published_row("lite_csw_hrnet", (384, 288)).paper_row("seed_table2").ap == 67.2
    cited = " ".join(rows[0].sources.values()) + FIGURES_FILE.read_text()
    assert "reference/" not in cited and "github.com/HRNet/Lite-HRNet" in cited  # sources a reader can open


def test_interleaved_timing_and_peak_memory():
    calls = {"a": lambda: sum(range(1000)), "b": lambda: sum(range(2000))}
    timings = time_interleaved(calls, repeats=4, warmup=1)
    for timing in timings.values():
        assert isinstance(timing, Timing) and timing.runs == 4
        assert timing.min_ms <= timing.median_ms <= timing.max_ms
    assert paired_ratio([2.0, 4.0, 6.0], [1.0, 2.0, 3.0]) == 2.0
    counts = {"a": 0, "b": 0}

    def counted(name: str):
        return lambda: counts.__setitem__(name, counts[name] + 1)

    seconds = interleaved_seconds({"a": counted("a"), "b": counted("b")}, repeats=3, warmup=2, settle=1, block=2)
    assert [len(v) for v in seconds.values()] == [3, 3] and counts == {"a": 2 + 3 * 3, "b": 2 + 3 * 3}
    assert peak_memory_bytes(lambda: torch.ones(1_000_000)) >= 4_000_000


def test_measured_ap_is_read_from_evaluation_metrics(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"AP": 0.5, "settings": {"model": "small_hrnet_w16", "input_size": [64, 64],
                                                        "annotations": "/data/person_keypoints_val.json"}}))
    (found,) = load_measured_ap([str(path)])
    assert (found.model, found.input_size, found.ap, found.source) == ("small_hrnet_w16", (64, 64), 50.0,
                                                                        "person_keypoints_val")
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(WorkbenchError, match="metrics.json"):
        load_measured_ap([str(tmp_path / "bad.json")])


def run_cli(*args: str) -> int:
    with pytest.raises(SystemExit) as stopped:
        main(list(args))
    return stopped.value.code


def test_complexity_command_writes_report_csv_and_plots(tmp_path, capsys):
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"AP": 0.25, "settings": {"model": "small_hrnet_w16", "input_size": [64, 64]}}))
    out = tmp_path / "report"
    code = run_cli("complexity", "--models", "small_hrnet_w16", "--sizes", "64x64", "--quick", "--metrics",
                   str(metrics), "--output", str(out))
    assert code == 0
    with open(out / "complexity.csv") as handle:
        (record,) = list(csv.DictReader(handle))
    assert record["model"] == "small_hrnet_w16" and int(record["parameters"]) == 1_284_961
    assert float(record["fast max abs diff"]) < 1e-4 and float(record["onnxruntime max abs diff"]) < 1e-4
    assert float(record["latency ms (median, batch 1)"]) > 0 and record["measured AP"].startswith("25.0")
    for engine in ("eager", "compiled", "onnxruntime", "openvino", "ncnn"):  # every engine: timed, or noted
        timed = record.get(f"{engine} ms (2 threads, median)")
        assert (timed and float(timed) > 0) or record.get(f"{engine} note"), engine
        if timed and engine != "eager":
            assert float(record[f"{engine} max abs diff"] if engine != "onnxruntime"
                         else record["onnxruntime max abs diff"]) < 1e-4
    text = (out / "complexity.md").read_text()
    assert "## Latency per engine (CPU, batch 1, 2 threads)" in text and "logical CPUs" in text
    assert "| small_hrnet_w16 | 64x64 | 1,284,961 |" in text and "Latency, memory and throughput" in text
    fvcore = importlib.metadata.version("fvcore")
    assert f"fvcore {fvcore}." in text and f"fvcore {fvcore}'s FlopCountAnalysis" in text and "reference/" not in text
    for plot in ("complexity_flops_ap.png", "complexity_latency_flops.png"):
        assert (out / plot).read_bytes()[:4] == b"\x89PNG"
    assert not list(out.glob(".*tmp*"))


def test_complexity_figures_use_the_object_api_outside_pyplot():
    import matplotlib.pyplot as plt

    open_before = plt.get_fignums()
    row = ComplexityRow("small_hrnet_w16", (256, 192), 1, 10**9, 10**9, 10**9, "B")
    row.latency["eager"] = Timing(5.0, 4.0, 6.0, 3)
    for figure in (flops_ap_figure([row], []), latency_flops_figure([row])):
        assert isinstance(figure, Figure) and isinstance(figure.canvas, FigureCanvasAgg)
        figure.canvas.draw()
    assert plt.get_fignums() == open_before  # nothing joined pyplot's global registry
    for module in ("workbench/reports/complexity.py", "workbench/app/complexity_panel.py"):
        assert "import matplotlib.pyplot" not in (REPO_ROOT / module).read_text()
        assert "from matplotlib import pyplot" not in (REPO_ROOT / module).read_text()


def test_complexity_command_explains_bad_options(tmp_path, capsys):
    assert run_cli("complexity", "--models", "nosuch", "--output", str(tmp_path)) == 2
    assert "unknown model(s) nosuch" in capsys.readouterr().err
    assert run_cli("complexity", "--sizes", "100x100", "--counts-only", "--output", str(tmp_path)) == 2
    assert "multiples of 32" in capsys.readouterr().err
    assert not (tmp_path / "complexity.csv").exists()


def test_large_gaps_to_printed_figures_come_with_their_explanations():
    from workbench.speed.published import G, gap_explanations

    found = gap_explanations({("lite_hrnet_18", (256, 192)): convention_b_flops(build_model("lite_hrnet_18"), (256, 192)),
                              ("small_hrnet_w16", (256, 192)): 0.539 * G, ("hrnet_w32", (256, 192)): 7.12 * G})
    assert len(found) == 2
    assert "Lite-HRNet-18 at 256x192: -28.4%" in found[0] and "205.2M (M = 2^20" in found[0]
    assert "Small HRNet (W16) at 256x192: +58.5%" in found[1] and "the seed paper prints 0.34" in found[1]
