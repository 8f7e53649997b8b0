"""What the menus and figures need of a model's structure: its weight-map locations and kinds, the branch widths of
each cross-resolution weighting, and its Grad-CAM layers, read from a parameter-free copy on the meta device."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import nn

from model import build_model, weight_map_modules
from workbench.interpret.gradcam import gradcam_layers
from workbench.zoo.loader import DEFAULT_INPUT_SIZE


@dataclass(frozen=True)
class ModelStructure:
    """Weight-map locations (probe names without their kind, forward order), the kinds at each, the branch widths of
    each cross-resolution location, and the Grad-CAM layer names."""

    locations: tuple[str, ...]
    kinds: dict[str, tuple[str, ...]]
    splits: dict[str, tuple[int, ...]]
    layers: tuple[str, ...]


def cross_resolution_splits(network: nn.Module) -> dict[str, tuple[int, ...]]:
    """Location -> branch widths of the channels of every cross-resolution weighting function of `network`."""
    modules = dict(network.named_modules())
    paths = {id(module): path for path, module in modules.items()}
    splits = {}
    for name, module in weight_map_modules(network).items():
        location = name.rpartition("/")[0]
        parent = modules.get(paths[id(module)].rpartition(".")[0])
        if location.endswith("/cross") and hasattr(parent, "channels"):
            splits[location] = tuple(parent.channels)
    return splits


@lru_cache(maxsize=None)
def model_structure(name: str) -> ModelStructure:
    """The structure of model `name`, read from a copy built on the meta device (no memory, no computation)."""
    with torch.device("meta"):
        network = build_model(name, input_size=DEFAULT_INPUT_SIZE)
    kinds: dict[str, list[str]] = {}
    for probe in weight_map_modules(network):
        location, _, kind = probe.rpartition("/")
        kinds.setdefault(location, []).append(kind)
    return ModelStructure(tuple(kinds), {k: tuple(v) for k, v in kinds.items()}, cross_resolution_splits(network),
                          tuple(gradcam_layers(network)))
