"""Sensor noise and JPEG re-encoding, the capture and storage artefacts of the degradation models.

Float (H, W, 3) images in [0, 1]; every random draw comes from the `numpy.random.Generator` given.
"""

from __future__ import annotations

import numpy as np


def _luma(img: np.ndarray) -> np.ndarray:
    return (0.299 * img[:, :, 0:1] + 0.587 * img[:, :, 1:2] + 0.114 * img[:, :, 2:3]).astype(img.dtype)


def add_gaussian_noise(img: np.ndarray, rng: np.random.Generator, sigma_range, gray_prob: float) -> np.ndarray:
    """img + N(0, sigma/255), sigma ~ U(sigma_range); one noise map for all channels w.p. gray_prob."""
    sigma = rng.uniform(*sigma_range) / 255.0
    shape = img.shape[:2] + ((1,) if rng.random() < gray_prob else (img.shape[2],))
    return np.clip(img + rng.standard_normal(shape).astype(img.dtype) * np.float32(sigma), 0.0, 1.0)


def add_poisson_noise(img: np.ndarray, rng: np.random.Generator, scale_range, gray_prob: float) -> np.ndarray:
    """Shot noise: Poisson(img * v) / v - img with v the next power of two >= the number of grey
    levels in use, times a strength ~ U(scale_range); on the luma only w.p. gray_prob."""
    scale = rng.uniform(*scale_range)
    src = _luma(img) if rng.random() < gray_prob else img
    src = np.clip(np.round(src * 255.0), 0, 255) / 255.0
    vals = 2.0 ** np.ceil(np.log2(max(len(np.unique(src)), 2)))
    noise = rng.poisson(src * vals) / vals - src
    return np.clip(img + (noise * scale).astype(img.dtype), 0.0, 1.0)


def jpeg(img: np.ndarray, quality: float) -> np.ndarray:
    """Real JPEG re-encoding (Pillow, 4:2:0) of float [0, 1] RGB at integer quality round(quality)."""
    import io as _io

    from PIL import Image

    u8 = np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)
    buf = _io.BytesIO()
    Image.fromarray(u8).save(buf, format="JPEG", quality=int(round(quality)))
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float32) / np.float32(255.0)
