"""Inside the weighting blocks, for the notebook `04_inside_csw`: a few people seen by several models (keypoints,
heatmaps, weight maps at chosen locations, Grad-CAM for every joint), the numbers that say what those pictures show,
and readings written from those numbers, so that they stay true whatever the weights.

Then the paper's motivating claim over a whole split: the like-for-like statistics of `workbench.interpret.claim`
(`split_claim`, `claim_tables`, `matched_reading`), the spatial weight at the joints (`joints_reading`), the
ablation of `workbench.evaluation.ablation` (`ablation_runs`, `ablation_frame`, `ablation_reading`: each group of
weighting functions replaced by its dataset mean or by 0.5, per stage and function by default because one evaluation
per weighting function is out of reach on a 2-core CPU), and what the data can carry (`data_statement`).

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
from workbench.interpret.claim import CROSS_MULTIPLIER, KIND_LABELS, KINDS, LOGIT_EPS, ROUNDS, SINGLE_CHANNEL, \
    SINGLE_SPATIAL, ClaimSamples, claim_samples, joint_contrast, like_for_like
from workbench.evaluation.ablation import MODES, AblationRun, ablate, estimated_seconds, first_instances, \
    weighting_groups
from workbench.common.paths import data_root
from workbench.data.coco import read_json
from workbench.zoo.manifest import read_manifest

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


# The claim like for like (`workbench.interpret.claim`), the ablation (`workbench.evaluation.ablation`), and what the
# data can carry: the notebook's second half.

DATA_DESCRIPTIONS = {"fashion-pose": "studio photos, one standing person each"}
"""What the sample data sets hold, by the first folder of their annotation file (for the readings)."""


def claim_dataset(eval_set: EvalSet, input_size: tuple[int, int] = (256, 192), limit: int | None = None):
    """The crops of the ground-truth people of `eval_set` (its first `limit` if given), for the claim and the
    ablation alike."""
    return first_instances(dataset_of(eval_set, tuple(input_size), ground_truth=True), limit)


def split_claim(models: Sequence[LoadedModel], eval_set: EvalSet, batch_size: int = 16,
                limit: int | None = None) -> dict[str, ClaimSamples]:
    """`claim_samples` of each model with weighting functions over the crops of `eval_set`, by model name."""
    samples = {}
    for loaded in models:
        network = loaded.network
        dataset = claim_dataset(eval_set, network.input_size, limit)
        with loaded.lock:
            found = claim_samples(network, DataLoader(dataset, batch_size=batch_size, shuffle=False))
        if found.maps:
            samples[loaded.name] = found
    return samples


def claim_pair(samples: Mapping[str, ClaimSamples]) -> list[str]:
    """The models to compare, Lite CSW-HRNet first: the model with spatial weights (M_s) before the one without;
    one name when only one model has weighting functions."""
    return sorted(samples, key=lambda name: not any(kind == SINGLE_SPATIAL for _, kind in samples[name].maps))[:2]


def claim_tables(samples: Mapping[str, ClaimSamples], level: str = "kind",
                 rounds: int = ROUNDS) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`like_for_like` and `joint_contrast` of the pair of `claim_pair` at `level` ("kind", "stage", "block")."""
    names = claim_pair(samples)
    pair = [samples[name] for name in names] + [None] * (2 - len(names))
    return (like_for_like(*pair, names=names, level=level, rounds=rounds),
            joint_contrast(*pair, names=names, level=level, rounds=rounds))


def _line(table: pd.DataFrame, kind: str, statistic: str) -> pd.Series | None:
    found = table[(table["kind"] == kind) & (table["statistic"] == statistic)]
    return None if found.empty else found.iloc[0]


def _value(row: pd.Series, name: str, percent: bool = False) -> str:
    scale, digits, unit = (100.0, 1, "%") if percent else (1.0, 3, "")
    if np.isnan(row[f"{name} low"]):
        return f"{scale * row[name]:.{digits}f}{unit}"
    return f"{scale * row[name]:.{digits}f}{unit} [{scale * row[f'{name} low']:.{digits}f}, " \
           f"{scale * row[f'{name} high']:.{digits}f}]"


