"""GPEN's face restorer (`FullGenerator`, Yang et al., CVPR 2021), weight-compatible with the
published GPEN-BFR-512 / GPEN-BFR-256 `.pth` files.

A StyleGAN2 generator whose noise inputs are replaced by the features of a downsampling encoder:
the encoder maps the degraded face (size S, in [-1, 1]) to one style vector (its last 4x4 map
through `final_linear`, then the mapping MLP `generator.style`), and its feature map at each
resolution is concatenated to the generator's activations at the same resolution
(GPEN's `isconcat=True`, the only variant published for face restoration).

Layout. Every leaf keeps GPEN's name and PyTorch layout (`weight` (O, I, k, k) of the equalized
convs, (out, in) of the equalized linears, (1, O, I, k, k) of the modulated convs, `input`
(1, C, 4, 4), ToRGB `bias` (1, 3, 1, 1)), so `sslsr.weights.pytorch` converts them without
renaming; activations are NHWC. The equalized-learning-rate scale (1/sqrt(fan_in), times `lr_mul`)
is applied at run time as in GPEN, because the files store the unscaled weights. The blur kernels
that GPEN stores as buffers (`*.blur.kernel`, `*.upsample.kernel`, `ecdN.0.0.kernel`) are
recomputed here and checked/emitted by `torch_buffers` (the registry row's field). GPEN's
generator registers no noise buffers (rosinality's StyleGAN2 does): its noise is the encoder's.

The published configurations are `BFR` (GPEN's demo.py: 512 -> channel_multiplier 2, narrow 1;
256 -> channel_multiplier 1, narrow 0.5; both style_dim 512, n_mlp 8).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sslsr.models.layers import leaky_relu

BLUR_TAPS = (1, 3, 3, 1)
SLOPE = 0.2
GAIN = math.sqrt(2.0)  # FusedLeakyReLU's output scale: keeps the activations' variance
BFR = {
    512: dict(size=512, style_dim=512, n_mlp=8, channel_multiplier=2, narrow=1.0),
    256: dict(size=256, style_dim=512, n_mlp=8, channel_multiplier=1, narrow=0.5),
}

_NHWC = ("NHWC", "HWIO", "NHWC")


def channels(size: int, channel_multiplier: int, narrow: float) -> int:
    """GPEN's channel count at a resolution (its `channels` table)."""
    if size <= 32:
        return int(512 * narrow)
    return int(2 ** 14 / size * channel_multiplier * narrow)  # 64 -> 256*cm, 128 -> 128*cm, ...


def blur_kernel(gain: float = 1.0) -> np.ndarray:
    """The normalised 2-D [1, 3, 3, 1] x [1, 3, 3, 1] kernel times `gain` (GPEN's buffer value)."""
    k = np.asarray(BLUR_TAPS, np.float32)
    k = np.outer(k, k)
    return (k / k.sum() * gain).astype(np.float32)


def _normal(key, shape, dtype=jnp.float32):
    return jax.random.normal(key, shape, dtype)


class UpFirDn(nnx.Module):
    """upfirdn2d: zero-insert by `up`, pad (pad0, pad1) on both axes, FIR-filter with the blur
    kernel (times `gain`, 4 after a 2x upsampling to keep the mean), keep every `down`-th sample.

    GPEN's `Blur`, `Upsample` and `Downsample` (stateless: the kernel is a constant).
    """

    def __init__(self, pad: tuple[int, int], up: int = 1, down: int = 1, gain: float = 1.0):
        self.pad = tuple(pad)
        self.up, self.down, self.gain = up, down, gain

    def torch_kernel(self) -> np.ndarray:
        return blur_kernel(self.gain)

    def __call__(self, x: jax.Array) -> jax.Array:
        c = x.shape[-1]
        k = np.flip(self.torch_kernel(), (0, 1))  # upfirdn convolves; lax correlates
        w = jnp.asarray(np.broadcast_to(k[:, :, None, None], (*k.shape, 1, c)), x.dtype)
        p0, p1 = self.pad
        # lhs_dilation leaves no zeros after the last sample; upfirdn's zero insertion does.
        pad = [(p0, p1 + self.up - 1)] * 2
        return jax.lax.conv_general_dilated(
            x, w, (self.down, self.down), pad, lhs_dilation=(self.up, self.up),
            dimension_numbers=_NHWC, feature_group_count=c)


