"""What the Inspect and Compare panels compute, free of gradio.

`run_inspect` runs one model on one image and person box (one inference, the weight maps read during it) and
returns an `InspectResult` (the per-session state the panels are drawn from); `inspect_outputs` draws every Inspect
panel and writes the downloads; `weight_maps_image` and `gradcam_image` draw one panel from a result, always with the
result's own model; `compare` runs several models and times them interleaved. Errors a user can cause raise
WorkbenchError.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from model import location_maps
from workbench.interpret import drawing
from workbench.app.inputs import MAX_SIDE, LoadedImage
from workbench.interpret.structure import model_structure
from workbench.zoo.cache import LoadedModel, ModelCache, best_weights
from workbench.data.transforms import to_tensor
from workbench.common.errors import WorkbenchError
from workbench.evaluation.metrics import Predictions, coco_results
from workbench.common.files import write_atomic, write_json_atomic
from workbench.interpret.gradcam import gradcam_layers, joint_gradcam
from workbench.inference import PoseEstimate, model_device
from workbench.prediction.people import Person, estimate_people
from workbench.prediction.render import draw_people
from workbench.data.keypoints import JOINT_NAMES
from workbench.speed.complexity import count_parameters
from workbench.speed.latency import Timing, time_interleaved

LATENCY_REPEATS = 10
MIN_SIDE = 32
"""Images with a shorter side (in pixels) get a warning: nobody's pose can be read in them."""
DEFAULT_LOCATION = "stage3/module0/block0/cross"


def default_location(locations: tuple[str, ...]) -> str | None:
    """DEFAULT_LOCATION when the model has it, else its first weighting function, else None."""
    if DEFAULT_LOCATION in locations:
        return DEFAULT_LOCATION
    return locations[0] if locations else None


def default_layer(layers: tuple[str, ...]) -> str | None:
    """The Grad-CAM layer shown by default: the last, nearest the output; None if the model offers none."""
    return layers[-1] if layers else None


@dataclass(frozen=True)
class InspectResult:
    """One model's look at one image: every person found (best first, in working-image pixels; each estimate holds
    the weight maps of its crop, read during the unflipped forward pass), the `chosen` one whose panels are shown,
    `source`, a sentence on where the boxes came from, the model's cache key (name, weights, checkpoint) and label,
    and `inference_ms`, the milliseconds of the whole estimate: crops, forward passes (two with the flip test) and
    decoding."""

    image: LoadedImage
    people: tuple[Person, ...]
    chosen: int
    source: str
    model_key: tuple[str, str, str | None]
    label: str
    trained: bool
    inference_ms: float
    flip: bool

    @property
    def estimate(self) -> PoseEstimate:
        """The chosen person's estimate."""
        return self.people[self.chosen].estimate

    @property
    def maps(self) -> dict[str, np.ndarray]:
        """The chosen person's weight maps by probe name."""
        return self.estimate.weight_maps or {}


def run_inspect(loaded: LoadedModel, image: LoadedImage, boxes: np.ndarray, box_scores: np.ndarray | None = None,
                flip: bool = True, source: str = "") -> InspectResult:
    """Run `loaded` on every person box (N, 4) x, y, w, h (working pixels) of `image` in one batch: keypoints,
    heatmaps and weight maps of each crop from one inference (the flip pair, or one pass without `flip`). Poses
    that repeat a better one are dropped (OKS NMS) when the boxes come from a detector (`box_scores` given)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.ones(len(boxes)) if box_scores is None else np.asarray(box_scores, dtype=np.float64)
    with loaded.lock:
        device = _device_of(loaded.network)
        _synchronize(device)
        start = time.perf_counter()
        people = estimate_people(loaded.network, image.pixels, boxes, scores, flip=flip, weight_maps=True,
                                 nms=box_scores is not None)
        _synchronize(device)  # CUDA runs asynchronously: wait for its work before reading the clock
        end = time.perf_counter()
    if not people:
        raise WorkbenchError(f"no usable person box in {image.name}: every box is empty or outside the image. "
                             "Choose another box.")
    key = (loaded.name, loaded.weights, loaded.checkpoint)
    return InspectResult(image, tuple(people), 0, source, key, loaded.label, loaded.trained, (end - start) * 1e3,
                         flip)


def _device_of(network: torch.nn.Module) -> torch.device:
    """The device of a network's first parameter (the CPU for a network without parameters)."""
    return next((parameter.device for parameter in network.parameters()), torch.device("cpu"))


