"""SPSR's gradient map (Ma et al., CVPR 2020, `Get_gradient_nopadding`).

Per channel: dv[i, j] = x[i+1, j] - x[i-1, j], dh[i, j] = x[i, j+1] - x[i, j-1] (3x3 central
difference kernels applied by `conv2d(padding=1)`, i.e. zero outside the image), then
sqrt(dv^2 + dh^2 + 1e-6). The 1e-6 keeps the square root differentiable on flat regions.
"""

import jax
import jax.numpy as jnp


def gradient_map(x: jax.Array) -> jax.Array:
    """x: (B, H, W, C) float. Returns (B, H, W, C) float32 gradient magnitudes (>= 1e-3)."""
    x = x.astype(jnp.float32)
    p = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    dv = p[:, 2:, 1:-1] - p[:, :-2, 1:-1]
    dh = p[:, 1:-1, 2:] - p[:, 1:-1, :-2]
    return jnp.sqrt(dv * dv + dh * dh + 1e-6)
