"""The app's networks: weight choices per model, a thread-safe cache of built models, and each model's structure
(weight-map locations, Grad-CAM layers, branch widths) read from a parameter-free copy on the meta device.

A cached model is shared by every request; forward hooks (weight-map probes, Grad-CAM) are registered on it for
the length of a call, so every use must hold the entry's `lock`.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

from model import build_model, model_names, weight_map_modules
from workbench.checkpoints import load_model
from workbench.errors import WorkbenchError
from workbench.gradcam import gradcam_layers
from workbench.weights import available_weights, load_weights, untrained_model

UNTRAINED = "untrained (random init)"
CHECKPOINT = "checkpoint file (upload)"
DEFAULT_INPUT_SIZE = (256, 192)


def weight_choices(name: str) -> list[tuple[str, str]]:
    """(label, value) pairs for the weights menu of model `name`: its manifest entries (best first, labelled with
    their validation AP), then random initialisation, then an uploaded checkpoint."""
    choices = []
    for entry in available_weights(name):
        ap = entry.metrics.get("val_AP", entry.metrics.get("AP"))
        choices.append((f"{entry.name} (val AP {float(ap):.3f})" if ap is not None else entry.name, entry.name))
    return choices + [(UNTRAINED, UNTRAINED), (CHECKPOINT, CHECKPOINT)]


def model_choices() -> list[tuple[str, str]]:
    """(label, name) for every model, labelled "(untrained)" when the manifest has no weights for it."""
    return [(name if available_weights(name) else f"{name} (untrained)", name) for name in model_names()]


def default_weights(name: str) -> str:
    """The best manifest entry of model `name`, or UNTRAINED if it has none."""
    entries = available_weights(name)
    return entries[0].name if entries else UNTRAINED


@dataclass
class LoadedModel:
    """A network ready for inference (eval mode, on the app's device), the menu choices it was built from (`weights`:
    a manifest entry name, UNTRAINED or CHECKPOINT with the `checkpoint` file), and the lock its users hold."""

    network: nn.Module
    name: str
    weights: str
    checkpoint: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def trained(self) -> bool:
        return self.weights != UNTRAINED

    @property
    def weights_label(self) -> str:
        """The manifest entry, UNTRAINED, or "checkpoint <file name>"."""
        return f"checkpoint {Path(self.checkpoint).name}" if self.weights == CHECKPOINT else self.weights

    @property
    def label(self) -> str:
        """"model · weights", e.g. "lite_csw_hrnet · untrained (random init)"."""
        return f"{self.name} · {self.weights_label}"


class ModelCache:
    """Built models by (name, weights, checkpoint file, device), at most `capacity`, least recently used dropped."""

    def __init__(self, device: torch.device, capacity: int = 8) -> None:
        self.device = device
        self.capacity = capacity
        self._models: OrderedDict[tuple, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, name: str, weights: str, checkpoint: str | Path | None = None) -> LoadedModel:
        """The model `name` with `weights`: a manifest entry name, UNTRAINED, or CHECKPOINT with `checkpoint`, a
        state-dict file. Missing or corrupt weights raise WorkbenchError."""
        if name not in model_names():
            raise WorkbenchError(f"unknown model {name!r}. Choose one of: {', '.join(model_names())}.")
        if weights == CHECKPOINT and not checkpoint:
            raise WorkbenchError("weights 'checkpoint file' chosen but no checkpoint uploaded. Upload a .pt file "
                                 "saved with torch.save(model.state_dict(), path), or choose other weights.")
        key = (name, weights, str(checkpoint) if weights == CHECKPOINT else None, str(self.device))
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
        loaded = self._load(name, weights, checkpoint)
        with self._lock:
            loaded = self._models.setdefault(key, loaded)
            self._models.move_to_end(key)
            while len(self._models) > self.capacity:
                self._models.popitem(last=False)
        return loaded

    def _load(self, name: str, weights: str, checkpoint: str | Path | None) -> LoadedModel:
        if weights == UNTRAINED:
            return LoadedModel(untrained_model(name, DEFAULT_INPUT_SIZE).to(self.device), name, UNTRAINED)
        if weights == CHECKPOINT:
            network = load_model(name, checkpoint, DEFAULT_INPUT_SIZE)
            return LoadedModel(network.to(self.device), name, CHECKPOINT, str(checkpoint))
        entry_names = [entry.name for entry in available_weights(name)]
        if weights not in entry_names:
            raise WorkbenchError(f"no weights {weights!r} for {name} in the manifest. Choose one of: "
                                 f"{', '.join(entry_names + [UNTRAINED])}.")
        return LoadedModel(load_weights(weights, self.device), name, weights)


@dataclass(frozen=True)
class ModelStructure:
    """What the menus need of a model: weight-map locations (probe names without their kind, forward order), the
    kinds at each, the branch widths of each cross-resolution location, and the Grad-CAM layer names."""

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
