"""The two weighting families of the Lite-HRNet network.

Lite-HRNet's conditional channel weighting (`CrossResolutionWeighting`, `SEWeighting`) and the paper's channel
spatial weighting (`ChannelWeight` M_c, `SpatialWeight` M_s, combined in `SingleResolutionCSW` S(.) and
`CrossResolutionCSW` C(.)). Every module that computes a weight map returns it from its own `forward`, so that the
probes (`model.probes`) read the maps with forward hooks and cost nothing when they are off.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from model.layers import ConvBNAct

POOLINGS = ("avg+max", "avg", "max")
ORDERS = ("parallel", "sequential")


def pool_kernel(branch: int, num_branches: int) -> int:
    """Kernel (and stride) that average-pools branch `branch` to the size of the last, smallest branch.

    Branch i has 1/2^i of branch 0's size, so the ratio is fixed by the structure; for inputs that are a multiple
    of 32 this equals the paper's adaptive average pooling and exports to ONNX as a plain AveragePool.
    """
    return 2 ** (num_branches - 1 - branch)


def pool_to_smallest(xs: list[torch.Tensor]) -> torch.Tensor:
    """Average-pool every branch of `xs` to the smallest branch's size and concatenate: (N, sum C_i, h, w)."""
    s = len(xs)
    pooled = [F.avg_pool2d(x, pool_kernel(i, s)) if i < s - 1 else x for i, x in enumerate(xs)]
    return torch.cat(pooled, dim=1)


def upsample_to_branch(w: torch.Tensor, branch: int, num_branches: int) -> torch.Tensor:
    """Nearest-upsample a weight map from the smallest branch's size to branch `branch`'s size.

    The smallest branch is "upsampled" by 1 as well, as in the official code (fvcore counts that call).
    """
    return F.interpolate(w, scale_factor=float(pool_kernel(branch, num_branches)), mode="nearest")


class CrossResolutionWeighting(nn.Module):
    """Lite-HRNet's cross-resolution weighting H(.): pooled branches -> 1x1 conv -> BN -> ReLU -> 1x1 conv -> BN ->
    Sigmoid, split back per branch, nearest-upsampled and multiplied in.

    `conv2`'s output is the weight map (N, sum C_i, h, w) at the smallest branch's resolution.
    """

    def __init__(self, channels: list[int], ratio: int = 8) -> None:
        super().__init__()
        self.channels = list(channels)
        total = sum(channels)
        self.conv1 = ConvBNAct(total, int(total / ratio), 1, act=nn.ReLU)
        self.conv2 = ConvBNAct(int(total / ratio), total, 1, act=nn.Sigmoid)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        weights = self.conv2(self.conv1(pool_to_smallest(xs)))
        s = len(xs)
        return [x * upsample_to_branch(w, i, s) for i, (x, w) in enumerate(zip(xs, weights.split(self.channels, 1)))]


class SEWeighting(nn.Module):
    """Lite-HRNet's per-branch weighting (called "spatial weighting" in its code, in fact squeeze-and-excitation):
    global average pool -> 1x1 conv C -> C/ratio (bias) -> ReLU -> 1x1 conv -> C (bias) -> Sigmoid -> multiply.

    `conv2`'s output is the channel weight (N, C, 1, 1).
    """

    def __init__(self, channels: int, ratio: int = 4) -> None:
        super().__init__()
        self.conv1 = ConvBNAct(channels, int(channels / ratio), 1, norm=False, act=nn.ReLU)
        self.conv2 = ConvBNAct(int(channels / ratio), channels, 1, norm=False, act=nn.Sigmoid)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.conv2(self.conv1(F.adaptive_avg_pool2d(x, 1)))


def eca_kernel_size(channels: int, gamma: float = 2.0, b: float = 1.0) -> int:
    """The paper's eq. 8 (from ECA-Net): k = |log2(C)/gamma + b/gamma| rounded to the nearest odd number, >= 1.

    With gamma = 2, b = 1: k = 3 for 20 <= C <= 80 and k = 5 for 140 <= C <= 300.
    """
    t = abs(math.log2(channels) / gamma + b / gamma)
    return max(1, 2 * math.floor((t - 1) / 2 + 0.5) + 1)


