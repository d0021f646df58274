"""The ResShift recipe (`config.recipe = 'resshift'`): residual-shifting diffusion in the latent space
of a frozen autoencoder, optionally with SSL on the decoded prediction.

Per step (ResShift's `TrainerDifIR.training_step` + `GaussianDiffusion.training_losses`): encode
the HR patch (x_0) and the bicubic-upsampled LR patch (y) with the frozen autoencoder, draw
t ~ U{0, .., T-1} and eps ~ N(0, I) per sample from `fold_in(seed, step)`, form
x_t = x_0 + eta_t (y - x_0) + kappa sqrt(eta_t) eps, predict x_0 from x_t / sqrt(kappa^2 eta_t + 1)
conditioned on the LR image, and take ResShift's loss, the mean squared error of the predicted
latent (`l_mse`). Adam (ResShift: AdamW without weight decay) at `train.lr_g` with a linear
warm-up over `train.warmup_steps` (then `train.milestones`, none in ResShift), EMA of the denoiser.

SSL (`loss.ssl_weight` = beta > 0 or `loss.pixel_weight` = gamma > 0): the predicted latent is
decoded by the frozen decoder (straight-through quantiser, gradient flowing through the decoder
into the denoiser), mapped from [-1, 1] to [0, 1], and

    loss = l_mse + gamma * L1(decoded, HR) + beta * SSL(decoded, HR, mask)

with decoded and HR both in [0, 1] (the SSL paper's StableSR code compares a [-1, 1] decode with a
[0, 1] HR; not reproduced). This is the paper's Eq. 7 applied to ResShift, designed here: the
paper's code ships DM-SSL for StableSR only. Defaults follow the paper's text (beta 1, gamma 0.1,
alpha 1); its StableSR configs weigh SSL's KL and L1 parts 0.5 each (`configs/SSL/base.yaml`) or
500 each (`StableSRISSLStage1_ks25_kc9_h0.004_1000.yml`): beta = 0.5 (or 500) with alpha = 1
reproduces those. The mask defaults to the stride-3 pattern (`loss.ssl_mask_stride = 3`): the
paper's DM code applies it (its GAN code does not). The decoded image is unclipped (clipping would
zero the gradient of out-of-range pixels); SSL and L1 run in float32 whatever
`train.compute_dtype` the denoiser and autoencoder run in.

The frozen autoencoder is part of the checkpointed state (item 'autoencoder'), so a workdir is
self-contained: `sslsr.diffusion.open_sampler(workdir)` (eval.py, `python -m sslsr.upscale`)
needs no other file.
"""

from __future__ import annotations

import inspect
import os

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx

from sslsr.diffusion import networks, schedule as sched
from sslsr.diffusion.sampler import CHOP_SIZE, CHOP_STRIDE, decode, degraded_latent, encode
from sslsr.losses.ssl import ssl_loss
from sslsr.models import registry
from sslsr.models.precision import cast_floating, compute_dtype
from sslsr.train import config as config_lib
from sslsr.train import schedules
from sslsr.train.config import error
from sslsr.train.recipe import Setup, Stage
from sslsr.train.recipes.gan import TrainState, _adam, accumulate, ema_update, micro_batches

# ResShift's configs/realsr_swinunet_realesrgan256.yaml (model.params / autoencoder.params).
RESSHIFT_UNET = dict(
    image_size=64, in_channels=3, model_channels=160, out_channels=3, attention_resolutions=(64, 32, 16, 8),
    dropout=0, channel_mult=(1, 2, 2, 4), num_res_blocks=(2, 2, 2, 2), conv_resample=True, dims=2,
    use_fp16=False, num_head_channels=32, use_scale_shift_norm=True, resblock_updown=False, swin_depth=2,
    swin_embed_dim=192, window_size=8, mlp_ratio=4, cond_lq=True, lq_size=64)
VQ_F4 = dict(embed_dim=3, n_embed=8192, double_z=False, z_channels=3, resolution=256, in_channels=3, out_ch=3,
             ch=128, ch_mult=(1, 2, 4), num_res_blocks=2, attn_resolutions=(), dropout=0.0, padding_mode="zeros")


