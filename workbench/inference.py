"""Top-down inference: crops -> heatmaps (with flip test) -> keypoints in image pixels; rescoring and OKS NMS.

A "model" here is any callable taking a normalised float tensor (N, 3, H, W) and returning heatmaps (N, 17, H/4, W/4):
a torch module from `model.build_model`, or `workbench.checkpoints.OnnxModel`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np
import torch

from workbench.data.coco import box_problem
from workbench.data.targets import HEATMAP_STRIDE
from workbench.data.transforms import IMAGENET_MEAN, IMAGENET_STD, box_to_center_size, crop_matrix, to_tensor, \
    transform_points, warp_crop
from workbench.errors import WorkbenchError
from workbench.images import read_image
from workbench.keypoints import FLIP_INDEX, OKS_SIGMAS

Model = Callable[[torch.Tensor], torch.Tensor]
DECODERS = ("standard", "dark")


def flip_back(heatmaps: torch.Tensor, shift: bool = True) -> torch.Tensor:
    """Heatmaps (N, 17, h, w) of a mirrored crop -> heatmaps of the original crop.

    Mirrors the columns, swaps left and right joints and, with `shift`, moves the result one column right: the
    standard "shifted flipped heatmap". (Crop pixel x mirrors to W-1-x but heatmap pixel j to w-1-j, so the
    flipped-back peak of a joint lies 3/4 of a heatmap pixel left of x/4; the whole-pixel shift leaves the averaged
    flip test 1/8 heatmap pixel, half a crop pixel, to the right, as in the reference implementations.)
    """
    flipped = heatmaps.flip(3)[:, list(FLIP_INDEX)]
    if shift:
        flipped = torch.cat([flipped[..., :1], flipped[..., :-1]], dim=3)
    return flipped


def combine_flip(heatmaps: torch.Tensor, mirrored_heatmaps: torch.Tensor) -> torch.Tensor:
    """Average the heatmaps of the crops with the flipped-back heatmaps of their mirrors: (N, 17, h, w)."""
    return (heatmaps + flip_back(mirrored_heatmaps)) * 0.5


def model_device(model: Model) -> torch.device:
    """Where a torch module's parameters live (CPU for anything else)."""
    if isinstance(model, torch.nn.Module):
        parameter = next(model.parameters(), None)
        if parameter is not None:
            return parameter.device
    return torch.device("cpu")


@torch.inference_mode()
def predict_heatmaps(model: Model, images: torch.Tensor, flip: bool = True) -> torch.Tensor:
    """Heatmaps (N, 17, h, w) float32 on the CPU for normalised crops (N, 3, H, W), averaged with the flip test."""
    images = images.to(model_device(model))
    heatmaps = model(images).float()
    if flip:
        heatmaps = combine_flip(heatmaps, model(images.flip(3)).float())
    return heatmaps.cpu()


