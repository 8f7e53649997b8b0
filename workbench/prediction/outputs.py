"""Prediction over files, written as files: every input (image, folder, glob or video) -> drawn pictures or an mp4
with skeletons, and COCO-format keypoint results as JSON. Each file appears complete or not at all."""
from __future__ import annotations

import glob
import sys
from collections.abc import Sequence
from pathlib import Path

import cv2
from tqdm import tqdm

from workbench.common.errors import WorkbenchError
from workbench.common.files import write_atomic, write_json_atomic
from workbench.data.images import read_image
from workbench.prediction.api import Predictor
from workbench.prediction.render import draw_people
from workbench.prediction.tracking import Tracker
from workbench.prediction.video import VideoWriter, is_video, read_frames, video_info

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
"""Files a folder input contributes as images (besides its videos)."""


def expand_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Image and video files named by `inputs`: files as given, folders by their image and video files (sorted),
    glob patterns by their matches. WorkbenchError if an input names nothing."""
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            members = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES or is_video(p))
            if not members:
                raise WorkbenchError(f"folder {path.name} holds no image or video file. Pass another folder.")
            found += members
        elif path.is_file():
            found.append(path)
        elif glob.has_magic(str(item)):
            matches = sorted(Path(p) for p in glob.glob(str(item)) if Path(p).is_file())
            if not matches:
                raise WorkbenchError(f"the pattern {item} matches no file. Check it (quote it to stop the shell "
                                     "expanding it).")
            found += matches
        else:
            raise WorkbenchError(f"input not found: {item}. Pass an image, a folder, a glob or a video file.")
    return found


def _save_picture(path: Path, pixels) -> Path:
    return write_atomic(path, lambda temporary: cv2.imwrite(str(temporary), cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)))


def predict_images(predictor: Predictor, paths: Sequence[Path], output: Path, progress: bool = True) -> Path:
    """Each image's people drawn into `output/<name>.jpg`, and all of them as COCO keypoint results (image_id: the
    image's position in `paths`, file_name beside it) in `output/keypoints.json`, which is returned."""
    records = []
    for index, path in enumerate(tqdm(paths, desc="predict", unit="image", disable=not progress)):
        pixels = read_image(path)
        people = predictor.people(pixels)
        if not people:
            tqdm.write(f"note: no person found in {path.name} (its picture is written undrawn)", file=sys.stderr)
        _save_picture(output / f"{path.stem}.jpg", draw_people(pixels, people))
        records += [{**person.to_json(index), "file_name": path.name} for person in people]
    return write_json_atomic(output / "keypoints.json", records, indent=1)


def predict_video(predictor: Predictor, path: Path, output: Path, max_frames: int | None = None,
                  progress: bool = True) -> tuple[Path, Path]:
    """The video with every person drawn (track ids in stable colours) as `output/<name>.mp4`, and one COCO keypoint
    record per person per frame (frame index, time in seconds, track id) in `output/<name>.json`. The video is
    read, processed and written as a stream. Returns both paths."""
    info = video_info(path)
    total = min(info.frames, max_frames) if max_frames and info.frames > 0 else (info.frames or None)
    records = []
    tracker = Tracker()
    frames = tqdm(read_frames(path, max_frames), total=total, desc=path.name, unit="frame", disable=not progress)
    with VideoWriter(output / f"{path.stem}.mp4", info.fps, (info.width, info.height)) as writer:
        for index, pixels in enumerate(frames):
            people = tracker.update(predictor.people(pixels))
            writer.write(draw_people(pixels, people))
            records += [{**person.to_json(index), "frame": index, "time": round(index / info.fps, 4)}
                        for person in people]
    return output / f"{path.stem}.mp4", write_json_atomic(output / f"{path.stem}.json", records, indent=1)
