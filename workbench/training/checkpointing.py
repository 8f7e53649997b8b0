"""Training checkpoints: the whole state of a run, written atomically and read back with weights_only=True.

A checkpoint is a dict of tensors and plain values: "format", "model" (state dict), "optimizer", "scheduler",
"scaler" (None without loss scaling), "epoch" (0-based epoch in progress, or the next one), "batch" (batches of
that epoch already done), "step" (optimiser steps in all), "epoch_loss", "epoch_images" and "epoch_seconds"
(running sums of the epoch in progress), "best_metric" and "best_epoch" (None before the first validation),
"batch_size" and "world_size" (per-process batch, processes), "rng" and "config"; since skipped steps are counted,
"epoch_skipped" and "skipped_in_row" (read as 0 when missing).
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from workbench.common.errors import WorkbenchError
from workbench.common.files import write_atomic
from workbench.training.config import Config, build_config, model_differences

FORMAT = "workbench-training-checkpoint-1"
REQUIRED = ("model", "optimizer", "scheduler", "scaler", "epoch", "batch", "step", "epoch_loss", "epoch_images",
            "epoch_seconds", "best_metric", "best_epoch", "batch_size", "world_size", "rng", "config")


def capture_rng() -> dict[str, Any]:
    """The random states of torch (CPU and CUDA), NumPy and Python, as tensors and plain values."""
    _, keys, position, has_gauss, cached = np.random.get_state()
    version, state, gauss_next = random.getstate()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                      "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
            "python": {"version": version, "state": torch.tensor(state, dtype=torch.int64), "gauss_next": gauss_next}}


def restore_rng(rng: dict[str, Any]) -> None:
    """Put back the random states saved by `capture_rng`."""
    torch.set_rng_state(rng["torch"])
    restore_cuda_rng(rng["cuda"])
    numpy = rng["numpy"]
    np.random.set_state(("MT19937", numpy["keys"].numpy().astype(np.uint32), numpy["position"], numpy["has_gauss"],
                         numpy["cached_gaussian"]))
    python = rng["python"]
    random.setstate((python["version"], tuple(python["state"].tolist()), python["gauss_next"]))


def restore_cuda_rng(states: list[torch.Tensor]) -> int:
    """Put back the saved CUDA generator states that fit the GPUs visible now; returns how many were restored.

    A run saved with more visible GPUs than this one sees (resumed on a smaller machine, or under another
    CUDA_VISIBLE_DEVICES) restores the first ones (`torch.cuda.set_rng_state_all` would raise IndexError); one saved
    with fewer leaves the other GPUs' generators as seeded. Training draws its random numbers on the CPU (data
    order, augmentation), so only CUDA-side randomness (e.g. dropout on the GPU) may then differ from the saved run.
    """
    if not states or not torch.cuda.is_available():
        return 0
    count = min(len(states), torch.cuda.device_count())
    for index in range(count):
        torch.cuda.set_rng_state(states[index], index)
    return count


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """torch.save `state` atomically (`workbench.common.files.write_atomic`): a crash at any moment leaves either the old
    file or the new one, never half of one."""
    return write_atomic(path, lambda temporary: torch.save({"format": FORMAT, **state}, temporary))


def load_checkpoint(path: str | Path, config: Config | None = None) -> dict[str, Any]:
    """Read a training checkpoint onto the CPU, refusing with a clear message a file that is missing, corrupt,
    not a training checkpoint, or (when `config` is given) made for another network or input size."""
    path = Path(path)
    if not path.is_file():
        raise WorkbenchError(f"checkpoint not found: {path}. Pass the last.pt of a run (or the run folder).")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # the weights-only unpickler runs no code; damaged bytes make it fail with any error
        reason = (str(error).splitlines() or [type(error).__name__])[0]
        raise WorkbenchError(f"{path} is not a readable checkpoint ({reason}); it may be "
                             "truncated or damaged. Resume from another copy (e.g. best.pt) or start afresh.") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT or any(key not in state for key in REQUIRED):
        raise WorkbenchError(f"{path} is not a training checkpoint of this workbench (no {FORMAT!r} state with "
                             "optimiser, schedule and config); a bare model state dict can be evaluated "
                             "(`python -m workbench evaluate --model NAME --checkpoint FILE`) but not resumed.")
    try:
        state["config"] = build_config(state["config"], where=str(path))
    except WorkbenchError as error:
        raise WorkbenchError(f"the config stored in {path} is not valid here: {error}") from None
    if config is not None:
        differences = model_differences(state["config"], config)
        if differences:
            raise WorkbenchError(f"{path} was trained with another network than the config asks for ("
                                 f"{'; '.join(differences)}). Pass the config it was trained with, or resume "
                                 "without --config to use the checkpoint's own.")
    return state


def load_model_state(model: torch.nn.Module, state_dict: dict[str, torch.Tensor], path: str | Path) -> None:
    """Load a checkpoint's model weights, refusing a mismatch with one message instead of a long traceback."""
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as error:
        missing = model.state_dict().keys() - state_dict.keys()
        unexpected = state_dict.keys() - model.state_dict().keys()
        raise WorkbenchError(f"the weights in {path} do not fit the network ({len(missing)} missing, "
                             f"{len(unexpected)} unexpected keys; {str(error).splitlines()[0]}). Resume with the "
                             "config the checkpoint was trained with.") from None