def _sign(row: pd.Series) -> int:
    """+1 / -1 when the paired interval of the difference lies above / below zero, 0 when it holds zero."""
    if np.isnan(row["difference low"]):
        return 0
    return 1 if row["difference low"] > 0 else -1 if row["difference high"] < 0 else 0


def _label(kind: str) -> str:
    label = KIND_LABELS.get(kind, kind)
    return label[:1].upper() + label[1:]


def _compared(sign: int, more: str, less: str, alike: str) -> str:
    return more if sign > 0 else less if sign < 0 else alike


def _goes(count: int) -> str:
    return f"{count} goes" if count == 1 else f"{count} go"


def matched_reading(table: pd.DataFrame, split: str, rounds: int = ROUNDS) -> str:
    """Markdown: the like-for-like table (`claim_tables` at level "kind") in words, and how each matched comparison
    bears on the paper's claim (Lite-HRNet's weights saturate more and depend less on the image than CSW's)."""
    names = [c for c in table.columns[6:] if not c.endswith((" low", " high")) and c != "difference"]
    crops = int(table["images"].iloc[0]) if len(table) else 0
    lines = [f"**Measured over {split}** ({crops} crops; every map counts equally; in brackets the 95% bootstrap "
             f"interval over images, {rounds} rounds, paired for the difference between the models; saturated means "
             f"below {LOW} or above {HIGH}; spreads are standard deviations of the logit):"]
    verdicts = []
    for kind in KINDS:
        saturated, across = _line(table, kind, "saturated"), _line(table, kind, "across-image std (logit)")
        within, share = _line(table, kind, "within-image std (logit)"), _line(table, kind, "share across images")
        if saturated is None:
            continue
        if len(names) == 2 and not np.isnan(saturated[names[1]]):
            first, second = names
            lines.append(
                f"- {_label(kind)} ({saturated['maps']} blocks in both): saturated {_value(saturated, first, True)} "
                f"against {_value(saturated, second, True)}; one weight's spread across images "
                f"{_value(across, first)} against {_value(across, second)}, within one image {_value(within, first)} "
                f"against {_value(within, second)}; share of the spread across images {_value(share, first)} "
                f"against {_value(share, second)}. "
                + _compared(_sign(saturated), f"{first}'s weights saturate more than {second}'s",
                            f"{first}'s weights saturate less than {second}'s",
                            f"{first}'s and {second}'s weights saturate alike (the difference's interval holds 0)")
                + "; " + _compared(_sign(share), f"{first}'s share across images is higher",
                                   f"{first}'s share across images is lower",
                                   "their shares across images cannot be told apart") + ".")
            # the claim: Lite-HRNet's (second) saturate more (difference first - second below 0) and depend less on
            # the image (difference in the share above 0)
            verdicts += [-_sign(saturated), _sign(share)]
            mean = _line(table, kind, "mean weight")
            if kind == CROSS_MULTIPLIER and _sign(mean) < 0:
                lines.append(f"  {first}'s multiplier is a product of two sigmoids, whose mean weight is "
                             f"{_value(mean, first)} against {_value(mean, second)}: more of it falls below {LOW} "
                             "without either factor saturating. Spreads in logit space, and the share across images, "
                             "hardly depend on that scale.")
        else:
            lines.append(f"- {_label(kind)} ({saturated['maps']} blocks, {names[0]} alone): saturated "
                         f"{_value(saturated, names[0], True)}; spread across images {_value(across, names[0])}, "
                         f"within one image {_value(within, names[0])}; share across images "
                         f"{_value(share, names[0])}.")
    if verdicts:
        with_claim, against = verdicts.count(1), verdicts.count(-1)
        lines += ["", f"**What this says about the claim.** If {names[1]}'s weights were learned inadequately in "
                      f"the paper's sense, they would saturate more and depend less on the image than {names[0]}'s. "
                      f"Of the {len(verdicts)} like-for-like comparisons above (saturation and share across images, per "
                      f"matched kind), {_goes(with_claim)} the way the claim predicts, {_goes(against)} the other "
                      f"way, and {len(verdicts) - with_claim - against} cannot be told apart on these crops."]
    return "\n".join(lines)


