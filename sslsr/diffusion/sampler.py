"""ResShift sampling: LR image -> bicubic x sf -> latent y -> T reverse steps from y + kappa sqrt(eta_T) eps
-> decode, as ResShift's `sampler.py` / `p_sample_loop` do, behind `sslsr.inference`'s Upscaler protocol.

Conventions (ResShift's): images enter the networks in [-1, 1]; the LR is upsampled by the SR
factor with PyTorch's bicubic (`F.interpolate(mode='bicubic')`, a = -0.75, not MATLAB's) before it
is encoded; the denoiser is conditioned on the LR image itself (`lq`; in a pixel-space model, whose
"latent" is the upsampled image, on the upsampled LR); its x_0 prediction is not clipped in latent
space (clipped to [-1, 1] in pixel space); the decoded sample is clipped to [-1, 1].

Whole images: like ResShift's sampler, an LR image (or tile) is reflect-padded at the bottom/right
to a multiple of `pad_multiple` LR pixels (the denoiser's latent size multiple; 64 for the
published model, ResShift's `padding_offset`) and the output cropped; an image larger than
`chop_size` LR pixels in a dimension is cut into chop_size patches `chop_stride` apart (ResShift's
`ImageSpliterTh`: 512 / 448 by default), each sampled with its own noise, and overlapping outputs
are averaged. `super_resolve`'s own tiling (`--tile`) also works (it takes each output pixel from
one tile instead of averaging); the chopping here is what ResShift does and is the default.

Seeding: `prepare(lr)` derives the image's key from the sampler seed and the image's bytes, and
every patch / tile / self-ensemble view sampled for that image folds in its call number, so the
output of an image depends only on the seed, the image and the tiling, never on what was sampled
before it.
"""

from __future__ import annotations

import copy
import math
import zlib
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sslsr.data.resample import interp_taps
from sslsr.diffusion import schedule as sched
from sslsr.inference import tile_starts
from sslsr.models.precision import cast_floating, compute_dtype

# ResShift's inference_resshift.py defaults (LR pixels).
CHOP_SIZE = 512
CHOP_STRIDE = 448


def upsample_bicubic(x: jax.Array, sf: int) -> jax.Array:
    """PyTorch `F.interpolate(x, scale_factor=sf, mode='bicubic', align_corners=False)` on NHWC:
    (B, h, w, C) -> (B, h*sf, w*sf, C) (a = -0.75, border samples repeated)."""
    if sf == 1:
        return x
    for axis in (1, 2):
        n = x.shape[axis]
        idx, w = interp_taps(n, n * sf, "bicubic")
        taps = jnp.take(x, jnp.asarray(idx), axis=axis)  # (.., n*sf, 4, ..) along `axis`
        w = jnp.asarray(w, x.dtype).reshape((n * sf, 4) + (1,) * (x.ndim - axis - 1))
        x = jnp.sum(taps * w, axis=axis + 1)
    return x


def encode(autoencoder, x: jax.Array) -> jax.Array:
    """Image in [-1, 1] -> latent (the image itself in pixel space, `autoencoder` None)."""
    return x if autoencoder is None else autoencoder.encode(x)


def decode(autoencoder, z: jax.Array) -> jax.Array:
    """Latent -> image in ~[-1, 1] (quantised, straight-through, for a VQ autoencoder)."""
    return z if autoencoder is None else autoencoder.decode(z)


def degraded_latent(autoencoder, lr: jax.Array, sf: int) -> tuple[jax.Array, jax.Array]:
    """(y, lq): the latent of the bicubic-upsampled LR (the process' end point) and what the
    denoiser is conditioned on (the LR in latent space, y itself in pixel space); lr in [-1, 1]."""
    up = upsample_bicubic(lr, sf)
    y = encode(autoencoder, up)
    return y, (lr if autoencoder is not None else up)


def sample(denoise: Callable[[jax.Array, jax.Array], jax.Array], s: sched.Schedule, y: jax.Array,
           key: jax.Array) -> jax.Array:
    """ResShift's reverse process from the prior at `y` down to x_0 (not decoded).

    denoise: (scaled x_t (B, H, W, C), denoiser timesteps (B,) int32) -> x_0 prediction.
    y: (B, H, W, C) degraded latent. key: the noise of the prior (fold 0) and of step i (fold i+1).
    Returns the final sample, (B, H, W, C) float32.
    """
    b = y.shape[0]
    x = sched.prior_sample(s, y, jax.random.normal(jax.random.fold_in(key, 0), y.shape, y.dtype))
    model_t = jnp.asarray(s.timesteps, jnp.int32)

    def step(x, i):
        t = jnp.full((b,), i, jnp.int32)
        x0 = denoise(sched.scale_input(s, x, t), model_t[t]).astype(jnp.float32)
        if not s.latent:
            x0 = jnp.clip(x0, -1.0, 1.0)
        noise = jax.random.normal(jax.random.fold_in(key, i + 1), x.shape, x.dtype)
        return sched.p_sample(s, x, x0, t, noise), None

    x, _ = jax.lax.scan(step, x, jnp.arange(s.num_steps - 1, -1, -1, dtype=jnp.int32))
    return x


