"""Translational-consistency loss: two overlapping crops of one LR patch must super-resolve to the
same pixels on their shared region.

The two crops are corner crops of side `crop` from an LR patch of side `size` (e.g. 224/256 of the
HR patch, i.e. 7/8). Every corner crop contains the central square [size - crop, crop) of the patch,
so comparing the SR outputs on that square gives a static shape whichever two corners are drawn.
"""

import jax
import jax.numpy as jnp
import numpy as np

# (row, col) corner selectors: 0 = top/left, 1 = bottom/right.
CORNERS = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.int32)


def overlap_size(size: int, crop: int) -> int:
    """Side of the region shared by all corner crops of side `crop` from a `size` square."""
    if not size / 2 < crop < size:
        raise ValueError(f"translational crop must lie in (size/2, size) for size {size}, got {crop}")
    return 2 * crop - size


def corner_pair(key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Draws two distinct corners; returns (corner_a, corner_b), each an int32 (2,) of 0/1."""
    first = jax.random.randint(key, (), 0, 4)
    shift = 1 + jax.random.randint(jax.random.fold_in(key, 1), (), 0, 3)
    corners = jnp.asarray(CORNERS)
    return corners[first], corners[(first + shift) % 4]


def corner_crop(x: jax.Array, corner: jax.Array, crop: int) -> jax.Array:
    """x: (B, H, W, C); corner: int32 (2,) of 0/1. Returns the (B, crop, crop, C) corner crop."""
    offsets = corner * jnp.array([x.shape[1] - crop, x.shape[2] - crop])
    return jax.lax.dynamic_slice(x, (0, offsets[0], offsets[1], 0), (x.shape[0], crop, crop, x.shape[3]))


def shared_region(sr_crop: jax.Array, corner: jax.Array, size: int, crop: int, scale: int) -> jax.Array:
    """SR output of a corner crop, (B, crop*scale, crop*scale, C), cut to the shared central square.

    The shared square starts at LR coordinate `size - crop` of the full patch; a crop starting at
    `corner * (size - crop)` therefore sees it at `(1 - corner) * (size - crop)`.
    """
    start = (1 - corner) * (size - crop) * scale
    side = overlap_size(size, crop) * scale
    b, _, _, c = sr_crop.shape
    return jax.lax.dynamic_slice(sr_crop, (0, start[0], start[1], 0), (b, side, side, c))


def translational_loss(sr_a: jax.Array, sr_b: jax.Array, corner_a: jax.Array, corner_b: jax.Array,
                       *, size: int, crop: int, scale: int) -> jax.Array:
    """Mean |SR_a - SR_b| on the shared region of two corner crops (gradients flow into both).

    sr_a, sr_b: (B, crop*scale, crop*scale, C) generator outputs for the LR crops taken with
    `corner_crop(lr, corner_a/b, crop)` from an LR patch of side `size`. Returns a float32 scalar.
    """
    a = shared_region(sr_a.astype(jnp.float32), corner_a, size, crop, scale)
    b = shared_region(sr_b.astype(jnp.float32), corner_b, size, crop, scale)
    return jnp.mean(jnp.abs(a - b))
