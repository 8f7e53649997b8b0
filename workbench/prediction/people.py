"""Every person of one image: person boxes -> crops (batched) -> network (flip test) -> keypoints in image pixels
-> rescoring -> OKS NMS. The same steps, by the same functions, as evaluation on a detection file
(`workbench.inference`, `workbench.evaluation.metrics`)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from workbench.data.coco import box_problem
from workbench.data.transforms import box_to_center_size
from workbench.inference import Model, PoseEstimate, estimate_poses, oks_nms, rescore

OKS_NMS_THRESHOLD = 0.9
"""Poses overlapping a better one by more OKS than this are dropped (the top-down reference value)."""


@dataclass
class Person:
    """One person: its `estimate` (keypoints (17, 2) and scores (17,) in image pixels, heatmaps, crop, crop matrix,
    box (4,) x, y, w, h, and weight maps when asked for), its detector `box_score`, `score` (the box score times the
    mean confident joint score), and `track_id` across video frames (None for a photo)."""

    estimate: PoseEstimate
    box_score: float
    score: float
    track_id: int | None = None

    @property
    def box(self) -> np.ndarray:
        return self.estimate.box

    @property
    def keypoints(self) -> np.ndarray:
        return self.estimate.keypoints

    @property
    def keypoint_scores(self) -> np.ndarray:
        return self.estimate.scores

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


def estimate_people(model: Model, pixels: np.ndarray, boxes: np.ndarray, box_scores: np.ndarray, *,
                    input_size: tuple[int, int] | None = None, flip: bool = True, decode: str = "standard",
                    batch_size: int = 16, nms: bool = True, weight_maps: bool = False) -> list[Person]:
    """The people of one RGB image (H, W, 3) in person `boxes` (N, 4) x, y, w, h with `box_scores` (N,), best
    score first; boxes that are empty or wholly outside the image are dropped, and so, with `nms`, is a pose that
    repeats a better one (OKS NMS, scaled by the padded box areas as in evaluation). With `weight_maps`, each
    estimate holds its crop's weight maps, read during the same forward pass."""
    height, width = pixels.shape[:2]
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    box_scores = np.asarray(box_scores, dtype=np.float64).reshape(-1)
    usable = np.array([box_problem(box, width, height) is None for box in boxes], dtype=bool)
    boxes, box_scores = boxes[usable], box_scores[usable]
    estimates = estimate_poses(model, pixels, boxes, input_size=input_size, flip=flip, decode=decode,
                               weight_maps=weight_maps, batch_size=batch_size)
    if not estimates:
        return []
    keypoints = np.stack([estimate.keypoints for estimate in estimates])
    scores = rescore(box_scores, np.stack([estimate.scores for estimate in estimates]))
    height, width = estimates[0].crop.shape[:2]
    areas = np.array([box_to_center_size(box, width / height)[1].prod() for box in boxes])
    order = oks_nms(keypoints, scores, areas, OKS_NMS_THRESHOLD) if nms else np.argsort(-scores, kind="stable")
    return [Person(estimates[i], float(box_scores[i]), float(scores[i])) for i in order]
