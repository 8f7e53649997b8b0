"""Keypoint tables, robust image reading, crop geometry, augmentation, targets and the COCO dataset."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from workbench.data.dataset import CocoKeypoints
from workbench.data.transforms import Augmentation
from workbench.codec import default_sigma, encode_heatmaps
from workbench.data.transforms import box_to_center_size, compose, crop_matrix, hflip_matrix, to_tensor, \
    transform_points, warp_crop
from workbench.common.errors import WorkbenchError
from workbench.data.images import ImageReadError, read_image
from workbench.data.keypoints import FLIP_INDEX, FLIP_PAIRS, JOINT_NAMES, OKS_SIGMAS, SKELETON


# keypoint tables

def test_flip_index_swaps_left_and_right_names():
    swap = {"left": "right", "right": "left"}
    for joint, twin in enumerate(FLIP_INDEX):
        side, _, part = JOINT_NAMES[joint].partition("_")
        assert JOINT_NAMES[twin] == (f"{swap[side]}_{part}" if side in swap else JOINT_NAMES[joint])
    assert len(FLIP_PAIRS) == 8 and len(SKELETON) == 19 and OKS_SIGMAS.shape == (17,)


# image reading

RGB = np.zeros((40, 60, 3), np.uint8)
RGB[:10, :20] = (255, 0, 0)  # a red block top left


def _write(path: Path, kind: str) -> Path:
    """Write a test image of `kind` showing RGB (or its luminance) and return its path."""
    image = Image.fromarray(RGB)
    if kind == "gray":
        image.convert("L").save(path, quality=95)
    elif kind == "cmyk":
        image.convert("CMYK").save(path, quality=95)
    elif kind == "rgba":
        Image.fromarray(np.dstack([RGB, np.full(RGB.shape[:2], 128, np.uint8)])).save(path)
    elif kind == "16bit":
        cv2.imwrite(str(path), RGB[:, :, ::-1].astype(np.uint16) * 257)
    elif kind == "16bit-gray":
        cv2.imwrite(str(path), RGB[:, :, 0].astype(np.uint16) * 257)
    elif kind == "exif":
        exif = image.getexif()
        exif[0x0112] = 6  # stored pixels must be turned 90 degrees clockwise for display
        image.save(path, exif=exif, quality=95)
    return path


@pytest.mark.parametrize("kind, name", [("gray", "a.jpg"), ("cmyk", "a.jpg"), ("rgba", "a.png"),
                                        ("16bit", "a.png"), ("16bit-gray", "a.png")])
def test_read_image_converts_every_format_to_rgb_uint8(tmp_path, kind, name):
    image = read_image(_write(tmp_path / name, kind))
    assert image.shape == (40, 60, 3) and image.dtype == np.uint8
    expected = (76, 76, 76) if kind == "gray" else (255, 255, 255) if kind == "16bit-gray" else (255, 0, 0)
    np.testing.assert_allclose(image[5, 5], expected, atol=6)
    np.testing.assert_allclose(image[30, 50], (0, 0, 0), atol=6)


def test_read_image_applies_exif_orientation_unless_told_not_to(tmp_path):
    path = _write(tmp_path / "rotated.jpg", "exif")
    upright = read_image(path)
    assert upright.shape == (60, 40, 3)
    assert upright[5, 35, 0] > 200 and upright[5, 5, 0] < 50  # the red block is now top right
    assert read_image(path, apply_exif=False).shape == (40, 60, 3)


@pytest.mark.parametrize("content, fragment", [
    (lambda data: data[: len(data) * 2 // 3], "truncated"),
    (lambda data: data[:2] + np.random.default_rng(0).bytes(len(data)), "cannot be decoded"),
    (lambda data: b"not an image at all", "cannot be decoded"),
    (lambda data: b"", "empty"),
])
def test_read_image_rejects_damaged_files_with_a_clear_message(tmp_path, content, fragment):
    good = tmp_path / "good.jpg"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(good)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(content(good.read_bytes()))
    with pytest.raises(ImageReadError, match=fragment) as raised:
        read_image(bad)
    assert "bad.jpg" in str(raised.value) and isinstance(raised.value, WorkbenchError)


def test_read_image_names_a_missing_file(tmp_path):
    with pytest.raises(ImageReadError, match="not found.*nowhere.jpg"):
        read_image(tmp_path / "nowhere.jpg")


def test_read_image_accepts_arrays_and_rejects_nonsense():
    assert read_image(RGB.astype(np.float32) / 255.0)[5, 5].tolist() == [255, 0, 0]
    assert read_image(RGB.astype(np.uint16) * 257)[5, 5].tolist() == [255, 0, 0]
    assert read_image(RGB[:, :, 0]).shape == (40, 60, 3)
    for bad in (RGB.astype(np.int64), RGB.astype(np.float32), np.zeros((4, 4, 2), np.uint8), np.zeros((0, 5))):
        with pytest.raises(ImageReadError):
            read_image(bad)


# crop geometry

def test_box_to_center_size_fixes_the_aspect_ratio_and_pads():
    center, size = box_to_center_size((10, 20, 30, 100), aspect_ratio=0.75)
    np.testing.assert_allclose(center, (25, 70))
    np.testing.assert_allclose(size, (75 * 1.25, 100 * 1.25))
    _, wide = box_to_center_size((0, 0, 300, 100), aspect_ratio=0.75)
    np.testing.assert_allclose(wide, (300 * 1.25, 400 * 1.25))


def test_crop_matrix_maps_the_box_onto_the_crop_and_inverts():
    center, size = np.array([100.0, 200.0]), np.array([150.0, 200.0])
    matrix = crop_matrix(center, size, (256, 192))
    corners = transform_points(np.array([[25.0, 100.0], [175.0, 300.0], [100.0, 200.0]]), matrix)
    np.testing.assert_allclose(corners, [[0, 0], [192, 256], [96, 128]], atol=1e-9)
    rotated = crop_matrix(center, size, (256, 192), rotation=30.0)
    back = transform_points(transform_points(corners, cv2.invertAffineTransform(rotated)), rotated)
    np.testing.assert_allclose(back, corners, atol=1e-9)
    np.testing.assert_allclose(transform_points(center, rotated), (96, 128), atol=1e-9)


def test_mirroring_in_the_matrix_equals_flipping_the_crop():
    image = np.random.default_rng(2).integers(0, 255, (120, 90, 3), dtype=np.uint8)
    matrix = crop_matrix(np.array([45.0, 60.0]), np.array([60.0, 80.0]), (64, 48), rotation=10.0)
    mirrored = warp_crop(image, compose(matrix, hflip_matrix(48)), (64, 48))
    expected = cv2.flip(warp_crop(image, matrix, (64, 48)), 1).astype(int)
    assert np.abs(mirrored.astype(int) - expected).max() <= 1  # OpenCV's fixed-point bilinear weights round


def test_to_tensor_normalises_per_channel():
    crop = np.full((4, 2, 3), (255, 0, 128), np.uint8)
    tensor = to_tensor(crop, mean=(0.5, 0.5, 0.5), std=(0.5, 0.25, 1.0))
    assert tensor.shape == (3, 4, 2) and tensor.dtype == torch.float32
    np.testing.assert_allclose(tensor[:, 0, 0].numpy(), (1.0, -2.0, 128 / 255 - 0.5), atol=1e-6)


# targets

def test_standard_target_peaks_on_the_nearest_pixel_and_weights_visibility():
    joints = np.array([[10.4, 20.6], [47.0, 63.0], [-9.0, 5.0], [5.0, 5.0]])
    heatmaps, weights = encode_heatmaps(joints, np.array([True, True, True, False]), (64, 48), sigma=2.0)
    assert heatmaps.shape == (4, 64, 48) and heatmaps.dtype == np.float32
    assert np.unravel_index(heatmaps[0].argmax(), (64, 48)) == (21, 10) and heatmaps[0].max() == 1.0
    assert heatmaps[0][21, 17] == 0.0 and heatmaps[0][21, 16] > 0  # cut beyond 3 sigma
    assert weights.tolist() == [1.0, 1.0, 0.0, 0.0] and not heatmaps[2:].any()


def test_unbiased_target_is_centred_at_the_sub_pixel_position():
    heatmaps, _ = encode_heatmaps(np.array([[10.5, 20.0]]), np.array([True]), (64, 48), 2.0, "unbiased")
    assert heatmaps[0, 20, 10] == pytest.approx(heatmaps[0, 20, 11])


def test_sigma_follows_the_input_size():
    assert default_sigma((256, 192)) == 2.0 and default_sigma((384, 288)) == 3.0


# the dataset

def _coco_sample(data_root: Path) -> tuple[Path, Path]:
    return data_root / "coco-sample" / "test_coco.json", data_root / "coco-sample"


def test_ground_truth_instances_skip_people_without_keypoints(data_root):
    dataset = CocoKeypoints(*_coco_sample(data_root))
    assert len(dataset) == 12 and dict(dataset.skipped) == {"no_visible_keypoints": 2}
    sample = dataset[0]
    assert sample["image"].shape == (3, 256, 192) and sample["target"].shape == (17, 64, 48)
    assert sample["valid"] and sample["error"] == "" and sample["target_weight"].sum() == 17
    assert "12 instances" in dataset.summary() and "skipped: no labelled keypoints" in dataset.summary()


def test_384x288_input_uses_sigma_3_and_96x72_heatmaps(data_root):
    dataset = CocoKeypoints(*_coco_sample(data_root), input_size=(384, 288))
    sample = dataset[0]
    assert dataset.sigma == 3.0 and sample["target"].shape == (17, 96, 72)
    assert sample["image"].shape == (3, 384, 288)


def test_detection_instances_and_score_threshold(data_root):
    annotations, images = _coco_sample(data_root)
    detections = annotations.parent / "test_coco_det_AP_H_56.json"
    scores = [d["score"] for d in json.loads(detections.read_text())]
    assert len(CocoKeypoints(annotations, images, detections=detections)) == len(scores) == 118
    strict = CocoKeypoints(annotations, images, detections=detections, score_threshold=0.5)
    assert len(strict) == sum(s >= 0.5 for s in scores)
    assert strict.skipped["below_score_threshold"] == sum(s < 0.5 for s in scores)
    assert all(strict[i]["score"] >= 0.5 for i in range(len(strict)))


def _write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_detections_of_unknown_images_are_counted_or_refused(data_root, tmp_path):
    annotations, images = _coco_sample(data_root)
    known = {"image_id": 785, "category_id": 1, "bbox": [280, 44, 218, 346], "score": 0.9}
    unknown = dict(known, image_id=123456789)
    mixed = _write_json(tmp_path / "mixed.json", [known, unknown, unknown])
    dataset = CocoKeypoints(annotations, images, detections=mixed)
    assert len(dataset) == 1 and dataset.skipped["unknown_image_id"] == 2
    with pytest.raises(WorkbenchError, match="none of the 2 detections"):
        CocoKeypoints(annotations, images, detections=_write_json(tmp_path / "other.json", [unknown, unknown]))
    with pytest.raises(WorkbenchError, match="not a COCO detection results file"):
        CocoKeypoints(annotations, images, detections=_write_json(tmp_path / "bad.json", {"bbox": [1, 2, 3, 4]}))


def test_boxes_outside_the_image_or_empty_are_skipped_and_partial_ones_kept(data_root, tmp_path):
    annotations, images = _coco_sample(data_root)
    boxes = [[-50, -50, 100, 100], [700, 10, 50, 50], [-100, 10, 60, 60], [100, 100, 0, 50], [100, 100, 30, -5]]
    detections = [{"image_id": 785, "category_id": 1, "bbox": box, "score": 0.9} for box in boxes]
    dataset = CocoKeypoints(annotations, images, detections=_write_json(tmp_path / "d.json", detections))
    assert len(dataset) == 1
    assert dict(dataset.skipped) == {"box_outside_image": 2, "zero_area_box": 2}
    assert dataset[0]["image"][:, 0, 0].tolist() == to_tensor(np.zeros((1, 1, 3), np.uint8))[:, 0, 0].tolist()


def test_missing_images_are_reported_before_any_loading(data_root, tmp_path):
    annotations, _ = _coco_sample(data_root)
    shutil.copy(data_root / "coco-sample" / "000000000785.jpg", tmp_path)
    with pytest.raises(WorkbenchError, match="3 of 4 images .* missing"):
        CocoKeypoints(annotations, tmp_path)
    with pytest.raises(WorkbenchError, match="image folder not found"):
        CocoKeypoints(annotations, tmp_path / "absent")


def test_unreadable_images_become_invalid_samples_even_in_workers(data_root, tmp_path):
    annotations, images = _coco_sample(data_root)
    for image in images.glob("*.jpg"):
        shutil.copy(image, tmp_path)
    damaged = tmp_path / "000000196141.jpg"
    damaged.write_bytes(damaged.read_bytes()[:5000])
    dataset = CocoKeypoints(annotations, tmp_path)
    batches = list(DataLoader(dataset, batch_size=4, num_workers=1))
    valid = torch.cat([b["valid"] for b in batches])
    errors = [e for b in batches for e in b["error"] if e]
    bad = [i for i, instance in enumerate(dataset.instances) if instance.image_id == 196141]
    assert (~valid).nonzero().flatten().tolist() == bad
    assert len(errors) == len(bad) and all("000000196141.jpg is a truncated JPEG" in e for e in errors)
    assert torch.cat([b["target_weight"] for b in batches])[bad].sum() == 0


def test_an_image_whose_size_disagrees_with_the_annotations_is_invalid(data_root, tmp_path):
    annotations, images = _coco_sample(data_root)
    for image in images.glob("*.jpg"):
        shutil.copy(image, tmp_path)
    turned = tmp_path / "000000000785.jpg"
    cv2.imwrite(str(turned), cv2.rotate(cv2.imread(str(turned)), cv2.ROTATE_90_CLOCKWISE))
    sample = CocoKeypoints(annotations, tmp_path)[0]
    assert not sample["valid"] and "425x640 pixels but the annotations say 640x425" in sample["error"]


# augmentation

def _fashion_train(data_root: Path, **options) -> CocoKeypoints:
    root = data_root / "fashion-pose"
    return CocoKeypoints(root / "person_keypoints_train.json", root / "images", train=True, **options)


def test_augmentation_is_deterministic_given_seed_epoch_and_index(data_root):
    first, second = _fashion_train(data_root, seed=3), _fashion_train(data_root, seed=3)
    for index in (0, 7):
        a, b = first[index], second[index]
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["target"], b["target"])
    second.set_epoch(1)
    assert not torch.equal(first[0]["matrix"], second[0]["matrix"])
    assert not torch.equal(first[0]["matrix"], _fashion_train(data_root, seed=4)[0]["matrix"])


def test_augmentation_draws_follow_the_settings(data_root):
    dataset = _fashion_train(data_root)
    draws = [dataset.crop_params(i) for i in range(800)]
    base = [box_to_center_size(instance.box, 0.75)[1][0] for instance in dataset.instances]
    ratios = np.array([d.box_size[0] / b for d, b in zip(draws, base)])
    rotations = np.array([d.rotation for d in draws])
    flips = np.mean([d.flip for d in draws])
    whole = (ratios >= 0.75 - 1e-9) & (ratios <= 1.25 + 1e-9)
    assert 0.6 < whole.mean() < 0.8  # the rest are half-body crops (probability 0.3, all 17 joints visible)
    assert np.abs(rotations).max() <= 30.0 and 0.5 < np.mean(rotations != 0) < 0.7
    assert 0.44 < flips < 0.56
    recipe = _fashion_train(data_root, augmentation=Augmentation(rotation_limit=60.0))
    assert max(abs(recipe.crop_params(i).rotation) for i in range(800)) > 30.0


def test_flip_augmentation_mirrors_and_swaps_joints(data_root):
    plain = _fashion_train(data_root, augmentation=Augmentation(flip_prob=0.0, half_body_prob=0.0,
                                                                rotation_prob=0.0, scale_factor=0.0))
    flipped = _fashion_train(data_root, augmentation=Augmentation(flip_prob=1.0, half_body_prob=0.0,
                                                                  rotation_prob=0.0, scale_factor=0.0))
    a, b = plain[0], flipped[0]
    assert torch.allclose(b["image"], a["image"].flip(2), atol=1.01 / 255 / 0.224)
    mirrored = a["joints"].numpy()[list(FLIP_INDEX)]
    np.testing.assert_allclose(b["joints"].numpy(), np.c_[191.0 - mirrored[:, 0], mirrored[:, 1]], atol=1e-4)
    left_shoulder = JOINT_NAMES.index("left_shoulder")
    assert float(b["joints"][left_shoulder, 0]) == pytest.approx(191.0 - float(a["joints"][left_shoulder + 1, 0]),
                                                                 abs=1e-4)


def test_an_annotation_path_that_is_a_folder_or_unreadable_gets_one_clear_message(tmp_path):
    from workbench.data.coco import read_json

    with pytest.raises(WorkbenchError, match="is a folder: pass the JSON file inside it"):
        read_json(tmp_path, "annotation file")
    with pytest.raises(WorkbenchError, match="annotation file not found: .*missing.json"):
        read_json(tmp_path / "missing.json", "annotation file")