def joints_reading(contrast: pd.DataFrame, split: str) -> str:
    """Markdown: the paper's reason (1) over the split (`claim_tables`' joint contrast at level "kind")."""
    names = [c for c in contrast.columns[6:] if not c.endswith((" low", " high")) and c != "difference"]
    lines = [f"**Reason (1), the joints, over {split}.** The mean spatial weight at the cells holding a labelled joint "
             "over the mean at the other cells (above 1: the weighting favours the joints):"]
    for kind in KINDS:
        ratio = _line(contrast, kind, "ratio")
        if ratio is None:
            continue
        if len(names) == 2 and not np.isnan(ratio[names[1]]):
            first, second = names
            lines.append(f"- {_label(kind)}, averaged over channels: {_value(ratio, first)} for {first}, "
                         f"{_value(ratio, second)} for {second}; "
                         + _compared(_sign(ratio), f"{first}'s favour the joints more than {second}'s",
                                     f"{first}'s favour the joints less than {second}'s",
                                     "this split cannot tell their preference for the joints apart")
                         + f" (difference {ratio['difference']:+.3f} [{ratio['difference low']:+.3f}, "
                           f"{ratio['difference high']:+.3f}]).")
        else:
            other = f" {names[1]} has no spatial weights here (its SE weights are constant over space)." \
                if len(names) == 2 else ""
            lines.append(f"- {_label(kind)}: {_value(ratio, names[0])} for {names[0]}.{other}")
    return "\n".join(lines)


def ablation_runs(models: Sequence[LoadedModel], eval_set: EvalSet, groupings: str | Sequence[str] = "stage-function",
                  rounds: int = ROUNDS, limit: int | None = None, batch_size: int = 32,
                  progress: bool = False) -> list[AblationRun]:
    """`ablate` of each model with weighting functions on the crops of `eval_set` (both replacements, no flip)."""
    runs = []
    for loaded in models:
        network = loaded.network
        if not weighting_groups(network, groupings):
            continue
        dataset = claim_dataset(eval_set, network.input_size, limit)
        with loaded.lock:
            runs.append(ablate(network, dataset, model=loaded.name, groupings=groupings, rounds=rounds,
                               batch_size=batch_size, progress=progress))
    return runs


def ablation_frame(runs: Sequence[AblationRun]) -> pd.DataFrame:
    """One line per model, group and replacement: the AP of the unmodified network and with the replacement, and
    the drop with its paired 95% bootstrap interval over images."""
    lines = []
    for run in runs:
        for item in run.ablations:
            lines.append({"model": item.model, "weighting functions replaced": item.group, "maps": item.maps,
                          "replaced by": item.mode, "AP": round(item.ap_full, 3),
                          "AP replaced": round(item.ap_replaced, 3),
                          "AP drop [95% interval]": f"{item.drop:+.3f} [{item.low:+.3f}, {item.high:+.3f}]",
                          "P(drop > 0)": round(item.drop_above_zero, 3)})
    return pd.DataFrame(lines)


MODE_WORDS = {"dataset mean": "its dataset mean", "constant 0.5": "the constant 0.5"}
GROUPING_WORDS = {"function": "each weighting function on its own",
                  "stage-kind": "stage, function (cross- or single-resolution) and kind of map",
                  "stage-function": "stage and function (the cross- or single-resolution functions of one stage "
                                    "together, M_c and M_s together)",
                  "all": "every weighting function at once"}


def _drops(run: AblationRun, mode: str, sign: int) -> list[str]:
    chosen = [item for item in run.ablations if item.mode == mode
              and (item.low > 0 if sign > 0 else item.high < 0 if sign < 0 else item.low <= 0 <= item.high)]
    return [f"{item.group} {item.drop:+.3f} [{item.low:+.3f}, {item.high:+.3f}]" for item in chosen]


