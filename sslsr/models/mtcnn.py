"""MTCNN's three face-detection networks (Zhang et al. 2016) as facenet-pytorch ships them, NHWC.

Attribute names are facenet-pytorch's state-dict keys (`conv1`, `prelu1.weight` (C,), ...,
`dense5`, `dense6_1`), so `sslsr.weights.facenet` fills them through `from_torch`. Inputs are
images normalised as the pipeline does ((x - 127.5) / 128, RGB); outputs follow facenet-pytorch's
order and are what its `detect_face` reads:

- PNet (fully convolutional, 12 px window, stride 2): (regression (N, h', w', 4), probabilities
  (N, h', w', 2)); channel 1 is "face".
- RNet (24x24 crops): (regression (N, 4), probabilities (N, 2)).
- ONet (48x48 crops): (regression (N, 4), landmarks (N, 10) = 5 x then 5 y, relative to the box,
  probabilities (N, 2)).

PyTorch details kept exactly: max pooling with `ceil_mode=True` (a partial window at the bottom
and right border), and the flatten before the dense layers, which facenet-pytorch takes after
permuting NCHW to (N, W, H, C) (the Caffe weights' order): in NHWC that is a (0, 2, 1, 3)
transpose.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from sslsr.models.layers import torch_uniform
from sslsr.models.srvgg import PReLU


def _conv(in_ch: int, out_ch: int, k: int, rngs: nnx.Rngs) -> nnx.Conv:
    init = torch_uniform(in_ch * k * k)
    return nnx.Conv(in_ch, out_ch, (k, k), padding="VALID", kernel_init=init, bias_init=init, rngs=rngs)


def _dense(in_f: int, out_f: int, rngs: nnx.Rngs) -> nnx.Linear:
    init = torch_uniform(in_f)
    return nnx.Linear(in_f, out_f, kernel_init=init, bias_init=init, rngs=rngs)


def max_pool_ceil(x: jax.Array, k: int, s: int) -> jax.Array:
    """`nn.MaxPool2d(k, s, ceil_mode=True)` on NHWC: windows may run past the bottom/right edge.

    (With no padding and s <= k every window starts inside the input, so padding with -inf up to
    the ceil-mode size reproduces PyTorch.)
    """
    h, w = x.shape[1:3]
    oh, ow = math.ceil((h - k) / s) + 1, math.ceil((w - k) / s) + 1
    pad = ((0, 0), (0, (oh - 1) * s + k - h), (0, (ow - 1) * s + k - w), (0, 0))
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, k, k, 1), (1, s, s, 1), pad)


def _flatten_like_torch(x: jax.Array) -> jax.Array:
    # facenet-pytorch: x.permute(0, 3, 2, 1) on NCHW -> (N, W, H, C), then view(N, -1).
    return x.transpose(0, 2, 1, 3).reshape(x.shape[0], -1)


class PNet(nnx.Module):
    """Proposal network: 12x12 windows at stride 2 over a pyramid level."""

    def __init__(self, *, rngs: nnx.Rngs):
        self.conv1, self.prelu1 = _conv(3, 10, 3, rngs), PReLU(10)
        self.conv2, self.prelu2 = _conv(10, 16, 3, rngs), PReLU(16)
        self.conv3, self.prelu3 = _conv(16, 32, 3, rngs), PReLU(32)
        self.conv4_1 = _conv(32, 2, 1, rngs)
        self.conv4_2 = _conv(32, 4, 1, rngs)

    def __call__(self, x: jax.Array, valid_hw: tuple | None = None) -> tuple[jax.Array, jax.Array]:
        """x (N, H, W, 3) -> (regression (N, h', w', 4), probabilities (N, h', w', 2)).

        valid_hw: (h, w), possibly traced, when x is an h x w image zero-padded at the bottom and
          right (to reuse one compiled shape for many sizes): conv1 outputs beyond the real image
          are left out of the pooling, so outputs over the real image equal PNet on the unpadded
          image (including ceil-mode's partial border window); the others are meaningless.
        """
        x = self.prelu1(self.conv1(x))
        if valid_hw is not None:
            rows = jnp.arange(x.shape[1])[:, None] < valid_hw[0] - 2
            cols = jnp.arange(x.shape[2])[None, :] < valid_hw[1] - 2
            x = jnp.where((rows & cols)[None, :, :, None], x, -jnp.inf)
        x = max_pool_ceil(x, 2, 2)
        # -inf only reaches outputs outside the real image; keep them finite for callers.
        x = self.prelu2(self.conv2(x))
        x = self.prelu3(self.conv3(x))
        x = jnp.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0) if valid_hw is not None else x
        return self.conv4_2(x), jax.nn.softmax(self.conv4_1(x), axis=-1)


class RNet(nnx.Module):
    """Refinement network on 24x24 crops."""

    def __init__(self, *, rngs: nnx.Rngs):
        self.conv1, self.prelu1 = _conv(3, 28, 3, rngs), PReLU(28)
        self.conv2, self.prelu2 = _conv(28, 48, 3, rngs), PReLU(48)
        self.conv3, self.prelu3 = _conv(48, 64, 2, rngs), PReLU(64)
        self.dense4, self.prelu4 = _dense(576, 128, rngs), PReLU(128)
        self.dense5_1 = _dense(128, 2, rngs)
        self.dense5_2 = _dense(128, 4, rngs)

    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """x (N, 24, 24, 3) -> (regression (N, 4), probabilities (N, 2))."""
        x = max_pool_ceil(self.prelu1(self.conv1(x)), 3, 2)
        x = max_pool_ceil(self.prelu2(self.conv2(x)), 3, 2)
        x = self.prelu3(self.conv3(x))
        x = self.prelu4(self.dense4(_flatten_like_torch(x)))
        return self.dense5_2(x), jax.nn.softmax(self.dense5_1(x), axis=-1)


class ONet(nnx.Module):
    """Output network on 48x48 crops: final score, box regression and the 5 landmarks."""

    def __init__(self, *, rngs: nnx.Rngs):
        self.conv1, self.prelu1 = _conv(3, 32, 3, rngs), PReLU(32)
        self.conv2, self.prelu2 = _conv(32, 64, 3, rngs), PReLU(64)
        self.conv3, self.prelu3 = _conv(64, 64, 3, rngs), PReLU(64)
        self.conv4, self.prelu4 = _conv(64, 128, 2, rngs), PReLU(128)
        self.dense5, self.prelu5 = _dense(1152, 256, rngs), PReLU(256)
        self.dense6_1 = _dense(256, 2, rngs)
        self.dense6_2 = _dense(256, 4, rngs)
        self.dense6_3 = _dense(256, 10, rngs)

    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """x (N, 48, 48, 3) -> (regression (N, 4), landmarks (N, 10), probabilities (N, 2))."""
        x = max_pool_ceil(self.prelu1(self.conv1(x)), 3, 2)
        x = max_pool_ceil(self.prelu2(self.conv2(x)), 3, 2)
        x = max_pool_ceil(self.prelu3(self.conv3(x)), 2, 2)
        x = self.prelu4(self.conv4(x))
        x = self.prelu5(self.dense5(_flatten_like_torch(x)))
        return self.dense6_2(x), self.dense6_3(x), jax.nn.softmax(self.dense6_1(x), axis=-1)
