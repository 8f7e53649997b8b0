"""Evaluation on a COCO keypoint dataset: predictions over a DataLoader (a model, or the ground-truth round trip),
COCO results with rescoring and OKS NMS, COCOeval metrics over every readable image of the dataset, per-joint error
statistics."""
from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch.utils.data import DataLoader
from tqdm import tqdm

from workbench.data.dataset import CocoKeypoints
from workbench.codec import HEATMAP_STRIDE, combine_flip, decode_heatmaps, encode_heatmaps, heatmap_to_image
from workbench.data.transforms import hflip_matrix, transform_points
from workbench.common.errors import WorkbenchError
from workbench.inference import Model, oks_nms, predict_heatmaps, rescore
from workbench.data.keypoints import FLIP_INDEX, JOINT_NAMES, NUM_JOINTS, OKS_SIGMAS
from workbench.common.stop_signals import ignore_interrupts

METRIC_NAMES = ("AP", "AP50", "AP75", "APM", "APL", "AR", "AR50", "AR75", "ARM", "ARL")
"""The ten numbers of COCOeval's keypoint summary, in its order (fractions in [0, 1])."""
EMPTY_RESULTS_MESSAGE = ("no predictions to evaluate: every metric is reported as 0 "
                         "(pycocotools cannot evaluate an empty result set)")


@dataclass
class Predictions:
    """Decoded poses of a dataset's instances.

    image_ids (N,); keypoints (N, 17, 3) as x, y in image pixels and the joint score; box_scores (N,);
    areas (N,) padded box area in pixels^2 (the OKS NMS scale); unreadable: image id -> message for images that
    could not be read (their instances are absent).
    """

    image_ids: np.ndarray
    keypoints: np.ndarray
    box_scores: np.ndarray
    areas: np.ndarray
    unreadable: dict[int, str] = field(default_factory=dict)


def predict_dataset(model: Model, dataset: CocoKeypoints, *, flip: bool = True, decode: str = "standard",
                    batch_size: int = 32, workers: int = 0, progress: bool = True) -> Predictions:
    """Run `model` over every instance crop of `dataset` (flip test by default) and decode the poses."""
    return _collect(dataset, lambda batch: predict_heatmaps(model, batch["image"], flip), decode, batch_size,
                    workers, progress)


def round_trip(dataset: CocoKeypoints, *, flip: bool = True, decode: str = "standard", batch_size: int = 32,
               workers: int = 0, progress: bool = False) -> Predictions:
    """Decode the ground truth through the inference path in place of a model's output.

    Each crop's "prediction" is its training target (the joints through the crop transform, rendered as Gaussians);
    with `flip`, the mirrored crop's target (joints mirrored and swapped, as the flip augmentation does) goes
    through the flip-back and averaging of the flip test. Decoding and back-projection are the model path's.
    An AP near 1 shows that targets, crops, flips and back-projection agree.
    """
    if dataset.from_detections or not dataset.with_targets or dataset.train:
        raise WorkbenchError("the round trip needs ground-truth boxes, targets and no augmentation: build the "
                             "dataset without detections, with with_targets=True and train=False.")
    return _collect(dataset, lambda batch: _ground_truth_heatmaps(batch, dataset, flip), decode, batch_size,
                    workers, progress)


def _ground_truth_heatmaps(batch: dict[str, Any], dataset: CocoKeypoints, flip: bool) -> torch.Tensor:
    """The batch's targets (N, 17, h, w), flip-tested against the targets of the mirrored crops if `flip`."""
    if not flip:
        return batch["target"]
    mirror = hflip_matrix(dataset.input_size[1])
    mirrored = [encode_heatmaps(transform_points(joints, mirror)[list(FLIP_INDEX)] / HEATMAP_STRIDE,
                                  visible[list(FLIP_INDEX)], dataset.heatmap_size, dataset.sigma, dataset.encoding)[0]
                for joints, visible in zip(batch["joints"].numpy(), batch["visible"].numpy())]
    return combine_flip(batch["target"], torch.from_numpy(np.stack(mirrored)), FLIP_INDEX)


