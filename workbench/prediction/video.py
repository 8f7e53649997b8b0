"""Videos as streams: frames are decoded one at a time (OpenCV) and written one at a time to an mp4 that appears
under its name only once complete, so memory does not grow with the video's length and no half-written video is
ever left where a finished one would be."""
from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from workbench.common.errors import WorkbenchError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")


@dataclass(frozen=True)
class VideoInfo:
    """What the container says of a video: frames per second, frame count (an estimate for some containers),
    width and height in pixels."""

    fps: float
    frames: int
    width: int
    height: int

    @property
    def seconds(self) -> float:
        return self.frames / self.fps if self.fps > 0 else 0.0


def is_video(path: str | Path) -> bool:
    """Whether `path` names a video file, by its suffix."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def _open(path: Path) -> cv2.VideoCapture:
    if not path.is_file():
        raise WorkbenchError(f"video not found: {path.name}. Check the path.")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise WorkbenchError(f"{path.name} is not a readable video (OpenCV cannot open it). Pass an mp4, avi, mov, "
                             "mkv or webm file.")
    return capture


def video_info(path: str | Path) -> VideoInfo:
    """The frame rate, frame count and size of a video, or WorkbenchError if it cannot be opened."""
    capture = _open(Path(path))
    try:
        fps = capture.get(cv2.CAP_PROP_FPS)
        return VideoInfo(fps if fps and np.isfinite(fps) and fps > 0 else 25.0,
                         int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
                         int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    finally:
        capture.release()


def read_frames(path: str | Path, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """The frames of a video as RGB uint8 (H, W, 3), one at a time, at most `max_frames`. A video with no frame
    raises WorkbenchError; a truncated video ends at its last decodable frame."""
    path = Path(path)
    capture = _open(path)
    count = 0
    try:
        while max_frames is None or count < max_frames:
            ok, frame = capture.read()
            if not ok:
                break
            count += 1
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    finally:
        capture.release()
    if count == 0:
        raise WorkbenchError(f"{path.name} holds no decodable frame: it is empty, truncated before its first frame, "
                             "or not a video. Pass another file.")


class VideoWriter:
    """An mp4 (MPEG-4 part 2, which every OpenCV build can write) written frame by frame into a hidden temporary
    file beside `path` and renamed to `path` by `close()`; `discard()` (or leaving a `with` block by an exception)
    removes it. Frames are RGB uint8 (H, W, 3) of one size."""

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=f".{self.path.stem}.", suffix=".tmp.mp4", dir=self.path.parent)
        os.close(handle)
        os.chmod(name, 0o644)
        self.temporary = Path(name)
        width, height = size
        self.writer = cv2.VideoWriter(str(self.temporary), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
        if not self.writer.isOpened():
            self.temporary.unlink(missing_ok=True)
            raise WorkbenchError(f"cannot write the video {self.path.name}: OpenCV has no mp4 writer here. "
                                 "Install opencv-python-headless from PyPI.")
        self.frames = 0

    def write(self, frame: np.ndarray) -> None:
        self.writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        self.frames += 1

    def close(self) -> Path:
        """Finish the file and move it to `path`."""
        self.writer.release()
        os.replace(self.temporary, self.path)
        return self.path

    def discard(self) -> None:
        self.writer.release()
        self.temporary.unlink(missing_ok=True)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.close()
        else:
            self.discard()
