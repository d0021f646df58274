"""The GAN methods of the SSL paper's Table 1 inside the GAN recipe (sslsr/train/recipes/gan_terms.py):
LDL, BebyGAN, SPSR, RankSRGAN and ELAN-GAN — their terms, the networks each term reads, one
jitted step each, and the config checks.

Tiny stand-ins keep it cheap: a 2-conv pixel-shuffle generator (with a gradient branch for SPSR),
a stateless 2-conv discriminator (so its logits can be recomputed outside the step), the real
ranker at 4 channels, and the real ELAN at 2 blocks of 15 channels.
"""

import importlib.util
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from sslsr.losses import gan as gan_losses
from sslsr.losses.bestbuddy import best_buddy_loss
from sslsr.losses.bicubic import imresize
from sslsr.losses.gradient import gradient_map
from sslsr.losses.ldl import artifact_loss
from sslsr.losses.region import region_mask
from sslsr.models import registry
from sslsr.models.layers import pixel_shuffle
from sslsr.train import ConfigError
from sslsr.train.config import base_config, validate
from sslsr.train.recipes import gan, gan_terms
from tests.test_train_loop import tiny

REPO = pathlib.Path(__file__).resolve().parents[1]
METHODS = ("ldl", "bebygan", "spsr", "ranksrgan", "elangan")


class TinyG(nnx.Module):
    """x4 generator: conv -> pixel shuffle; `with_branch` adds an SPSR-like gradient output."""

    def __init__(self, seed: int = 0):
        rngs = nnx.Rngs(seed)
        self.body = nnx.Conv(3, 48, (3, 3), rngs=rngs)
        self.branch = nnx.Conv(3, 48, (3, 3), rngs=rngs)

    def with_branch(self, x):
        return self(x), pixel_shuffle(self.branch(x), 4)

    def __call__(self, x):
        return jax.nn.sigmoid(pixel_shuffle(self.body(x), 4))


class TinyD(nnx.Module):
    """Per-pixel logits, no BatchNorm or spectral norm: its output depends on its params only."""

    def __init__(self, seed: int = 1):
        rngs = nnx.Rngs(seed)
        self.c1 = nnx.Conv(3, 4, (3, 3), strides=2, rngs=rngs)
        self.c2 = nnx.Conv(4, 1, (3, 3), rngs=rngs)

    def __call__(self, x):
        return self.c2(jax.nn.leaky_relu(self.c1(x), 0.2))


def _config(**loss):
    """Only the listed loss terms on; relativistic GAN; EMA 0.9."""
    c = base_config()
    c.loss.update(pixel_weight=0.0, perceptual_weight=0.0, gan_weight=0.0, ssl_weight=0.0)
    c.loss.update(**loss)
    c.train.ema_decay = 0.9
    return c


def _batch(seed=0):
    rng = np.random.default_rng(seed)
    hr = rng.random((2, 32, 32, 3), np.float32)
    hr[:, :, :16] = 0.5  # a flat left half: BebyGAN's region mask is 0 there
    lr = hr.reshape(2, 8, 4, 8, 4, 3).mean(axis=(2, 4))
    mask = (rng.random((2, 32, 32)) > 0.6).astype(np.float32)
    return {"lr": jnp.asarray(lr), "hr": jnp.asarray(hr), "mask": jnp.asarray(mask)}


def _state(d_grad=False, ema_seed=None):
    g = TinyG()
    ts = gan.TrainState(g, optax.adam(1e-3), d=TinyD(), tx_d=optax.adam(1e-3), ema=True,
                        d_grad=TinyD(seed=2) if d_grad else None, tx_d_grad=optax.adam(1e-3) if d_grad else None)
    if ema_seed is not None:  # an EMA generator that differs from G
        nnx.update(ts.ema, nnx.state(TinyG(ema_seed), nnx.Param))
    ts.train()
    return ts


def _step(config, ts, frozen=None):
    """One jitted main step: (state before, state after, metrics as floats)."""
    graphdef, state = nnx.split(ts)
    fgd, fstate = nnx.split(frozen or gan.Frozen())
    before = jax.tree.map(np.asarray, nnx.as_pure(state))
    step = jax.jit(gan.make_train_step(graphdef, fgd, config), static_argnums=4)
    after, metrics = step(state, fstate, _batch(), jnp.int32(0), False)
    return before, jax.tree.map(np.asarray, nnx.as_pure(after)), {k: float(v) for k, v in metrics.items()}


def _finite(metrics, *names):
    for name in names:
        assert name in metrics and np.isfinite(metrics[name]), (name, sorted(metrics))


def _g(params, x):
    return np.asarray(nnx.merge(nnx.graphdef(TinyG()), params)(x))