def _collect(dataset: CocoKeypoints, heatmaps_of: Callable[[dict[str, Any]], torch.Tensor], decode: str,
             batch_size: int, workers: int, progress: bool) -> Predictions:
    """Heatmaps of every readable instance -> Predictions; unreadable images are recorded, not raised."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                        pin_memory=torch.cuda.is_available(), worker_init_fn=ignore_interrupts)
    image_ids, keypoints, box_scores, areas, unreadable = [], [], [], [], {}
    with tqdm(total=len(dataset), unit="crop", disable=not progress, desc="predict") as bar:
        for batch in loader:
            valid = batch["valid"].numpy()
            for image_id, message in zip(batch["image_id"][~valid].tolist(), np.array(batch["error"])[~valid]):
                unreadable[image_id] = str(message)
            bar.update(len(valid))
            if not valid.any():
                continue
            keep = torch.from_numpy(valid)
            batch = {key: value[keep] for key, value in batch.items() if isinstance(value, torch.Tensor)}
            coords, scores = decode_heatmaps(heatmaps_of(batch).numpy(), decode)
            points = heatmap_to_image(coords, batch["matrix"].numpy())
            image_ids.append(batch["image_id"].numpy())
            keypoints.append(np.concatenate([points, scores[..., None]], axis=2))
            box_scores.append(batch["score"].numpy())
            areas.append(batch["box_size"].numpy().prod(axis=1))
    if not image_ids:
        return Predictions(np.zeros(0, np.int64), np.zeros((0, NUM_JOINTS, 3)), np.zeros(0), np.zeros(0), unreadable)
    return Predictions(np.concatenate(image_ids), np.concatenate(keypoints), np.concatenate(box_scores),
                       np.concatenate(areas), unreadable)


def coco_results(predictions: Predictions, *, category_id: int = 1, vis_threshold: float = 0.2,
                 oks_threshold: float = 0.9) -> list[dict[str, Any]]:
    """COCO keypoint results (the submission format: image_id, category_id, keypoints [x, y, score] * 17, score).

    Each pose is rescored (box score times the mean joint score above `vis_threshold`), then OKS NMS at
    `oks_threshold` runs per image.
    """
    scores = rescore(predictions.box_scores, predictions.keypoints[..., 2], vis_threshold)
    results = []
    for image_id in np.unique(predictions.image_ids):
        members = np.nonzero(predictions.image_ids == image_id)[0]
        kept = members[oks_nms(predictions.keypoints[members, :, :2], scores[members], predictions.areas[members],
                               oks_threshold)]
        results.extend({"image_id": int(image_id), "category_id": category_id,
                        "keypoints": np.round(predictions.keypoints[i], 3).reshape(-1).tolist(),
                        "score": float(scores[i])} for i in kept)
    return results


def has_keypoint_annotations(coco: dict) -> bool:
    """Whether an annotation file has ground-truth keypoints to evaluate against (test-dev image info has none)."""
    return any(annotation.get("num_keypoints", 0) > 0 for annotation in coco.get("annotations", []))


def _quietly(function: Callable[[], Any]) -> Any:
    """Call `function` with pycocotools' progress prints silenced."""
    with contextlib.redirect_stdout(io.StringIO()):
        return function()


def evaluate_keypoints(coco: dict, results: list[dict[str, Any]],
                       image_ids: list[int] | None = None) -> dict[str, Any]:
    """COCOeval keypoint metrics of `results` against the annotation file contents `coco`.

    Returns the ten METRIC_NAMES (None where COCOeval has no ground truth, e.g. APM without medium persons),
    "per_joint" statistics and, for an empty result set, zeros and a "message". `image_ids` restricts the
    evaluation (default: every image of the file).
    """
    annotations = coco.get("annotations", [])
    if not has_keypoint_annotations(coco) or any("area" not in a or "num_keypoints" not in a for a in annotations):
        raise WorkbenchError("the annotation file has no keypoint ground truth to evaluate against (every annotation "
                             "needs keypoints, num_keypoints and area). For test-dev, submit the results file instead.")
    if not results:
        return {**{name: 0.0 for name in METRIC_NAMES}, "per_joint": {}, "message": EMPTY_RESULTS_MESSAGE}
    evaluator = _matched(coco, results, image_ids)
    _quietly(evaluator.accumulate)
    _quietly(evaluator.summarize)
    metrics: dict[str, Any] = {name: (None if value < 0 else float(value))
                               for name, value in zip(METRIC_NAMES, evaluator.stats)}
    metrics["per_joint"] = per_joint_statistics(evaluator)
    return metrics


def _matched(coco: dict, results: list[dict[str, Any]], image_ids: list[int] | None) -> COCOeval:
    """A keypoint COCOeval of `results` (non-empty) against `coco` over `image_ids` (default all), matched per
    image (`evaluate`), not yet accumulated."""
    ground_truth = COCO()
    ground_truth.dataset = coco
    _quietly(ground_truth.createIndex)
    detections = _quietly(lambda: ground_truth.loadRes([dict(result) for result in results]))
    evaluator = COCOeval(ground_truth, detections, "keypoints")
    if image_ids is not None:
        evaluator.params.imgIds = sorted(image_ids)
    _quietly(evaluator.evaluate)
    return evaluator


