"""The app's model and weights menus, over the zoo's cache (`workbench.zoo.cache`) and manifest, and what each
weights entry was trained on."""
from __future__ import annotations

import json

from model import model_names
from workbench.common.paths import data_root
from workbench.zoo.cache import CHECKPOINT, UNTRAINED_LABEL
from workbench.zoo.loader import UNTRAINED
from workbench.zoo.manifest import available_weights, read_manifest

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


DATASET_DESCRIPTIONS = {
    "fashion-pose": "studio photos on plain backgrounds, one standing person each",
    "coco": "COCO train2017: everyday scenes, many people, all poses",
}
"""What each training set looks like, by the first folder of its annotation path in the manifest."""


def training_note(weights: str | None) -> str:
    """One Markdown line saying what weights entry `weights` was trained on (data, image count, initialisation,
    epochs), read from its manifest record and the annotation file when the data folder has it; the random
    initialisation and uploaded checkpoints say what they are."""
    if weights == UNTRAINED:
        return "Random initialisation: the keypoints mean nothing; the weight maps show untrained blocks."
    if weights == CHECKPOINT:
        return "Your checkpoint: the model must be the one it was trained as."
    entry = next((e for e in read_manifest() if e.name == weights), None)
    if entry is None:
        return ""
    train = str(entry.run.get("data", {}).get("train", "unknown data"))
    dataset = train.split("/")[0]
    annotations = data_root() / train
    count = ""
    if annotations.is_file():
        count = f"{len(json.loads(annotations.read_text()).get('images', [])):,} "
    description = DATASET_DESCRIPTIONS.get(dataset, "")
    return (f"Trained on {count}{dataset} images{f' ({description})' if description else ''}, "
            f"{entry.run.get('initialisation', '')}, {entry.run.get('epochs', '?')} epochs: expect good poses on "
            f"pictures like those, rough ones elsewhere.")