def base_config() -> ml_collections.ConfigDict:
    """ResShift's realsr x4 run (`realsr_swinunet_realesrgan256`), SSL off; every field it reads.

    The GAN-only groups of `sslsr.train.config.base_config` are replaced: no discriminator, and a
    `loss` group with the DM-SSL terms only.
    """
    c = config_lib.base_config()
    c.recipe = "resshift"
    del c["discriminator"]
    c.generator.arch = "ResShiftUNet"
    c.generator.kwargs = ml_collections.ConfigDict(RESSHIFT_UNET)
    # '' trains from scratch; a ResShift .pth (e.g. resshift_realsrx4_s15_v1.pth) fine-tunes it.
    c.generator.init_from = ""

    c.autoencoder = ml_collections.ConfigDict()
    c.autoencoder.arch = "VQAutoencoder"  # '' : pixel space (the "latent" is the image in [-1, 1])
    c.autoencoder.kwargs = ml_collections.ConfigDict(VQ_F4)
    c.autoencoder.weights = "weights/autoencoder_vq_f4.pth"  # ResShift's VQ-f4 (user-supplied)

    c.diffusion = ml_collections.ConfigDict()
    c.diffusion.sf = 4  # the SR factor; latent: must equal factor x image_size / lq_size
    c.diffusion.steps = 15  # T
    c.diffusion.kappa = 2.0
    c.diffusion.min_noise_level = 0.04  # sqrt(eta_1) = min(this / kappa, this)
    c.diffusion.etas_end = 0.99  # sqrt(eta_T)
    c.diffusion.power = 0.3  # the 'exponential' schedule's time warp
    c.diffusion.sample_steps = 0  # steps of the sampler (validation, eval, upscale); 0: all T
    c.diffusion.sample_seed = 12345  # ResShift's inference seed
    c.diffusion.chop_size = CHOP_SIZE  # LR pixels: larger images are sampled in patches ...
    c.diffusion.chop_stride = CHOP_STRIDE  # ... this far apart, overlaps averaged

    c.loss = ml_collections.ConfigDict()
    c.loss.pixel_weight = 0.0  # gamma: L1(decoded x0 prediction, HR) in [0, 1]
    c.loss.ssl_weight = 0.0  # beta: SSL(decoded x0 prediction, HR, mask)
    c.loss.ssl_alpha = 1.0
    c.loss.ssl_search = 25
    c.loss.ssl_window = 9
    c.loss.ssl_h = 0.004
    c.loss.ssl_mask_stride = 3  # the paper's DM code: every third edge pixel

    c.data.hr_patch = 256
    c.data.degradation = "realesrgan"
    c.train.total_steps = 300_000
    c.train.batch_size = 64
    c.train.lr_g = 5e-5
    c.train.betas = (0.9, 0.999)  # torch AdamW's defaults (weight decay 0)
    c.train.warmup_steps = 5000  # linear from lr_g / warmup_steps to lr_g
    c.train.milestones = ()
    c.train.ema_decay = 0.999
    c.log.every = 200
    c.log.val_every = 10_000
    c.log.ckpt_every = 10_000
    c.log.val_tile = 0  # whole images: the sampler chops them itself (diffusion.chop_size)
    return c


def _kwarg(arch: str, kwargs, name: str):
    """A constructor keyword as the module will see it: given, else the constructor's default."""
    if name in kwargs:
        return kwargs[name]
    ctor = registry.architecture(arch).constructor
    target = ctor.__init__ if isinstance(ctor, type) else ctor
    param = inspect.signature(target).parameters.get(name)
    return None if param is None else param.default


def latent_factor(c: ml_collections.ConfigDict) -> int:
    """Image pixels per latent pixel: the autoencoder's 2^(len(ch_mult) - 1), 1 in pixel space."""
    if not c.autoencoder.arch:
        return 1
    return 2 ** (len(_kwarg(c.autoencoder.arch, c.autoencoder.kwargs, "ch_mult")) - 1)


def _schedule(t: ml_collections.ConfigDict) -> optax.Schedule:
    """ResShift's linear warm-up (update k uses k / warmup_steps x lr), then the multistep decay."""
    decay = schedules.multistep(float(t.lr_g), t.milestones, t.gamma)
    warmup = int(t.warmup_steps)
    if not warmup:
        return decay
    return lambda count: decay(count) * jnp.minimum((jnp.asarray(count, jnp.float32) + 1.0) / warmup, 1.0)


