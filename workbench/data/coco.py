"""Person instances from a COCO person-keypoints file (ground-truth boxes) or a COCO detection results file.

Instances that cannot be cropped or trained on are skipped and counted by reason (see SKIP_REASONS); the counts are
reported by the dataset and the evaluate command. Files that are missing or malformed raise WorkbenchError. Files in
COCO format that leave out what COCOeval needs (PoseTrack18 has no "area") are completed, and files whose keypoint
names differ from COCO's are read in COCO's order: each says so in one logged line (`complete_annotations`).
"""
from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from workbench.common.errors import WorkbenchError
from workbench.data.keypoints import JOINT_NAMES, NUM_JOINTS

log = logging.getLogger(__name__)

SKIP_REASONS = {
    "crowd": "ground-truth crowd region (iscrowd=1)",
    "no_visible_keypoints": "no labelled keypoints (COCOeval ignores such persons too)",
    "zero_area_box": "zero or negative box width or height",
    "box_outside_image": "box wholly outside the image",
    "not_person": "category other than person",
    "below_score_threshold": "detection score below the threshold",
    "unknown_image_id": "image id absent from the annotation file",
}
"""Why an annotation or detection yields no instance: reason key -> description (counts are kept per key)."""
FILLED_FIELDS = {
    "area": "box width x height, as mmpose does",
    "num_keypoints": "the labelled keypoints counted",
    "iscrowd": "0",
}
"""Annotation fields that COCOeval needs and `complete_annotations` fills in where a file leaves them out."""


@dataclass(frozen=True)
class ImageInfo:
    """One image of the annotation file: id, file name (relative to the image folder), size in pixels."""

    id: int
    file_name: str
    width: int
    height: int


@dataclass(frozen=True)
class Instance:
    """One person to crop: box (x, y, w, h) image pixels, score (1 for ground truth), joints (17, 3) as (x, y, v)."""

    image_id: int
    box: np.ndarray
    score: float
    joints: np.ndarray


@dataclass
class InstanceSet:
    """The images of an annotation file and the person instances drawn from it, with skip counts by reason."""

    images: dict[int, ImageInfo]
    instances: list[Instance]
    skipped: Counter = field(default_factory=Counter)


def read_json(path: str | Path, what: str) -> Any:
    """Load a JSON file, turning a missing or malformed file into WorkbenchError; `what` names it in messages."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise WorkbenchError(f"{what} not found: {path}. Check the path.") from None
    except IsADirectoryError:
        raise WorkbenchError(f"{what} {path} is a folder: pass the JSON file inside it.") from None
    except OSError as error:
        raise WorkbenchError(f"{what} {path} cannot be read ({error.strerror}). Check the path and its "
                             "permissions.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise WorkbenchError(f"{what} {path} is not valid JSON ({error}). Re-download or re-export it.") from None


def person_category(coco: dict, path: str | Path) -> int:
    """Check that `coco` is a 17-keypoint person annotation file and return the person category id."""
    if not isinstance(coco, dict) or "images" not in coco or "categories" not in coco:
        raise WorkbenchError(f"{path} is not a COCO annotation file (it needs 'images' and 'categories'). "
                             "Pass a person_keypoints_*.json or image_info_*.json file.")
    for category in coco["categories"]:
        if category.get("name") == "person" or "keypoints" in category:
            count = len(category.get("keypoints", [None] * NUM_JOINTS))
            if count != NUM_JOINTS:
                raise WorkbenchError(f"{path} has {count} keypoints per person; the models predict COCO's "
                                     f"{NUM_JOINTS}. Convert the annotations to the COCO keypoint order.")
            return int(category["id"])
    raise WorkbenchError(f"{path} has no person category. Pass a COCO person-keypoints annotation file.")


def complete_annotations(coco: dict, path: str | Path) -> None:
    """Fill in, in `coco` itself, the FILLED_FIELDS an annotation lacks, so that every reader (the instances, COCOeval
    and its area ranges, the per-joint errors) uses the same values, and say so in one logged line; warn in one line
    when the keypoint names of the person category differ from COCO's 17 (PoseTrack's head_bottom and head_top):
    the joints are then read as COCO's, in the file's order. A second call on the same contents finds nothing to
    fill."""
    name = Path(path).name
    annotations = [a for a in coco.get("annotations", []) if isinstance(a, dict)]
    lacking = {field: 0 for field in FILLED_FIELDS}
    for annotation in annotations:
        box = annotation.get("bbox")
        if "area" not in annotation and isinstance(box, list) and len(box) == 4:
            annotation["area"] = float(box[2]) * float(box[3])
            lacking["area"] += 1
        if "num_keypoints" not in annotation and isinstance(annotation.get("keypoints"), list):
            annotation["num_keypoints"] = int(sum(v > 0 for v in annotation["keypoints"][2::3]))
            lacking["num_keypoints"] += 1
        if "iscrowd" not in annotation:
            annotation["iscrowd"] = 0
            lacking["iscrowd"] += 1
    missing = [field for field, count in lacking.items() if count]
    if missing:
        log.warning("%s: annotations lack %s; using %s.", name,
                    ", ".join(f"{field} ({lacking[field]} of {len(annotations)})" for field in missing),
                    "; ".join(f"{field} = {FILLED_FIELDS[field]}" for field in missing))
    for category in coco.get("categories", []):
        names = category.get("keypoints") if isinstance(category, dict) else None
        if isinstance(names, list) and len(names) == NUM_JOINTS and tuple(names) != JOINT_NAMES:
            renamed = [f"{theirs} for {ours}" for theirs, ours in zip(names, JOINT_NAMES) if theirs != ours]
            log.warning("%s: keypoint names differ from COCO's (%s): read as COCO's 17 joints in the file's order, "
                        "evaluated with COCO's OKS sigmas.", name, ", ".join(renamed))


def image_table(coco: dict, path: str | Path) -> dict[int, ImageInfo]:
    """Image id -> ImageInfo; the file must give every image's id, file_name, width and height."""
    try:
        return {int(im["id"]): ImageInfo(int(im["id"]), str(im["file_name"]), int(im["width"]), int(im["height"]))
                for im in coco["images"]}
    except (KeyError, TypeError, ValueError) as error:
        raise WorkbenchError(f"{path}: an image entry lacks a valid {error} field. "
                             "Every image needs id, file_name, width and height.") from None


