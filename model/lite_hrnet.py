"""The Lite-HRNet family: Lite-HRNet-18/-30 (conditional channel weighting) and Lite CSW-HRNet (channel spatial
weighting), one network with the weighting block as its only difference.

The architecture follows the official implementation (GitHub HRNet/Lite-HRNet `models/backbones/litehrnet.py` with
`configs/top_down/lite_hrnet/coco/litehrnet_18_coco_256x192.py`; the same network as mmpose 0.x
`mmpose/models/backbones/litehrnet.py`), including the fusion quirk, and uses its parameter names, so that an
official checkpoint loads through `load_official_state_dict`. Lite CSW-HRNet (Xi et al., 2024: section 3.1 and
Table 1 for the network, sections 3.2-3.3 for the blocks) changes only the weighting functions (`model.weighting`).
Every name users see numbers the stages as the papers' Table 1 does (`FIRST_STAGE`); the attributes keep the
official 0-based `stage0`-`stage2`.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from model.layers import FIRST_STAGE, ConvBNAct, channel_shuffle, init_normal
from model.weighting import CrossResolutionCSW, CrossResolutionWeighting, CSWOptions, SEWeighting, SingleResolutionCSW

NUM_JOINTS = 17
STAGE_CHANNELS = ((40, 80), (40, 80, 160), (40, 80, 160, 320))
WEIGHTINGS = ("conditional", "csw")


@dataclass(frozen=True)
class LiteHRNetConfig:
    """Structure of a Lite-HRNet network.

    weighting: "conditional" (Lite-HRNet's cross-resolution + SE weighting) or "csw" (channel spatial weighting).
    modules_per_stage: modules in stages 2, 3, 4.
    blocks_per_stage: weighting blocks per module in stages 2, 3, 4 (the "repeat" column of Table 1).
    reduce_ratio: channel reduction of Lite-HRNet's cross-resolution weighting (conditional only).
    csw: the choices of channel spatial weighting (csw only).
    """

    weighting: str = "conditional"
    modules_per_stage: tuple[int, int, int] = (2, 4, 2)
    blocks_per_stage: tuple[int, int, int] = (2, 2, 2)
    reduce_ratio: int = 8
    csw: CSWOptions = CSWOptions()
    num_joints: int = NUM_JOINTS

    def __post_init__(self) -> None:
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {self.weighting!r}")
        for name in ("modules_per_stage", "blocks_per_stage"):
            value = tuple(getattr(self, name))
            if len(value) != 3 or any(int(v) < 1 for v in value):
                stages = ", ".join(str(FIRST_STAGE + s) for s in range(3))
                raise ValueError(f"{name} must be three positive integers (stages {stages}), got {value}")
            object.__setattr__(self, name, tuple(int(v) for v in value))


class Stem(nn.Module):
    """3x3 s2 conv 3->32, then a ShuffleNetV2-style s2 block: (N, 3, H, W) -> (N, 32, H/4, W/4)."""

    def __init__(self, channels: int = 32) -> None:
        super().__init__()
        half = channels // 2
        self.conv1 = ConvBNAct(3, channels, 3, stride=2)
        self.branch1 = nn.Sequential(
            ConvBNAct(half, half, 3, stride=2, groups=half, act=None), ConvBNAct(half, half, 1)
        )
        self.expand_conv = ConvBNAct(half, channels, 1)
        self.depthwise_conv = ConvBNAct(channels, channels, 3, stride=2, groups=channels, act=None)
        self.linear_conv = ConvBNAct(channels, half, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.conv1(x).chunk(2, dim=1)
        x2 = self.linear_conv(self.depthwise_conv(self.expand_conv(x2)))
        return channel_shuffle(torch.cat([self.branch1(x1), x2], dim=1), 2)


class WeightingBlock(nn.Module):
    """Lite-HRNet's conditional channel weighting block, or the paper's CSW block (Figure 2).

    Each branch's channels are split in half; the first half passes; the second goes through the cross-resolution
    weighting (all branches together), a depthwise 3x3 conv + BN, and the per-branch single-resolution weighting;
    the halves are concatenated and shuffled. Branch i: (N, C_i, H/2^i, W/2^i) in and out.
    """

    def __init__(self, channels: tuple[int, ...], config: LiteHRNetConfig) -> None:
        super().__init__()
        half = [c // 2 for c in channels]
        if config.weighting == "conditional":
            self.cross_resolution_weighting = CrossResolutionWeighting(half, config.reduce_ratio)
            single = [SEWeighting(c, 4) for c in half]
        else:
            self.cross_resolution_weighting = CrossResolutionCSW(half, config.csw)
            single = [SingleResolutionCSW(c, config.csw) for c in half]
        self.depthwise_convs = nn.ModuleList(ConvBNAct(c, c, 3, groups=c, act=None) for c in half)
        self.single_resolution_weighting = nn.ModuleList(single)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        halves = [x.chunk(2, dim=1) for x in xs]
        x2 = self.cross_resolution_weighting([h[1] for h in halves])
        x2 = [w(dw(x)) for x, dw, w in zip(x2, self.depthwise_convs, self.single_resolution_weighting)]
        return [channel_shuffle(torch.cat([h[0], y], dim=1), 2) for h, y in zip(halves, x2)]


def _downsample_step(in_channels: int, out_channels: int, relu: bool) -> nn.Sequential:
    """Depthwise 3x3 s2 + BN + 1x1 + BN (+ ReLU), plain layers as in the official code."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, in_channels, 3, 2, 1, groups=in_channels, bias=False),
        nn.BatchNorm2d(in_channels),
        nn.Conv2d(in_channels, out_channels, 1, bias=False),
        nn.BatchNorm2d(out_channels),
    ]
    if relu:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _fuse_layers(channels: tuple[int, ...]) -> nn.ModuleList:
    """fuse_layers[i][j] maps branch j to branch i: 1x1 conv + BN + nearest upsample (j > i), identity (j == i),
    or i - j depthwise-separable stride-2 steps, ReLU on all but the last (j < i)."""
    rows = nn.ModuleList()
    for i, c_i in enumerate(channels):
        row = nn.ModuleList()
        for j, c_j in enumerate(channels):
            if j > i:
                row.append(
                    nn.Sequential(
                        nn.Conv2d(c_j, c_i, 1, bias=False),
                        nn.BatchNorm2d(c_i),
                        nn.Upsample(scale_factor=float(2 ** (j - i)), mode="nearest"),
                    )
                )
            elif j == i:
                row.append(nn.Identity())
            else:
                steps = [_downsample_step(c_j, c_j, relu=True) for _ in range(i - j - 1)]
                row.append(nn.Sequential(*steps, _downsample_step(c_j, c_i, relu=False)))
        rows.append(row)
    return rows


