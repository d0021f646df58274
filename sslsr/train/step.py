"""The training step: one jitted function updates G, then D, then the EMA of G.

`TrainState` bundles the modules and optimizers; `make_train_step` / `make_pretrain_step` return
pure functions `(state, frozen, batch, step) -> (state, metrics)` over `nnx.split` states, jitted by
the caller with shardings (see `sslsr.train.sharding`). Loss terms are switched on and off at trace
time by `LossSpec`, so a weight of 0 removes the term from the compiled graph.

Order of discriminator calls (they matter for BatchNorm statistics and spectral-norm power
iterations, which update D's state on every training-mode forward) follows BasicSR: in the G update
ESRGAN's relativistic loss runs D on the real batch then on the fake one, the plain GAN only on the
fake one; the D update runs D on the real batch then on the (detached) fake one, never on a
concatenation (that would mix the two batches' BatchNorm statistics).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from sslsr.data.usm import usm_sharpen
from sslsr.losses import gan as gan_losses
from sslsr.losses import translational
from sslsr.losses.perceptual import perceptual_loss


@dataclasses.dataclass(frozen=True)
class LossSpec:
    """Static (hashable) description of the G objective; zero weights drop terms at trace time."""

    scale: int = 4
    pixel: float = 0.0
    pixel_gt_usm: bool = False
    perceptual: float = 0.0
    perceptual_gt_usm: bool = False
    perceptual_layers: tuple[tuple[str, float], ...] = ()
    gan: float = 0.0
    gan_type: str = "ragan"
    ssl: float = 0.0
    ssl_search: int = 25
    ssl_window: int = 9
    ssl_h: float = 0.004
    ssl_alpha: float = 1.0
    tc: float = 0.0
    tc_crop: float = 0.875
    lpips: float = 0.0
    compute_dtype: str = "float32"
    ema_decay: float = 0.0

    @classmethod
    def from_config(cls, config) -> "LossSpec":
        lo, t = config.loss, config.train
        return cls(
            scale=config.scale,
            pixel=float(lo.pixel_weight),
            pixel_gt_usm=bool(lo.get("pixel_gt_usm", False)),
            perceptual=float(lo.perceptual_weight),
            perceptual_gt_usm=bool(lo.get("perceptual_gt_usm", False)),
            perceptual_layers=tuple((k, float(v)) for k, v in dict(lo.perceptual_layers).items()),
            gan=float(lo.gan_weight) if config.discriminator.arch else 0.0,
            gan_type=lo.gan_type,
            ssl=float(lo.ssl_weight),
            ssl_search=int(lo.ssl_search),
            ssl_window=int(lo.ssl_window),
            ssl_h=float(lo.ssl_h),
            ssl_alpha=float(lo.ssl_alpha),
            tc=float(lo.tc_weight),
            tc_crop=float(lo.tc_crop),
            lpips=float(lo.lpips_weight),
            compute_dtype=t.compute_dtype,
            ema_decay=float(t.ema_decay),
        )


class TrainState(nnx.Module):
    """G, optional D, their Adam states, the optional EMA generator and the optional L1-stage optimizer.

    `ema` is a full copy of G whose parameters are updated as ema = d * ema + (1 - d) * G after
    every step (BasicSR's `model_ema`: no bias correction, started from the initial G weights).
    """

    def __init__(self, g: nnx.Module, tx_g: optax.GradientTransformation, *, d: nnx.Module | None = None,
                 tx_d: optax.GradientTransformation | None = None, ema: bool = False,
                 tx_pre: optax.GradientTransformation | None = None):
        self.g = g
        self.opt_g = nnx.Optimizer(g, tx_g, wrt=nnx.Param)
        self.d = nnx.data(d)
        self.opt_d = nnx.data(nnx.Optimizer(d, tx_d, wrt=nnx.Param) if d is not None else None)
        self.ema = None
        if ema:
            # Own buffers: the step donates its state, and donating one buffer twice is an error.
            self.ema = nnx.data(nnx.clone(g))
            nnx.update(self.ema, jax.tree.map(jnp.copy, nnx.state(g)))
        self.opt_pre = nnx.data(nnx.Optimizer(g, tx_pre, wrt=nnx.Param) if tx_pre is not None else None)


class Frozen(nnx.Module):
    """Networks that are inputs of the losses but never trained (VGG features, LPIPS)."""

    def __init__(self, vgg: nnx.Module | None = None, lpips: nnx.Module | None = None):
        self.vgg = nnx.data(vgg)
        self.lpips = nnx.data(lpips)


def _cast(tree, dtype):
    """Floating leaves to `dtype` (no-op for float32); used for bf16 compute with f32 master params."""
    if dtype == jnp.float32:
        return tree
    return jax.tree.map(lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)


def _like(new, old):
    """Mutated non-parameter state (BatchNorm statistics, spectral-norm vectors) back to its dtypes."""
    return jax.tree.map(lambda n, o: n.astype(o.dtype), new, old)


def _apply(graphdef, params, rest, x, dtype):
    """Forward of a split module with (cast) params; returns (float32 output, updated rest state)."""
    # tree_map rebuilds the Variables inside the current trace, so the forward may mutate them.
    module = nnx.merge(graphdef, _cast(params, dtype), jax.tree.map(lambda x: x, rest))
    y = module(x.astype(dtype))
    _, new_rest = nnx.state(module, nnx.Param, ...)
    return y.astype(jnp.float32), _like(new_rest, rest)


def _norm(tree) -> jax.Array:
    return optax.tree.norm(jax.tree.map(lambda x: x.astype(jnp.float32), tree))


def ema_update(ema_params, params, decay: float):
    """BasicSR's EMA: ema * decay + params * (1 - decay), leaf by leaf (no bias correction)."""
    return jax.tree.map(lambda e, p: e * decay + p * (1.0 - decay), ema_params, params)


def _generator_losses(spec: LossSpec, g_apply, d_apply, frozen, batch, key, use_tc: bool):
    """G objective. g_apply(x) -> sr; d_apply(x, d_rest) -> (logits, d_rest).

    Returns (total, (terms, sr, d_rest)).
    """
    lr, hr = batch["lr"], batch["hr"]
    dtype = jnp.dtype(spec.compute_dtype)
    sr = g_apply(lr)
    terms: dict[str, jax.Array] = {}
    total = jnp.zeros((), jnp.float32)
    hr_usm = usm_sharpen(hr) if spec.pixel_gt_usm or spec.perceptual_gt_usm else None
    if spec.pixel:
        target = hr_usm if spec.pixel_gt_usm else hr
        terms["l_g_pix"] = jnp.mean(jnp.abs(sr - target))
        total += spec.pixel * terms["l_g_pix"]
    if spec.perceptual:
        target = hr_usm if spec.perceptual_gt_usm else hr
        # VGG has no batch statistics, so SR and HR share one forward pass.
        feats = frozen.vgg(jnp.concatenate([sr, target]).astype(dtype))
        n = sr.shape[0]
        sr_f = {k: v[:n] for k, v in feats.items()}
        hr_f = {k: v[n:] for k, v in feats.items()}
        terms["l_g_percep"] = perceptual_loss(sr_f, hr_f, dict(spec.perceptual_layers))
        total += spec.perceptual * terms["l_g_percep"]
    if spec.lpips:
        terms["l_g_lpips"] = jnp.mean(frozen.lpips(sr.astype(dtype), hr.astype(dtype)).astype(jnp.float32))
        total += spec.lpips * terms["l_g_lpips"]
    d_rest = None
    if spec.gan:
        d_rest = d_apply.rest
        if spec.gan_type == "ragan":
            real, d_rest = d_apply(hr, d_rest)
            fake, d_rest = d_apply(sr, d_rest)
            terms["l_g_gan"] = gan_losses.ragan_generator_loss(real, fake)
        else:
            fake, d_rest = d_apply(sr, d_rest)
            terms["l_g_gan"] = gan_losses.vanilla_generator_loss(fake)
        total += spec.gan * terms["l_g_gan"]
    if spec.ssl:
        from sslsr.losses.ssl import ssl_loss

        terms["l_g_ssl"] = ssl_loss(sr.astype(jnp.float32), hr, batch["mask"], search_size=spec.ssl_search,
                                    window_size=spec.ssl_window, h=spec.ssl_h, alpha=spec.ssl_alpha)
        total += spec.ssl * terms["l_g_ssl"]
    if spec.tc and use_tc:
        size = lr.shape[1]
        crop = int(round(spec.tc_crop * size))
        corner_a, corner_b = translational.corner_pair(key)
        pair = jnp.concatenate([translational.corner_crop(lr, corner_a, crop),
                                translational.corner_crop(lr, corner_b, crop)])
        out = g_apply(pair)  # generators have no batch statistics: one pass for both crops
        n = lr.shape[0]
        terms["l_g_tc"] = translational.translational_loss(out[:n], out[n:], corner_a, corner_b, size=size,
                                                           crop=crop, scale=spec.scale)
        total += spec.tc * terms["l_g_tc"]
    terms["l_g_total"] = total
    return total, (terms, sr, d_rest)


class _DApply:
    """D forward closure with explicit state threading (state mutates on every train forward)."""

    def __init__(self, graphdef, params, rest, dtype):
        self.graphdef, self.params, self.rest, self.dtype = graphdef, params, rest, dtype

    def __call__(self, x, rest):
        return _apply(self.graphdef, self.params, rest, x, self.dtype)


def generator_grads(spec: LossSpec, ts: TrainState, frozen: Frozen, batch, key, use_tc: bool = False):
    """Gradient of the G objective w.r.t. G's parameters (D, VGG, LPIPS fixed).

    Returns (grads, terms, sr, g_rest, d_rest): grads an nnx.State like `nnx.state(ts.g, nnx.Param)`;
    terms the loss terms computed (absent terms were not traced); sr the G output; g_rest / d_rest
    the non-parameter states of G / D after their forwards (None for D without a GAN term).
    """
    dtype = jnp.dtype(spec.compute_dtype)
    g_graph, g_params, g_rest = nnx.split(ts.g, nnx.Param, ...)
    d_apply = None
    if ts.d is not None:
        d_graph, d_params, d_rest0 = nnx.split(ts.d, nnx.Param, ...)
        d_apply = _DApply(d_graph, jax.lax.stop_gradient(d_params), d_rest0, dtype)

    def g_loss(params):
        rest_box = {}

        def g_apply(x):
            y, rest_box["g"] = _apply(g_graph, params, g_rest, x, dtype)
            return y

        total, (terms, sr, d_rest) = _generator_losses(spec, g_apply, d_apply, frozen, batch, key, use_tc)
        return total, (terms, sr, d_rest, rest_box["g"])

    (_, (terms, sr, d_rest, g_rest_new)), grads = jax.value_and_grad(g_loss, has_aux=True)(g_params)
    return grads, terms, sr, g_rest_new, d_rest


def make_train_step(graphdef, frozen_graphdef, spec: LossSpec, seed: int = 0) -> Callable:
    """Returns `step_fn(state, frozen_state, batch, step, use_tc) -> (state, metrics)`.

    state: `nnx.state(TrainState)`; frozen_state: `nnx.state(Frozen)`; batch: {'lr' (B,h,w,3),
    'hr' (B,h*s,w*s,3), 'mask' (B,h*s,w*s) when spec.ssl} float32; step: int32 scalar (the global
    step about to run, used for the random translational crops); use_tc: static bool.
    metrics: every loss term, D's mean logits on real/fake, global grad/param norms of G (and D).
    """
    dtype = jnp.dtype(spec.compute_dtype)

    def step_fn(state, frozen_state, batch, step, use_tc: bool = False):
        ts = nnx.merge(graphdef, state)
        frozen = nnx.merge(frozen_graphdef, _cast(frozen_state, dtype))
        key = jax.random.fold_in(jax.random.key(seed), step)
        g_grads, terms, sr, g_rest_new, d_rest = generator_grads(spec, ts, frozen, batch, key, use_tc)
        metrics = dict(terms)
        metrics["grad_norm_g"] = _norm(g_grads)
        nnx.update(ts.g, g_rest_new)
        ts.opt_g.update(ts.g, g_grads)
        metrics["param_norm_g"] = _norm(nnx.state(ts.g, nnx.Param))

        if ts.d is not None:
            d_graph, d_params, d_rest0 = nnx.split(ts.d, nnx.Param, ...)
            if d_rest is not None:  # D already ran (and updated its state) in the G objective
                d_rest0 = d_rest
            fake_in = jax.lax.stop_gradient(sr)

            def d_loss(params):
                real, rest = _apply(d_graph, params, d_rest0, batch["hr"], dtype)
                fake, rest = _apply(d_graph, params, rest, fake_in, dtype)
                if spec.gan_type == "ragan":
                    l_real, l_fake = gan_losses.ragan_discriminator_loss(real, fake)
                else:
                    l_real, l_fake = gan_losses.vanilla_discriminator_loss(real, fake)
                aux = {"l_d_real": l_real, "l_d_fake": l_fake,
                       "out_d_real": jnp.mean(real), "out_d_fake": jnp.mean(fake)}
                return l_real + l_fake, (aux, rest)

            (_, (d_terms, d_rest_new)), d_grads = jax.value_and_grad(d_loss, has_aux=True)(d_params)
            metrics.update(d_terms)
            metrics["grad_norm_d"] = _norm(d_grads)
            nnx.update(ts.d, d_rest_new)
            ts.opt_d.update(ts.d, d_grads)
            metrics["param_norm_d"] = _norm(nnx.state(ts.d, nnx.Param))

        if ts.ema is not None:
            new = ema_update(nnx.state(ts.ema, nnx.Param), nnx.state(ts.g, nnx.Param), spec.ema_decay)
            nnx.update(ts.ema, new)
        return nnx.state(ts), metrics

    return step_fn


def make_pretrain_step(graphdef, dtype: str = "float32") -> Callable:
    """Returns `step_fn(state, batch) -> (state, metrics)`: one L1 update of G with `opt_pre`."""
    cdtype = jnp.dtype(dtype)

    def step_fn(state, batch):
        ts = nnx.merge(graphdef, state)
        g_graph, g_params, g_rest = nnx.split(ts.g, nnx.Param, ...)

        def loss(params):
            sr, rest = _apply(g_graph, params, g_rest, batch["lr"], cdtype)
            return jnp.mean(jnp.abs(sr - batch["hr"])), rest

        (l_pix, rest), grads = jax.value_and_grad(loss, has_aux=True)(g_params)
        nnx.update(ts.g, rest)
        ts.opt_pre.update(ts.g, grads)
        return nnx.state(ts), {"l_pre_pix": l_pix, "grad_norm_g": _norm(grads)}

    return step_fn
