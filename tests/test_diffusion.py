"""sslsr.diffusion: ResShift's schedule, posterior and input scaling against independent NumPy
derivations, the torch-style bicubic upsampling, and the sampler (exactness with a perfect
denoiser, seeding, ResShift's chopping) with tiny stand-in denoisers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from sslsr.diffusion import sampler as smp
from sslsr.diffusion import schedule as sched
from sslsr.inference import super_resolve


def test_schedule_values():
    """sqrt(eta_t) of ResShift's realsr config, from the formula written out independently:
    start * (end / start) ** ((t / (T - 1)) ** power), start = 0.04 / kappa = 0.02, end = 0.99."""
    s = sched.Schedule.resshift()
    t = np.arange(15)
    expected = 0.02 * (0.99 / 0.02) ** ((t / 14.0) ** 0.3)
    np.testing.assert_allclose(s.sqrt_etas, expected, rtol=1e-12)
    assert s.sqrt_etas[0] == pytest.approx(0.02) and s.sqrt_etas[-1] == pytest.approx(0.99)
    assert np.all(np.diff(s.sqrt_etas) > 0)
    # min_noise_level / kappa only when kappa > 1 (ResShift's min(.../kappa, ...)).
    assert sched.Schedule.resshift(kappa=0.5).sqrt_etas[0] == pytest.approx(0.04)
    # Respacing keeps ResShift's space_timesteps indices {int(15 / n * k)}.
    np.testing.assert_array_equal(sched.respaced_indices(15, 5), [0, 3, 6, 9, 12])
    np.testing.assert_array_equal(sched.respaced_indices(15, 4), [0, 3, 7, 11])
    r = s.respace(4)
    np.testing.assert_array_equal(r.timesteps, [0, 3, 7, 11])
    np.testing.assert_allclose(r.sqrt_etas, expected[[0, 3, 7, 11]])
    with pytest.raises(ValueError, match="sampling steps"):
        s.respace(16)


def test_forward_process_and_posterior_against_numpy():
    """q(x_t | x_0, y), the input scaling, the prior and q(x_{t-1} | x_t, x_0) by Bayes' rule on
    the Gaussians x_{t-1} ~ N(x0 + eta_{t-1} (y - x0), k^2 eta_{t-1}) and
    x_t | x_{t-1} ~ N(x_{t-1} + alpha_t (y - x0), k^2 alpha_t)."""
    s = sched.Schedule.resshift()
    k = s.kappa
    eta = s.sqrt_etas.astype(np.float64) ** 2
    rng = np.random.default_rng(0)
    shape = (15, 4, 5, 3)
    x0, y, xt, noise = (rng.standard_normal(shape) for _ in range(4))
    t = np.arange(15)
    e = eta[t][:, None, None, None]
    got = sched.q_sample(s, jnp.asarray(x0, jnp.float32), jnp.asarray(y, jnp.float32), jnp.asarray(t),
                         jnp.asarray(noise, jnp.float32))
    np.testing.assert_allclose(got, x0 + e * (y - x0) + k * np.sqrt(e) * noise, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(sched.scale_input(s, jnp.asarray(xt, jnp.float32), jnp.asarray(t)),
                               xt / np.sqrt(k**2 * e + 1), rtol=1e-5)
    np.testing.assert_allclose(sched.prior_sample(s, jnp.asarray(y, jnp.float32), jnp.asarray(noise, jnp.float32)),
                               y + k * 0.99 * noise, rtol=1e-5, atol=1e-6)

    mean, var, log_var = sched.posterior_mean_variance(
        s, jnp.asarray(x0, jnp.float32), jnp.asarray(xt, jnp.float32), jnp.asarray(t))
    for i in range(1, 15):
        prev_mean, prev_var = x0[i] + eta[i - 1] * (y[i] - x0[i]), k**2 * eta[i - 1]
        alpha = eta[i] - eta[i - 1]
        lik_var = k**2 * alpha
        post_var = 1.0 / (1.0 / prev_var + 1.0 / lik_var)
        post_mean = post_var * (prev_mean / prev_var + (xt[i] - alpha * (y[i] - x0[i])) / lik_var)
        np.testing.assert_allclose(mean[i], post_mean, rtol=2e-4, atol=2e-5)
        assert float(var[i, 0, 0, 0]) == pytest.approx(post_var, rel=1e-5)
        assert float(log_var[i, 0, 0, 0]) == pytest.approx(np.log(post_var), rel=1e-5)
    # t = 0: the posterior is x0 itself (eta_{-1} = 0); the clipped log-variance is step 1's.
    np.testing.assert_allclose(mean[0], x0[0], rtol=1e-6, atol=1e-6)
    assert float(var[0, 0, 0, 0]) == 0.0
    assert float(log_var[0, 0, 0, 0]) == pytest.approx(float(log_var[1, 0, 0, 0]))


def test_upsample_bicubic_matches_torch():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(1).standard_normal((2, 5, 7, 3)).astype(np.float32)
    ref = torch.nn.functional.interpolate(torch.from_numpy(x).permute(0, 3, 1, 2), scale_factor=4, mode="bicubic",
                                          align_corners=False).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(smp.upsample_bicubic(jnp.asarray(x), 4), ref, rtol=1e-5, atol=1e-5)


def test_sample_with_exact_denoiser_returns_x0():
    """The last reverse step has no noise and a posterior mean of x0_pred: a denoiser that knows
    x0 gives x0 back exactly, whatever the prior noise."""
    s = sched.Schedule.resshift()
    x0 = jax.random.normal(jax.random.key(3), (2, 8, 8, 3))
    y = x0 + 0.5
    for process in (s, s.respace(4)):
        out = jax.jit(lambda y, key, p=process: smp.sample(lambda x, t: x0, p, y, key))(y, jax.random.key(0))
        np.testing.assert_allclose(out, x0, atol=1e-5)

class StandIn(nnx.Module):
    """A tiny denoiser with ResShift's call signature (x, t, lq): one conv on [x, lq] plus t."""

    size_multiple = 4

    def __init__(self, rngs: nnx.Rngs):
        self.conv = nnx.Conv(6, 3, (3, 3), rngs=rngs)

    def __call__(self, x, t, lq):
        return self.conv(jnp.concatenate([x, lq], -1)) + 0.01 * t[:, None, None, None]


