"""Geometry of top-down crops: box -> centre and size, the affine crop, flips, training augmentation, normalisation.

Conventions: points are (x, y) in pixels with pixel centres at integers (OpenCV's); sizes of network inputs are
(height, width), e.g. (256, 192); a box is (x, y, w, h) in image pixels (COCO); `box_size` is (w, h) in image pixels
after the aspect-ratio fix and padding. Rotations are in degrees, counter-clockwise as displayed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np
import torch

from workbench.data.keypoints import LOWER_BODY, UPPER_BODY

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BOX_PADDING = 1.25
HALF_BODY_PADDING = 1.5


def fix_aspect(width: float, height: float, aspect_ratio: float) -> tuple[float, float]:
    """Grow the shorter side so that width / height == aspect_ratio (the input's width / height)."""
    if width > aspect_ratio * height:
        return width, width / aspect_ratio
    return height * aspect_ratio, height


def box_to_center_size(box: Sequence[float], aspect_ratio: float,
                       padding: float = BOX_PADDING) -> tuple[np.ndarray, np.ndarray]:
    """COCO box (x, y, w, h) -> centre (2,) and padded, aspect-fixed size (w, h) (2,), both in image pixels."""
    x, y, w, h = (float(v) for v in box)
    center = np.array([x + 0.5 * w, y + 0.5 * h])
    return center, np.array(fix_aspect(w, h, aspect_ratio)) * padding


def crop_matrix(center: np.ndarray, box_size: np.ndarray, input_size: tuple[int, int],
                rotation: float = 0.0) -> np.ndarray:
    """The (2, 3) affine map from image pixels to crop pixels.

    The box centre goes to the crop centre (W/2, H/2), the box width to the crop width (one zoom for both axes, so
    the box should have the input's aspect ratio), and the content turns by `rotation` degrees about the centre.
    """
    height, width = input_size
    matrix = cv2.getRotationMatrix2D((float(center[0]), float(center[1])), float(rotation),
                                     width / float(box_size[0]))
    matrix[:, 2] += (width / 2.0 - center[0], height / 2.0 - center[1])
    return matrix


def hflip_matrix(width: int) -> np.ndarray:
    """The (2, 3) mirror x -> width - 1 - x of an image `width` pixels wide (what `cv2.flip(image, 1)` does)."""
    return np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0]])