class FusedLeakyReLU(nnx.Module):
    """sqrt(2) * leaky_relu(x + bias, 0.2) over the last (channel) axis."""

    def __init__(self, channels: int):
        self.bias = nnx.Param(jnp.zeros((channels,)))

    def __call__(self, x: jax.Array) -> jax.Array:
        return GAIN * leaky_relu(x + self.bias[...], SLOPE)


class EqualLinear(nnx.Module):
    """Linear with a run-time 1/sqrt(in) * lr_mul weight scale (the bias is scaled by lr_mul);
    `activate` appends GPEN's fused leaky ReLU, which adds that bias before the ReLU."""

    def __init__(self, in_dim: int, out_dim: int, *, rngs: nnx.Rngs, bias_init: float = 0.0,
                 lr_mul: float = 1.0, activate: bool = False):
        self.weight = nnx.Param(_normal(rngs.params(), (out_dim, in_dim)) / lr_mul)
        self.bias = nnx.Param(jnp.full((out_dim,), bias_init, jnp.float32))
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul, self.activate = lr_mul, activate

    def __call__(self, x: jax.Array) -> jax.Array:
        y = x @ (self.weight[...] * self.scale).T
        b = self.bias[...] * self.lr_mul
        return GAIN * leaky_relu(y + b, SLOPE) if self.activate else y + b


