"""The project's own trained weights, described by data: `weights/manifest.json`.

Each entry names a weights file in `weights/`, the model and input size it fits, its sha256, and the run that made
it (data and split, epochs, schedule, wall time, measured metrics). `workbench.zoo.loader.load` loads them by entry name,
the file's sha256 checked first (`verified_path`); a mismatch is refused. Files may hold fp16 tensors; they load as float32.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from workbench.common.errors import WorkbenchError
from workbench.common.files import write_atomic, write_text_atomic
from workbench.common.paths import weights_dir

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class WeightsEntry:
    """One trained checkpoint: `name` (unique), `model` (a `model_names()` name), `input_size` (H, W), `file` (in
    the weights folder), `sha256` of the file, and the record of the run (`run`: data, split, epochs, schedule,
    wall time, ...) and its measured `metrics`."""

    name: str
    model: str
    input_size: tuple[int, int]
    file: str
    sha256: str
    run: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "WeightsEntry":
        return cls(
            name=data["name"],
            model=data["model"],
            input_size=tuple(data["input_size"]),
            file=data["file"],
            sha256=data["sha256"],
            run=dict(data.get("run", {})),
            metrics=dict(data.get("metrics", {})),
        )


def read_manifest(directory: str | Path | None = None) -> list[WeightsEntry]:
    """Every entry of the manifest in `directory` (default: the project's weights folder); [] if there is none."""
    path = Path(directory or weights_dir()) / MANIFEST
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text())
        return [WeightsEntry.from_json(item) for item in data["weights"]]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise WorkbenchError(f"the weights manifest {path} is malformed ({error}); restore it with git") from None


def available_weights(model: str, directory: str | Path | None = None) -> list[WeightsEntry]:
    """The manifest's entries for model `model` (a `model_names()` name), best validation AP first."""
    entries = [e for e in read_manifest(directory) if e.model == model]
    return sorted(entries, key=lambda e: -float(e.metrics.get("val_AP", e.metrics.get("AP", 0.0))))


def find_weights(name: str, directory: str | Path | None = None) -> WeightsEntry:
    """The manifest entry called `name`; a WorkbenchError listing the known names if there is none."""
    entries = read_manifest(directory)
    for entry in entries:
        if entry.name == name:
            return entry
    known = ", ".join(e.name for e in entries) or "none yet"
    raise WorkbenchError(f"no trained weights called {name!r} in the manifest (known: {known})")


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verified_path(entry: WeightsEntry, directory: str | Path | None = None) -> Path:
    """The entry's file, after checking that it exists and that its sha256 is the manifest's."""
    path = Path(directory or weights_dir()) / entry.file
    if not path.is_file():
        raise WorkbenchError(f"weights file {path} of {entry.name!r} is missing; restore it with `git checkout -- {path}`")
    actual = file_sha256(path)
    if actual != entry.sha256:
        raise WorkbenchError(
            f"weights file {path} does not match the manifest (sha256 {actual[:12]}... instead of "
            f"{entry.sha256[:12]}...): it is corrupt or was replaced; restore it with git or retrain {entry.name!r}"
        )
    return path


def save_weights(
    network: torch.nn.Module,
    entry_name: str,
    *,
    run: dict[str, Any],
    metrics: dict[str, Any],
    half: bool = True,
    directory: str | Path | None = None,
) -> WeightsEntry:
    """Write `network`'s state dict (fp16 if `half`) to `<entry_name>.pt` and add or replace its manifest entry.

    `network` must come from `model.build_model` (it carries `name` and `input_size`). Both files are written
    atomically.
    """
    folder = Path(directory or weights_dir())
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().half() if half and v.is_floating_point() else v.detach().cpu()
             for k, v in network.state_dict().items()}
    path = folder / f"{entry_name}.pt"
    write_atomic(path, lambda temporary: torch.save(state, temporary))
    entry = WeightsEntry(entry_name, network.name, tuple(network.input_size), path.name, file_sha256(path), run, metrics)
    entries = [e for e in read_manifest(folder) if e.name != entry_name] + [entry]
    text = json.dumps({"weights": [asdict(e) for e in entries]}, indent=2) + "\n"
    write_text_atomic(folder / MANIFEST, text)
    return entry
