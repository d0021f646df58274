"""BebyGAN's best-buddy loss (Li et al., "Best-Buddy GANs for Highly Detailed Image
Super-Resolution", 2022; `BBL` in its code and in the SSL paper's `bebyganssl_model`).

Each SR patch need not match the GT patch at its own place: it is pulled towards its "best
buddy", the candidate GT patch q that is close both to itself and to its own GT patch:
- SR and GT are cut into patch x patch patches at `stride` (`F.unfold`, no padding);
- the candidates are the GT's patches (same patch size and stride) at each of `scales`, the
  downscaled GTs made by PyTorch's bicubic `interpolate` (no antialiasing);
- buddy(i) = argmin_q ||p_sr(i) - q||^2 + ||p_gt(i) - q||^2 (alpha = beta = 1), a choice that
  carries no gradient;
- loss = mean |p_sr(i) - buddy(i)| over every patch element (L1, weight 1 in BebyGAN).
"""

import jax
import jax.numpy as jnp
import numpy as np

from sslsr.losses.bicubic import interpolate_bicubic


def patches(x: jax.Array, patch: int, stride: int) -> jax.Array:
    """(B, H, W, C) -> (B, N, patch*patch*C): the patches of `F.unfold(x, patch, stride=stride)`,
    row-major over their top-left corners (the element order inside a patch is (ki, kj, c))."""
    b, h, w, c = x.shape
    rows = (np.arange((h - patch) // stride + 1) * stride)[:, None] + np.arange(patch)  # (nh, p)
    cols = (np.arange((w - patch) // stride + 1) * stride)[:, None] + np.arange(patch)  # (nw, p)
    x = x[:, rows][:, :, :, cols]  # (B, nh, p, nw, p, C)
    x = x.transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, rows.shape[0] * cols.shape[0], patch * patch * c)


def _buddies(p_sr: jax.Array, p_gt: jax.Array, candidates: jax.Array) -> jax.Array:
    """For one image: (N, D), (N, D), (M, D) -> (N, D) the chosen candidate per patch.

    ||a - q||^2 + ||b - q||^2 = |a|^2 + |b|^2 + 2 |q|^2 - 2 (a + b) . q; the first two terms do
    not depend on q, so the argmin is that of |q|^2 - (a + b) . q (one matmul).
    """
    score = jnp.sum(candidates * candidates, axis=-1)[None, :] - jnp.matmul(
        p_sr + p_gt, candidates.T, precision=jax.lax.Precision.HIGHEST
    )
    return candidates[jnp.argmin(score, axis=-1)]


def best_buddy_loss(
    sr: jax.Array,
    hr: jax.Array,
    *,
    patch: int = 3,
    stride: int = 3,
    scales: tuple[float, ...] = (1.0, 0.5, 0.25),
) -> jax.Array:
    """BebyGAN's best-buddy L1 loss; a float32 scalar.

    sr, hr: (B, H, W, C) float in [0, 1], H and W times every scale whole numbers (e.g. the
    192 crops: 96, 48). Gradient flows into `sr` only. Memory: one (N, M) score matrix per image
    at a time (N = (H/3)(W/3) patches, M = N * sum(scale^2) candidates; 4096 x 5376 floats for a
    192 crop), the batch being mapped sequentially.
    """
    _, h, w, _ = sr.shape
    sizes = []
    for s in scales:
        if not (float(h * s).is_integer() and float(w * s).is_integer()):
            raise ValueError(f"best_buddy_loss: crop {h}x{w} times scale {s} is not a whole size")
        sizes.append((int(h * s), int(w * s)))
    sr = sr.astype(jnp.float32)
    hr = jax.lax.stop_gradient(hr).astype(jnp.float32)
    p_sr = patches(sr, patch, stride)
    p_gt = patches(hr, patch, stride)
    candidates = jnp.concatenate(
        [p_gt if size == (h, w) else patches(interpolate_bicubic(hr, size), patch, stride) for size in sizes],
        axis=1,
    )
    # The choice is a constant (torch.min's index): the map sees no tracer to differentiate.
    chosen = jax.lax.map(lambda args: _buddies(*args), (jax.lax.stop_gradient(p_sr), p_gt, candidates))
    return jnp.mean(jnp.abs(p_sr - chosen))