class DiffusionState(TrainState):
    """The denoiser `g`, its Adam state, its EMA copy, and the frozen `autoencoder` (checkpointed so
    that the workdir is self-contained; never updated)."""

    def __init__(self, g: nnx.Module, tx: optax.GradientTransformation, *, ema: bool,
                 autoencoder: nnx.Module | None):
        super().__init__(g, tx, ema=ema)
        self.autoencoder = nnx.data(autoencoder)


def eval_networks(state: nnx.State) -> dict:
    """{'unet': the EMA (else trained) denoiser state, 'autoencoder': ...}: what the sampler runs
    (`ResShiftSampler.with_state`) and what `<workdir>/best` keeps."""
    unet = state["ema"] if "ema" in state and len(jax.tree.leaves(state["ema"])) else state["g"]
    out = {"unet": unet}
    if "autoencoder" in state and len(jax.tree.leaves(state["autoencoder"])):
        out["autoencoder"] = state["autoencoder"]
    return out


def decoded_terms(autoencoder, pred: jax.Array, hr: jax.Array, mask: jax.Array | None,
                  loss: ml_collections.ConfigDict, dtype=jnp.float32) -> tuple[jax.Array, dict]:
    """The image-space terms of the x_0 prediction: gamma * L1 + beta * SSL (zero weights not traced).

    pred: (B, H/f, W/f, C) predicted latent (gradient flows through the frozen decoder, run in
    `dtype`); hr: (B, H, W, 3) in [0, 1]; mask: (B, H, W) SSL mask (None when beta = 0).
    The decoded image is mapped from [-1, 1] to [0, 1] and cast to float32 before L1 and SSL.
    Returns (weighted sum, {'l_pix': L1, 'l_ssl': SSL} for the terms that are on).
    """
    gamma, beta = float(loss.pixel_weight), float(loss.ssl_weight)
    img = (decode(autoencoder, pred.astype(dtype)).astype(jnp.float32) + 1.0) / 2.0
    terms, total = {}, jnp.zeros((), jnp.float32)
    if gamma:
        terms["l_pix"] = jnp.mean(jnp.abs(img - hr))
        total += gamma * terms["l_pix"]
    if beta:
        terms["l_ssl"] = ssl_loss(img, hr, mask, search_size=int(loss.ssl_search), window_size=int(loss.ssl_window),
                                  h=float(loss.ssl_h), alpha=float(loss.ssl_alpha))
        total += beta * terms["l_ssl"]
    return total, terms


def make_train_step(graphdef, config: ml_collections.ConfigDict):
    """Returns `step_fn(state, constants, batch, step, static) -> (state, metrics)` (see module doc).

    batch: {'lr' (B, h, w, 3), 'hr' (B, h*s, w*s, 3), 'mask' (B, h*s, w*s) when SSL is on} float32
    in [0, 1]. metrics: l_mse, l_pix and l_ssl when on, l_total, grad_norm_g, param_norm_g.
    """
    s = networks.schedule_of(config, sample_steps=config.diffusion.steps)  # training uses all T steps
    dtype = compute_dtype(config.train.compute_dtype)
    sf = config_lib.scale(config)
    seed, k = int(config.seed), int(config.train.grad_accum)
    lo = config.loss
    gamma, beta = float(lo.pixel_weight), float(lo.ssl_weight)
    ema_decay = float(config.train.ema_decay)

    def step_fn(state, constants, batch, step, static):
        del constants, static
        ts = nnx.merge(graphdef, state)
        ae = None
        if ts.autoencoder is not None:
            ae_def, ae_state = nnx.split(ts.autoencoder)
            ae = nnx.merge(ae_def, cast_floating(ae_state, dtype))
        key_t, key_noise = jax.random.split(jax.random.fold_in(jax.random.key(seed), step))
        hr = batch["hr"]
        b = hr.shape[0]
        # The process' end points, constants of the objective (the autoencoder is frozen).
        z0 = jax.lax.stop_gradient(encode(ae, (hr * 2.0 - 1.0).astype(dtype)).astype(jnp.float32))
        y, lq = degraded_latent(ae, (batch["lr"] * 2.0 - 1.0).astype(dtype), sf)
        y, lq = jax.lax.stop_gradient(y.astype(jnp.float32)), jax.lax.stop_gradient(lq)
        t = jax.random.randint(key_t, (b,), 0, s.num_steps)
        xt = sched.q_sample(s, z0, y, t, jax.random.normal(key_noise, z0.shape))
        inputs = {"x": sched.scale_input(s, xt, t), "t": t, "lq": lq, "z0": z0, "hr": hr}
        if beta:
            inputs["mask"] = batch["mask"]
        g_def, g_params, g_rest = nnx.split(ts.g, nnx.Param, ...)

        def grads_of(carry, mb):
            def objective(params):
                unet = nnx.merge(g_def, cast_floating(params, dtype), g_rest)
                pred = unet(mb["x"].astype(dtype), mb["t"], mb["lq"]).astype(jnp.float32)
                terms = {"l_mse": jnp.mean(jnp.square(pred - mb["z0"]))}
                total = terms["l_mse"]
                if gamma or beta:
                    image_total, image = decoded_terms(ae, pred, mb["hr"], mb.get("mask"), lo, dtype)
                    total += image_total
                    terms.update(image)
                terms["l_total"] = total
                return total, terms

            (_, terms), grads = jax.value_and_grad(objective, has_aux=True)(g_params)
            return grads, carry, terms

        if k == 1:
            grads, _, terms = grads_of(None, inputs)
        else:
            grads, _, terms = accumulate(grads_of, None, micro_batches(inputs, k), k)
            terms = jax.tree.map(lambda v: jnp.mean(v, axis=0), terms)
        metrics = dict(terms)
        metrics["grad_norm_g"] = optax.tree.norm(grads)
        ts.opt_g.update(ts.g, grads)
        metrics["param_norm_g"] = optax.tree.norm(nnx.state(ts.g, nnx.Param))
        if ts.ema is not None:
            nnx.update(ts.ema, ema_update(nnx.state(ts.ema, nnx.Param), nnx.state(ts.g, nnx.Param), ema_decay))
        return nnx.state(ts), metrics

    return step_fn