def _synchronize(device: torch.device) -> None:
    """Wait for the work queued on a CUDA device (nothing on other devices)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def choose_person(result: InspectResult, index: int | None) -> InspectResult:
    """The same result with person `index` (an index into `result.people`) chosen; WorkbenchError if out of range."""
    index = 0 if index is None else int(index)
    if not 0 <= index < len(result.people):
        raise WorkbenchError(f"there is no person #{index}: this image has {len(result.people)}. Pick one of the "
                             "menu.")
    return replace(result, chosen=index)


def person_choices(result: InspectResult) -> list[tuple[str, int]]:
    """(label, index) for the person menu: "#0 · score 0.87", best first, as drawn on the skeleton panel."""
    return [(f"#{index} · score {person.score:.2f}", index) for index, person in enumerate(result.people)]


def keypoints_in_original(result: InspectResult) -> np.ndarray:
    """Keypoints (17, 2) in the original (not downscaled) image's pixels."""
    return result.estimate.keypoints * result.image.scale


def keypoint_table(result: InspectResult) -> pd.DataFrame:
    """One row per joint: name, x and y in original image pixels, confidence (the heatmap peak)."""
    points = keypoints_in_original(result)
    return pd.DataFrame({"joint": JOINT_NAMES, "x": np.round(points[:, 0], 1), "y": np.round(points[:, 1], 1),
                         "confidence": np.round(result.estimate.scores, 3)})


def keypoints_json(result: InspectResult) -> list[dict]:
    """The pose as COCO keypoint results: image_id (the file's COCO id or 0), category_id 1, keypoints [x, y, score]
    * 17 in original image pixels, and score (mean joint score above 0.2, box score taken as 1)."""
    estimate = result.estimate
    triples = np.concatenate([keypoints_in_original(result), estimate.scores[:, None]], axis=1)
    width, height = estimate.box[2:] * result.image.scale
    box_score = result.people[result.chosen].box_score
    predictions = Predictions(np.array([result.image.image_id or 0]), triples[None], np.array([box_score]),
                              np.array([width * height]))
    return coco_results(predictions)


def status_text(result: InspectResult, device: torch.device) -> str:
    """Markdown: the model and whether it is trained, the image and box, the timings."""
    image = result.image
    lines = [f"**{result.label}**"]
    if not result.trained:
        lines.append("Untrained (random init): with random weights the keypoints are meaningless; the weight maps "
                     "show what the untrained blocks compute.")
    width, height = image.original_size
    size = f"{width}x{height} px"
    if image.scale != 1.0:
        working = image.pixels.shape
        size += f", downscaled to {working[1]}x{working[0]} (long side above {MAX_SIDE} px)"
    box = result.estimate.box * image.scale
    count = len(result.people)
    lines.append(f"Image {image.name}, {size}; {count} {'person' if count == 1 else 'people'} ({result.source}); "
                 f"shown: #{result.chosen}, box x, y, w, h = {', '.join(f'{v:.0f}' for v in box)}.")
    height, width = image.pixels.shape[:2]
    outside = int(((result.estimate.keypoints < 0) | (result.estimate.keypoints >= [width, height])).any(axis=1).sum())
    if min(width, height) < MIN_SIDE:
        lines.append(f"The image is only {width}x{height} px: too small to show a person, the keypoints mean little.")
    if outside:
        lines.append(f"{outside} of the 17 keypoints fall outside the image: the person is cut off, or there is no "
                     "person in the box.")
    passes = "two forward passes (flip test)" if result.flip else "one forward pass (no flip test)"
    lines.append(f"Inference {result.inference_ms:.0f} ms: crop, {passes} with the weight maps read during the "
                 f"first, decode; device {device}.")
    return "\n\n".join(lines)


