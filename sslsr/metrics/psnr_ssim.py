"""PSNR and SSIM exactly as BasicSR reports them in SR papers (NumPy, float64).

Protocol (BasicSR `calculate_psnr` / `calculate_ssim` with `test_y_channel=True`):
  * inputs are uint8 RGB (H, W, 3) images (grey (H, W) or (H, W, 1) images are repeated to three
    channels first, as BasicSR's validation reads every image as 3-channel);
  * `crop_border` pixels are removed on every side;
  * Y channel of ITU-R BT.601 YCbCr, Y = 16 + 65.481 R + 128.553 G + 24.966 B for RGB in [0, 1],
    evaluated on the 0-255 scale;
  * SSIM: 11x11 Gaussian window (sigma 1.5), 'valid' filtering, K1 = 0.01, K2 = 0.03, L = 255,
    averaged over channels for the RGB variant.

Everything is float64. (BasicSR's `to_y_channel` rounds Y through float32; the difference is below
1e-4 dB / 1e-6 SSIM and float64 matches the MATLAB scripts the papers' numbers come from.)
"""

from __future__ import annotations

import numpy as np

_Y_WEIGHTS = np.array([65.481, 128.553, 24.966], dtype=np.float64)


def _as_rgb_float64(img: np.ndarray, name: str) -> np.ndarray:
    """(H, W[, 1 or 3]) array on the 0-255 scale -> float64 (H, W, 3)."""
    img = np.asarray(img)
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3 or img.shape[-1] not in (1, 3):
        raise ValueError(f"{name}: expected an RGB image of shape (H, W, 3) or grey (H, W), got {img.shape}")
    if img.shape[-1] == 1:
        img = np.repeat(img, 3, axis=-1)
    return img.astype(np.float64)


def _prepare(sr: np.ndarray, hr: np.ndarray, crop_border: int, y_channel: bool):
    sr = _as_rgb_float64(sr, "sr")
    hr = _as_rgb_float64(hr, "hr")
    if sr.shape != hr.shape:
        raise ValueError(f"sr and hr shapes differ: {sr.shape} vs {hr.shape}")
    if crop_border < 0:
        raise ValueError(f"crop_border must be >= 0, got {crop_border}")
    if crop_border:
        if 2 * crop_border >= min(sr.shape[:2]):
            raise ValueError(f"crop_border={crop_border} leaves nothing of a {sr.shape[:2]} image")
        sr = sr[crop_border:-crop_border, crop_border:-crop_border]
        hr = hr[crop_border:-crop_border, crop_border:-crop_border]
    if y_channel:
        sr = rgb_to_y(sr)[..., None]
        hr = rgb_to_y(hr)[..., None]
    return sr, hr


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """BT.601 luma of an RGB image on the 0-255 scale.

    Args:
      img: (..., 3) RGB values in [0, 255].
    Returns:
      (...) float64 Y in [16, 235].
    """
    return 16.0 + np.asarray(img, np.float64) @ _Y_WEIGHTS / 255.0


def psnr(sr: np.ndarray, hr: np.ndarray, *, crop_border: int, y_channel: bool = True) -> float:
    """Peak signal-to-noise ratio in dB (BasicSR protocol, peak 255).

    Args:
      sr, hr: uint8 RGB (H, W, 3) (or grey (H, W)) images of the same shape; values on 0-255.
      crop_border: pixels removed on each side before the comparison (the SR scale in papers).
      y_channel: compare BT.601 Y (papers' protocol) instead of the three RGB channels.
    Returns:
      PSNR as a Python float; `inf` for identical images.
    """
    sr, hr = _prepare(sr, hr, crop_border, y_channel)
    mse = np.mean((sr - hr) ** 2)
    if mse == 0:
        return float("inf")
    return float(10.0 * np.log10(255.0 * 255.0 / mse))


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


_WINDOW_1D = _gaussian_window()


def _filter_valid(img: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """Separable 'valid' filtering of (H, W, C) with the outer product of `taps` (symmetric)."""
    k = taps.size
    h, w = img.shape[0] - k + 1, img.shape[1] - k + 1
    rows = sum(t * img[i : i + h] for i, t in enumerate(taps))
    return sum(t * rows[:, j : j + w] for j, t in enumerate(taps))


def _ssim_channels(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mean SSIM per channel of float64 (H, W, C) images on the 0-255 scale -> (C,)."""
    c1 = (0.01 * 255.0) ** 2
    c2 = (0.03 * 255.0) ** 2
    if min(x.shape[:2]) < _WINDOW_1D.size:
        raise ValueError(f"SSIM needs at least {_WINDOW_1D.size}x{_WINDOW_1D.size} pixels, got {x.shape[:2]}")
    mu_x = _filter_valid(x, _WINDOW_1D)
    mu_y = _filter_valid(y, _WINDOW_1D)
    var_x = _filter_valid(x * x, _WINDOW_1D) - mu_x**2
    var_y = _filter_valid(y * y, _WINDOW_1D) - mu_y**2
    cov = _filter_valid(x * y, _WINDOW_1D) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ssim_map.mean(axis=(0, 1))


def ssim(sr: np.ndarray, hr: np.ndarray, *, crop_border: int, y_channel: bool = True) -> float:
    """Structural similarity (BasicSR protocol: 11x11 Gaussian sigma 1.5, valid, K1 .01, K2 .03).

    Args:
      sr, hr: uint8 RGB (H, W, 3) (or grey (H, W)) images of the same shape; values on 0-255.
      crop_border: pixels removed on each side before the comparison.
      y_channel: compare BT.601 Y; otherwise the mean of the per-channel RGB SSIMs.
    Returns:
      SSIM as a Python float (1.0 for identical images).
    """
    sr, hr = _prepare(sr, hr, crop_border, y_channel)
    return float(_ssim_channels(sr, hr).mean())
