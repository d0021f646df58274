"""Perceptual (VGG feature) loss as BasicSR's `PerceptualLoss` with `style_weight=0`."""

from collections.abc import Mapping

import jax
import jax.numpy as jnp


def perceptual_loss(
    sr_features: Mapping[str, jax.Array],
    hr_features: Mapping[str, jax.Array],
    layer_weights: Mapping[str, float],
    criterion: str = "l1",
) -> jax.Array:
    """Weighted sum over layers of the mean feature distance.

    sr_features, hr_features: layer name -> (B, H, W, C) features (e.g. `VGGFeatures` outputs);
    HR features are treated as constants (BasicSR computes them under `detach()`).
    layer_weights: layer name -> weight; every name must be present in both feature dicts.
    criterion: 'l1' (mean absolute error, BasicSR's default) or 'l2' (mean squared error).
    Returns a float32 scalar.
    """
    if criterion not in ("l1", "l2"):
        raise ValueError(f"perceptual criterion must be 'l1' or 'l2', got {criterion!r}")
    total = jnp.zeros((), jnp.float32)
    for name, weight in layer_weights.items():
        if weight == 0:
            continue
        diff = sr_features[name].astype(jnp.float32) - jax.lax.stop_gradient(hr_features[name]).astype(jnp.float32)
        dist = jnp.mean(jnp.abs(diff)) if criterion == "l1" else jnp.mean(diff * diff)
        total = total + weight * dist
    return total