@dataclass(frozen=True)
class CSWOptions:
    """The choices of channel spatial weighting; defaults are the paper's (section 3.2 and 3.3).

    order: "parallel" computes M_c and M_s from the same input (eq. 2-3, Figure 3); "sequential" computes M_s from
        M_c (x) F, the CBAM order that eq. 12's arrows suggest.
    channel_pooling / spatial_pooling: "avg+max" (eq. 9 and 10), "avg" or "max" alone (the Figure 4 ablation).
    spatial_kernel: side of the spatial convolution (7 in eq. 10).
    eca_gamma / eca_b: gamma and b of eq. 8 (ECA's 2 and 1; see `eca_kernel_size`).
    spatial_bn: a BatchNorm between the spatial convolution and the sigmoid, as CBAM has; the paper names none.
    spatial_bias: a bias in the spatial convolution; the paper names none.
    """

    order: str = "parallel"
    channel_pooling: str = "avg+max"
    spatial_pooling: str = "avg+max"
    spatial_kernel: int = 7
    eca_gamma: float = 2.0
    eca_b: float = 1.0
    spatial_bn: bool = False
    spatial_bias: bool = False

    def __post_init__(self) -> None:
        if self.order not in ORDERS:
            raise ValueError(f"order must be one of {ORDERS}, got {self.order!r}")
        for name in ("channel_pooling", "spatial_pooling"):
            if getattr(self, name) not in POOLINGS:
                raise ValueError(f"{name} must be one of {POOLINGS}, got {getattr(self, name)!r}")
        if self.spatial_kernel < 1 or self.spatial_kernel % 2 == 0:
            raise ValueError(f"spatial_kernel must be a positive odd number, got {self.spatial_kernel}")
        if self.eca_gamma <= 0:
            raise ValueError(f"eca_gamma must be positive, got {self.eca_gamma}")


class ChannelWeight(nn.Module):
    """M_c (eq. 9): sigma(f1D_k(AvgPool(F)) + f1D_k(MaxPool(F))), one shared 1D conv over channels, no bias.

    The conv is linear and has no bias, so f(avg) + f(max) is computed as f(avg + max): the same function with one
    convolution instead of two. (N, C, H, W) -> (N, C, 1, 1).
    """

    def __init__(self, channels: int, pooling: str = "avg+max", gamma: float = 2.0, b: float = 1.0) -> None:
        super().__init__()
        self.pooling = pooling
        k = eca_kernel_size(channels, gamma, b)
        self.conv = nn.Conv1d(1, 1, k, padding=k // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[:2]
        if self.pooling == "avg+max":
            y = F.adaptive_avg_pool2d(x, 1) + F.adaptive_max_pool2d(x, 1)
        elif self.pooling == "avg":
            y = F.adaptive_avg_pool2d(x, 1)
        else:
            y = F.adaptive_max_pool2d(x, 1)
        return torch.sigmoid(self.conv(y.reshape(n, 1, c))).reshape(n, c, 1, 1)


class SpatialWeight(nn.Module):
    """M_s (eq. 10): sigma(f_kxk([mean over channels; max over channels])). (N, C, H, W) -> (N, 1, H, W)."""

    def __init__(self, pooling: str = "avg+max", kernel_size: int = 7, bn: bool = False, bias: bool = False) -> None:
        super().__init__()
        self.pooling = pooling
        in_channels = 2 if pooling == "avg+max" else 1
        self.conv = nn.Conv2d(in_channels, 1, kernel_size, padding=kernel_size // 2, bias=bias)
        self.bn = nn.BatchNorm2d(1) if bn else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pooling == "avg+max":
            y = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], dim=1)
        elif self.pooling == "avg":
            y = x.mean(1, keepdim=True)
        else:
            y = x.amax(1, keepdim=True)
        return torch.sigmoid(self.bn(self.conv(y)))


def _weights(options: CSWOptions, channels: int) -> tuple[ChannelWeight, SpatialWeight]:
    channel = ChannelWeight(channels, options.channel_pooling, options.eca_gamma, options.eca_b)
    spatial = SpatialWeight(options.spatial_pooling, options.spatial_kernel, options.spatial_bn, options.spatial_bias)
    return channel, spatial


class SingleResolutionCSW(nn.Module):
    """S(.) (eq. 3, 11): F'' = M_c(F) (x) M_s(F) (x) F, broadcasting M_c over space and M_s over channels."""

    def __init__(self, channels: int, options: CSWOptions = CSWOptions()) -> None:
        super().__init__()
        self.sequential = options.order == "sequential"
        self.channel_weight, self.spatial_weight = _weights(options, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m_c = self.channel_weight(x)
        if self.sequential:
            x = x * m_c
            return x * self.spatial_weight(x)
        return x * (m_c * self.spatial_weight(x))


class CrossResolutionCSW(nn.Module):
    """C(.) (eq. 13-15): average-pool every branch to the smallest size, concatenate, compute M_c over all channels
    and M_s at the smallest resolution, W' = M_c (x) M_s, split W' per branch, nearest-upsample, multiply.

    M_c is constant over space, so each branch's upsampled part of W' is M_c's part (x) upsample(M_s): the
    (sum C_i, h, w) product is never materialised.
    """

    def __init__(self, channels: list[int], options: CSWOptions = CSWOptions()) -> None:
        super().__init__()
        self.channels = list(channels)
        self.sequential = options.order == "sequential"
        self.channel_weight, self.spatial_weight = _weights(options, sum(channels))

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        pooled = pool_to_smallest(xs)
        m_c = self.channel_weight(pooled)
        m_s = self.spatial_weight(pooled * m_c if self.sequential else pooled)
        s = len(xs)
        return [x * (c * upsample_to_branch(m_s, i, s)) for i, (x, c) in enumerate(zip(xs, m_c.split(self.channels, 1)))]