class LiteHRModule(nn.Module):
    """Weighting blocks, then the multi-resolution fusion, with the official code's quirk kept on purpose.

    The official fusion starts branch i's sum from branch 0 (or fuse[i][0](branch 0)) and then adds j = 0 again,
    modifying branch 0's tensor in place, so output 0 is relu(2 x_0 + sum_{j>0} f_0j(x_j)) and for i >= 1 the map
    fuse[i][0] runs twice on that pre-ReLU sum y_0: relu(2 f_i0(y_0) + x_i + sum_{j>0, j!=i} f_ij(x_j)).
    Written here without in-place ops, with the same calls in the same order.
    """

    def __init__(self, channels: tuple[int, ...], num_blocks: int, config: LiteHRNetConfig) -> None:
        super().__init__()
        self.layers = nn.Sequential(*(WeightingBlock(channels, config) for _ in range(num_blocks)))
        self.fuse_layers = _fuse_layers(channels)
        self.relu = nn.ReLU()

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        x = self.layers(xs)
        outputs = []
        y0 = x[0] + x[0]
        for j in range(1, len(x)):
            y0 = y0 + self.fuse_layers[0][j](x[j])
        outputs.append(self.relu(y0))
        for i in range(1, len(self.fuse_layers)):
            y = self.fuse_layers[i][0](y0)
            y = y + self.fuse_layers[i][0](y0)
            for j in range(1, len(x)):
                y = y + (x[j] if i == j else self.fuse_layers[i][j](x[j]))
            outputs.append(self.relu(y))
        return outputs


