"""Loaded networks for the interactive faces (app, notebooks): a thread-safe cache of networks built by the one
loader, each with its label and the lock its users hold.

A cached network is shared by every request; forward hooks (weight-map probes, Grad-CAM) are registered on it for
the length of a call, so every use must hold the entry's `lock`.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from model import model_names
from workbench.common.errors import WorkbenchError
from workbench.zoo.loader import DEFAULT_INPUT_SIZE, UNTRAINED, load
from workbench.zoo.manifest import available_weights

CHECKPOINT = "checkpoint"
"""The weights choice of a checkpoint file that the user supplies (the file comes apart from the choice)."""
UNTRAINED_LABEL = "untrained (random init)"


def best_weights(name: str) -> str:
    """The best manifest entry of model `name` (validation AP), or UNTRAINED if it has none."""
    entries = available_weights(name)
    return entries[0].name if entries else UNTRAINED


@dataclass
class LoadedModel:
    """A network ready for inference (eval mode, on the cache's device), the choice it was built from (`weights`: a
    manifest entry name, UNTRAINED, or CHECKPOINT with the `checkpoint` file), and the lock its users hold."""

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
        """The manifest entry, "untrained (random init)", or "checkpoint <file name>"."""
        if self.weights == CHECKPOINT:
            return f"checkpoint {Path(self.checkpoint).name}"
        return UNTRAINED_LABEL if self.weights == UNTRAINED else self.weights

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
        if weights == CHECKPOINT:
            network = load(name, Path(checkpoint), input_size=DEFAULT_INPUT_SIZE, device=self.device)
            return LoadedModel(network, name, CHECKPOINT, str(checkpoint))
        if weights != UNTRAINED and weights not in [entry.name for entry in available_weights(name)]:
            known = [entry.name for entry in available_weights(name)] + [UNTRAINED]
            raise WorkbenchError(f"no weights {weights!r} for {name} in the manifest. Choose one of: {', '.join(known)}.")
        return LoadedModel(load(name, weights, device=self.device), name, weights)
