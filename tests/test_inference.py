"""Flip test, heatmap decoding, back-projection, rescoring, OKS NMS, the single-image API and model loading."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from model import build_model, local_to_official_keys, run_with_probes
from workbench.zoo.checkpoints import load_state_dict
from workbench.zoo.loader import OnnxModel, load
from workbench.codec import combine_flip, decode_heatmaps, encode_heatmaps, flip_back, heatmap_to_image
from workbench.data.transforms import box_to_center_size, crop_matrix, hflip_matrix, transform_points
from workbench.common.errors import WorkbenchError
from workbench.inference import estimate_pose, oks_nms, predict_heatmaps, rescore
from workbench.data.keypoints import FLIP_INDEX


def _render(joints: np.ndarray, encoding: str = "standard") -> torch.Tensor:
    heatmaps, _ = encode_heatmaps(joints, np.ones(len(joints), bool), (64, 48), 2.0, encoding)
    return torch.from_numpy(heatmaps)[None]


def test_flip_back_mirrors_swaps_and_shifts_one_column():
    heatmaps = torch.zeros(1, 17, 64, 48)
    heatmaps[0, 1, 10, 5] = 1.0  # left eye at column 5
    back = flip_back(heatmaps, FLIP_INDEX)
    assert back[0, 2].nonzero().tolist() == [[10, 48 - 1 - 5 + 1]]  # right eye, mirrored, one column right
    assert flip_back(heatmaps, FLIP_INDEX, shift=False)[0, 2].nonzero().tolist() == [[10, 42]]


def test_flip_test_of_a_perfect_network_lands_within_the_documented_bias():
    joints = np.random.default_rng(0).uniform([6, 6], [42, 58], size=(17, 2)) * 4  # crop pixels, off the border
    mirrored = transform_points(joints, hflip_matrix(192))[list(FLIP_INDEX)]
    combined = combine_flip(_render(joints / 4, "unbiased"), _render(mirrored / 4, "unbiased"), FLIP_INDEX)
    coords, _ = decode_heatmaps(combined.numpy(), "dark")
    bias = coords[0] - joints / 4
    np.testing.assert_allclose(bias[:, 0], 0.125, atol=0.06)  # 1/8 heatmap pixel to the right (see flip_back)
    np.testing.assert_allclose(bias[:, 1], 0.0, atol=0.05)


def test_standard_decoding_moves_a_quarter_pixel_towards_the_higher_neighbour():
    heatmaps = np.zeros((1, 2, 64, 48), np.float32)
    heatmaps[0, 0, 20, 10], heatmaps[0, 0, 20, 11], heatmaps[0, 0, 19, 10] = 1.0, 0.5, 0.2
    heatmaps[0, 1, 0, 0] = 0.7  # a border peak is not moved
    coords, scores = decode_heatmaps(heatmaps)
    np.testing.assert_allclose(coords[0], [[10.25, 19.75], [0.0, 0.0]])
    np.testing.assert_allclose(scores[0], [1.0, 0.7])


def test_dark_decoding_recovers_sub_pixel_positions():
    joints = np.random.default_rng(1).uniform([6, 6], [42, 58], size=(17, 2))  # clear of the border
    coords, scores = decode_heatmaps(_render(joints, "unbiased").numpy(), "dark")
    np.testing.assert_allclose(coords[0], joints, atol=0.03)
    standard, _ = decode_heatmaps(_render(joints, "unbiased").numpy(), "standard")
    assert np.abs(standard[0] - joints).mean() > 3 * np.abs(coords[0] - joints).mean()
    with pytest.raises(WorkbenchError, match="unknown decoder"):
        decode_heatmaps(np.zeros((1, 1, 4, 4)), "magic")


def test_heatmap_points_map_back_through_the_inverse_crop():
    center, size = box_to_center_size((100, 50, 60, 120), 0.75)
    matrix = crop_matrix(center, size, (256, 192), rotation=20.0)
    image_points = np.array([[110.0, 60.0], [150.0, 160.0]])
    heatmap_points = transform_points(image_points, matrix) / 4
    np.testing.assert_allclose(heatmap_to_image(heatmap_points[None], matrix[None])[0], image_points, atol=1e-9)


def test_rescore_multiplies_the_box_score_by_the_mean_confident_joint_score():
    joint_scores = np.array([[0.9, 0.5, 0.1, 0.0], [0.1, 0.1, 0.1, 0.1]])
    np.testing.assert_allclose(rescore(np.array([0.5, 1.0]), joint_scores, 0.2), [0.5 * 0.7, 0.0])


def test_oks_nms_drops_near_duplicates_and_keeps_distinct_people():
    rng = np.random.default_rng(2)
    person = rng.uniform(100, 200, size=(17, 2))
    poses = np.stack([person, person + 0.5, person + 80.0])
    keep = oks_nms(poses, np.array([0.8, 0.9, 0.7]), np.full(3, 100.0 * 100.0), threshold=0.9)
    assert keep.tolist() == [1, 2]
    assert oks_nms(poses, np.array([0.8, 0.9, 0.7]), np.full(3, 1e4), threshold=1.0).tolist() == [1, 0, 2]
    assert oks_nms(np.zeros((0, 17, 2)), np.zeros(0), np.zeros(0)).tolist() == []


def test_predict_heatmaps_averages_with_the_flipped_back_mirror(stand_in_model):
    model = stand_in_model
    images = torch.randn(2, 3, 256, 192)
    with torch.no_grad():
        expected = (model(images) + flip_back(model(images.flip(3)), FLIP_INDEX)) / 2
    assert torch.allclose(predict_heatmaps(model, images, flip=True), expected)
    assert predict_heatmaps(model, images, flip=False).shape == (2, 17, 64, 48)


def _count_forward_calls(model: torch.nn.Module) -> list[torch.Tensor]:
    """Register a forward pre-hook on `model` that records each call's input; returns the (growing) record. The hook
    stays until the caller clears it."""
    calls: list[torch.Tensor] = []
    model.register_forward_pre_hook(lambda _module, inputs: calls.append(inputs[0].clone()))
    return calls


def test_predict_heatmaps_reads_the_weight_maps_of_the_unflipped_pass_without_another():
    torch.manual_seed(0)
    network = build_model("lite_csw_hrnet").eval()
    with torch.no_grad():  # away from the initialisation, whose weight maps are all 0.5
        for parameter in network.parameters():
            parameter.add_(0.2 * torch.randn_like(parameter))
    images = torch.randn(1, 3, 96, 64)
    with torch.inference_mode():
        plain, expected = run_with_probes(network, images)
        plain_mirrored, mirrored = run_with_probes(network, images.flip(3))
    for flip in (True, False):
        calls = _count_forward_calls(network)
        heatmaps, maps = predict_heatmaps(network, images, flip, weight_maps=True)
        network._forward_pre_hooks.clear()
        assert len(calls) == (2 if flip else 1) and torch.equal(calls[0], images)
        assert torch.equal(heatmaps, combine_flip(plain, plain_mirrored, FLIP_INDEX) if flip else plain)
        assert list(maps) == list(expected) and len(maps) == 108
        for name, value in expected.items():
            assert maps[name].device.type == "cpu" and torch.equal(maps[name], value.float()), name
        assert not torch.allclose(maps["stage4/module1/block0/branch0/single/spatial"],
                                  mirrored["stage4/module1/block0/branch0/single/spatial"])  # the unflipped pass's
        assert not any(m._forward_hooks for m in network.modules())


def test_models_without_weight_maps_give_none_and_estimates_carry_them_only_when_asked(stand_in_model):
    images = torch.randn(1, 3, 256, 192)
    heatmaps, maps = predict_heatmaps(stand_in_model, images, weight_maps=True)
    assert maps == {} and torch.equal(heatmaps, predict_heatmaps(stand_in_model, images))
    picture = np.random.default_rng(4).integers(0, 255, (300, 200, 3), dtype=np.uint8)
    assert estimate_pose(stand_in_model, picture).weight_maps is None
    assert estimate_pose(stand_in_model, picture, weight_maps=True).weight_maps == {}


@pytest.mark.parametrize("image", [
    np.random.default_rng(3).integers(0, 255, (300, 200, 3), dtype=np.uint8),
    np.random.default_rng(3).integers(0, 255, (300, 200), dtype=np.uint8),
    np.random.default_rng(3).integers(0, 255, (300, 200, 4), dtype=np.uint8),
])
def test_estimate_pose_on_an_array_with_and_without_a_box(stand_in_model, image):
    model = stand_in_model
    whole = estimate_pose(model, image)
    assert whole.keypoints.shape == (17, 2) and whole.scores.shape == (17,) and whole.heatmaps.shape == (17, 64, 48)
    assert whole.crop.shape == (256, 192, 3) and whole.matrix.shape == (2, 3)
    np.testing.assert_allclose(whole.box, [0, 0, 200, 300])
    partial = estimate_pose(model, image, box=(150, 250, 100, 100), flip=False, decode="dark")
    center, size = box_to_center_size(partial.box, 0.75)
    assert np.all(np.abs(partial.keypoints - center) <= size / 2 + 1e-6)


@pytest.mark.parametrize("box, reason", [((10, 10, 0, 50), "zero_area_box"), ((500, 10, 50, 50), "box_outside_image"),
                                         ((1, 2, 3), "four numbers")])
def test_estimate_pose_refuses_unusable_boxes(stand_in_model, box, reason):
    with pytest.raises(WorkbenchError, match=reason):
        estimate_pose(stand_in_model, np.zeros((100, 100, 3), np.uint8), box=box)


def test_estimate_pose_reads_image_files(data_root, stand_in_model):
    result = estimate_pose(stand_in_model, data_root / "coco-sample" / "000000000785.jpg",
                           box=(280.79, 44.73, 218.7, 346.68))
    assert result.keypoints.shape == (17, 2) and np.isfinite(result.keypoints).all()


# loading networks

def test_load_state_dict_accepts_plain_nested_and_ddp_checkpoints(stand_in_model, tmp_path):
    state = stand_in_model.state_dict()
    for name, saved in [("plain", state), ("nested", {"model": state}),
                        ("ddp", {f"module.{k}": v for k, v in state.items()})]:
        torch.save(saved, tmp_path / name)
        assert load_state_dict(tmp_path / name).keys() == state.keys()


def test_load_state_dict_explains_bad_files(tmp_path):
    with pytest.raises(WorkbenchError, match="checkpoint not found"):
        load_state_dict(tmp_path / "absent.pth")
    (tmp_path / "junk.pth").write_bytes(b"garbage")
    with pytest.raises(WorkbenchError, match="not a readable PyTorch checkpoint"):
        load_state_dict(tmp_path / "junk.pth")
    torch.save({"epoch": 3}, tmp_path / "meta.pth")
    with pytest.raises(WorkbenchError, match="holds no model state dict"):
        load_state_dict(tmp_path / "meta.pth")


def test_onnx_model_runs_like_the_torch_model(stand_in_model, stand_in_onnx, tmp_path):
    runner = OnnxModel(stand_in_onnx)
    images = torch.randn(3, 3, 256, 192)  # the graph has a fixed batch of 1: run in chunks
    assert runner.input_size == (256, 192)
    with torch.no_grad():
        assert torch.allclose(runner(images), stand_in_model(images), atol=1e-5)
    (tmp_path / "bad.onnx").write_bytes(b"not onnx")
    with pytest.raises(WorkbenchError, match="not a loadable ONNX model"):
        OnnxModel(tmp_path / "bad.onnx")


def test_load_model_matches_names_and_checkpoints(tmp_path):
    torch.save(build_model("mobilenetv2").state_dict(), tmp_path / "mobilenetv2.pth")
    with pytest.raises(WorkbenchError, match="does not fit model 'lite_csw_hrnet'"):
        load("lite_csw_hrnet", tmp_path / "mobilenetv2.pth")
    with pytest.raises(WorkbenchError, match="unknown model"):
        load("no_such_net", tmp_path / "mobilenetv2.pth")
    network = load("mobilenetv2", tmp_path / "mobilenetv2.pth")
    assert not network.training


def test_load_model_reads_official_lite_hrnet_checkpoints(tmp_path):
    torch.manual_seed(0)
    source = build_model("lite_hrnet_18")
    torch.save({"meta": {"epoch": 210}, "state_dict": local_to_official_keys(source.state_dict())},
               tmp_path / "official.pth")
    loaded = load("lite_hrnet_18", tmp_path / "official.pth")
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in source.state_dict().items())
    with pytest.raises(WorkbenchError, match="official Lite-HRNet checkpoint .* does not fit model 'lite_csw_hrnet'"):
        load("lite_csw_hrnet", tmp_path / "official.pth")


def test_estimate_pose_with_the_paper_model():
    network = build_model("lite_csw_hrnet").eval()
    result = estimate_pose(network, np.full((200, 120, 3), 128, np.uint8), flip=False)
    assert result.heatmaps.shape == (17, 64, 48) and np.isfinite(result.keypoints).all()
    probed = estimate_pose(network, np.full((200, 120, 3), 128, np.uint8), flip=False, weight_maps=True)
    np.testing.assert_array_equal(probed.heatmaps, result.heatmaps)
    assert probed.weight_maps["stage2/module0/block0/cross/channel"].shape == (60,)
    assert probed.weight_maps["stage4/module1/block0/branch0/single/spatial"].shape == (1, 64, 48)
