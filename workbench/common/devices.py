"""The torch device a user names (an option or a config setting), checked once for every face of the workbench."""
from __future__ import annotations

import re

import torch

from workbench.common.errors import WorkbenchError


def resolve_device(choice: str, setting: str = "--device") -> torch.device:
    """"auto" (CUDA when present), "cpu", "cuda" or "cuda:N" -> a device; WorkbenchError naming `setting` for an
    unknown name, for CUDA without a GPU, or for a GPU index this machine does not have."""
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cpu":
        return torch.device("cpu")
    found = re.fullmatch(r"cuda(?::(\d+))?", choice)
    if found is None:
        raise WorkbenchError(f"unknown device {choice!r} for {setting}. Use cpu, cuda, cuda:N or auto.")
    if not torch.cuda.is_available():
        raise WorkbenchError(f"{setting} is {choice}, but PyTorch sees no CUDA GPU. Use cpu or auto.")
    index = int(found.group(1)) if found.group(1) else None
    if index is not None and index >= torch.cuda.device_count():
        raise WorkbenchError(f"{setting} is {choice}, but this machine has {torch.cuda.device_count()} GPU(s): "
                             f"use cuda:0 to cuda:{torch.cuda.device_count() - 1}.")
    return torch.device(choice)
