"""The default person detector file and where it is found: an explicit path, `$WORKBENCH_DETECTOR`, the user cache,
or a download of the pinned file (size and SHA-256 checked before it is renamed into the cache)."""
from __future__ import annotations

import hashlib
import http.client
import os
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO

from tqdm import tqdm

from workbench.common.errors import WorkbenchError

DETECTOR_ENV = "WORKBENCH_DETECTOR"
"""The environment variable naming a detector file to use instead of the default one."""
CACHE_SUBFOLDER = Path("lite-csw-hrnet-workbench") / "detectors"
"""Where downloaded detectors live inside the user cache folder."""
CHUNK_BYTES = 1 << 16


@dataclass(frozen=True)
class PinnedFile:
    """A file fetched on first use: its URL, exact size in bytes, SHA-256 (hex) and its name in the cache."""

    url: str
    size: int
    sha256: str
    file_name: str


DEFAULT_DETECTOR = PinnedFile(
    url="https://github.com/Megvii-BaseDetection/YOLOX/releases/download/0.1.1rc0/yolox_nano.onnx",
    size=3_659_407,
    sha256="c789161ed43c8269fcd4e67c67eeeb4e80c622da2eb296a20bc6007bd18a0b7d",
    file_name="yolox_nano.onnx",
)
"""YOLOX-Nano trained on COCO (Megvii, Apache-2.0), ONNX file of YOLOX release 0.1.1rc0: input 416x416."""

Progress = Callable[[int, int], None]
"""A download progress callback: (bytes received so far, total bytes expected)."""


