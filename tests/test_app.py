"""The Gradio app: inputs and bad input, the model cache, every panel's function, the Complexity tab, the command,
and an end-to-end run of `python -m workbench app` driven by gradio_client."""
from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from model import build_model, run_with_probes
from workbench.app import complexity_panel
from workbench.app.analysis import keypoints_json, run_inspect, weight_maps_image
from workbench.app.callbacks import Workbench, compare_locations
from workbench.app.inputs import MAX_SIDE, coco_image_id, detection_choices, downscale, load_image, parse_box, \
    person_box, read_detections, whole_image_box
from workbench.app.models import CHECKPOINT_LABEL, model_choices, weight_choices
from workbench.interpret.structure import model_structure
from workbench.zoo.cache import CHECKPOINT, UNTRAINED_LABEL, ModelCache, best_weights
from workbench.zoo.loader import UNTRAINED
from workbench.cli import build_parser
from workbench.speed.complexity import QUICK_SPEED
from workbench.reports.complexity import FLOPS_AP_PLOT
from workbench.common.errors import WorkbenchError
from workbench.data.keypoints import JOINT_NAMES
from workbench.data.transforms import to_tensor
from workbench.common.paths import REPO_ROOT
from workbench.zoo.manifest import save_weights
from workbench.app.analysis import person_choices
from workbench.detection.yolox import PersonDetector
from workbench.prediction.video import video_info

INSIDE_BOX = "156, 106, 200, 300"  # its padded crop lies inside the 512x512 astronaut


pytestmark = pytest.mark.usefixtures("one_thread")