def resshift_starts(length: int, size: int, stride: int) -> list[int]:
    """ResShift's ImageSpliterTh.extract_starts, written out."""
    if length <= size:
        return [0]
    starts = [min(s, length - size) for s in range(0, length, stride)]
    return sorted(set(starts), key=starts.index)


def test_sampler_seeding_padding_and_chopping():
    from sslsr.inference import tile_starts

    for length in (20, 33, 64, 65, 1000):
        assert tile_starts(length, 16, 4) == resshift_starts(length, 16, 12) if length > 16 else True
    assert tile_starts(1000, 512, 64) == resshift_starts(1000, 512, 448) == [0, 448, 488]

    unet = StandIn(nnx.Rngs(0))
    s = sched.Schedule.resshift(latent=False).respace(3)
    up = smp.ResShiftSampler(unet, None, s, scale=2, seed=7, chop_size=16, chop_stride=12)
    assert up.pad_multiple == 2  # latent (= 2x LR) multiple of 4
    lr = np.random.default_rng(0).random((9, 11, 3)).astype(np.float32)  # odd: padded, cropped back
    a = super_resolve(up, lr)
    assert a.shape == (18, 22, 3)
    np.testing.assert_array_equal(a, super_resolve(up, lr))  # same seed, same image: same output
    b = super_resolve(smp.ResShiftSampler(unet, None, s, scale=2, seed=8, chop_size=16, chop_stride=12), lr)
    assert np.abs(a - b).max() > 1e-3  # another seed: another sample
    # Weights swap (what validation does) keeps the compiled function and changes the output.
    state = jax.tree.map(lambda v: v * 0.5, nnx.state(unet))
    c = super_resolve(up.with_state({"unet": state}), lr)
    assert np.abs(a - c).max() > 1e-3
    # Larger than chop_size: chopped into 16 px patches 12 apart, overlaps averaged.
    big = np.random.default_rng(1).random((20, 30, 3)).astype(np.float32)
    forward = up.prepare(big)
    calls = []
    real = up.sample_patch
    up.sample_patch = lambda x, key: calls.append(x.shape) or real(x, key)
    out = forward(big[None])
    assert out.shape == (1, 40, 60, 3)
    assert calls == [(1, 16, 16, 3)] * (len(resshift_starts(20, 16, 12)) * len(resshift_starts(30, 16, 12)))
