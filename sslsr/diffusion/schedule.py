"""ResShift's residual-shifting diffusion: the eta schedule, q(x_t | x_0, y), the posterior and the
input scaling, as in `models/gaussian_diffusion.py` of ResShift's published code (Yue et al.).

The forward process moves the clean latent x_0 towards the degraded latent y while adding noise:

    x_t = x_0 + eta_t (y - x_0) + kappa sqrt(eta_t) eps,    t = 0 .. T-1 (ResShift's indices)

with sqrt(eta_t) growing geometrically (the 'exponential' schedule, bent by `power`) from
min(min_noise_level / kappa, min_noise_level) to etas_end; the published x4 model (T = 15, kappa 2,
min_noise_level 0.04, etas_end 0.99, power 0.3) runs sqrt(eta) from 0.02 to 0.99. The posterior
q(x_{t-1} | x_t, x_0) has mean (eta_{t-1} / eta_t) x_t + (alpha_t / eta_t) x_0 and variance
kappa^2 (eta_{t-1} / eta_t) alpha_t, alpha_t = eta_t - eta_{t-1} (eta_{-1} = 0).

The tables are float64 NumPy (ResShift's precision); the JAX functions take an int index array
`t` (B,) and gather float32 coefficients, broadcasting over NHWC.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

PREDICT_TYPES = ("xstart",)  # ResShift's published SR models predict x_0


def exponential_sqrt_etas(steps: int, *, min_noise_level: float, etas_end: float, kappa: float,
                          power: float) -> np.ndarray:
    """ResShift's 'exponential' schedule: sqrt(eta_t), t = 0 .. steps-1, float64 (steps,).

    sqrt(eta_t) = start * (etas_end / start) ** ((t / (steps - 1)) ** power), start =
    min(min_noise_level / kappa, min_noise_level): geometric in a power-warped time, so a power
    below 1 spends more steps at high noise.
    """
    if steps < 2:
        raise ValueError(f"steps must be >= 2, got {steps}")
    start = min(min_noise_level / kappa, min_noise_level)
    warped = np.linspace(0.0, 1.0, steps) ** power * (steps - 1)
    growth = math.exp(math.log(etas_end / start) / (steps - 1))
    return start * growth**warped


def respaced_indices(steps: int, sample_steps: int) -> np.ndarray:
    """ResShift's `space_timesteps`: the original indices {int(steps / n * k), k < n} kept when
    sampling with n = `sample_steps` steps (always 0; the last one kept may be below steps - 1)."""
    if not 1 <= sample_steps <= steps:
        raise ValueError(f"sampling steps must be in [1, {steps}], got {sample_steps}")
    return np.array(sorted({int(steps / sample_steps * k) for k in range(sample_steps)}), np.int64)


@dataclasses.dataclass(frozen=True)
class Schedule:
    """A ResShift process: sqrt(eta) per step, kappa, and the denoiser timestep of each step.

    sqrt_etas: float64 (n,), increasing. timesteps: int (n,), the index the denoiser was trained
    with for each step (arange(n) unless respaced). latent: ResShift's `latent_flag` (input
    scaling for latents with variance ~1, else for [-1, 1] pixels).
    """

    sqrt_etas: np.ndarray
    kappa: float
    timesteps: np.ndarray
    latent: bool = True

    @classmethod
    def resshift(cls, *, steps: int = 15, kappa: float = 2.0, min_noise_level: float = 0.04,
                 etas_end: float = 0.99, power: float = 0.3, latent: bool = True) -> Schedule:
        """The 'exponential' schedule with ResShift's realsr x4 defaults."""
        sqrt_etas = exponential_sqrt_etas(steps, min_noise_level=min_noise_level, etas_end=etas_end,
                                          kappa=kappa, power=power)
        return cls(sqrt_etas, float(kappa), np.arange(steps), latent)

    def respace(self, sample_steps: int) -> Schedule:
        """The process sampled with fewer steps, ResShift's `SpacedDiffusion`: the etas of the kept
        steps (`respaced_indices`), each step feeding the denoiser its original index."""
        keep = respaced_indices(len(self.sqrt_etas), sample_steps)
        return Schedule(self.sqrt_etas[keep], self.kappa, self.timesteps[keep], self.latent)

    @property
    def num_steps(self) -> int:
        return int(len(self.sqrt_etas))

    @property
    def etas(self) -> np.ndarray:
        return self.sqrt_etas**2

    @property
    def etas_prev(self) -> np.ndarray:
        return np.append(0.0, self.etas[:-1])

    @property
    def alpha(self) -> np.ndarray:
        return self.etas - self.etas_prev

    @property
    def posterior_variance(self) -> np.ndarray:
        return self.kappa**2 * self.etas_prev / self.etas * self.alpha

    @property
    def posterior_log_variance_clipped(self) -> np.ndarray:
        # The variance is 0 at t = 0; ResShift takes step 1's there (its noise is never added).
        v = self.posterior_variance
        return np.log(np.append(v[1], v[1:])) if len(v) > 1 else np.log(np.maximum(v, 1e-20))


def _at(table: np.ndarray, t: jax.Array) -> jax.Array:
    """table[t] as float32 (B, 1, 1, 1): one coefficient per sample, broadcast over NHWC."""
    return jnp.asarray(table, jnp.float32)[t][:, None, None, None]


def q_sample(s: Schedule, x0: jax.Array, y: jax.Array, t: jax.Array, noise: jax.Array) -> jax.Array:
    """x_t = x0 + eta_t (y - x0) + kappa sqrt(eta_t) noise; x0, y, noise (B, H, W, C), t (B,) int."""
    return x0 + _at(s.etas, t) * (y - x0) + _at(s.kappa * s.sqrt_etas, t) * noise


def posterior_mean_variance(s: Schedule, x0: jax.Array, xt: jax.Array, t: jax.Array):
    """q(x_{t-1} | x_t, x_0): (mean (B, H, W, C), variance (B, 1, 1, 1), clipped log-variance (B, 1, 1, 1))."""
    mean = _at(s.etas_prev / s.etas, t) * xt + _at(s.alpha / s.etas, t) * x0
    return mean, _at(s.posterior_variance, t), _at(s.posterior_log_variance_clipped, t)


def scale_input(s: Schedule, x: jax.Array, t: jax.Array) -> jax.Array:
    """What the denoiser sees (ResShift's `normalize_input`): latents divided by their std
    sqrt(kappa^2 eta_t + 1); pixels by 3 kappa sqrt(eta_t) + 1."""
    if s.latent:
        return x / jnp.sqrt(_at(s.etas, t) * s.kappa**2 + 1.0)
    return x / (_at(s.sqrt_etas, t) * s.kappa * 3.0 + 1.0)


def prior_sample(s: Schedule, y: jax.Array, noise: jax.Array) -> jax.Array:
    """x_{T-1} ~ q(x_T | y): y + kappa sqrt(eta_T) noise (eta_T of the last kept step)."""
    return y + float(s.kappa * s.sqrt_etas[-1]) * noise


def p_sample(s: Schedule, xt: jax.Array, x0_pred: jax.Array, t: jax.Array, noise: jax.Array) -> jax.Array:
    """One reverse step from the predicted x_0: the posterior mean plus its noise (none at t = 0)."""
    mean, _, log_var = posterior_mean_variance(s, x0_pred, xt, t)
    nonzero = (t != 0).astype(jnp.float32)[:, None, None, None]
    return mean + nonzero * jnp.exp(0.5 * log_var) * noise