def _d(params, x):
    return np.asarray(nnx.merge(nnx.graphdef(TinyD()), params)(x))


def test_ldl_artifact_term_reads_the_ema_generator():
    """l_g_artifact is LDL's loss with the EMA generator's output (not G's)."""
    config = _config(pixel_weight=1e-2, artifact_weight=1.0, gan_weight=5e-3)
    before, _, m = _step(config, _state(ema_seed=7))
    _finite(m, "l_g_artifact", "l_g_pix", "l_g_gan", "l_d_real")
    b = _batch()
    sr, sr_ema = _g(before["g"], b["lr"]), _g(before["ema"], b["lr"])
    assert m["l_g_artifact"] == pytest.approx(float(artifact_loss(sr, sr_ema, b["hr"])), rel=1e-4)
    assert m["l_g_artifact"] != pytest.approx(float(artifact_loss(sr, sr, b["hr"])), rel=1e-3)


def test_bebygan_terms_and_region_masked_discriminator_inputs():
    """Best-buddy and back-projection replace L1; G's GAN term and D's update see masked images."""
    config = _config(bestbuddy_weight=1.0, backprojection_weight=1.0, gan_weight=5e-3, gan_region_mask=True)
    before, _, m = _step(config, _state())
    _finite(m, "l_g_bb", "l_g_bp", "l_g_gan", "l_d_real", "l_d_fake")
    assert "l_g_pix" not in m
    b = _batch()
    sr = _g(before["g"], b["lr"])
    mask = np.asarray(region_mask(b["hr"]))
    assert mask[:, :, :10].max() == 0 and mask[:, :, 21:].min() == 1  # the flat half is masked out
    assert m["l_g_bb"] == pytest.approx(float(best_buddy_loss(sr, b["hr"])), rel=1e-4)
    bp = float(np.mean(np.abs(np.asarray(imresize(sr, 0.25)) - np.asarray(b["lr"]))))
    assert m["l_g_bp"] == pytest.approx(bp, rel=1e-4)
    real, fake = _d(before["d"], b["hr"] * mask), _d(before["d"], sr * mask)
    assert m["l_g_gan"] == pytest.approx(float(gan_losses.ragan_generator_loss(real, fake)), rel=1e-4)
    # D's update starts from D's params before this step: its logits are those of the masked batch.
    assert m["out_d_real"] == pytest.approx(float(np.mean(real)), rel=1e-4, abs=1e-6)
    assert m["out_d_fake"] == pytest.approx(float(np.mean(fake)), rel=1e-4, abs=1e-6)
    assert m["out_d_real"] != pytest.approx(float(np.mean(_d(before["d"], b["hr"]))), rel=1e-3)


def test_spsr_gradient_terms_and_second_discriminator_update():
    config = _config(pixel_weight=1e-2, gradient_weight=1e-2, branch_weight=0.5, gan_weight=5e-3,
                     gradient_gan_weight=5e-3)
    before, after, m = _step(config, _state(d_grad=True))
    _finite(m, "l_g_grad", "l_g_branch", "l_g_gan", "l_g_gan_grad", "l_d_real_grad", "l_d_fake_grad",
            "grad_norm_d_grad", "param_norm_d_grad")
    b = _batch()
    sr, branch = (np.asarray(a) for a in nnx.merge(nnx.graphdef(TinyG()), before["g"]).with_branch(b["lr"]))
    hr_grad = np.asarray(gradient_map(b["hr"]))
    assert m["l_g_grad"] == pytest.approx(float(np.mean((np.asarray(gradient_map(sr)) - hr_grad) ** 2)), rel=1e-4)
    assert m["l_g_branch"] == pytest.approx(float(np.mean(np.abs(branch - hr_grad))), rel=1e-4)
    # The gradient-map D sees gradient maps, and is updated by its own optimizer.
    assert m["out_d_real_grad"] == pytest.approx(float(np.mean(_d(before["d_grad"], hr_grad))), rel=1e-4, abs=1e-6)
    assert int(after["opt_d_grad"]["step"]) == 1 and int(after["opt_d"]["step"]) == 1
    d_grad_params = zip(jax.tree.leaves(before["d_grad"]), jax.tree.leaves(after["d_grad"]))
    assert any(not np.allclose(old, new) for old, new in d_grad_params)


