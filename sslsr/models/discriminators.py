"""GAN discriminators of BasicSR (ESRGAN's VGG-style and Real-ESRGAN's U-Net with spectral norm).

Attribute names mirror BasicSR's PyTorch modules (`conv0_0`, `bn0_1`, ..., `linear1`, `linear2`;
`conv0` ... `conv9`) so `sslsr.convert` maps published checkpoints 1:1. Inputs are NHWC.
Both modules start in training mode like PyTorch modules; switch with `.train()` / `.eval()`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from sslsr.models.layers import torch_uniform, upsample_bilinear
from sslsr.models.spectral_norm import SpectralNormConv


def _conv(cin: int, cout: int, k: int, stride: int, pad: int, bias: bool, rngs: nnx.Rngs) -> nnx.Conv:
    init = torch_uniform(cin * k * k)
    return nnx.Conv(
        cin,
        cout,
        (k, k),
        strides=(stride, stride),
        padding=((pad, pad), (pad, pad)),
        use_bias=bias,
        kernel_init=init,
        bias_init=init,
        rngs=rngs,
    )


def _linear(cin: int, cout: int, rngs: nnx.Rngs) -> nnx.Linear:
    init = torch_uniform(cin)
    return nnx.Linear(cin, cout, kernel_init=init, bias_init=init, rngs=rngs)


class BatchNorm2d(nnx.Module):
    """`torch.nn.BatchNorm2d` (eps 1e-5, momentum 0.1, affine) on NHWC input, numerically the same.

    Training mode normalises with the biased batch variance but, like PyTorch, stores the
    *unbiased* one (n / (n - 1)) in `var`; flax's `nnx.BatchNorm` stores the biased one, so
    running statistics would drift apart from PyTorch's. Names map onto PyTorch's:
    scale->weight, bias, mean->running_mean, var->running_var, num_batches_tracked.
    """

    def __init__(self, num_features: int, *, rngs: nnx.Rngs | None = None):
        del rngs  # deterministic init (ones / zeros), kept for the usual NNX signature
        self.scale = nnx.Param(jnp.ones((num_features,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((num_features,), jnp.float32))
        self.mean = nnx.BatchStat(jnp.zeros((num_features,), jnp.float32))
        self.var = nnx.BatchStat(jnp.ones((num_features,), jnp.float32))
        self.num_batches_tracked = nnx.BatchStat(jnp.zeros((), jnp.int32))
        self.momentum = 0.1
        self.epsilon = 1e-5
        self.use_running_average = False

    def set_view(self, use_running_average: bool | None = None):
        """Used by `nnx.view`: True = eval (running statistics), False = train (batch statistics)."""
        if use_running_average is not None:
            self.use_running_average = use_running_average

    def __call__(self, x: jax.Array) -> jax.Array:
        """x: (N, H, W, C) -> (N, H, W, C); statistics in float32 whatever x's dtype."""
        xf = x.astype(jnp.float32)
        if self.use_running_average:
            mean, var = self.mean[...], self.var[...]
        else:
            n = xf.size // xf.shape[-1]
            mean = jnp.mean(xf, axis=(0, 1, 2))
            var = jnp.mean(jnp.square(xf - mean), axis=(0, 1, 2))
            m = self.momentum
            unbiased = jax.lax.stop_gradient(var) * (n / max(n - 1, 1))
            self.mean[...] = (1 - m) * self.mean[...] + m * jax.lax.stop_gradient(mean)
            self.var[...] = (1 - m) * self.var[...] + m * unbiased
            self.num_batches_tracked[...] = self.num_batches_tracked[...] + 1
        y = (xf - mean) * jax.lax.rsqrt(var + self.epsilon) * self.scale[...] + self.bias[...]
        return y.astype(x.dtype)


def _lrelu(x: jax.Array) -> jax.Array:
    return jax.nn.leaky_relu(x, 0.2)