def _transition(previous: tuple[int, ...], current: tuple[int, ...]) -> nn.ModuleList:
    """Into a stage: depthwise 3x3 + BN + 1x1 + BN + ReLU where a width changes (identity where it does not); a new
    lower branch from the last branch by depthwise 3x3 s2 + BN + 1x1 + BN + ReLU."""
    layers = nn.ModuleList()
    for i, c in enumerate(current):
        if i < len(previous):
            if c == previous[i]:
                layers.append(nn.Identity())
            else:
                p = previous[i]
                layers.append(
                    nn.Sequential(
                        nn.Conv2d(p, p, 3, 1, 1, groups=p, bias=False),
                        nn.BatchNorm2d(p),
                        nn.Conv2d(p, c, 1, bias=False),
                        nn.BatchNorm2d(c),
                        nn.ReLU(),
                    )
                )
        else:
            extra = i + 1 - len(previous)
            steps = [
                _downsample_step(previous[-1], c if k == extra - 1 else previous[-1], relu=True) for k in range(extra)
            ]
            layers.append(nn.Sequential(*steps))
    return layers


class IterativeHead(nn.Module):
    """From the lowest resolution up: depthwise-separable conv (dw 3x3 + BN, 1x1 + BN + ReLU) per branch, bilinear
    (align_corners) upsample-and-add into the next: widths 320->160->80->40->40. Returns branch 0: (N, 40, H/4, W/4).
    """

    def __init__(self, channels: tuple[int, ...]) -> None:
        super().__init__()
        reversed_channels = channels[::-1]
        outs = list(reversed_channels[1:]) + [reversed_channels[-1]]
        self.projects = nn.ModuleList(_depthwise_separable(c_in, c_out) for c_in, c_out in zip(reversed_channels, outs))

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        last = None
        for x, project in zip(xs[::-1], self.projects):
            if last is not None:
                x = x + F.interpolate(last, size=x.shape[-2:], mode="bilinear", align_corners=True)
            last = project(x)
        return last


def _depthwise_separable(in_channels: int, out_channels: int) -> nn.Sequential:
    module = nn.Sequential()
    module.add_module("depthwise_conv", ConvBNAct(in_channels, in_channels, 3, groups=in_channels, act=None))
    module.add_module("pointwise_conv", ConvBNAct(in_channels, out_channels, 1))
    return module


class LiteHRNetBackbone(nn.Module):
    """Stem, three stages of Lite-HR modules with their transitions, IterativeHead: (N, 3, H, W) -> (N, 40, H/4, W/4).

    Attributes `transition{s}` and `stage{s}` for s = 0, 1, 2 (the official names) hold the paper's stage
    FIRST_STAGE + s; the stem is the paper's stage 1.
    """

    def __init__(self, config: LiteHRNetConfig) -> None:
        super().__init__()
        self.stem = Stem(32)
        previous: tuple[int, ...] = (32,)
        for s, channels in enumerate(STAGE_CHANNELS):
            setattr(self, f"transition{s}", _transition(previous, channels))
            modules = [
                LiteHRModule(channels, config.blocks_per_stage[s], config) for _ in range(config.modules_per_stage[s])
            ]
            setattr(self, f"stage{s}", nn.Sequential(*modules))
            previous = channels
        self.head_layer = IterativeHead(previous)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ys = [self.stem(x)]
        for s in range(len(STAGE_CHANNELS)):
            transition = getattr(self, f"transition{s}")
            xs = [t(ys[min(i, len(ys) - 1)]) for i, t in enumerate(transition)]
            ys = getattr(self, f"stage{s}")(xs)
        return self.head_layer(ys)


