"""Network interpolation (ESRGAN's `net_interp`): alpha * A + (1 - alpha) * B, parameter by parameter.

Used to trade fidelity against perception between a PSNR-oriented generator and its GAN (+SSL)
fine-tune: both must be the same architecture with the same parameters (names and shapes).
"""

from __future__ import annotations

import math

import jax
from flax import nnx

from sslsr.errors import UserError
from sslsr.weights import Generator


def blend(a: Generator, b: Generator, alpha: float, *, names: tuple[str, str] = ("A", "B")) -> Generator:
    """A generator whose floating state is `alpha * a + (1 - alpha) * b` (integer state from `a`).

    Raises:
      UserError: the two differ in architecture or parameter shapes (one line naming both), or
        alpha is not finite.
    """
    if not math.isfinite(alpha):
        raise UserError(f"--alpha: must be a finite number, got {alpha}")
    graphdef, state_a = nnx.split(a.model)
    graphdef_b, state_b = nnx.split(b.model)
    # Same architecture and the same parameter tree and shapes: kwargs may be spelled differently
    # (a workdir's config lists fewer than a detected file's) and still build the same network.
    shapes = [jax.tree.map(lambda x: x.shape, s) for s in (state_a, state_b)]
    if a.arch != b.arch or graphdef != graphdef_b or shapes[0] != shapes[1]:
        raise UserError(
            f"{names[1]}: {b.arch}({_kw(b.kwargs)}) cannot be interpolated with {names[0]}: "
            f"{a.arch}({_kw(a.kwargs)}); both must be the same architecture and kwargs"
        )

    def mix(x, y):
        if not jax.numpy.issubdtype(x.dtype, jax.numpy.floating):
            return x
        return (alpha * x.astype("float32") + (1.0 - alpha) * y.astype("float32")).astype(x.dtype)

    model = nnx.merge(graphdef, jax.tree.map(mix, state_a, state_b))
    model.eval()
    # The blend is neither A's nor B's step; its weights kind is A's when both agree.
    return Generator(model, a.arch, dict(a.kwargs), a.weights if a.weights == b.weights else "raw", None)


def _kw(kwargs: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(kwargs.items()))
