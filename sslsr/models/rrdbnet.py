"""RRDBNet, the ESRGAN generator, with BasicSR's parameter names and ×1/×2 pixel-unshuffle input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from sslsr.models.layers import leaky_relu, pixel_unshuffle, torch_conv, upsample_nearest


class ResidualDenseBlock(nnx.Module):
    """Five densely connected convs; `x + 0.2 * conv5(...)`. (B, H, W, num_feat) -> same."""

    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32, *, rngs: nnx.Rngs):
        g = num_grow_ch
        self.conv1 = torch_conv(num_feat, g, 3, init_scale=0.1, rngs=rngs)
        self.conv2 = torch_conv(num_feat + g, g, 3, init_scale=0.1, rngs=rngs)
        self.conv3 = torch_conv(num_feat + 2 * g, g, 3, init_scale=0.1, rngs=rngs)
        self.conv4 = torch_conv(num_feat + 3 * g, g, 3, init_scale=0.1, rngs=rngs)
        self.conv5 = torch_conv(num_feat + 4 * g, num_feat, 3, init_scale=0.1, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        # Channel order of the concatenations matches torch.cat((x, x1, ...), dim=1).
        x1 = leaky_relu(self.conv1(x), 0.2)
        x2 = leaky_relu(self.conv2(jnp.concatenate([x, x1], -1)), 0.2)
        x3 = leaky_relu(self.conv3(jnp.concatenate([x, x1, x2], -1)), 0.2)
        x4 = leaky_relu(self.conv4(jnp.concatenate([x, x1, x2, x3], -1)), 0.2)
        x5 = self.conv5(jnp.concatenate([x, x1, x2, x3, x4], -1))
        return x5 * 0.2 + x


class RRDB(nnx.Module):
    """Residual-in-residual dense block: three RDBs, `x + 0.2 * rdb3(rdb2(rdb1(x)))`."""

    def __init__(self, num_feat: int, num_grow_ch: int = 32, *, rngs: nnx.Rngs):
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch, rngs=rngs)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch, rngs=rngs)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


class RRDBNet(nnx.Module):
    """ESRGAN generator: (B, H, W, num_in_ch) in [0, 1] -> (B, H*scale, W*scale, num_out_ch).

    The trunk always upsamples ×4 (two nearest ×2 + conv stages); `scale` 2 and 1 first
    pixel-unshuffle the input by 2 and 4 as BasicSR does, so H and W must be divisible by that.
    """

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        scale: int = 4,
        num_feat: int = 64,
        num_block: int = 23,
        num_grow_ch: int = 32,
        *,
        rngs: nnx.Rngs,
    ):
        if scale not in (1, 2, 4):
            raise ValueError(f"RRDBNet: scale must be 1, 2 or 4, got {scale}")
        self.scale = scale
        in_ch = num_in_ch * {4: 1, 2: 4, 1: 16}[scale]
        # conv_first/conv_body/conv_up*/conv_hr/conv_last keep PyTorch's default init in BasicSR;
        # only the dense blocks use the 0.1-scaled kaiming init.
        self.conv_first = torch_conv(in_ch, num_feat, 3, rngs=rngs)
        self.body = nnx.List([RRDB(num_feat, num_grow_ch, rngs=rngs) for _ in range(num_block)])
        self.conv_body = torch_conv(num_feat, num_feat, 3, rngs=rngs)
        self.conv_up1 = torch_conv(num_feat, num_feat, 3, rngs=rngs)
        self.conv_up2 = torch_conv(num_feat, num_feat, 3, rngs=rngs)
        self.conv_hr = torch_conv(num_feat, num_feat, 3, rngs=rngs)
        self.conv_last = torch_conv(num_feat, num_out_ch, 3, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.scale == 2:
            x = pixel_unshuffle(x, 2)
        elif self.scale == 1:
            x = pixel_unshuffle(x, 4)
        feat = self.conv_first(x)
        body = feat
        for block in self.body:
            body = block(body)
        feat = feat + self.conv_body(body)
        feat = leaky_relu(self.conv_up1(upsample_nearest(feat, 2)), 0.2)
        feat = leaky_relu(self.conv_up2(upsample_nearest(feat, 2)), 0.2)
        return self.conv_last(leaky_relu(self.conv_hr(feat), 0.2))
