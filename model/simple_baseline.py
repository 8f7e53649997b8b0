"""SimpleBaseline pose networks (Xiao et al., 2018): a torchvision classification backbone without its classifier,
three stride-2 deconvolutions and a 1x1 heatmap conv. ResNet-50/-152, MobileNetV2 and ShuffleNetV2 (widen 1.0): the
"SimpleBaseline", "MobileNetV2" and "ShuffleNetV2" rows of the paper's Tables 2 and 3 (section 4.5). The head follows
the official SimpleBaseline code (GitHub microsoft/human-pose-estimation.pytorch `lib/models/pose_resnet.py` with
`experiments/coco/resnet50/256x192_d256x3_adam_lr1e-3.yaml`: 3 x 256-channel deconvolutions, kernel 4); the
MobileNetV2 and ShuffleNetV2 rows put torchvision's whole feature extractor under the same head, as mmpose 0.x
`configs/body/2d_kpt_sview_rgb_img/topdown_heatmap/coco/mobilenetv2_coco_256x192.py` and `shufflenetv2_coco_256x192.py`
do.

The backbones keep torchvision's parameter names, so an ImageNet state dict of torchvision's model loads into
`backbone` as it is (its classifier keys are dropped); nothing is downloaded here.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping

import torch
from torch import nn
from torchvision import models

NUM_JOINTS = 17
CLASSIFIER_PREFIXES = ("fc.", "classifier.")


def _resnet_features(net: models.ResNet) -> nn.Sequential:
    names = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
    return nn.Sequential(OrderedDict((n, getattr(net, n)) for n in names))


def _mobilenet_features(net: models.MobileNetV2) -> nn.Sequential:
    return nn.Sequential(OrderedDict(features=net.features))


def _shufflenet_features(net: models.ShuffleNetV2) -> nn.Sequential:
    names = ("conv1", "maxpool", "stage2", "stage3", "stage4", "conv5")
    return nn.Sequential(OrderedDict((n, getattr(net, n)) for n in names))


BACKBONES: dict[str, tuple[Callable[[], nn.Module], Callable[[nn.Module], nn.Sequential], int]] = {
    "resnet50": (models.resnet50, _resnet_features, 2048),
    "resnet152": (models.resnet152, _resnet_features, 2048),
    "mobilenetv2": (models.mobilenet_v2, _mobilenet_features, 1280),
    "shufflenetv2": (models.shufflenet_v2_x1_0, _shufflenet_features, 1024),
}


BACKBONE_STAGES: dict[str, tuple[tuple[str, str], ...]] = {
    "resnet50": (("layer1", "1/4"), ("layer2", "1/8"), ("layer3", "1/16"), ("layer4", "1/32")),
    "resnet152": (("layer1", "1/4"), ("layer2", "1/8"), ("layer3", "1/16"), ("layer4", "1/32")),
    "mobilenetv2": (("features.3", "1/4"), ("features.6", "1/8"), ("features.13", "1/16"), ("features.18", "1/32")),
    "shufflenetv2": (("stage2", "1/8"), ("stage3", "1/16"), ("stage4", "1/32"), ("conv5", "1/32")),
}
"""Each backbone's last layer at each output stride, (path inside `backbone`, stride), for `SimpleBaseline.cam_layers`.
The paths keep torchvision's names (ShuffleNetV2's `stage2`-`stage4` are its own paper's numbering)."""


def load_backbone_state_dict(backbone: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Load a torchvision ImageNet state dict (classifier keys are ignored) into a SimpleBaseline backbone.

    Raises ValueError naming missing keys, unexpected keys and shape mismatches; loads nothing in that case.
    """
    own = backbone.state_dict()
    given = {k: v for k, v in state_dict.items() if not k.startswith(CLASSIFIER_PREFIXES)}
    missing = sorted(set(own) - set(given))
    unexpected = sorted(set(given) - set(own))
    mismatched = sorted(k for k in set(own) & set(given) if own[k].shape != given[k].shape)
    if missing or unexpected or mismatched:
        raise ValueError(
            f"the ImageNet state dict does not fit this backbone: {len(missing)} missing keys {missing[:4]}, "
            f"{len(unexpected)} unexpected keys {unexpected[:4]}, {len(mismatched)} shape mismatches {mismatched[:4]}; "
            "give the state dict of the same torchvision model"
        )
    backbone.load_state_dict(given)


class SimpleBaseline(nn.Module):
    """Backbone (N, C, H/32, W/32) -> 3 x [ConvTranspose2d(4, s2, p1, no bias) + BN + ReLU] to 256 channels ->
    1x1 conv with bias: (N, 3, H, W) -> (N, 17, H/4, W/4)."""

    def __init__(
        self, backbone: str, backbone_weights: Mapping[str, torch.Tensor] | None = None, num_joints: int = NUM_JOINTS
    ) -> None:
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"unknown SimpleBaseline backbone {backbone!r}; choose one of {sorted(BACKBONES)}")
        make, features, channels = BACKBONES[backbone]
        self.backbone_name = backbone
        self.backbone = features(make())
        if backbone_weights is not None:
            load_backbone_state_dict(self.backbone, backbone_weights)
        layers: list[nn.Module] = []
        for i in range(3):
            layers += [
                nn.ConvTranspose2d(channels if i == 0 else 256, 256, 4, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(256),
                nn.ReLU(inplace=True),
            ]
        self.deconv_layers = nn.Sequential(*layers)
        self.final_layer = nn.Conv2d(256, num_joints, 1)
        for m in self.deconv_layers.modules():
            if isinstance(m, nn.ConvTranspose2d):
                nn.init.normal_(m.weight, std=0.001)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.final_layer.weight, std=0.001)
        nn.init.zeros_(self.final_layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_layer(self.deconv_layers(self.backbone(x)))

    def cam_layers(self) -> dict[str, nn.Module]:
        """Layers offered for class activation maps (Grad-CAM) by readable name, from the input side to the output
        side: the backbone at each output stride (`BACKBONE_STAGES`), then each deconvolution's ReLU. Each runs once
        per forward pass and returns one tensor (N, C, h, w)."""
        layers = {f"backbone {path} ({stride})": self.backbone.get_submodule(path)
                  for path, stride in BACKBONE_STAGES[self.backbone_name]}
        relus = [m for m in self.deconv_layers if isinstance(m, nn.ReLU)]
        for i, relu in enumerate(relus):
            layers[f"deconv {i + 1} (1/{32 // 2 ** (i + 1)})"] = relu
        return layers