class ResShiftRecipe:
    """`sslsr.train.recipe.Recipe` for ResShift (+ SSL through the decoder)."""

    role = registry.DENOISER

    def scale(self, c: ml_collections.ConfigDict) -> int:
        # A denoiser has no factor of its own: ResShift's `sf` (validate checks it against the
        # autoencoder's factor and the UNet's sizes).
        if c.diffusion.sf not in (2, 3, 4):
            raise error("diffusion.sf", f"must be 2, 3 or 4, got {c.diffusion.sf}")
        return int(c.diffusion.sf)

    def validate(self, c: ml_collections.ConfigDict) -> None:
        a, g, d, lo = c.autoencoder, c.generator, c.diffusion, c.loss
        autoencoders = registry.names(registry.AUTOENCODER) + ("",)
        if a.arch not in autoencoders:
            raise error("autoencoder.arch", f"must be one of {autoencoders} ('' = pixel space), got {a.arch!r}")
        if a.arch and not os.path.isfile(os.path.expanduser(a.weights)):
            raise error("autoencoder.weights", f"{a.weights!r} is not a file (ResShift's autoencoder_vq_f4.pth)")
        if g.init_from and not os.path.isfile(os.path.expanduser(g.init_from)):
            raise error("generator.init_from",
                        f"{g.init_from!r} is not a weights file (e.g. resshift_realsrx4_s15_v1.pth)")
        unet = lambda name: _kwarg(g.arch, g.kwargs, name)  # noqa: E731
        channels = _kwarg(a.arch, a.kwargs, "embed_dim") if a.arch else 3
        for name in ("in_channels", "out_channels"):
            if unet(name) != channels:
                where = f"the autoencoder's latent has {channels} channels (autoencoder.kwargs.embed_dim)" \
                    if a.arch else "pixel space has 3 channels"
                raise error(f"generator.kwargs.{name}", f"{unet(name)}, but {where}")
        f, p = latent_factor(c), c.data.hr_patch
        lq_size, image_size = unet("lq_size"), unet("image_size")
        if a.arch and f * image_size != d.sf * lq_size:
            raise error("diffusion.sf", f"{d.sf}, but the autoencoder's factor {f} with the denoiser's lq_size/"
                        f"image_size = {lq_size}/{image_size} gives x{f * image_size / lq_size:g}")
        if not a.arch and lq_size != image_size:
            raise error("generator.kwargs.lq_size", f"{lq_size}: a pixel-space denoiser is conditioned on the "
                        f"upsampled LR, so lq_size must equal image_size={image_size}")
        if p % f:
            raise error("data.hr_patch", f"{p} is not a multiple of the autoencoder's factor {f}")
        if not 2 <= d.steps:
            raise error("diffusion.steps", f"must be >= 2, got {d.steps}")
        if not 0 <= d.sample_steps <= d.steps:
            raise error("diffusion.sample_steps",
                        f"must be in [0, diffusion.steps={d.steps}] (0: all), got {d.sample_steps}")
        for field in ("kappa", "min_noise_level", "power"):
            if not d[field] > 0:
                raise error(f"diffusion.{field}", f"must be > 0, got {d[field]}")
        if not min(d.min_noise_level / d.kappa, d.min_noise_level) < d.etas_end <= 1:
            raise error("diffusion.etas_end", f"must be in (sqrt(eta_1), 1], got {d.etas_end}")
        if not 0 < d.chop_stride <= d.chop_size:
            raise error("diffusion.chop_stride",
                        f"must be in (0, diffusion.chop_size={d.chop_size}], got {d.chop_stride}")
        for field in ("pixel_weight", "ssl_weight", "ssl_alpha"):
            if not lo[field] >= 0:
                raise error(f"loss.{field}", f"must be >= 0, got {lo[field]}")
        if lo.ssl_weight > 0:
            config_lib.check_ssl(lo, p)
        if c.train.pretrain_steps:
            raise error("train.pretrain_steps", "must be 0: the ResShift recipe has no L1 stage")
        if c.train.warmup_steps < 0:
            raise error("train.warmup_steps", f"must be >= 0, got {c.train.warmup_steps}")

    def loader_options(self, config: ml_collections.ConfigDict) -> dict:
        return {"use_mask": bool(config.loss.ssl_weight), "mask_stride": config.loss.ssl_mask_stride}

    def setup(self, config: ml_collections.ConfigDict) -> Setup:
        # Read at trace time by the step: frozen, so the compiled graph and the config agree.
        config = ml_collections.FrozenConfigDict(config)
        t = config.train
        unet = networks.init_unet(config)
        latent = config.data.hr_patch // latent_factor(config)
        multiple = getattr(unet, "size_multiple", 1)
        if latent % multiple:
            raise error("data.hr_patch", f"{config.data.hr_patch} gives a {latent}px latent, not a multiple of the "
                        f"denoiser's {multiple} (its levels and Swin windows)")
        autoencoder = networks.load_autoencoder(config)
        ts = DiffusionState(unet, _adam(t, _schedule(t)), ema=t.ema_decay > 0, autoencoder=autoencoder)
        ts.train()
        if autoencoder is not None:
            autoencoder.eval()
        graphdef, state = nnx.split(ts)
        upscaler = networks.make_sampler(config, ts.g, autoencoder)
        stage = Stage("resshift", 0, t.total_steps, make_train_step(graphdef, config), eval_state=eval_networks)
        return Setup(state=state, constants={}, stages=[stage], upscaler=upscaler)


