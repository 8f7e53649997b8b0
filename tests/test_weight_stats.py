"""Weight-map statistics: shapes of the output, and the numbers against a direct computation."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from model import build_model, run_with_probes
from workbench.interpret.weight_stats import BINS, pooled_histogram, summary_rows, weight_statistics


pytestmark = pytest.mark.usefixtures("one_thread")  # the shared fixture of conftest.py


@pytest.fixture(scope="module")
def csw():
    torch.manual_seed(0)
    network = build_model("lite_csw_hrnet").eval()
    for module in network.modules():
        if isinstance(module, (torch.nn.Conv1d, torch.nn.Conv2d)):
            torch.nn.init.kaiming_normal_(module.weight)
    return network


def test_statistics_match_a_direct_computation(csw):
    torch.manual_seed(1)
    batches = [torch.randn(2, 3, 64, 64), torch.randn(3, 3, 64, 64)]
    stats = {s.name: s for s in weight_statistics(csw, batches)}
    assert len(stats) == 108
    name = "stage3/module2/block1/cross/channel"
    maps = torch.cat([run_with_probes(csw, b)[1][name] for b in batches]).double()
    s = stats[name]
    assert s.images == 5 and (s.stage, s.function, s.kind) == (3, "cross", "channel")
    assert s.mean == pytest.approx(float(maps.mean()))
    assert s.near_0 == pytest.approx(float((maps < 0.05).double().mean()))
    assert s.near_1 == pytest.approx(float((maps > 0.95).double().mean()))
    assert s.within_image_std == pytest.approx(float(maps.std(1, correction=0).mean()))
    assert s.across_image_std == pytest.approx(float(maps.std(0, correction=0).mean()))
    assert s.histogram.sum() == maps.numel() and s.histogram.shape == (BINS,)
    assert s.near_0 + s.near_1 > 0, "activations at a trained scale saturate some weights"


def test_summary_rows_and_histograms(csw):
    stats = weight_statistics(csw, [torch.randn(2, 3, 64, 64)])
    rows = summary_rows(stats, "lite_csw_hrnet")
    assert {(r["stage"], r["function"], r["kind"]) for r in rows} == {
        (stage, function, kind) for stage in (2, 3, 4) for function in ("cross", "single") for kind in ("channel", "spatial")
    }
    assert sum(r["maps"] for r in rows) == 108
    histogram = pooled_histogram(stats, "single", "spatial")
    assert histogram.shape == (BINS,) and np.isclose(histogram.sum(), 1.0)
    assert pooled_histogram(stats, "cross", "weights").sum() == 0


def test_lite_hrnet_and_models_without_weighting():
    stats = weight_statistics(build_model("lite_hrnet_18"), [torch.randn(1, 3, 64, 64)])
    assert {s.kind for s in stats} == {"weights", "channel"} and len(stats) == 64
    assert weight_statistics(build_model("small_hrnet_w16"), [torch.randn(1, 3, 64, 64)]) == []
