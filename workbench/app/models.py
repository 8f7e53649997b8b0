"""The app's model and weights menus, over the zoo's cache (`workbench.zoo.cache`) and manifest."""
from __future__ import annotations

from model import model_names
from workbench.zoo.cache import CHECKPOINT, UNTRAINED_LABEL
from workbench.zoo.loader import UNTRAINED
from workbench.zoo.manifest import available_weights

CHECKPOINT_LABEL = "checkpoint file (upload)"


def weight_choices(name: str) -> list[tuple[str, str]]:
    """(label, value) pairs for the weights menu of model `name`: its manifest entries (best first, labelled with
    their validation AP), then random initialisation, then an uploaded checkpoint."""
    choices = []
    for entry in available_weights(name):
        ap = entry.metrics.get("val_AP", entry.metrics.get("AP"))
        choices.append((f"{entry.name} (val AP {float(ap):.3f})" if ap is not None else entry.name, entry.name))
    return choices + [(UNTRAINED_LABEL, UNTRAINED), (CHECKPOINT_LABEL, CHECKPOINT)]


def model_choices() -> list[tuple[str, str]]:
    """(label, name) for every model, labelled "(untrained)" when the manifest has no weights for it."""
    return [(name if available_weights(name) else f"{name} (untrained)", name) for name in model_names()]