def _resampled_ap(evaluator: COCOeval, matches: list, picks: np.ndarray) -> float:
    """AP (OKS 0.50:0.95, all areas, 20 detections) of `evaluator` with its images replaced by the images at
    positions `picks` (I,) of its image list, duplicates allowed: COCOeval's per-image matches are reused."""
    images = len(evaluator.params.imgIds)
    blocks = len(matches) // images
    evaluator.evalImgs = [matches[block * images + pick] for block in range(blocks) for pick in picks]
    _quietly(evaluator.accumulate)
    precision = evaluator.eval["precision"][:, :, :, 0, -1]
    valid = precision[precision > -1]
    return float(valid.mean()) if valid.size else 0.0


@dataclass(frozen=True)
class PairedBootstrap:
    """AP of two result sets on the same images, their difference (first minus second), its bootstrap
    percentile interval at `confidence`, and the share of resamples where the difference is above zero."""

    ap_first: float
    ap_second: float
    difference: float
    low: float
    high: float
    above_zero: float
    images: int
    rounds: int
    confidence: float


def paired_bootstrap(coco: dict, first: list[dict[str, Any]], second: list[dict[str, Any]],
                     image_ids: list[int], rounds: int = 2000, confidence: float = 0.95,
                     seed: int = 0) -> PairedBootstrap:
    """Paired bootstrap over images of the AP difference between two models' COCO results on the same images:
    every round draws len(image_ids) images with replacement and scores both models on that same draw (COCOeval's
    per-image matches, computed once, are re-accumulated), so the interval reflects which images the set happens
    to hold, not the randomness of training."""
    if not first or not second:
        raise WorkbenchError("paired_bootstrap needs results of both models: one of them predicted nothing.")
    evaluators = [_matched(coco, results, image_ids) for results in (first, second)]
    matches = [list(evaluator.evalImgs) for evaluator in evaluators]
    every = np.arange(len(evaluators[0].params.imgIds))
    full = [_resampled_ap(evaluator, found, every) for evaluator, found in zip(evaluators, matches)]
    generator = np.random.default_rng(seed)
    differences = np.empty(rounds)
    for round_index in range(rounds):
        picks = generator.integers(0, every.size, every.size)
        differences[round_index] = (_resampled_ap(evaluators[0], matches[0], picks)
                                    - _resampled_ap(evaluators[1], matches[1], picks))
    tail = (1.0 - confidence) / 2
    low, high = np.quantile(differences, [tail, 1.0 - tail])
    return PairedBootstrap(full[0], full[1], full[0] - full[1], float(low), float(high),
                           float((differences > 0).mean()), int(every.size), rounds, confidence)


def dataset_results(model: Model | None, dataset: CocoKeypoints, *, flip: bool = True, decode: str = "standard",
                    batch_size: int = 32, workers: int = 0, progress: bool = False, vis_threshold: float = 0.2,
                    oks_threshold: float = 0.9) -> tuple[Predictions, list[dict[str, Any]]]:
    """The poses of every instance of `dataset`, from `model` (None: the round trip of the ground truth, see
    `round_trip`), and their COCO results (rescored and OKS NMS'd as `coco_results` says)."""
    options = dict(flip=flip, decode=decode, batch_size=batch_size, workers=workers, progress=progress)
    predictions = round_trip(dataset, **options) if model is None else predict_dataset(model, dataset, **options)
    return predictions, coco_results(predictions, category_id=dataset.category_id, vis_threshold=vis_threshold,
                                     oks_threshold=oks_threshold)


def dataset_metrics(dataset: CocoKeypoints, predictions: Predictions,
                    results: list[dict[str, Any]]) -> dict[str, Any]:
    """`evaluate_keypoints` of `dataset_results`' output, over every image of the dataset except the unreadable ones.

    The images of the dataset are those of its annotation file (or of the instances a subset kept), whether or not
    a box was found in them: a person the detector missed counts against recall, as in COCO's protocol. With
    ground-truth boxes, an image without instances holds only crowds and persons without labelled keypoints, which
    COCOeval ignores, or persons whose box is empty or outside the image, which count as missed: only these
    separate the metrics from those over the instances' images. When images were unreadable, "message" says how
    many the metrics cover.
    """
    evaluated = [image_id for image_id in dataset.images if image_id not in predictions.unreadable]
    metrics = evaluate_keypoints(dataset.coco, results, evaluated)
    if predictions.unreadable:
        note = (f"metrics cover {len(evaluated)} of {len(dataset.images)} images: {len(predictions.unreadable)} "
                "could not be read")
        metrics["message"] = "; ".join(filter(None, [metrics.get("message"), note]))
    return metrics


