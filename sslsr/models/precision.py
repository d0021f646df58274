"""The one mixed-precision mechanism: cast a module's floating state and its input, keep float32 masters.

Training (`train.compute_dtype`) and inference (`--dtype`) both run a network in bfloat16 by
casting its floating parameters and its input with `cast_floating`; the parameters the optimiser
updates, and every loss and metric, stay float32.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

COMPUTE_DTYPES = ("float32", "bfloat16", "float16")


def compute_dtype(name: str) -> jnp.dtype:
    """'float32' | 'bfloat16' | 'float16' -> the dtype; ValueError naming the accepted names otherwise.

    float16 is for inference (`--dtype float16`; training's config check accepts float32 and
    bfloat16): its 10-bit mantissa is finer than bfloat16's 7 bits, but values above 65504 overflow.
    """
    if name not in COMPUTE_DTYPES:
        raise ValueError(f"compute dtype must be one of {', '.join(COMPUTE_DTYPES)}, got {name!r}")
    return jnp.dtype(name)


def cast_floating(tree, dtype):
    """Floating leaves of `tree` to `dtype` (integer leaves, e.g. counters, unchanged)."""
    dtype = jnp.dtype(dtype)
    if dtype == jnp.float32:
        return tree
    return jax.tree.map(lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)
