"""ncnn, the engine of the mobile deployments this family targets: a model exported through pnnx (PyPI `pnnx`:
TorchScript trace -> pnnx graph -> ncnn .param/.bin, fp32) and run by ncnn (PyPI `ncnn`), with its parity against
PyTorch. Both packages are optional (the `engines` extra): `ncnn_missing()` names what is absent.
"""
from __future__ import annotations

import importlib.util
import shutil
import subprocess
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn


def ncnn_missing() -> str | None:
    """None when pnnx and ncnn are importable, else a note naming the missing package(s) and the install."""
    absent = [name for name in ("pnnx", "ncnn") if importlib.util.find_spec(name) is None]
    return None if not absent else (f"{' and '.join(absent)} not installed: "
                                    "`pip install -e '.[engines]'` (or `pip install pnnx ncnn`)")


@dataclass(frozen=True)
class NcnnModel:
    """An ncnn model on disk: the .param and .bin files and the blob names of its input and output."""

    param: Path
    bin: Path
    input_name: str
    output_name: str


def _blob_names(param: Path) -> tuple[str, str]:
    """The first Input layer's blob and the last layer's output blob of an ncnn .param file."""
    layers = [line.split() for line in param.read_text().splitlines()[2:] if line.strip()]
    first = next(layer for layer in layers if layer[0] == "Input")
    last = layers[-1]
    inputs, outputs = int(last[2]), int(last[3])
    return first[4], last[4 + inputs + outputs - 1]


def export_ncnn(model: nn.Module, input_size: tuple[int, int], folder: str | Path, name: str = "model",
                batch_size: int = 1) -> NcnnModel:
    """Export `model` for images (batch_size, 3, H, W) to `folder`/`name`.ncnn.param and .bin through pnnx, fp32
    (pnnx's optimisation level 2: BatchNorm folded into convolutions, activations fused). Raises RuntimeError with
    pnnx's last output lines if pnnx writes no ncnn files."""
    import pnnx

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        traced_path = Path(work) / f"{name}.pt"
        example = torch.zeros(batch_size, 3, *input_size)
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.jit.trace(model.eval(), example, check_trace=False).save(str(traced_path))
        param, weights = Path(work) / f"{name}.ncnn.param", Path(work) / f"{name}.ncnn.bin"
        command = [pnnx.EXEC_PATH, str(traced_path), f"inputshape=[{batch_size},3,{input_size[0]},{input_size[1]}]f32",
                   "fp16=0", f"ncnnparam={param}", f"ncnnbin={weights}", f"ncnnpy={Path(work) / 'ncnn.py'}",
                   f"pnnxparam={Path(work) / 'p.param'}", f"pnnxbin={Path(work) / 'p.bin'}",
                   f"pnnxpy={Path(work) / 'p.py'}", f"pnnxonnx={Path(work) / 'p.onnx'}"]
        done = subprocess.run(command, capture_output=True, text=True, cwd=work)
        if not param.is_file() or not weights.is_file():
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-8:])
            raise RuntimeError(f"pnnx wrote no ncnn model for {name} (exit {done.returncode}):\n{tail}")
        targets = folder / param.name, folder / weights.name
        for source, target in zip((param, weights), targets):
            shutil.move(str(source), str(target))
    return NcnnModel(targets[0], targets[1], *_blob_names(targets[0]))


class NcnnRunner:
    """An ncnn network loaded from `exported`, fp32 throughout (no fp16 storage or arithmetic, no Winograd-fp16
    packing), `threads` CPU threads; call it with float32 images (N, 3, H, W) for heatmaps (N, 17, H/4, W/4) as
    numpy. ncnn's Mat has no batch axis: a batch runs image by image."""

    def __init__(self, exported: NcnnModel, threads: int = 2) -> None:
        import ncnn

        self._ncnn = ncnn
        self.net = ncnn.Net()
        self.net.opt.num_threads = threads
        self.net.opt.use_fp16_packed = False
        self.net.opt.use_fp16_storage = False
        self.net.opt.use_fp16_arithmetic = False
        self.net.opt.use_bf16_storage = False
        self.net.opt.use_vulkan_compute = False
        self.threads = threads
        self.exported = exported
        if self.net.load_param(str(exported.param)) or self.net.load_model(str(exported.bin)):
            raise RuntimeError(f"ncnn cannot load {exported.param} / {exported.bin}")

    def __call__(self, images: np.ndarray) -> np.ndarray:
        outputs = []
        for image in np.ascontiguousarray(images, dtype=np.float32):
            extractor = self.net.create_extractor()
            extractor.input(self.exported.input_name, self._ncnn.Mat(image))
            _, result = extractor.extract(self.exported.output_name)
            outputs.append(np.array(result))
        return np.stack(outputs)


def ncnn_parity(model: nn.Module, runner: NcnnRunner, input_size: tuple[int, int], batch_size: int = 1,
                seed: int = 0) -> float:
    """Largest absolute difference between `model` and the ncnn `runner` on random images N(0, 1)."""
    images = torch.randn(batch_size, 3, *input_size, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        expected = model.eval()(images).numpy()
    return float(np.abs(runner(images.numpy()).reshape(expected.shape) - expected).max())