def ablation_reading(runs: Sequence[AblationRun], models: Sequence[LoadedModel], threads: int,
                     batch_size: int = 32) -> str:
    """Markdown: what the ablation cost (one evaluation, the whole run, and what finer groups would take), and which
    weighting functions the networks lose AP without, model by model."""
    if not runs:
        return "No model has weighting functions to replace."
    networks = {loaded.name: loaded.network for loaded in models}
    groupings = ", then ".join(GROUPING_WORDS.get(g, g) for g in runs[0].groupings)
    costs = "; ".join(f"{run.baseline_seconds:.0f} s for {run.model}" for run in runs)
    total = sum(run.seconds for run in runs)
    finest = sum(estimated_seconds(networks[run.model], run.baseline_seconds, "function") for run in runs)
    functions = sum(len(weighting_groups(networks[run.model], "function")) for run in runs)
    lines = [f"**Cost.** One evaluation of the {runs[0].crops} crops (no flip, batch {batch_size}, {threads} "
             f"thread{'s' if threads != 1 else ''}) took {costs}. The ablation made "
             f"{sum(run.evaluations for run in runs)} evaluations, with their bootstraps, in {total / 60:.1f} minutes. "
             f"Each of the {functions} weighting functions on its own, with both replacements, would take about "
             f"{finest / 60:.0f} minutes of evaluations here, so the functions are replaced per {groupings}.", "",
             "**What each network loses** (AP drop, unmodified minus replaced, 95% paired bootstrap interval over "
             "images):"]
    for run in runs:
        for mode in MODES:
            lost, gained, none = _drops(run, mode, 1), _drops(run, mode, -1), _drops(run, mode, 0)
            parts = []
            if lost:
                parts.append("loses AP without " + ", ".join(lost))
            if gained:
                parts.append("gains AP without " + ", ".join(gained))
            if none:
                parts.append("no drop the interval tells from zero for " + ", ".join(none))
            if parts:
                lines.append(f"- {run.model}, each group replaced by {MODE_WORDS.get(mode, mode)}: "
                             + "; ".join(parts) + ".")
    if len(runs) > 1:
        counts = [f"{_count(len(_drops(run, mode, 1)), 'group', 'groups')} of {len(run.ablations) // len(MODES)} "
                  f"for {run.model}" for mode in MODES for run in runs]
        half = len(runs)
        lines.append(f"- Counted: replaced by its dataset mean, a group costs AP (interval above zero) in "
                     f"{', '.join(counts[:half])}; replaced by 0.5, in {', '.join(counts[half:])}.")
    lines += ["", "A weighting whose replacement by its dataset mean costs nothing computes, in effect, a constant: "
                  "what it learned is the average pattern, not a weight conditioned on the image. The constant 0.5 "
                  "(every sigmoid at its midpoint; CSW's M_c (x) M_s is then 0.25) also removes that pattern and "
                  "rescales the features in a way the layers after it never saw in training, so its drop says how "
                  "much the network leans on the weighting at all, not how well the weighting was learned."]
    return "\n".join(lines)


def _run_record(name: str) -> dict:
    entry = next((e for e in read_manifest() if e.name == name), None)
    return entry.run if entry is not None else {}


def _training_set(train: str) -> str:
    """The data set of a training annotation file as the manifest records it: the first folder of a path relative to
    the data folder ("fashion-pose"), else the file's name (never a path of the machine that trained)."""
    if not train:
        return "unknown data"
    path = Path(train)
    return path.parts[0] if not path.is_absolute() and len(path.parts) > 1 else path.name


