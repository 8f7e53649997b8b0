"""`predict`: poses of every person in photos, folders and videos, as the CLI, the app and Python callers get them.

    from workbench import predict
    people = predict("photo.jpg", weights="lite_csw_hrnet_256x192_fashion")   # one list of Person per image

A `Predictor` holds the pose network (the one loader: manifest entry, checkpoint or ONNX file) and the person
detector (`workbench.detection`; the pinned YOLOX-Nano by default, or any YOLOX ONNX file), and runs one image or
a stream of video frames through them.
"""
from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import tempfile

import numpy as np
import torch
from torch import nn

from workbench.common.errors import WorkbenchError
from workbench.data.images import read_image
from workbench.detection.download import resolve_detector
from workbench.detection.yolox import SCORE_THRESHOLD, PersonDetector
from workbench.prediction.people import Person, estimate_people
from workbench.prediction.tracking import Tracker
from workbench.prediction.video import is_video, read_frames
from workbench.common.devices import resolve_device
from workbench.inference import Model
from workbench.speed.onnx_export import export_onnx, save_onnx
from workbench.zoo.loader import OnnxModel, load

DEFAULT_WEIGHTS = "lite_csw_hrnet_256x192_fashion"
ENGINES = ("auto", "onnx", "torch")
"""Where the pose network runs: "onnx" (ONNX Runtime on the CPU, the project's export at batch 1), "torch" (PyTorch
eager, on any device), "auto" (ONNX Runtime on the CPU, where `benchmarks/predict_speed.py` measures it several
times faster than eager PyTorch for these networks; PyTorch on CUDA)."""
DETECTION_THRESHOLD = SCORE_THRESHOLD
"""The lowest person-box score kept (the detector's default, see there)."""


@dataclass(frozen=True)
class PredictOptions:
    """Settings of a prediction: the flip test, the heatmap decoder, the detector's score threshold, the NMS IoU
    and smallest box side (pixels), and how many crops go through the network at once."""

    flip: bool = True
    decode: str = "standard"
    detection_threshold: float = DETECTION_THRESHOLD
    nms_threshold: float = 0.45
    min_box_size: float = 8.0
    batch_size: int = 16


class Predictor:
    """A pose network and a person detector (None: the whole image is one person), ready for images and frames.
    `Predictor.load` builds one from names and files."""

    def __init__(self, network: Model, detector: PersonDetector | None,
                 options: PredictOptions = PredictOptions()) -> None:
        self.network = network
        self.detector = detector
        self.options = options

    @classmethod
    def load(cls, model: str | None = None, weights: str | Path = DEFAULT_WEIGHTS, *,
             detector: str | Path | bool | None = None, options: PredictOptions = PredictOptions(),
             device: str | torch.device = "cpu", threads: int | None = None, engine: str = "auto") -> "Predictor":
        """`model`: a model name (None for a manifest entry or an ONNX file, which name their model); `weights`:
        what `workbench.zoo.loader.load` accepts; `engine` one of ENGINES. `detector`: a YOLOX ONNX path, None for
        the default (`$WORKBENCH_DETECTOR`, the user cache, a download), or False for no detector."""
        device = resolve_device(device) if isinstance(device, str) else device
        network = pose_engine(load(model, weights, device=device, threads=threads), engine, device, threads)
        found = None if detector is False else PersonDetector(
            resolve_detector(None if detector in (None, True) else detector),
            score_threshold=options.detection_threshold, nms_threshold=options.nms_threshold,
            min_box_size=options.min_box_size, threads=threads)
        return cls(network, found, options)

    def boxes(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Person boxes (N, 4) x, y, w, h and scores (N,) of an RGB image: the detector's, or the whole image."""
        if self.detector is None:
            height, width = pixels.shape[:2]
            return np.array([[0.0, 0.0, width, height]]), np.ones(1)
        found = self.detector.detect(pixels)
        return found.boxes, found.scores

    def people(self, pixels: np.ndarray, boxes: np.ndarray | None = None,
               box_scores: np.ndarray | None = None) -> list[Person]:
        """Every person of an RGB image (H, W, 3), best first; `boxes` (N, 4) x, y, w, h replace the detector's."""
        if boxes is None:
            boxes, box_scores = self.boxes(pixels)
        elif box_scores is None:
            box_scores = np.ones(len(np.asarray(boxes).reshape(-1, 4)))
        return estimate_people(self.network, pixels, boxes, box_scores, flip=self.options.flip,
                               decode=self.options.decode, batch_size=self.options.batch_size)

    def frames(self, frames: Iterable[np.ndarray], tracker: Tracker | None = None) -> Iterator[list[Person]]:
        """The people of each frame of a stream, with track ids that follow each person from frame to frame."""
        tracker = tracker or Tracker()
        for pixels in frames:
            yield tracker.update(self.people(pixels))


def pose_engine(network: Model, engine: str, device: torch.device, threads: int | None) -> Model:
    """`network` on the chosen engine (see ENGINES): a torch module as it is, or exported to ONNX Runtime."""
    if engine not in ENGINES:
        raise WorkbenchError(f"unknown engine {engine!r}: choose one of {', '.join(ENGINES)}.")
    if not isinstance(network, nn.Module) or engine == "torch" or (engine == "auto" and device.type != "cpu"):
        return network
    with tempfile.TemporaryDirectory() as folder:
        path = save_onnx(export_onnx(network, network.input_size, batch_size=1), f"{folder}/{network.name}.onnx")
        exported = OnnxModel(path, threads)
    exported.name = network.name
    return exported


@functools.lru_cache(maxsize=1)
def _predictor(model: str | None, weights: str | Path, detector: str | Path | bool | None, options: PredictOptions,
               device: str | torch.device, threads: int | None, engine: str) -> Predictor:
    """`Predictor.load` with `predict`'s settings, kept for the next call with the same settings (loading reads
    the weights and exports the network to ONNX Runtime: seconds that a loop over images should pay once)."""
    return Predictor.load(model, weights, detector=detector, options=options, device=device, threads=threads,
                          engine=engine)


def predict(inputs: str | Path | np.ndarray | Sequence[str | Path | np.ndarray], weights: str | Path = DEFAULT_WEIGHTS,
            *, model: str | None = None, detector: str | Path | bool | None = None,
            options: PredictOptions = PredictOptions(), device: str | torch.device = "cpu",
            threads: int | None = None, engine: str = "auto") -> list[Person] | list[list[Person]]:
    """The people of one image (a path or an RGB array): a list of `Person`, best first; of a list of images: one
    such list per image; of a video file: one list per frame, with track ids. The loaded networks are kept for the
    next call with the same settings."""
    predictor = _predictor(model, weights, detector, options, device, threads, engine)
    if isinstance(inputs, (str, Path)) and is_video(inputs):
        return list(predictor.frames(read_frames(inputs)))
    if isinstance(inputs, (str, Path, np.ndarray)):
        return predictor.people(read_image(inputs))
    if not len(inputs):
        raise WorkbenchError("no images to predict: pass a path, an array, or a list of them.")
    return [predictor.people(read_image(item)) for item in inputs]
