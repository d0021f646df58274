"""Small NHWC building blocks shared by the generators, matching PyTorch semantics exactly.

Channel orderings follow `torch.nn.PixelShuffle` / BasicSR's `pixel_unshuffle` so that converted
PyTorch weights see the same channels they were trained with.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx


def torch_uniform(fan_in: int):
    """PyTorch's default Conv/Linear init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), as an nnx initializer.

    (kaiming-uniform with a=sqrt(5) for weights and the bias rule reduce to this same bound.)
    """
    bound = 1.0 / math.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def torch_conv(
    in_ch: int,
    out_ch: int,
    kernel_size: int = 3,
    *,
    rngs: nnx.Rngs,
    init_scale: float | None = None,
    use_bias: bool = True,
) -> nnx.Conv:
    """Stride-1 'same' conv (PyTorch `Conv2d(in, out, k, 1, k // 2)`), HWIO kernel.

    `init_scale=None` reproduces PyTorch's default init (`torch_uniform`); a float reproduces
    BasicSR's `default_init_weights(..., scale)` (kaiming-normal times `scale`, zero bias), which
    keeps deep residual nets' activations small at init.
    """
    if init_scale is None:
        kernel_init = bias_init = torch_uniform(in_ch * kernel_size * kernel_size)
    else:
        kernel_init = nnx.initializers.variance_scaling(2.0 * init_scale**2, "fan_in", "normal")
        bias_init = nnx.initializers.zeros
    pad = kernel_size // 2
    return nnx.Conv(
        in_ch,
        out_ch,
        (kernel_size, kernel_size),
        padding=((pad, pad), (pad, pad)),
        use_bias=use_bias,
        kernel_init=kernel_init,
        bias_init=bias_init,
        rngs=rngs,
    )


def leaky_relu(x: jax.Array, slope: float) -> jax.Array:
    return jnp.where(x >= 0, x, x * slope)


def pixel_shuffle(x: jax.Array, scale: int) -> jax.Array:
    """(B, H, W, C*s*s) -> (B, H*s, W*s, C); input channel c*s*s + i*s + j goes to (i, j) of c."""
    b, h, w, c = x.shape
    oc = c // (scale * scale)
    x = x.reshape(b, h, w, oc, scale, scale)
    x = x.transpose(0, 1, 4, 2, 5, 3)
    return x.reshape(b, h * scale, w * scale, oc)


def pixel_unshuffle(x: jax.Array, scale: int) -> jax.Array:
    """(B, H*s, W*s, C) -> (B, H, W, C*s*s), the inverse of `pixel_shuffle` (BasicSR ordering)."""
    b, hh, ww, c = x.shape
    if hh % scale or ww % scale:
        raise ValueError(f"pixel_unshuffle: spatial size {(hh, ww)} is not divisible by scale {scale}")
    h, w = hh // scale, ww // scale
    x = x.reshape(b, h, scale, w, scale, c)
    x = x.transpose(0, 1, 3, 5, 2, 4)
    return x.reshape(b, h, w, c * scale * scale)


def upsample_nearest(x: jax.Array, scale: int = 2) -> jax.Array:
    """(B, H, W, C) -> (B, H*s, W*s, C), `F.interpolate(mode='nearest')` for integer scales."""
    return jnp.repeat(jnp.repeat(x, scale, axis=1), scale, axis=2)


def _bilinear_matrix(n_in: int, scale: int) -> np.ndarray:
    """(n_in*scale, n_in) interpolation weights of `F.interpolate(bilinear, align_corners=False)`."""
    dst = np.arange(n_in * scale, dtype=np.float64)
    # PyTorch clamps negative source coordinates to 0 (so the first rows copy pixel 0).
    src = np.maximum((dst + 0.5) / scale - 0.5, 0.0)
    i0 = np.floor(src).astype(np.int64)
    frac = src - i0
    i1 = np.minimum(i0 + 1, n_in - 1)
    m = np.zeros((n_in * scale, n_in), np.float64)
    rows = np.arange(n_in * scale)
    np.add.at(m, (rows, i0), 1.0 - frac)
    np.add.at(m, (rows, i1), frac)
    return m.astype(np.float32)


def upsample_bilinear(x: jax.Array, scale: int) -> jax.Array:
    """(B, H, W, C) -> (B, H*s, W*s, C), PyTorch bilinear with align_corners=False."""
    _, h, w, _ = x.shape
    mh = jnp.asarray(_bilinear_matrix(h, scale), x.dtype)
    mw = jnp.asarray(_bilinear_matrix(w, scale), x.dtype)
    x = jnp.einsum("oh,bhwc->bowc", mh, x, precision=jax.lax.Precision.HIGHEST)
    return jnp.einsum("pw,bowc->bopc", mw, x, precision=jax.lax.Precision.HIGHEST)
