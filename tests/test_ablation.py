"""The ablation of the weighting functions (`workbench.evaluation.ablation`): groups, the hooks that record means and
replace outputs (and leave the network as it was), and a run on the shipped weights over a few fashion-pose val
crops, with the notebook's table and reading of it."""
from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from model import build_model, run_with_probes
from workbench.evaluation.ablation import HALF, MEAN, ablate, estimated_seconds, first_instances, recorded_means, \
    replaced_outputs, weighting_groups
from workbench.evaluation.metrics import evaluate_dataset
from workbench.evaluation.sets import dataset_of, evaluation_sets
from workbench.notebooks.inside_csw import ablation_frame, ablation_reading
from workbench.zoo.loader import load

CSW_WEIGHTS = "lite_csw_hrnet_256x192_fashion"


pytestmark = pytest.mark.usefixtures("one_thread")  # the shared fixture of conftest.py


def test_groups_cover_every_weight_map_once():
    csw, lite = build_model("lite_csw_hrnet"), build_model("lite_hrnet_18")
    for network, maps, functions in ((csw, 108, 54), (lite, 64, 64)):
        groups = weighting_groups(network)
        assert list(groups) == [f"stage {s} {f}-resolution" for s in (2, 3, 4) for f in ("cross", "single")]
        assert sorted(n for names in groups.values() for n in names) == sorted(set(
            n for names in groups.values() for n in names)) and sum(map(len, groups.values())) == maps
        assert len(weighting_groups(network, "function")) == functions
        assert list(weighting_groups(network, "all")) == ["all weighting functions"]
    assert weighting_groups(csw)["stage 4 cross-resolution"] == [
        f"stage4/module{m}/block0/cross/{kind}" for m in (0, 1) for kind in ("channel", "spatial")]
    assert len(weighting_groups(csw, "stage-kind")) == 12
    assert len(weighting_groups(csw, ["stage-function", "all"])) == 7
    assert weighting_groups(build_model("small_hrnet_w16")) == {}
    assert estimated_seconds(csw, 2.0, "function") == 2.0 * (1 + 54 * 2)
    with pytest.raises(ValueError, match="grouping must be one of"):
        weighting_groups(csw, "per-pixel")


def test_means_and_replacements_leave_the_network_as_it_was():
    torch.manual_seed(0)
    network = build_model("lite_csw_hrnet", input_size=(64, 64)).eval()
    for module in network.modules():  # weights at a trained scale (the initialisation's outputs are ~1e-19)
        if isinstance(module, (torch.nn.Conv1d, torch.nn.Conv2d)):
            torch.nn.init.kaiming_normal_(module.weight)
    images = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        before, maps = run_with_probes(network, images)
        names = list(maps)
        with recorded_means(network, names) as means:
            network(images[:2])
            network(images[2:])
        spatial = "stage2/module0/block0/branch0/single/spatial"
        assert means[spatial].shape == (1,) + maps[spatial].shape[1:]
        assert torch.allclose(means[spatial], maps[spatial].mean(0, keepdim=True), atol=1e-6)
        assert means["stage2/module0/block0/cross/channel"].shape[-2:] == (1, 1)  # as the module returns it
        # one image's own maps as its "dataset mean": nothing changes
        with recorded_means(network, names) as own:
            network(images[:1])
        with replaced_outputs(network, own):
            same = network(images[:1])
        assert torch.allclose(same, before[:1], rtol=1e-4, atol=1e-6 * float(before.abs().max()))
        with replaced_outputs(network, {spatial: 0.5}):
            halved, replaced_maps = run_with_probes(network, images)
        assert torch.equal(replaced_maps[spatial], torch.full_like(maps[spatial], 0.5))
        assert not torch.allclose(halved, before, rtol=1e-2, atol=0.0)
        assert torch.equal(network(images), before)  # every hook removed
    with pytest.raises(KeyError, match="no weight maps"):
        with replaced_outputs(network, {"stage9/module0/block0/cross/channel": 0.5}):
            pass


@pytest.fixture(scope="module")
def shipped(data_root):
    """The shipped Lite CSW-HRNet weights and the fashion-pose val crops."""
    network = load(None, CSW_WEIGHTS)
    dataset = dataset_of(evaluation_sets(["fashion-pose-val"], root=data_root)[0], (256, 192), ground_truth=True)
    return network, dataset


def test_ablation_on_the_shipped_weights(shipped):
    network, dataset = shipped
    crops = first_instances(dataset, 16)
    assert len(crops) == 16 and len(crops.images) == 16 and len(dataset) == 100  # the original is untouched
    run = ablate(network, crops, model=CSW_WEIGHTS, groups=["stage 4 cross-resolution"], rounds=200)
    assert [(item.group, item.mode, item.maps) for item in run.ablations] == [
        ("stage 4 cross-resolution", MEAN, 4), ("stage 4 cross-resolution", HALF, 4)]
    assert run.evaluations == 3 and run.crops == 16 and run.baseline_seconds > 0
    with torch.inference_mode():
        ap = evaluate_dataset(network, crops, flip=False)["AP"]  # the hooks are gone: the network is as shipped
    for item in run.ablations:
        assert item.ap_full == pytest.approx(ap) and item.images == 16 and item.rounds == 200
        assert item.drop == pytest.approx(item.ap_full - item.ap_replaced)
        assert item.low <= item.drop <= item.high and 0.0 <= item.drop_above_zero <= 1.0
    frame = ablation_frame([run])
    assert len(frame) == 2 and frame["AP drop [95% interval]"].str.match(r"[+-]\d\.\d{3} \[[+-]\d\.\d{3}, ").all()
    loaded = [SimpleNamespace(name=CSW_WEIGHTS, network=network)]
    text = ablation_reading([run], loaded, threads=1)
    assert "One evaluation of the 16 crops (no flip, batch 32, 1 thread) took" in text
    assert "Each of the 54 weighting functions on its own" in text
    assert f"{CSW_WEIGHTS}, each group replaced by its dataset mean" in text
    assert f"{run.ablations[0].drop:+.3f} [{run.ablations[0].low:+.3f}, {run.ablations[0].high:+.3f}]" in text
    other = dataclasses.replace(run, model="other", ablations=[dataclasses.replace(a, model="other")
                                                               for a in run.ablations])
    both = ablation_reading([run, other], loaded + [SimpleNamespace(name="other", network=network)], threads=2)
    lost = [int(item.low > 0) for item in run.ablations]  # dataset mean, then 0.5
    assert f"replaced by its dataset mean, a group costs AP (interval above zero) in {lost[0]} group" in both
    assert f"of 1 for {CSW_WEIGHTS}, {lost[0]} group" in both and f"replaced by 0.5, in {lost[1]} group" in both
    assert "batch 32, 2 threads" in both


def test_replacing_by_the_mean_of_one_crop_changes_nothing(shipped):
    network, dataset = shipped
    run = ablate(network, first_instances(dataset, 1), groupings="all", modes=[MEAN], rounds=20)
    (item,) = run.ablations
    assert item.maps == 108 and item.images == 1
    assert item.ap_replaced == pytest.approx(item.ap_full, abs=1e-9) and item.drop == pytest.approx(0.0, abs=1e-9)
    assert np.isclose(item.low, 0.0) and np.isclose(item.high, 0.0)
