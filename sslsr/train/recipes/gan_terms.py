"""The method-specific terms of the GAN recipe: LDL, BebyGAN, SPSR and RankSRGAN, one function each.

`sslsr.train.recipes.gan` computes the terms every method shares (pixel, perceptual, LPIPS, GAN,
SSL, translational) and calls the functions here for the terms of `config.loss` that belong to
one method; a weight of 0 leaves a term out of the compiled graph. ELAN-GAN needs no term of its
own (the ELAN generator with the shared terms). The settings of the methods' published code, and
the config files that use them, are in docs/methods.md.

Every function takes float32 NHWC images in [0, 1] and returns {metric name: (weight, value)}:
the recipe adds weight * value to G's objective and logs value.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import ml_collections

from sslsr.models import registry
from sslsr.train.config import error

Terms = dict[str, tuple[float, jax.Array]]
# The method terms' weights in config.loss (each >= 0; 0 leaves the term out).
WEIGHTS = ("artifact_weight", "bestbuddy_weight", "backprojection_weight", "gradient_weight", "branch_weight",
           "gradient_gan_weight", "rank_weight")
# SPSR's gradient branch reads the trunk after RRDB blocks 5, 10, 15 and 20.
SPSR_MIN_BLOCKS = 20
RANKER = "RankerVGG12"  # RankSRGAN's Ranker_VGG12_296 (sslsr.models registry, role RANKER)


def validate(c: ml_collections.ConfigDict, p: int) -> None:
    """ConfigError naming the field for method settings that cannot work (p: the HR patch side)."""
    lo = c.loss
    if lo.artifact_weight and not c.train.ema_decay:
        raise error("loss.artifact_weight", "LDL's artifact map compares G with its EMA: needs train.ema_decay > 0")
    if lo.bestbuddy_weight and (p % 4 or p < 12):
        raise error("data.hr_patch", f"{p}: the best-buddy loss takes 3x3 HR patches at scales 1, 1/2 and 1/4; "
                    "needs a multiple of 4, at least 12")
    if lo.gan_region_mask and not (lo.gan_weight and c.discriminator.arch):
        raise error("loss.gan_region_mask", "masks the discriminator's inputs, but there is no GAN term "
                    "(loss.gan_weight 0 or no discriminator.arch)")
    if c.generator.arch == "SPSRNet":
        blocks = registry.architecture("SPSRNet").kwargs(**dict(c.generator.kwargs)).get("nb")
        if blocks is not None and blocks < SPSR_MIN_BLOCKS:
            raise error("generator.kwargs.nb", f"{blocks} RRDB blocks: SPSR's gradient branch reads the trunk after "
                        f"blocks 5/10/15/20, so it needs at least {SPSR_MIN_BLOCKS}")
    if lo.branch_weight and c.generator.arch != "SPSRNet":
        raise error("loss.branch_weight", f"needs the gradient branch of generator.arch='SPSRNet', got "
                    f"{c.generator.arch!r}")
    if lo.gradient_gan_weight and not c.discriminator.arch:
        raise error("loss.gradient_gan_weight", "needs a discriminator.arch (the gradient-map D is a second one)")
    if not isinstance(lo.rank_grad, bool):
        raise error("loss.rank_grad", f"must be True or False, got {lo.rank_grad!r}")
    if lo.rank_weight:
        if p < 32:
            raise error("data.hr_patch", f"{p}: RankSRGAN's ranker takes square inputs of at least 32 px")
        _validate_ranker(lo.rank_weights)


def _validate_ranker(path: str) -> None:
    if not path:
        raise error("loss.rank_weights", "RankSRGAN's rank-content loss needs a trained ranker "
                    "(mmsr_Ranker_PI.pth), or 'random' for a demo")
    if path == "random":
        return
    if not os.path.exists(os.path.expanduser(path)):  # a .pth, or a workdir of configs/ranker.py
        raise error("loss.rank_weights", f"{path!r} is neither a ranker file nor a ranker training workdir")
    from sslsr.errors import UserError
    from sslsr.weights import load_ranker

    try:
        load_ranker(os.path.expanduser(path))
    except (UserError, ValueError) as e:  # the reader names the file and what does not fit
        detail = " ".join(str(e).split())
        raise error("loss.rank_weights", f"is not a RankSRGAN ranker (Ranker_VGG12): {detail[:300]}") from None


def ldl_terms(loss: ml_collections.ConfigDict, sr, sr_ema, hr) -> Terms:
    """LDL (Liang et al. 2022): L1 between the artifact-map-weighted SR and HR.

    sr_ema: the EMA generator's output on the same LR (B,H,W,3); it only decides where the map is
    0 (where the current model's residual is below the EMA model's), so it carries no gradient.
    """
    from sslsr.losses.ldl import artifact_loss

    return {"l_g_artifact": (float(loss.artifact_weight), artifact_loss(sr, jax.lax.stop_gradient(sr_ema), hr))}


def bebygan_terms(loss: ml_collections.ConfigDict, sr, lr, hr) -> Terms:
    """BebyGAN (Li et al. 2022): best-buddy L1 (the method's pixel term; its configs set
    loss.pixel_weight = 0) and back-projection L1(imresize(SR, 1/s), LR) with MATLAB bicubic."""
    terms: Terms = {}
    if loss.bestbuddy_weight:
        from sslsr.losses.bestbuddy import best_buddy_loss

        terms["l_g_bb"] = (float(loss.bestbuddy_weight), best_buddy_loss(sr, hr))
    if loss.backprojection_weight:
        from sslsr.losses.bicubic import imresize

        down = imresize(sr, lr.shape[1] / sr.shape[1])
        terms["l_g_bp"] = (float(loss.backprojection_weight), jnp.mean(jnp.abs(down - lr)))
    return terms


def region_masked(loss: ml_collections.ConfigDict, hr, *images):
    """BebyGAN's region-aware adversarial training: the images D sees (in G's GAN term and in D's
    update), each multiplied by the mask of textured HR regions (0 where the 11x11 luminance std
    of the HR is below 0.025). Without `loss.gan_region_mask` the images are returned unchanged."""
    if not loss.gan_region_mask:
        return images
    from sslsr.losses.region import region_mask

    mask = region_mask(hr)  # (B,H,W,1), a constant of the HR batch
    return tuple(x * mask for x in images)


def spsr_terms(loss: ml_collections.ConfigDict, sr, branch, hr) -> Terms:
    """SPSR (Ma et al. 2020): MSE between the gradient maps of SR and HR, and L1 between the
    gradient branch's output `branch` (B,H,W,3; None when the branch term is off) and HR's map."""
    from sslsr.losses.gradient import gradient_map

    terms: Terms = {}
    hr_grad = gradient_map(hr)
    if loss.gradient_weight:
        terms["l_g_grad"] = (float(loss.gradient_weight), jnp.mean(jnp.square(gradient_map(sr) - hr_grad)))
    if loss.branch_weight:
        terms["l_g_branch"] = (float(loss.branch_weight), jnp.mean(jnp.abs(branch - hr_grad)))
    return terms


def rank_terms(loss: ml_collections.ConfigDict, sr, ranker, dtype) -> Terms:
    """RankSRGAN (Zhang et al. 2019): the rank-content loss, the sum over the batch of
    sigmoid(Ranker(SR)) (a lower score is a better predicted perceptual index; R_bias 0 as published).

    The sum, not the mean, as RankSRGAN's code: the term's weight scales with the batch.
    `loss.rank_grad=False` cuts the gradient (the SSL paper's code runs the ranker under
    torch.no_grad(), so there the term is logged but never trains G).
    """
    x = sr if loss.rank_grad else jax.lax.stop_gradient(sr)
    scores = ranker(x.astype(dtype)).astype(jnp.float32)
    return {"l_g_rank": (float(loss.rank_weight), jnp.sum(jax.nn.sigmoid(scores)))}
