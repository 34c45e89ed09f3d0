"""Reading one image file into a uint8 array, whatever its mode, and fitting it to the model's size.

PIL decodes; EXIF orientation is applied; every mode becomes L (grayscale) or RGB:
RGBA/LA/P-with-transparency are composited on white, CMYK and YCbCr converted, 16-bit and 32-bit
integer or float images scaled to 0..255 by their type's range.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps

# OpenCV runs single-threaded in every podium process. Its thread pool, once started (albumentations' per-image
# ops start it), does not survive fork: a decode worker forked afterwards hung for good in cv2.setNumThreads
# (seen in the test suite). Torch already holds the cores while training, and decoding has one process per core.
cv2.setNumThreads(1)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".jfif", ".ppm", ".pgm")
GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


class ImageReadError(Exception):
    """The file cannot be decoded: kind is 'zero-byte', 'truncated', 'unreadable' or 'missing'."""

    def __init__(self, kind: str, detail: str):
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


def _to_8bit(img: Image.Image) -> Image.Image:
    """16/32-bit integer and float grayscale to 8-bit L, scaled by the range of the type."""
    arr = np.asarray(img)
    if img.mode.startswith("I;16"):
        arr = (arr.astype(np.float32) / 257.0).round()
    elif img.mode == "I":
        top = 65535.0 if arr.max(initial=0) > 255 else 255.0
        arr = arr.astype(np.float32) * (255.0 / top)
    elif img.mode == "F":
        top = 1.0 if arr.max(initial=0) <= 1.0 else 255.0
        arr = arr * (255.0 / top)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "L")


def _flatten_alpha(img: Image.Image) -> Image.Image:
    """Composite an image with transparency onto white, keeping gray images gray."""
    gray = img.mode == "LA"
    rgba = img.convert("RGBA")
    canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    out = Image.alpha_composite(canvas, rgba).convert("RGB")
    return out.convert("L") if gray else out


def open_image(path: Path | str) -> Image.Image:
    """Decode fully (so truncation is detected here), apply EXIF orientation, normalise the mode to L or RGB."""
    return decode_image(path)[0]


def decode_image(path: Path | str) -> tuple[Image.Image, str]:
    """The normalised image (as open_image) and the file's own mode ('CMYK', 'I;16', 'P', ...)."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise ImageReadError("zero-byte", "the file is empty")
    except FileNotFoundError:
        raise ImageReadError("missing", "no such file") from None
    try:
        with Image.open(path) as img:
            img.load()
    except OSError as exc:
        text = str(exc)
        # PIL says 'image file is truncated' mid-data and 'Truncated File Read' when cut inside a header
        kind = "truncated" if "truncated" in text.lower() or "broken data stream" in text else "unreadable"
        raise ImageReadError(kind, text) from None
    except Exception as exc:  # PIL raises a zoo of errors on garbage (SyntaxError, ValueError, ...)
        raise ImageReadError("unreadable", f"{type(exc).__name__}: {exc}") from None
    mode = img.mode
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # a damaged EXIF block should not cost a readable image: keep it as stored
        pass
    return _normalise(img), mode


def _normalise(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info):
        return _flatten_alpha(img)
    if mode in ("I", "F") or mode.startswith("I;16"):
        return _to_8bit(img)
    if mode == "1":
        return img.convert("L")
    if mode == "P":
        pal = img.convert("RGB")
        return pal.convert("L") if _is_gray(np.asarray(pal)) else pal
    if mode in ("L", "RGB"):
        return img
    return img.convert("RGB")  # CMYK, YCbCr, LAB, HSV


def _is_gray(arr: np.ndarray) -> bool:
    return arr.ndim == 2 or (arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all()


def read_image(path: Path | str, channels: int) -> np.ndarray:
    """The image as uint8 HxWxC with C = channels (1 or 3)."""
    img = open_image(path)
    if channels == 1 and img.mode != "L":
        img = img.convert("L")
    elif channels == 3 and img.mode != "RGB":
        img = img.convert("RGB")
    arr = np.asarray(img, dtype=np.uint8)
    return arr[:, :, None] if arr.ndim == 2 else arr


def crop_center(arr: np.ndarray, fraction: float) -> np.ndarray:
    """The central `fraction` of each side of H x W x C `arr` (data.center_crop; 1 returns arr itself)."""
    if fraction >= 1:
        return arr
    h, w = arr.shape[:2]
    ch, cw = max(1, round(h * fraction)), max(1, round(w * fraction))
    top, left = (h - ch) // 2, (w - cw) // 2
    return arr[top:top + ch, left:left + cw]


def fit_image(arr: np.ndarray, size: int, policy: str) -> np.ndarray:
    """Fit HxWxC uint8 to size x size by `policy`: 'resize' stretches, 'pad' letterboxes (black bars,
    aspect kept), 'keep' requires the image to be size x size already."""
    h, w = arr.shape[:2]
    if policy == "keep":
        if (h, w) != (size, size):
            raise ValueError(f"is {w}x{h}, but data.resize=keep needs every image to be {size}x{size}")
        return arr
    if policy == "resize":
        out = _resize(arr, size, size)
    elif policy == "pad":
        scale = size / max(h, w)
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        inner = _resize(arr, nw, nh)
        out = np.zeros((size, size, arr.shape[2]), np.uint8)
        top, left = (size - nh) // 2, (size - nw) // 2
        out[top : top + nh, left : left + nw] = inner.reshape(nh, nw, -1)
    else:
        raise ValueError(f"unknown resize policy {policy!r}")
    return out.reshape(size, size, arr.shape[2])


def _resize(arr: np.ndarray, width: int, height: int) -> np.ndarray:
    if arr.shape[1] == width and arr.shape[0] == height:
        return arr
    shrink = width < arr.shape[1] or height < arr.shape[0]
    out = cv2.resize(arr, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return out.reshape(height, width, arr.shape[2])


def image_channels(img: Image.Image) -> int:
    return 1 if img.mode == "L" else 3
