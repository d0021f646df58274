"""Blur kernels of the degradation models and their reflect-padded 2-D filtering.

Real-ESRGAN's kernels (Wang et al. 2021, Sec. 3.1; BasicSR `data/degradations.py`), written from
the paper's formulas: (generalized) Gaussian, plateau and circular sinc, each normalized to sum 1.
"""

from __future__ import annotations

import math

import numpy as np


def _grid(size: int) -> np.ndarray:
    ax = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    xx, yy = np.meshgrid(ax, ax)
    return np.stack([xx, yy], -1)  # (k, k, 2) as (x, y)


def sigma_matrix(sig_x: float, sig_y: float, theta: float) -> np.ndarray:
    """Covariance R diag(sx^2, sy^2) R^T of a Gaussian rotated by theta."""
    c, s = math.cos(theta), math.sin(theta)
    u = np.array([[c, -s], [s, c]])
    return u @ np.diag([sig_x**2, sig_y**2]) @ u.T


def _quadratic_form(size: int, cov: np.ndarray) -> np.ndarray:
    """x^T C^-1 x on the (size, size) grid of integer offsets x from the kernel centre."""
    g = _grid(size)
    return np.einsum("...i,ij,...j->...", g, np.linalg.inv(cov), g)


def gaussian_kernel(size: int, sig_x: float, sig_y: float | None = None, theta: float = 0.0) -> np.ndarray:
    """(Anisotropic) Gaussian exp(-x^T C^-1 x / 2), normalized; isotropic when sig_y is None."""
    cov = sigma_matrix(sig_x, sig_x if sig_y is None else sig_y, 0.0 if sig_y is None else theta)
    k = np.exp(-0.5 * _quadratic_form(size, cov))
    return k / k.sum()


def generalized_gaussian_kernel(size: int, sig_x: float, sig_y: float, theta: float, beta: float) -> np.ndarray:
    """Generalized Gaussian exp(-0.5 (x^T C^-1 x)^beta), normalized (beta = 1: the Gaussian)."""
    k = np.exp(-0.5 * np.power(_quadratic_form(size, sigma_matrix(sig_x, sig_y, theta)), beta))
    return k / k.sum()


def plateau_kernel(size: int, sig_x: float, sig_y: float, theta: float, beta: float) -> np.ndarray:
    """Plateau-shaped 1 / (1 + (x^T C^-1 x)^beta), normalized."""
    k = 1.0 / (np.power(_quadratic_form(size, sigma_matrix(sig_x, sig_y, theta)), beta) + 1.0)
    return k / k.sum()


def sinc_kernel(size: int, cutoff: float, pad_to: int = 0) -> np.ndarray:
    """2-D circular low-pass (sinc) filter with cutoff omega_c: omega_c J1(omega_c r) / (2 pi r)."""
    from scipy.special import j1

    r = np.sqrt((_grid(size) ** 2).sum(-1))
    with np.errstate(divide="ignore", invalid="ignore"):
        k = cutoff * j1(cutoff * r) / (2 * np.pi * r)
    k[r == 0] = cutoff**2 / (4 * np.pi)  # the limit at r = 0
    k = k / k.sum()
    if pad_to > size:
        p = (pad_to - size) // 2
        k = np.pad(k, p)
    return k


def filter2d(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Correlates float (H, W, C) with a (k, k) kernel (odd k), reflect borders without edge repeat
    (torch 'reflect', as BasicSR's filter2D)."""
    # Zero rings only exist to batch kernels of different sizes; dropping them is exact.
    while kernel.shape[0] > 1 and not kernel[0].any() and not kernel[-1].any() and not kernel[:, 0].any() and not kernel[:, -1].any():
        kernel = kernel[1:-1, 1:-1]
    k = kernel.shape[0]
    if k == 1:
        return img * img.dtype.type(kernel[0, 0])
    r = k // 2
    if k <= 7:
        from scipy import ndimage

        return ndimage.correlate(img, kernel.astype(img.dtype)[:, :, None], mode="mirror")
    from scipy import signal

    padded = np.pad(img, ((r, r), (r, r), (0, 0)), mode="reflect")
    out = signal.fftconvolve(padded, kernel[::-1, ::-1, None].astype(img.dtype), mode="valid", axes=(0, 1))
    return out.astype(img.dtype)