def demo(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Shrinks a ResShift config to minutes on 2 CPU cores: a pixel-space model (no autoencoder: the
    "latent" is the 64 px HR patch in [-1, 1], the denoiser conditioned on the bicubic-upsampled LR)
    with a 2-level, 32-channel ResShiftUNet, on the photos bundled with scikit-image; same schedule
    (T = 15, kappa 2), same loss terms as the full run."""
    c.generator.init_from = ""
    c.generator.kwargs = ml_collections.ConfigDict(dict(
        RESSHIFT_UNET, image_size=64, lq_size=64, model_channels=32, channel_mult=(1, 2), num_res_blocks=(1, 1),
        attention_resolutions=(32,), swin_depth=1, swin_embed_dim=32, num_head_channels=16, mlp_ratio=2))
    c.autoencoder.arch = ""
    c.autoencoder.weights = ""
    c.data.train = "demo"
    c.data.val = "demo"
    c.data.val_max_images = 2
    c.data.hr_patch = 64
    c.data.degradation = "bicubic"
    c.train.batch_size = 4
    c.train.total_steps = 300
    c.train.lr_g = 5e-4
    c.train.warmup_steps = 20
    c.train.ema_decay = 0.99
    c.diffusion.sample_steps = 4  # validation: 4 of the 15 steps (respaced, as ResShift's SpacedDiffusion)
    c.diffusion.chop_size = 128
    c.diffusion.chop_stride = 112
    c.log.every = 20
    c.log.val_every = 300
    c.log.ckpt_every = 100
    c.log.keep = 2
    return c
