"""MetaF2N's inner (adaptation) step, pure JAX, shared by meta-training and test time.

The SR network enters as `apply(params, lr) -> sr` (a pure function of its parameters), so the
same code runs inside the meta-gradient (training: `jax.grad` through it) and per photo (test).
Images NHWC float32 in [0, 1].
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp


def upsample(x: jax.Array, scale: int) -> jax.Array:
    """(B, h, w, C) -> (B, h*scale, w*scale, C) bicubic (Keys a=-0.5, `jax.image.resize`): the LR
    face the MaskNet sees next to its pseudo ground truth."""
    b, h, w, c = x.shape
    return jax.image.resize(x, (b, h * scale, w * scale, c), "bicubic")


def mask_input(lr: jax.Array, pseudo_gt: jax.Array) -> jax.Array:
    """The MaskNet's input: concat(bicubic-upsampled LR face (B, h, w, 3), pseudo-GT face
    (B, h*s, w*s, 3)) -> (B, h*s, w*s, 6)."""
    scale = pseudo_gt.shape[1] // lr.shape[1]
    return jnp.concatenate([upsample(lr, scale), pseudo_gt], axis=-1)


def inner_loss(sr: jax.Array, pseudo_gt: jax.Array, m: jax.Array) -> jax.Array:
    """mean(m * |pseudo_gt - sr|): sr, pseudo_gt (B, H, W, C); m (B, H, W, 1) -> scalar."""
    return jnp.mean(m * jnp.abs(pseudo_gt - sr))


def mask_regulariser(m: jax.Array) -> jax.Array:
    """L_reg = 0.5 * mean((m - 1)^2) (MetaF2N's code): keeps the mask from collapsing to 0."""
    return 0.5 * jnp.mean(jnp.square(m - 1.0))


def adapt(apply: Callable, params, lr: jax.Array, pseudo_gt: jax.Array, m: jax.Array, *, lr_inner: float,
          steps: int = 1, first_order: bool = False):
    """`steps` SGD steps (learning rate lr_inner) of the SR parameters on `inner_loss`.

    apply: (params, lr (B, h, w, 3)) -> sr (B, h*s, w*s, 3); lr, pseudo_gt, m: the face patches, their
    pseudo ground truth and weights (B, h*s, w*s, 1).
    first_order: treat each inner gradient as a constant (first-order MAML): the adapted weights
    then depend on `params` only through the identity, and on `m` (so on the MaskNet) not at all.
    Returns the adapted parameters (a pytree like `params`).
    """
    for _ in range(steps):
        grads = jax.grad(lambda p: inner_loss(apply(p, lr), pseudo_gt, m))(params)
        if first_order:
            grads = jax.lax.stop_gradient(grads)
        params = jax.tree.map(lambda p, g: p - lr_inner * g, params, grads)
    return params
