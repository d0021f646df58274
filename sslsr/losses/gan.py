"""Adversarial losses (BasicSR's `GANLoss(gan_type='vanilla')`, plain and relativistic average).

All functions take discriminator logits of any shape (for example (B, 1) from
`VGGStyleDiscriminator` or (B, H, W, 1) from `UNetDiscriminatorSN`) and return a float32 scalar
(mean over every element, like `nn.BCEWithLogitsLoss`). Loss weights are applied by the caller.
"""

import jax
import jax.numpy as jnp


def bce_with_logits(logits: jax.Array, target: float) -> jax.Array:
    """Mean binary cross-entropy of `sigmoid(logits)` against a constant label (0.0 or 1.0).

    logits: any shape. Returns a scalar. Numerically stable form
    `max(x, 0) - x * t + log(1 + exp(-|x|))`, the one PyTorch uses.
    """
    x = logits.astype(jnp.float32)
    return jnp.mean(jnp.maximum(x, 0.0) - x * target + jnp.log1p(jnp.exp(-jnp.abs(x))))


def vanilla_generator_loss(fake_logits: jax.Array) -> jax.Array:
    """Plain (non-saturating) GAN loss for G: BCE(D(G(x)), real). Real-ESRGAN's `l_g_gan`."""
    return bce_with_logits(fake_logits, 1.0)


def vanilla_discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array):
    """Plain GAN loss for D, returned as (real term, fake term); D minimises their sum.

    `fake_logits` must come from a generator output the caller has passed through
    `jax.lax.stop_gradient` (BasicSR detaches it).
    """
    return bce_with_logits(real_logits, 1.0), bce_with_logits(fake_logits, 0.0)


def ragan_generator_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    """Relativistic average GAN loss for G (ESRGAN): mean of the two relativistic BCE terms.

    real_logits, fake_logits: D outputs on HR and SR, same shape. D's output on the real batch is
    a constant for G (BasicSR detaches it), so gradients flow only through `fake_logits`.
    """
    real = jax.lax.stop_gradient(real_logits)
    loss_real = bce_with_logits(real - jnp.mean(fake_logits), 0.0)
    loss_fake = bce_with_logits(fake_logits - jnp.mean(real), 1.0)
    return 0.5 * (loss_real + loss_fake)


def ragan_discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array):
    """Relativistic average GAN loss for D (ESRGAN), returned as (real term, fake term).

    Each term is 0.5 * BCE and treats the other batch's mean logit as a constant, exactly as
    BasicSR's two separate backward passes do, so grad(real + fake) equals BasicSR's accumulated
    gradient.
    """
    real_term = 0.5 * bce_with_logits(real_logits - jax.lax.stop_gradient(jnp.mean(fake_logits)), 1.0)
    fake_term = 0.5 * bce_with_logits(fake_logits - jax.lax.stop_gradient(jnp.mean(real_logits)), 0.0)
    return real_term, fake_term
