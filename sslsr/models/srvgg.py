"""SRVGGNetCompact (Real-ESRGAN's compact VGG-style generator) with the official parameter names.

`body.0` conv, `body.1` activation, then `num_conv` (conv, activation) pairs, then the last conv
to `num_out_ch * s * s` channels; a pixel shuffle by `s` plus the nearest upsampling of the input
gives the output. PyTorch keys: `body.N.weight` / `body.N.bias` for convs, `body.N.weight` for a
PReLU's per-channel slopes.

`net_scale` covers Real-ESRGAN's published `realesr-animevideov3-x2/x3`: they are the ×4 network
followed by a bicubic ×0.5 / ×0.75 resize (ncnn `Interp` type 3, identical to PyTorch's
`F.interpolate(mode='bicubic', align_corners=False)`), so `upscale=2, net_scale=4` is that model.
A PyTorch SRVGGNetCompact has no such resize: only `net_scale == upscale` exports to .pth.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sslsr.models.layers import leaky_relu, pixel_shuffle, torch_conv, upsample_nearest

ACTIVATIONS = ("prelu", "relu", "leakyrelu")
_CUBIC_A = -0.75  # PyTorch's and ncnn's bicubic coefficient (MATLAB's imresize uses -0.5)


class PReLU(nnx.Module):
    """Per-channel PReLU; the slope is `weight` like torch.nn.PReLU (init 0.25)."""

    def __init__(self, num_channels: int):
        self.weight = nnx.Param(jnp.full((num_channels,), 0.25, jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        return jnp.where(x >= 0, x, x * self.weight[...].astype(x.dtype))


class Activation(nnx.Module):
    """A parameter-free activation at a `body` index (keeps the PyTorch indices of the convs)."""

    def __init__(self, kind: str):
        self.kind = kind

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.kind == "relu":
            return jax.nn.relu(x)
        return leaky_relu(x, 0.1)  # Real-ESRGAN's 'leakyrelu' uses slope 0.1


@functools.lru_cache(maxsize=None)
def bicubic_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of PyTorch's bicubic resize (align_corners=False, A=-0.75, clamped
    border reads), which is also ncnn's `Interp` type 3."""
    ratio = n_in / n_out
    src = (np.arange(n_out, dtype=np.float64) + 0.5) * ratio - 0.5
    i0 = np.floor(src).astype(np.int64)
    t = src - i0
    a = _CUBIC_A

    def near(d):  # |d| <= 1
        return ((a + 2) * d - (a + 3)) * d * d + 1

    def far(d):  # 1 < |d| < 2
        return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a

    weights = (far(t + 1), near(t), near(1 - t), far(2 - t))
    m = np.zeros((n_out, n_in), np.float64)
    rows = np.arange(n_out)
    for k, w in enumerate(weights):
        np.add.at(m, (rows, np.clip(i0 - 1 + k, 0, n_in - 1)), w)
    return m.astype(np.float32)


def resize_bicubic(x: jax.Array, out_h: int, out_w: int) -> jax.Array:
    """(B, H, W, C) -> (B, out_h, out_w, C) with `bicubic_matrix` along each axis."""
    _, h, w, _ = x.shape
    mh = jnp.asarray(bicubic_matrix(h, out_h), x.dtype)
    mw = jnp.asarray(bicubic_matrix(w, out_w), x.dtype)
    x = jnp.einsum("oh,bhwc->bowc", mh, x, precision=jax.lax.Precision.HIGHEST)
    return jnp.einsum("pw,bowc->bopc", mw, x, precision=jax.lax.Precision.HIGHEST)


class SRVGGNetCompact(nnx.Module):
    """(B, H, W, num_in_ch) in [0, 1] -> (B, H*upscale, W*upscale, num_out_ch).

    Args:
      num_feat, num_conv: width and number of hidden conv layers (Real-ESRGAN: 64, 16 for
        realesr-animevideov3, 64, 32 for realesr-general-x4v3).
      upscale: the output factor.
      act_type: 'prelu' | 'relu' | 'leakyrelu' (slope 0.1).
      net_scale: the pixel-shuffle factor when it differs from `upscale` (the output is then
        bicubic-resized to `upscale`, see the module docstring); None: equal to `upscale`.
    """

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        num_feat: int = 64,
        num_conv: int = 16,
        upscale: int = 4,
        act_type: str = "prelu",
        net_scale: int | None = None,
        *,
        rngs: nnx.Rngs,
    ):
        if act_type not in ACTIVATIONS:
            raise ValueError(f"SRVGGNetCompact: act_type must be one of {ACTIVATIONS}, got {act_type!r}")
        net_scale = upscale if net_scale is None else net_scale
        if not 1 <= upscale <= net_scale:
            raise ValueError(f"SRVGGNetCompact: need 1 <= upscale <= net_scale, got {upscale}, {net_scale}")
        self.upscale, self.net_scale = upscale, net_scale

        def act():
            return PReLU(num_feat) if act_type == "prelu" else Activation(act_type)

        layers = [torch_conv(num_in_ch, num_feat, 3, rngs=rngs), act()]
        for _ in range(num_conv):
            layers += [torch_conv(num_feat, num_feat, 3, rngs=rngs), act()]
        layers.append(torch_conv(num_feat, num_out_ch * net_scale * net_scale, 3, rngs=rngs))
        self.body = nnx.List(layers)

    def __call__(self, x: jax.Array) -> jax.Array:
        out = x
        for layer in self.body:
            out = layer(out)
        out = pixel_shuffle(out, self.net_scale) + upsample_nearest(x, self.net_scale).astype(out.dtype)
        if self.net_scale != self.upscale:
            out = resize_bicubic(out, x.shape[1] * self.upscale, x.shape[2] * self.upscale)
        return out
