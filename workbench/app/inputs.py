"""The app's inputs: example images, reading an upload (downscaled above MAX_SIDE), the person box, detection files.

Images larger than MAX_SIDE = 4096 pixels on their long side are downscaled (area interpolation) to that size
before anything else; boxes are given and keypoints are reported in the original image's pixels, and the working
copy's `scale` converts between the two.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import cv2
import numpy as np

from workbench.data.coco import SKIP_REASONS, box_problem, read_json
from workbench.common.errors import WorkbenchError
from workbench.data.images import decode_image, read_image
from workbench.common.paths import data_root

MAX_SIDE = 4096
BOX_MODES = ("detected people", "drawn boxes", "typed box", "whole image", "detection file")
"""Where the person boxes come from: the person detector (default), boxes drawn on the preview with the mouse, a
typed box, the whole image, or a COCO detection results file."""
FASHION_EXAMPLES = 2


@dataclass(frozen=True)
class LoadedImage:
    """An image ready for the model: `pixels` RGB uint8 (H, W, 3) after any downscale; `scale` = original pixels
    per working pixel (1.0 if not downscaled); `original_size` (width, height); `name` for messages and files;
    `image_id` the COCO id read from an all-digit file name (e.g. 000000000785.jpg -> 785), else None."""

    pixels: np.ndarray
    name: str
    scale: float
    original_size: tuple[int, int]
    image_id: int | None


def _astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()


def _matplotlib_sample(name: str) -> np.ndarray:
    from matplotlib import cbook

    return read_image(cbook.get_sample_data(name, asfileobj=False))


def example_images() -> dict[str, Callable[[], np.ndarray]]:
    """Example label -> loader returning RGB uint8 (H, W, 3): scikit-image's astronaut, matplotlib's Grace Hopper,
    and, when the shared data folder exists, the coco-sample photos and the first fashion-pose val photos."""
    examples: dict[str, Callable[[], np.ndarray]] = {
        "astronaut (scikit-image)": _astronaut,
        "grace_hopper.jpg (matplotlib)": partial(_matplotlib_sample, "grace_hopper.jpg"),
    }
    root = data_root()
    for path in sorted((root / "coco-sample").glob("*.jpg")):
        examples[f"{path.name} (coco-sample)"] = partial(read_image, path)
    fashion = root / "fashion-pose"
    if (fashion / "person_keypoints_val.json").is_file():
        images = read_json(fashion / "person_keypoints_val.json", "fashion-pose annotations").get("images", [])
        for info in images[:FASHION_EXAMPLES]:
            path = fashion / "images" / info["file_name"]
            examples[f"{info['file_name']} (fashion-pose val)"] = partial(read_image, path)
    return examples


def coco_image_id(name: str) -> int | None:
    """The COCO image id of a file named only by digits (000000000785.jpg -> 785), else None."""
    stem = Path(name.split(" (")[0]).stem
    return int(stem) if re.fullmatch(r"\d+", stem) else None


def downscale(pixels: np.ndarray, max_side: int = MAX_SIDE) -> tuple[np.ndarray, float]:
    """Shrink an image (H, W, 3) whose long side exceeds `max_side` to that side; returns it and the scale factor
    (original pixels per returned pixel)."""
    height, width = pixels.shape[:2]
    long_side = max(height, width)
    if long_side <= max_side:
        return pixels, 1.0
    factor = max_side / long_side
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    return cv2.resize(pixels, size, interpolation=cv2.INTER_AREA), long_side / max_side


def load_image(upload: str | Path | None, example: str | None,
               examples: dict[str, Callable[[], np.ndarray]] | None = None) -> LoadedImage:
    """The uploaded file (if any) or else the chosen example, decoded and downscaled; WorkbenchError otherwise."""
    if upload:
        name = Path(upload).name
        try:
            data = Path(upload).read_bytes()
        except OSError as error:
            raise WorkbenchError(f"cannot read the upload {name} ({error.strerror}). Upload it again.") from None
        pixels = decode_image(data, name)
    elif example:
        examples = example_images() if examples is None else examples
        if example not in examples:
            raise WorkbenchError(f"unknown example {example!r}. Pick one from the list.")
        name = example
        pixels = examples[example]()
    else:
        raise WorkbenchError("no image: upload an image file or pick an example.")
    height, width = pixels.shape[:2]
    working, scale = downscale(pixels)
    return LoadedImage(working, name, scale, (width, height), coco_image_id(name))


def parse_box(text: str) -> np.ndarray:
    """"x, y, w, h" (commas or spaces, image pixels) -> float array (4,); WorkbenchError if it is not four numbers."""
    parts = [part for part in re.split(r"[,\s]+", (text or "").strip().strip("()[]")) if part]
    try:
        values = [float(part) for part in parts]
    except ValueError:
        values = []
    if len(values) != 4 or not np.isfinite(values).all():
        raise WorkbenchError(f"box {text!r} is not four numbers. Type it as x, y, w, h in image pixels, "
                             "e.g. 100, 50, 200, 400.")
    return np.array(values)


def person_box(image: LoadedImage, mode: str, text: str = "") -> np.ndarray | None:
    """The one person box (x, y, w, h) in the working image's pixels of a "typed box" or a "detection file" box
    (`text`, in original image pixels), or None for the whole image. A box of zero size or wholly outside the image
    raises WorkbenchError."""
    if mode == "whole image":
        return None
    if mode not in ("typed box", "detection file"):
        raise WorkbenchError(f"box mode {mode!r} has no single box. Choose one of: {', '.join(BOX_MODES)}.")
    if mode == "detection file" and not (text or "").strip():
        raise WorkbenchError("no detected box chosen. Upload a COCO detection results file and pick a box.")
    if mode == "typed box" and not (text or "").strip():
        raise WorkbenchError("no box typed. Type x, y, w, h in image pixels, e.g. 100, 50, 200, 400.")
    box = parse_box(text)
    width, height = image.original_size
    problem = box_problem(box, width, height)
    if problem:
        raise WorkbenchError(f"box {', '.join(f'{v:g}' for v in box)} is unusable: {SKIP_REASONS[problem]} "
                             f"(the image is {width}x{height}). Give x, y, w, h with w, h > 0 overlapping the image.")
    return box / image.scale


def drawn_boxes(image: LoadedImage, annotations: dict | None) -> np.ndarray:
    """The boxes drawn on the preview (an image-annotator value: {"boxes": [{xmin, ymin, xmax, ymax}, ...]}, in
    the working image's pixels) as (N, 4) x, y, w, h; WorkbenchError if none is usable."""
    boxes = []
    for drawn in (annotations or {}).get("boxes") or []:
        left, top = min(drawn["xmin"], drawn["xmax"]), min(drawn["ymin"], drawn["ymax"])
        box = np.array([left, top, abs(drawn["xmax"] - drawn["xmin"]), abs(drawn["ymax"] - drawn["ymin"])], float)
        if box_problem(box, image.pixels.shape[1], image.pixels.shape[0]) is None:
            boxes.append(box)
    if not boxes:
        raise WorkbenchError("no box drawn. Drag a box around a person on the image above (or choose another "
                             "person box source).")
    return np.stack(boxes)


def whole_image_box(image: LoadedImage) -> np.ndarray:
    """The whole working image as one box (1, 4) x, y, w, h."""
    height, width = image.pixels.shape[:2]
    return np.array([[0.0, 0.0, float(width), float(height)]])


def read_detections(path: str | Path) -> list[dict]:
    """The person detections (category 1) of a COCO detection results file: a JSON list of {image_id, bbox,
    score, category_id}; WorkbenchError if the file is not one."""
    data = read_json(path, "detection results file")
    if not isinstance(data, list) or not all(isinstance(d, dict) and isinstance(d.get("bbox"), list) and "image_id" in d
                                             for d in data):
        raise WorkbenchError(f"{Path(path).name} is not a COCO detection results file. Give a JSON list of "
                             '{"image_id", "category_id", "bbox": [x, y, w, h], "score"} entries.')
    return [d for d in data if d.get("category_id", 1) == 1 and len(d["bbox"]) == 4]


def detection_choices(detections: list[dict], image_id: int | None) -> list[tuple[str, str]]:
    """(label, "x, y, w, h") for every detection of image `image_id`, best score first; WorkbenchError if none."""
    ids = sorted({int(d["image_id"]) for d in detections})
    chosen = [d for d in detections if image_id is not None and int(d["image_id"]) == image_id]
    if not chosen:
        named = f"image id {image_id}" if image_id is not None else "this image (its file name is not a COCO id)"
        raise WorkbenchError(f"the detection file has no person boxes for {named}; it covers image ids "
                             f"{', '.join(map(str, ids[:10]))}{' ...' if len(ids) > 10 else ''}. "
                             "Pick one of those images or type the box.")
    chosen.sort(key=lambda d: -float(d.get("score", 0.0)))
    choices = []
    for d in chosen:
        box = ", ".join(f"{v:.1f}" for v in d["bbox"])
        choices.append((f"score {float(d.get('score', 0.0)):.3f}: {box}", box))
    return choices