class EqualConv2d(nnx.Module):
    """Bias-free conv (GPEN's encoder convs feed a FusedLeakyReLU) with a run-time weight scale."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, *, rngs: nnx.Rngs,
                 stride: int = 1, padding: int = 0):
        self.weight = nnx.Param(_normal(rngs.params(), (out_ch, in_ch, kernel_size, kernel_size)))
        self.scale = 1.0 / math.sqrt(in_ch * kernel_size**2)
        self.stride, self.padding = stride, padding

    def __call__(self, x: jax.Array) -> jax.Array:
        w = (self.weight[...] * self.scale).transpose(2, 3, 1, 0)
        p = self.padding
        return jax.lax.conv_general_dilated(x, w, (self.stride, self.stride), [(p, p)] * 2,
                                            dimension_numbers=_NHWC)


def conv_layer(in_ch: int, out_ch: int, kernel_size: int, *, rngs: nnx.Rngs,
               downsample: bool = False) -> nnx.List:
    """GPEN's `ConvLayer` (an nn.Sequential, hence the indices): [blur,] conv, FusedLeakyReLU."""
    if not downsample:
        return nnx.List([EqualConv2d(in_ch, out_ch, kernel_size, rngs=rngs, padding=kernel_size // 2),
                         FusedLeakyReLU(out_ch)])
    p = len(BLUR_TAPS) - 2 + kernel_size - 1
    return nnx.List([UpFirDn(((p + 1) // 2, p // 2)),
                     EqualConv2d(in_ch, out_ch, kernel_size, rngs=rngs, stride=2),
                     FusedLeakyReLU(out_ch)])


def sequential(layers: nnx.List, x: jax.Array) -> jax.Array:
    for layer in layers:
        x = layer(x)
    return x


class ModulatedConv2d(nnx.Module):
    """StyleGAN2's modulated conv, optionally upsampling 2x (transposed conv, then blur).

    Computed as (x * style) -> shared conv -> * demod, which equals GPEN's per-sample modulated
    weights with grouped convs (the conv is linear per input channel) without building B kernels.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, style_dim: int, *, rngs: nnx.Rngs,
                 demodulate: bool = True, upsample: bool = False):
        self.weight = nnx.Param(_normal(rngs.params(), (1, out_ch, in_ch, kernel_size, kernel_size)))
        self.modulation = EqualLinear(style_dim, in_ch, bias_init=1.0, rngs=rngs)
        self.scale = 1.0 / math.sqrt(in_ch * kernel_size**2)
        self.demodulate, self.upsample = demodulate, upsample
        if upsample:
            p = len(BLUR_TAPS) - 2 - (kernel_size - 1)
            self.blur = UpFirDn(((p + 1) // 2 + 1, p // 2 + 1), gain=4.0)

    def __call__(self, x: jax.Array, style: jax.Array) -> jax.Array:
        s = self.modulation(style)  # (B, in)
        w = self.weight[0] * self.scale  # (out, in, k, k)
        k = w.shape[-1]
        x = x * s[:, None, None, :].astype(x.dtype)
        if self.upsample:
            # conv_transpose2d(stride 2, padding 0) = dilated input, full padding, flipped kernel.
            hwio = jnp.flip(w, (2, 3)).transpose(2, 3, 1, 0)
            y = jax.lax.conv_general_dilated(x, hwio, (1, 1), [(k - 1, k - 1)] * 2, lhs_dilation=(2, 2),
                                             dimension_numbers=_NHWC)
        else:
            y = jax.lax.conv_general_dilated(x, w.transpose(2, 3, 1, 0), (1, 1), [(k // 2, k // 2)] * 2,
                                             dimension_numbers=_NHWC)
        if self.demodulate:
            # 1 / |w * s| per (sample, output channel), the norm of the per-sample weights.
            demod = jax.lax.rsqrt((s * s) @ jnp.sum(w * w, (2, 3)).T + 1e-8)  # (B, out)
            y = y * demod[:, None, None, :].astype(y.dtype)
        return self.blur(y) if self.upsample else y


class NoiseInjection(nnx.Module):
    """GPEN's noise input with isconcat: [image, weight * encoder feature] on the channel axis."""

    def __init__(self):
        self.weight = nnx.Param(jnp.zeros((1,)))

    def __call__(self, x: jax.Array, feature: jax.Array) -> jax.Array:
        return jnp.concatenate([x, feature * self.weight[...]], axis=-1)


class StyledConv(nnx.Module):
    def __init__(self, in_ch: int, out_ch: int, style_dim: int, *, rngs: nnx.Rngs, upsample: bool = False):
        self.conv = ModulatedConv2d(in_ch, out_ch, 3, style_dim, upsample=upsample, rngs=rngs)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(2 * out_ch)  # after the concatenation: twice the channels

    def __call__(self, x: jax.Array, style: jax.Array, feature: jax.Array) -> jax.Array:
        return self.activate(self.noise(self.conv(x, style), feature))


class ToRGB(nnx.Module):
    """1x1 modulated conv (no demodulation) to RGB, plus the upsampled previous RGB (skip)."""

    def __init__(self, in_ch: int, style_dim: int, *, rngs: nnx.Rngs, upsample: bool = True):
        self.conv = ModulatedConv2d(in_ch, 3, 1, style_dim, demodulate=False, rngs=rngs)
        self.bias = nnx.Param(jnp.zeros((1, 3, 1, 1)))
        if upsample:
            p = len(BLUR_TAPS) - 2
            self.upsample = UpFirDn(((p + 1) // 2 + 1, p // 2), up=2, gain=4.0)

    def __call__(self, x: jax.Array, style: jax.Array, skip: jax.Array | None = None) -> jax.Array:
        out = self.conv(x, style) + self.bias[...].reshape(3)
        return out if skip is None else out + self.upsample(skip)


class ConstantInput(nnx.Module):
    def __init__(self, ch: int, *, rngs: nnx.Rngs):
        self.input = nnx.Param(_normal(rngs.params(), (1, ch, 4, 4)))

    def __call__(self, batch: int) -> jax.Array:
        x = self.input[...].transpose(0, 2, 3, 1)
        return jnp.broadcast_to(x, (batch, *x.shape[1:]))


class PixelNorm(nnx.Module):
    def __call__(self, x: jax.Array) -> jax.Array:
        return x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + 1e-8)


class StyleGenerator(nnx.Module):
    """GPEN's `Generator` (StyleGAN2 synthesis with concatenated noise), one style for all layers."""

    def __init__(self, size: int, style_dim: int, n_mlp: int, channel_multiplier: int, narrow: float,
                 lr_mlp: float, *, rngs: nnx.Rngs):
        ch = lambda s: channels(s, channel_multiplier, narrow)  # noqa: E731
        self.style = nnx.List([PixelNorm()] + [
            EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activate=True, rngs=rngs) for _ in range(n_mlp)])
        self.input = ConstantInput(ch(4), rngs=rngs)
        self.conv1 = StyledConv(ch(4), ch(4), style_dim, rngs=rngs)
        self.to_rgb1 = ToRGB(2 * ch(4), style_dim, upsample=False, rngs=rngs)
        convs, to_rgbs = [], []
        for log in range(3, int(math.log2(size)) + 1):
            in_ch, out_ch = ch(2 ** (log - 1)), ch(2**log)
            convs.append(StyledConv(2 * in_ch, out_ch, style_dim, upsample=True, rngs=rngs))
            convs.append(StyledConv(2 * out_ch, out_ch, style_dim, rngs=rngs))
            to_rgbs.append(ToRGB(2 * out_ch, style_dim, rngs=rngs))
        self.convs = nnx.List(convs)
        self.to_rgbs = nnx.List(to_rgbs)

    def __call__(self, z: jax.Array, features: list[jax.Array]) -> jax.Array:
        """z (B, style_dim) before the mapping MLP; features[i]: the encoder map at 4 * 2**i."""
        w = sequential(self.style, z)
        out = self.conv1(self.input(z.shape[0]), w, features[0])
        skip = self.to_rgb1(out, w)
        for i, to_rgb in enumerate(self.to_rgbs):
            feature = features[i + 1]
            out = self.convs[2 * i](out, w, feature)
            out = self.convs[2 * i + 1](out, w, feature)
            skip = to_rgb(out, w, skip)
        return skip


class FullGenerator(nnx.Module):
    """GPEN's face restorer: (B, size, size, 3) in [-1, 1] -> the restored face, same shape, ~[-1, 1].

    Attribute paths are GPEN's state-dict keys: `ecd0`..`ecd{log2(size)-2}`, `final_linear`,
    `generator.*`. `BFR[512]` / `BFR[256]` are the published models' keywords.
    """

    def __init__(self, size: int = 512, style_dim: int = 512, n_mlp: int = 8, channel_multiplier: int = 2,
                 narrow: float = 1.0, lr_mlp: float = 0.01, *, rngs: nnx.Rngs):
        log_size = int(math.log2(size))
        if 2**log_size != size or size < 8:
            raise ValueError(f"GPEN: size {size} is not a power of two >= 8")
        ch = lambda s: channels(s, channel_multiplier, narrow)  # noqa: E731
        self.size, self.num_encoders = size, log_size - 1
        self.generator = StyleGenerator(size, style_dim, n_mlp, channel_multiplier, narrow, lr_mlp, rngs=rngs)
        self.ecd0 = nnx.List([conv_layer(3, ch(size), 1, rngs=rngs)])
        for i in range(1, self.num_encoders):
            res = size >> i
            setattr(self, f"ecd{i}", nnx.List([conv_layer(ch(2 * res), ch(res), 3, downsample=True, rngs=rngs)]))
        self.final_linear = nnx.List([EqualLinear(ch(4) * 16, style_dim, activate=True, rngs=rngs)])

    def __call__(self, x: jax.Array) -> jax.Array:
        if x.shape[1:] != (self.size, self.size, 3):
            raise ValueError(f"GPEN: expects (B, {self.size}, {self.size}, 3) faces, got {x.shape}")
        features = []
        for i in range(self.num_encoders):
            x = sequential(getattr(self, f"ecd{i}")[0], x)
            features.append(x)
        # GPEN flattens the NCHW 4x4 map.
        z = sequential(self.final_linear, x.transpose(0, 3, 1, 2).reshape(x.shape[0], -1))
        return self.generator(z, features[::-1])


def torch_buffers(model: FullGenerator) -> dict[str, np.ndarray]:
    """The blur kernels GPEN stores as persistent buffers, keyed like its state dict."""
    return {".".join(map(str, (*path, "kernel"))): m.torch_kernel()
            for path, m in nnx.iter_modules(model) if isinstance(m, UpFirDn)}