def skeleton_image(result: InspectResult) -> np.ndarray:
    """Every person drawn with its number, and the chosen one's skeleton with its joint confidences (H, W, 3)."""
    others = [person for index, person in enumerate(result.people) if index != result.chosen]
    numbered = draw_people(result.image.pixels, list(result.people), highlight=result.chosen) if others else \
        result.image.pixels
    estimate = result.estimate
    title = f"{result.label}: person #{result.chosen} of {len(result.people)}"
    return drawing.figure_to_array(drawing.skeleton_figure(numbered, estimate.keypoints, estimate.scores,
                                                           estimate.box, title=title))


def weight_maps_image(result: InspectResult, location: str | None) -> np.ndarray | None:
    """The weight-map figure (H, W, 3) of one weighting function of the inspected model, None if it has none."""
    maps = location_maps(result.maps, location) if location else {}
    if not maps:
        return None
    splits = model_structure(result.model_key[0]).splits.get(location)
    figure = drawing.weight_maps_figure(location, maps, result.estimate.crop, splits)
    return drawing.figure_to_array(figure)


def panel_choices(result: InspectResult, location: str | None, layer: str | None) -> tuple[str | None, str | None]:
    """The weighting location and Grad-CAM layer that the panels of `result` show for the chosen ones: a choice the
    inspected model has is kept, None (or empty) means no panel, and any other (a menu left from another model) gives
    way to that model's default."""
    structure = model_structure(result.model_key[0])
    if location and location not in structure.locations:
        location = default_location(structure.locations)
    if layer and layer not in structure.layers:
        layer = default_layer(structure.layers)
    return location or None, layer or None


def gradcam_image(result: InspectResult, cache: ModelCache, joint: str, layer: str | None) -> np.ndarray | None:
    """Grad-CAM (H, W, 3) of the inspected model (the result's own, whatever model is chosen now) for `joint` (a
    JOINT_NAMES entry) at `layer`, over the crop. A layer that model does not have (a menu left from another model)
    gives way to its default layer, which the figure's title names; None for no layer."""
    if not layer:
        return None
    if joint not in JOINT_NAMES:
        raise WorkbenchError(f"unknown joint {joint!r}. Choose one of: {', '.join(JOINT_NAMES)}.")
    name, weights, checkpoint = result.model_key
    loaded = cache.get(name, weights, checkpoint)
    crop = to_tensor(result.estimate.crop)[None]
    with loaded.lock:
        layers = tuple(gradcam_layers(loaded.network))
        if layer not in layers:
            layer = default_layer(layers)
            if layer is None:
                return None
        cam = joint_gradcam(loaded.network, crop, JOINT_NAMES.index(joint), layer)[0]
    figure = drawing.map_over_crop_figure(result.estimate.crop, cam, f"Grad-CAM: {joint} at {layer}",
                                            "Grad-CAM (peak of the joint's heatmap)")
    return drawing.figure_to_array(figure)


@dataclass(frozen=True)
class InspectOutputs:
    """Every Inspect panel: status markdown, skeleton, keypoint table, heatmap grid, heatmaps over the crop,
    weight maps and Grad-CAM (RGB arrays; None where the model has nothing to show), and the download files."""

    status: str
    skeleton: np.ndarray
    table: pd.DataFrame
    heatmap_grid: np.ndarray
    merged: np.ndarray
    weight_maps: np.ndarray | None
    gradcam: np.ndarray | None
    files: list[str]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")


def inspect_outputs(result: InspectResult, cache: ModelCache, location: str | None, joint: str, layer: str | None,
                    folder: Path) -> InspectOutputs:
    """Draw every Inspect panel and write the downloads to `folder`: keypoints.json (COCO results), heatmaps.npy
    (17, h, w) float32, and each figure as PNG. `location` and `layer` go through `panel_choices`."""
    estimate = result.estimate
    location, layer = panel_choices(result, location, layer)
    skeleton = skeleton_image(result)
    grid = drawing.figure_to_array(drawing.heatmap_grid_figure(estimate.heatmaps, estimate.scores,
                                                                   title=result.label))
    merged = drawing.figure_to_array(drawing.merged_heatmaps_figure(estimate.crop, estimate.heatmaps))
    weight_maps = weight_maps_image(result, location)
    gradcam = gradcam_image(result, cache, joint, layer)
    files = [write_json_atomic(folder / "keypoints.json", keypoints_json(result), indent=1),
             write_atomic(folder / "heatmaps.npy",
                          lambda temporary: np.save(temporary, estimate.heatmaps.astype(np.float32)))]
    pictures = {"skeleton": skeleton, "heatmaps": grid, "heatmaps-over-crop": merged,
                f"weights-{_slug(location or '')}": weight_maps,
                f"gradcam-{_slug(joint)}-{_slug(layer or '')}": gradcam}
    for name, picture in pictures.items():
        if picture is not None:
            png = drawing.image_to_png(picture)
            files.append(write_atomic(folder / f"{name}.png", lambda temporary, png=png: temporary.write_bytes(png)))
    return InspectOutputs(status_text(result, cache.device), skeleton, keypoint_table(result), grid, merged,
                          weight_maps, gradcam, [str(path) for path in files])