def compose(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """The (2, 3) affine map that applies `first`, then `second`."""
    return np.hstack([second[:, :2] @ first[:, :2], (second[:, :2] @ first[:, 2] + second[:, 2])[:, None]])


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) affine map to points of shape (..., 2); returns float64 of the same shape."""
    points = np.asarray(points, dtype=np.float64)
    return cv2.transform(points.reshape(-1, 1, 2), matrix).reshape(points.shape)


def warp_crop(image: np.ndarray, matrix: np.ndarray, input_size: tuple[int, int]) -> np.ndarray:
    """Bilinear affine crop of an (H, W, 3) image to `input_size` (height, width); outside pixels are black."""
    height, width = input_size
    return cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))


def to_tensor(crop: np.ndarray, mean: Sequence[float] = IMAGENET_MEAN,
              std: Sequence[float] = IMAGENET_STD) -> torch.Tensor:
    """RGB uint8 crop (H, W, 3) -> float32 tensor (3, H, W) normalised as (pixel / 255 - mean) / std.

    Done in NumPy: single-threaded, so it stays fast in the main process of a busy machine.
    """
    planes = np.ascontiguousarray(crop.transpose(2, 0, 1), dtype=np.float32)
    planes -= np.asarray(mean, dtype=np.float32)[:, None, None] * 255.0
    planes /= np.asarray(std, dtype=np.float32)[:, None, None] * 255.0
    return torch.from_numpy(planes)


@dataclass(frozen=True)
class Augmentation:
    """Training augmentation settings. These defaults are the training configs' defaults too: the settings
    `data.augmentation.*` of `workbench.training.config` are read from these fields.

    Scale: box size times clip(1 + N(0,1) * scale_factor, 1 - f, 1 + f), i.e. [0.75, 1.25] as both the paper and the
    official recipe have. Half-body: with probability half_body_prob, if more than half_body_min_joints joints are
    visible, crop to the upper or the lower body. Flip: horizontal, with left/right joints swapped.

    Rotation: with probability rotation_prob, clip(N(0,1) * rotation_factor, -rotation_limit, +rotation_limit)
    degrees. This is the one setting where the paper and the official recipe differ, and the one place that says so:
    - the official Lite-HRNet recipe (github.com/HRNet/Lite-HRNet, configs/top_down/lite_hrnet/coco/
      litehrnet_18_coco_256x192.py: `TopDownGetRandomScaleRotation` with rot_factor=30) runs mmpose 0.x's transform
      (mmpose/datasets/pipelines/top_down_transform.py), which rotates with probability 0.6 by N(0,1) x 30 clipped at
      twice the factor: rotation_factor 30, rotation_limit 60. HRNet's own code (deep-high-resolution-net.pytorch,
      lib/dataset/JointsDataset.py) draws the same way; mmpose's SimpleBaseline and HRNet-W32 configs use factor 40,
      so limit 80.
    - the paper (section 4.1, step 2) lists "random rotation ([-30°, 30°])": read here as the same draw, clipped
      at 30.
    The default is the paper's limit, 30: Lite CSW-HRNet's configs use it, and so do the fashion-pose configs, so
    that the four models compared there differ only in the network. The COCO configs of Lite-HRNet and Small HRNet
    set the official 60 and those of mmpose's recipes 80, each to reproduce its published run.
    """

    flip_prob: float = 0.5
    half_body_prob: float = 0.3
    half_body_min_joints: int = 8
    scale_factor: float = 0.25
    rotation_factor: float = 30.0
    rotation_limit: float = 30.0
    rotation_prob: float = 0.6


@dataclass(frozen=True)
class CropParams:
    """Where to crop one instance: centre (x, y) and box_size (w, h) in image pixels, rotation in degrees, flip."""

    center: np.ndarray
    box_size: np.ndarray
    rotation: float = 0.0
    flip: bool = False


def half_body_box(joints: np.ndarray, visible: np.ndarray, aspect_ratio: float,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray] | None:
    """Centre and size of a box around the visible upper-body (or lower-body) joints, or None if too few.

    joints (17, 2) image pixels, visible (17,) bool. The upper body is chosen with probability 0.5 when it has more
    than two visible joints; the box is the joints' extent, aspect-fixed and padded by 1.5.
    """
    upper = [j for j in UPPER_BODY if visible[j]]
    lower = [j for j in LOWER_BODY if visible[j]]
    chosen = upper if (rng.random() < 0.5 and len(upper) > 2) or len(lower) <= 2 else lower
    if len(chosen) < 2:
        return None
    points = joints[chosen]
    low, high = points.min(axis=0), points.max(axis=0)
    size = np.array(fix_aspect(*(high - low), aspect_ratio)) * HALF_BODY_PADDING
    return points.mean(axis=0), size


def sample_crop_params(center: np.ndarray, box_size: np.ndarray, joints: np.ndarray, visible: np.ndarray,
                       aspect_ratio: float, augmentation: Augmentation, rng: np.random.Generator) -> CropParams:
    """Draw one training crop: half-body, then scale, rotation and flip, from `rng`."""
    num_visible = int(np.count_nonzero(visible))
    if num_visible > augmentation.half_body_min_joints and rng.random() < augmentation.half_body_prob:
        half = half_body_box(joints, visible, aspect_ratio, rng)
        if half is not None:
            center, box_size = half
    factor = augmentation.scale_factor
    scale = float(np.clip(1.0 + rng.standard_normal() * factor, 1.0 - factor, 1.0 + factor))
    rotation = 0.0
    if rng.random() < augmentation.rotation_prob:
        limit = augmentation.rotation_limit
        rotation = float(np.clip(rng.standard_normal() * augmentation.rotation_factor, -limit, limit))
    flip = bool(rng.random() < augmentation.flip_prob)
    return CropParams(np.asarray(center, dtype=np.float64), np.asarray(box_size) * scale, rotation, flip)
