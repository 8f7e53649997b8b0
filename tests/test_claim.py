"""The claim like for like (`workbench.interpret.claim`): hand-built weight maps with known statistics, the multiplier
the cross-resolution CSW block really applies, the matching of blocks between the families, the joint contrast, and
the readings the notebook prints from those numbers."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from model import build_model, record_weight_maps
from workbench.interpret import claim
from workbench.interpret.claim import (CROSS_MULTIPLIER, SINGLE_CHANNEL, SINGLE_SPATIAL, ClaimRecorder, ClaimSamples,
                                       bootstrap_weights, claim_samples, joint_cells, joint_contrast, like_for_like,
                                       map_statistics, multipliers)
from workbench.interpret.weight_stats_plots import block_frame, claim_figure, interval_frame
from workbench.notebooks.inside_csw import claim_pair, joints_reading, matched_reading

SE = "stage2/module0/block0/branch0/single/channel"


pytestmark = pytest.mark.usefixtures("one_thread")  # the shared fixture of conftest.py


def _sigmoid(z: np.ndarray) -> torch.Tensor:
    return torch.sigmoid(torch.as_tensor(z, dtype=torch.float64))


def _statistics(samples) -> dict[str, float]:
    return {name: float(values[0]) for name, values in map_statistics(samples, bootstrap_weights(samples.images, 0)).items()}


def _recorded(*batches: dict[str, torch.Tensor]) -> ClaimRecorder:
    recorder = ClaimRecorder()
    for maps in batches:
        recorder.add(maps)
    return recorder


def test_saturation_and_mean_of_a_hand_built_map():
    row = torch.tensor([0.01, 0.02, 0.03, 0.04, 0.049, 0.5, 0.5, 0.5, 0.96, 0.99], dtype=torch.float64)
    samples = _recorded({SE: row.repeat(4, 1)}).map_samples()[("stage2/module0/block0/branch0/single", SINGLE_CHANNEL)]
    found = _statistics(samples)
    assert samples.images == 4 and samples.entries == 10
    assert found["below 0.05"] == pytest.approx(0.5) and found["above 0.95"] == pytest.approx(0.2)
    assert found["saturated"] == pytest.approx(0.7) and found["mean weight"] == pytest.approx(float(row.mean()))
    assert found["across-image std (logit)"] == pytest.approx(0.0, abs=1e-9)  # the same map in every image
    assert found["share across images"] == pytest.approx(0.0, abs=1e-9)
    assert samples.histogram.sum() == 40


def test_spreads_across_and_within_images_are_measured_in_logit_space():
    # logit z[n, j] = a_n + b_j: across images the variance of a (N - 1 divisor), within one image that of b
    a = np.array([-1.0, 0.0, 1.0, 2.0, 0.5])
    b = np.array([-0.5, 0.5, -1.0, 1.0, 0.0, 0.0])
    z = a[:, None] + b[None, :]
    samples = _recorded({SE: _sigmoid(z[:2])}, {SE: _sigmoid(z[2:])}).map_samples()[
        ("stage2/module0/block0/branch0/single", SINGLE_CHANNEL)]
    found = _statistics(samples)
    across, within = a.var(ddof=1), b.var()
    assert found["across-image std (logit)"] == pytest.approx(np.sqrt(across), rel=1e-6)
    assert found["within-image std (logit)"] == pytest.approx(np.sqrt(within), rel=1e-6)
    assert found["share across images"] == pytest.approx(across / (across + within), rel=1e-6)
    # a map that moves as a whole with the image: everything across images
    whole = _statistics(_recorded({SE: _sigmoid(np.repeat(a[:, None], 6, axis=1))}).map_samples()[
        ("stage2/module0/block0/branch0/single", SINGLE_CHANNEL)])
    assert whole["within-image std (logit)"] == pytest.approx(0.0, abs=1e-9)
    assert whole["share across images"] == pytest.approx(1.0)


def test_saturated_weights_keep_their_spread_in_logit_space():
    # the same logit pattern shifted deep into the sigmoid's tail: tiny in weight space, identical in logit space
    z = np.array([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5]])
    middle = _statistics(_recorded({SE: _sigmoid(z)}).map_samples()[("stage2/module0/block0/branch0/single",
                                                                      SINGLE_CHANNEL)])
    tail = _statistics(_recorded({SE: _sigmoid(z + 6.0)}).map_samples()[("stage2/module0/block0/branch0/single",
                                                                         SINGLE_CHANNEL)])
    assert tail["above 0.95"] == pytest.approx(1.0)
    for statistic in ("across-image std (logit)", "within-image std (logit)", "share across images"):
        assert tail[statistic] == pytest.approx(middle[statistic], rel=1e-6)


def test_large_maps_use_a_fixed_subset_of_entries(monkeypatch):
    monkeypatch.setattr(claim, "MAX_ENTRIES", 8)
    a = np.array([0.0, 1.0, -1.0, 0.5])
    b = np.linspace(-1.0, 1.0, 64)
    samples = _recorded({SE: _sigmoid(a[:, None] + b[None, :])}).map_samples()[
        ("stage2/module0/block0/branch0/single", SINGLE_CHANNEL)]
    found = _statistics(samples)
    assert samples.entries == 64 and samples.gram.shape == (4, 4)
    assert found["across-image std (logit)"] == pytest.approx(a.std(ddof=1), rel=1e-6)  # every entry varies by a
    assert found["within-image std (logit)"] == pytest.approx(b.std(), rel=1e-6)  # over all 64 entries


def test_bootstrap_weights():
    weights = bootstrap_weights(5, 200, seed=3)
    assert weights.shape == (201, 5) and np.allclose(weights.sum(1), 1.0) and np.allclose(weights[0], 0.2)
    assert np.allclose(weights[1:] * 5, np.round(weights[1:] * 5))  # counts of draws
    assert np.array_equal(weights, bootstrap_weights(5, 200, seed=3))


def test_the_cross_multiplier_is_what_the_csw_block_applies():
    torch.manual_seed(0)
    network = build_model("lite_csw_hrnet").eval()
    block = network.backbone.stage1[0].layers[0].cross_resolution_weighting  # the paper's stage 3
    xs = [torch.rand(2, c, 32 // 2 ** i, 24 // 2 ** i) + 0.1 for i, c in enumerate(block.channels)]
    with torch.no_grad(), record_weight_maps(network) as maps:
        outputs = block(xs)
    found = multipliers(maps)[("stage3/module0/block0/cross", CROSS_MULTIPLIER)]
    applied = (outputs[-1] / xs[-1]).flatten(1)  # the smallest branch is multiplied at the map's own size
    product = found.reshape(2, sum(block.channels), 8, 6)[:, -block.channels[-1]:].flatten(1)
    assert torch.allclose(product, applied, atol=1e-6)
    profile = claim.spatial_profiles(maps)[("stage3/module0/block0/cross", CROSS_MULTIPLIER)]
    assert torch.allclose(profile, found.reshape(2, -1, 8, 6).mean(1), atol=1e-6)


def test_lite_hrnet_maps_are_compared_as_computed():
    maps = {"stage2/module0/block0/cross/weights": torch.rand(3, 6, 4, 2), SE: torch.rand(3, 5)}
    found = multipliers(maps)
    assert set(found) == {("stage2/module0/block0/cross", CROSS_MULTIPLIER),
                          ("stage2/module0/block0/branch0/single", SINGLE_CHANNEL)}
    assert torch.equal(found[("stage2/module0/block0/cross", CROSS_MULTIPLIER)], maps[
        "stage2/module0/block0/cross/weights"].flatten(1))


def _csw_maps(n: int, z_channel: np.ndarray, z_spatial: np.ndarray) -> dict[str, torch.Tensor]:
    """A two-block CSW-like set: stage 2 single (M_c, M_s) and cross (M_c, M_s), stage 4 block 0 single M_c."""
    return {"stage2/module0/block0/cross/channel": _sigmoid(z_channel[:, :4]).float(),
            "stage2/module0/block0/cross/spatial": _sigmoid(z_spatial).float(),
            "stage2/module0/block0/branch0/single/channel": _sigmoid(z_channel).float(),
            "stage2/module0/block0/branch0/single/spatial": _sigmoid(z_spatial).float(),
            "stage4/module0/block0/branch0/single/channel": _sigmoid(z_channel).float()}


def _lite_maps(z_cross: np.ndarray, z_channel: np.ndarray) -> dict[str, torch.Tensor]:
    """Lite-HRNet-like: stage 2 cross weights and SE, stage 4 blocks 0 and 1 SE."""
    return {"stage2/module0/block0/cross/weights": _sigmoid(z_cross).float(),
            "stage2/module0/block0/branch0/single/channel": _sigmoid(z_channel).float(),
            "stage4/module0/block0/branch0/single/channel": _sigmoid(z_channel).float(),
            "stage4/module0/block1/branch0/single/channel": _sigmoid(z_channel).float()}


def _samples(maps: dict[str, torch.Tensor], joints=None, visible=None) -> ClaimSamples:
    recorder = ClaimRecorder()
    recorder.add(maps, joints, visible, (64, 48) if joints is not None else None)
    n = next(iter(maps.values())).shape[0]
    return ClaimSamples(recorder.map_samples(), recorder.joint_samples(), list(range(n)))


@pytest.fixture(scope="module")
def pair() -> dict[str, ClaimSamples]:
    """CSW whose weights follow the image and never saturate; Lite-HRNet whose weights are saturated constants."""
    generator = np.random.default_rng(0)
    n = 12
    csw = _csw_maps(n, generator.normal(0, 1, (n, 8)), generator.normal(0, 1, (n, 1, 8, 6)))
    lite = _lite_maps(np.tile(np.linspace(-6, 6, 4 * 8 * 6).reshape(1, 4, 8, 6), (n, 1, 1, 1)),
                      np.tile(np.linspace(-6, 6, 8), (n, 1)))
    return {"lite_csw_hrnet": _samples(csw), "lite_hrnet_18": _samples(lite)}


def test_only_matched_blocks_are_compared(pair):
    table = like_for_like(pair["lite_csw_hrnet"], pair["lite_hrnet_18"], level="block", rounds=50)
    blocks = table.drop_duplicates(["location", "kind"])
    assert set(zip(blocks["location"], blocks["kind"])) == {
        ("stage2/module0/block0/cross", CROSS_MULTIPLIER), ("stage2/module0/block0/branch0/single", SINGLE_CHANNEL),
        ("stage4/module0/block0/branch0/single", SINGLE_CHANNEL),
        ("stage2/module0/block0/branch0/single", SINGLE_SPATIAL)}  # not Lite-HRNet's stage 4 block 1
    spatial = table[table["kind"] == SINGLE_SPATIAL]
    assert spatial["lite_hrnet_18"].isna().all() and spatial["lite_csw_hrnet"].notna().all()
    kinds = like_for_like(pair["lite_csw_hrnet"], pair["lite_hrnet_18"], rounds=50)
    assert kinds.drop_duplicates("kind").set_index("kind")["maps"].to_dict() == {
        SINGLE_CHANNEL: 2, CROSS_MULTIPLIER: 1, SINGLE_SPATIAL: 1}


def test_intervals_bracket_the_values_and_pair_the_models(pair):
    table = like_for_like(pair["lite_csw_hrnet"], pair["lite_hrnet_18"], level="stage", rounds=200)
    matched = table.dropna(subset=["difference"])
    for name in ("lite_csw_hrnet", "lite_hrnet_18", "difference"):
        assert (matched[f"{name} low"] <= matched[name] + 1e-6).all()
        assert (matched[name] <= matched[f"{name} high"] + 1e-6).all()
    same = like_for_like(pair["lite_csw_hrnet"], pair["lite_csw_hrnet"], names=("a", "b"), rounds=100)
    assert np.allclose(same["difference"], 0) and np.allclose(same[["difference low", "difference high"]], 0)
    # constant Lite-HRNet weights: no spread across images in any resample
    lite = table[(table["statistic"] == "across-image std (logit)") & table["lite_hrnet_18"].notna()]
    assert np.allclose(lite[["lite_hrnet_18", "lite_hrnet_18 low", "lite_hrnet_18 high"]], 0, atol=1e-6)
    with pytest.raises(ValueError, match="different crops"):
        like_for_like(pair["lite_csw_hrnet"], ClaimSamples(pair["lite_hrnet_18"].maps, {}, list(range(1, 13))))


def test_joint_cells_and_contrast():
    crop, size = (64, 48), (8, 6)  # 8 x 8 pixels a cell
    joints = np.array([[4.0, 4.0], [20.0, 36.0], [44.0, 60.0], [30.0, 30.0], [50.0, 10.0]])
    visible = np.array([True, True, True, False, True])  # one unlabelled, one outside the crop (x = 50 >= 48)
    rows, columns = joint_cells(joints, visible, crop, size)
    assert rows.tolist() == [0, 4, 7] and columns.tolist() == [0, 2, 5]
    spatial = np.full((2, 1) + size, 0.3)
    spatial[:, 0, rows, columns] = 0.9
    maps = {"stage2/module0/block0/branch0/single/spatial": torch.tensor(spatial),
            "stage2/module0/block0/branch0/single/channel": torch.full((2, 4), 0.5, dtype=torch.float64)}
    samples = _samples(maps, np.stack([joints, joints]), np.stack([visible, visible]))
    table = joint_contrast(samples, names=("csw",), rounds=20).set_index("statistic")
    assert table.loc["at the joints", "csw"] == pytest.approx(0.9)
    assert table.loc["elsewhere", "csw"] == pytest.approx(0.3)
    assert table.loc["ratio", "csw"] == pytest.approx(3.0)
    none = _samples(maps, np.stack([joints, joints]), np.zeros((2, 5), dtype=bool))
    assert np.isnan(joint_contrast(none, names=("csw",), rounds=5).set_index("statistic").loc["ratio", "csw"])


def test_claim_samples_run_a_network_over_dataset_batches():
    torch.manual_seed(0)
    network = build_model("lite_hrnet_18", input_size=(64, 64)).eval()
    batch = {"image": torch.randn(3, 3, 64, 64), "joints": torch.rand(3, 17, 2) * 64, "index": torch.arange(3),
             "visible": torch.ones(3, 17, dtype=torch.bool), "valid": torch.tensor([True, False, True])}
    samples = claim_samples(network, [batch])
    assert samples.indices == [0, 2] and samples.images == 2
    assert {kind for _, kind in samples.maps} == {SINGLE_CHANNEL, CROSS_MULTIPLIER}
    assert len(samples.maps) == 64 and len(samples.joints) == 16  # SE weights have no spatial extent
    assert all(value.images == 2 for value in samples.maps.values())


def _table_of(first_z, second_z, rounds=200) -> pd.DataFrame:
    return like_for_like(_samples({SE: _sigmoid(first_z)}), _samples({SE: _sigmoid(second_z)}), rounds=rounds)


def test_matched_reading_follows_the_numbers(pair):
    table = like_for_like(pair["lite_csw_hrnet"], pair["lite_hrnet_18"], rounds=200)
    text = matched_reading(table, "val", rounds=200)
    assert "**Measured over val** (12 crops" in text and "below 0.05 or above 0.95" in text
    assert "lite_csw_hrnet's weights saturate less than lite_hrnet_18's; lite_csw_hrnet's share across images is " \
           "higher." in text
    assert "Of the 4 like-for-like comparisons above" in text and "4 go the way the claim predicts, 0 go the other " \
                                                               "way, and 0 cannot be told apart" in text
    assert "lite_csw_hrnet alone" in text  # CSW's single-resolution M_s
    reverse = like_for_like(pair["lite_hrnet_18"], pair["lite_csw_hrnet"], names=("lite_hrnet_18", "lite_csw_hrnet"),
                            rounds=200)
    assert "0 go the way the claim predicts, 4 go the other way" in matched_reading(reverse, "val", rounds=200)
    generator = np.random.default_rng(1)
    same = generator.normal(0, 1, (10, 8))
    alike = matched_reading(_table_of(same, same.copy()), "val")
    assert "saturate alike (the difference's interval holds 0); their shares across images cannot be told apart" \
        in alike and "0 go the way the claim predicts, 0 go the other way, and 2 cannot be told apart" in alike
    assert claim_pair(pair) == ["lite_csw_hrnet", "lite_hrnet_18"]
    assert claim_pair({"lite_hrnet_18": pair["lite_hrnet_18"], "lite_csw_hrnet": pair["lite_csw_hrnet"]}) == [
        "lite_csw_hrnet", "lite_hrnet_18"]


def test_joints_reading_follows_the_numbers():
    crop_joints = np.array([[4.0, 4.0], [20.0, 36.0]])
    n = 4
    high = np.full((n, 1, 8, 6), 0.3)
    high[:, 0, [0, 4], [0, 2]] = 0.9
    csw = {"stage2/module0/block0/cross/channel": torch.full((n, 4), 0.5, dtype=torch.float64),
           "stage2/module0/block0/cross/spatial": torch.tensor(high)}
    lite = {"stage2/module0/block0/cross/weights": torch.full((n, 4, 8, 6), 0.5, dtype=torch.float64)}
    joints, visible = np.tile(crop_joints, (n, 1, 1)), np.ones((n, 2), dtype=bool)
    table = joint_contrast(_samples(csw, joints, visible), _samples(lite, joints, visible), rounds=50)
    text = joints_reading(table, "val")
    assert "3.000 [3.000, 3.000] for lite_csw_hrnet, 1.000 [1.000, 1.000] for lite_hrnet_18" in text
    assert "lite_csw_hrnet's favour the joints more than lite_hrnet_18's" in text


def test_tables_and_figure_for_reading(pair):
    names = ["lite_csw_hrnet", "lite_hrnet_18"]
    table = like_for_like(pair["lite_csw_hrnet"], pair["lite_hrnet_18"], level="stage", rounds=50)
    shown = interval_frame(table, names)
    assert list(shown.columns) == ["weights", "stage", "maps", "statistic", *names, "lite_csw_hrnet - lite_hrnet_18"]
    saturated = shown[(shown["statistic"] == "saturated") & (shown["stage"] == "2")]
    assert saturated["lite_hrnet_18"].tolist()[-1] == "-"  # CSW's M_s has no counterpart
    assert saturated["lite_hrnet_18"].iloc[:-1].str.endswith("]").all() and "%" in saturated["lite_hrnet_18"].iloc[0]
    blocks = block_frame(like_for_like(pair["lite_csw_hrnet"], pair["lite_hrnet_18"], level="block", rounds=20), names)
    assert len(blocks) == 4 and "saturated · difference" in blocks.columns
    contrast = joint_contrast(pair["lite_csw_hrnet"], pair["lite_hrnet_18"], level="stage", rounds=20)
    figure = claim_figure(table, contrast, {name: claim.pooled_histograms(pair[name]) for name in names}, names, "t")
    assert len(figure.get_axes()) == 6
