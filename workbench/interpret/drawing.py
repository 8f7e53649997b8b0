"""Pictures of a pose estimate and of the weight maps inside a network: matplotlib figures and plain arrays.

Every `*_figure` function returns a matplotlib `Figure` built without pyplot (no global figure registry, safe from
several threads at once); `figure_to_array` turns one into RGB pixels and `image_to_png` those into PNG bytes.
Images are RGB uint8 (H, W, 3); keypoints are (17, 2) pixels (x, y); heatmaps are (17, h, w); weights are in [0, 1].
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import cv2
import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from workbench.data.keypoints import JOINT_NAMES, SKELETON

CONFIDENCE_CMAP = "viridis"
HEATMAP_CMAP = "jet"
WEIGHT_CMAP = "magma"
BRANCH_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red")


def _figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def figure_to_array(figure: Figure) -> np.ndarray:
    """Render a figure to RGB uint8 pixels (H, W, 3)."""
    canvas = figure.canvas if isinstance(figure.canvas, FigureCanvasAgg) else FigureCanvasAgg(figure)
    canvas.draw()
    return np.ascontiguousarray(np.asarray(canvas.buffer_rgba())[:, :, :3])


def image_to_png(image: np.ndarray) -> bytes:
    """Encode an RGB uint8 image (H, W, 3) as PNG bytes."""
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"cannot encode an image of shape {image.shape} as PNG")
    return encoded.tobytes()


def resize_map(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a 2-D map (h, w) to `size` (height, width), float32."""
    height, width = size
    return cv2.resize(np.asarray(values, dtype=np.float32), (width, height), interpolation=cv2.INTER_LINEAR)


def overlay(image: np.ndarray, values: np.ndarray, vmin: float | None = None, vmax: float | None = None,
            cmap: str = HEATMAP_CMAP, alpha: float = 0.5) -> np.ndarray:
    """Blend a colour-mapped 2-D map (h, w), resized to the image, over an RGB uint8 image (H, W, 3).

    The map is scaled to [0, 1] between `vmin` and `vmax` (default: its own minimum and maximum).
    """
    values = resize_map(values, image.shape[:2])
    low = float(values.min()) if vmin is None else vmin
    high = float(values.max()) if vmax is None else vmax
    scaled = np.clip((values - low) / (high - low), 0.0, 1.0) if high > low else np.zeros_like(values)
    colours = colormaps[cmap](scaled)[:, :, :3] * 255.0
    return np.round((1.0 - alpha) * image + alpha * colours).astype(np.uint8)


def draw_box(image: np.ndarray, box: Sequence[float], colour: tuple[int, int, int] = (255, 64, 64)) -> np.ndarray:
    """A copy of an RGB image with the box (x, y, w, h) drawn, its line width scaled with the image size."""
    x, y, w, h = (float(v) for v in box)
    thickness = max(2, round(max(image.shape[:2]) / 300))
    drawn = image.copy()
    cv2.rectangle(drawn, (round(x), round(y)), (round(x + w), round(y + h)), colour, thickness)
    return drawn


def skeleton_figure(image: np.ndarray, keypoints: np.ndarray, scores: np.ndarray, box: Sequence[float] | None = None,
                    threshold: float = 0.2, title: str = "", width: float = 6.0) -> Figure:
    """The skeleton over the image: joints coloured by confidence (colour bar), each labelled with its score,
    limbs solid where both joints score at least `threshold` and dotted otherwise, the person box in red."""
    height_px, width_px = image.shape[:2]
    figure = _figure(width, width * height_px / width_px * 0.85 + 0.4)
    axes = figure.add_subplot()
    axes.imshow(image)
    if box is not None:
        x, y, w, h = (float(v) for v in box)
        axes.add_patch(Rectangle((x - 0.5, y - 0.5), w, h, fill=False, edgecolor="red", linewidth=1.5, linestyle="--"))
    norm = Normalize(0.0, 1.0)
    cmap = colormaps[CONFIDENCE_CMAP]
    for a, b in SKELETON:
        confident = min(scores[a], scores[b]) >= threshold
        axes.plot(keypoints[[a, b], 0], keypoints[[a, b], 1], color=cmap(norm(min(scores[a], scores[b]))),
                  linewidth=2.5 if confident else 1.2, linestyle="-" if confident else ":", alpha=0.9)
    points = axes.scatter(keypoints[:, 0], keypoints[:, 1], c=np.clip(scores, 0.0, 1.0), cmap=cmap, norm=norm, s=40,
                          edgecolors="white", linewidths=1.0, zorder=3)
    for (x, y), score in zip(keypoints, scores):
        axes.annotate(f"{score:.2f}", (x, y), xytext=(4, 4), textcoords="offset points", fontsize=7, color="white",
                      bbox={"boxstyle": "round,pad=0.15", "facecolor": "black", "alpha": 0.5, "linewidth": 0})
    axes.set_xlim(-0.5, width_px - 0.5)
    axes.set_ylim(height_px - 0.5, -0.5)
    axes.set_axis_off()
    axes.set_title(title, fontsize=10)
    figure.colorbar(points, ax=axes, shrink=0.7, label="joint confidence (heatmap peak)")
    return figure


