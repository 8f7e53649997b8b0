"""Heatmaps <-> keypoints, in one place: `encode_heatmaps` renders training targets (the MSRA / HRNet Gaussian and
DARK's unbiased variant), `decode_heatmaps` reads peaks back (standard quarter offset or DARK), `flip_back` and
`combine_flip` undo the flip test, `heatmap_to_image` maps heatmap points to image pixels through the crop.

Keypoint-set agnostic: the left/right permutation comes from the caller (`workbench.data.keypoints.FLIP_INDEX` for
COCO's 17 joints). Imports only `common`.
"""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch

from workbench.common.errors import WorkbenchError

ENCODINGS = ("standard", "unbiased")
DECODERS = ("standard", "dark")
HEATMAP_STRIDE = 4
"""Input pixels per heatmap pixel: heatmaps are (H/4, W/4); crop point p sits at heatmap point p / 4."""


def default_sigma(input_size: tuple[int, int]) -> float:
    """Gaussian sigma in heatmap pixels: 2 at 256x192, 3 at 384x288 (proportional to the input height)."""
    return 2.0 * input_size[0] / 256.0


def encode_heatmaps(joints: np.ndarray, visible: np.ndarray, heatmap_size: tuple[int, int], sigma: float,
                      encoding: str = "standard") -> tuple[np.ndarray, np.ndarray]:
    """Render one Gaussian per joint; returns heatmaps (K, h, w) float32 with peak 1 and weights (K,) float32.

    joints (K, 2) are in heatmap pixels (crop pixels / stride), visible (K,) bool, heatmap_size (h, w).
    "standard" centres each Gaussian on the nearest heatmap pixel and cuts it at 3 sigma (HRNet's target);
    "unbiased" centres it at the exact sub-pixel position (DARK). A joint gets weight 0, and an empty map, if it is
    not visible or its 3-sigma window lies wholly outside the heatmap.
    """
    if encoding not in ENCODINGS:
        raise ValueError(f"unknown heatmap encoding {encoding!r}; choose one of {ENCODINGS}")
    height, width = heatmap_size
    centers = np.floor(joints + 0.5) if encoding == "standard" else np.asarray(joints, dtype=np.float64)
    radius = 3.0 * sigma
    lower, upper = np.floor(joints + 0.5) - radius, np.floor(joints + 0.5) + radius + 1
    inside = (lower[:, 0] < width) & (lower[:, 1] < height) & (upper[:, 0] >= 0) & (upper[:, 1] >= 0)
    weights = (np.asarray(visible, dtype=bool) & inside).astype(np.float32)
    gx = _gaussian_1d(np.arange(width), centers[:, 0], sigma, radius if encoding == "standard" else None)
    gy = _gaussian_1d(np.arange(height), centers[:, 1], sigma, radius if encoding == "standard" else None)
    heatmaps = gy[:, :, None] * gx[:, None, :] * weights[:, None, None]
    return heatmaps.astype(np.float32), weights


def _gaussian_1d(grid: np.ndarray, centers: np.ndarray, sigma: float, cut: float | None) -> np.ndarray:
    """exp(-(grid - c)^2 / (2 sigma^2)) for each centre c: (K, len(grid)); zero beyond `cut` if given."""
    offsets = grid[None, :] - centers[:, None]
    values = np.exp(-offsets ** 2 / (2.0 * sigma ** 2))
    if cut is not None:
        values[np.abs(offsets) > cut] = 0.0
    return values


def flip_back(heatmaps: torch.Tensor, flip_index: Sequence[int], shift: bool = True) -> torch.Tensor:
    """Heatmaps (N, 17, h, w) of a mirrored crop -> heatmaps of the original crop.

    Mirrors the columns, puts joint `flip_index[k]` in place of joint k (left and right swapped) and, with `shift`,
    moves the result one column right: the standard "shifted flipped heatmap". (Crop pixel x mirrors to W-1-x but
    heatmap pixel j to w-1-j, so the flipped-back peak of a joint lies 3/4 of a heatmap pixel left of x/4; the
    whole-pixel shift leaves the averaged flip test 1/8 heatmap pixel, half a crop pixel, to the right, as in the
    reference implementations.)
    """
    flipped = heatmaps.flip(3)[:, list(flip_index)]
    if shift:
        flipped = torch.cat([flipped[..., :1], flipped[..., :-1]], dim=3)
    return flipped


def combine_flip(heatmaps: torch.Tensor, mirrored_heatmaps: torch.Tensor, flip_index: Sequence[int]) -> torch.Tensor:
    """Average the heatmaps of the crops with the flipped-back heatmaps of their mirrors: (N, 17, h, w)."""
    return (heatmaps + flip_back(mirrored_heatmaps, flip_index)) * 0.5


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
    inverse = np.stack([cv2.invertAffineTransform(matrix) for matrix in np.asarray(matrices, dtype=np.float64)])
    points = np.asarray(coords, dtype=np.float64) * HEATMAP_STRIDE
    return np.einsum("nij,nkj->nki", inverse[:, :, :2], points) + inverse[:, None, :, 2]
