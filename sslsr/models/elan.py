"""ELAN (Zhang et al., "Efficient Long-Range Attention Network for Image Super-resolution",
ECCV 2022) in Flax NNX, NHWC, with the parameter names of the BasicSR port in the SSL paper's code
(`basicsr/archs/elan_arch.py`), whose checkpoints are the published ones (the SSL paper's
pretrained ELAN and its ELAN-GAN models; the official ELAN repository released no weights).

Layout (keys as in PyTorch):
- `(x - rgb_mean) * img_range` on the [0, 1] input (the port's mean shift; the official code's
  `MeanShift` 1x1 convs on [0, 255] input compute the same), reflect padding of the bottom/right
  to a multiple of lcm(window_sizes), `head.0` 3x3 conv;
- `body.<i>`: `m_elan // (1 + n_share)` ELAB blocks, odd-numbered ones (i = 1, 3, ...) with
  shifted windows; each ELAB runs, for j = 0..n_share, `x += modules_lfe.lfe_<j>(x)` then
  `x += modules_gmsa.gmsa_<j>(x)`, gmsa_0 computing the attention maps the others reuse;
- LFE: ShiftConv(C -> r_expand C), ReLU, ShiftConv(r_expand C -> C). A ShiftConv
  (`conv<k>.shift_conv`) is a fixed depthwise 3x3 shift (`weight`, in the checkpoints but never
  trained: the five channel groups of C // 5 move left, right, up, down, the rest stay) and a
  1x1 conv (`conv1x1`). The shift is done by slicing here; its weight is a PyTorch-only buffer
  recomputed by `torch_buffers` (checked on import, written on export), not NNX state;
- GMSA: `project_inp` (1x1 conv C -> 2C, `.0`, then a LayerNorm over channels, `.1.norm`), three
  channel groups of 2C/3 attending within windows of window_sizes[0..2] (queries are also the
  keys, no scaling, no position bias; windows shifted by -ws//2 in shifted blocks, without a
  mask), `project_out` 1x1 conv. The attention-sharing GMSAs (n_share > 0) project C -> C and
  apply gmsa_0's maps to groups of C/3;
- `res = body(x) + x`, `tail.0` 3x3 conv to colors * scale^2, pixel shuffle, `/ img_range + mean`,
  crop to (H * scale, W * scale).
Defaults: the ELAN x4 of the SSL paper's ELAN-GAN (36 blocks, 180 channels, windows 4/8/16).
ELAN-light's layout is `m_elan=24, c_elan=60, n_share=1` (the official repository's version of
the network normalises with BatchNorm and has MeanShift convs: different keys, not supported).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sslsr.models.layers import pixel_shuffle, torch_conv
from sslsr.models.swinir import window_partition, window_reverse

_RGB_MEAN = (0.4488, 0.4371, 0.4040)


def shift_weight(channels: int) -> np.ndarray:
    """(channels, 1, 3, 3) float32: the official depthwise shift kernel of a ShiftConv."""
    g = channels // 5
    w = np.zeros((channels, 1, 3, 3), np.float32)
    w[0 * g : 1 * g, 0, 1, 2] = 1.0
    w[1 * g : 2 * g, 0, 1, 0] = 1.0
    w[2 * g : 3 * g, 0, 2, 1] = 1.0
    w[3 * g : 4 * g, 0, 0, 1] = 1.0
    w[4 * g :, 0, 1, 1] = 1.0
    return w


def shift_channels(x: jax.Array) -> jax.Array:
    """(B, H, W, C) -> same: `shift_weight(C)` as a zero-padded depthwise conv, by slicing.

    Group k of C // 5 channels reads x[i, j+1], x[i, j-1], x[i+1, j], x[i-1, j]; the rest x[i, j].
    """
    g = x.shape[-1] // 5
    p = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    return jnp.concatenate(
        [
            p[:, 1:-1, 2:, 0 * g : 1 * g],
            p[:, 1:-1, :-2, 1 * g : 2 * g],
            p[:, 2:, 1:-1, 2 * g : 3 * g],
            p[:, :-2, 1:-1, 3 * g : 4 * g],
            x[..., 4 * g :],
        ],
        axis=-1,
    )


class ShiftConv(nnx.Module):
    """The official `ShiftConv2d1`: fixed channel shift, then `conv1x1`. (B, H, W, I) -> (B, H, W, O)."""

    def __init__(self, in_ch: int, out_ch: int, *, rngs: nnx.Rngs):
        self.in_ch = in_ch
        self.conv1x1 = torch_conv(in_ch, out_ch, 1, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.conv1x1(shift_channels(x))


class ShiftConv2d(nnx.Module):
    """The official wrapper (key level `shift_conv`) around the 'fast-training-speed' ShiftConv."""

    def __init__(self, in_ch: int, out_ch: int, *, rngs: nnx.Rngs):
        self.shift_conv = ShiftConv(in_ch, out_ch, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.shift_conv(x)


class LFE(nnx.Module):
    """Local feature extraction: ShiftConv -> ReLU -> ShiftConv. (B, H, W, C) -> same."""

    def __init__(self, channels: int, exp_ratio: int, *, rngs: nnx.Rngs):
        self.conv0 = ShiftConv2d(channels, channels * exp_ratio, rngs=rngs)
        self.conv1 = ShiftConv2d(channels * exp_ratio, channels, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.conv1(jax.nn.relu(self.conv0(x)))


class GMSA(nnx.Module):
    """Group-wise multi-scale self-attention. (B, H, W, C), H and W multiples of every window.

    `calc_attn=True`: returns (y, the three (B*nW, N, N) attention maps); otherwise the maps
    of the first GMSA of the block are applied to this one's values.
    """

    def __init__(self, channels: int, window_sizes, shifted: bool, calc_attn: bool, *, rngs: nnx.Rngs):
        self.window_sizes = tuple(int(w) for w in window_sizes)
        self.shifted, self.calc_attn = shifted, calc_attn
        width = 2 * channels if calc_attn else channels
        self.split = width // 3
        norm = nnx.LayerNorm(width, epsilon=1e-5, use_fast_variance=False, rngs=rngs)
        self.project_inp = nnx.List([torch_conv(channels, width, 1, rngs=rngs), nnx.Dict(norm=norm)])
        self.project_out = torch_conv(channels, channels, 1, rngs=rngs)

    def __call__(self, x: jax.Array, prev_atns=None):
        _, h, w, _ = x.shape
        x = self.project_inp[1]["norm"](self.project_inp[0](x))
        ys, atns = [], []
        for k, ws in enumerate(self.window_sizes):
            part = x[..., k * self.split : (k + 1) * self.split]
            if self.shifted:
                part = jnp.roll(part, (-ws // 2, -ws // 2), axis=(1, 2))
            tokens = window_partition(part, ws).reshape(-1, ws * ws, part.shape[-1])
            if prev_atns is None:
                half = part.shape[-1] // 2
                q, v = tokens[..., :half], tokens[..., half:]
                # f32 logits and softmax under bf16/f16: q.q grows with the features (no 1/sqrt(d)).
                logits = jnp.matmul(q, q.swapaxes(-1, -2), preferred_element_type=jnp.float32)
                atn = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
            else:
                v, atn = tokens, prev_atns[k]
            y = window_reverse((atn @ v).reshape(-1, ws, ws, v.shape[-1]), ws, h, w)
            if self.shifted:
                y = jnp.roll(y, (ws // 2, ws // 2), axis=(1, 2))
            ys.append(y)
            atns.append(atn)
        return self.project_out(jnp.concatenate(ys, axis=-1)), atns


class ELAB(nnx.Module):
    """Efficient long-range attention block: 1 + shared_depth (LFE, GMSA) pairs sharing attention."""

    def __init__(self, channels: int, exp_ratio: int, shifted: bool, window_sizes, shared_depth: int,
                 *, rngs: nnx.Rngs):
        self.modules_lfe = nnx.Dict(
            {f"lfe_{j}": LFE(channels, exp_ratio, rngs=rngs) for j in range(1 + shared_depth)}
        )
        self.modules_gmsa = nnx.Dict(
            {f"gmsa_{j}": GMSA(channels, window_sizes, shifted, j == 0, rngs=rngs) for j in range(1 + shared_depth)}
        )
        self.depth = 1 + shared_depth

    def __call__(self, x: jax.Array) -> jax.Array:
        atns = None
        for j in range(self.depth):
            x = self.modules_lfe[f"lfe_{j}"](x) + x
            y, atns = self.modules_gmsa[f"gmsa_{j}"](x, atns)
            x = y + x
        return x


class ELAN(nnx.Module):
    """(B, H, W, colors) in [0, 1], any H and W -> (B, H*scale, W*scale, colors)."""

    def __init__(
        self,
        scale: int = 4,
        img_range: float = 255.0,
        colors: int = 3,
        window_sizes=(4, 8, 16),
        m_elan: int = 36,
        c_elan: int = 180,
        n_share: int = 0,
        r_expand: int = 2,
        rgb_mean=_RGB_MEAN,
        *,
        rngs: nnx.Rngs,
    ):
        if len(window_sizes) != 3:
            raise ValueError(f"ELAN: window_sizes must hold 3 sizes (one per channel group), got {window_sizes}")
        if c_elan % 3:
            raise ValueError(f"ELAN: c_elan must be a multiple of 3 (three attention groups), got {c_elan}")
        if len(rgb_mean) != colors:
            raise ValueError(f"ELAN: rgb_mean has {len(rgb_mean)} values for {colors} colors")
        self.scale, self.img_range, self.colors = int(scale), float(img_range), int(colors)
        self.window_sizes = tuple(int(w) for w in window_sizes)
        self.c_elan, self.r_expand, self.n_share = int(c_elan), int(r_expand), int(n_share)
        self.rgb_mean = tuple(float(m) for m in rgb_mean)
        self.head = nnx.List([torch_conv(colors, c_elan, 3, rngs=rngs)])
        self.body = nnx.List(
            [
                ELAB(c_elan, r_expand, i % 2 == 1, self.window_sizes, n_share, rngs=rngs)
                for i in range(m_elan // (1 + n_share))
            ]
        )
        self.tail = nnx.List([torch_conv(c_elan, colors * scale * scale, 3, rngs=rngs)])

    def __call__(self, x: jax.Array) -> jax.Array:
        _, h, w, _ = x.shape
        multiple = math.lcm(*self.window_sizes)
        x = jnp.pad(x, ((0, 0), (0, -h % multiple), (0, -w % multiple), (0, 0)), mode="reflect")
        mean = jnp.asarray(self.rgb_mean, x.dtype)
        x = (x - mean) * self.img_range
        x = self.head[0](x)
        res = x
        for block in self.body:
            res = block(res)
        x = pixel_shuffle(self.tail[0](res + x), self.scale)
        x = x / self.img_range + mean
        return x[:, : h * self.scale, : w * self.scale]


def torch_buffers(model: ELAN) -> dict[str, np.ndarray]:
    """The fixed shift kernels (`...shift_conv.weight`) that PyTorch stores as frozen parameters."""
    out = {}
    for i, block in enumerate(model.body):
        for name, lfe in block.modules_lfe.items():
            for conv in ("conv0", "conv1"):
                shift = getattr(lfe, conv).shift_conv
                out[f"body.{i}.modules_lfe.{name}.{conv}.shift_conv.weight"] = shift_weight(shift.in_ch)
    return out
