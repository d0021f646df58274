"""BebyGAN's region mask (Li et al., "Best-Buddy GANs", 2022): the adversarial terms only see
textured regions.

BebyGAN's `get_flat_mask(gt)`: luminance Y = 0.2989 R + 0.587 G + 0.114 B, reflect-padded by
window // 2, unbiased standard deviation over the 11 x 11 window around each pixel; a pixel is
flat where std < 0.025 (strict). D and G then see `hr * (1 - flat)` and `sr * (1 - flat)`.
"""

import jax
import jax.numpy as jnp

from sslsr.losses.window_stats import local_variance

_LUMA = (0.2989, 0.587, 0.114)


def region_mask(hr: jax.Array, *, window: int = 11, threshold: float = 0.025) -> jax.Array:
    """1 - BebyGAN's flat mask: 1.0 where the local luminance std is >= `threshold`, else 0.0.

    hr: (B, H, W, 3) float in [0, 1] (the ground truth; the mask is a constant, no gradient).
    Returns (B, H, W, 1) float32, the multiplier applied to both SR and HR before D.
    """
    hr = jax.lax.stop_gradient(hr).astype(jnp.float32)
    luma = hr[..., 0] * _LUMA[0] + hr[..., 1] * _LUMA[1] + hr[..., 2] * _LUMA[2]
    std = jnp.sqrt(local_variance(luma, window))
    return (std >= threshold).astype(jnp.float32)[..., None]
