"""The jitted G/D/EMA step: loss terms switch off at weight 0, terms add up linearly, EMA and D
updates, config validation before compilation."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from sslsr.models import MSRResNet, UNetDiscriminatorSN
from sslsr.train import ConfigError
from sslsr.train.config import base_config, demo, validate
from sslsr.train.recipes.gan import Frozen, TrainState, generator_grads, make_train_step

TERMS = {"pixel_weight": "l_g_pix", "perceptual_weight": "l_g_percep", "gan_weight": "l_g_gan",
         "ssl_weight": "l_g_ssl", "tc_weight": "l_g_tc", "lpips_weight": "l_g_lpips"}


def _all_terms():
    """Every G loss term on (the step reads config.loss, config.train and config.seed)."""
    c = base_config()
    c.loss.perceptual_layers = {"a": 1.0, "b": 0.3}  # assigned: update() would merge with conv5_4
    c.loss.update(pixel_weight=0.5, perceptual_weight=0.7, gan_weight=0.2, gan_type="ragan", ssl_weight=30.0,
                  ssl_search=7, ssl_window=3, ssl_h=0.05, tc_weight=0.9, tc_crop=0.75, lpips_weight=0.4)
    c.train.ema_decay = 0.9
    return c


ALL = _all_terms()


def replace(config, **fields):
    """A copy of `config` with `section.field=value` overrides, e.g. replace(c, **{"loss.ssl_weight": 0})."""
    c = config.copy_and_resolve_references()
    for key, value in fields.items():
        section, name = key.split(".")
        c[section][name] = value
    return c


def loss_off(config, *names):
    return replace(config, **{f"loss.{n}": 0.0 for n in names})


class TinyFeatures(nnx.Module):
    """Stand-in for VGGFeatures: two conv layers, returns a dict of NHWC features."""

    def __init__(self):
        self.c1 = nnx.Conv(3, 4, (3, 3), rngs=nnx.Rngs(5))
        self.c2 = nnx.Conv(4, 4, (3, 3), strides=2, rngs=nnx.Rngs(6))

    def __call__(self, x):
        a = self.c1(x)
        return {"a": a, "b": self.c2(jax.nn.relu(a))}


class TinyLPIPS(nnx.Module):
    """Stand-in for sslsr.metrics.LPIPS: (N,) feature distances."""

    def __init__(self):
        self.f = TinyFeatures()

    def __call__(self, x, y):
        return jnp.mean((self.f(x)["b"] - self.f(y)["b"]) ** 2, axis=(1, 2, 3))


@pytest.fixture(scope="module")
def setup():
    g = MSRResNet(num_feat=4, num_block=1, upscale=4, rngs=nnx.Rngs(0))
    d = UNetDiscriminatorSN(3, 2, rngs=nnx.Rngs(1))
    ts = TrainState(g, optax.adam(1e-3), d=d, tx_d=optax.adam(1e-3), ema=True)
    ts.train()
    rng = np.random.default_rng(0)
    hr = rng.random((2, 32, 32, 3), np.float32)
    lr = hr.reshape(2, 8, 4, 8, 4, 3).mean(axis=(2, 4))
    mask = (rng.random((2, 32, 32)) > 0.6).astype(np.float32)
    batch = {"lr": jnp.asarray(lr), "hr": jnp.asarray(hr), "mask": jnp.asarray(mask)}
    return ts, Frozen(vgg=TinyFeatures(), lpips=TinyLPIPS()), batch


def _grads(spec, setup):
    ts, frozen, batch = setup
    # A fresh copy per call: D's spectral-norm vectors change on every training forward.
    ts = nnx.clone(ts)
    grads, terms, *_ = generator_grads(spec, ts, frozen, batch, jax.random.key(3), use_tc=True)
    return jax.tree.map(np.asarray, nnx.as_pure(grads)), {k: float(v) for k, v in terms.items()}


def test_each_term_switches_off_at_weight_zero(setup):
    """With weight 0 a term is neither returned nor part of the gradient.

    Independent check with 7 gradient evaluations instead of 12: the terms are weighted sums, so
    the gradient removed by switching term T off, ALL - without_T, must be w_T * grad_T, nonzero,
    and these removed parts must add back up to ALL.
    """
    all_grads, all_terms = _grads(ALL, setup)
    assert set(all_terms) == set(TERMS.values()) | {"l_g_total"}
    assert all_terms["l_g_total"] == pytest.approx(
        sum(ALL.loss[n] * all_terms[k] for n, k in TERMS.items()), rel=1e-5)
    removed_sum = jax.tree.map(np.zeros_like, all_grads)
    for off, key in TERMS.items():
        grads, terms = _grads(loss_off(ALL, off), setup)
        assert set(terms) == set(all_terms) - {key}, off
        for k in terms:  # the other terms are unchanged
            assert terms[k] == pytest.approx(all_terms[k] if k != "l_g_total"
                                             else all_terms[k] - ALL.loss[off] * all_terms[key], rel=1e-5), (off, k)
        removed = jax.tree.map(lambda a, b: a - b, all_grads, grads)
        scale = max(float(np.max(np.abs(x))) for x in jax.tree.leaves(all_grads))
        assert max(float(np.max(np.abs(x))) for x in jax.tree.leaves(removed)) > 1e-6 * scale, f"{off}: no gradient"
        removed_sum = jax.tree.map(np.add, removed_sum, removed)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-3, atol=1e-5 * scale), removed_sum, all_grads)


def test_step_updates_g_d_and_ema(setup):
    ts, frozen, batch = setup
    ts = nnx.clone(ts)
    spec = loss_off(ALL, "perceptual_weight", "lpips_weight", "ssl_weight", "tc_weight")
    graphdef, state = nnx.split(ts)
    fgd, fstate = nnx.split(frozen)
    g0 = jax.tree.map(np.asarray, nnx.as_pure(state["g"]))
    d_u0 = np.asarray(nnx.as_pure(state["d"])["conv1"]["weight_u"])
    step = jax.jit(make_train_step(graphdef, fgd, spec), static_argnums=4)
    state, m = step(state, fstate, batch, jnp.int32(0), False)
    for k in ("l_g_pix", "l_g_gan", "l_d_real", "l_d_fake", "out_d_real", "out_d_fake", "grad_norm_g",
              "grad_norm_d", "param_norm_g", "param_norm_d", "l_g_total"):
        assert k in m and np.isfinite(float(m[k])), k
    g1 = jax.tree.map(np.asarray, nnx.as_pure(state["g"]))
    ema1 = jax.tree.map(np.asarray, nnx.as_pure(state["ema"]))
    # EMA started at the initial G and moved by (1 - decay) towards the new G: no bias correction.
    jax.tree.map(lambda e, a, b: np.testing.assert_allclose(e, 0.9 * a + 0.1 * b, rtol=1e-6, atol=1e-7), ema1, g0, g1)
    assert any(np.any(a != b) for a, b in zip(jax.tree.leaves(g0), jax.tree.leaves(g1)))
    # D ran 1 (ragan G: real + fake = 2) + 2 training forwards, each a power iteration on u.
    assert not np.allclose(np.asarray(nnx.as_pure(state["d"])["conv1"]["weight_u"]), d_u0)
    assert int(nnx.as_pure(state["opt_g"])["step"]) == 1 and int(nnx.as_pure(state["opt_d"])["step"]) == 1


def test_bf16_compute_keeps_float32_params(setup):
    ts, frozen, batch = setup
    pixel_only = loss_off(ALL, "perceptual_weight", "gan_weight", "ssl_weight", "tc_weight", "lpips_weight")
    grads, terms = _grads(replace(pixel_only, **{"train.compute_dtype": "bfloat16"}), setup)
    ref, ref_terms = _grads(pixel_only, setup)
    assert all(leaf.dtype == np.float32 for leaf in jax.tree.leaves(grads))
    assert terms["l_g_pix"] == pytest.approx(ref_terms["l_g_pix"], rel=2e-2)


def _demo_config():
    c = base_config()
    demo(c)
    return c


@pytest.mark.parametrize("field,value,match", [
    ("train.batch_size", 6, "train.batch_size"),
    ("data.hr_patch", 66, "data.hr_patch"),
    ("loss.gan_type", "wgan", "loss.gan_type"),
    ("loss.perceptual_layers", {"conv9_9": 1.0}, "loss.perceptual_layers"),
    ("loss.tc_weight", 1.0, "loss.tc_crop"),
    ("generator.arch", "EDSR", "generator.arch"),
    ("train.milestones", (300, 100), "train.milestones"),
    ("loss.ssl_search", 24, "loss.ssl_search"),
    ("generator.init_from", "/nonexistent.pth", "generator.init_from"),
    ("train.compute_dtype", "float16", "train.compute_dtype"),
    ("loss.pixel_gt_usm", True, "data.hr_patch: 24 too small for the 51-tap USM"),
    ("data.degradation", "realesrgan", "data.hr_patch: 24 too small for the USM sharpening"),
])
def test_invalid_configs_name_the_field(field, value, match):
    c = _demo_config()
    if field == "loss.tc_weight":
        c.loss.tc_crop = 0.3
    if field in ("loss.pixel_gt_usm", "data.degradation"):  # the 51-tap USM blur needs patches over 25 px
        c.loss.ssl_weight = 0.0
        c.data.hr_patch = 24
    section, name = field.split(".")
    with c.unlocked():
        c[section][name] = value
    with pytest.raises(ConfigError, match=f"config.{match}"):
        validate(c, num_devices=4 if field == "train.batch_size" else 1)


def test_vgg19_without_weights_fails_fast():
    c = base_config()
    c.generator.init_from = ""
    with pytest.raises(ConfigError, match="config.loss.perceptual_weights"):
        validate(c)


def test_usm_targets_change_only_their_terms(setup):
    """pixel_gt_usm / perceptual_gt_usm swap the L1 / perceptual target for usm(HR); GAN and SSL keep HR."""
    from sslsr.data.usm import usm_sharpen

    ts, frozen, batch = setup
    spec = loss_off(ALL, "tc_weight", "lpips_weight")
    _, plain = _grads(spec, setup)
    _, pix = _grads(replace(spec, **{"loss.pixel_gt_usm": True}), setup)
    _, percep = _grads(replace(spec, **{"loss.perceptual_gt_usm": True}), setup)
    sr = np.asarray(nnx.clone(ts).g(batch["lr"]))
    target = np.asarray(usm_sharpen(batch["hr"]))
    assert pix["l_g_pix"] == pytest.approx(float(np.mean(np.abs(sr - target))), rel=1e-5)
    assert pix["l_g_pix"] != pytest.approx(plain["l_g_pix"], rel=1e-3)
    assert percep["l_g_percep"] != pytest.approx(plain["l_g_percep"], rel=1e-3)
    for key in ("l_g_gan", "l_g_ssl", "l_g_percep"):
        assert pix[key] == pytest.approx(plain[key], rel=1e-6), key
    for key in ("l_g_gan", "l_g_ssl", "l_g_pix"):
        assert percep[key] == pytest.approx(plain[key], rel=1e-6), key
