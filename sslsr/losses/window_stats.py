"""Local variance over a sliding square window, the statistic of LDL's artifact map and BebyGAN's
region mask (both: reflect padding, unbiased variance of the window around each pixel)."""

import jax
import jax.numpy as jnp


def local_variance(x: jax.Array, window: int) -> jax.Array:
    """Unbiased variance of the `window` x `window` neighbourhood of every pixel.

    x: (B, H, W) float. Returns (B, H, W) float32. The image is reflect-padded by window // 2
    (PyTorch's 'reflect': no edge repeat), like `F.pad(..., mode='reflect')` + `unfold` + `var`
    in LDL and BebyGAN. The window's values are gathered, (B, H, W, window^2), and reduced in
    two passes (mean, then squared deviations) as `torch.var` does: the one-pass
    E[x^2] - E[x]^2 of box filters loses the small variances of smooth regions to cancellation
    in float32. The gather is one patches convolution (its gradient one more); a Python loop
    over the taps compiles ~20x slower on CPU.
    """
    if window % 2 != 1 or window < 3:
        raise ValueError(f"local_variance: window must be odd and >= 3, got {window}")
    pad = window // 2
    p = jnp.pad(x.astype(jnp.float32), ((0, 0), (pad, pad), (pad, pad)), mode="reflect")
    taps = jax.lax.conv_general_dilated_patches(
        p[..., None], (window, window), (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=jax.lax.Precision.HIGHEST,  # an exact copy: no TF32/bf16 passes on accelerators
    )
    return jnp.var(taps, axis=-1, ddof=1)
