"""Learning-rate schedules with BasicSR's iteration convention.

BasicSR calls `scheduler.step()` before the k-th update (k = 1, 2, ...), so update k runs with the
learning rate of scheduler epoch k. optax passes the 0-based update count, hence `k = count + 1`
below (optax's own `piecewise_constant_schedule` switches one update later than BasicSR).
The count is of optimizer updates, i.e. training steps also with `train.grad_accum` > 1 (the
micro-batches of a step make one update).
"""

from collections.abc import Sequence

import jax.numpy as jnp
import optax


def multistep(base_lr: float, milestones: Sequence[int], gamma: float = 0.5) -> optax.Schedule:
    """torch's MultiStepLR as BasicSR steps it: update k uses base_lr * gamma**#{m <= k}."""
    bounds = jnp.asarray(sorted(milestones) or [0], jnp.int32)
    active = 1.0 if milestones else 0.0

    def schedule(count):
        k = jnp.asarray(count, jnp.int32) + 1
        n = jnp.sum((k >= bounds).astype(jnp.float32)) * active
        return base_lr * gamma**n

    return schedule


def cosine_restart(base_lr: float, periods: Sequence[int], restart_weights: Sequence[float],
                   eta_min: float = 1e-7) -> optax.Schedule:
    """BasicSR's CosineAnnealingRestartLR: cycles of `periods` iterations, cycle i peaks at
    base_lr * restart_weights[i] and anneals to eta_min; update k uses the value at epoch k."""
    if len(periods) != len(restart_weights):
        raise ValueError("cosine_restart: periods and restart_weights must have the same length")
    ends = jnp.cumsum(jnp.asarray(periods, jnp.int32))
    starts = ends - jnp.asarray(periods, jnp.int32)
    periods_a = jnp.asarray(periods, jnp.float32)
    weights = jnp.asarray(restart_weights, jnp.float32)

    def schedule(count):
        k = jnp.asarray(count, jnp.int32) + 1
        i = jnp.minimum(jnp.sum((k >= ends).astype(jnp.int32)), len(periods) - 1)
        t = (k - starts[i]).astype(jnp.float32)
        return eta_min + weights[i] * 0.5 * (base_lr - eta_min) * (1.0 + jnp.cos(jnp.pi * t / periods_a[i]))

    return schedule