def _locked_forward(loaded: LoadedModel, images: torch.Tensor) -> None:
    with loaded.lock, torch.inference_mode():
        loaded.network(images)


def forward_latencies(models: list[LoadedModel], images: torch.Tensor,
                      repeats: int = LATENCY_REPEATS) -> list[Timing]:
    """Wall time of one forward pass of each model on `images` (1, 3, H, W), timed interleaved (one call of each
    per round, see `workbench.speed.latency`) after one warm-up call each; CUDA work is synchronised before each reading."""
    device = model_device(models[0].network)
    images = images.to(device)
    calls = {str(index): partial(_locked_forward, loaded, images) for index, loaded in enumerate(models)}
    timings = time_interleaved(calls, repeats=repeats, warmup=1,
                               synchronize=torch.cuda.synchronize if device.type == "cuda" else None)
    return [timings[str(index)] for index in range(len(models))]


@dataclass(frozen=True)
class CompareOutputs:
    """The Compare panels: a latency table, and (image, caption) gallery items per model: skeletons, heatmaps over
    the crop, weight maps at the chosen location."""

    table: pd.DataFrame
    skeletons: list[tuple[np.ndarray, str]]
    heatmaps: list[tuple[np.ndarray, str]]
    weight_maps: list[tuple[np.ndarray, str]]


def compare(cache: ModelCache, inspected: InspectResult | None, names: list[str], location: str | None,
            flip: bool = True) -> CompareOutputs:
    """Run each model of `names` (with its default weights) on the person chosen in Inspect (same image, same box);
    the table gives each one's forward-pass latency on the first model's crop (median, min, max of the interleaved
    runs) and its inference time (crop, forward passes, with the flip test if `flip`, decoding)."""
    if not names:
        raise WorkbenchError("no models chosen. Tick at least one model to compare.")
    if inspected is None:
        raise WorkbenchError("nothing inspected yet: run Inspect on an image first, pick the person, then compare.")
    image, box = inspected.image, inspected.estimate.box
    source = f"person #{inspected.chosen} of Inspect"
    results = []
    for name in names:
        loaded = cache.get(name, best_weights(name))
        results.append((loaded, run_inspect(loaded, image, box[None], None, flip, source)))
    crop = to_tensor(results[0][1].estimate.crop)[None]
    timings = forward_latencies([loaded for loaded, _ in results], crop)
    rows, skeletons, heatmaps, weight_maps = [], [], [], []
    for (loaded, result), timing in zip(results, timings):
        estimate = result.estimate
        rows.append({"model": loaded.name, "weights": loaded.weights_label,
                     "parameters": count_parameters(loaded.network),
                     "forward ms (median)": round(timing.median_ms, 1), "min": round(timing.min_ms, 1),
                     "max": round(timing.max_ms, 1), "inference ms": round(result.inference_ms, 1),
                     "mean joint confidence": round(float(estimate.scores.mean()), 3)})
        skeletons.append((drawing.figure_to_array(drawing.skeleton_figure(
            image.pixels, estimate.keypoints, estimate.scores, estimate.box, title=result.label)), result.label))
        heatmaps.append((drawing.figure_to_array(drawing.merged_heatmaps_figure(
            estimate.crop, estimate.heatmaps, f"{loaded.name}: heatmaps over the crop")), result.label))
        maps = weight_maps_image(result, location)
        if maps is not None:
            weight_maps.append((maps, f"{result.label}: {location}"))
    return CompareOutputs(pd.DataFrame(rows), skeletons, heatmaps, weight_maps)
