"""MSRResNet (modified SRResNet without BatchNorm), parameter names as BasicSR's `MSRResNet`."""

from __future__ import annotations

import jax
from flax import nnx

from sslsr.models.layers import leaky_relu, pixel_shuffle, torch_conv, upsample_bilinear


class ResidualBlockNoBN(nnx.Module):
    """conv-ReLU-conv residual block; `x + res_scale * body(x)`. (B, H, W, C) -> same."""

    def __init__(self, num_feat: int = 64, res_scale: float = 1.0, *, rngs: nnx.Rngs):
        self.res_scale = res_scale
        self.conv1 = torch_conv(num_feat, num_feat, 3, init_scale=0.1, rngs=rngs)
        self.conv2 = torch_conv(num_feat, num_feat, 3, init_scale=0.1, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return x + self.conv2(jax.nn.relu(self.conv1(x))) * self.res_scale


class MSRResNet(nnx.Module):
    """SRResNet-style generator: (B, H, W, num_in_ch) in [0, 1] -> (B, H*s, W*s, num_out_ch).

    The network learns a residual over the bilinear upsampling of the input. `upscale` in {2, 3, 4}.
    """

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        num_feat: int = 64,
        num_block: int = 16,
        upscale: int = 4,
        *,
        rngs: nnx.Rngs,
    ):
        if upscale not in (2, 3, 4):
            raise ValueError(f"MSRResNet: upscale must be 2, 3 or 4, got {upscale}")
        self.upscale = upscale
        self.conv_first = torch_conv(num_in_ch, num_feat, 3, init_scale=0.1, rngs=rngs)
        self.body = nnx.List([ResidualBlockNoBN(num_feat, rngs=rngs) for _ in range(num_block)])
        if upscale == 4:
            self.upconv1 = torch_conv(num_feat, num_feat * 4, 3, init_scale=0.1, rngs=rngs)
            self.upconv2 = torch_conv(num_feat, num_feat * 4, 3, init_scale=0.1, rngs=rngs)
        else:
            self.upconv1 = torch_conv(num_feat, num_feat * upscale * upscale, 3, init_scale=0.1, rngs=rngs)
        self.conv_hr = torch_conv(num_feat, num_feat, 3, init_scale=0.1, rngs=rngs)
        self.conv_last = torch_conv(num_feat, num_out_ch, 3, init_scale=0.1, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        feat = leaky_relu(self.conv_first(x), 0.1)
        out = feat
        for block in self.body:
            out = block(out)
        if self.upscale == 4:
            out = leaky_relu(pixel_shuffle(self.upconv1(out), 2), 0.1)
            out = leaky_relu(pixel_shuffle(self.upconv2(out), 2), 0.1)
        else:
            out = leaky_relu(pixel_shuffle(self.upconv1(out), self.upscale), 0.1)
        out = self.conv_last(leaky_relu(self.conv_hr(out), 0.1))
        return out + upsample_bilinear(x, self.upscale).astype(out.dtype)
