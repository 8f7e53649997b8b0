"""HRNet (Sun et al., 2019) for pose: HRNet-W32 and the Small HRNet (W16) of the Lite-HRNet paper's comparison.

HRNet-W32 as the official code builds it (GitHub leoxiaobin/deep-high-resolution-net.pytorch `lib/models/pose_hrnet.py`
with `experiments/coco/hrnet/w32_256x192_adam_lr1e-3.yaml`; mmpose 0.x `mmpose/models/backbones/hrnet.py`), the
"HRNet" rows of the paper's Tables 2 and 3 (section 4.5). Small HRNet (W16) is the "Small HRNet" row of those tables,
taken from the Lite-HRNet paper's comparison (Yu et al., CVPR 2021): the same network with one Bottleneck of 32
planes in stage 1, one module per later stage, two BasicBlocks per branch and widths 16/32/64/128. Residual blocks
are torchvision's `BasicBlock` and `Bottleneck`, which are the same networks as HRNet's. Stages are numbered as in
the HRNet paper: `layer1` is stage 1, `stages[s]` is stage FIRST_STAGE + s.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from model.layers import FIRST_STAGE, init_normal

NUM_JOINTS = 17


@dataclass(frozen=True)
class HRNetConfig:
    """stage1_blocks / stage1_planes: Bottlenecks of stage 1 and their width (output 4 x planes);
    modules: modules of stages 2, 3, 4; blocks: BasicBlocks per branch; widths: branch widths (stage 4 has all four).
    """

    stage1_blocks: int
    stage1_planes: int
    modules: tuple[int, int, int]
    blocks: int
    widths: tuple[int, int, int, int]
    num_joints: int = NUM_JOINTS


W32 = HRNetConfig(stage1_blocks=4, stage1_planes=64, modules=(1, 4, 3), blocks=4, widths=(32, 64, 128, 256))
SMALL_W16 = HRNetConfig(stage1_blocks=1, stage1_planes=32, modules=(1, 1, 1), blocks=2, widths=(16, 32, 64, 128))


def _conv_bn(in_channels: int, out_channels: int, kernel: int, stride: int, relu: bool) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, bias=False),
        nn.BatchNorm2d(out_channels),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def _residual_stack(block: type[nn.Module], in_channels: int, planes: int, count: int) -> nn.Sequential:
    out_channels = planes * block.expansion
    downsample = _conv_bn(in_channels, out_channels, 1, 1, relu=False) if in_channels != out_channels else None
    layers = [block(in_channels, planes, downsample=downsample)]
    layers += [block(out_channels, planes) for _ in range(count - 1)]
    return nn.Sequential(*layers)


class HRModule(nn.Module):
    """Parallel branches of BasicBlocks, then fusion: upward 1x1 conv + BN + nearest upsample, downward strided
    3x3 conv + BN (+ ReLU but on the last step), sum, ReLU. Outputs every branch, or only the highest if
    `multi_scale_output` is False."""

    def __init__(self, widths: tuple[int, ...], blocks: int, multi_scale_output: bool) -> None:
        super().__init__()
        self.branches = nn.ModuleList(_residual_stack(BasicBlock, w, w, blocks) for w in widths)
        self.fuse_layers = nn.ModuleList()
        for i in range(len(widths) if multi_scale_output else 1):
            row = nn.ModuleList()
            for j, w_j in enumerate(widths):
                if j > i:
                    row.append(
                        nn.Sequential(
                            nn.Conv2d(w_j, widths[i], 1, bias=False),
                            nn.BatchNorm2d(widths[i]),
                            nn.Upsample(scale_factor=float(2 ** (j - i)), mode="nearest"),
                        )
                    )
                elif j == i:
                    row.append(nn.Identity())
                else:
                    steps = [_conv_bn(w_j, w_j, 3, 2, relu=True) for _ in range(i - j - 1)]
                    row.append(nn.Sequential(*steps, _conv_bn(w_j, widths[i], 3, 2, relu=False)))
            self.fuse_layers.append(row)
        self.relu = nn.ReLU()

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        outputs = []
        for i, row in enumerate(self.fuse_layers):
            y = row[0](xs[0])
            for j in range(1, len(xs)):
                y = y + row[j](xs[j])
            outputs.append(self.relu(y))
        return outputs


def _transition(previous: tuple[int, ...], current: tuple[int, ...]) -> nn.ModuleList:
    layers = nn.ModuleList()
    for i, c in enumerate(current):
        if i < len(previous):
            layers.append(nn.Identity() if c == previous[i] else _conv_bn(previous[i], c, 3, 1, relu=True))
        else:
            extra = i + 1 - len(previous)
            steps = [_conv_bn(previous[-1], c if k == extra - 1 else previous[-1], 3, 2, relu=True) for k in range(extra)]
            layers.append(nn.Sequential(*steps))
    return layers


class HRNet(nn.Module):
    """HRNet pose network: stem (two 3x3 s2 convs, 64 channels), stage 1 of Bottlenecks, stages 2-4 with 2/3/4
    branches, 1x1 conv head on the highest-resolution branch: (N, 3, H, W) -> (N, 17, H/4, W/4)."""

    def __init__(self, config: HRNetConfig) -> None:
        super().__init__()
        self.config = config
        self.stem = nn.Sequential(_conv_bn(3, 64, 3, 2, relu=True), _conv_bn(64, 64, 3, 2, relu=True))
        self.layer1 = _residual_stack(Bottleneck, 64, config.stage1_planes, config.stage1_blocks)
        previous: tuple[int, ...] = (config.stage1_planes * Bottleneck.expansion,)
        self.transitions = nn.ModuleList()
        self.stages = nn.ModuleList()
        for s in range(3):
            widths = config.widths[: s + 2]
            self.transitions.append(_transition(previous, widths))
            last_stage = s == 2
            self.stages.append(
                nn.Sequential(
                    *(
                        HRModule(widths, config.blocks, multi_scale_output=not (last_stage and m == config.modules[s] - 1))
                        for m in range(config.modules[s])
                    )
                )
            )
            previous = widths
        self.final_layer = nn.Conv2d(config.widths[0], config.num_joints, 1)
        init_normal(self, std=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ys = [self.layer1(self.stem(x))]
        for transition, stage in zip(self.transitions, self.stages):
            ys = stage([t(ys[min(i, len(ys) - 1)]) for i, t in enumerate(transition)])
        return self.final_layer(ys[0])

    def cam_layers(self) -> dict[str, nn.Module]:
        """Layers offered for class activation maps (Grad-CAM) by readable name, from the input side to the output
        side: the stem, stage 1, and each branch of each later stage's last module. Each runs once per forward pass
        and returns one tensor (N, C, h, w)."""
        layers: dict[str, nn.Module] = {"stem (1/4)": self.stem, "stage 1 (1/4)": self.layer1}
        for index, stage in enumerate(self.stages):
            for branch, module in enumerate(stage[-1].branches):
                layers[f"stage {FIRST_STAGE + index} branch {branch} (1/{4 * 2 ** branch}), last module"] = module
        return layers


def hrnet_w32() -> HRNet:
    """HRNet-W32 (SimpleBaseline-style top-down pose net of the HRNet paper): 28,536,113 parameters."""
    return HRNet(W32)


def small_hrnet_w16() -> HRNet:
    """Small HRNet (W16) of the Lite-HRNet paper's comparison: 1,284,961 parameters."""
    return HRNet(SMALL_W16)