def vgg_trunk(module: nnx.Module, num_in_ch: int, num_feat: int, num_stages: int, conv_bias: bool,
              rngs: nnx.Rngs) -> None:
    """Sets the VGG-style conv/BN trunk of the mmsr/BasicSR discriminators and ranker on `module`.

    Attributes `conv0_0`, `conv0_1`, `bn0_1`, then `conv{i}_0`, `bn{i}_0`, `conv{i}_1`, `bn{i}_1`
    for i = 1..num_stages: channels f, 2f, 4f, 8f, 8f, ...; each stage halves the size (4x4
    stride-2 conv). `conv0_0` always has a bias; the others have one when `conv_bias` (the
    discriminators: no, RankSRGAN's ranker: yes). Run with `vgg_trunk_forward`.
    """
    f = num_feat
    module.conv0_0 = _conv(num_in_ch, f, 3, 1, 1, True, rngs)
    module.conv0_1 = _conv(f, f, 4, 2, 1, conv_bias, rngs)
    module.bn0_1 = BatchNorm2d(f)
    for i in range(1, num_stages + 1):
        # (in, out) channels of the stride-1 conv; its stride-2 conv keeps out.
        cin, cout = f * min(2 ** (i - 1), 8), f * min(2**i, 8)
        setattr(module, f"conv{i}_0", _conv(cin, cout, 3, 1, 1, conv_bias, rngs))
        setattr(module, f"bn{i}_0", BatchNorm2d(cout))
        setattr(module, f"conv{i}_1", _conv(cout, cout, 4, 2, 1, conv_bias, rngs))
        setattr(module, f"bn{i}_1", BatchNorm2d(cout))
    module.num_stages = num_stages


def vgg_trunk_forward(module: nnx.Module, x: jax.Array) -> jax.Array:
    """(N, H, W, C) -> (N, H / 2**(num_stages + 1), ..., 8 * num_feat) through `vgg_trunk`'s layers."""
    feat = _lrelu(module.conv0_0(x))
    feat = _lrelu(module.bn0_1(module.conv0_1(feat)))
    for i in range(1, module.num_stages + 1):
        feat = _lrelu(getattr(module, f"bn{i}_0")(getattr(module, f"conv{i}_0")(feat)))
        feat = _lrelu(getattr(module, f"bn{i}_1")(getattr(module, f"conv{i}_1")(feat)))
    return feat


# input size -> (stages after stage 0, spatial size at linear1). BasicSR has 128 and 256; mmsr's
# Discriminator_VGG_192 (BebyGAN, ELAN-GAN) and RankSRGAN's Discriminator_VGG_296 have the same
# layers and keys, with 5 and 4 stages (296 -> 148 -> 74 -> 37 -> 18 -> 9).
_VGG_SIZES = {128: (4, 4), 192: (5, 3), 256: (5, 4), 296: (4, 9)}


