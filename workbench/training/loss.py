"""The heatmap loss of the recipe: mean squared error with per-joint target weights."""
from __future__ import annotations

import torch
from torch import nn


class JointsMSELoss(nn.Module):
    """0.5 x mean over (N, K, h, w) of ((heatmaps - targets) x weight)^2: mmpose's JointsMSELoss with
    use_target_weight=True (the mean over joints of each joint's MSE, halved).

    heatmaps and targets (N, K, h, w), weights (N, K); joints of weight 0 (unlabelled, outside the crop) add nothing
    but still count in the mean, as in the reference implementations.
    """

    def forward(self, heatmaps: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        if heatmaps.shape != targets.shape or weights.shape != heatmaps.shape[:2]:
            raise ValueError(f"heatmaps {tuple(heatmaps.shape)}, targets {tuple(targets.shape)} and weights "
                             f"{tuple(weights.shape)} must be (N, K, h, w), (N, K, h, w) and (N, K)")
        return 0.5 * ((heatmaps - targets) * weights[:, :, None, None]).pow(2).mean()
