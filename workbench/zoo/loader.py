"""The one loader: a model name and its weights -> a network ready for inference, for every face of the workbench.

`weights` is one of:
- a manifest entry (its name, or a `WeightsEntry`): the project's own trained weights, sha256 checked, as float32;
- "untrained": the seeded random initialisation (`UNTRAINED_SEED`), the same everywhere it is shown;
- a checkpoint file (.pt, .pth, ...): a state dict of model `name`, or an official Lite-HRNet / mmpose 0.x
  checkpoint (its head under "keypoint_head."), renamed to this project's layout;
- an ONNX file (.onnx): an exported network run by ONNX Runtime (`OnnxModel`), its input size read from the graph.

Every file that is not a checkpoint of that model ends in one `WorkbenchError` naming the file, what is wrong and
the fix (see `workbench.zoo.checkpoints` for the kinds of bad file).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime
import torch
from torch import nn

from model import build_model, load_official_state_dict, model_names
from workbench.common.errors import WorkbenchError
from workbench.zoo.checkpoints import load_state_dict
from workbench.zoo.manifest import WeightsEntry, read_manifest, verified_path

UNTRAINED = "untrained"
UNTRAINED_SEED = 0
"""The seed of every "untrained" network the workbench shows (app, notebooks, evaluation baselines), so that the
same random initialisation is compared everywhere."""
DEFAULT_INPUT_SIZE = (256, 192)
OFFICIAL_HEAD = "keypoint_head."
"""Where official Lite-HRNet (mmpose 0.x) checkpoints keep the head; this project's networks call it final_layer."""

Network = nn.Module
"""What `load` returns: a torch module in eval mode, or an `OnnxModel`; both map (N, 3, H, W) -> (N, 17, H/4, W/4)."""


def size_text(size: tuple[int, int]) -> str:
    """(height, width) -> "HxW", as the command line spells input sizes."""
    return f"{size[0]}x{size[1]}"


class OnnxModel:
    """An exported network run by ONNX Runtime on the CPU, called like the torch model: (N, 3, H, W) -> heatmaps.

    `input_size` (height, width) is read from the graph; `threads` sets ONNX Runtime's intra-op threads (None:
    PyTorch's thread count, so that one setting governs both). Graphs exported with a fixed batch size are run in
    chunks of that size. Worker threads do not spin between calls: the network alternates with the detector's
    session and with Python work (crops, decoding, drawing), which spinning threads would take the cores from.
    """

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        path = Path(path)
        if not path.is_file():
            raise WorkbenchError(f"ONNX file not found: {path.name}. Check the path.")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception:  # onnxruntime raises its own unexported exception types, with internal paths
            raise WorkbenchError(f"{path.name} is not a loadable ONNX model (ONNX Runtime cannot read it). Pass a "
                                 "graph written by `python -m workbench export`.") from None
        graph_input = self.session.get_inputs()[0]
        shape = graph_input.shape
        if len(shape) != 4 or not all(isinstance(side, int) for side in shape[2:]):
            raise WorkbenchError(f"{path.name} takes input of shape {shape}; expected (N, 3, H, W) with fixed H and "
                                 "W. Re-export it with a fixed input size.")
        self.name = path.stem
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


def _build(name: str, input_size: tuple[int, int]) -> nn.Module:
    if name not in model_names():
        raise WorkbenchError(f"unknown model {name!r}. Choose one of: {', '.join(model_names())}.")
    try:
        return build_model(name, input_size=tuple(input_size))
    except ValueError as error:
        raise WorkbenchError(f"cannot build {name!r}: {error}.") from None


def untrained(name: str, input_size: tuple[int, int] = DEFAULT_INPUT_SIZE) -> nn.Module:
    """Model `name` for `input_size` (H, W) with the seeded random initialisation, eval mode; the global random
    state is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(UNTRAINED_SEED)
        return _build(name, input_size).eval()


def _float32(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`state` with its floating-point tensors (fp16 in shipped weights) as float32."""
    return {key: value.float() if value.is_floating_point() else value for key, value in state.items()}


