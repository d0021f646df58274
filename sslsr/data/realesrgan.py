"""Real-ESRGAN's second-order degradation (Wang et al. 2021; BasicSR's `RealESRGANModel.feed_data`).

The same degradation stage (blur, random resize, noise, JPEG) runs twice, the second with milder
settings, then a resize to the LR size with a sinc filter and a final JPEG in random order. The
settings are one `DegradationStage` per order plus a few pipeline-level fields. All randomness
comes from an explicit `numpy.random.Generator`, so the same seed gives the same LR.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from sslsr.data.artifacts import add_gaussian_noise, add_poisson_noise, jpeg
from sslsr.data.kernels import filter2d, gaussian_kernel, generalized_gaussian_kernel, plateau_kernel, sinc_kernel
from sslsr.data.resample import MODES, resize
from sslsr.data.usm import usm_sharpen


@dataclasses.dataclass(frozen=True)
class DegradationStage:
    """One order of the degradation (names as BasicSR's options, without the `2` suffix).

    kernel_range: odd blur kernel sizes; kernel_list / kernel_prob: kernel types and their odds;
    sinc_prob: a sinc kernel instead; blur_sigma, betag_range, betap_range: kernel shape ranges.
    resize_prob: odds of (up, down, keep); resize_range: the scale range.
    gaussian_noise_prob: Gaussian (else Poisson) noise; noise_range: its sigma (8-bit units);
    poisson_scale_range: Poisson strength; gray_noise_prob: one noise map for all channels.
    jpeg_range: JPEG quality (the second stage's is the final JPEG's).
    """

    kernel_range: tuple[int, ...]
    kernel_list: tuple[str, ...]
    kernel_prob: tuple[float, ...]
    sinc_prob: float
    blur_sigma: tuple[float, float]
    betag_range: tuple[float, float]
    betap_range: tuple[float, float]
    resize_prob: tuple[float, float, float]  # up, down, keep
    resize_range: tuple[float, float]
    gaussian_noise_prob: float
    noise_range: tuple[float, float]
    poisson_scale_range: tuple[float, float]
    gray_noise_prob: float
    jpeg_range: tuple[float, float]


@dataclasses.dataclass(frozen=True)
class RealESRGANParams:
    """Both stages plus the pipeline-level settings.

    second_blur_prob: the second stage blurs only this often. final_sinc_prob / final_sinc_range:
    the sinc filter after the final resize (else a delta), its odd sizes. kernel_pad: every kernel
    is zero-padded to this size. queue_size: Real-ESRGAN's training pool (samples shuffled across
    batches), the loader's default pool size.
    """

    first: DegradationStage
    second: DegradationStage
    second_blur_prob: float
    final_sinc_prob: float
    final_sinc_range: tuple[int, ...]
    kernel_pad: int
    queue_size: int = 180


_ALL_KERNELS = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")

# Real-ESRGAN x4plus (the paper / BasicSR's train_realesrgan_x4plus options). The second stage is
# the first with milder blur, resize and noise.
_X4PLUS_FIRST = DegradationStage(
    kernel_range=tuple(range(7, 22, 2)),
    kernel_list=_ALL_KERNELS,
    kernel_prob=(0.45, 0.25, 0.12, 0.03, 0.12, 0.03),
    sinc_prob=0.1,
    blur_sigma=(0.2, 3.0),
    betag_range=(0.5, 4.0),
    betap_range=(1.0, 2.0),
    resize_prob=(0.2, 0.7, 0.1),
    resize_range=(0.15, 1.5),
    gaussian_noise_prob=0.5,
    noise_range=(1.0, 30.0),
    poisson_scale_range=(0.05, 3.0),
    gray_noise_prob=0.4,
    jpeg_range=(30.0, 95.0),
)
REALESRGAN = RealESRGANParams(
    first=_X4PLUS_FIRST,
    second=dataclasses.replace(
        _X4PLUS_FIRST,
        blur_sigma=(0.2, 1.5),
        resize_prob=(0.3, 0.4, 0.3),
        resize_range=(0.3, 1.2),
        noise_range=(1.0, 25.0),
        poisson_scale_range=(0.05, 2.5),
    ),
    second_blur_prob=0.8,
    final_sinc_prob=0.8,
    final_sinc_range=tuple(range(7, 22, 2)),
    kernel_pad=21,
)

# The weaker setting the SSL paper trained Real-ESRGAN-SSL with (its train_RealESRGANSSL_x4
# options): kernel sizes 2v+1 for v in [1, 3] (first) and [1, 2] (second and final sinc), padded
# to 9; iso/aniso only.
_SSL_FIRST = DegradationStage(
    kernel_range=(3, 5, 7),
    kernel_list=("iso", "aniso"),
    kernel_prob=(0.7, 0.3),
    sinc_prob=0.01,
    blur_sigma=(0.1, 0.6),
    betag_range=(0.1, 2.0),
    betap_range=(0.1, 1.0),
    resize_prob=(0.1, 0.85, 0.05),
    resize_range=(0.9, 1.1),
    gaussian_noise_prob=0.5,
    noise_range=(1.0, 8.0),
    poisson_scale_range=(0.05, 0.5),
    gray_noise_prob=0.2,
    jpeg_range=(85.0, 95.0),
)
REALESRGAN_SSL = RealESRGANParams(
    first=_SSL_FIRST,
    second=dataclasses.replace(
        _SSL_FIRST,
        kernel_range=(3, 5),
        blur_sigma=(0.1, 0.4),
        noise_range=(0.0, 4.0),
        poisson_scale_range=(0.0, 0.3),
        jpeg_range=(87.0, 95.0),
    ),
    second_blur_prob=0.8,
    final_sinc_prob=0.1,
    final_sinc_range=(3, 5),
    kernel_pad=9,
)

REALESRGAN_PRESETS = {"realesrgan": REALESRGAN, "realesrgan_ssl": REALESRGAN_SSL}


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


def _stage_kernel(rng: np.random.Generator, st: DegradationStage, pad: int) -> np.ndarray:
    size = int(rng.choice(st.kernel_range))
    if rng.random() < st.sinc_prob:
        # Smaller kernels get a higher minimum cutoff so the ringing stays inside the support.
        cutoff = rng.uniform(np.pi / 3, np.pi) if size < 13 else rng.uniform(np.pi / 5, np.pi)
        k = sinc_kernel(size, cutoff)
    else:
        k = random_mixed_kernel(rng, st.kernel_list, st.kernel_prob, size, st.blur_sigma, st.betag_range, st.betap_range)
    return np.pad(k, (pad - size) // 2)


def realesrgan_kernels(rng: np.random.Generator, p: RealESRGANParams) -> dict[str, np.ndarray]:
    """The three kernels of one sample: 'kernel1', 'kernel2' and 'sinc' (a delta w.p.
    1 - final_sinc_prob), each (kernel_pad, kernel_pad) float64 summing to 1."""
    k1 = _stage_kernel(rng, p.first, p.kernel_pad)
    k2 = _stage_kernel(rng, p.second, p.kernel_pad)
    if rng.random() < p.final_sinc_prob:
        size = int(rng.choice(p.final_sinc_range))
        sinc = sinc_kernel(size, rng.uniform(np.pi / 3, np.pi), pad_to=p.kernel_pad)
    else:
        sinc = np.zeros((p.kernel_pad, p.kernel_pad))
        sinc[p.kernel_pad // 2, p.kernel_pad // 2] = 1.0
    return {"kernel1": k1, "kernel2": k2, "sinc": sinc}


def _random_scale(rng: np.random.Generator, st: DegradationStage) -> float:
    kind = int(rng.choice(3, p=np.asarray(st.resize_prob) / np.sum(st.resize_prob)))
    if kind == 0:
        return float(rng.uniform(1.0, st.resize_range[1]))
    if kind == 1:
        return float(rng.uniform(st.resize_range[0], 1.0))
    return 1.0


def _resize_and_noise(img: np.ndarray, rng: np.random.Generator, st: DegradationStage, base_h: float, base_w: float) -> np.ndarray:
    """A stage after its blur: resize to (base size) x a random scale, then Gaussian or Poisson noise."""
    s = _random_scale(rng, st)
    img = resize(img, (int(base_h * s), int(base_w * s)), MODES[int(rng.integers(3))])
    if rng.random() < st.gaussian_noise_prob:
        return add_gaussian_noise(img, rng, st.noise_range, st.gray_noise_prob)
    return add_poisson_noise(img, rng, st.poisson_scale_range, st.gray_noise_prob)


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
    # first order: its resize is relative to the HR, the second's to the LR target
    out = filter2d(out, ks["kernel1"])
    out = _resize_and_noise(out, rng, p.first, out.shape[0], out.shape[1])
    out = jpeg(out, rng.uniform(*p.first.jpeg_range))
    # second order
    if rng.random() < p.second_blur_prob:
        out = filter2d(out, ks["kernel2"])
    out = _resize_and_noise(out, rng, p.second, h / scale, w / scale)
    mode = MODES[int(rng.integers(3))]
    quality = rng.uniform(*p.second.jpeg_range)
    # Resize-then-JPEG or JPEG-then-resize: both orders occur in real images.
    if rng.random() < 0.5:
        out = filter2d(resize(out, (h // scale, w // scale), mode), ks["sinc"])
        out = jpeg(np.clip(out, 0, 1), quality)
    else:
        out = jpeg(np.clip(out, 0, 1), quality)
        out = filter2d(resize(out, (h // scale, w // scale), mode), ks["sinc"])
    return np.clip(np.round(out * 255.0), 0, 255).astype(np.uint8)
