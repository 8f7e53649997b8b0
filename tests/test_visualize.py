"""The pictures behind the app's panels (workbench.interpret.drawing) and Grad-CAM for pose networks (workbench.interpret.gradcam)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from matplotlib.collections import PathCollection
from matplotlib.colors import to_rgb

from model import build_model, model_names
from workbench.interpret import drawing
from workbench.common.errors import WorkbenchError
from workbench.interpret.gradcam import JointPeakTarget, gradcam_layers, joint_gradcam
from workbench.data.keypoints import JOINT_NAMES, SKELETON


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    """A 120x90 RGB test card: grey with a white square."""
    picture = np.full((120, 90, 3), 100, np.uint8)
    picture[40:60, 30:50] = 255
    return picture


def test_figure_to_array_renders_the_figure_at_its_size():
    figure = drawing._figure(3.0, 2.0)
    figure.add_subplot().plot([0, 1], [0, 1])
    pixels = drawing.figure_to_array(figure)
    assert pixels.shape == (200, 300, 3) and pixels.dtype == np.uint8 and pixels.std() > 0


def test_image_to_png_round_trips(image):
    decoded = cv2.imdecode(np.frombuffer(drawing.image_to_png(image), np.uint8), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(decoded[:, :, ::-1], image)


def test_overlay_puts_the_hot_end_of_the_colour_map_where_the_map_peaks(image):
    values = np.zeros((12, 9), np.float32)
    values[5, 4] = 1.0
    blended = drawing.overlay(image, values, 0.0, 1.0, "jet", alpha=1.0)
    assert blended.shape == image.shape
    peak = np.unravel_index(np.argmax(blended[:, :, 0].astype(int) - blended[:, :, 2]), blended.shape[:2])
    assert abs(peak[0] - 55) <= 6 and abs(peak[1] - 45) <= 6
    np.testing.assert_array_equal(drawing.overlay(image, values, alpha=0.0), image)
    assert drawing.overlay(image, np.ones((3, 3))).shape == image.shape


def test_draw_box_draws_the_outline_only(image):
    drawn = drawing.draw_box(image, (10, 20, 40, 50))
    assert tuple(drawn[20, 30]) == (255, 64, 64) and tuple(drawn[70, 30]) == (255, 64, 64)
    np.testing.assert_array_equal(drawn[45, 30], image[45, 30])
    assert tuple(image[20, 30]) == (100, 100, 100)


def test_skeleton_figure_colours_joints_by_confidence_and_dots_unsure_limbs(image):
    rng = np.random.default_rng(0)
    keypoints = rng.uniform((0, 0), (90, 120), (17, 2))
    scores = np.linspace(0.0, 1.0, 17)
    figure = drawing.skeleton_figure(image, keypoints, scores, box=(5, 5, 80, 100), threshold=0.5)
    axes = figure.axes[0]
    points = [c for c in axes.collections if isinstance(c, PathCollection)][0]
    np.testing.assert_allclose(points.get_offsets(), keypoints)
    np.testing.assert_allclose(points.get_array(), scores)
    assert len(axes.lines) == len(SKELETON)
    for line, (a, b) in zip(axes.lines, SKELETON):
        assert line.get_linestyle() == ("-" if min(scores[a], scores[b]) >= 0.5 else ":")
    assert sorted(float(t.get_text()) for t in axes.texts) == pytest.approx(np.round(scores, 2))
    assert len(axes.patches) == 1
    assert "confidence" in figure.axes[1].get_ylabel()


def test_heatmap_grid_tiles_every_joint_on_one_scale():
    heatmaps = np.random.default_rng(1).random((17, 16, 12)).astype(np.float32)
    figure = drawing.heatmap_grid_figure(heatmaps, columns=6)
    axes = figure.axes[0]
    mosaic = axes.images[0].get_array()
    assert mosaic.shape == (3 * 16 + 2, 6 * 12 + 5)
    np.testing.assert_array_equal(mosaic[:16, :12], heatmaps[0])
    np.testing.assert_array_equal(mosaic[17:33, 13:25], heatmaps[7])
    assert mosaic.mask[-16:, -12:].all()  # the 18th tile is empty
    assert [t.get_text().split()[0] for t in axes.texts] == list(JOINT_NAMES)
    assert axes.texts[3].get_text() == f"left_ear {heatmaps[3].max():.2f}"
    assert axes.images[0].norm.vmin == 0.0 and axes.images[0].norm.vmax == pytest.approx(heatmaps.max())


def test_merged_heatmaps_peak_where_the_joints_peak(image):
    heatmaps = np.zeros((17, 30, 24), np.float32)
    heatmaps[3, 10, 6] = 2.0
    heatmaps[9, 10, 6] = -5.0
    figure = drawing.merged_heatmaps_figure(image, heatmaps)
    shown = figure.axes[0].images[0].get_array()
    red_minus_blue = shown[:, :, 0].astype(int) - shown[:, :, 2]
    row, column = np.unravel_index(np.argmax(red_minus_blue), red_minus_blue.shape)
    assert abs(row - 10 * 120 / 30) <= 5 and abs(column - 6 * 90 / 24) <= 5


def test_channel_weights_figure_draws_each_weight_in_its_branch_colour():
    weights = np.linspace(0.1, 0.9, 60)
    figure = drawing.channel_weights_figure(weights, splits=(20, 40), title="cross")
    strip, bars = figure.axes[:2]
    np.testing.assert_allclose(strip.images[0].get_array()[0], weights)
    heights = [p.get_height() for p in bars.patches]
    np.testing.assert_allclose(heights, weights)
    colours = [p.get_facecolor()[:3] for p in bars.patches]
    assert colours[0] == pytest.approx(to_rgb("tab:blue")) and colours[-1] == pytest.approx(to_rgb("tab:orange"))


def test_weight_maps_figure_picks_the_figure_for_each_kind(image):
    rng = np.random.default_rng(2)
    csw = drawing.weight_maps_figure("stage2/module0/block0/cross", {
        "channel": rng.random(60), "spatial": rng.random((1, 8, 6))}, image, (20, 40))
    assert "M_c and M_s" in csw.texts[0].get_text()
    raw = [a for a in csw.axes if a.get_title().startswith("M_s 8x6")][0]
    assert raw.images[0].get_array().shape == (8, 6)
    lite = drawing.weight_maps_figure("stage2/module0/block0/cross", {"weights": rng.random((60, 8, 6))}, image,
                                        (20, 40))
    assert "Lite-HRNet" in lite.texts[0].get_text()
    assert [a.get_title() for a in lite.axes if a.images] == ["branch 0 (20 ch mean)", "branch 1 (40 ch mean)"]
    se = drawing.weight_maps_figure("stage2/module0/block0/branch0/single", {"channel": rng.random(20)}, image)
    assert "SE channel weights" in se.axes[0].get_title()
    with pytest.raises(ValueError, match="no weight maps"):
        drawing.weight_maps_figure("stage2/module0/block0/cross", {}, image)


def test_joint_peak_target_scores_the_joint_heatmap_maximum():
    heatmaps = torch.zeros(17, 4, 3)
    heatmaps[5, 2, 1] = 0.7
    heatmaps[6, 0, 0] = 0.9
    assert float(JointPeakTarget(5)(heatmaps)) == pytest.approx(0.7)


@pytest.mark.parametrize("name", model_names())
def test_gradcam_layers_run_once_and_return_one_tensor(name):
    with torch.device("meta"):
        network = build_model(name)
    layers = gradcam_layers(network)
    assert len(layers) >= 4
    outputs: dict[str, list] = {label: [] for label in layers}
    handles = [layer.register_forward_hook(lambda m, i, o, label=label: outputs[label].append(o))
               for label, layer in layers.items()]
    with torch.device("meta"):
        network(torch.empty(1, 3, 256, 192))
    for handle in handles:
        handle.remove()
    for label, seen in outputs.items():
        assert len(seen) == 1 and isinstance(seen[0], torch.Tensor) and seen[0].dim() == 4, label


def test_gradcam_layers_are_what_the_model_declares():
    class Declaring(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 17, 1)

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return self.conv(images)

        def cam_layers(self) -> dict[str, torch.nn.Module]:
            return {"the conv": self.conv}

    declaring = Declaring()
    assert gradcam_layers(declaring) == {"the conv": declaring.conv}
    assert joint_gradcam(declaring, torch.randn(1, 3, 8, 6), 0, "the conv").shape == (1, 8, 6)
    silent = torch.nn.Conv2d(3, 17, 1)
    assert gradcam_layers(silent) == {}
    with pytest.raises(WorkbenchError, match="declares no cam_layers"):
        joint_gradcam(silent, torch.zeros(1, 3, 8, 6), 0, "stem (1/4)")


def test_joint_gradcam_maps_the_crop_and_leaves_the_model_clean():
    torch.manual_seed(0)
    network = build_model("small_hrnet_w16").eval()
    images = torch.randn(2, 3, 256, 192)
    layer = "stage 3 branch 1 (1/8), last module"
    cams = joint_gradcam(network, images, JOINT_NAMES.index("left_wrist"), layer)
    assert cams.shape == (2, 256, 192) and cams.dtype == np.float32
    assert cams.min() >= 0.0 and cams.max() <= 1.0 and (cams.reshape(2, -1).max(axis=1) > 0).all()
    assert all(p.grad is None for p in network.parameters())
    assert not any(m._forward_hooks for m in network.modules())
    other = joint_gradcam(network, images, JOINT_NAMES.index("nose"), layer)
    assert not np.allclose(cams, other)


def test_joint_gradcam_refuses_unknown_layers_and_joints():
    network = build_model("small_hrnet_w16").eval()
    images = torch.zeros(1, 3, 256, 192)
    with pytest.raises(WorkbenchError, match="no Grad-CAM layer 'conv99'.*stem"):
        joint_gradcam(network, images, 0, "conv99")
    with pytest.raises(WorkbenchError, match="joint index 17"):
        joint_gradcam(network, images, 17, "stem (1/4)")