def data_statement(models: Sequence[LoadedModel], crops: int, split: str) -> str:
    """Markdown: what the weights were trained on (from the manifest: photos, epochs, seeds), what the crops are,
    and what would settle the question; written from the manifest and the data files, so it follows the weights."""
    lines = ["**What these numbers can carry.**"]
    sets, seeds = set(), {}
    for loaded in models:
        if not loaded.trained:
            lines.append(f"- {loaded.name}: untrained (random initialisation).")
            continue
        run = _run_record(loaded.weights)
        train = str((run.get("data") or {}).get("train", ""))
        folder = _training_set(train)
        sets.add(folder)
        photos = ""
        if train and (data_root() / train).is_file():
            photos = f"{len(read_json(data_root() / train, 'training annotations').get('images', [])):,} photos of "
        runs = [e for e in read_manifest() if e.model == loaded.name and
                str((e.run.get("data") or {}).get("train", "")) == train]
        seeds[loaded.name] = len({e.run.get("seed") for e in runs}) or 1
        described = DATA_DESCRIPTIONS.get(folder, "")
        lines.append(f"- {loaded.name} (`{loaded.weights}`): {run.get('epochs', '?')} epochs on {photos}{folder}"
                     + (f" ({described})" if described else "") + f", seed {run.get('seed', '?')}; "
                     f"{seeds[loaded.name]} trained run{'s' if seeds[loaded.name] != 1 else ''} of this model on "
                     "these data in the manifest.")
    coco = any("coco" in folder.lower() or "2017" in folder for folder in sets)
    one_seed = all(count == 1 for count in seeds.values())
    lines.append(f"- The statistics and the ablation use {crops} crops of {split}; the intervals cover the choice of "
                 "these crops only" + (", not the spread between training runs: one seed per model, so a second "
                                        "seed could move any number here" if one_seed else "") + ".")
    if not coco:
        lines.append("- None of these weights saw COCO, where the paper makes its claim about Lite-HRNet's weights.")
    lines += ["", "**What would settle the question**: the same tables and ablation for weights trained on COCO "
                  "train2017 with the paper's recipe, several seeds per model (so that the spread between runs is "
                  "measured, not assumed), on the crops of COCO val2017 (set `split`, `split_limit` and the models' "
                  "weights accordingly)."]
    return "\n".join(lines + _untrained_note(models))


def claim_method(samples: Mapping[str, ClaimSamples], split: str, rounds: int = ROUNDS) -> str:
    """Markdown: what the like-for-like tables compare and how each number is measured (thresholds, logit space,
    averaging, intervals), with the counts of matched blocks of the models in `samples` over `split`."""
    names = claim_pair(samples)
    lines = [f"**What is compared, over {split}.** Each statistic sets side by side what plays the same part in the "
             "same block:"]
    lines += [f"- {_label(kind)}" for kind in KINDS]
    if len(names) == 2:
        first, second = (samples[name] for name in names)
        shared = [key for key in first.maps if key in second.maps]
        left = [key for key in second.maps if key not in first.maps]
        lines.append(f"\nOnly blocks both networks have: {sum(k[1] == SINGLE_CHANNEL for k in shared)} single-resolution "
                     f"and {sum(k[1] == CROSS_MULTIPLIER for k in shared)} cross-resolution functions; "
                     f"{len(left)} of {names[1]}'s, in blocks {names[0]} does not have, are left out.")
    lines += ["", f"*Saturated*: a weight below {LOW} or above {HIGH}. *Spreads* are standard deviations of the logit "
                  f"log(w / (1 - w)) (weights clipped to [{LOGIT_EPS:g}, 1 - {LOGIT_EPS:g}]), where a saturated "
                  "weight keeps its spread instead of being squeezed by the sigmoid: *across images*, the root of the "
                  "mean over a map's entries of each entry's variance over images; *within one image*, the root of "
                  "the mean over images of the variance over the map's entries; the *share across images* is "
                  "across² / (across² + within²): 0 for a fixed pattern that ignores the image, 1 for a map that "
                  "moves as a whole with it. Every map counts equally in an average. In brackets: 95% percentile "
                  f"bootstrap intervals over images ({rounds} rounds), the same draws for both models, so that the "
                  "difference's interval is paired."]
    return "\n".join(lines)
