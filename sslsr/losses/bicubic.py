"""Differentiable bicubic resizing in JAX: MATLAB's `imresize` and PyTorch's `F.interpolate`.

Both are linear and separable, so each is two small dense matrices (out, in) built in NumPy from
the static shapes and applied with float32 matmuls at full precision; autodiff gives the exact
adjoint. The matrices fold the border handling into their columns:
- `imresize`: MATLAB's bicubic (Keys a = -0.5), kernel stretched by 1/scale when downscaling
  (antialiasing), rows normalised to 1, samples outside the image mirrored with the edge sample
  repeated ('symmetric'); output size ceil(scale * n). Matches `sslsr.data.imresize.imresize` on
  float input (the NumPy reference, MATLAB-exact) to float32 rounding; BebyGAN's back-projection
  loss resizes with it (its `imresize(out, 1/4)` is MATLAB's for integer factors).
- `interpolate_bicubic`: `F.interpolate(mode='bicubic', align_corners=False)` without
  antialiasing (Keys a = -0.75, source coordinate (i + 0.5) * in / out - 0.5, edge samples
  repeated); BebyGAN's best-buddy loss downscales the ground truth with it.
(The data layer, which may not import JAX, keeps its own NumPy tap tables for the same kernels.)
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np


def _keys_cubic(x: np.ndarray, a: float) -> np.ndarray:
    """Keys' cubic convolution kernel with parameter `a`, zero for |x| >= 2."""
    ax = np.abs(x)
    near = ((a + 2) * ax - (a + 3)) * ax * ax + 1
    far = ((a * ax - 5 * a) * ax + 8 * a) * ax - 4 * a
    return np.where(ax <= 1, near, np.where(ax < 2, far, 0.0))


def _fold(weights: np.ndarray, first: int, in_len: int, border) -> np.ndarray:
    """(out, K) weights of input positions first..first+K-1 -> (out, in_len) matrix, positions
    outside [0, in_len) mapped inside by `border(index) -> index`."""
    m = np.zeros((weights.shape[0], in_len), np.float64)
    cols = border(np.arange(first, first + weights.shape[1]))
    for k, col in enumerate(cols):
        m[:, col] += weights[:, k]
    return m


def _symmetric(idx: np.ndarray, n: int) -> np.ndarray:
    idx = np.mod(idx, 2 * n)
    return np.where(idx < n, idx, 2 * n - 1 - idx)


@functools.lru_cache(maxsize=64)
def matlab_matrix(in_len: int, out_len: int, scale: float) -> np.ndarray:
    """(out_len, in_len) float64 matrix of MATLAB's bicubic along one axis (antialiased if scale < 1)."""
    stretch = min(scale, 1.0)  # the kernel is widened by 1/scale when downscaling
    reach = int(math.ceil(2.0 / stretch)) + 1
    u = (np.arange(out_len) + 0.5) / scale - 0.5  # 0-based source coordinate of each output
    first = int(np.floor(u.min())) - reach
    pos = np.arange(first, int(np.ceil(u.max())) + reach + 1)
    w = stretch * _keys_cubic((u[:, None] - pos[None, :]) * stretch, -0.5)
    w = w / w.sum(axis=1, keepdims=True)
    return _fold(w, first, in_len, lambda i: _symmetric(i, in_len))


@functools.lru_cache(maxsize=64)
def torch_bicubic_matrix(in_len: int, out_len: int) -> np.ndarray:
    """(out_len, in_len) float64 matrix of PyTorch's bicubic (no antialias) along one axis."""
    src = (np.arange(out_len) + 0.5) * (in_len / out_len) - 0.5
    first = int(np.floor(src.min())) - 2
    pos = np.arange(first, int(np.floor(src.max())) + 3)
    w = _keys_cubic(src[:, None] - pos[None, :], -0.75)
    return _fold(w, first, in_len, lambda i: np.clip(i, 0, in_len - 1))


def _resize(x: jax.Array, mh: np.ndarray, mw: np.ndarray) -> jax.Array:
    hi = jax.lax.Precision.HIGHEST
    x = x.astype(jnp.float32)
    x = jnp.einsum("oh,bhwc->bowc", jnp.asarray(mh, jnp.float32), x, precision=hi)
    return jnp.einsum("pw,bowc->bopc", jnp.asarray(mw, jnp.float32), x, precision=hi)


def _out_len(n: int, scale: float) -> int:
    return int(math.ceil(round(n * scale, 8)))  # MATLAB's ceil(scale * n), e.g. 255 / 3 -> 85


def imresize(x: jax.Array, scale: float) -> jax.Array:
    """MATLAB `imresize(x, scale, 'bicubic')`, differentiable.

    x: (B, H, W, C) float. Returns (B, ceil(H*scale), ceil(W*scale), C) float32, unclipped.
    """
    if not scale > 0:
        raise ValueError(f"imresize: scale must be > 0, got {scale}")
    _, h, w, _ = x.shape
    return _resize(x, matlab_matrix(h, _out_len(h, scale), scale), matlab_matrix(w, _out_len(w, scale), scale))


def interpolate_bicubic(x: jax.Array, size: tuple[int, int]) -> jax.Array:
    """`F.interpolate(x, size, mode='bicubic', align_corners=False)` (no antialias), differentiable.

    x: (B, H, W, C) float; size: (out_h, out_w). Returns (B, out_h, out_w, C) float32.
    (PyTorch given `scale_factor` instead of `size` maps coordinates with 1/scale_factor, the
    same when H * scale_factor is a whole number.)
    """
    _, h, w, _ = x.shape
    return _resize(x, torch_bicubic_matrix(h, int(size[0])), torch_bicubic_matrix(w, int(size[1])))