class LiteHRNet(nn.Module):
    """Lite-HRNet backbone + 1x1 conv heatmap head: (N, 3, H, W) -> (N, 17, H/4, W/4)."""

    def __init__(self, config: LiteHRNetConfig = LiteHRNetConfig()) -> None:
        super().__init__()
        self.config = config
        self.backbone = LiteHRNetBackbone(config)
        self.final_layer = nn.Conv2d(STAGE_CHANNELS[-1][0], config.num_joints, 1)
        init_normal(self, std=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_layer(self.backbone(x))

    def cam_layers(self) -> dict[str, nn.Module]:
        """Layers offered for class activation maps (Grad-CAM) by readable name, from the input side to the output
        side: the stem, the single-resolution weighting of each branch in each stage's last block, and the
        IterativeHead. Each runs once per forward pass and returns one tensor (N, C, h, w)."""
        backbone = self.backbone
        layers: dict[str, nn.Module] = {"stem (1/4)": backbone.stem}
        for index in range(len(STAGE_CHANNELS)):
            last_block = getattr(backbone, f"stage{index}")[-1].layers[-1]
            for branch, weighting in enumerate(last_block.single_resolution_weighting):
                name = f"stage {FIRST_STAGE + index} branch {branch} (1/{4 * 2 ** branch}), last block"
                layers[name] = weighting
        layers["head (1/4)"] = backbone.head_layer
        return layers


def lite_hrnet_18(**options) -> LiteHRNet:
    """Lite-HRNet-18, official architecture: 1,130,769 parameters."""
    return LiteHRNet(LiteHRNetConfig(weighting="conditional", modules_per_stage=(2, 4, 2), **options))


def lite_hrnet_30(**options) -> LiteHRNet:
    """Lite-HRNet-30, official architecture: 1,763,717 parameters."""
    return LiteHRNet(LiteHRNetConfig(weighting="conditional", modules_per_stage=(3, 8, 3), **options))


def lite_csw_hrnet(
    blocks_per_stage: tuple[int, int, int] = (2, 2, 1), modules_per_stage: tuple[int, int, int] = (2, 4, 2), **csw
) -> LiteHRNet:
    """Lite CSW-HRNet (the paper): Lite-HRNet-18 with channel spatial weighting blocks.

    884,863 parameters with the defaults (blocks per stage (2, 2, 1) as Table 1 prints; 892,481 with (2, 2, 2)).
    Choices the paper leaves open, with the defaults taken:
    - blocks per module in stages 2/3/4: (2, 2, 1), Table 1's "repeat" column;
    - parallel M_c and M_s (eq. 2-3 and Figure 3; `order="sequential"` for the CBAM order of eq. 12);
    - avg+max pooling in both M_c and M_s (`channel_pooling`, `spatial_pooling`: "avg" or "max" for ablation);
    - the ECA kernel rule with gamma = 2, b = 1 (`eca_gamma`, `eca_b`): k = 3 for C <= 80, 5 for C = 140..300;
    - one 1D conv without bias shared by the avg and max descriptors (eq. 9);
    - the 7x7 spatial conv (`spatial_kernel`) without bias and without BN (`spatial_bias`, `spatial_bn`);
    - average pooling with a fixed kernel 2^(s-1-i) for the paper's adaptive average pooling (identical for inputs
      that are multiples of 32);
    - everything else (stem, transitions, fusion quirk, IterativeHead, 1x1 head, N(0, 0.001) initialisation) as
      Lite-HRNet-18.
    """
    return LiteHRNet(
        LiteHRNetConfig(
            weighting="csw", modules_per_stage=modules_per_stage, blocks_per_stage=blocks_per_stage, csw=CSWOptions(**csw)
        )
    )


def official_to_local_keys(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an official Lite-HRNet / mmpose 0.x state dict (`backbone.*`, `keypoint_head.final_layer.*`) to this
    module's names. Keys that match no rule are kept, so that the caller reports them as unexpected."""
    renamed = {}
    for key, value in state_dict.items():
        if key.startswith("keypoint_head.final_layer."):
            key = key[len("keypoint_head.") :]
        renamed[key.replace(".spatial_weighting.", ".single_resolution_weighting.")] = value
    return renamed


def local_to_official_keys(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of `official_to_local_keys`: this module's state dict in the official key layout."""
    renamed = {}
    for key, value in state_dict.items():
        if key.startswith("final_layer."):
            key = "keypoint_head." + key
        renamed[key.replace(".single_resolution_weighting.", ".spatial_weighting.")] = value
    return renamed


def load_official_state_dict(model: LiteHRNet, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Load an official Lite-HRNet / mmpose 0.x checkpoint's `state_dict` into `model`.

    Raises ValueError naming every missing key, unexpected key and shape mismatch; loads nothing in that case.
    """
    if model.config.weighting != "conditional":
        raise ValueError("official Lite-HRNet checkpoints hold conditional channel weighting; build lite_hrnet_18/30")
    renamed = official_to_local_keys(state_dict)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(renamed))
    unexpected = sorted(set(renamed) - set(expected))
    mismatched = sorted(
        f"{k}: checkpoint {tuple(renamed[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(expected) & set(renamed)
        if renamed[k].shape != expected[k].shape
    )
    problems = []
    for title, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", mismatched)):
        if items:
            shown = ", ".join(items[:8]) + (f", ... ({len(items)} in all)" if len(items) > 8 else "")
            problems.append(f"{title}: {shown}")
    if problems:
        raise ValueError(
            "the checkpoint does not fit this Lite-HRNet ("
            + "; ".join(problems)
            + "); check that it is an official Lite-HRNet checkpoint of the same depth (18 or 30)"
        )
    model.load_state_dict(renamed)
