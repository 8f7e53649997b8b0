"""Loading trained networks from files: a model name plus a checkpoint, or an exported ONNX file.

A checkpoint is a plain state dict of the model, or a dict holding one under "model" or "state_dict"; keys saved
from a DistributedDataParallel wrapper ("module." prefix) are accepted, and an official Lite-HRNet / mmpose 0.x
checkpoint (its head under "keypoint_head.") is renamed to this project's layout.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from workbench.errors import WorkbenchError

OFFICIAL_HEAD = "keypoint_head."
"""Where official Lite-HRNet (mmpose 0.x) checkpoints keep the head; this project's networks call it final_layer."""


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The model state dict stored in `path` (read with weights_only=True, onto the CPU)."""
    path = Path(path)
    if not path.is_file():
        raise WorkbenchError(f"checkpoint not found: {path}. Check the path.")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as error:
        raise WorkbenchError(f"{path} is not a readable PyTorch checkpoint ({str(error).splitlines()[0]}). "
                             "Pass a file saved with torch.save(model.state_dict(), path).") from None
    for key in ("model", "state_dict"):
        if isinstance(saved, dict) and isinstance(saved.get(key), dict):
            saved = saved[key]
            break
    if not isinstance(saved, dict) or not all(isinstance(v, torch.Tensor) for v in saved.values()):
        raise WorkbenchError(f"{path} holds no model state dict. Save one with torch.save(model.state_dict(), path) "
                             "or as {'model': state_dict}.")
    return {key.removeprefix("module."): value for key, value in saved.items()}


def load_model(name: str, checkpoint: str | Path, input_size: tuple[int, int] = (256, 192)) -> torch.nn.Module:
    """Build model `name` for `input_size` (height, width), load `checkpoint` into it, and set eval mode."""
    from model import build_model, model_names

    if name not in model_names():
        raise WorkbenchError(f"unknown model {name!r}. Choose one of: {', '.join(model_names())}.")
    try:
        network = build_model(name, input_size=tuple(input_size))
    except ValueError as error:
        raise WorkbenchError(f"cannot build {name!r}: {error}.") from None
    state = load_state_dict(checkpoint)
    if any(key.startswith(OFFICIAL_HEAD) for key in state):
        from model import load_official_state_dict

        try:
            load_official_state_dict(network, state)
        except ValueError as error:
            raise WorkbenchError(f"official Lite-HRNet checkpoint {checkpoint} does not fit model {name!r}: "
                                 f"{error}. Pass the model it was trained as (lite_hrnet_18 or lite_hrnet_30).") from None
        return network.eval()
    try:
        network.load_state_dict(state)
    except RuntimeError as error:
        missing, unexpected = network.state_dict().keys() - state.keys(), state.keys() - network.state_dict().keys()
        raise WorkbenchError(f"checkpoint {checkpoint} does not fit model {name!r} ({len(missing)} missing, "
                             f"{len(unexpected)} unexpected, other keys of the wrong shape: "
                             f"{str(error).splitlines()[0]}). Pass the model name it was trained with.") from None
    return network.eval()


class OnnxModel:
    """An exported network run by ONNX Runtime on the CPU, called like the torch model: (N, 3, H, W) -> heatmaps.

    `input_size` (height, width) is read from the graph. Graphs exported with a fixed batch size are run in chunks
    of that size.
    """

    def __init__(self, path: str | Path) -> None:
        import onnxruntime

        path = Path(path)
        if not path.is_file():
            raise WorkbenchError(f"ONNX file not found: {path}. Check the path.")
        try:
            self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own unexported exception types
            raise WorkbenchError(f"{path} is not a loadable ONNX model ({str(error).splitlines()[0]}). "
                                 "Re-export it.") from None
        graph_input = self.session.get_inputs()[0]
        shape = graph_input.shape
        if len(shape) != 4 or not all(isinstance(side, int) for side in shape[2:]):
            raise WorkbenchError(f"{path} takes input of shape {shape}; expected (N, 3, H, W) with fixed H and W. "
                                 "Re-export it with a fixed input size.")
        self.input_name = graph_input.name
        self.input_size = (int(shape[2]), int(shape[3]))
        self.batch = shape[0] if isinstance(shape[0], int) else None

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        array = images.detach().cpu().numpy().astype(np.float32)
        if self.batch is None:
            return torch.from_numpy(self.session.run(None, {self.input_name: array})[0])
        outputs = []
        for start in range(0, len(array), self.batch):
            chunk = array[start:start + self.batch]
            padded = np.concatenate([chunk, np.zeros((self.batch - len(chunk),) + chunk.shape[1:], np.float32)])
            outputs.append(self.session.run(None, {self.input_name: padded})[0][:len(chunk)])
        return torch.from_numpy(np.concatenate(outputs))
