"""YOLOX person detection with ONNX Runtime: letterbox an image, run the graph, decode its grid output, keep the
person class (COCO class 0), suppress overlaps (NMS) and map the boxes back to image pixels.

A YOLOX ONNX export has one input (1, 3, H, W), BGR 0-255 letterboxed on grey 114, and one output (1, A, 5 + C):
one row per cell of the stride 8, 16 and 32 grids in that order (A = sum of (H/s)(W/s)), cells row-major within
a grid, each row (x, y, w, h, objectness, C class probabilities), objectness and classes already through a
sigmoid. Official exports leave the grid undecoded: x, y are offsets in cells from the cell's corner and w, h are
logs of cells. Exports made with decoding give x, y, w, h in input pixels instead; `decode_outputs` tells the two
apart from the values (every row's centre lies near its own cell only in a decoded output).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import torch
from torchvision.ops import nms

from workbench.common.errors import WorkbenchError
from workbench.data.images import read_image

STRIDES = (8, 16, 32)
"""The strides of YOLOX's three output grids, in the order of the output rows."""
PAD_VALUE = 114
"""The grey level of the letterbox padding YOLOX was trained with."""
PERSON_CLASS = 0
"""The index of "person" among the class probabilities of COCO-trained YOLOX."""
SCORE_THRESHOLD = 0.25
"""The lowest person score kept by default: YOLOX-Nano scores partly hidden people near 0.3 (the fifth person of
coco-sample's 000000196141.jpg: 0.298), so the usual 0.3 would drop them."""
FIX = ("Pass a YOLOX ONNX export (one input (1, 3, H, W), one output (1, A, 5 + C)), "
       "such as yolox_nano.onnx from YOLOX's releases")


@dataclass(frozen=True, eq=False)
class Detections:
    """Person boxes of one image, best score first.

    boxes: (N, 4) float64, x, y, width, height in image pixels; scores: (N,) float64 in [0, 1], objectness times
    person probability.
    """

    boxes: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)


class PersonDetector:
    """A YOLOX-format ONNX graph run by ONNX Runtime on the CPU, reporting people only.

    `score_threshold`: the lowest score kept, in [0, 1]. `nms_threshold`: boxes overlapping a better one by more
    than this IoU are dropped. `min_box_size`: boxes narrower or shorter than this many image pixels are dropped
    (8 px by default: a top-down pose model cannot place 17 joints in a smaller person). `threads`: ONNX Runtime's
    intra-op threads (None: PyTorch's thread count, so that one setting governs both).
    """

    def __init__(self, path: str | Path, *, score_threshold: float = SCORE_THRESHOLD, nms_threshold: float = 0.45,
                 min_box_size: float = 8.0, threads: int | None = None) -> None:
        for name, value in (("score_threshold", score_threshold), ("nms_threshold", nms_threshold)):
            if not 0.0 <= value <= 1.0:
                raise WorkbenchError(f"{name} is {value}: give a value in [0, 1].")
        if min_box_size < 0:
            raise WorkbenchError(f"min_box_size is {min_box_size}: give a size in pixels >= 0.")
        if threads is not None and threads < 1:
            raise WorkbenchError(f"threads is {threads}: give a count >= 1, or leave it out for PyTorch's "
                                 "default.")
        self.path = Path(path)
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.min_box_size = min_box_size
        self.session = _open_session(self.path, threads)
        self.input_name, self.input_size = _read_input(self.path, self.session)
        outputs = self.session.get_outputs()
        if len(outputs) != 1:
            raise _not_yolox(self.path, f"it has {len(outputs)} outputs, expected one")
        self._check_output_shape(outputs[0].shape)

    def detect(self, image: np.ndarray) -> Detections:
        """People in an RGB uint8 image (H, W, 3) (other layouts as `read_image` takes them)."""
        image = read_image(image)
        tensor, ratio = letterbox(image, self.input_size)
        try:
            output = self.session.run(None, {self.input_name: tensor})[0]
        except Exception as error:  # ONNX Runtime raises its own exception types, all with a readable message
            raise WorkbenchError(f"detector {self.path} failed to run: {_first_line(error)}. {FIX}.") from None
        self._check_output_shape(output.shape)
        boxes, scores = decode_outputs(output[0], self.input_size)
        keep = scores >= self.score_threshold
        boxes, scores = boxes[keep], scores[keep]
        keep = nms(torch.from_numpy(boxes), torch.from_numpy(scores), self.nms_threshold).numpy()
        boxes, scores = boxes[keep] / ratio, scores[keep]
        height, width = image.shape[:2]
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, height)
        sizes = boxes[:, 2:] - boxes[:, :2]
        keep = ((sizes >= self.min_box_size) & (sizes > 0)).all(axis=1)
        return Detections(np.concatenate([boxes[keep, :2], sizes[keep]], axis=1), scores[keep])

    def _check_output_shape(self, shape: list | tuple) -> None:
        """Raise a WorkbenchError unless `shape` is (1, A, 5 + C), C >= 1; unknown (symbolic) dimensions pass."""
        cells = len(grid_cells(self.input_size))
        wanted = (lambda size: size == 1, lambda size: size == cells, lambda size: size >= 6)
        if len(shape) == 3 and all(not isinstance(size, int) or fits(size) for size, fits in zip(shape, wanted)):
            return
        height, width = self.input_size
        raise _not_yolox(self.path, f"its output has shape {_format_shape(shape)}, expected (1, {cells}, 5 + C) "
                                    f"with C >= 1 classes for its {height}x{width} input")


