"""Separable resampling by tap tables, and torch's `F.interpolate` modes on NumPy images.

A tap table (indices, weights), each (out_len, p), says which input samples make each output
sample along one axis. The MATLAB bicubic (sslsr.data.imresize) and the torch-style modes the
Real-ESRGAN / BSRGAN degradations draw from (below) are both applied through `apply_taps`.
"""

from __future__ import annotations

import functools

import numpy as np

MODES = ("area", "bilinear", "bicubic")  # the modes the degradation models draw from


def read_only(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """Marks arrays read-only: cached tap tables are shared between calls."""
    for a in arrays:
        a.flags.writeable = False
    return arrays


def apply_taps(x: np.ndarray, idx: np.ndarray, w: np.ndarray, axis: int) -> np.ndarray:
    """out[i] = sum_k w[i, k] * x[idx[i, k]] along `axis` (0 or 1).

    A loop over the few taps instead of a dense matmul: no large temporaries and no BLAS, whose
    threads oversubscribe small per-sample work in data-loader processes.
    """
    x = np.moveaxis(x, axis, 0)
    w = w.astype(x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64)
    wshape = (w.shape[0],) + (1,) * (x.ndim - 1)
    out = np.zeros((idx.shape[0],) + x.shape[1:], w.dtype)
    for k in np.flatnonzero(np.abs(w).sum(0)):
        out += w[:, k].reshape(wshape) * x[idx[:, k]]
    return np.moveaxis(out, 0, axis)


@functools.lru_cache(maxsize=1024)
def interp_taps(in_len: int, out_len: int, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """(indices, weights), each (out_len, p), of torch `F.interpolate(size=..., align_corners=False)`
    without antialiasing: 'area' (adaptive average pooling), 'bilinear', 'bicubic' (a = -0.75,
    edge samples repeated) or 'nearest'."""
    return read_only(*_interp_taps(in_len, out_len, mode))


def _interp_taps(in_len: int, out_len: int, mode: str) -> tuple[np.ndarray, np.ndarray]:
    rows = np.arange(out_len)
    ratio = in_len / out_len
    if mode == "area":
        start = np.floor(rows * ratio).astype(np.int64)
        end = np.ceil((rows + 1) * ratio).astype(np.int64)
        p = int((end - start).max())
        idx = start[:, None] + np.arange(p)[None, :]
        valid = idx < end[:, None]
        w = valid / (end - start)[:, None]
        return np.minimum(idx, in_len - 1), w
    if mode == "nearest":
        return np.minimum(np.floor(rows * ratio).astype(np.int64), in_len - 1)[:, None], np.ones((out_len, 1))
    src = (rows + 0.5) * ratio - 0.5
    if mode == "bilinear":
        src = np.maximum(src, 0.0)
        i0 = np.floor(src).astype(np.int64)
        lam = src - i0
        idx = np.stack([np.minimum(i0, in_len - 1), np.minimum(i0 + 1, in_len - 1)], 1)
        return idx, np.stack([1.0 - lam, lam], 1)
    if mode == "bicubic":
        a = -0.75
        i0 = np.floor(src).astype(np.int64)
        t = (src - i0)[:, None]
        offs = np.arange(-1, 3)[None, :]
        d = np.abs(t - offs)
        w = np.where(d <= 1, ((a + 2) * d - (a + 3)) * d * d + 1, np.where(d < 2, ((a * d - 5 * a) * d + 8 * a) * d - 4 * a, 0.0))
        return np.clip(i0[:, None] + offs, 0, in_len - 1), w
    raise ValueError(f"unknown resize mode {mode!r}")


def resize(img: np.ndarray, out_hw: tuple[int, int], mode: str) -> np.ndarray:
    """Float (H, W, C) -> (out_h, out_w, C) with a torch-style interpolation mode (see above)."""
    oh, ow = max(1, int(out_hw[0])), max(1, int(out_hw[1]))
    h, w = img.shape[:2]
    y = apply_taps(img, *interp_taps(h, oh, mode), axis=0)
    return apply_taps(y, *interp_taps(w, ow, mode), axis=1)