def clip_box(box: np.ndarray, width: int, height: int) -> np.ndarray:
    """Intersect a box (x, y, w, h) with the image [0, width] x [0, height]; an empty result has w or h <= 0."""
    x1, y1 = max(box[0], 0.0), max(box[1], 0.0)
    x2, y2 = min(box[0] + box[2], float(width)), min(box[1] + box[3], float(height))
    return np.array([x1, y1, x2 - x1, y2 - y1])


def box_problem(box: np.ndarray, width: int, height: int) -> str | None:
    """The skip reason (a SKIP_REASONS key) for a box (x, y, w, h) in a width x height image, or None if usable."""
    if not (box[2] > 0 and box[3] > 0):
        return "zero_area_box"
    clipped = clip_box(box, width, height)
    if not (clipped[2] > 0 and clipped[3] > 0):
        return "box_outside_image"
    return None


def enclose(box: np.ndarray, joints: np.ndarray) -> np.ndarray:
    """The smallest box (x, y, w, h) containing `box` and the labelled joints (17, 3) (x, y, v with v > 0)."""
    points = joints[joints[:, 2] > 0, :2]
    low = np.minimum(box[:2], points.min(axis=0))
    high = np.maximum(box[:2] + box[2:], points.max(axis=0))
    return np.concatenate([low, high - low])


def ground_truth_instances(coco: dict, path: str | Path, enclose_keypoints: bool = False) -> InstanceSet:
    """Instances from the annotated boxes, clipped to the image (as HRNet does); skips crowds, people without
    labelled keypoints, empty boxes and annotations of unknown images.

    `enclose_keypoints` first grows each box to contain its labelled keypoints, for files whose boxes were drawn
    carelessly (a box beside its person crops the wrong pixels). The file is completed first
    (`complete_annotations`).
    """
    category = person_category(coco, path)
    complete_annotations(coco, path)
    images = image_table(coco, path)
    result = InstanceSet(images, [])
    for annotation in coco.get("annotations", []):
        image = images.get(int(annotation["image_id"]))
        joints = np.asarray(annotation.get("keypoints", []), dtype=np.float64)
        reason = None
        if annotation.get("category_id") != category:
            reason = "not_person"
        elif image is None:
            reason = "unknown_image_id"
        elif annotation.get("iscrowd", 0):
            reason = "crowd"
        elif joints.size != 3 * NUM_JOINTS or not np.any(joints[2::3] > 0):
            reason = "no_visible_keypoints"
        else:
            reason = box_problem(np.asarray(annotation["bbox"], dtype=np.float64), image.width, image.height)
        if reason:
            result.skipped[reason] += 1
            continue
        joints = joints.reshape(NUM_JOINTS, 3)
        box = np.asarray(annotation["bbox"], dtype=np.float64)
        box = clip_box(enclose(box, joints) if enclose_keypoints else box, image.width, image.height)
        result.instances.append(Instance(image.id, box, 1.0, joints))
    return result


def detection_instances(coco: dict, path: str | Path, detections_path: str | Path,
                        score_threshold: float = 0.0) -> InstanceSet:
    """Instances from a detection results file (a JSON list of {image_id, category_id, bbox, score}).

    Keeps person boxes with score >= score_threshold as detected (not clipped, as the reference does); skips other
    categories, empty boxes, boxes wholly outside the image and unknown image ids. Raises WorkbenchError if no
    detection names an image of the annotation file. The annotation file is completed first (`complete_annotations`:
    COCOeval reads its ground truth).
    """
    category = person_category(coco, path)
    complete_annotations(coco, path)
    images = image_table(coco, path)
    detections = read_json(detections_path, "detection file")
    required = {"image_id", "category_id", "bbox", "score"}
    if not isinstance(detections, list) or not all(isinstance(d, dict) and required <= d.keys() for d in detections):
        raise WorkbenchError(f"{detections_path} is not a COCO detection results file: it must be a JSON list of "
                             "{image_id, category_id, bbox, score} entries.")
    result = InstanceSet(images, [])
    for detection in detections:
        image = images.get(int(detection["image_id"]))
        box = np.asarray(detection["bbox"], dtype=np.float64)
        if image is None:
            reason = "unknown_image_id"
        elif detection["category_id"] != category:
            reason = "not_person"
        elif float(detection["score"]) < score_threshold:
            reason = "below_score_threshold"
        else:
            reason = box_problem(box, image.width, image.height)
        if reason:
            result.skipped[reason] += 1
            continue
        result.instances.append(Instance(image.id, box, float(detection["score"]), np.zeros((NUM_JOINTS, 3))))
    if detections and result.skipped["unknown_image_id"] == len(detections):
        raise WorkbenchError(f"none of the {len(detections)} detections in {detections_path} names an image of "
                             f"{path}. Pass the detection file made for this image set.")
    return result