def _card(height: int = 160, width: int = 120) -> np.ndarray:
    """A synthetic RGB person-ish picture: a dark figure on a light background."""
    picture = np.full((height, width, 3), 220, np.uint8)
    cv2.ellipse(picture, (width // 2, height // 5), (width // 10, height // 12), 0, 0, 360, (60, 40, 30), -1)
    cv2.rectangle(picture, (width // 3, height // 4), (2 * width // 3, 3 * height // 4), (30, 60, 120), -1)
    return picture


def _write(path: Path, rgb: np.ndarray) -> Path:
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) if rgb.ndim == 3 else rgb)
    return path


def _astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()


@pytest.fixture(scope="module")
def examples() -> dict:
    """Two in-memory examples, so that tests do not depend on the shared data."""
    return {"card": _card, "astronaut": _astronaut}


@pytest.fixture(scope="module")
def workbench(tmp_path_factory, examples) -> Workbench:
    return Workbench(ModelCache(torch.device("cpu")), tmp_path_factory.mktemp("downloads"), examples)


def _inspect(workbench: Workbench, upload=None, example="card", model="lite_csw_hrnet", weights=UNTRAINED,
             checkpoint=None, mode="whole image", box="", location="stage2/module0/block0/cross",
             joint="left_wrist", layer="head (1/4)"):
    return workbench.inspect(upload, example, model, weights, checkpoint, mode, box, None, None, True, location,
                             joint, layer)


# Inputs: images, boxes, detections.

def test_parse_box_reads_four_numbers_and_explains_anything_else():
    np.testing.assert_array_equal(parse_box(" (10, 20.5 30 40) "), [10, 20.5, 30, 40])
    for text in ("", "1, 2, 3", "a, b, c, d", "1, 2, 3, nan"):
        with pytest.raises(WorkbenchError, match="x, y, w, h"):
            parse_box(text)


def test_person_box_checks_the_box_against_the_original_image():
    image = load_image(None, "card", {"card": _card})
    assert person_box(image, "whole image") is None
    np.testing.assert_array_equal(person_box(image, "typed box", "10, 10, 50, 80"), [10, 10, 50, 80])
    with pytest.raises(WorkbenchError, match="10, 10, 0, 80 is unusable"):
        person_box(image, "typed box", "10, 10, 0, 80")
    with pytest.raises(WorkbenchError, match="500, 10, 50, 80 is unusable"):
        person_box(image, "typed box", "500, 10, 50, 80")
    with pytest.raises(WorkbenchError, match="no detected box chosen"):
        person_box(image, "detection file", "")


def test_huge_images_are_downscaled_and_boxes_follow(tmp_path):
    big = _write(tmp_path / "big.png", np.zeros((300, 5000, 3), np.uint8))
    image = load_image(big, None)
    assert image.pixels.shape[1] == MAX_SIDE and image.original_size == (5000, 300)
    assert image.scale == pytest.approx(5000 / MAX_SIDE)
    np.testing.assert_allclose(person_box(image, "typed box", "1000, 0, 500, 300"),
                               np.array([1000, 0, 500, 300]) / image.scale)
    small, scale = downscale(np.zeros((100, 80, 3), np.uint8))
    assert small.shape == (100, 80, 3) and scale == 1.0


def test_odd_but_valid_images_load_as_rgb(tmp_path):
    grey = _write(tmp_path / "grey.png", np.full((40, 30), 90, np.uint8))
    rgba = tmp_path / "rgba.png"
    cv2.imwrite(str(rgba), np.dstack([np.full((40, 30, 3), 50, np.uint8), np.zeros((40, 30), np.uint8)]))
    deep = _write(tmp_path / "deep.png", np.full((40, 30, 3), 65535, np.uint16))
    rotated = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown rotated by 90 degrees
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(rotated, exif=exif)
    assert load_image(grey, None).pixels[0, 0].tolist() == [90, 90, 90]
    assert load_image(rgba, None).pixels[0, 0].tolist() == [50, 50, 50]
    assert load_image(deep, None).pixels[0, 0].tolist() == [255, 255, 255]
    shown = load_image(rotated, None)
    assert shown.pixels.shape == (40, 30, 3) and shown.original_size == (30, 40)


def test_broken_images_give_a_message_naming_the_file(tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("not a picture")
    ok, jpeg = cv2.imencode(".jpg", _card())
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(jpeg.tobytes()[: len(jpeg) // 2])
    with pytest.raises(WorkbenchError, match="notes.jpg cannot be decoded"):
        load_image(text, None)
    with pytest.raises(WorkbenchError, match="cut.jpg is a truncated JPEG"):
        load_image(truncated, None)
    with pytest.raises(WorkbenchError, match="upload an image file or pick an example"):
        load_image(None, None)
    with pytest.raises(WorkbenchError, match="unknown example"):
        load_image(None, "nothing", {})


def test_examples_ship_with_the_packages_and_the_sample_data(data_root):
    from workbench.app.inputs import example_images

    examples = example_images()
    assert examples["astronaut (scikit-image)"]().shape == (512, 512, 3)
    assert examples["grace_hopper.jpg (matplotlib)"]().shape[2] == 3
    coco = [label for label in examples if label.endswith("(coco-sample)")]
    assert len(coco) == 4 and examples[coco[0]]().ndim == 3
    assert any(label.endswith("(fashion-pose val)") for label in examples)


def test_detection_files_offer_the_boxes_of_the_current_image(tmp_path, data_root):
    detections = read_detections(data_root / "coco-sample" / "test_coco_det_AP_H_56.json")
    assert coco_image_id("000000000785.jpg (coco-sample)") == 785 and coco_image_id("photo_12.jpg") is None
    choices = detection_choices(detections, 785)
    scores = [float(label.split()[1].rstrip(":")) for label, _ in choices]
    assert scores == sorted(scores, reverse=True) and len(choices) == sum(d["image_id"] == 785 for d in detections)
    assert parse_box(choices[0][1]).shape == (4,)
    with pytest.raises(WorkbenchError, match="no person boxes for image id 1.*785"):
        detection_choices(detections, 1)
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": []}')
    with pytest.raises(WorkbenchError, match="not a COCO detection results file"):
        read_detections(bad)
    bad.write_text("[{")
    with pytest.raises(WorkbenchError, match="not valid JSON"):
        read_detections(bad)


# Models: weights, cache, structure.

def test_untrained_models_are_seeded_cached_and_marked():
    cache = ModelCache(torch.device("cpu"), capacity=2)
    first = cache.get("lite_csw_hrnet", UNTRAINED)
    assert cache.get("lite_csw_hrnet", UNTRAINED) is first
    assert first.label == "lite_csw_hrnet · untrained (random init)" and not first.trained
    again = ModelCache(torch.device("cpu")).get("lite_csw_hrnet", UNTRAINED)
    for a, b in zip(first.network.parameters(), again.network.parameters()):
        assert torch.equal(a, b)
    cache.get("small_hrnet_w16", UNTRAINED)
    cache.get("shufflenetv2", UNTRAINED)
    assert cache.get("lite_csw_hrnet", UNTRAINED) is not first  # dropped as least recently used


def test_concurrent_requests_share_one_built_model():
    cache = ModelCache(torch.device("cpu"))
    got = []
    threads = [threading.Thread(target=lambda: got.append(cache.get("small_hrnet_w16", UNTRAINED))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(got) == 3 and got[0] is got[1] is got[2]


def test_checkpoints_load_or_explain(tmp_path):
    cache = ModelCache(torch.device("cpu"))
    good = tmp_path / "good.pt"
    torch.save(build_model("small_hrnet_w16").state_dict(), good)
    loaded = cache.get("small_hrnet_w16", CHECKPOINT, good)
    assert loaded.trained and loaded.label == "small_hrnet_w16 · checkpoint good.pt"
    assert cache.get("small_hrnet_w16", CHECKPOINT, good) is loaded
    with pytest.raises(WorkbenchError, match="no checkpoint uploaded"):
        cache.get("small_hrnet_w16", CHECKPOINT, None)
    with pytest.raises(WorkbenchError, match="checkpoint not found"):
        cache.get("small_hrnet_w16", CHECKPOINT, tmp_path / "missing.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(WorkbenchError, match="not a readable PyTorch checkpoint"):
        cache.get("small_hrnet_w16", CHECKPOINT, corrupt)
    with pytest.raises(WorkbenchError, match="does not fit model 'lite_csw_hrnet'"):
        cache.get("lite_csw_hrnet", CHECKPOINT, good)


def test_manifest_weights_are_offered_loaded_and_verified(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_WEIGHTS", str(tmp_path))
    assert weight_choices("small_hrnet_w16") == [(UNTRAINED_LABEL, UNTRAINED), (CHECKPOINT_LABEL, CHECKPOINT)]
    assert best_weights("small_hrnet_w16") == UNTRAINED
    assert ("small_hrnet_w16 (untrained)", "small_hrnet_w16") in model_choices()
    save_weights(build_model("small_hrnet_w16"), "tiny", run={}, metrics={"val_AP": 0.5}, directory=tmp_path)
    assert weight_choices("small_hrnet_w16")[0] == ("tiny (val AP 0.500)", "tiny")
    assert best_weights("small_hrnet_w16") == "tiny"
    assert ("small_hrnet_w16", "small_hrnet_w16") in model_choices()
    cache = ModelCache(torch.device("cpu"))
    loaded = cache.get("small_hrnet_w16", "tiny")
    assert loaded.trained and loaded.label == "small_hrnet_w16 · tiny"
    with pytest.raises(WorkbenchError, match="no weights 'other'"):
        cache.get("small_hrnet_w16", "other")
    (tmp_path / "tiny.pt").write_bytes(b"replaced")
    with pytest.raises(WorkbenchError, match="does not match the manifest"):
        ModelCache(torch.device("cpu")).get("small_hrnet_w16", "tiny")


def test_model_structure_lists_weighting_locations_layers_and_branch_widths():
    csw = model_structure("lite_csw_hrnet")
    assert csw.locations[0] == "stage2/module0/block0/cross"
    assert csw.kinds["stage3/module1/block0/cross"] == ("channel", "spatial")
    assert csw.kinds["stage4/module0/block0/branch3/single"] == ("channel", "spatial")
    assert csw.splits["stage3/module1/block0/cross"] == (20, 40, 80)
    assert "stage4/module0/block1/cross" not in csw.locations  # one block per stage-4 module in the paper
    lite = model_structure("lite_hrnet_18")
    assert lite.kinds["stage4/module0/block1/cross"] == ("weights",)
    assert lite.kinds["stage2/module0/block0/branch1/single"] == ("channel",)
    assert lite.layers[-1] == "head (1/4)"
    assert model_structure("mobilenetv2").locations == ()
    assert "stage4/module0/block1/cross" in compare_locations()


# The panels.

def test_inspect_fills_every_panel_and_writes_the_downloads(workbench):
    outputs, result = _inspect(workbench, example="astronaut", mode="typed box", box=INSIDE_BOX)
    assert "lite_csw_hrnet · untrained (random init)" in outputs.status and "Untrained" in outputs.status
    assert "Inference" in outputs.status and "512x512" in outputs.status
    assert list(outputs.table["joint"]) == list(JOINT_NAMES)
    for picture in (outputs.skeleton, outputs.heatmap_grid, outputs.merged, outputs.weight_maps, outputs.gradcam):
        assert picture.ndim == 3 and picture.shape[2] == 3 and picture.std() > 0
    names = sorted(Path(f).name for f in outputs.files)
    assert names == sorted(["keypoints.json", "heatmaps.npy", "skeleton.png", "heatmaps.png",
                            "heatmaps-over-crop.png", "weights-stage2-module0-block0-cross.png",
                            "gradcam-left-wrist-head-1-4.png"])
    files = {Path(f).name: Path(f) for f in outputs.files}
    assert np.load(files["heatmaps.npy"]).shape == (17, 64, 48)
    coco = json.loads(files["keypoints.json"].read_text())
    points = np.array(coco[0]["keypoints"]).reshape(17, 3)
    assert coco[0]["category_id"] == 1 and ((points[:, :2] >= 0) & (points[:, :2] < 512)).all()
    assert cv2.imread(str(files["skeleton.png"])).shape == outputs.skeleton.shape[:2] + (3,)
    assert set(result.maps) >= {"stage2/module0/block0/cross/channel", "stage2/module0/block0/cross/spatial"}


def test_inspect_reports_keypoints_in_the_original_pixels_of_a_downscaled_image(workbench, tmp_path):
    big = _write(tmp_path / "big.png", cv2.resize(_card(), (1000, 8400)))
    outputs, result = _inspect(workbench, upload=str(big), model="small_hrnet_w16", location=None,
                               layer="stage 1 (1/4)")
    assert "downscaled to 488x4096" in outputs.status
    coco = keypoints_json(result)[0]
    np.testing.assert_allclose(np.array(coco["keypoints"]).reshape(17, 3)[:, :2],
                               result.estimate.keypoints * 8400 / 4096, rtol=1e-4)
    np.testing.assert_allclose(outputs.table["y"], result.estimate.keypoints[:, 1] * 8400 / 4096, atol=0.051)
    assert outputs.weight_maps is None  # HRNet has no weighting functions


def test_bad_input_gives_a_message_and_the_next_request_still_works(workbench, tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("hello")
    with pytest.raises(WorkbenchError, match="notes.png cannot be decoded"):
        _inspect(workbench, upload=str(text))
    with pytest.raises(WorkbenchError, match="-500, -500, 100, 100 is unusable"):
        _inspect(workbench, mode="typed box", box="-500, -500, 100, 100")
    with pytest.raises(WorkbenchError, match="checkpoint not found"):
        _inspect(workbench, weights=CHECKPOINT, checkpoint=str(tmp_path / "gone.pt"))
    outputs, _ = _inspect(workbench)
    assert outputs.skeleton.ndim == 3


def test_weight_maps_and_gradcam_redraw_from_the_session_result(workbench):
    _, result = _inspect(workbench, model="lite_hrnet_18", location="stage2/module0/block0/cross")
    lite = workbench.weight_maps(result, "stage4/module0/block1/cross")
    single = workbench.weight_maps(result, "stage3/module0/block1/branch2/single")
    assert lite.ndim == 3 and single.ndim == 3 and lite.shape != single.shape
    assert workbench.weight_maps(result, "stage9/module0/block0/cross") is None
    assert workbench.weight_maps(None, "stage2/module0/block0/cross") is None
    cam = workbench.gradcam(result, "nose", "stage 2 branch 0 (1/4), last block")
    assert cam.ndim == 3 and cam.std() > 0
    with pytest.raises(WorkbenchError, match="unknown joint"):
        workbench.gradcam(result, "tail", "head (1/4)")


@pytest.mark.parametrize("flip", [True, False])
def test_one_inspect_run_is_one_inference_with_the_weight_maps_read_during_it(workbench, flip):
    weights = best_weights("lite_csw_hrnet")  # trained weights: weight maps that vary
    network = workbench.cache.get("lite_csw_hrnet", weights).network
    calls = []
    handle = network.register_forward_pre_hook(lambda module, inputs: calls.append(inputs[0].shape))
    try:
        outputs, result = workbench.inspect(None, "astronaut", "lite_csw_hrnet", weights, None, "typed box",
                                            INSIDE_BOX, None, None, flip, "stage3/module0/block0/cross", "nose", None)
    finally:
        handle.remove()
    assert len(calls) == (2 if flip else 1)  # the flip pair, or one pass; no extra probed pass
    assert outputs.weight_maps is not None and outputs.gradcam is None
    passes = "two forward passes (flip test)" if flip else "one forward pass (no flip test)"
    assert f"{passes} with the weight maps read during the first" in outputs.status
    with torch.inference_mode():
        _, expected = run_with_probes(network, to_tensor(result.estimate.crop)[None])
    assert list(result.maps) == list(expected) and result.maps["stage3/module0/block0/cross/spatial"].std() > 0
    for name, value in expected.items():
        np.testing.assert_array_equal(result.maps[name], value[0].numpy(), err_msg=name)


def test_redraws_use_the_results_model_whatever_the_menus_say(workbench):
    """The defect: choose another model without running, then another Grad-CAM joint: the redraw used to fail with
    "no Grad-CAM layer 'deconv 3 (1/4)' in LiteHRNet"; it now draws the result's model at its default layer."""
    _, result = _inspect(workbench, location=None, layer=None)
    stale_layer = workbench.model_menus("resnet50")[-1]
    assert stale_layer == "deconv 3 (1/4)"
    fallback = workbench.gradcam(result, "nose", stale_layer)
    np.testing.assert_array_equal(fallback, workbench.gradcam(result, "nose", "head (1/4)"))
    assert workbench.gradcam(result, "nose", None) is None
    locations, location, layers, layer = workbench.result_menus(result, None, stale_layer)
    assert locations == list(model_structure("lite_csw_hrnet").locations) and location is None
    assert layers[-1] == layer == "head (1/4)"
    _, location, _, layer = workbench.result_menus(result, "stage4/module0/block1/cross",
                                                   "stage 3 branch 1 (1/8), last block")
    assert (location, layer) == ("stage3/module0/block0/cross", "stage 3 branch 1 (1/8), last block")
    assert workbench.result_menus(None, "x", "y") == ([], None, [], None)
    # a Run with menus left from another model shows the run model's defaults
    outputs, hrnet = _inspect(workbench, model="small_hrnet_w16", location="stage2/module0/block0/cross",
                              layer="head (1/4)")
    assert outputs.weight_maps is None and outputs.gradcam is not None
    assert any(Path(f).name == "gradcam-left-wrist-stage-4-branch-3-1-32-last-module.png" for f in outputs.files)
    assert workbench.result_menus(hrnet, "stage2/module0/block0/cross", "head (1/4)") == (
        [], None, list(model_structure("small_hrnet_w16").layers), "stage 4 branch 3 (1/32), last module")


def test_an_uploaded_checkpoint_serves_every_panel(workbench, tmp_path):
    checkpoint = tmp_path / "mine.pt"
    torch.save(build_model("small_hrnet_w16").state_dict(), checkpoint)
    outputs, result = _inspect(workbench, model="small_hrnet_w16", weights=CHECKPOINT, checkpoint=str(checkpoint),
                               location=None, layer="stem (1/4)")
    assert "small_hrnet_w16 · checkpoint mine.pt" in outputs.status and "Untrained" not in outputs.status
    assert workbench.gradcam(result, "left_knee", "stage 4 branch 0 (1/4), last module").ndim == 3


def test_two_users_at_once_get_their_own_results(workbench):
    results = {}

    def ask(example: str, model: str) -> None:
        results[example] = _inspect(workbench, example=example, model=model, location=None, layer=None)

    threads = [threading.Thread(target=ask, args=("card", "lite_csw_hrnet")),
               threading.Thread(target=ask, args=("astronaut", "lite_csw_hrnet"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    card, astronaut = results["card"], results["astronaut"]
    assert card[1].image.name == "card" and astronaut[1].image.name == "astronaut"
    assert card[1].image.pixels.shape == (160, 120, 3) and astronaut[1].image.pixels.shape == (512, 512, 3)
    alone, _ = _inspect(workbench, example="astronaut", location=None, layer=None)
    np.testing.assert_allclose(astronaut[0].table[["x", "y"]], alone.table[["x", "y"]])
    assert Path(card[0].files[0]).parent != Path(astronaut[0].files[0]).parent


def test_weight_maps_of_csw_and_lite_hrnet_differ_in_kind(workbench, examples):
    image = load_image(None, "card", examples)
    csw = run_inspect(workbench.cache.get("lite_csw_hrnet", UNTRAINED), image, whole_image_box(image))
    lite = run_inspect(workbench.cache.get("lite_hrnet_18", UNTRAINED), image, whole_image_box(image))
    assert csw.maps["stage3/module0/block0/cross/spatial"].shape == (1, 16, 12)
    assert csw.maps["stage3/module0/block0/cross/channel"].shape == (140,)
    assert lite.maps["stage3/module0/block0/cross/weights"].shape == (140, 16, 12)
    assert weight_maps_image(csw, "stage3/module0/block0/cross").shape != weight_maps_image(
        lite, "stage3/module0/block0/cross").shape


def test_preview_and_detections_follow_the_chosen_image(workbench, data_root):
    plain = workbench.preview(None, "card", "whole image", "", None)
    boxed = workbench.preview(None, "card", "typed box", "10, 10, 50, 80", None)
    assert plain["image"].shape == boxed["image"].shape == (160, 120, 3)
    assert [(b["xmin"], b["ymin"], b["xmax"], b["ymax"]) for b in boxed["boxes"]] == [(10, 10, 60, 90)]
    assert workbench.preview(None, None, "whole image", "", None) is None
    assert workbench.preview(None, "card", "typed box", "", None)["boxes"] == []  # nothing typed yet: no error
    coco = Workbench(workbench.cache, workbench.output_root)
    example = "000000000785.jpg (coco-sample)"
    choices = coco.detections(str(data_root / "coco-sample" / "test_coco_det_AP_H_56.json"), None, example)
    boxes, scores, source = coco.people_boxes(coco.image(None, example), "detection file", "", choices[0][1], None)
    np.testing.assert_allclose(boxes[0], parse_box(choices[0][1]))
    assert scores is None and source == "detection file"
    assert coco.detections(None, None, example) == []


def test_model_menus_follow_the_model(workbench):
    weights, weight, locations, location, layers, layer = workbench.model_menus("lite_hrnet_18")
    assert (UNTRAINED_LABEL, UNTRAINED) in weights and weight in [value for _, value in weights]
    assert location == "stage3/module0/block0/cross" and location in locations
    assert layer == "head (1/4)" == layers[-1]
    _, _, locations, location, layers, layer = workbench.model_menus("resnet50")
    assert locations == [] and location is None and layer == "deconv 3 (1/4)"


def test_compare_runs_each_model_and_sets_weight_maps_side_by_side(workbench):
    _, inspected = _inspect(workbench, location=None, layer=None)
    outputs = workbench.compare(inspected, ["lite_csw_hrnet", "lite_hrnet_18"], "stage2/module1/block1/cross", False)
    assert list(outputs.table["model"]) == ["lite_csw_hrnet", "lite_hrnet_18"]
    assert (outputs.table["forward ms (median)"] >= outputs.table["min"]).all() and (outputs.table["min"] > 0).all()
    assert list(outputs.table["weights"]) == [best_weights("lite_csw_hrnet"), best_weights("lite_hrnet_18")]
    assert outputs.table["parameters"].tolist() == [884_863, 1_130_769]
    assert len(outputs.skeletons) == len(outputs.heatmaps) == 2
    assert [caption.split(" · ")[0] for _, caption in outputs.weight_maps] == ["lite_csw_hrnet", "lite_hrnet_18"]
    with pytest.raises(WorkbenchError, match="no models chosen"):
        workbench.compare(inspected, [], None, True)
    with pytest.raises(WorkbenchError, match="run Inspect on an image first"):
        workbench.compare(None, ["lite_csw_hrnet"], None, True)


# The Complexity tab.

def test_complexity_is_counted_and_timed_beside_the_published_figures():
    speed = dataclasses.replace(QUICK_SPEED, threads=1, onnx=False, fast_variants=(), cuda=False)
    table, flops_ap, latency = complexity_panel.quick_report(["small_hrnet_w16"], (256, 192), timing=True,
                                                             speed=speed)
    row = table.iloc[0]
    assert (row["model"], row["input"], row["parameters"], row["convention"]) == ("small_hrnet_w16", "256x192",
                                                                                 1_284_961, "B")
    assert row["recomputed GFLOPs (2^30)"] == pytest.approx(0.539, abs=0.002)
    assert (row["paper GFLOPs"], row["paper params (M)"], row["paper AP val2017"]) == (0.34, 1.3, 55.2)
    assert 0 < row["latency ms (min)"] <= row["latency ms (median, batch 1)"]
    assert "cuda eager latency ms (median, batch 1)" not in table  # empty columns dropped
    assert flops_ap.ndim == latency.ndim == 3 and flops_ap.shape[1] > 500 and latency.std() > 0
    counted, flops_ap, latency = complexity_panel.quick_report(["small_hrnet_w16"], (256, 192), timing=False)
    assert "latency ms (median, batch 1)" not in counted and flops_ap.ndim == 3 and latency is None
    with pytest.raises(WorkbenchError, match="no models chosen"):
        complexity_panel.quick_report([])


def test_complexity_report_files_are_read_or_missing_explained(tmp_path):
    with pytest.raises(WorkbenchError, match="python -m workbench complexity"):
        complexity_panel.read_report(tmp_path)
    (tmp_path / "complexity.csv").write_text("model,parameters\nlite_csw_hrnet,884863\n")
    for name in (FLOPS_AP_PLOT, "training_curves.png"):
        (tmp_path / name).write_bytes(b"\x89PNG")
    table, flops_ap, latency = complexity_panel.read_report(tmp_path)
    assert table.iloc[0]["parameters"] == 884863 and Path(flops_ap).name == FLOPS_AP_PLOT and latency is None
    (tmp_path / "complexity.csv").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(WorkbenchError, match="not a readable CSV"):
        complexity_panel.read_report(tmp_path)


# The page: messages, the command, and the app served for real.

def test_handler_errors_reach_the_page_as_messages():
    import gradio as gr

    from workbench.app.messages import readable

    def refuse(text: str) -> str:
        raise WorkbenchError(f"bad {text}. Do this instead.")

    def crash() -> None:
        raise KeyError("deep")

    with pytest.raises(gr.Error, match="bad box. Do this instead."):
        readable(refuse)("box")
    with pytest.raises(gr.Error, match="unexpected error \\(KeyError: 'deep'\\). The app keeps running"):
        readable(crash)()
    assert readable(str.upper)("ok") == "OK"


def test_app_command_serves_locally_by_default():
    args = build_parser().parse_args(["app"])
    assert (args.host, args.port, args.share, args.device) == ("127.0.0.1", 7860, False, "auto")
    args = build_parser().parse_args(["app", "--host", "0.0.0.0", "--port", "9000", "--share", "--device", "cpu"])
    assert (args.host, args.port, args.share, args.device) == ("0.0.0.0", 9000, True, "cpu")


def test_app_command_explains_a_busy_port():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        args = build_parser().parse_args(["app", "--port", str(busy.getsockname()[1]), "--device", "cpu"])
        with pytest.raises(WorkbenchError, match="Pass a free port with --port"):
            args.func(args)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def served_app(tmp_path_factory, detector_path):
    """`python -m workbench app` in a subprocess on a free local port, with the shared person detector; its URL."""
    port = _free_port()
    log = tmp_path_factory.mktemp("app") / "app.log"
    with log.open("w") as output:
        process = subprocess.Popen([sys.executable, "-m", "workbench", "app", "--port", str(port), "--device", "cpu",
                                    "--threads", "1"], cwd=REPO_ROOT, stdout=output, stderr=subprocess.STDOUT,
                                   env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False",
                                        "WORKBENCH_DETECTOR": str(detector_path)})
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"the app did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
    yield url
    process.terminate()
    process.wait(timeout=30)


@pytest.mark.slow
def test_served_app_returns_keypoints_and_figures_for_an_upload(served_app, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError
    client = Client(served_app, verbose=False)
    astronaut = _write(tmp_path / "astronaut.png", _astronaut())
    weights = best_weights("lite_csw_hrnet")
    ask = ("lite_csw_hrnet", weights, None, "typed box", INSIDE_BOX, None, None, True, "stage3/module0/block0/cross",
           "right_wrist", "head (1/4)")
    status, skeleton, table, grid, merged, weight_maps, gradcam, files, person = client.predict(
        handle_file(str(astronaut)), None, *ask, api_name="/inspect")
    assert "lite_csw_hrnet" in status and "astronaut.png" in status
    by_name = {Path(f).name: Path(f) for f in files}
    coco = json.loads(by_name["keypoints.json"].read_text())
    points = np.array(coco[0]["keypoints"]).reshape(17, 3)
    assert ((points[:, :2] >= 0) & (points[:, :2] < 512)).all()
    assert ((points[:, 0] >= 115) & (points[:, 0] <= 397) & (points[:, 1] >= 68) & (points[:, 1] <= 444)).all()
    heatmaps = np.load(by_name["heatmaps.npy"])
    assert heatmaps.shape == (17, 64, 48) and np.isfinite(heatmaps).all()
    assert [row[0] for row in table["data"]] == list(JOINT_NAMES)
    for picture in (skeleton, grid, merged, weight_maps, gradcam):
        pixels = cv2.imread(picture)
        assert pixels.shape[0] > 200 and pixels.std() > 0
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(AppError, match="broken.jpg"):
        client.predict(handle_file(str(broken)), None, *ask, api_name="/inspect")
    status, *_ = client.predict(handle_file(str(astronaut)), None, *ask, api_name="/inspect")
    assert "Inference" in status


@pytest.mark.slow
def test_served_app_keeps_two_users_apart(served_app, tmp_path):
    from gradio_client import Client, handle_file

    uploads = {"astronaut.png": _write(tmp_path / "astronaut.png", _astronaut()),
               "card.png": _write(tmp_path / "card.png", _card())}
    answers = {}

    def ask(name: str) -> None:
        client = Client(served_app, verbose=False)
        answers[name] = client.predict(handle_file(str(uploads[name])), None, "lite_hrnet_18", UNTRAINED, None,
                                       "whole image", "", None, None, False, None, "nose", None,
                                       api_name="/inspect")

    threads = [threading.Thread(target=ask, args=(name,)) for name in uploads]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for name, size in (("astronaut.png", (512, 512)), ("card.png", (120, 160))):
        status, skeleton, *_ = answers[name]
        assert f"Image {name}, {size[0]}x{size[1]} px" in status


# Every person: the detector, the person menu, Compare on the chosen person, the Video tab.

FIVE_PEOPLE = "000000196141.jpg (coco-sample)"


@pytest.fixture(scope="module")
def detecting(workbench, detector_path) -> Workbench:
    """The app's handlers with the shared person detector and the real examples."""
    return Workbench(workbench.cache, workbench.output_root, detector=PersonDetector(detector_path, threads=1))


def test_inspect_finds_every_person_and_shows_the_chosen_one(detecting, data_root):
    weights = best_weights("lite_csw_hrnet")
    outputs, result = detecting.inspect(None, FIVE_PEOPLE, "lite_csw_hrnet", weights, None, "detected people", "",
                                        None, None, False, "stage3/module0/block0/cross", "nose", None)
    assert len(result.people) >= 4 and "found by the person detector" in outputs.status
    assert [label for label, _ in person_choices(result)][0].startswith("#0 · score")
    height, width = result.image.pixels.shape[:2]
    for person in result.people:
        assert ((person.keypoints >= -1) & (person.keypoints <= [width + 1, height + 1])).all()
        assert "stage3/module0/block0/cross/spatial" in person.estimate.weight_maps
    second, chosen = detecting.person(result, 2, "stage3/module0/block0/cross", "nose", None)
    assert chosen.chosen == 2 and "shown: #2" in second.status
    assert not np.array_equal(chosen.estimate.heatmaps, result.estimate.heatmaps)
    assert second.weight_maps is not None and not np.array_equal(second.skeleton, outputs.skeleton)
    with pytest.raises(WorkbenchError, match="no person #99"):
        detecting.person(result, 99, None, "nose", None)
    compared = detecting.compare(chosen, ["lite_hrnet_18"], None, False)
    assert len(compared.skeletons) == 1


def test_detected_people_fall_back_to_the_whole_image_visibly(workbench, detecting):
    flat = {"flat": lambda: np.full((240, 320, 3), 128, np.uint8)}
    found = Workbench(workbench.cache, workbench.output_root, flat, detector=detecting.detector)
    outputs, result = found.inspect(None, "flat", "lite_csw_hrnet", UNTRAINED, None, "detected people", "", None,
                                    None, False, None, "nose", None)
    assert len(result.people) == 1 and "the detector found no person" in outputs.status
    blind = Workbench(workbench.cache, workbench.output_root, flat, detector_problem="offline, no detector file")
    outputs, _ = blind.inspect(None, "flat", "lite_csw_hrnet", UNTRAINED, None, "detected people", "", None, None,
                               False, None, "nose", None)
    assert "whole image: offline, no detector file" in outputs.status


def test_drawn_boxes_become_people(workbench):
    drawn = {"boxes": [{"xmin": 10, "ymin": 20, "xmax": 70, "ymax": 150}, {"xmin": 60, "ymin": 5, "xmax": 110,
                                                                            "ymax": 100}]}
    outputs, result = workbench.inspect(None, "card", "lite_csw_hrnet", UNTRAINED, None, "drawn boxes", "", None,
                                        drawn, False, None, "nose", None)
    assert len(result.people) == 2 and "2 drawn boxes" in outputs.status
    with pytest.raises(WorkbenchError, match="no box drawn"):
        workbench.inspect(None, "card", "lite_csw_hrnet", UNTRAINED, None, "drawn boxes", "", None, {"boxes": []},
                          False, None, "nose", None)


def test_video_tab_draws_every_frame_and_writes_the_keypoints(detecting, data_root):
    street = data_root / "video" / "street.mp4"
    drawn, records, status = detecting.video(str(street), "lite_csw_hrnet", best_weights("lite_csw_hrnet"), False)
    assert video_info(drawn).frames == video_info(street).frames
    frames = {record["frame"] for record in json.loads(Path(records).read_text())}
    assert frames == set(range(video_info(street).frames)) and "frames drawn" in status
    text = Path(drawn).with_name("notes.mp4")
    text.write_text("not a video")
    with pytest.raises(WorkbenchError, match="not a readable video"):
        detecting.video(str(text), "lite_csw_hrnet", UNTRAINED, False)


@pytest.mark.slow
def test_served_app_finds_the_five_people_and_returns_the_chosen_ones_maps(served_app, data_root):
    from gradio_client import Client, handle_file

    client = Client(served_app, verbose=False)
    photo = data_root / "coco-sample" / "000000196141.jpg"
    ask = ("lite_csw_hrnet", best_weights("lite_csw_hrnet"), None, "detected people", "", None, None, False,
           "stage3/module0/block0/cross", "nose", None)
    status, skeleton, table, grid, merged, weight_maps, gradcam, files, person = client.predict(
        handle_file(str(photo)), None, *ask, api_name="/inspect")
    assert "people (found by the person detector" in status
    count = int(status.split(" px; ")[1].split(" ")[0])
    assert count >= 4
    assert cv2.imread(weight_maps).std() > 0 and cv2.imread(skeleton).shape[0] > 200
