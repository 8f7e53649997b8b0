"""Atomic file writes: the content goes to a temporary file beside the target, is synced, then renamed over the
target, so that neither a reader nor a crash ever sees half a file."""
from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def write_atomic(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call `write(temporary path)` (a unique hidden file beside `path` that keeps its suffix, so format-by-extension
    writers work and two threads writing one target never share it), sync
    the file and its folder, and rename it over `path`. Returns `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(handle)
    os.chmod(name, 0o644)
    temporary = Path(name)
    try:
        write(temporary)
        with temporary.open("rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically."""
    return write_atomic(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))


def write_json_atomic(path: str | Path, data: Any, indent: int | None = None) -> Path:
    """Write `data` as JSON to `path` atomically."""
    return write_text_atomic(path, json.dumps(data, indent=indent) + ("\n" if indent is not None else ""))
