"""The 17 COCO person keypoints: names, left/right flip pairs, skeleton, body halves and OKS sigmas."""
from __future__ import annotations

import numpy as np

JOINT_NAMES: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)
NUM_JOINTS = len(JOINT_NAMES)

FLIP_PAIRS: tuple[tuple[int, int], ...] = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))


def _flip_index() -> tuple[int, ...]:
    index = list(range(NUM_JOINTS))
    for left, right in FLIP_PAIRS:
        index[left], index[right] = right, left
    return tuple(index)


FLIP_INDEX: tuple[int, ...] = _flip_index()
"""`joints[FLIP_INDEX]` swaps every left joint with its right twin (the permutation is its own inverse)."""

SKELETON: tuple[tuple[int, int], ...] = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8),
    (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)
"""COCO's 19 limbs as 0-based joint index pairs."""

UPPER_BODY: tuple[int, ...] = tuple(range(11))
LOWER_BODY: tuple[int, ...] = tuple(range(11, NUM_JOINTS))

OKS_SIGMAS = np.array(
    [0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89],
    dtype=np.float64,
) / 10.0
"""Per-joint OKS constants k_i of COCOeval (pycocotools' `kpt_oks_sigmas`), shape (17,)."""
