"""Grad-CAM of a pose network for one joint, on pytorch-grad-cam.

The target scores a joint by the peak of its heatmap, so the map shows which features raise that joint's most
confident location. Layers are offered by readable name per model family, and only layers that run once per
forward pass and return one tensor (Grad-CAM pairs one activation with one gradient).
"""
from __future__ import annotations

import numpy as np
import torch
from pytorch_grad_cam import GradCAM
from torch import nn

from model.hrnet import HRNet
from model.lite_hrnet import LiteHRNet
from model.simple_baseline import SimpleBaseline
from workbench.common.errors import WorkbenchError
from workbench.data.keypoints import JOINT_NAMES


class JointPeakTarget:
    """Grad-CAM target: the maximum of joint `joint`'s heatmap in one output (17, h, w)."""

    def __init__(self, joint: int) -> None:
        self.joint = joint

    def __call__(self, heatmaps: torch.Tensor) -> torch.Tensor:
        return heatmaps[self.joint].max()


def _lite_hrnet_layers(model: LiteHRNet) -> dict[str, nn.Module]:
    backbone = model.backbone
    layers = {"stem (1/4)": backbone.stem}
    for s in range(3):
        last_block = getattr(backbone, f"stage{s}")[-1].layers[-1]
        for i, weighting in enumerate(last_block.single_resolution_weighting):
            layers[f"stage {s + 2} branch {i} (1/{4 * 2 ** i}), last block"] = weighting
    layers["head (1/4)"] = backbone.head_layer
    return layers


def _hrnet_layers(model: HRNet) -> dict[str, nn.Module]:
    layers = {"stem (1/4)": model.stem, "stage 1 (1/4)": model.layer1}
    for s, stage in enumerate(model.stages):
        for i, branch in enumerate(stage[-1].branches):
            layers[f"stage {s + 2} branch {i} (1/{4 * 2 ** i}), last module"] = branch
    return layers


_BACKBONE_STAGES = {
    "layer4": (("layer1", "1/4"), ("layer2", "1/8"), ("layer3", "1/16"), ("layer4", "1/32")),
    "stage2": (("stage2", "1/8"), ("stage3", "1/16"), ("stage4", "1/32"), ("conv5", "1/32")),
}
_MOBILENET_STAGES = ((3, "1/4"), (6, "1/8"), (13, "1/16"), (18, "1/32"))


def _simple_baseline_layers(model: SimpleBaseline) -> dict[str, nn.Module]:
    backbone = dict(model.backbone.named_children())
    layers: dict[str, nn.Module] = {}
    if "features" in backbone:
        for index, scale in _MOBILENET_STAGES:
            layers[f"backbone features.{index} ({scale})"] = backbone["features"][index]
    else:
        stages = next(names for key, names in _BACKBONE_STAGES.items() if key in backbone)
        for name, scale in stages:
            layers[f"backbone {name} ({scale})"] = backbone[name]
    relus = [m for m in model.deconv_layers if isinstance(m, nn.ReLU)]
    for i, relu in enumerate(relus):
        layers[f"deconv {i + 1} (1/{32 // 2 ** (i + 1)})"] = relu
    return layers


def gradcam_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Readable name -> layer for Grad-CAM, from the input side to the output side; empty for unknown families."""
    if isinstance(model, LiteHRNet):
        return _lite_hrnet_layers(model)
    if isinstance(model, HRNet):
        return _hrnet_layers(model)
    if isinstance(model, SimpleBaseline):
        return _simple_baseline_layers(model)
    return {}


def joint_gradcam(model: nn.Module, images: torch.Tensor, joint: int, layer: str) -> np.ndarray:
    """Grad-CAM maps (N, H, W) in [0, 1] for joint `joint` (index into JOINT_NAMES) at the layer named `layer`
    (a key of `gradcam_layers(model)`), for normalised crops `images` (N, 3, H, W).

    Runs one forward and one backward pass with hooks on the layer; the model's parameter gradients are cleared
    afterwards. Not thread-safe for one model: callers sharing a model must hold its lock.
    """
    layers = gradcam_layers(model)
    if layer not in layers:
        raise WorkbenchError(f"no Grad-CAM layer {layer!r} in {type(model).__name__}. "
                             f"Choose one of: {', '.join(layers) or 'none (unknown model family)'}.")
    if not 0 <= joint < len(JOINT_NAMES):
        raise WorkbenchError(f"joint index {joint} is out of range. Choose 0-{len(JOINT_NAMES) - 1} (COCO order).")
    try:
        with GradCAM(model=model, target_layers=[layers[layer]]) as cam:
            maps = cam(input_tensor=images, targets=[JointPeakTarget(joint)] * len(images))
    finally:
        model.zero_grad(set_to_none=True)
    return np.asarray(maps, dtype=np.float32)
