"""Every person of one image: person boxes -> crops (batched) -> network (flip test) -> keypoints in image pixels
-> rescoring -> OKS NMS. The same steps, by the same functions, as evaluation on a detection file
(`workbench.data.dataset`, `workbench.evaluation.metrics`)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from workbench.codec import decode_heatmaps, heatmap_to_image
from workbench.data.coco import box_problem
from workbench.data.transforms import IMAGENET_MEAN, IMAGENET_STD, box_to_center_size, crop_matrix, to_tensor, \
    warp_crop
from workbench.inference import Model, oks_nms, predict_heatmaps, rescore

OKS_NMS_THRESHOLD = 0.9
"""Poses overlapping a better one by more OKS than this are dropped (the top-down reference value)."""


@dataclass
class Person:
    """One person in image pixels: `box` (4,) x, y, w, h and its detector `box_score`; `keypoints` (17, 2) x, y and
    `keypoint_scores` (17,) (heatmap peaks); `score`, the box score times the mean confident joint score; `track_id`
    across video frames (None for a photo); `heatmaps` (17, h, w) of its crop and `crop_matrix` (2, 3) image ->
    crop pixels, kept for the pictures and the app."""

    box: np.ndarray
    box_score: float
    keypoints: np.ndarray
    keypoint_scores: np.ndarray
    score: float
    heatmaps: np.ndarray = field(repr=False)
    crop_matrix: np.ndarray = field(repr=False)
    track_id: int | None = None

    def to_json(self, image_id: int | str = 0) -> dict:
        """The person as a COCO keypoint result: image_id, category_id 1, keypoints [x, y, score] * 17, score, bbox,
        box_score, and track_id when it has one."""
        triples = np.concatenate([self.keypoints, self.keypoint_scores[:, None]], axis=1)
        record = {"image_id": image_id, "category_id": 1,
                  "keypoints": [round(float(v), 2) for v in triples.reshape(-1)], "score": round(float(self.score), 4),
                  "bbox": [round(float(v), 2) for v in self.box], "box_score": round(float(self.box_score), 4)}
        if self.track_id is not None:
            record["track_id"] = int(self.track_id)
        return record


def crops_of(pixels: np.ndarray, boxes: np.ndarray,
             input_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crops (N, H, W, 3) uint8 of the boxes (N, 4) x, y, w, h, padded and aspect-fixed as in evaluation, their
    crop matrices (N, 2, 3), and the areas (N,) of the padded boxes in image pixels^2 (OKS NMS scales by them)."""
    crops, matrices, areas = [], [], []
    for box in boxes:
        center, size = box_to_center_size(box, input_size[1] / input_size[0])
        matrices.append(crop_matrix(center, size, input_size))
        crops.append(warp_crop(pixels, matrices[-1], input_size))
        areas.append(float(size.prod()))
    if not crops:
        return np.zeros((0, *input_size, 3), np.uint8), np.zeros((0, 2, 3)), np.zeros(0)
    return np.stack(crops), np.stack(matrices), np.array(areas)


def estimate_people(model: Model, pixels: np.ndarray, boxes: np.ndarray, box_scores: np.ndarray, *,
                    input_size: tuple[int, int] | None = None, flip: bool = True, decode: str = "standard",
                    batch_size: int = 16, nms: bool = True) -> list[Person]:
    """The people of one RGB image (H, W, 3) in person `boxes` (N, 4) x, y, w, h with `box_scores` (N,), best
    score first; boxes that are empty or wholly outside the image are dropped, and so, with `nms`, is a pose that
    repeats a better one (OKS NMS)."""
    input_size = tuple(input_size or getattr(model, "input_size", (256, 192)))
    height, width = pixels.shape[:2]
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    box_scores = np.asarray(box_scores, dtype=np.float64).reshape(-1)
    usable = np.array([box_problem(box, width, height) is None for box in boxes], dtype=bool)
    boxes, box_scores = boxes[usable], box_scores[usable]
    crops, matrices, areas = crops_of(pixels, boxes, input_size)
    heatmaps = []
    for start in range(0, len(crops), batch_size):
        batch = torch.stack([to_tensor(crop, IMAGENET_MEAN, IMAGENET_STD) for crop in crops[start:start + batch_size]])
        heatmaps.append(predict_heatmaps(model, batch, flip).numpy())
    if not heatmaps:
        return []
    heatmaps = np.concatenate(heatmaps)
    coords, joint_scores = decode_heatmaps(heatmaps, decode)
    keypoints = heatmap_to_image(coords, matrices)
    scores = rescore(box_scores, joint_scores)
    order = oks_nms(keypoints, scores, areas, OKS_NMS_THRESHOLD) if nms else \
        np.argsort(-scores, kind="stable")
    return [Person(boxes[i], float(box_scores[i]), keypoints[i], joint_scores[i], float(scores[i]), heatmaps[i],
                   matrices[i]) for i in order]
