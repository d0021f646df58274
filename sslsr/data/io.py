"""Image files on disk <-> uint8 RGB arrays (H, W, 3), and float images -> uint8.

Conversions applied by `read_image` (the same results as BasicSR's `cv2.imread(path,
cv2.IMREAD_COLOR)` + BGR->RGB, which its validation uses):

- grey (L, 1-bit, 16-bit I;16, 32-bit I): replicated to 3 identical RGB channels
  (e.g. Set14 img_003 is stored grey);
- RGBA / LA: the alpha channel is dropped (not composited);
- palette (P): expanded to RGB;
- 16-bit samples: the high byte is kept (v >> 8), as libpng's strip-16 in OpenCV and Pillow do.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np
from PIL import Image

from sslsr.errors import InputError
from sslsr.files import atomic_path

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm")


def _decoded_to_uint8(a: np.ndarray, mode: str) -> np.ndarray:
    if a.dtype == np.uint8:
        return a
    if a.dtype == bool:
        return a.astype(np.uint8) * 255
    if mode.startswith("I;16") or a.dtype == np.uint16:
        return (a.astype(np.uint32) >> 8).astype(np.uint8)
    if mode == "I":
        # 32-bit integer PNGs are 16-bit data widened by Pillow.
        return (np.clip(a, 0, 65535).astype(np.uint32) >> 8).astype(np.uint8)
    if mode == "F":
        return np.clip(np.round(a * 255.0 if a.max() <= 1.0 else a), 0, 255).astype(np.uint8)
    raise ValueError(f"unsupported pixel type {a.dtype} (mode {mode})")


def to_uint8(img) -> np.ndarray:
    """Float image in [0, 1] (any shape; NumPy or JAX array) -> uint8, rounded like BasicSR's
    `tensor2img`: clipped to [0, 1], times 255, rounded half to even."""
    x = np.asarray(img)
    if x.dtype != np.float64:
        x = x.astype(np.float32, copy=False)  # bfloat16 / float16 times 255 would round coarsely
    return np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decodes an image file to RGB uint8.

    Args:
      path: image file (any format Pillow reads).
    Returns:
      uint8 array (H, W, 3), RGB.
    Raises:
      FileNotFoundError: the file does not exist.
      ValueError: (one line, naming the file) unreadable, truncated or unsupported image.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such image file")
    try:
        with Image.open(path) as im:
            im.load()  # decode now so that truncation surfaces here, not later
            mode = im.mode
            if mode in ("P", "PA"):
                im = im.convert("RGBA" if "transparency" in im.info or mode == "PA" else "RGB")
                mode = im.mode
            elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
                im = im.convert("RGB")
                mode = "RGB"
            a = np.asarray(im)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        msg = str(e).replace("\n", " ")
        raise InputError(f"{path}: cannot read image ({type(e).__name__}: {msg})") from None
    try:
        a = _decoded_to_uint8(a, mode)
    except ValueError as e:
        raise InputError(f"{path}: {e}") from None
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    elif a.shape[2] == 2:  # LA
        a = np.repeat(a[:, :, :1], 3, axis=2)
    elif a.shape[2] == 4:  # RGBA
        a = a[:, :, :3]
    if a.ndim != 3 or a.shape[2] != 3:
        raise InputError(f"{path}: unsupported image layout {a.shape} (mode {mode})")
    return np.ascontiguousarray(a)


def write_png(path: str | os.PathLike, img: np.ndarray) -> None:
    """Writes uint8 (H, W, 3) RGB or (H, W) grey as PNG, creating parent folders.

    The file appears atomically (written beside it, then renamed), so concurrent readers
    (e.g. data-loader workers caching masks) never see a partial file.
    """
    img = np.asarray(img)
    if img.dtype != np.uint8:
        raise ValueError(f"{path}: write_png expects uint8, got {img.dtype}")
    if not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] in (1, 3))):
        raise ValueError(f"{path}: write_png expects (H, W), (H, W, 1) or (H, W, 3), got {img.shape}")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    with atomic_path(path) as tmp:
        Image.fromarray(img).save(tmp, format="PNG")


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_header(path: pathlib.Path) -> tuple[int, int] | None:
    """(bit depth, colour type) from a PNG's IHDR (always the first chunk), None for other files."""
    with open(path, "rb") as f:
        head = f.read(26)
    if len(head) < 26 or head[:8] != _PNG_SIGNATURE or head[12:16] != b"IHDR":
        return None
    return head[24], head[25]