def evaluate_dataset(model: Model | None, dataset: CocoKeypoints, *, flip: bool = True, decode: str = "standard",
                     batch_size: int = 32, workers: int = 0, progress: bool = False, vis_threshold: float = 0.2,
                     oks_threshold: float = 0.9) -> dict[str, Any]:
    """COCO keypoint metrics (fractions) of `model` (None: the round trip) on `dataset`: `dataset_results`, then
    `dataset_metrics` (which images count). Raises WorkbenchError for a file without keypoint ground truth."""
    predictions, results = dataset_results(model, dataset, flip=flip, decode=decode, batch_size=batch_size,
                                           workers=workers, progress=progress, vis_threshold=vis_threshold,
                                           oks_threshold=oks_threshold)
    return dataset_metrics(dataset, predictions, results)


def per_joint_statistics(evaluator: COCOeval) -> dict[str, dict[str, float | int]]:
    """Per-joint errors of the detections COCOeval matched to ground truth at OKS 0.5 (area "all").

    For each joint, over matched persons where it is labelled: count, mean and median distance in image pixels,
    mean distance normalised by sqrt(area) of the person, mean per-joint OKS term, and the fraction of joints
    whose OKS term is at least 0.5. Key "_instances" gives matched and total non-ignored ground-truth persons.
    """
    params = evaluator.params
    area_all, max_dets = params.areaRng[params.areaRngLbl.index("all")], params.maxDets[-1]
    distances: list[list[float]] = [[] for _ in range(NUM_JOINTS)]
    normalised: list[list[float]] = [[] for _ in range(NUM_JOINTS)]
    matched = total = 0
    variances = (2.0 * OKS_SIGMAS) ** 2
    for entry in evaluator.evalImgs:
        if entry is None or entry["aRng"] != area_all or entry["maxDet"] != max_dets:
            continue
        total += int(np.count_nonzero(~np.asarray(entry["gtIgnore"], dtype=bool)))
        for dt_id, gt_id, ignored in zip(entry["dtIds"], entry["dtMatches"][0], entry["dtIgnore"][0]):
            if gt_id == 0 or ignored:
                continue
            matched += 1
            truth = evaluator.cocoGt.anns[int(gt_id)]
            gt = np.asarray(truth["keypoints"], dtype=np.float64).reshape(NUM_JOINTS, 3)
            dt = np.asarray(evaluator.cocoDt.anns[int(dt_id)]["keypoints"], dtype=np.float64).reshape(NUM_JOINTS, 3)
            gap = np.linalg.norm(dt[:, :2] - gt[:, :2], axis=1)
            for joint in np.nonzero(gt[:, 2] > 0)[0]:
                distances[joint].append(gap[joint])
                normalised[joint].append(gap[joint] / np.sqrt(truth["area"] + np.spacing(1)))
    statistics: dict[str, dict[str, float | int]] = {"_instances": {"matched": matched, "ground_truth": total}}
    for joint, name in enumerate(JOINT_NAMES):
        gap, relative = np.asarray(distances[joint]), np.asarray(normalised[joint])
        oks = np.exp(-relative ** 2 / variances[joint] / 2.0)
        statistics[name] = {"count": int(gap.size)} if gap.size == 0 else {
            "count": int(gap.size), "mean_px": float(gap.mean()), "median_px": float(np.median(gap)),
            "mean_normalised": float(relative.mean()), "mean_oks": float(oks.mean()),
            "oks_at_least_0.5": float((oks >= 0.5).mean())}
    return statistics


def format_metrics(metrics: dict[str, Any]) -> str:
    """The metrics as a plain-text table: the ten COCO numbers (percent), then per-joint statistics."""
    def cell(value: float | None) -> str:
        return "  n/a" if value is None else f"{100.0 * value:5.1f}"

    lines = ["  ".join(f"{name:>5}" for name in METRIC_NAMES), "  ".join(cell(metrics[n]) for n in METRIC_NAMES)]
    if metrics.get("message"):
        lines.append(f"note: {metrics['message']}")
    joints = {name: row for name, row in metrics.get("per_joint", {}).items() if not name.startswith("_")}
    if any(row["count"] for row in joints.values()):
        counts = metrics["per_joint"]["_instances"]
        lines.append(f"\nper joint, over {counts['matched']} of {counts['ground_truth']} persons matched at OKS 0.5:")
        lines.append(f"{'joint':<15}{'count':>6}{'mean px':>9}{'median px':>10}{'OKS':>7}{'OKS>=.5':>8}")
        for name, row in joints.items():
            if row["count"]:
                lines.append(f"{name:<15}{row['count']:>6}{row['mean_px']:>9.2f}{row['median_px']:>10.2f}"
                             f"{row['mean_oks']:>7.3f}{row['oks_at_least_0.5']:>8.3f}")
    return "\n".join(lines)
