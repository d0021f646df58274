"""RankSRGAN's SRResNet generator, with the keys of its published `mmsr_SRResNet_pretrain.pth`.

Not BasicSR's MSRResNet (`sslsr.models.msrresnet`), although both use the same residual blocks:
this one has no activation after `conv_first`, a trunk conv `LRconv` with a global skip
(`upconv1(LRconv(trunk(fea)) + fea)`), ReLU instead of LeakyReLU 0.1 and no bilinear base
image; the keys differ too (`recon_trunk`, `LRconv`, `HRconv`).
"""

from __future__ import annotations

import jax
from flax import nnx

from sslsr.models.layers import pixel_shuffle, torch_conv
from sslsr.models.msrresnet import ResidualBlockNoBN


class SRResNet(nnx.Module):
    """(B, H, W, in_nc) in [0, 1] -> (B, H*s, W*s, out_nc); `upscale` in {2, 3, 4}, ReLU, no BN."""

    def __init__(
        self,
        in_nc: int = 3,
        out_nc: int = 3,
        nf: int = 64,
        nb: int = 16,
        upscale: int = 4,
        *,
        rngs: nnx.Rngs,
    ):
        if upscale not in (2, 3, 4):
            raise ValueError(f"SRResNet: upscale must be 2, 3 or 4, got {upscale}")
        self.upscale = upscale
        # mmsr initialises these with kaiming * 0.1 (like the residual blocks); LRconv keeps
        # PyTorch's default init.
        self.conv_first = torch_conv(in_nc, nf, 3, init_scale=0.1, rngs=rngs)
        self.recon_trunk = nnx.List([ResidualBlockNoBN(nf, rngs=rngs) for _ in range(nb)])
        self.LRconv = torch_conv(nf, nf, 3, rngs=rngs)
        shuffle = 3 if upscale == 3 else 2
        self.upconv1 = torch_conv(nf, nf * shuffle * shuffle, 3, init_scale=0.1, rngs=rngs)
        if upscale == 4:
            self.upconv2 = torch_conv(nf, nf * 4, 3, init_scale=0.1, rngs=rngs)
        self.HRconv = torch_conv(nf, nf, 3, init_scale=0.1, rngs=rngs)
        self.conv_last = torch_conv(nf, out_nc, 3, init_scale=0.1, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        fea = self.conv_first(x)
        out = fea
        for block in self.recon_trunk:
            out = block(out)
        out = self.LRconv(out) + fea
        shuffle = 3 if self.upscale == 3 else 2
        out = jax.nn.relu(pixel_shuffle(self.upconv1(out), shuffle))
        if self.upscale == 4:
            out = jax.nn.relu(pixel_shuffle(self.upconv2(out), 2))
        return self.conv_last(jax.nn.relu(self.HRconv(out)))
