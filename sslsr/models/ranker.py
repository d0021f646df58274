"""RankSRGAN's ranker `Ranker_VGG12_296`, with the keys of its published `mmsr_Ranker_PI.pth`.

The ranker is trained to order SR images by their perceptual index; RankSRGAN's rank-content
loss is R_weight * sum over the batch of sigmoid(ranker(sr) - R_bias). Layout: the VGG-style
trunk of the discriminators but with a bias on every conv (`conv0_0` ... `bn4_1`), a global
average pool, then `classifier.0` (8 * nf -> 100), LeakyReLU 0.2, `classifier.2` (100 -> 1).

BatchNorm: RankSRGAN (and the SSL paper's code) never switch the ranker to eval mode, so its
rank-content loss normalises with each batch's statistics (train mode, the default here too);
`.eval()` uses the stored running statistics instead.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from sslsr.models.discriminators import vgg_trunk, vgg_trunk_forward
from sslsr.models.layers import leaky_relu, torch_uniform


def _linear(cin: int, cout: int, rngs: nnx.Rngs) -> nnx.Linear:
    return nnx.Linear(cin, cout, kernel_init=torch_uniform(cin), bias_init=torch_uniform(cin), rngs=rngs)


class RankerVGG12(nnx.Module):
    """(N, S, S, in_nc) in [0, 1] -> (N, 1) rank scores, for any square size S >= 32 (296 in RankSRGAN).

    PyTorch averages with `AvgPool2d(H)` over an H-wide window, which is the global mean only for
    square inputs; non-square inputs raise instead of silently using part of the image.
    """

    def __init__(self, in_nc: int = 3, nf: int = 64, *, rngs: nnx.Rngs):
        vgg_trunk(self, in_nc, nf, 4, True, rngs)
        # The published Linear(512, 100) is 8 * nf for its nf = 64.
        self.classifier = nnx.Dict({"0": _linear(8 * nf, 100, rngs), "2": _linear(100, 1, rngs)})

    def __call__(self, x: jax.Array) -> jax.Array:
        if x.shape[1] != x.shape[2] or x.shape[1] < 32:
            raise ValueError(f"RankerVGG12: expected a square input of at least 32x32, got NHWC {x.shape}")
        feat = jnp.mean(vgg_trunk_forward(self, x), axis=(1, 2))
        return self.classifier["2"](leaky_relu(self.classifier["0"](feat), 0.2))
