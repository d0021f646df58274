"""Image degradations: MATLAB-exact bicubic resize (the SR benchmarks' LR), BSRGAN and Real-ESRGAN.

All randomness comes from an explicit `numpy.random.Generator`, so the same seed gives the same LR.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence

import numpy as np

from sslsr.data.usm import usm_sharpen


# ----------------------------------------------------------------------------- MATLAB bicubic


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


def _frozen(*arrays):
    for a in arrays:
        a.flags.writeable = False  # cached and shared between calls
    return arrays


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
    return _frozen(_mirror(indices.astype(np.int64) - 1, in_len), w)


def _dense(idx: np.ndarray, w: np.ndarray, in_len: int) -> np.ndarray:
    m = np.zeros((idx.shape[0], in_len), np.float64)
    np.add.at(m, (np.repeat(np.arange(idx.shape[0]), idx.shape[1]), idx.ravel()), w.ravel())
    return m


def resize_matrix(in_len: int, out_len: int, scale: float, antialiasing: bool = True) -> np.ndarray:
    """Dense (out_len, in_len) float64 matrix M of MATLAB's bicubic, `out = M @ in` along one axis."""
    return _dense(*matlab_taps(in_len, out_len, scale, antialiasing), in_len)


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


# ----------------------------------------------------------------------------- blur kernels
# Real-ESRGAN's kernels (Wang et al. 2021, Sec. 3.1; BasicSR `data/degradations.py`), written from
# the paper's formulas. `grid` holds integer offsets from the kernel centre.


def _grid(size: int) -> np.ndarray:
    ax = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    xx, yy = np.meshgrid(ax, ax)
    return np.stack([xx, yy], -1)  # (k, k, 2) as (x, y)


def sigma_matrix(sig_x: float, sig_y: float, theta: float) -> np.ndarray:
    """Covariance R diag(sx^2, sy^2) R^T of a Gaussian rotated by theta."""
    c, s = math.cos(theta), math.sin(theta)
    u = np.array([[c, -s], [s, c]])
    return u @ np.diag([sig_x**2, sig_y**2]) @ u.T


def _quad(size: int, cov: np.ndarray) -> np.ndarray:
    g = _grid(size)
    return np.einsum("...i,ij,...j->...", g, np.linalg.inv(cov), g)  # x^T C^-1 x


def gaussian_kernel(size: int, sig_x: float, sig_y: float | None = None, theta: float = 0.0) -> np.ndarray:
    """(Anisotropic) Gaussian exp(-x^T C^-1 x / 2), normalized; isotropic when sig_y is None."""
    cov = sigma_matrix(sig_x, sig_x if sig_y is None else sig_y, 0.0 if sig_y is None else theta)
    k = np.exp(-0.5 * _quad(size, cov))
    return k / k.sum()


def generalized_gaussian_kernel(size: int, sig_x: float, sig_y: float, theta: float, beta: float) -> np.ndarray:
    """Generalized Gaussian exp(-0.5 (x^T C^-1 x)^beta), normalized (beta = 1: the Gaussian)."""
    k = np.exp(-0.5 * np.power(_quad(size, sigma_matrix(sig_x, sig_y, theta)), beta))
    return k / k.sum()


def plateau_kernel(size: int, sig_x: float, sig_y: float, theta: float, beta: float) -> np.ndarray:
    """Plateau-shaped 1 / (1 + (x^T C^-1 x)^beta), normalized."""
    k = 1.0 / (np.power(_quad(size, sigma_matrix(sig_x, sig_y, theta)), beta) + 1.0)
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


def _beta(rng: np.random.Generator, lo: float, hi: float) -> float:
    # Half the time below 1, half above (BasicSR draws the shape exponent this way).
    return float(rng.uniform(lo, 1.0) if rng.random() < 0.5 else rng.uniform(1.0, hi))


def random_mixed_kernel(
    rng: np.random.Generator,
    kernel_list: Sequence[str],
    kernel_prob: Sequence[float],
    size: int,
    sigma_range: tuple[float, float],
    betag_range: tuple[float, float],
    betap_range: tuple[float, float],
) -> np.ndarray:
    """One kernel of a random type: 'iso', 'aniso', 'generalized_iso', 'generalized_aniso',
    'plateau_iso', 'plateau_aniso'; sigmas uniform in sigma_range, rotation uniform in [-pi, pi]."""
    kind = kernel_list[int(rng.choice(len(kernel_list), p=np.asarray(kernel_prob) / np.sum(kernel_prob)))]
    sx = float(rng.uniform(*sigma_range))
    if kind.endswith("iso") and not kind.endswith("aniso"):
        sy, theta = sx, 0.0
    else:
        sy, theta = float(rng.uniform(*sigma_range)), float(rng.uniform(-math.pi, math.pi))
    if kind in ("iso", "aniso"):
        return gaussian_kernel(size, sx, sy, theta)
    if kind.startswith("generalized"):
        return generalized_gaussian_kernel(size, sx, sy, theta, _beta(rng, *betag_range))
    if kind.startswith("plateau"):
        return plateau_kernel(size, sx, sy, theta, _beta(rng, *betap_range))
    raise ValueError(f"unknown kernel type {kind!r}")


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


