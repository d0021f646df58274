"""Unsharp-masked (USM) ground truth, the target of Real-ESRGAN's L1 and perceptual terms.

Real-ESRGAN trains its generator towards a sharpened HR: with a 51x51 Gaussian blur B (OpenCV's
sigma for that size, 8.0; reflect-101 borders), residual r = x - B(x), a per-channel mask
m = [|r| * 255 > threshold] and its blurred version s = B(m),

    usm(x) = s * clip(x + weight * r, 0, 1) + (1 - s) * x.

Only visibly blurred structure gets sharpened; flat regions keep x. As in Real-ESRGAN, its
second-order degradation starts from the sharpened HR (sslsr.data.realesrgan), and the training
step can take it as the L1 / perceptual target (`loss.pixel_gt_usm`, `loss.perceptual_gt_usm`);
the discriminator and SSL see the plain HR.
"""

from __future__ import annotations

import functools

import numpy as np


def gaussian_taps(size: int) -> np.ndarray:
    """OpenCV's `getGaussianKernel(size, 0)`: sigma = 0.3 * ((size - 1) / 2 - 1) + 0.8, sums to 1."""
    sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    taps = np.exp(-(x**2) / (2 * sigma**2))
    return taps / taps.sum()


def _check_side(n: int, size: int) -> None:
    if n <= size // 2:
        raise ValueError(f"usm_sharpen: images must be larger than {size // 2} px per side for a {size}-tap "
                         f"blur with reflected borders, got a side of {n}")


@functools.lru_cache(maxsize=16)
def _blur_matrix(n: int, size: int) -> np.ndarray:
    """(n, n) matrix applying the 1-D Gaussian along an axis of length n, reflect-101 borders folded in."""
    half = size // 2
    taps = gaussian_taps(size)
    m = np.zeros((n, n), np.float64)
    for i in range(n):
        for k, w in enumerate(taps):
            j = i + k - half
            j = -j if j < 0 else (2 * (n - 1) - j if j >= n else j)  # reflect-101: edge not repeated
            m[i, j] += w
    return m.astype(np.float32)


def gaussian_blur(x, size: int = 51):
    """Separable Gaussian blur of (..., H, W, C) images with OpenCV's default sigma for `size`.

    NumPy in, NumPy out (the data pipeline); JAX arrays and tracers go through jnp (the train step).
    """
    _check_side(x.shape[-3], size)
    _check_side(x.shape[-2], size)
    if isinstance(x, np.ndarray):
        # scipy's single-threaded separable correlation, not BLAS: multithreaded GEMMs inside
        # grain worker processes oversubscribe the cores (measured 3-5x slower loaders).
        from scipy import ndimage

        taps = gaussian_taps(size)
        x = ndimage.correlate1d(x.astype(np.float32, copy=False), taps, axis=-3, mode="mirror")
        return ndimage.correlate1d(x, taps, axis=-2, mode="mirror")  # 'mirror' is reflect-101
    import jax  # here, so the NumPy path (grain workers) never initialises JAX
    import jax.numpy as jnp

    mh, mw = _blur_matrix(x.shape[-3], size), _blur_matrix(x.shape[-2], size)
    hi = jax.lax.Precision.HIGHEST  # TPUs and recent GPUs default to reduced-precision passes
    x = jnp.einsum("ij,...jwc->...iwc", jnp.asarray(mh), x, precision=hi)
    return jnp.einsum("ij,...hjc->...hic", jnp.asarray(mw), x, precision=hi)


def usm_sharpen(x, *, weight: float = 0.5, radius: int = 50, threshold: float = 10.0):
    """Real-ESRGAN's USM sharpening of (..., H, W, C) float images in [0, 1] (both sides > 25 px).

    Args:
      x: images in [0, 1]; a NumPy array (blurred with scipy) or a JAX array (jnp); float32 either way.
      weight: how much of the high-pass residual is added back.
      radius: the blur has 2 * (radius // 2) + 1 taps (Real-ESRGAN's radius 50 gives 51).
      threshold: residuals below threshold / 255 are left alone.
    Returns:
      the sharpened images, same shape and array library, float32 in [0, 1].
    """
    if isinstance(x, np.ndarray):
        xp = np
        x = x.astype(np.float32)
    else:
        import jax.numpy as xp

        x = xp.asarray(x, xp.float32)
    size = radius + 1 if radius % 2 == 0 else radius
    residual = x - gaussian_blur(x, size)
    mask = (xp.abs(residual) * np.float32(255.0) > threshold).astype(np.float32)
    soft = gaussian_blur(mask, size)
    sharp = xp.clip(x + np.float32(weight) * residual, 0.0, 1.0)
    return soft * sharp + (np.float32(1.0) - soft) * x
