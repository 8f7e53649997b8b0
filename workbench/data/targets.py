"""Gaussian heatmap targets with per-joint weights (the MSRA / HRNet target and DARK's unbiased variant)."""
from __future__ import annotations

import numpy as np

ENCODINGS = ("standard", "unbiased")
HEATMAP_STRIDE = 4
"""Input pixels per heatmap pixel: heatmaps are (H/4, W/4); crop point p sits at heatmap point p / 4."""


def default_sigma(input_size: tuple[int, int]) -> float:
    """Gaussian sigma in heatmap pixels: 2 at 256x192, 3 at 384x288 (proportional to the input height)."""
    return 2.0 * input_size[0] / 256.0


def gaussian_heatmaps(joints: np.ndarray, visible: np.ndarray, heatmap_size: tuple[int, int], sigma: float,
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