# ----------------------------------------------------------------------------- resampling


@functools.lru_cache(maxsize=1024)
def interp_taps(in_len: int, out_len: int, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """(indices, weights), each (out_len, p), of torch `F.interpolate(size=..., align_corners=False)`
    without antialiasing: 'area' (adaptive average pooling), 'bilinear', 'bicubic' (a = -0.75,
    edge samples repeated) or 'nearest'."""
    return _frozen(*_interp_taps(in_len, out_len, mode))


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


# ----------------------------------------------------------------------------- noise and JPEG


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


# ----------------------------------------------------------------------------- Real-ESRGAN


@dataclasses.dataclass(frozen=True)
class RealESRGANParams:
    """Real-ESRGAN second-order degradation settings (names as BasicSR's options).

    kernel_range/kernel_range2: odd blur kernel sizes; kernels are zero-padded to `kernel_pad`.
    """

    kernel_range: tuple[int, ...]
    kernel_list: tuple[str, ...]
    kernel_prob: tuple[float, ...]
    sinc_prob: float
    blur_sigma: tuple[float, float]
    betag_range: tuple[float, float]
    betap_range: tuple[float, float]
    kernel_range2: tuple[int, ...]
    kernel_list2: tuple[str, ...]
    kernel_prob2: tuple[float, ...]
    sinc_prob2: float
    blur_sigma2: tuple[float, float]
    betag_range2: tuple[float, float]
    betap_range2: tuple[float, float]
    final_sinc_prob: float
    final_sinc_range: tuple[int, ...]
    kernel_pad: int
    resize_prob: tuple[float, float, float]  # up, down, keep
    resize_range: tuple[float, float]
    gaussian_noise_prob: float
    noise_range: tuple[float, float]
    poisson_scale_range: tuple[float, float]
    gray_noise_prob: float
    jpeg_range: tuple[float, float]
    second_blur_prob: float
    resize_prob2: tuple[float, float, float]
    resize_range2: tuple[float, float]
    gaussian_noise_prob2: float
    noise_range2: tuple[float, float]
    poisson_scale_range2: tuple[float, float]
    gray_noise_prob2: float
    jpeg_range2: tuple[float, float]
    queue_size: int = 180


_ALL_KERNELS = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")

# Real-ESRGAN x4plus (the paper / BasicSR's train_realesrgan_x4plus options).
REALESRGAN = RealESRGANParams(
    kernel_range=tuple(range(7, 22, 2)),
    kernel_list=_ALL_KERNELS,
    kernel_prob=(0.45, 0.25, 0.12, 0.03, 0.12, 0.03),
    sinc_prob=0.1,
    blur_sigma=(0.2, 3.0),
    betag_range=(0.5, 4.0),
    betap_range=(1.0, 2.0),
    kernel_range2=tuple(range(7, 22, 2)),
    kernel_list2=_ALL_KERNELS,
    kernel_prob2=(0.45, 0.25, 0.12, 0.03, 0.12, 0.03),
    sinc_prob2=0.1,
    blur_sigma2=(0.2, 1.5),
    betag_range2=(0.5, 4.0),
    betap_range2=(1.0, 2.0),
    final_sinc_prob=0.8,
    final_sinc_range=tuple(range(7, 22, 2)),
    kernel_pad=21,
    resize_prob=(0.2, 0.7, 0.1),
    resize_range=(0.15, 1.5),
    gaussian_noise_prob=0.5,
    noise_range=(1.0, 30.0),
    poisson_scale_range=(0.05, 3.0),
    gray_noise_prob=0.4,
    jpeg_range=(30.0, 95.0),
    second_blur_prob=0.8,
    resize_prob2=(0.3, 0.4, 0.3),
    resize_range2=(0.3, 1.2),
    gaussian_noise_prob2=0.5,
    noise_range2=(1.0, 25.0),
    poisson_scale_range2=(0.05, 2.5),
    gray_noise_prob2=0.4,
    jpeg_range2=(30.0, 95.0),
)

# The weaker setting the SSL paper trained Real-ESRGAN-SSL with (its train_RealESRGANSSL_x4
# options): kernel sizes 2v+1 for v in [1, 3] (first) and [1, 2] (second and final sinc), padded
# to 9; iso/aniso only.
REALESRGAN_SSL = dataclasses.replace(
    REALESRGAN,
    kernel_range=(3, 5, 7),
    kernel_list=("iso", "aniso"),
    kernel_prob=(0.7, 0.3),
    sinc_prob=0.01,
    blur_sigma=(0.1, 0.6),
    betag_range=(0.1, 2.0),
    betap_range=(0.1, 1.0),
    kernel_range2=(3, 5),
    kernel_list2=("iso", "aniso"),
    kernel_prob2=(0.7, 0.3),
    sinc_prob2=0.01,
    blur_sigma2=(0.1, 0.4),
    betag_range2=(0.1, 2.0),
    betap_range2=(0.1, 1.0),
    final_sinc_prob=0.1,
    final_sinc_range=(3, 5),
    kernel_pad=9,
    resize_prob=(0.1, 0.85, 0.05),
    resize_range=(0.9, 1.1),
    gaussian_noise_prob=0.5,
    noise_range=(1.0, 8.0),
    poisson_scale_range=(0.05, 0.5),
    gray_noise_prob=0.2,
    jpeg_range=(85.0, 95.0),
    second_blur_prob=0.8,
    resize_prob2=(0.1, 0.85, 0.05),
    resize_range2=(0.9, 1.1),
    gaussian_noise_prob2=0.5,
    noise_range2=(0.0, 4.0),
    poisson_scale_range2=(0.0, 0.3),
    gray_noise_prob2=0.2,
    jpeg_range2=(87.0, 95.0),
)

REALESRGAN_PRESETS = {"realesrgan": REALESRGAN, "realesrgan_ssl": REALESRGAN_SSL}

_MODES = ("area", "bilinear", "bicubic")


def _random_kernel(rng, sizes, kinds, probs, sinc_prob, sigma, betag, betap, pad) -> np.ndarray:
    size = int(rng.choice(sizes))
    if rng.random() < sinc_prob:
        # Smaller kernels get a higher minimum cutoff so the ringing stays inside the support.
        cutoff = rng.uniform(np.pi / 3, np.pi) if size < 13 else rng.uniform(np.pi / 5, np.pi)
        k = sinc_kernel(size, cutoff)
    else:
        k = random_mixed_kernel(rng, kinds, probs, size, sigma, betag, betap)
    return np.pad(k, (pad - size) // 2)


def realesrgan_kernels(rng: np.random.Generator, p: RealESRGANParams) -> dict[str, np.ndarray]:
    """The three kernels of one sample: 'kernel1', 'kernel2' and 'sinc' (a delta w.p.
    1 - final_sinc_prob), each (kernel_pad, kernel_pad) float64 summing to 1."""
    k1 = _random_kernel(rng, p.kernel_range, p.kernel_list, p.kernel_prob, p.sinc_prob, p.blur_sigma, p.betag_range, p.betap_range, p.kernel_pad)
    k2 = _random_kernel(rng, p.kernel_range2, p.kernel_list2, p.kernel_prob2, p.sinc_prob2, p.blur_sigma2, p.betag_range2, p.betap_range2, p.kernel_pad)
    if rng.random() < p.final_sinc_prob:
        size = int(rng.choice(p.final_sinc_range))
        sinc = sinc_kernel(size, rng.uniform(np.pi / 3, np.pi), pad_to=p.kernel_pad)
    else:
        sinc = np.zeros((p.kernel_pad, p.kernel_pad))
        sinc[p.kernel_pad // 2, p.kernel_pad // 2] = 1.0
    return {"kernel1": k1, "kernel2": k2, "sinc": sinc}


def _random_noise(img, rng, gauss_prob, sigma_range, poisson_range, gray_prob):
    if rng.random() < gauss_prob:
        return add_gaussian_noise(img, rng, sigma_range, gray_prob)
    return add_poisson_noise(img, rng, poisson_range, gray_prob)


def _random_scale(rng, probs, rng_range) -> float:
    kind = int(rng.choice(3, p=np.asarray(probs) / np.sum(probs)))
    if kind == 0:
        return float(rng.uniform(1.0, rng_range[1]))
    if kind == 1:
        return float(rng.uniform(rng_range[0], 1.0))
    return 1.0


def realesrgan_degrade(
    hr: np.ndarray, scale: int, rng: np.random.Generator, params: RealESRGANParams = REALESRGAN
) -> np.ndarray:
    """Real-ESRGAN's second-order degradation of one HR image.

    USM sharpening (sslsr.data.usm) -> blur(k1) -> random resize (up/down/keep,
    area/bilinear/bicubic) -> Gaussian or Poisson noise (colour or grey) -> JPEG; then blur(k2)
    w.p. second_blur_prob -> resize relative to the target -> noise; then, in random order,
    [resize to H/scale + sinc filter] and JPEG; finally rounded to 8 bits.

    Args:
      hr: uint8 (H, W, 3), H and W multiples of scale.
      scale: SR factor; rng: every random draw; params: REALESRGAN or REALESRGAN_SSL.
    Returns:
      uint8 (H/scale, W/scale, 3).
    """
    p = params
    h, w = hr.shape[:2]
    if h % scale or w % scale:
        raise ValueError(f"realesrgan_degrade: HR size {h}x{w} must be a multiple of scale {scale}")
    if min(h, w) <= 25:
        raise ValueError(f"realesrgan_degrade: HR size {h}x{w}; the USM sharpening that precedes the "
                         "degradation needs sides over 25 px")
    ks = realesrgan_kernels(rng, p)
    # Real-ESRGAN degrades the unsharp-masked GT, so LR inputs carry the sharpened edges.
    out = usm_sharpen(hr.astype(np.float32) / np.float32(255.0))
    # first order
    out = filter2d(out, ks["kernel1"])
    s = _random_scale(rng, p.resize_prob, p.resize_range)
    out = resize(out, (int(out.shape[0] * s), int(out.shape[1] * s)), _MODES[int(rng.integers(3))])
    out = _random_noise(out, rng, p.gaussian_noise_prob, p.noise_range, p.poisson_scale_range, p.gray_noise_prob)
    out = jpeg(out, rng.uniform(*p.jpeg_range))
    # second order
    if rng.random() < p.second_blur_prob:
        out = filter2d(out, ks["kernel2"])
    s = _random_scale(rng, p.resize_prob2, p.resize_range2)
    out = resize(out, (int(h / scale * s), int(w / scale * s)), _MODES[int(rng.integers(3))])
    out = _random_noise(out, rng, p.gaussian_noise_prob2, p.noise_range2, p.poisson_scale_range2, p.gray_noise_prob2)
    mode = _MODES[int(rng.integers(3))]
    quality = rng.uniform(*p.jpeg_range2)
    # Resize-then-JPEG or JPEG-then-resize: both orders occur in real images.
    if rng.random() < 0.5:
        out = filter2d(resize(out, (h // scale, w // scale), mode), ks["sinc"])
        out = jpeg(np.clip(out, 0, 1), quality)
    else:
        out = jpeg(np.clip(out, 0, 1), quality)
        out = filter2d(resize(out, (h // scale, w // scale), mode), ks["sinc"])
    return np.clip(np.round(out * 255.0), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- BSRGAN
# Zhang et al. 2021, "Designing a practical degradation model" (KAIR `degradation_bsrgan`):
# two blurs, two downsamplings and noise in shuffled order, JPEG (p=0.9) inside the shuffle and a
# final JPEG. The camera ISP step needs a trained model and is left out (as in BSRGAN's release).


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
    cov = sigma_matrix(math.sqrt(max(l1, 1e-2)), math.sqrt(max(l2, 1e-2)), theta)
    k = np.exp(-0.5 * _quad(size, cov))
    return k / k.sum()


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
            img = resize(img, (h // 2, w // 2), _MODES[int(rng.integers(3))])
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
                img = resize(img, (int(img.shape[0] / sf1), int(img.shape[1] / sf1)), _MODES[int(rng.integers(3))])
            else:  # blur then nearest downsampling, the kernel shifted to the top-left sample
                k = fspecial_gaussian(25, rng.uniform(0.1, 0.6 * sf))
                k = ndimage.shift(k, (-(sf - 1) * 0.5, -(sf - 1) * 0.5), order=1, mode="nearest")
                img = filter2d(img, k / k.sum())[0::sf, 0::sf]
            img = np.clip(img, 0.0, 1.0)
        elif op == 3:
            img = np.clip(resize(img, target, _MODES[int(rng.integers(3))]), 0.0, 1.0)
        elif op == 4:
            img = _bsrgan_noise(img, rng)
        elif op == 5:
            if rng.random() < 0.9:
                img = jpeg(img, int(rng.integers(30, 96)))
        # op 6: camera ISP model, not available
    img = jpeg(img, int(rng.integers(30, 96)))
    return np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- dispatch


def degrade(name: str, hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
    """LR (H/scale, W/scale, 3) uint8 from an HR patch uint8 (H, W, 3) (H, W multiples of scale).

    name: 'bicubic' (MATLAB imresize; rng unused), 'realesrgan', 'realesrgan_ssl' or 'bsrgan'.
    """
    if name == "bicubic":
        return imresize(hr, 1.0 / scale)
    if name in REALESRGAN_PRESETS:
        return realesrgan_degrade(hr, scale, rng, REALESRGAN_PRESETS[name])
    if name == "bsrgan":
        return bsrgan_degrade(hr, scale, rng)
    raise ValueError(f"unknown degradation {name!r}")