class VGGStyleDiscriminator(nnx.Module):
    """ESRGAN's VGG-style discriminator (BasicSR `VGGStyleDiscriminator`), NHWC.

    (N, input_size, input_size, num_in_ch) -> (N, 1) logits. `input_size` is 128 or 256 as in
    BasicSR, or 192 / 296 (mmsr's `Discriminator_VGG_192` / `_296`, same keys; see
    `VGGDiscriminator192`); the spatial size is fixed by `linear1`. 14,499,401 parameters for
    num_in_ch=3, num_feat=64 at 128.
    """

    def __init__(self, num_in_ch: int, num_feat: int, input_size: int = 128, *, rngs: nnx.Rngs):
        if input_size not in _VGG_SIZES:
            raise ValueError(f"{type(self).__name__}: input_size must be one of {', '.join(map(str, _VGG_SIZES))}, "
                             f"got {input_size}")
        self.input_size = input_size
        num_stages, side = _VGG_SIZES[input_size]
        vgg_trunk(self, num_in_ch, num_feat, num_stages, False, rngs)
        self.linear1 = _linear(8 * num_feat * side * side, 100, rngs)
        self.linear2 = _linear(100, 1, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        if x.shape[1] != self.input_size or x.shape[2] != self.input_size:
            raise ValueError(
                f"{type(self).__name__}: expected {self.input_size}x{self.input_size} input, "
                f"got {x.shape[1]}x{x.shape[2]} (NHWC {x.shape})"
            )
        feat = vgg_trunk_forward(self, x)
        # PyTorch flattens NCHW (channel-major); do the same so linear1's weights are shared.
        feat = jnp.transpose(feat, (0, 3, 1, 2)).reshape(feat.shape[0], -1)
        feat = _lrelu(self.linear1(feat))
        return self.linear2(feat)


class VGGDiscriminator192(VGGStyleDiscriminator):
    """mmsr's `Discriminator_VGG_192` (BebyGAN, ELAN-GAN): (N, 192, 192, C) -> (N, 1); same keys."""

    def __init__(self, num_in_ch: int = 3, num_feat: int = 64, *, rngs: nnx.Rngs):
        super().__init__(num_in_ch, num_feat, 192, rngs=rngs)


class VGGDiscriminator296(VGGStyleDiscriminator):
    """RankSRGAN's `Discriminator_VGG_296`: (N, 296, 296, C) -> (N, 1); same keys."""

    def __init__(self, num_in_ch: int = 3, num_feat: int = 64, *, rngs: nnx.Rngs):
        super().__init__(num_in_ch, num_feat, 296, rngs=rngs)


class UNetDiscriminatorSN(nnx.Module):
    """Real-ESRGAN's U-Net discriminator with spectral normalisation (BasicSR), NHWC.

    (N, H, W, num_in_ch) -> (N, H, W, 1) per-pixel logits; H and W must be multiples of 8.
    4,376,897 parameters for num_in_ch=3, num_feat=64 (u/v of spectral norm are state, not params).
    """

    def __init__(self, num_in_ch: int, num_feat: int = 64, skip_connection: bool = True, *, rngs: nnx.Rngs):
        f = num_feat
        self.skip_connection = skip_connection
        self.conv0 = _conv(num_in_ch, f, 3, 1, 1, True, rngs)
        # downsample
        self.conv1 = SpectralNormConv(f, 2 * f, 4, 2, 1, rngs=rngs)
        self.conv2 = SpectralNormConv(2 * f, 4 * f, 4, 2, 1, rngs=rngs)
        self.conv3 = SpectralNormConv(4 * f, 8 * f, 4, 2, 1, rngs=rngs)
        # upsample
        self.conv4 = SpectralNormConv(8 * f, 4 * f, 3, 1, 1, rngs=rngs)
        self.conv5 = SpectralNormConv(4 * f, 2 * f, 3, 1, 1, rngs=rngs)
        self.conv6 = SpectralNormConv(2 * f, f, 3, 1, 1, rngs=rngs)
        # extra convolutions
        self.conv7 = SpectralNormConv(f, f, 3, 1, 1, rngs=rngs)
        self.conv8 = SpectralNormConv(f, f, 3, 1, 1, rngs=rngs)
        self.conv9 = _conv(f, 1, 3, 1, 1, True, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        if x.shape[1] % 8 or x.shape[2] % 8:
            raise ValueError(f"UNetDiscriminatorSN: height and width must be multiples of 8, got NHWC {x.shape}")
        x0 = _lrelu(self.conv0(x))
        x1 = _lrelu(self.conv1(x0))
        x2 = _lrelu(self.conv2(x1))
        x3 = _lrelu(self.conv3(x2))

        x4 = _lrelu(self.conv4(upsample_bilinear(x3, 2)))
        if self.skip_connection:
            x4 = x4 + x2
        x5 = _lrelu(self.conv5(upsample_bilinear(x4, 2)))
        if self.skip_connection:
            x5 = x5 + x1
        x6 = _lrelu(self.conv6(upsample_bilinear(x5, 2)))
        if self.skip_connection:
            x6 = x6 + x0

        out = _lrelu(self.conv7(x6))
        out = _lrelu(self.conv8(out))
        return self.conv9(out)