def cache_dir() -> Path:
    """The detectors' cache folder: `$XDG_CACHE_HOME` (if absolute) or ~/.cache, then
    lite-csw-hrnet-workbench/detectors."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    return (Path(base) if os.path.isabs(base) else Path.home() / ".cache") / CACHE_SUBFOLDER


def resolve_detector(path: str | Path | None = None, *, download: bool = True,
                     pinned: PinnedFile = DEFAULT_DETECTOR, timeout: float = 30.0,
                     progress: bool | Progress | None = None) -> Path:
    """The detector file to use: `path` if given (any YOLOX ONNX export), else `$WORKBENCH_DETECTOR`, else the
    pinned file in the cache if its size and SHA-256 match, else (with `download`) the pinned file downloaded into
    the cache. `timeout` (seconds) bounds each network wait; `progress` as `download_pinned` takes it."""
    if path is not None:
        return _existing(Path(path).expanduser(), "the detector file given")
    if os.environ.get(DETECTOR_ENV):
        return _existing(Path(os.environ[DETECTOR_ENV]).expanduser(), f"the detector file named by {DETECTOR_ENV}")
    target = cache_dir() / pinned.file_name
    if target.is_file() and _matches(target, pinned):
        return target
    if not download:
        found = " (the file there does not match and is ignored)" if target.exists() else ""
        raise WorkbenchError(f"no person detector file at {target}{found}, and downloading is off. "
                             + _by_hand(pinned, target))
    return download_pinned(pinned, target, timeout=timeout, progress=progress)


def download_pinned(pinned: PinnedFile, target: str | Path, *, timeout: float = 30.0,
                    progress: bool | Progress | None = None) -> Path:
    """Download `pinned` to `target` through a temporary file beside it, renamed into place only once its size and
    SHA-256 match; on any failure nothing is left behind and a WorkbenchError says why and how to get the file by
    hand. `timeout`: seconds to wait for the server at each step. `progress`: a callback, True for a tqdm bar on
    stderr, False for silence, None for a bar only when stderr is a terminal. Returns `target`."""
    target = Path(target)
    failure = f"cannot download the person detector from {pinned.url}"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=f".{pinned.file_name}.", suffix=".part", dir=target.parent)
    except OSError as error:
        raise WorkbenchError(f"{failure}: cannot write into {target.parent} ({error.strerror or error}). "
                             f"{_by_hand(pinned, target)}") from None
    temporary = Path(name)
    try:
        with os.fdopen(handle, "wb") as file:
            _fetch(pinned, file, timeout, progress)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, target)
    except _Mismatch as error:
        raise WorkbenchError(f"{failure}: {error}. {_by_hand(pinned, target)}") from None
    except http.client.IncompleteRead as error:
        raise WorkbenchError(f"{failure}: short read: the connection closed after {len(error.partial)} bytes. "
                             f"{_by_hand(pinned, target)}") from None
    except http.client.HTTPException as error:
        raise WorkbenchError(f"{failure}: the server's response is broken ({type(error).__name__}: {error}). "
                             f"{_by_hand(pinned, target)}") from None
    except urllib.error.HTTPError as error:
        raise WorkbenchError(f"{failure}: HTTP error {error.code} ({error.reason}). {_by_hand(pinned, target)}") \
            from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
        reason = getattr(error, "reason", error)
        raise WorkbenchError(f"{failure}: no connection ({reason or type(error).__name__}): this computer is offline "
                             f"or the server did not answer within {timeout:g} s. {_by_hand(pinned, target)}") \
            from None
    except OSError as error:
        raise WorkbenchError(f"{failure}: {error.strerror or error} (downloading into {target.parent}). "
                             f"{_by_hand(pinned, target)}") from None
    finally:
        temporary.unlink(missing_ok=True)
    return target


def _fetch(pinned: PinnedFile, file: BinaryIO, timeout: float, progress: bool | Progress | None) -> None:
    """Stream `pinned.url` into `file`, raising _Mismatch unless exactly the pinned bytes arrived."""
    received, digest = 0, hashlib.sha256()
    show_bar = progress is True or progress is None and sys.stderr.isatty()
    with (urllib.request.urlopen(pinned.url, timeout=timeout) as response,
          tqdm(total=pinned.size, unit="B", unit_scale=True, desc=pinned.file_name, disable=not show_bar) as bar):
        announced = response.headers.get("Content-Length", "")
        while chunk := response.read(CHUNK_BYTES):
            received += len(chunk)
            if received > pinned.size:
                raise _Mismatch(f"size mismatch: the server sent more than the expected {pinned.size} bytes")
            digest.update(chunk)
            file.write(chunk)
            bar.update(len(chunk))
            if callable(progress):
                progress(received, pinned.size)
    if announced.isdigit() and received < int(announced):
        raise _Mismatch(f"short read: the connection closed after {received} of {announced} bytes")
    if received != pinned.size:
        raise _Mismatch(f"size mismatch: got {received} bytes, expected {pinned.size}")
    if digest.hexdigest() != pinned.sha256:
        raise _Mismatch(f"checksum mismatch: got sha256 {digest.hexdigest()}, expected {pinned.sha256}")


class _Mismatch(Exception):
    """The downloaded bytes are not the pinned file (short, long or different)."""


def _by_hand(pinned: PinnedFile, target: Path) -> str:
    return (f"To install it by hand, download {pinned.url} ({pinned.size} bytes, sha256 {pinned.sha256}) and save it "
            f"as {target}, or pass any YOLOX ONNX file with --detector PATH or {DETECTOR_ENV}=PATH. Without a "
            "detector the app still works with drawn, typed or whole-image boxes.")


def _existing(path: Path, what: str) -> Path:
    if not path.is_file():
        raise WorkbenchError(f"{what} is not a file: {path}. Check the path, or leave it out (and unset "
                             f"{DETECTOR_ENV}) to use the default detector.")
    return path


def _matches(path: Path, pinned: PinnedFile) -> bool:
    """Whether the file at `path` is `pinned`: its size, then its SHA-256 (hashed once per process and version)."""
    status = path.stat()
    return (status.st_size == pinned.size
            and _file_sha256(str(path), status.st_size, status.st_mtime_ns) == pinned.sha256)


@lru_cache(maxsize=16)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    """The SHA-256 of a file; `size` and `mtime_ns` are part of the cache key so that a changed file is hashed
    again."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
