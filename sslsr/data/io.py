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
        raise ValueError(f"{path}: cannot read image ({type(e).__name__}: {msg})") from None
    try:
        a = _decoded_to_uint8(a, mode)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    elif a.shape[2] == 2:  # LA
        a = np.repeat(a[:, :, :1], 3, axis=2)
    elif a.shape[2] == 4:  # RGBA
        a = a[:, :, :3]
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"{path}: unsupported image layout {a.shape} (mode {mode})")
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
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    Image.fromarray(img).save(tmp, format="PNG")
    os.replace(tmp, path)


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
        raise ValueError(f"{folder}: no image files ({', '.join(IMAGE_EXTENSIONS)})")
    return files