class ResShiftSampler:
    """An `sslsr.inference.Upscaler` running ResShift's sampler (see the module doc).

    Args:
      unet: the denoiser (`ResShiftUNet` or any module called as unet(x, t, lq)).
      autoencoder: a `VQAutoencoder` (encode/decode/factor), or None for a pixel-space model.
      schedule: the process to sample (`Schedule.resshift(...).respace(n)` for fewer steps).
      scale: the SR factor (ResShift's `sf`).
      seed: the sampling seed. dtype: the networks' compute dtype (output float32).
      chop_size, chop_stride: ResShift's chopping of large images, in LR pixels.
    """

    def __init__(self, unet: nnx.Module, autoencoder: nnx.Module | None, schedule: sched.Schedule, *,
                 scale: int, seed: int = 0, dtype: str = "float32", chop_size: int = CHOP_SIZE,
                 chop_stride: int = CHOP_STRIDE):
        if not 0 < chop_stride <= chop_size:
            raise ValueError(f"chop_stride must be in (0, chop_size={chop_size}], got {chop_stride}")
        self.scale, self.seed, self.dtype, self.schedule = int(scale), int(seed), dtype, schedule
        self.chop_size, self.chop_stride = int(chop_size), int(chop_stride)
        factor = autoencoder.factor if autoencoder is not None else 1
        # The LR size whose latent is a multiple of what the denoiser's windows and levels need.
        need = getattr(unet, "size_multiple", 1) * factor  # latent multiple, in upsampled pixels
        self.pad_multiple = need // math.gcd(need, self.scale)
        cdtype = compute_dtype(dtype)
        nets = {"unet": unet} if autoencoder is None else {"unet": unet, "autoencoder": autoencoder}
        graphdefs, states = {}, {}
        for name, module in nets.items():
            view = nnx.merge(*nnx.split(module))  # an eval-mode view over the same arrays
            view.eval()
            graphdefs[name], states[name] = nnx.split(view)
        sf = self.scale

        def run(states, lr, key):
            nets = {k: nnx.merge(graphdefs[k], v) for k, v in states.items()}
            ae = nets.get("autoencoder")
            y, lq = degraded_latent(ae, (lr * 2.0 - 1.0).astype(cdtype), sf)
            z = sample(lambda x, t: nets["unet"](x.astype(cdtype), t, lq), schedule, y.astype(jnp.float32), key)
            out = decode(ae, z.astype(cdtype)).astype(jnp.float32)
            return (jnp.clip(out, -1.0, 1.0) + 1.0) / 2.0

        self._run = jax.jit(run)
        self._states = cast_floating(states, cdtype)

    def with_state(self, state) -> ResShiftSampler:
        """The same sampler with other weights: {'unet': state[, 'autoencoder': state]}."""
        other = copy.copy(self)
        other._states = {**self._states, **cast_floating(dict(state), compute_dtype(self.dtype))}
        return other

    def prepare(self, lr_image: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        """The forward for one image: its noise key fixed from the seed and the image's bytes."""
        digest = zlib.crc32(np.ascontiguousarray(lr_image, np.float32).tobytes())
        return _ImageSampler(self, jax.random.fold_in(jax.random.key(self.seed), digest & 0x7FFFFFFF))

    def sample_patch(self, lr: np.ndarray, key: jax.Array) -> np.ndarray:
        """float32 (N, h, w, 3) in [0, 1] -> (N, h*s, w*s, 3) in [0, 1]: one sampling run, the LR
        reflect-padded to a multiple of `pad_multiple` and the output cropped back."""
        n, h, w, _ = lr.shape
        ph, pw = -h % self.pad_multiple, -w % self.pad_multiple
        if ph or pw:
            lr = np.pad(lr, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="reflect")
        out = np.asarray(self._run(self._states, jnp.asarray(lr, jnp.float32), key))
        return out[:, : h * self.scale, : w * self.scale]


class _ImageSampler:
    """The forward `ResShiftSampler.prepare` returns: chops large inputs like ResShift and gives
    every sampling run of the image its own key (fold of the call number)."""

    def __init__(self, sampler: ResShiftSampler, key: jax.Array):
        self.sampler, self.key, self.calls = sampler, key, 0

    def _next_key(self) -> jax.Array:
        self.calls += 1
        return jax.random.fold_in(self.key, self.calls)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        s = self.sampler
        x = np.asarray(x, np.float32)
        n, h, w, c = x.shape
        size, overlap = s.chop_size, s.chop_size - s.chop_stride
        if h <= size and w <= size:
            return s.sample_patch(x, self._next_key())
        ys, xs = tile_starts(h, size, overlap), tile_starts(w, size, overlap)
        th, tw, sf = min(size, h), min(size, w), s.scale
        out = np.zeros((n, h * sf, w * sf, c), np.float32)
        count = np.zeros((1, h * sf, w * sf, 1), np.float32)
        for y0 in ys:
            for x0 in xs:
                sr = s.sample_patch(x[:, y0 : y0 + th, x0 : x0 + tw], self._next_key())
                out[:, y0 * sf : (y0 + th) * sf, x0 * sf : (x0 + tw) * sf] += sr
                count[:, y0 * sf : (y0 + th) * sf, x0 * sf : (x0 + tw) * sf] += 1.0
        return out / count