def _fit(network: nn.Module, state: dict[str, torch.Tensor], does_not_fit: str, fix: str) -> None:
    """Load `state` into `network`, or say in one line (`does_not_fit` "model name (key counts, first shape
    mismatch). fix") how it does not fit."""
    own = network.state_dict()
    missing, unexpected = own.keys() - state.keys(), state.keys() - own.keys()
    wrong_shape = [key for key in own.keys() & state.keys() if own[key].shape != state[key].shape]
    if missing or unexpected or wrong_shape:
        detail = f"{len(missing)} missing keys, {len(unexpected)} unexpected, {len(wrong_shape)} of the wrong shape"
        if wrong_shape:
            key = sorted(wrong_shape)[0]
            detail += f" (e.g. {key}: {tuple(state[key].shape)} instead of {tuple(own[key].shape)})"
        raise WorkbenchError(f"{does_not_fit} model {network.name!r} ({detail}). {fix}")
    network.load_state_dict(state)


def _from_manifest(entry: WeightsEntry, name: str | None, directory: str | Path | None) -> nn.Module:
    if name is not None and name != entry.model:
        raise WorkbenchError(f"weights {entry.name!r} are for model {entry.model!r}, not {name!r}. Choose weights of "
                             f"{name}, or the model {entry.model}.")
    if entry.model not in model_names():
        raise WorkbenchError(f"manifest entry {entry.name!r} names model {entry.model!r}, which this workbench does "
                             f"not have (it has {', '.join(model_names())}): fix the entry's \"model\" or update the code")
    state = _float32(load_state_dict(verified_path(entry, directory)))
    network = _build(entry.model, entry.input_size)
    _fit(network, state, f"weights {entry.name!r} do not fit",
         "The manifest names the wrong model: fix the entry or retrain.")
    return network


def _from_checkpoint(name: str | None, path: Path, input_size: tuple[int, int]) -> nn.Module:
    if name is None:
        raise WorkbenchError(f"checkpoint {path.name} holds weights only: name its model too (one of "
                             f"{', '.join(model_names())}).")
    network = _build(name, input_size)
    state = load_state_dict(path)
    if any(key.startswith(OFFICIAL_HEAD) for key in state):
        try:
            load_official_state_dict(network, state)
        except ValueError as error:
            raise WorkbenchError(f"official Lite-HRNet checkpoint {path.name} does not fit model {name!r}: {error}. "
                                 "Pass the model it was trained as (lite_hrnet_18 or lite_hrnet_30).") from None
        return network
    _fit(network, _float32(state), f"checkpoint {path.name} does not fit", "Pass the model name it was trained with.")
    return network


def _from_onnx(path: Path, input_size: tuple[int, int] | None, threads: int | None) -> OnnxModel:
    network = OnnxModel(path, threads)
    if input_size is not None and tuple(input_size) != network.input_size:
        raise WorkbenchError(f"{path.name} takes {size_text(network.input_size)} input, not "
                             f"{size_text(input_size)}: export the model at {size_text(input_size)}, or use "
                             f"{size_text(network.input_size)}.")
    return network


def is_onnx_file(weights: str | Path) -> bool:
    """Whether `weights` names an ONNX file (by its suffix)."""
    return Path(str(weights)).suffix.lower() == ".onnx"


def load(name: str | None, weights: str | Path | WeightsEntry = UNTRAINED, *,
         input_size: tuple[int, int] | None = None, device: str | torch.device = "cpu", threads: int | None = None,
         directory: str | Path | None = None) -> Network:
    """Model `name` with `weights` (see the module docstring), in eval mode, ready for inference.

    `name` may be None for a manifest entry (it names its model) and an ONNX file. `input_size` (H, W) defaults to
    the entry's or the graph's, else 256x192; a torch network goes to `device`; an ONNX model runs on the CPU with
    `threads` intra-op threads. `directory` is the weights folder of the manifest (default: the project's).
    """
    if isinstance(weights, WeightsEntry):
        return _from_manifest(weights, name, directory).eval().to(device)
    if weights == UNTRAINED:
        if name is None:
            raise WorkbenchError("untrained weights need a model name: choose one of " + ", ".join(model_names()))
        return untrained(name, input_size or DEFAULT_INPUT_SIZE).to(device)
    if is_onnx_file(weights):
        return _from_onnx(Path(weights), input_size, threads)
    entries = {entry.name: entry for entry in read_manifest(directory)}
    if str(weights) in entries:
        return _from_manifest(entries[str(weights)], name, directory).eval().to(device)
    path = Path(weights)
    if not path.exists() and path.suffix == "" and len(path.parts) == 1:
        raise WorkbenchError(f"no trained weights called {str(weights)!r} in the manifest (known: "
                             f"{', '.join(entries) or 'none yet'}) and no file of that name. Choose one of them, "
                             f"{UNTRAINED!r}, or a checkpoint file.")
    return _from_checkpoint(name, path, input_size or DEFAULT_INPUT_SIZE).eval().to(device)
