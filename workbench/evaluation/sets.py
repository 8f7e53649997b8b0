"""The data sets the workbench evaluates on, by name, and one call that evaluates a network on one of them.

Sample sets under the data folder (`workbench.common.paths.data_root`): coco-sample (its detector's person boxes, or the
ground truth), fashion-pose val (ground-truth boxes as annotated, or grown to enclose the labelled keypoints as
the training configs do) and fashion-pose train; COCO val2017 when its folder is given.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from workbench.data.dataset import CocoKeypoints
from workbench.common.errors import WorkbenchError
from workbench.evaluation.metrics import evaluate_dataset
from workbench.common.paths import data_root

Size = tuple[int, int]


@dataclass(frozen=True)
class EvalSet:
    """An annotation file and its images; person boxes from `detections` (COCO results) or the ground truth
    (grown to enclose the labelled keypoints when `enclose_keypoints`)."""

    name: str
    annotations: Path
    images: Path
    detections: Path | None = None
    enclose_keypoints: bool = False

    @property
    def boxes(self) -> str:
        """Which person boxes the set uses, in words."""
        if self.detections is not None:
            return f"detections ({self.detections.name})"
        return "ground truth, grown to the keypoints" if self.enclose_keypoints else "ground truth"


def evaluation_sets(names: Sequence[str] = ("coco-sample", "fashion-pose-val"), coco_root: str | Path | None = None,
                    coco_detections: str | Path | None = None, root: str | Path | None = None) -> list[EvalSet]:
    """The sample sets `names` under `root` (default: `data_root()`), then COCO val2017 when `coco_root` (the folder
    holding annotations/ and val2017/) is given, with the person boxes of `coco_detections` if given.

    coco-sample uses its detection file (the detector of the papers), coco-sample-gt the ground-truth boxes.
    fashion-pose boxes are grown to enclose their keypoints, as its training config does (a few are drawn beside
    their person); fashion-pose-val-annotated keeps them as annotated.
    """
    root = Path(root) if root else data_root()
    coco_sample, fashion = root / "coco-sample", root / "fashion-pose"
    known = {
        "coco-sample": EvalSet("coco-sample", coco_sample / "test_coco.json", coco_sample,
                               coco_sample / "test_coco_det_AP_H_56.json"),
        "coco-sample-gt": EvalSet("coco-sample-gt", coco_sample / "test_coco.json", coco_sample),
        "fashion-pose-val": EvalSet("fashion-pose-val", fashion / "person_keypoints_val.json", fashion / "images",
                                    enclose_keypoints=True),
        "fashion-pose-val-annotated": EvalSet("fashion-pose-val-annotated", fashion / "person_keypoints_val.json",
                                              fashion / "images"),
        "fashion-pose-train": EvalSet("fashion-pose-train", fashion / "person_keypoints_train.json",
                                      fashion / "images", enclose_keypoints=True),
    }
    unknown = [name for name in names if name not in known]
    if unknown:
        raise WorkbenchError(f"unknown data set(s) {', '.join(unknown)}. Choose from {', '.join(known)}, and pass "
                             "coco_root for COCO val2017.")
    sets = [known[name] for name in names]
    if coco_root:
        coco = Path(coco_root).expanduser()
        sets.append(EvalSet("coco-val2017", coco / "annotations" / "person_keypoints_val2017.json", coco / "val2017",
                            Path(coco_detections).expanduser() if coco_detections else None))
    for item in sets:
        if not item.annotations.is_file():
            raise WorkbenchError(f"annotation file not found: {item.annotations}. Set WORKBENCH_DATA to the shared "
                                 "data folder, or pass the COCO folder holding annotations/ and val2017/.")
    return sets


def dataset_of(eval_set: EvalSet, input_size: Size, ground_truth: bool = False,
               with_targets: bool = False) -> CocoKeypoints:
    """The crops of `eval_set` at `input_size` (H, W); `ground_truth` ignores its detections."""
    return CocoKeypoints(eval_set.annotations, eval_set.images, tuple(input_size),
                         detections=None if ground_truth else eval_set.detections,
                         enclose_keypoints=eval_set.enclose_keypoints, with_targets=with_targets)


def evaluate_on(network: nn.Module | None, eval_set: EvalSet, input_size: Size = (256, 192), flip: bool = True,
                batch_size: int = 32, decode: str = "standard") -> dict[str, Any]:
    """COCO keypoint metrics (fractions) of `network` on `eval_set`, heatmaps decoded by `decode` ("standard" or
    "dark"); `network` None evaluates the round trip (the ground truth rendered as target heatmaps, on ground-truth
    boxes), which checks the pipeline (AP near 1)."""
    dataset = dataset_of(eval_set, input_size, ground_truth=network is None, with_targets=network is None)
    return evaluate_dataset(network, dataset, flip=flip, decode=decode, batch_size=batch_size)
