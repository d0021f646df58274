"""GAN / perceptual / translational losses, LR schedules and EMA against independent references
(PyTorch's BCEWithLogits and LR schedulers, NumPy formulas written from the BasicSR code)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sslsr.losses import gan, perceptual, translational
from sslsr.train import schedules
from sslsr.train.recipes.gan import ema_update


def _np_bce(x, t):
    p = 1 / (1 + np.exp(-x.astype(np.float64)))
    return float(np.mean(-(t * np.log(p) + (1 - t) * np.log(1 - p))))


@pytest.fixture
def logits():
    rng = np.random.default_rng(0)
    return rng.normal(size=(6, 1)).astype(np.float32) * 3, rng.normal(size=(6, 1)).astype(np.float32) * 3


def test_bce_matches_numpy_and_is_stable():
    x = np.array([-3.0, -0.5, 0.0, 0.7, 4.0], np.float32)
    for t in (0.0, 1.0):
        assert float(gan.bce_with_logits(jnp.asarray(x), t)) == pytest.approx(_np_bce(x, t), rel=1e-5)
    # Large logits: the naive log(sigmoid) form overflows to inf, the stable one gives ~100.
    assert float(gan.bce_with_logits(jnp.asarray([100.0]), 0.0)) == pytest.approx(100.0, rel=1e-5)


def test_ragan_matches_basicsr_formulas(logits):
    real, fake = logits
    # BasicSR ESRGANModel: G: (bce(real - mean(fake), 0) + bce(fake - mean(real), 1)) / 2
    expect_g = 0.5 * (_np_bce(real - fake.mean(), 0.0) + _np_bce(fake - real.mean(), 1.0))
    assert float(gan.ragan_generator_loss(jnp.asarray(real), jnp.asarray(fake))) == pytest.approx(expect_g, rel=1e-5)
    # D: 0.5 * bce(real - mean(fake), 1), 0.5 * bce(fake - mean(real), 0)
    lr_, lf = gan.ragan_discriminator_loss(jnp.asarray(real), jnp.asarray(fake))
    assert float(lr_) == pytest.approx(0.5 * _np_bce(real - fake.mean(), 1.0), rel=1e-5)
    assert float(lf) == pytest.approx(0.5 * _np_bce(fake - real.mean(), 0.0), rel=1e-5)


def test_ragan_gradients_match_torch_two_backward_passes(logits):
    torch = pytest.importorskip("torch")
    real, fake = logits
    bce = torch.nn.BCEWithLogitsLoss()
    # BasicSR's D update: two backward passes, each detaching the other batch's mean.
    r = torch.tensor(real, requires_grad=True)
    f = torch.tensor(fake, requires_grad=True)
    (bce(r - f.detach().mean(), torch.ones_like(r)) * 0.5).backward()
    (bce(f - r.detach().mean(), torch.zeros_like(f)) * 0.5).backward()
    gr, gf = jax.grad(lambda a, b: sum(gan.ragan_discriminator_loss(a, b)), argnums=(0, 1))(
        jnp.asarray(real), jnp.asarray(fake))
    np.testing.assert_allclose(gr, r.grad.numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(gf, f.grad.numpy(), rtol=1e-5, atol=1e-7)
    # G update: D(real) detached, gradient only through the fake logits.
    r = torch.tensor(real)
    f = torch.tensor(fake, requires_grad=True)
    ((bce(r - f.mean(), torch.zeros_like(r)) + bce(f - r.mean(), torch.ones_like(f))) / 2).backward()
    g_real, g_fake = jax.grad(gan.ragan_generator_loss, argnums=(0, 1))(jnp.asarray(real), jnp.asarray(fake))
    np.testing.assert_allclose(g_fake, f.grad.numpy(), rtol=1e-5, atol=1e-7)
    assert not np.any(np.asarray(g_real))


def test_vanilla_gan(logits):
    real, fake = logits
    assert float(gan.vanilla_generator_loss(jnp.asarray(fake))) == pytest.approx(_np_bce(fake, 1.0), rel=1e-5)
    lr_, lf = gan.vanilla_discriminator_loss(jnp.asarray(real), jnp.asarray(fake))
    assert float(lr_) == pytest.approx(_np_bce(real, 1.0), rel=1e-5)
    assert float(lf) == pytest.approx(_np_bce(fake, 0.0), rel=1e-5)


def test_perceptual_loss_weights_and_criterion():
    rng = np.random.default_rng(1)
    a = {k: rng.normal(size=(2, 4, 4, 3)).astype(np.float32) for k in ("conv1_2", "conv5_4")}
    b = {k: rng.normal(size=(2, 4, 4, 3)).astype(np.float32) for k in ("conv1_2", "conv5_4")}
    weights = {"conv1_2": 0.1, "conv5_4": 1.0}
    expect = sum(w * np.mean(np.abs(a[k] - b[k])) for k, w in weights.items())
    assert float(perceptual.perceptual_loss(a, b, weights)) == pytest.approx(expect, rel=1e-5)
    expect2 = sum(w * np.mean((a[k] - b[k]) ** 2) for k, w in weights.items())
    assert float(perceptual.perceptual_loss(a, b, weights, "l2")) == pytest.approx(expect2, rel=1e-5)
    # HR features are constants.
    g = jax.grad(lambda y: perceptual.perceptual_loss(a, {"conv1_2": y, "conv5_4": b["conv5_4"]}, weights))(b["conv1_2"])
    assert not np.any(np.asarray(g))
    with pytest.raises(ValueError, match="criterion"):
        perceptual.perceptual_loss(a, b, weights, "l3")


def test_translational_loss_zero_for_shift_equivariant_sr_and_positive_otherwise():
    rng = np.random.default_rng(2)
    lr = jnp.asarray(rng.random((2, 16, 16, 3), np.float32))
    size, crop, scale = 16, 14, 2
    up = lambda x: jnp.repeat(jnp.repeat(x, scale, 1), scale, 2)  # noqa: E731  shift-equivariant "SR"
    # Zero-padded blur: output near the crop border depends on where the crop starts.
    k = jnp.ones((3, 3, 1, 1), jnp.float32) / 9

    def blur(x):
        x = jnp.transpose(x, (0, 3, 1, 2)).reshape(-1, 1, x.shape[1], x.shape[2])
        y = jax.lax.conv(x, jnp.transpose(k, (3, 2, 0, 1)), (1, 1), "SAME")
        return up(y.reshape(2, 3, x.shape[2], x.shape[3]).transpose(0, 2, 3, 1))

    for i in range(8):
        ca, cb = translational.corner_pair(jax.random.key(i))
        assert not bool(jnp.all(ca == cb))
        a, b = translational.corner_crop(lr, ca, crop), translational.corner_crop(lr, cb, crop)
        assert float(translational.translational_loss(up(a), up(b), ca, cb, size=size, crop=crop, scale=scale)) == 0.0
    # Top-left vs bottom-right: the shared square is rows/cols [2, 14) of the patch, i.e. [2, 14) of
    # crop A and [0, 12) of crop B; B's blur sees its zero padding there, A's does not.
    ca, cb = jnp.array([0, 0]), jnp.array([1, 1])
    a, b = translational.corner_crop(lr, ca, crop), translational.corner_crop(lr, cb, crop)
    np.testing.assert_array_equal(a[:, 2:14, 2:14], b[:, 0:12, 0:12])
    loss = float(translational.translational_loss(blur(a), blur(b), ca, cb, size=size, crop=crop, scale=scale))
    sa, sb = np.asarray(blur(a))[:, 4:28, 4:28], np.asarray(blur(b))[:, 0:24, 0:24]
    assert loss == pytest.approx(float(np.mean(np.abs(sa - sb))), rel=1e-6) and loss > 1e-3
    assert translational.overlap_size(16, 14) == 12
    with pytest.raises(ValueError):
        translational.overlap_size(16, 8)


def test_multistep_matches_torch_as_basicsr_steps_it():
    torch = pytest.importorskip("torch")
    milestones = [3, 5, 9]
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-4)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones, gamma=0.5)
    ours = schedules.multistep(1e-4, milestones, 0.5)
    for count in range(12):  # optax's count = number of updates done before this one
        sched.step()  # BasicSR: scheduler.step() before update count+1
        assert float(ours(count)) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-6), count


def test_cosine_restart_matches_basicsr_formula():
    periods, weights, base, eta = [4, 6], [1.0, 0.5], 2e-4, 1e-7
    ours = schedules.cosine_restart(base, periods, weights, eta)
    cum = np.cumsum(periods)
    for count in range(10):
        epoch = count + 1
        i = int(np.searchsorted(cum, epoch, side="right"))
        i = min(i, len(periods) - 1)
        start = 0 if i == 0 else cum[i - 1]
        expect = eta + weights[i] * 0.5 * (base - eta) * (1 + math.cos(math.pi * (epoch - start) / periods[i]))
        assert float(ours(count)) == pytest.approx(expect, rel=1e-5), count


def test_ema_update_is_basicsr_unbiased_average():
    decay = 0.9
    ema = {"w": jnp.array([1.0, 2.0])}
    seq = [jnp.array([0.0, 0.0]), jnp.array([10.0, -10.0]), jnp.array([3.0, 3.0])]
    expect = np.array([1.0, 2.0])
    for p in seq:
        ema = ema_update(ema, {"w": p}, decay)
        expect = decay * expect + (1 - decay) * np.asarray(p)
    np.testing.assert_allclose(ema["w"], expect, rtol=1e-6)
    # optax.ema(debias=True) would divide by 1 - decay**3; BasicSR's (and ours) does not.
    assert not np.allclose(expect, expect / (1 - decay**3))
