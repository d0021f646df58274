"""The ±SSL ablation pair (see README.md here): a small MSRResNet GAN on T91, with and without SSL.

    get_config("pretrain")   L1-only initialisation shared by both arms (batch 8, no EMA)
    get_config("baseline")   ESRGAN losses (L1 1e-2, VGG16 conv5_3 1.0, RaGAN 5e-3), no SSL
    get_config("ssl")        the same plus SSL with beta = 1000

Budgets are fields (`train.total_steps`, `train.pretrain_steps` ...) so `run.py --gan_steps N`
or `--config.x=y` style overrides change them; both arms always get identical settings but the SSL
weight. Run everything with `python experiments/ssl_ablation/run.py` (it resumes).
"""

import os

from sslsr.train.config import ConfigError, base_config

SHARED = os.environ.get("SSLSR_SHARED_DATA", os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data"))


def gan_ema_decay(gan_steps: int) -> float:
    """EMA decay whose horizon 1 / (1 - decay) is a tenth of the GAN stage, at most ESRGAN's 0.999.

    A fixed 0.999 keeps 0.999**n of the shared initialisation in the EMA generator after n steps
    (74% after 300), which would hide any difference between the arms in runs of a few hundred steps.
    """
    return min(0.999, max(0.0, 1.0 - 10.0 / gan_steps))


def get_config(arm: str = "ssl", *, pretrain_steps: int = 1000, gan_steps: int = 400, seed: int = 0,
               batch_size: int = 4):
    if arm not in ("pretrain", "baseline", "ssl"):
        raise ConfigError(f"experiments/ssl_ablation/config.py: arm must be pretrain, baseline or ssl, got {arm!r}")
    c = base_config()
    c.seed = seed
    c.generator.arch = "MSRResNet"
    c.generator.kwargs = dict(num_in_ch=3, num_out_ch=3, num_feat=32, num_block=6, upscale=4)
    c.data.train = os.path.join(SHARED, "T91", "HR")
    # VGGStyleDiscriminator takes 128 px inputs: 84 of T91's 91 images allow a 128 patch, the
    # other 7 are skipped with a warning.
    c.data.hr_patch = 128
    c.data.val = ""
    c.train.batch_size = batch_size
    c.train.lr_g = 1e-4
    c.train.lr_d = 1e-4
    c.train.ema_decay = gan_ema_decay(gan_steps)
    c.log.every = 25
    c.log.ckpt_every = 100
    c.log.keep = 2
    c.log.val_every = 10**9
    if arm == "pretrain":
        c.seed = 0  # one shared initialisation for every seed of the GAN stage
        c.discriminator.arch = ""
        c.train.total_steps = pretrain_steps
        c.train.batch_size = 8
        # The GAN stage starts from the raw L1 generator: an EMA over a short pretraining lags far
        # behind it (and, with 0.999, still holds most of the random initialisation).
        c.train.ema_decay = 0.0
        c.train.lr_g = 2e-4
        c.train.milestones = (pretrain_steps // 2,)
        c.loss.pixel_weight = 1.0
        c.loss.perceptual_weight = 0.0
        c.loss.gan_weight = 0.0
        c.loss.ssl_weight = 0.0
        return c
    c.discriminator.arch = "VGGStyleDiscriminator"
    c.discriminator.kwargs = dict(num_in_ch=3, num_feat=32, input_size=128)
    c.train.total_steps = gan_steps
    c.train.milestones = (gan_steps // 2,)
    c.loss.pixel_weight = 1e-2
    c.loss.perceptual_weight = 1.0
    c.loss.perceptual_arch = "vgg16"  # VGG19 weights are not obtainable offline (README)
    c.loss.perceptual_layers = {"conv5_3": 1.0}
    c.loss.gan_type = "ragan"
    c.loss.gan_weight = 5e-3
    c.loss.ssl_weight = 1000.0 if arm == "ssl" else 0.0
    return c
