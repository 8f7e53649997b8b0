"""Reading a model state dict from a checkpoint file, with one clear message for every kind of file that is not one.

A checkpoint is a plain state dict of the model, or a dict holding one under "model" or "state_dict"; keys saved
from a DistributedDataParallel wrapper ("module." prefix) are accepted. Files are read with `weights_only=True`: a
pickle that would run code on loading is refused, never executed. Messages name the file by its name only (an
upload's server-side folder means nothing to the user).
"""
from __future__ import annotations

import io
import pickle
import pickletools
import warnings
import zipfile
from pathlib import Path

import torch

from workbench.common.errors import WorkbenchError

SAVE_HINT = "Pass a file saved with torch.save(model.state_dict(), path)."

_SIGNATURES = (
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"\x89PNG", "a PNG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"\x08", "an ONNX graph or other protobuf; load .onnx files as ONNX models"),
)


def _what_it_is(path: Path) -> str | None:
    """A short description of a file that is clearly not a torch checkpoint, or None if it may be one."""
    with path.open("rb") as handle:
        head = handle.read(512)
    if not head:
        return "an empty file"
    for signature, description in _SIGNATURES:
        if head.startswith(signature):
            return description
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as archive:
                archive.namelist()
        except zipfile.BadZipFile:
            return "a truncated or damaged checkpoint (its zip archive is incomplete)"
        return None
    if head.startswith(b"\x80"):
        return None
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return "a binary file of an unknown format"
    return "a text file"


def _pickle_is_whole(path: Path) -> bool:
    """Whether the object pickle of a file that torch refused to unpickle is whole (then it holds objects other than
    tensors, whose loading could run code) rather than cut short. Read with pickletools, which runs nothing."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                data = archive.read(next(name for name in archive.namelist() if name.endswith("data.pkl")))
        else:
            data = path.read_bytes()
        stream = io.BytesIO(data)
        first = list(pickletools.genops(stream))
        if any(argument == torch.serialization.MAGIC_NUMBER for _, argument, _ in first):
            for _ in range(3):  # torch's legacy format: magic number, protocol, system info, then the object
                for _ in pickletools.genops(stream):
                    pass
    except (ValueError, EOFError, StopIteration, OSError, zipfile.BadZipFile, KeyError):
        return False
    return True


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The model state dict stored in `path` (read with weights_only=True, onto the CPU), float tensors as stored."""
    path = Path(path)
    if not path.is_file():
        raise WorkbenchError(f"checkpoint not found: {path.name}. Check the path.")
    problem = _what_it_is(path)
    if problem is not None:
        raise WorkbenchError(f"{path.name} is not a readable PyTorch checkpoint: it is {problem}. {SAVE_HINT}")
    try:
        with warnings.catch_warnings():  # torch's advice on pickle protocols is not for the user of a checkpoint
            warnings.simplefilter("ignore")
            saved = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        if not _pickle_is_whole(path):
            raise WorkbenchError(f"{path.name} is not a readable PyTorch checkpoint: it is truncated or damaged. "
                                 f"{SAVE_HINT}") from None
        raise WorkbenchError(f"{path.name} is not a readable PyTorch checkpoint: it holds Python objects that would "
                             f"run code when loaded, which the workbench never does. {SAVE_HINT}") from None
    except (RuntimeError, EOFError, ValueError, OSError, zipfile.BadZipFile, KeyError, IndexError):
        raise WorkbenchError(f"{path.name} is not a readable PyTorch checkpoint: it is truncated or damaged. "
                             f"{SAVE_HINT}") from None
    for key in ("model", "state_dict"):
        if isinstance(saved, dict) and isinstance(saved.get(key), dict):
            saved = saved[key]
            break
    if not isinstance(saved, dict) or not all(isinstance(v, torch.Tensor) for v in saved.values()):
        raise WorkbenchError(f"{path.name} holds no model state dict. Save one with torch.save(model.state_dict(), "
                             "path) or as {'model': state_dict}.")
    return {key.removeprefix("module."): value for key, value in saved.items()}