def letterbox(image: np.ndarray, input_size: tuple[int, int]) -> tuple[np.ndarray, float]:
    """YOLOX's input for an RGB uint8 image (h, w, 3): BGR, resized by r = min(H/h, W/w) (bilinear) to
    (round(h r), round(w r)), placed top-left on an (H, W) canvas of grey 114, float32 0-255, (1, 3, H, W).
    Returns the tensor and r (input pixels per image pixel)."""
    height, width = input_size
    ratio = min(height / image.shape[0], width / image.shape[1])
    size = (max(1, round(image.shape[1] * ratio)), max(1, round(image.shape[0] * ratio)))
    resized = cv2.resize(image[:, :, ::-1], size, interpolation=cv2.INTER_LINEAR)
    canvas = np.full((height, width, 3), PAD_VALUE, dtype=np.float32)
    canvas[:resized.shape[0], :resized.shape[1]] = resized
    return np.ascontiguousarray(canvas.transpose(2, 0, 1)[None]), ratio


def grid_cells(input_size: tuple[int, int]) -> np.ndarray:
    """The output rows' cells for an (H, W) input: (A, 3) float64 of column, row, stride, strides 8, 16, 32 in
    order and cells row-major within each."""
    height, width = input_size
    grids = []
    for stride in STRIDES:
        rows, columns = np.meshgrid(np.arange(height // stride), np.arange(width // stride), indexing="ij")
        grids.append(np.stack([columns.ravel(), rows.ravel(), np.full(rows.size, stride)], axis=1))
    return np.concatenate(grids).astype(np.float64)


def decode_outputs(output: np.ndarray, input_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Every row of a YOLOX output (A, 5 + C) for an (H, W) input as a person box: (A, 4) float64 x1, y1, x2, y2 in
    input pixels and (A,) float64 scores, objectness times the class-0 (person) probability.

    Raw grid rows become centre = ((x, y) + (column, row)) * stride, size = exp((w, h)) * stride, in input pixels.
    Decoded rows, recognised by their centres lying nearer their own cells than raw offsets lie to zero (median over
    all rows, in cells), are taken as they are.
    """
    output = np.asarray(output, dtype=np.float64)
    cells = grid_cells(input_size)
    if output.ndim != 2 or output.shape[0] != len(cells) or output.shape[1] < 6:
        raise ValueError(f"output of shape {output.shape} is not ({len(cells)}, 5 + C) for input {input_size}")
    strides = cells[:, 2:]
    xy, wh = output[:, 0:2], output[:, 2:4]
    if np.median(np.abs(xy / strides - cells[:, :2])) < np.median(np.abs(xy)):
        centres, sizes = xy, wh
    else:
        centres, sizes = (xy + cells[:, :2]) * strides, np.exp(wh) * strides
    boxes = np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1)
    return boxes, output[:, 4] * output[:, 5 + PERSON_CLASS]


def _open_session(path: Path, threads: int | None) -> ort.InferenceSession:
    if not path.is_file():
        raise WorkbenchError(f"detector file not found: {path}. Check the path, or leave it out to use the default "
                             "detector.")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: exports often carry harmless warnings (unused initialisers)
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # see zoo.loader.OnnxModel
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # ONNX Runtime raises its own exception types (InvalidProtobuf, Fail, ...)
        raise WorkbenchError(f"{path} cannot be loaded as an ONNX graph ({_first_line(error)}). {FIX}.") from None


def _read_input(path: Path, session: ort.InferenceSession) -> tuple[str, tuple[int, int]]:
    """The graph's image input: its name and (H, W), after checking it is one float (1, 3, H, W) of fixed H, W
    (multiples of 32; a symbolic batch is accepted, one image is fed)."""
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise _not_yolox(path, f"it has {len(inputs)} inputs, expected one image input (1, 3, H, W)")
    shape = inputs[0].shape
    if (len(shape) != 4 or shape[0] != 1 and isinstance(shape[0], int) or shape[1] != 3
            or not all(isinstance(size, int) and size > 0 and size % 32 == 0 for size in shape[2:])):
        raise _not_yolox(path, f"its input has shape {_format_shape(shape)}, expected (1, 3, H, W) with fixed H "
                               "and W, multiples of 32")
    if inputs[0].type != "tensor(float)":
        raise _not_yolox(path, f"its input is {inputs[0].type}, expected tensor(float)")
    return inputs[0].name, (shape[2], shape[3])


def _not_yolox(path: Path, problem: str) -> WorkbenchError:
    return WorkbenchError(f"{path} is not a YOLOX detector: {problem}. {FIX}.")


def _format_shape(shape: list | tuple) -> str:
    return "(" + ", ".join("?" if size is None else str(size) for size in shape) + ")"


def _first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
