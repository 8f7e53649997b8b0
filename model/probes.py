"""Weight-map probes: run a model and also get every weight map its weighting functions compute, by stable names.

Names read `stage{2,3,4}/module{m}/block{b}/cross/{kind}` for a cross-resolution function and
`stage{2,3,4}/module{m}/block{b}/branch{i}/single/{kind}` for a single-resolution one, with
- Lite CSW-HRNet: kind `channel` (M_c, (N, C)) and `spatial` (M_s, (N, 1, h, w)); the cross-resolution M_c covers
  the concatenated branches' second halves (C = sum C_i / 2) and its M_s lives at the smallest branch's size;
- Lite-HRNet: cross kind `weights` ((N, sum C_i / 2, h, w), at the smallest branch's size, before the nearest
  upsampling) and single kind `channel` (the SE weights, (N, C)).
Stages are numbered as in the paper's Table 1 (stage 1 is the stem): the network's `stage{s}` attribute appears as
stage FIRST_STAGE + s (`model.layers.FIRST_STAGE`). Probes are forward hooks registered only for the call (or the
`record_weight_maps` block), so they cost nothing when off and leave the outputs bit-identical.
"""
from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TypeVar

import torch
from torch import nn

from model.layers import FIRST_STAGE
from model.weighting import ChannelWeight, CrossResolutionWeighting, SEWeighting, SpatialWeight

T = TypeVar("T")

_PATH = re.compile(
    r"backbone\.stage(?P<stage>\d+)\.(?P<module>\d+)\.layers\.(?P<block>\d+)\."
    r"(?:cross_resolution_weighting|single_resolution_weighting\.(?P<branch>\d+))\.(?P<part>\w+)$"
)
_KINDS = {"channel_weight": "channel", "spatial_weight": "spatial"}


def _probe_name(path: str, module: nn.Module, parent: nn.Module) -> str | None:
    match = _PATH.match(path)
    if match is None:
        return None
    part = match["part"]
    if isinstance(module, (ChannelWeight, SpatialWeight)):
        kind = _KINDS[part]
    elif part == "conv2" and isinstance(parent, CrossResolutionWeighting):
        kind = "weights"
    elif part == "conv2" and isinstance(parent, SEWeighting):
        kind = "channel"
    else:
        return None
    where = "cross" if match["branch"] is None else f"branch{match['branch']}/single"
    stage = FIRST_STAGE + int(match["stage"])
    return f"stage{stage}/module{match['module']}/block{match['block']}/{where}/{kind}"


def weight_map_modules(model: nn.Module) -> "OrderedDict[str, nn.Module]":
    """Probe name -> the module whose output is that weight map, in forward order; empty for models without
    weighting functions."""
    modules = dict(model.named_modules())
    found: OrderedDict[str, nn.Module] = OrderedDict()
    for path, module in modules.items():
        parent = modules.get(path.rpartition(".")[0])
        name = _probe_name(path, module, parent)
        if name is not None:
            found[name] = module
    return found


@contextmanager
def record_weight_maps(model: nn.Module) -> Iterator["OrderedDict[str, torch.Tensor]"]:
    """Within the block, every forward call of `model` records its weight maps by name into the yielded dict (a later
    call overwrites an earlier one's): channel weights as (N, C), spatial and Lite-HRNet cross-resolution weights as
    (N, C, h, w), detached, on the model's device. The hooks are removed when the block ends, even on error."""
    maps: OrderedDict[str, torch.Tensor] = OrderedDict()

    def recorder(name: str):
        def hook(_module: nn.Module, _inputs, output: torch.Tensor) -> None:
            maps[name] = output.detach().flatten(1) if name.endswith("/channel") else output.detach()

        return hook

    handles = [m.register_forward_hook(recorder(name)) for name, m in weight_map_modules(model).items()]
    try:
        yield maps
    finally:
        for handle in handles:
            handle.remove()


def run_with_probes(model: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, "OrderedDict[str, torch.Tensor]"]:
    """Run `model` on (N, 3, H, W) images; return its heatmaps (N, 17, H/4, W/4) and every weight map by name:
    channel weights as (N, C), spatial and Lite-HRNet cross-resolution weights as (N, C, h, w). Maps are detached."""
    with record_weight_maps(model) as maps:
        heatmaps = model(images)
    return heatmaps, maps


def location_maps(maps: Mapping[str, T], location: str) -> dict[str, T]:
    """The maps of one weighting function (`location`, e.g. "stage2/module0/block0/cross") out of probe `maps`
    named "<location>/<kind>", keyed by kind ("channel", "spatial", "weights")."""
    prefix = location + "/"
    return {name[len(prefix):]: value for name, value in maps.items() if name.startswith(prefix)}
