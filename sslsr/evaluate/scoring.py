"""The metrics of the protocol, as functions scoring uint8 candidates against one HR image.

PSNR/SSIM: Y channel, BasicSR protocol. LPIPS: AlexNet v0.1 (the paper's protocol), images mapped
to [-1, 1]. DISTS: VGG16 with L2 pooling, images in [0, 1], full resolution (no resize to 256 as
DISTS_pytorch's demo script does). The networks run jitted in float32.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import numpy as np
from flax import nnx

from sslsr.errors import InputError

METRICS = ("psnr", "ssim", "lpips", "dists")
LOWER_IS_BETTER = {"psnr": False, "ssim": False, "lpips": True, "dists": True}

# fn(hr, [candidate, ...]) -> [score of each candidate against hr]; all uint8 (H, W, 3).
MetricFn = Callable[[np.ndarray, Sequence[np.ndarray]], list[float]]


def _pairwise_metric(fn: Callable[[np.ndarray, np.ndarray], float]) -> MetricFn:
    return lambda hr, images: [fn(img, hr) for img in images]


def _network_metric(module: nnx.Module, crop_border: int) -> MetricFn:
    """A jitted metric network (`features` + `distance`, NHWC [0, 1]) as a MetricFn.

    The reference's features are computed once for all candidates (SR and bicubic).
    """
    graphdef, state = nnx.split(module)

    @jax.jit
    def dist(state, ref, images):
        m = nnx.merge(graphdef, state)
        return m.distance(m.features(images), m.features(ref))

    def fn(hr, images):
        c = crop_border
        crop = (lambda a: a[c:-c, c:-c]) if c else (lambda a: a)
        ref = crop(hr)[None].astype(np.float32) / 255.0
        batch = np.stack([crop(img) for img in images]).astype(np.float32) / 255.0
        return [float(v) for v in np.asarray(dist(state, ref, batch))]

    return fn


def build_metrics(names: Sequence[str], *, crop_border: int, log: Callable[[str], None] = print):
    """Metric functions on uint8 RGB (sr, hr) pairs, and the reasons for those that cannot run.

    All with `crop_border` pixels removed from every side.
    Returns:
      ({name: fn(hr, [image, ...]) -> [float, ...]}, {name: one-line reason it was skipped}).
    """
    from sslsr import metrics

    fns: dict[str, MetricFn] = {}
    skipped: dict[str, str] = {}
    for name in names:
        if name == "psnr":
            fns[name] = _pairwise_metric(lambda sr, hr: metrics.psnr(sr, hr, crop_border=crop_border))
        elif name == "ssim":
            fns[name] = _pairwise_metric(lambda sr, hr: metrics.ssim(sr, hr, crop_border=crop_border))
        elif name == "lpips":
            try:
                fns[name] = _network_metric(metrics.load_lpips("alex", input_range="[0,1]"), crop_border)
            except (OSError, ImportError, ValueError) as e:
                skipped[name] = f"LPIPS skipped: {e}"
        elif name == "dists":
            try:
                fns[name] = _network_metric(metrics.load_dists(), crop_border)
            except metrics.MetricUnavailable as e:
                skipped[name] = f"DISTS skipped: {e}"
        else:
            raise InputError(f"metrics: unknown metric {name!r}; choose from {', '.join(METRICS)}")
    for line in skipped.values():
        log(line)
    return fns, skipped
