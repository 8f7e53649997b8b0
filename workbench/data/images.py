"""Robust image reading: any common file or array -> RGB uint8 (H, W, 3), or one clear error.

Decoding is OpenCV's `imdecode`, which applies the EXIF orientation, converts grayscale and CMYK to colour,
scales 16-bit images to 8 bits and drops an alpha channel. Truncated JPEGs are rejected (OpenCV 4 decodes them
as grey-filled images with only a warning); damage that libjpeg merely warns about inside the compressed data
decodes as noisy pixels and cannot be detected here.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from workbench.common.errors import WorkbenchError


class ImageReadError(WorkbenchError):
    """An image file is missing, empty, truncated or undecodable; the message names the file and the fix."""


def read_image(source: str | Path | np.ndarray, apply_exif: bool = True) -> np.ndarray:
    """Read a file path or take an array, returning RGB uint8 of shape (H, W, 3).

    Arrays are taken as RGB(A) or grayscale, uint8, uint16 (scaled by 1/257) or float in [0, 1].
    `apply_exif=False` keeps a JPEG's stored pixel order, ignoring its orientation tag.
    """
    if isinstance(source, np.ndarray):
        return _array_to_rgb(source)
    path = Path(source)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageReadError(f"image not found: {path}. Check the file name and the image folder.") from None
    except OSError as error:
        raise ImageReadError(f"cannot read image {path}: {error.strerror}. Check its permissions.") from None
    return decode_image(data, str(path), apply_exif)


def decode_image(data: bytes, name: str = "<bytes>", apply_exif: bool = True) -> np.ndarray:
    """Decode encoded image bytes (JPEG, PNG, TIFF, WebP, BMP) to RGB uint8 (H, W, 3); `name` is for messages."""
    if not data:
        raise ImageReadError(f"image {name} is empty (0 bytes). Replace it with a complete copy.")
    if data[:2] == b"\xff\xd8" and _jpeg_is_truncated(data):
        raise ImageReadError(f"image {name} is a truncated JPEG (its end marker is missing). "
                             "Replace it with a complete copy.")
    flags = cv2.IMREAD_COLOR if apply_exif else cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
    if bgr is None:
        raise ImageReadError(f"image {name} cannot be decoded: the file is corrupt or not an image. "
                             "Replace it with a valid JPEG or PNG.")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _jpeg_is_truncated(data: bytes) -> bool:
    """Walk the JPEG header segments to the first scan; the image is complete only if an end marker follows."""
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return False
        marker = data[position + 1]
        if marker == 0xFF:
            position += 1
        elif marker == 0x01 or 0xD0 <= marker <= 0xD8:
            position += 2
        elif marker == 0xDA:
            return data.find(b"\xff\xd9", position) < 0
        else:
            position += 2 + int.from_bytes(data[position + 2:position + 4], "big")
    return True


def _array_to_rgb(array: np.ndarray) -> np.ndarray:
    """Convert an (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) array to contiguous RGB uint8."""
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)) or 0 in array.shape[:2]:
        raise ImageReadError(f"image array of shape {array.shape} is not an image. "
                             "Pass (H, W) grayscale or (H, W, 3) RGB / (H, W, 4) RGBA.")
    if array.dtype == np.uint16:
        array = ((array.astype(np.uint32) + 128) // 257).astype(np.uint8)
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all() or array.min() < 0.0 or array.max() > 1.0:
            raise ImageReadError("float image array has values outside [0, 1]. Scale it to [0, 1] or pass uint8.")
        array = np.round(array * 255.0).astype(np.uint8)
    elif array.dtype != np.uint8:
        raise ImageReadError(f"image array has dtype {array.dtype}. Pass uint8, uint16 or float in [0, 1].")
    if array.ndim == 2:
        return cv2.cvtColor(array, cv2.COLOR_GRAY2RGB)
    if array.shape[2] == 4:
        return np.ascontiguousarray(array[:, :, :3])
    return np.ascontiguousarray(array)
