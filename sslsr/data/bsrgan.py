"""BSRGAN's shuffled degradation (Zhang et al. 2021, "Designing a practical degradation model").

As KAIR's `degradation_bsrgan`: two blurs, two downsamplings and noise in shuffled order, JPEG
(p=0.9) inside the shuffle and a final JPEG. The camera ISP step needs a trained model and is left
out (as in BSRGAN's release). All randomness comes from an explicit `numpy.random.Generator`.
"""

from __future__ import annotations

import math

import numpy as np

from sslsr.data.artifacts import jpeg
from sslsr.data.imresize import imresize
from sslsr.data.kernels import filter2d, gaussian_kernel
from sslsr.data.resample import MODES, resize


def fspecial_gaussian(size: int, sigma: float) -> np.ndarray:
    """MATLAB fspecial('gaussian', size, sigma): tiny values (< eps * max) zeroed, normalized."""
    r = (size - 1) / 2.0
    ax = np.arange(-r, r + 1)
    xx, yy = np.meshgrid(ax, ax)
    sigma = max(float(sigma), 1e-6)
    k = np.exp(-(xx**2 + yy**2) / (2 * sigma * sigma))
    k[k < np.finfo(float).eps * k.max()] = 0
    return k / k.sum()


def anisotropic_gaussian(size: int, theta: float, l1: float, l2: float) -> np.ndarray:
    """Gaussian with covariance V diag(l1, l2) V^T, V the rotation by theta (l1, l2 variances)."""
    # A floor on the variances keeps the covariance invertible when BSRGAN draws ~0.
    return gaussian_kernel(size, math.sqrt(max(l1, 1e-2)), math.sqrt(max(l2, 1e-2)), theta)


def _bsrgan_blur(img, rng, sf):
    wd2, wd = 4.0 + sf, 2.0 + 0.2 * sf
    size = 2 * int(rng.integers(2, 12)) + 3
    if rng.random() < 0.5:
        k = anisotropic_gaussian(size, rng.random() * np.pi, wd2 * rng.random(), wd2 * rng.random())
    else:
        k = fspecial_gaussian(size, wd * rng.random())
    return filter2d(img, k)


def _bsrgan_noise(img, rng):
    level = float(rng.integers(2, 26)) / 255.0
    r = rng.random()
    if r > 0.6:
        noise = rng.standard_normal(img.shape) * level
    elif r < 0.4:
        noise = rng.standard_normal(img.shape[:2] + (1,)) * level
    else:  # channel-correlated noise with a random covariance
        lvl = 25.0 / 255.0
        d = np.diag(rng.random(3))
        u, _ = np.linalg.qr(rng.random((3, 3)))
        cov = np.abs(lvl**2 * (u.T @ d @ u))
        noise = rng.multivariate_normal(np.zeros(3), cov, img.shape[:2])
    return np.clip(img + noise.astype(img.dtype), 0.0, 1.0)


def bsrgan_degrade(hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
    """BSRGAN's shuffled degradation of one HR image (uint8 (H, W, 3), multiples of scale) to
    uint8 (H/scale, W/scale, 3). OpenCV resizes are replaced by their torch-style equivalents
    (bilinear, bicubic, area as average pooling)."""
    from scipy import ndimage

    h, w = hr.shape[:2]
    if h % scale or w % scale:
        raise ValueError(f"bsrgan_degrade: HR size {h}x{w} must be a multiple of scale {scale}")
    img = hr.astype(np.float32) / np.float32(255.0)
    sf = scale
    if sf == 4 and rng.random() < 0.25:  # x2 first, then an x2 pipeline
        if rng.random() < 0.5:
            img = resize(img, (h // 2, w // 2), MODES[int(rng.integers(3))])
        else:
            img = imresize(img, 0.5)
        img = np.clip(img, 0.0, 1.0)
        sf = 2
    order = list(rng.permutation(7))
    i2, i3 = order.index(2), order.index(3)
    if i2 > i3:  # downsample2 always before downsample3
        order[i2], order[i3] = order[i3], order[i2]
    target = None
    for op in order:
        if op in (0, 1):
            img = _bsrgan_blur(img, rng, sf)
        elif op == 2:
            target = (img.shape[0] // sf, img.shape[1] // sf)
            if rng.random() < 0.75:
                sf1 = rng.uniform(1, 2 * sf)
                img = resize(img, (int(img.shape[0] / sf1), int(img.shape[1] / sf1)), MODES[int(rng.integers(3))])
            else:  # blur then nearest downsampling, the kernel shifted to the top-left sample
                k = fspecial_gaussian(25, rng.uniform(0.1, 0.6 * sf))
                k = ndimage.shift(k, (-(sf - 1) * 0.5, -(sf - 1) * 0.5), order=1, mode="nearest")
                img = filter2d(img, k / k.sum())[0::sf, 0::sf]
            img = np.clip(img, 0.0, 1.0)
        elif op == 3:
            img = np.clip(resize(img, target, MODES[int(rng.integers(3))]), 0.0, 1.0)
        elif op == 4:
            img = _bsrgan_noise(img, rng)
        elif op == 5:
            if rng.random() < 0.9:
                img = jpeg(img, int(rng.integers(30, 96)))
        # op 6: camera ISP model, not available
    img = jpeg(img, int(rng.integers(30, 96)))
    return np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)
