"""Small building blocks shared by the model families, and their common stage numbering."""
from __future__ import annotations

import torch
from torch import nn

FIRST_STAGE = 2
"""The paper's number of the first multi-resolution stage, i.e. of module attribute `stage0` (Lite-HRNet) or
`stages[0]` (HRNet): the number every name shown to users carries is FIRST_STAGE + the attribute's index.

Lite CSW-HRNet's Table 1 (section 3.1) lists the stem as "stage1" and the three stages of weighting blocks as
"stage2", "stage3", "stage4"; the Lite-HRNet paper (Yu et al., CVPR 2021) numbers them 2 to 4 after its stem, and
HRNet (Sun et al., CVPR 2019) numbers its Bottleneck `layer1` stage 1 and the multi-resolution stages 2 to 4. The
attributes keep the official code's 0-based names (`stage0` to `stage2` in GitHub HRNet/Lite-HRNet
`models/backbones/litehrnet.py` and mmpose 0.x `mmpose/models/backbones/litehrnet.py`) because the keys of official
checkpoints depend on them.
"""


class ConvBNAct(nn.Sequential):
    """Conv2d, optional BatchNorm, optional activation; children named `conv`, `bn`, `act`.

    The conv has a bias only when there is no BatchNorm (as mmcv's ConvModule, whose key layout the
    official Lite-HRNet checkpoints use: `<name>.conv.weight`, `<name>.bn.running_mean`, ...).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        groups: int = 1,
        norm: bool = True,
        act: type[nn.Module] | None = nn.ReLU,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride, kernel_size // 2, groups=groups, bias=not norm
        )
        if norm:
            self.bn = nn.BatchNorm2d(out_channels)
        if act is not None:
            self.act = act()


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet channel shuffle of (N, C, H, W) with C divisible by `groups`."""
    n, c, h, w = x.shape
    return x.reshape(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


def init_normal(module: nn.Module, std: float = 0.001) -> None:
    """Official Lite-HRNet / HRNet initialisation: conv weights N(0, std), biases 0, BN weight 1 and bias 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Conv1d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