def decode_heatmaps(heatmaps: np.ndarray, method: str = "standard",
                    dark_kernel: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Peak positions (N, K, 2) in heatmap pixels (x, y) and peak values (N, K) of heatmaps (N, K, h, w).

    "standard": the argmax moved a quarter pixel towards the higher neighbour on each axis (HRNet).
    "dark": the argmax refined by one Newton step on the log of the heatmap smoothed with a Gaussian of
    `dark_kernel` pixels (default 11 for 64x48 heatmaps, 17 for 96x72: sigma 2 and 3), as in DARK (Zhang et al.
    2020). Peaks on the border row or column are not refined; values are the unsmoothed maxima.
    """
    if method not in DECODERS:
        raise WorkbenchError(f"unknown decoder {method!r}; choose one of {', '.join(DECODERS)}.")
    heatmaps = np.asarray(heatmaps, dtype=np.float32)
    n, k, height, width = heatmaps.shape
    maps = heatmaps.reshape(n * k, height, width)
    flat = maps.reshape(n * k, -1)
    peaks = flat.argmax(axis=1)
    scores = flat[np.arange(n * k), peaks]
    x, y = peaks % width, peaks // width
    coords = np.stack([x, y], axis=1).astype(np.float64)
    inner = (x >= 1) & (x <= width - 2) & (y >= 1) & (y <= height - 2)
    rows, x, y = np.nonzero(inner)[0], x[inner], y[inner]
    if method == "standard":
        coords[rows, 0] += 0.25 * np.sign(maps[rows, y, x + 1] - maps[rows, y, x - 1])
        coords[rows, 1] += 0.25 * np.sign(maps[rows, y + 1, x] - maps[rows, y - 1, x])
    else:
        coords[rows] += _dark_offsets(maps, rows, x, y, dark_kernel or _dark_kernel(height))
    return coords.reshape(n, k, 2), scores.reshape(n, k)


def _dark_kernel(heatmap_height: int) -> int:
    """The DARK smoothing kernel: 6 sigma - 1 pixels with sigma = heatmap height / 32, made odd."""
    return int(round(6.0 * heatmap_height / 32.0 - 1.0)) | 1


def _dark_offsets(maps: np.ndarray, rows: np.ndarray, x: np.ndarray, y: np.ndarray, kernel: int) -> np.ndarray:
    """Newton steps -H^-1 g (M, 2) at the integer peaks (x, y) of maps[rows], on the smoothed log-heatmaps."""
    smooth = np.empty((len(rows),) + maps.shape[1:], dtype=np.float32)
    for i, row in enumerate(rows):
        blurred = cv2.GaussianBlur(maps[row], (kernel, kernel), 0)
        peak = blurred.max()
        smooth[i] = blurred * (maps[row].max() / peak) if peak > 0 else blurred
    logs = np.log(np.maximum(smooth, 1e-10))
    at = np.arange(len(rows))
    dx = 0.5 * (logs[at, y, x + 1] - logs[at, y, x - 1])
    dy = 0.5 * (logs[at, y + 1, x] - logs[at, y - 1, x])
    dxx = logs[at, y, x + 1] - 2.0 * logs[at, y, x] + logs[at, y, x - 1]
    dyy = logs[at, y + 1, x] - 2.0 * logs[at, y, x] + logs[at, y - 1, x]
    dxy = 0.25 * (logs[at, y + 1, x + 1] - logs[at, y + 1, x - 1] - logs[at, y - 1, x + 1] + logs[at, y - 1, x - 1])
    det = dxx * dyy - dxy ** 2
    maximum = (det > 0) & (dxx < 0)
    safe = np.where(maximum, det, 1.0)
    offsets = np.stack([-(dyy * dx - dxy * dy) / safe, -(dxx * dy - dxy * dx) / safe], axis=1)
    return np.where(maximum[:, None], np.clip(offsets, -1.0, 1.0), 0.0)


def heatmap_to_image(coords: np.ndarray, matrices: np.ndarray) -> np.ndarray:
    """Heatmap points (N, K, 2) -> image pixels (N, K, 2), through the inverse of each crop matrix (N, 2, 3)."""
    return np.stack([transform_points(points * HEATMAP_STRIDE, cv2.invertAffineTransform(matrix))
                     for points, matrix in zip(coords, np.asarray(matrices, dtype=np.float64))]).reshape(coords.shape)


def rescore(box_scores: np.ndarray, joint_scores: np.ndarray, threshold: float = 0.2) -> np.ndarray:
    """Instance scores (N,): box score times the mean of the joint scores above `threshold` (0 if none is)."""
    confident = joint_scores > threshold
    counts = confident.sum(axis=1)
    means = np.where(counts > 0, (joint_scores * confident).sum(axis=1) / np.maximum(counts, 1), 0.0)
    return np.asarray(box_scores) * means


def oks_to_many(keypoints: np.ndarray, area: float, others: np.ndarray, other_areas: np.ndarray,
                sigmas: np.ndarray = OKS_SIGMAS) -> np.ndarray:
    """OKS (M,) between one pose (K, 2) and poses (M, K, 2), scaled by the mean of the two areas (pixels^2)."""
    variances = (2.0 * sigmas) ** 2
    squared = ((others - keypoints[None]) ** 2).sum(axis=2)
    scale = (area + np.asarray(other_areas))[:, None] / 2.0 + np.spacing(1)
    return np.exp(-squared / variances[None] / scale / 2.0).mean(axis=1)


def oks_nms(keypoints: np.ndarray, scores: np.ndarray, areas: np.ndarray, threshold: float = 0.9) -> np.ndarray:
    """Greedy NMS over the poses of one image: indices to keep, best first.

    keypoints (N, K, 2) image pixels, scores (N,), areas (N,) pixels^2; a pose is dropped if its OKS with a kept,
    higher-scoring pose exceeds `threshold`.
    """
    order = np.argsort(-np.asarray(scores), kind="stable")
    keep = []
    while order.size:
        best, order = order[0], order[1:]
        keep.append(best)
        if order.size:
            order = order[oks_to_many(keypoints[best], areas[best], keypoints[order], areas[order]) <= threshold]
    return np.array(keep, dtype=np.int64)


@dataclass
class PoseEstimate:
    """One person: keypoints (17, 2) and scores (17,) in image pixels, the heatmaps (17, h, w), the crop the model
    saw (H, W, 3) RGB uint8, `matrix` (2, 3) mapping image pixels to crop pixels, and the box (x, y, w, h) used."""

    keypoints: np.ndarray
    scores: np.ndarray
    heatmaps: np.ndarray
    crop: np.ndarray
    matrix: np.ndarray
    box: np.ndarray


def estimate_pose(model: Model, image: str | Path | np.ndarray, box: Sequence[float] | None = None, *,
                  input_size: tuple[int, int] | None = None, flip: bool = True, decode: str = "standard",
                  mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> PoseEstimate:
    """The pose of the person in `box` (x, y, w, h image pixels; default: the whole image) of one image.

    `image` is a path or an array (RGB, RGBA or grayscale; see `workbench.images.read_image`); `input_size` is the
    model's (height, width), by default its `input_size` attribute (torch models from `build_model` and OnnxModel
    have one), else (256, 192). Raises WorkbenchError for an empty box or one wholly outside the image.
    """
    input_size = tuple(input_size or getattr(model, "input_size", (256, 192)))
    pixels = read_image(image)
    height, width = pixels.shape[:2]
    box = np.array([0.0, 0.0, width, height] if box is None else box, dtype=np.float64)
    if box.shape != (4,):
        raise WorkbenchError(f"box {box.tolist()} must be four numbers (x, y, w, h) in image pixels.")
    problem = box_problem(box, width, height)
    if problem:
        raise WorkbenchError(f"box {box.tolist()} is empty or wholly outside the {width}x{height} image "
                             f"({problem}). Pass (x, y, w, h) overlapping the image, or no box for the whole image.")
    center, box_size = box_to_center_size(box, input_size[1] / input_size[0])
    matrix = crop_matrix(center, box_size, input_size)
    crop = warp_crop(pixels, matrix, input_size)
    heatmaps = predict_heatmaps(model, to_tensor(crop, mean, std)[None], flip).numpy()
    coords, scores = decode_heatmaps(heatmaps, decode)
    keypoints = heatmap_to_image(coords, matrix[None])[0]
    return PoseEstimate(keypoints, scores[0], heatmaps[0], crop, matrix, box)
