"""Inside the weighting blocks, for the notebook `04_inside_csw`: a few people seen by several models (keypoints,
heatmaps, weight maps at chosen locations, Grad-CAM for every joint), the numbers that say what those pictures show,
and readings written from those numbers, so that they stay true whatever the weights.

Models come from the zoo's cache (`workbench.zoo.cache`: the best manifest weights, else the seeded random
initialisation, labelled untrained).
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch.utils.data import DataLoader, Subset

from model import FIRST_STAGE, location_maps
from workbench.interpret import drawing
from workbench.interpret.structure import model_structure
from workbench.zoo.cache import LoadedModel, ModelCache, best_weights
from workbench.data.transforms import to_tensor, transform_points
from workbench.evaluation.sets import EvalSet, dataset_of, evaluation_sets
from workbench.interpret.gradcam import gradcam_layers, joint_gradcam
from workbench.data.images import read_image
from workbench.inference import PoseEstimate, estimate_pose, model_device
from workbench.data.keypoints import JOINT_NAMES
from workbench.interpret.weight_stats import HIGH, LOW, WeightMapStats, weight_statistics

CAM_RADIUS_FRACTION = 1 / 16
"""A Grad-CAM peak "at its joint" lies within this fraction of the crop height of it (16 px at 256x192)."""
SAME_BAND = 0.05
"""Values within 5% of each other (ratios within 5% of 1) read as "about the same"."""


@dataclass(frozen=True)
class Person:
    """One annotated person: the set it comes from, its image file and id, box (x, y, w, h) and joints (17, 3) as
    (x, y, labelled flag) in image pixels."""

    set_name: str
    image: Path
    image_id: int
    box: np.ndarray
    joints: np.ndarray

    @property
    def name(self) -> str:
        """"<set> image <id>"."""
        return f"{self.set_name} image {self.image_id}"


def pick_people(set_names: Sequence[str], per_set: int, root: str | Path | None = None) -> list[Person]:
    """The `per_set` people of each set with the most labelled joints (then the largest boxes), one per image."""
    people = []
    for eval_set in evaluation_sets(set_names, root=root):
        dataset = dataset_of(eval_set, (256, 192), ground_truth=True)
        ranked = sorted(dataset.instances,
                        key=lambda i: (-int((i.joints[:, 2] > 0).sum()), -float(i.box[2] * i.box[3])))
        seen: set[int] = set()
        for instance in ranked:
            if len(seen) == per_set:
                break
            if instance.image_id not in seen:
                seen.add(instance.image_id)
                image = eval_set.images / dataset.images[instance.image_id].file_name
                people.append(Person(eval_set.name, image, instance.image_id, instance.box, instance.joints))
    return people


def load_models(names: Sequence[str], device: str = "cpu") -> list[LoadedModel]:
    """Each model of `names` with its best manifest weights, or untrained if it has none (as the app shows it)."""
    cache = ModelCache(torch.device(device), capacity=len(names))
    return [cache.get(name, best_weights(name)) for name in names]


def default_cam_layer(network: torch.nn.Module) -> str:
    """The Grad-CAM layer shown by default: the highest-resolution branch of the last stage, else the last layer."""
    layers = list(gradcam_layers(network))
    last_stage = f"stage {FIRST_STAGE + 2} branch 0"
    return next((name for name in layers if name.startswith(last_stage)), layers[-1])


@dataclass
class Look:
    """One model's look at one person: the estimate, every weight map of the crop by probe name (batch dimension
    removed), the person's joints in crop pixels (17, 2) with their labelled flags (17,), and Grad-CAM (17, H, W)
    of every joint at `cam_layer`."""

    loaded: LoadedModel
    person: Person
    estimate: PoseEstimate
    maps: dict[str, np.ndarray]
    joints: np.ndarray
    labelled: np.ndarray
    cams: np.ndarray
    cam_layer: str


def look(loaded: LoadedModel, person: Person, cam_layer: str | None = None) -> Look:
    """Run `loaded` on `person`: pose, the weight maps of its crop, and Grad-CAM of each of the 17 joints."""
    network = loaded.network
    layer = cam_layer or default_cam_layer(network)
    with loaded.lock:
        estimate = estimate_pose(network, person.image, person.box, weight_maps=True)
        crop = to_tensor(estimate.crop)[None].to(model_device(network))
        cams = np.concatenate([joint_gradcam(network, crop, joint, layer) for joint in range(len(JOINT_NAMES))])
    return Look(loaded, person, estimate, estimate.weight_maps, transform_points(person.joints[:, :2], estimate.matrix),
                person.joints[:, 2] > 0, cams, layer)


def look_all(models: Sequence[LoadedModel], people: Sequence[Person], cam_layer: str | None = None) -> list[Look]:
    """`look` of every model at every person, person by person."""
    return [look(loaded, person, cam_layer) for person in people for loaded in models]


def by_person(looks: Sequence[Look]) -> list[list[Look]]:
    """The looks grouped by person (all models of one person together), in order."""
    groups: dict[str, list[Look]] = {}
    for item in looks:
        groups.setdefault(item.person.name, []).append(item)
    return list(groups.values())


def models_status(models: Sequence[LoadedModel]) -> str:
    """Markdown: the weights each model runs with."""
    return "\n".join(f"- {m.name}: {m.weights_label}" + ("" if m.trained else " (no trained weights in the "
                                                                              "manifest yet)") for m in models)


def side_by_side(figures: Sequence[Figure], title: str = "") -> Figure:
    """Several figures rendered and set in one row, e.g. the same picture for two models."""
    pictures = [drawing.figure_to_array(figure) for figure in figures]
    height = max(picture.shape[0] for picture in pictures)
    width = sum(picture.shape[1] for picture in pictures)
    combined = Figure(figsize=(width / 100, height / 100 + (0.3 if title else 0.0)), dpi=100, layout="constrained")
    FigureCanvasAgg(combined)
    for axes, picture in zip(combined.subplots(1, len(pictures), squeeze=False)[0], pictures):
        axes.imshow(picture)
        axes.set_axis_off()
    if title:
        combined.suptitle(title, fontsize=11)
    return combined


def skeletons_figure(looks: Sequence[Look]) -> Figure:
    """The keypoints each model found for one person, side by side over the whole image."""
    image = read_image(looks[0].person.image)
    return side_by_side([drawing.skeleton_figure(image, item.estimate.keypoints, item.estimate.scores,
                                                   item.estimate.box, title=item.loaded.label, width=5.0)
                         for item in looks])


def heatmaps_figure(looks: Sequence[Look]) -> Figure:
    """The 17 heatmaps each model computed for one person, side by side."""
    return side_by_side([drawing.heatmap_grid_figure(item.estimate.heatmaps, item.estimate.scores,
                                                       title=item.loaded.label) for item in looks])


def weight_maps_figure(looks: Sequence[Look], location: str) -> Figure | None:
    """The weight maps of the weighting function at `location` (a probe name without its kind, e.g.
    "stage3/module0/block0/cross") in each model that has one, side by side; None if none has."""
    figures = []
    for item in looks:
        maps = location_maps(item.maps, location)
        if maps:
            splits = model_structure(item.loaded.name).splits.get(location)
            figure = drawing.weight_maps_figure(location, maps, item.estimate.crop, splits)
            figure.suptitle("\n".join(filter(None, [item.loaded.label, figure.get_suptitle()])), fontsize=9)
            figures.append(figure)
    return side_by_side(figures) if figures else None


def gradcam_figure(item: Look, columns: int = 6) -> Figure:
    """Grad-CAM of every joint over the crop, the joint's labelled position ringed in white."""
    rows = -(-len(JOINT_NAMES) // columns)
    height, width = item.estimate.crop.shape[:2]
    figure = Figure(figsize=(columns * 1.5, rows * 1.5 * height / width + 0.4), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    for index, axes in enumerate(figure.subplots(rows, columns, squeeze=False).flat):
        axes.set_axis_off()
        if index >= len(JOINT_NAMES):
            continue
        axes.imshow(drawing.overlay(item.estimate.crop, item.cams[index], 0.0, 1.0))
        if item.labelled[index]:
            axes.scatter(*item.joints[index], s=40, facecolors="none", edgecolors="white", linewidths=1.2)
        axes.set_title(JOINT_NAMES[index], fontsize=7)
    figure.suptitle(f"{item.loaded.label}: Grad-CAM per joint at {item.cam_layer}", fontsize=9)
    return figure


def _sample(values: np.ndarray, points: np.ndarray, crop_size: tuple[int, int]) -> np.ndarray:
    """Values of a map (h, w) at crop pixels (K, 2) as (x, y), from the map cell each falls in."""
    height, width = values.shape
    columns = np.clip((points[:, 0] * width / crop_size[1]).astype(int), 0, width - 1)
    rows = np.clip((points[:, 1] * height / crop_size[0]).astype(int), 0, height - 1)
    return values[rows, columns]


def spatial_map(maps: Mapping[str, np.ndarray]) -> np.ndarray | None:
    """The spatial weights (h, w) of one weighting function: M_s, or Lite-HRNet's cross-resolution weights averaged
    over channels; None for SE weights (no spatial extent)."""
    if "spatial" in maps:
        return maps["spatial"].reshape(maps["spatial"].shape[-2:])
    if "weights" in maps:
        return maps["weights"].mean(axis=0)
    return None


def channel_weights(maps: Mapping[str, np.ndarray]) -> np.ndarray:
    """The channel weights (C,) of one weighting function: M_c or SE weights, or Lite-HRNet's cross-resolution
    weights averaged over positions."""
    return maps["channel"] if "channel" in maps else maps["weights"].mean(axis=(1, 2))


def weight_map_frame(looks: Sequence[Look], locations: Sequence[str]) -> pd.DataFrame:
    """Per look and location: the spatial weights at the labelled joints over their mean on the crop (above 1: the
    map favours the joints), the spread of the channel weights in this image (std across channels), and the
    percentage of all its weights saturated below 0.05 or above 0.95."""
    lines = []
    for item in looks:
        crop_size = item.estimate.crop.shape[:2]
        for location in locations:
            maps = location_maps(item.maps, location)
            if not maps:
                continue
            spatial = spatial_map(maps)
            values = np.concatenate([np.ravel(value) for value in maps.values()])
            contrast = np.nan
            if spatial is not None and item.labelled.any():
                contrast = float(_sample(spatial, item.joints[item.labelled], crop_size).mean() / spatial.mean())
            lines.append({"model": item.loaded.name, "person": item.person.name, "location": location,
                          "kinds": ", ".join(maps), "spatial weight at joints / mean": round(contrast, 3),
                          "channel weight std": round(float(channel_weights(maps).std()), 4),
                          "saturated (%)": round(100.0 * float(((values < LOW) | (values > HIGH)).mean()), 1)})
    return pd.DataFrame(lines)


def look_frame(looks: Sequence[Look]) -> pd.DataFrame:
    """Per look: the mean joint confidence, and where each joint's Grad-CAM peaks against that joint's labelled
    position: the median distance in crop pixels and the percentage of labelled joints within 1/16 of the crop
    height (a flat map, with no peak, counts as a miss); and how many labelled joints have a flat map."""
    lines = []
    for item in looks:
        height, width = item.estimate.crop.shape[:2]
        flat = item.cams.reshape(len(item.cams), -1)
        peaked = (flat.max(axis=1) - flat.min(axis=1) > 1e-6) & item.labelled
        where = flat.argmax(axis=1)
        peaks = np.stack([where % width, where // width], axis=1).astype(np.float64)
        distances = np.linalg.norm(peaks - item.joints, axis=1)[peaked]
        labelled = int(item.labelled.sum())
        lines.append({
            "model": item.loaded.name, "weights": item.loaded.weights_label, "person": item.person.name,
            "labelled joints": labelled, "mean joint confidence": round(float(item.estimate.scores.mean()), 3),
            "flat Grad-CAM (joints)": labelled - int(peaked.sum()),
            "Grad-CAM peak to joint, median (px)": round(float(np.median(distances)), 1) if distances.size else np.nan,
            "Grad-CAM peak at its joint (%)":
                round(100.0 * float((distances <= CAM_RADIUS_FRACTION * height).sum()) / labelled, 1) if labelled
                else np.nan,
        })
    return pd.DataFrame(lines)


def _count(number: int, one: str, many: str) -> str:
    return f"{number} {one if number == 1 else many}"


def _at_joints(ratio: float) -> str:
    if np.isnan(ratio):
        return "not measurable"
    if ratio > 1.0 + SAME_BAND:
        return "higher at the joints than on average"
    if ratio < 1.0 - SAME_BAND:
        return "lower at the joints than on average"
    return "about the same at the joints as on average"


def _relation(value: float, other: float) -> str:
    if abs(value - other) <= SAME_BAND * max(abs(value), abs(other)):
        return "about as much as"
    return "more than" if value > other else "less than"


def _untrained_note(models: Sequence[LoadedModel]) -> list[str]:
    untrained = [m.name for m in models if not m.trained]
    if not untrained:
        return []
    return ["", f"**{', '.join(untrained)}: untrained** (random initialisation; no trained weights in the manifest "
                "yet). These numbers describe what the blocks compute before any learning; they test nothing the "
                "paper claims about learned weights until trained weights are in the manifest."]


def reading(looks: Sequence[Look], maps: pd.DataFrame, cams: pd.DataFrame) -> str:
    """Markdown: what to look at in the pictures, and what the numbers of `weight_map_frame` (`maps`) and
    `look_frame` (`cams`) say, model by model."""
    models = list({item.loaded.name: item.loaded for item in looks}.values())
    radius = CAM_RADIUS_FRACTION * looks[0].estimate.crop.shape[0]
    lines = ["**What to look at.** In the spatial maps (M_s; Lite-HRNet's cross-resolution weights averaged over "
             "channels), whether the high weights sit on the person and its joints or spread over the background. "
             "In the channel bars (M_c; Lite-HRNet's SE weights), whether a few channels are switched on and the "
             "rest off, or all sit near one value. In Grad-CAM, whether each joint's map peaks at that joint (white "
             "ring). In the heatmaps, one sharp peak per joint.", "",
             f"**What the numbers say** ({_count(len({item.person.name for item in looks}), 'person', 'people')}):"]
    for loaded in models:
        mine, cam = maps[maps["model"] == loaded.name], cams[cams["model"] == loaded.name]
        contrast = float(mine["spatial weight at joints / mean"].mean())
        labelled, flat = int(cam["labelled joints"].sum()), int(cam["flat Grad-CAM (joints)"].sum())
        if flat == labelled:
            gradcam = "Grad-CAM is flat for every labelled joint (no location raises the joint's peak)"
        else:
            gradcam = (f"Grad-CAM peaks within {radius:.0f} px of its joint for "
                       f"{float(cam['Grad-CAM peak at its joint (%)'].mean()):.0f}% of the labelled joints (median "
                       f"distance {float(cam['Grad-CAM peak to joint, median (px)'].mean()):.0f} px"
                       + (f"; flat for {flat} of {labelled}" if flat else "") + ")")
        lines.append(
            f"- {loaded.label}: spatial weights at the labelled joints are {contrast:.2f} times their mean over the "
            f"crop ({_at_joints(contrast)}); the channel weights of one image spread with a standard deviation of "
            f"{float(mine['channel weight std'].mean()):.3f}, and {float(mine['saturated (%)'].mean()):.1f}% of all "
            f"weights are saturated; {gradcam}; mean joint confidence "
            f"{float(cam['mean joint confidence'].mean()):.2f}.")
    return "\n".join(lines + _untrained_note(models))


def split_batches(eval_set: EvalSet, input_size: tuple[int, int] = (256, 192), batch_size: int = 16,
                  limit: int | None = None) -> Iterator[torch.Tensor]:
    """Normalised crops (N, 3, H, W) of the ground-truth people of `eval_set` (the first `limit` if given)."""
    dataset = dataset_of(eval_set, input_size, ground_truth=True)
    chosen = Subset(dataset, range(min(limit, len(dataset)))) if limit else dataset
    for batch in DataLoader(chosen, batch_size=batch_size, shuffle=False):
        yield batch["image"]


def split_statistics(models: Sequence[LoadedModel], eval_set: EvalSet, batch_size: int = 16,
                     limit: int | None = None) -> dict[str, list[WeightMapStats]]:
    """`weight_statistics` of each model over the crops of `eval_set`, by model name."""
    statistics = {}
    for loaded in models:
        network = loaded.network
        device = model_device(network)
        batches = (images.to(device) for images in split_batches(eval_set, network.input_size, batch_size, limit))
        with loaded.lock:
            statistics[loaded.name] = weight_statistics(network, batches)
    return statistics


def claim_reading(statistics: Mapping[str, list[WeightMapStats]], models: Sequence[LoadedModel], split: str) -> str:
    """Markdown: the paper's claim that Lite-HRNet learns its weights inadequately, set against the measured
    saturation and variation of each model's weights over `split` (every weight map counted equally)."""
    lines = ["**The claim.** The paper says Lite-HRNet's conditional weights are learned inadequately. If so, they "
             "should sit saturated near 0 or 1, or barely change from image to image (a constant rather than a "
             "conditional weight), more than Lite CSW-HRNet's do.", "",
             f"**Measured over {split}** (each weight map counted equally):"]
    summary = {}
    for loaded in models:
        stats = statistics.get(loaded.name, [])
        if not stats:
            lines.append(f"- {loaded.label}: no weighting functions.")
            continue
        summary[loaded.name] = (float(np.mean([s.near_0 + s.near_1 for s in stats])),
                                float(np.mean([s.across_image_std for s in stats])),
                                float(np.mean([s.within_image_std for s in stats])))
        saturated, across, within = summary[loaded.name]
        lines.append(f"- {loaded.label} ({len(stats)} maps over {stats[0].images} crops): {100 * saturated:.1f}% of "
                     f"the weights saturated; one weight varies from image to image with a standard deviation of "
                     f"{across:.4f}; within one image the weights vary by {within:.4f}.")
    if len(summary) == 2:
        (first, (s1, a1, _)), (second, (s2, a2, _)) = summary.items()
        lines += ["", f"On these measures {first}'s weights saturate {_relation(s1, s2)} {second}'s and vary "
                      f"{_relation(a1, a2)} {second}'s from image to image."]
    return "\n".join(lines + _untrained_note(models))