def read_image_unchanged(path: str | os.PathLike) -> np.ndarray:
    """Decodes an image keeping what `read_image` drops: grey stays grey, alpha and 16-bit samples stay.

    16-bit PNGs are decoded by OpenCV, because Pillow 13 reduces 16-bit RGB(A) PNGs to 8 bits;
    every other file by Pillow (which reports truncation).

    Returns:
      uint8 or uint16 array: (H, W) grey, (H, W, 2) grey + alpha, (H, W, 3) RGB or (H, W, 4) RGBA.
    Raises:
      FileNotFoundError: the file does not exist.
      InputError: (a ValueError; one line, naming the file) unreadable, truncated or unsupported image.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such image file")
    header = _png_header(path)
    if header is not None and header[0] == 16:
        import cv2  # only here: every other image path works without OpenCV loaded

        a = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED)
        if a is None:
            raise InputError(f"{path}: cannot read image (OpenCV cannot decode this 16-bit PNG; truncated?)")
        if a.ndim == 3:  # OpenCV orders colour BGR(A) and widens grey + alpha (colour type 4) to BGRA
            a = a[..., [0, 3]] if header[1] == 4 else a[..., [2, 1, 0, 3][: a.shape[2]]]
        return np.ascontiguousarray(a)
    try:
        with Image.open(path) as im:
            im.load()  # decode now so that truncation surfaces here
            if im.mode in ("P", "PA"):
                im = im.convert("RGBA" if "transparency" in im.info or im.mode == "PA" else "RGB")
            elif im.mode == "1":
                im = im.convert("L")
            elif im.mode not in ("L", "LA", "RGB", "RGBA", "I", "F") and not im.mode.startswith("I;16"):
                im = im.convert("RGBA" if "A" in im.mode or "a" in im.mode else "RGB")  # CMYK, YCbCr, ...
            mode, a = im.mode, np.asarray(im)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        msg = str(e).replace("\n", " ")
        raise InputError(f"{path}: cannot read image ({type(e).__name__}: {msg})") from None
    if mode.startswith("I;16") or mode == "I":  # 16-bit grey (Pillow widens some to 32-bit 'I')
        return np.clip(a, 0, 65535).astype(np.uint16)
    return _decoded_to_uint8(a, mode) if mode == "F" else np.ascontiguousarray(a)


WRITE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}


def write_image(path: str | os.PathLike, img: np.ndarray) -> None:
    """Writes an image in the format its suffix names (`WRITE_FORMATS`), atomically, creating folders.

    Args:
      path: output file; .png holds every layout, .jpg no alpha, .webp no 16-bit samples.
      img: uint8 or uint16 (H, W), (H, W, 2) grey + alpha, (H, W, 3) RGB or (H, W, 4) RGBA.
        uint16 is written as a 16-bit PNG through OpenCV (Pillow cannot write 16-bit colour); OpenCV
        has no grey + alpha, so a 16-bit grey + alpha image is stored as RGBA with equal colours.
    Raises:
      ValueError: (naming the file) a suffix, dtype or layout the format cannot hold.
    """
    path = pathlib.Path(path)
    img = np.asarray(img)
    fmt = WRITE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: cannot write {path.suffix!r} files (expected {', '.join(WRITE_FORMATS)})")
    channels = 1 if img.ndim == 2 else img.shape[2] if img.ndim == 3 else 0
    if channels not in (1, 2, 3, 4):
        raise ValueError(f"{path}: expected an (H, W[, 2|3|4]) image, got shape {img.shape}")
    if fmt == "JPEG" and channels in (2, 4):
        raise ValueError(f"{path}: JPEG has no alpha channel (write .png or .webp)")
    if img.dtype == np.uint16:
        if fmt != "PNG":
            raise ValueError(f"{path}: 16-bit samples can only be written as .png")
        import cv2

        bgr = img[..., [0, 0, 0, 1]] if channels == 2 else img[..., [2, 1, 0, 3][:channels]] if channels > 1 else img
        ok, buf = cv2.imencode(".png", np.ascontiguousarray(bgr))
        if not ok:
            raise ValueError(f"{path}: OpenCV could not encode the image")
        data = buf.tobytes()

        def save(tmp):
            tmp.write_bytes(data)
    elif img.dtype == np.uint8:

        def save(tmp):
            Image.fromarray(img).save(tmp, format=fmt, **({} if fmt == "PNG" else {"quality": 95}))
    else:
        raise ValueError(f"{path}: expected uint8 or uint16 samples, got {img.dtype}")
    with atomic_path(path) as tmp:
        save(tmp)


def list_images(folder: str | os.PathLike) -> list[pathlib.Path]:
    """Image files directly inside `folder`, sorted by name.

    Raises:
      FileNotFoundError: the folder does not exist.
      ValueError: it holds no image file.
    """
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    files = sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
    )
    if not files:
        raise InputError(f"{folder}: no image files ({', '.join(IMAGE_EXTENSIONS)})")
    return files
