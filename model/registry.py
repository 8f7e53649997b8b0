"""`build_model(name, **options)` and the list of names: the one way every face of the workbench makes a model."""
from __future__ import annotations

from collections.abc import Callable
from functools import partial

from torch import nn

from model.hrnet import hrnet_w32, small_hrnet_w16
from model.lite_hrnet import lite_csw_hrnet, lite_hrnet_18, lite_hrnet_30
from model.simple_baseline import SimpleBaseline

INPUT_SIZES = ((256, 192), (384, 288))

_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "lite_csw_hrnet": lite_csw_hrnet,
    "lite_hrnet_18": lite_hrnet_18,
    "lite_hrnet_30": lite_hrnet_30,
    "mobilenetv2": partial(SimpleBaseline, "mobilenetv2"),
    "shufflenetv2": partial(SimpleBaseline, "shufflenetv2"),
    "resnet50": partial(SimpleBaseline, "resnet50"),
    "resnet152": partial(SimpleBaseline, "resnet152"),
    "hrnet_w32": hrnet_w32,
    "small_hrnet_w16": small_hrnet_w16,
}


def model_names() -> list[str]:
    """Every name `build_model` accepts, the paper's model first."""
    return list(_BUILDERS)


def build_model(name: str, input_size: tuple[int, int] = (256, 192), **options) -> nn.Module:
    """Build a pose network by name: (N, 3, H, W) ImageNet-normalised -> heatmaps (N, 17, H/4, W/4).

    input_size: (height, width) in pixels, multiples of 32 (the paper uses (256, 192) and (384, 288)). The networks
        are fully convolutional; the size is checked and kept as `model.input_size` for the callers.
    options: the family's own options (see `lite_csw_hrnet`; `backbone_weights` for the SimpleBaselines: a
        torchvision ImageNet state dict).
    The returned module also carries `model.name` and `model.options`.
    """
    if name not in _BUILDERS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(_BUILDERS)}")
    height, width = (int(v) for v in input_size)
    if height <= 0 or width <= 0 or height % 32 or width % 32:
        raise ValueError(f"input_size must be (height, width) in positive multiples of 32, got {tuple(input_size)}")
    try:
        model = _BUILDERS[name](**options)
    except TypeError as error:
        raise ValueError(f"bad option for {name}: {error}") from None
    model.name = name
    model.input_size = (height, width)
    model.options = dict(options)
    return model
