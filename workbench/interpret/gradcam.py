"""Grad-CAM of a pose network for one joint, on pytorch-grad-cam.

The target scores a joint by the peak of its heatmap, so the map shows which features raise that joint's most
confident location. Each model family declares its layers by readable name (`cam_layers()`, as timm models declare
`feature_info`): only layers that run once per forward pass and return one tensor (Grad-CAM pairs one activation
with one gradient).
"""
from __future__ import annotations

import numpy as np
import torch
from pytorch_grad_cam import GradCAM
from torch import nn

from workbench.common.errors import WorkbenchError
from workbench.data.keypoints import JOINT_NAMES


class JointPeakTarget:
    """Grad-CAM target: the maximum of joint `joint`'s heatmap in one output (17, h, w)."""

    def __init__(self, joint: int) -> None:
        self.joint = joint

    def __call__(self, heatmaps: torch.Tensor) -> torch.Tensor:
        return heatmaps[self.joint].max()


def gradcam_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Readable name -> layer for Grad-CAM, from the input side to the output side, as the model family declares
    them in its `cam_layers()` method (see `model.lite_hrnet.LiteHRNet.cam_layers`); empty for a model that declares
    none (an ONNX model, an unknown family)."""
    declared = getattr(model, "cam_layers", None)
    return dict(declared()) if callable(declared) else {}


def joint_gradcam(model: nn.Module, images: torch.Tensor, joint: int, layer: str) -> np.ndarray:
    """Grad-CAM maps (N, H, W) in [0, 1] for joint `joint` (index into JOINT_NAMES) at the layer named `layer`
    (a key of `gradcam_layers(model)`), for normalised crops `images` (N, 3, H, W).

    Runs one forward and one backward pass with hooks on the layer; the model's parameter gradients are cleared
    afterwards. Not thread-safe for one model: callers sharing a model must hold its lock.
    """
    layers = gradcam_layers(model)
    if layer not in layers:
        raise WorkbenchError(f"no Grad-CAM layer {layer!r} in {type(model).__name__}. "
                             f"Choose one of: {', '.join(layers) or 'none (the model declares no cam_layers)'}.")
    if not 0 <= joint < len(JOINT_NAMES):
        raise WorkbenchError(f"joint index {joint} is out of range. Choose 0-{len(JOINT_NAMES) - 1} (COCO order).")
    try:
        with GradCAM(model=model, target_layers=[layers[layer]]) as cam:
            maps = cam(input_tensor=images, targets=[JointPeakTarget(joint)] * len(images))
    finally:
        model.zero_grad(set_to_none=True)
    return np.asarray(maps, dtype=np.float32)
