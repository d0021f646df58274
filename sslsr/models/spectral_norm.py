"""Spectral-normalised convolution that matches `torch.nn.utils.spectral_norm` exactly.

flax's `nnx.SpectralNorm` runs the power iteration in eval mode too and overwrites the wrapped
weight, so checkpoints and outputs would not line up with PyTorch's. This module keeps PyTorch's
contract instead:

- parameter `weight_orig` (the un-normalised kernel, stored HWIO like `nnx.Conv.kernel`);
- state `weight_u` (O,) and `weight_v` (I*kh*kw,) in PyTorch's flattening order: the OIHW
  weight reshaped to (O, -1); they are `nnx.BatchStat` (not parameters) so optimisers built with
  `wrt=nnx.Param` skip them and parameter counts match PyTorch's;
- training forward: one power iteration updates u and v in place (without gradient), then
  sigma = u^T W v (gradient flows through W only) and the kernel used is W / sigma;
- eval forward: sigma from the stored u and v, nothing is updated.

`module.train()` / `module.eval()` switch the mode through the `use_running_average` attribute
(the same one `nnx.BatchNorm` uses), i.e. eval mode "uses the running estimate of u and v".
"""

from __future__ import annotations


import jax
import jax.numpy as jnp
from flax import nnx

from sslsr.models.layers import torch_uniform

_EPS = 1e-12  # torch.nn.utils.spectral_norm default


def _normalize(x: jax.Array) -> jax.Array:
    """`torch.nn.functional.normalize(x, dim=0, eps=1e-12)` for a vector."""
    return x / jnp.maximum(jnp.linalg.norm(x), _EPS)


def _torch_weight_matrix(kernel_hwio: jax.Array) -> jax.Array:
    """HWIO kernel -> (O, I*kh*kw) matrix in PyTorch's `weight.reshape(O, -1)` order (OIHW)."""
    return jnp.transpose(kernel_hwio, (3, 2, 0, 1)).reshape(kernel_hwio.shape[-1], -1)


class SpectralNormConv(nnx.Module):
    """2-D convolution (no bias) with PyTorch-style spectral normalisation of its weight.

    Args:
      in_features, out_features: channels.
      kernel_size, stride, padding: square kernel, stride and symmetric zero padding.
      rngs: `weight_orig` uses PyTorch's default Conv2d init (kaiming-uniform, a=sqrt(5)); u and v
        start as normalised Gaussian vectors like PyTorch's.

    Input (N, H, W, in_features) -> output (N, H', W', out_features).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        *,
        rngs: nnx.Rngs,
    ):
        self.stride = stride
        self.padding = padding
        shape = (kernel_size, kernel_size, in_features, out_features)
        self.weight_orig = nnx.Param(torch_uniform(in_features * kernel_size * kernel_size)(rngs.params(), shape))
        self.weight_u = nnx.BatchStat(
            _normalize(jax.random.normal(rngs.params(), (out_features,), jnp.float32))
        )
        self.weight_v = nnx.BatchStat(
            _normalize(
                jax.random.normal(rngs.params(), (in_features * kernel_size**2,), jnp.float32)
            )
        )
        self.use_running_average = False  # PyTorch modules start in training mode

    def set_view(self, use_running_average: bool | None = None):
        """Used by `nnx.view`: True = eval (stored u, v), False = train (power iteration)."""
        if use_running_average is not None:
            self.use_running_average = use_running_average

    def normalized_kernel(self) -> jax.Array:
        """The HWIO kernel W / sigma; in training mode first runs one power iteration on u, v."""
        w = self.weight_orig[...]
        mat = _torch_weight_matrix(w)
        u, v = self.weight_u[...], self.weight_v[...]
        if not self.use_running_average:
            frozen = jax.lax.stop_gradient(mat)
            v = _normalize(frozen.T @ u)
            u = _normalize(frozen @ v)
            self.weight_u[...] = u
            self.weight_v[...] = v
        sigma = jnp.dot(u, mat @ v)
        return w / sigma

    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.normalized_kernel().astype(x.dtype)
        p = self.padding
        return jax.lax.conv_general_dilated(
            x,
            kernel,
            window_strides=(self.stride, self.stride),
            padding=((p, p), (p, p)),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )
