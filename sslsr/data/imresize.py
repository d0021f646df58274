"""MATLAB-exact bicubic `imresize`: the LR images of the SR benchmarks (Set5, Set14, ...).

Bit-exact with MATLAB for uint8 input; float input follows BasicSR's `matlab_functions.imresize`.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from sslsr.data.resample import apply_taps, read_only


def cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's `imresize` 'bicubic')."""
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    return (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1) + (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * (
        (ax > 1) & (ax <= 2)
    )


def _mirror(idx: np.ndarray, n: int) -> np.ndarray:
    """MATLAB's 'symmetric' padding for 0-based indices (edge sample repeated), any distance."""
    period = 2 * n
    idx = np.mod(idx, period)
    return np.where(idx < n, idx, period - 1 - idx)


@functools.lru_cache(maxsize=256)
def matlab_taps(in_len: int, out_len: int, scale: float, antialiasing: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """MATLAB's contributions(): (indices, weights), each (out_len, p), 0-based mirrored indices.

    Output pixel i (1-based) samples input coordinate u = i / scale + 0.5 * (1 - 1 / scale); when
    downscaling with antialiasing the cubic kernel is stretched by 1/scale (width 4/scale) and
    scaled by `scale`; each row is normalized to sum 1 and samples outside the image are mirrored
    (symmetric padding).
    """
    kernel_width = 4.0
    aa = scale < 1 and antialiasing
    if aa:
        kernel_width = kernel_width / scale
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - kernel_width / 2.0)
    p = int(math.ceil(kernel_width)) + 2
    indices = left[:, None] + np.arange(p)[None, :]  # 1-based
    dist = u[:, None] - indices
    w = scale * cubic(dist * scale) if aa else cubic(dist)
    w = w / w.sum(axis=1, keepdims=True)
    return read_only(_mirror(indices.astype(np.int64) - 1, in_len), w)


def _dense(idx: np.ndarray, w: np.ndarray, in_len: int) -> np.ndarray:
    m = np.zeros((idx.shape[0], in_len), np.float64)
    np.add.at(m, (np.repeat(np.arange(idx.shape[0]), idx.shape[1]), idx.ravel()), w.ravel())
    return m


def resize_matrix(in_len: int, out_len: int, scale: float, antialiasing: bool = True) -> np.ndarray:
    """Dense (out_len, in_len) float64 matrix M of MATLAB's bicubic, `out = M @ in` along one axis."""
    return _dense(*matlab_taps(in_len, out_len, scale, antialiasing), in_len)


def _out_len(n: int, scale: float) -> int:
    # MATLAB: ceil(scale * n). Rounding first keeps e.g. 255 * (1/3) from becoming 86.
    return int(math.ceil(round(n * scale, 8)))


def _round_half_away(y: np.ndarray) -> np.ndarray:
    # MATLAB rounds halves away from zero (np.round would round them to even).
    return np.clip(np.floor(y + 0.5), 0, 255)


def imresize(img: np.ndarray, scale: float, antialiasing: bool = True) -> np.ndarray:
    """MATLAB `imresize(img, scale, 'bicubic')` (antialiased when downscaling).

    Bit-exact with MATLAB for uint8 (checked on Set5 X2/X3/X4): MATLAB resizes along the height,
    stores the intermediate in the input class (uint8: rounded half away from zero and saturated),
    then resizes along the width and rounds again; this does the same. Float input is resized in
    float64 in one go and returned in its dtype, unclipped (BasicSR's `matlab_functions.imresize`).

    Args:
      img: (H, W, C) or (H, W), uint8 or float.
      scale: output/input size ratio (e.g. 1/4 for x4 LR); output size is ceil(scale * size).
      antialiasing: MATLAB's default True.
    Returns:
      (ceil(H*scale), ceil(W*scale)[, C]) array, uint8 for uint8 input, else the input float dtype.
    """
    img = np.asarray(img)
    if img.ndim not in (2, 3):
        raise ValueError(f"imresize expects (H, W) or (H, W, C), got shape {img.shape}")
    if not scale > 0:
        raise ValueError(f"imresize scale must be > 0, got {scale}")
    is_uint8 = img.dtype == np.uint8
    if not is_uint8 and not np.issubdtype(img.dtype, np.floating):
        raise ValueError(f"imresize expects uint8 or float input, got {img.dtype}")
    x = img.astype(np.float64)
    h, w = x.shape[:2]
    y = apply_taps(x, *matlab_taps(h, _out_len(h, scale), scale, antialiasing), axis=0)  # (oh, W[, C])
    if is_uint8:
        y = _round_half_away(y)
    y = apply_taps(y, *matlab_taps(w, _out_len(w, scale), scale, antialiasing), axis=1)  # (oh, ow[, C])
    if is_uint8:
        return _round_half_away(y).astype(np.uint8)
    return y.astype(img.dtype)


def mod_crop(img: np.ndarray, scale: int) -> np.ndarray:
    """Crops the bottom/right so that H and W are multiples of `scale` (BasicSR's mod_crop)."""
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]


def bicubic_lr(hr: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """(hr mod-cropped to a multiple of scale, its MATLAB-bicubic x1/scale LR)."""
    hr = mod_crop(hr, scale)
    return hr, imresize(hr, 1.0 / scale)