def test_rank_term_and_rank_grad_switch():
    """The rank-content term sums sigmoid(Ranker(SR)) over the batch and trains G; rank_grad=False
    keeps its value and cuts its gradient (checked on the term's gradient w.r.t. SR, through which
    all of G's gradient passes: one compiled step instead of two)."""
    ranker = registry.build("RankerVGG12", nf=4, rngs=nnx.Rngs(3))
    ranker.eval()
    b = _batch()
    before, _, m = _step(_config(rank_weight=0.03), _state(), gan.Frozen(ranker=ranker))
    sr = _g(before["g"], b["lr"])
    assert m["l_g_rank"] == pytest.approx(float(jnp.sum(jax.nn.sigmoid(ranker(sr)))), rel=1e-5)
    assert m["grad_norm_g"] > 0  # the rank term is G's only term here
    for flows in (True, False):
        loss = _config(rank_weight=0.03, rank_grad=flows).loss
        term = lambda x, loss=loss: gan_terms.rank_terms(loss, x, ranker, jnp.float32)["l_g_rank"][1]  # noqa: E731
        value, grad = jax.value_and_grad(term)(sr)
        assert float(value) == pytest.approx(m["l_g_rank"], rel=1e-5)
        assert (float(jnp.abs(grad).max()) > 0) == flows


def load_config(name: str, arg: str | None = "demo"):
    spec = importlib.util.spec_from_file_location(name, REPO / "configs" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod, mod.get_config(arg)


def test_elangan_ssl_demo_config_one_step_through_the_recipe():
    """ELAN-GAN-SSL's demo config at test size (as tests/test_train_loop.py's `tiny`, without the
    perceptual term): the recipe builds ELAN and D, and one step computes every term, SSL included."""
    _, c = load_config("elangan_ssl")
    c = tiny(c, steps=1, pretrain=0)
    c.generator.kwargs.update(m_elan=2, c_elan=15)
    c.loss.perceptual_weight = 0.0
    c.loss.ssl_search, c.loss.ssl_window = 7, 3
    validate(c)
    setup = gan.GANRecipe().setup(c)
    (stage,) = setup.stages
    _, metrics = jax.jit(stage.step, static_argnums=4)(setup.state, setup.constants, _batch(), jnp.int32(0), False)
    _finite({k: float(v) for k, v in metrics.items()}, "l_g_pix", "l_g_gan", "l_g_ssl", "l_d_real")


@pytest.mark.parametrize("name", [f"{m}{s}" for m in METHODS for s in ("", "_ssl")]
                         + ["spsr_psnr", "ranksrgan_psnr", "elan_psnr"])
def test_method_configs_document_themselves_and_their_demos_validate(name):
    mod, demo = load_config(name)
    assert all(word in mod.__doc__ for word in ("Run:", "Expected time", "Expected result", ":demo"))
    full = mod.get_config(None)
    assert full.train.total_steps >= 100_000
    assert (full.loss.ssl_weight == 1000.0) == name.endswith("_ssl")
    validate(demo)


def _demo(name="ldl_ssl"):
    return load_config(name)[1]


def _fake_ranker(tmp_path):
    from safetensors.numpy import save_file

    path = tmp_path / "not_a_ranker.safetensors"
    save_file({"conv_first.weight": np.zeros((4, 3, 3, 3), np.float32)}, str(path))
    return str(path)


@pytest.mark.parametrize("name,fields,match", [
    ("bebygan_ssl", {"discriminator.arch": "VGGDiscriminator192", "data.hr_patch": 128},
     "data.hr_patch: 128 does not fit VGGDiscriminator192"),
    ("spsr_ssl", {"generator.kwargs.nb": 19}, "generator.kwargs.nb: 19 RRDB blocks"),
    ("ranksrgan_ssl", {"loss.rank_weights": "FAKE"}, "loss.rank_weights: is not a RankSRGAN ranker"),
    ("ranksrgan_ssl", {"loss.rank_weights": ""}, "loss.rank_weights: RankSRGAN's rank-content loss needs"),
    ("ldl_ssl", {"train.ema_decay": 0.0}, "loss.artifact_weight: .* needs train.ema_decay > 0"),
    ("ldl_ssl", {"loss.branch_weight": 0.5}, "loss.branch_weight: needs the gradient branch"),
    ("bebygan_ssl", {"data.hr_patch": 8, "loss.ssl_weight": 0.0}, "data.hr_patch: 8: the best-buddy"),
    ("bebygan_ssl", {"loss.gan_weight": 0.0}, "loss.gan_region_mask"),
    ("spsr_ssl", {"discriminator.arch": "", "loss.gan_weight": 0.0}, "loss.gradient_gan_weight"),
])
def test_bad_method_configs_fail_with_one_line_naming_the_field(name, fields, match, tmp_path):
    c = _demo(name)
    for key, value in fields.items():
        *parents, leaf = key.split(".")
        node = c
        for p in parents:
            node = node[p]
        node[leaf] = _fake_ranker(tmp_path) if value == "FAKE" else value
    with pytest.raises(ConfigError, match=f"config.{match}") as info:
        validate(c)
    assert "\n" not in str(info.value)