def heatmap_grid_figure(heatmaps: np.ndarray, scores: np.ndarray | None = None,
                        names: Sequence[str] = JOINT_NAMES, title: str = "", columns: int = 5) -> Figure:
    """The joint heatmaps (K, h, w) tiled `columns` to a row on one shared colour scale, each labelled with its
    joint name and peak (or `scores`); one image, so that it draws fast."""
    count, height, width = heatmaps.shape
    rows = -(-count // columns)
    gap = max(1, width // 12)
    low, high = float(min(heatmaps.min(), 0.0)), float(heatmaps.max())
    mosaic = np.full((rows * (height + gap) - gap, columns * (width + gap) - gap), np.nan, np.float32)
    for index, heatmap in enumerate(heatmaps):
        top, left = (index // columns) * (height + gap), (index % columns) * (width + gap)
        mosaic[top:top + height, left:left + width] = heatmap
    figure = _figure(columns * 1.6 + 1.0, rows * 1.6 * height / width + 0.6)
    axes = figure.add_subplot()
    cmap = colormaps[HEATMAP_CMAP].with_extremes(bad="white")
    image = axes.imshow(mosaic, cmap=cmap, norm=Normalize(low, high if high > low else low + 1.0),
                        interpolation="nearest")
    peaks = heatmaps.max(axis=(1, 2)) if scores is None else scores
    for index, (name, peak) in enumerate(zip(names, peaks)):
        top, left = (index // columns) * (height + gap), (index % columns) * (width + gap)
        axes.text(left + 1, top + 1, f"{name} {peak:.2f}", fontsize=8, color="white", va="top",
                  bbox={"boxstyle": "square,pad=0.1", "facecolor": "black", "alpha": 0.55, "linewidth": 0})
    axes.set_axis_off()
    axes.set_title(title, fontsize=10)
    figure.colorbar(image, ax=axes, shrink=0.8, label="heatmap value")
    return figure


def map_over_crop_figure(crop: np.ndarray, values: np.ndarray, title: str = "", label: str = "",
                         vmin: float | None = None, vmax: float | None = None, cmap: str = HEATMAP_CMAP) -> Figure:
    """A 2-D map (h, w) blended over the crop (H, W, 3), with a colour bar of the map's values."""
    low = float(values.min()) if vmin is None else vmin
    high = float(values.max()) if vmax is None else vmax
    high = high if high > low else low + 1e-6
    height, width = crop.shape[:2]
    figure = _figure(3.6, 3.6 * height / width * 0.8 + 0.5)
    axes = figure.add_subplot()
    axes.imshow(overlay(crop, values, low, high, cmap))
    axes.set_axis_off()
    axes.set_title(title, fontsize=9)
    figure.colorbar(_mappable(low, high, cmap), ax=axes, shrink=0.7, label=label)
    return figure


def merged_heatmaps_figure(crop: np.ndarray, heatmaps: np.ndarray,
                           title: str = "joint heatmaps over the crop") -> Figure:
    """The maximum over the joint heatmaps (K, h, w), negative values cut to 0, over the crop (H, W, 3)."""
    merged = np.maximum(heatmaps.max(axis=0), 0.0)
    return map_over_crop_figure(crop, merged, title, "max over joints", vmin=0.0)


def _mappable(low: float, high: float, cmap: str) -> ScalarMappable:
    return ScalarMappable(Normalize(low, high), cmap)


def _channel_axes(axes: Axes, weights: np.ndarray, splits: Sequence[int] | None, label: str) -> None:
    """Bars of channel weights (C,) in [0, 1], coloured by branch when `splits` gives the branch widths."""
    splits = list(splits) if splits else [len(weights)]
    start = 0
    for branch, size in enumerate(splits):
        axes.bar(np.arange(start, start + size), weights[start:start + size], width=1.0,
                 color=BRANCH_COLOURS[branch % len(BRANCH_COLOURS)],
                 label=f"branch {branch} ({size} ch)" if len(splits) > 1 else None)
        start += size
    axes.set_xlim(-0.5, len(weights) - 0.5)
    axes.set_ylim(0.0, 1.0)
    axes.set_xlabel("channel")
    axes.set_ylabel(label)
    if len(splits) > 1:
        axes.legend(fontsize=7, loc="lower right")


def _strip_axes(axes: Axes, weights: np.ndarray) -> None:
    """The channel weights (C,) as a one-row colour strip."""
    axes.imshow(weights[None], aspect="auto", cmap=WEIGHT_CMAP, vmin=0.0, vmax=1.0, interpolation="nearest")
    axes.set_yticks([])
    axes.set_xticks([])


def channel_weights_figure(weights: np.ndarray, splits: Sequence[int] | None = None, title: str = "",
                           label: str = "M_c") -> Figure:
    """Channel weights (C,): a colour strip above bars, coloured by branch for cross-resolution weights."""
    figure = _figure(7.0, 2.8)
    strip, bars = figure.subplots(2, 1, height_ratios=(1, 5))
    _strip_axes(strip, weights)
    strip.set_title(title, fontsize=9)
    _channel_axes(bars, weights, splits, label)
    return figure


def csw_figure(crop: np.ndarray, channel: np.ndarray, spatial: np.ndarray, splits: Sequence[int] | None = None,
               title: str = "") -> Figure:
    """One channel spatial weighting: M_c (C,) as strip and bars, M_s (h, w) as it is and over the crop (H, W, 3)."""
    figure = _figure(10.0, 3.6)
    grid = figure.add_gridspec(2, 3, width_ratios=(3, 1, 1), height_ratios=(1, 5))
    _strip_axes(figure.add_subplot(grid[0, 0]), channel)
    _channel_axes(figure.add_subplot(grid[1, 0]), channel, splits, "M_c")
    raw = figure.add_subplot(grid[:, 1])
    image = raw.imshow(spatial, cmap=WEIGHT_CMAP, vmin=0.0, vmax=1.0, interpolation="nearest")
    raw.set_title(f"M_s {spatial.shape[0]}x{spatial.shape[1]}", fontsize=9)
    raw.set_axis_off()
    blended = figure.add_subplot(grid[:, 2])
    blended.imshow(overlay(crop, spatial, 0.0, 1.0, WEIGHT_CMAP))
    blended.set_title("M_s over the crop", fontsize=9)
    blended.set_axis_off()
    figure.colorbar(image, ax=[raw, blended], shrink=0.7, label="weight")
    figure.suptitle(title, fontsize=10)
    return figure


def lite_hrnet_cross_figure(crop: np.ndarray, weights: np.ndarray, splits: Sequence[int] | None = None,
                            title: str = "") -> Figure:
    """Lite-HRNet's cross-resolution weights (C, h, w): each channel's spatial mean as bars, and each branch's mean
    over its channels as a map over the crop (H, W, 3)."""
    splits = list(splits) if splits else [len(weights)]
    figure = _figure(3.0 + 2.2 * len(splits), 3.6)
    grid = figure.add_gridspec(1, 1 + len(splits), width_ratios=(3,) + (1,) * len(splits))
    _channel_axes(figure.add_subplot(grid[0, 0]), weights.mean(axis=(1, 2)), splits, "spatial mean of the weight")
    start = 0
    map_axes = []
    for branch, size in enumerate(splits):
        axes = figure.add_subplot(grid[0, 1 + branch])
        axes.imshow(overlay(crop, weights[start:start + size].mean(axis=0), 0.0, 1.0, WEIGHT_CMAP))
        axes.set_title(f"branch {branch} ({size} ch mean)", fontsize=8)
        axes.set_axis_off()
        map_axes.append(axes)
        start += size
    figure.colorbar(_mappable(0.0, 1.0, WEIGHT_CMAP), ax=map_axes, shrink=0.7, label="weight")
    figure.suptitle(title, fontsize=10)
    return figure


def weight_maps_figure(location: str, maps: Mapping[str, np.ndarray], crop: np.ndarray,
                       splits: Sequence[int] | None = None) -> Figure:
    """The figure for one weighting function, given its maps by kind for one image.

    location: a probe name without its kind, e.g. "stage3/module1/block0/cross" (see `model.probes`); maps: kind ->
    array for one image: "channel" (C,) and "spatial" (h, w) or (1, h, w) for channel spatial weighting (M_c, M_s),
    "weights" (C, h, w) for Lite-HRNet's cross-resolution weighting, "channel" (C,) alone for its SE weighting.
    splits: the branch widths of a cross-resolution function's channels.
    """
    if "weights" in maps:
        return lite_hrnet_cross_figure(crop, np.asarray(maps["weights"]), splits,
                                       f"{location}: Lite-HRNet cross-resolution weights")
    if "spatial" in maps:
        spatial = np.asarray(maps["spatial"]).reshape(np.shape(maps["spatial"])[-2:])
        return csw_figure(crop, np.asarray(maps["channel"]), spatial, splits, f"{location}: M_c and M_s")
    if "channel" in maps:
        return channel_weights_figure(np.asarray(maps["channel"]), splits, f"{location}: SE channel weights",
                                      "weight")
    raise ValueError(f"no weight maps for {location}: expected kinds channel, spatial or weights, got {sorted(maps)}")

