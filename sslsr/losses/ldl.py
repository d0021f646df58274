"""LDL's artifact map and artifact loss (Liang et al., "Details or Artifacts", CVPR 2022).

Semantics of LDL's `get_refined_artifact_map(gt, output, ema, 7)` and its use in training:
- residuals r = sum over channels |hr - sr| (current generator) and r_ema = sum |hr - sr_ema|
  (the EMA generator on the same LR batch);
- map = var(r over the whole image, unbiased)^(1/5) * (unbiased variance of r over the 7x7
  window around the pixel, reflect padding);
- the map is 0 where r < r_ema (strictly): pixels the current model already reproduces better
  than its EMA are not penalised;
- loss = L1(map * sr, map * hr), mean over all B*H*W*3 elements, weight 1 in LDL's configs.
The map is NOT detached in LDL's code (nor in the SSL paper's `ldlssl_model`): its gradient
flows into the generator through r; only the EMA output is a constant. This module does the same.
"""

import jax
import jax.numpy as jnp

from sslsr.losses.window_stats import local_variance


def artifact_map(sr: jax.Array, sr_ema: jax.Array, hr: jax.Array, *, window: int = 7) -> jax.Array:
    """LDL's refined artifact map.

    sr, sr_ema, hr: (B, H, W, 3) float in [0, 1] (current generator output, EMA generator output,
    ground truth). Returns (B, H, W, 1) float32, >= 0; differentiable in `sr`, constant in
    `sr_ema` and `hr`.
    """
    sr = sr.astype(jnp.float32)
    hr = jax.lax.stop_gradient(hr).astype(jnp.float32)
    r = jnp.sum(jnp.abs(hr - sr), axis=-1)  # (B, H, W)
    r_ema = jnp.sum(jnp.abs(hr - jax.lax.stop_gradient(sr_ema).astype(jnp.float32)), axis=-1)
    patch_weight = jnp.var(r, axis=(1, 2), ddof=1, keepdims=True) ** 0.2
    weight = patch_weight * local_variance(r, window)
    return jnp.where(r < r_ema, 0.0, weight)[..., None]


def artifact_loss(sr: jax.Array, sr_ema: jax.Array, hr: jax.Array, *, window: int = 7) -> jax.Array:
    """L1(w * sr, w * hr) with w = `artifact_map(sr, sr_ema, hr)`; a float32 scalar.

    Shapes and ranges as `artifact_map`. Gradient flows through both factors of w * sr (LDL).
    """
    w = artifact_map(sr, sr_ema, hr, window=window)
    return jnp.mean(jnp.abs(w * sr.astype(jnp.float32) - w * jax.lax.stop_gradient(hr).astype(jnp.float32)))
