"""MetaF2N's MaskNet: where a restored face can be trusted as the ground truth of its LR face.

Eight 3x3 convs (6->64, six 64->64, 64->1), each followed by a ReLU, the last one included (as in
MetaF2N's published code), so the map is >= 0 and unbounded above. Input: the bicubic-upsampled LR
face and its pseudo ground truth (the restored face), concatenated on channels.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from sslsr.models.layers import torch_conv


class MaskNet(nnx.Module):
    """(B, H, W, 6) concat(upsampled LR face, pseudo-GT face) -> (B, H, W, 1) weights >= 0.

    One input array (built by `sslsr.meta.inner.mask_input`), like every other network here, so
    the generic training-mode forward and `NetworkUpscaler`-style wrappers apply unchanged.

    num_feat: width of the hidden convs (64 in the paper); num_conv: convs in all (8).
    The last conv's bias starts at 1, so a new MaskNet weighs every pixel about equally (the value
    L_reg = 0.5 * mean((m - 1)^2) pulls it to); with PyTorch's default init and a ReLU at the end,
    a zero or negative start would give m = 0 and no inner gradient at all.
    """

    def __init__(self, num_feat: int = 64, num_conv: int = 8, *, rngs: nnx.Rngs):
        if num_conv < 2:
            raise ValueError(f"MaskNet: num_conv must be >= 2, got {num_conv}")
        chans = [6] + [num_feat] * (num_conv - 1) + [1]
        self.convs = nnx.List([torch_conv(a, b, 3, rngs=rngs) for a, b in zip(chans[:-1], chans[1:])])
        last = self.convs[-1]
        last.bias[...] = jnp.ones_like(last.bias[...])

    def __call__(self, x: jax.Array) -> jax.Array:
        for conv in self.convs:
            x = jax.nn.relu(conv(x))
        return x
