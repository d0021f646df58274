"""Inference: a super-resolution model applied to whole images (exact tiling, x8 self-ensemble, dtype).

Used by the evaluation protocol (`sslsr.evaluate`), `python -m sslsr.upscale` and the trainer's
validation. It sits above `sslsr.models` and `sslsr.weights` and never imports the trainer nor the
evaluation protocol, so loading a model to run it pulls in neither.

Two layers:

- An `Upscaler` turns one LR image into the `Forward` that super-resolves it: `prepare(lr)` is
  called once per image, then `super_resolve` feeds the returned forward every tile and every
  flip/transpose of that image. `NetworkUpscaler` wraps a feed-forward network; its `prepare`
  returns itself.
- `super_resolve(upscaler, lr, ...)` owns everything that is the same for every model family:
  uint8 -> [0, 1], exact tiling (optionally to one fixed tile shape), the self-ensemble, clipping
  and the scale check. `super_resolve_image` adds grey and alpha images on top of it: networks
  see RGB only.

Where other model families plug in (beside `NetworkUpscaler`, without touching `super_resolve`):

- An iterative sampler (a diffusion model) is an Upscaler whose `prepare` fixes what must stay the
  same for the whole image (the noise seed derived from the image, the sampler's schedule) and
  returns a forward that runs the sampling loop on one batch of tiles; conditioning on the tile
  keeps tiling and the self-ensemble meaningful.
- A per-image adaptation (meta-learning, e.g. MetaF2N) is an Upscaler whose `prepare` runs the
  inner adaptation steps on the LR image and returns a `NetworkUpscaler.with_state(adapted)`:
  every image reuses the same compiled forward with its own weights.

Precision goes through `sslsr.models.precision`, the mechanism training uses: the network's floating
state and input are cast to the compute dtype, the output comes back as float32.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Protocol

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sslsr.data.imresize import imresize
from sslsr.data.io import to_uint8
from sslsr.data.transforms import dihedral
from sslsr.models import registry
from sslsr.models.precision import cast_floating, compute_dtype

__all__ = [
    "ALPHA_MODES", "Forward", "ForwardUpscaler", "NetworkUpscaler", "Upscaler", "super_resolve",
    "super_resolve_image", "tile_starts", "to_grey", "to_uint8",
]

# float32 NHWC [0, 1] (N, h, w, C) -> float32 (N, h*s, w*s, C), unclipped.
Forward = Callable[[np.ndarray], np.ndarray]


class Upscaler(Protocol):
    """A model ready for inference: its factor, and the forward for one LR image."""

    scale: int

    def prepare(self, lr_image: np.ndarray) -> Forward:
        """The forward to apply to `lr_image` (float32 (h, w, C) in [0, 1]) and its tiles/flips."""
        ...


class NetworkUpscaler:
    """A feed-forward SR network (eval mode), jitted, NumPy in and out.

    Args:
      model: NNX network mapping NHWC [0, 1] (N, h, w, C) to (N, h*s, w*s, C). It is not modified
        (the upscaler runs an eval-mode copy sharing its arrays).
      scale: the upscaling factor; default the registry's (`registry.scale_of`). When given for a
        registered architecture it must agree with it.
      dtype: 'float32' | 'bfloat16' | 'float16': the network's parameters and activations (output
        float32).
    Raises:
      ValueError: scale unknown (unregistered module, no `scale`), or contradicting the model's.
    """

    def __init__(self, model: nnx.Module, *, scale: int | None = None, dtype: str = "float32"):
        self.scale = _declared_scale(model, scale)
        self.dtype = dtype
        graphdef, state = nnx.split(model)
        view = nnx.merge(graphdef, state)  # a second module over the same arrays: .eval() stays local
        view.eval()
        graphdef, state = nnx.split(view)
        cdtype = compute_dtype(dtype)

        def apply(state, x):
            y = nnx.merge(graphdef, state)(x.astype(cdtype))
            return y.astype(jnp.float32)

        # One jitted function per network structure: `with_state` copies share it and its cache.
        self._apply = jax.jit(apply)
        self._state = cast_floating(state, cdtype)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """float32 (N, h, w, C) -> float32 (N, h*s, w*s, C), unclipped; compiles once per shape."""
        return np.asarray(self._apply(self._state, jnp.asarray(x, jnp.float32)))

    def prepare(self, lr_image: np.ndarray) -> Forward:
        """A network has nothing to set up per image: its forward is itself."""
        del lr_image
        return self

    def with_state(self, state: nnx.State) -> NetworkUpscaler:
        """The same network with other weights (same structure), reusing the compiled forward.

        Args:
          state: the full `nnx.split(model)[1]` of a module of the same structure (float32).
        """
        other = copy.copy(self)
        other._state = cast_floating(state, compute_dtype(self.dtype))
        return other


class ForwardUpscaler:
    """An Upscaler from a plain `Forward` and the scale it upscales by (an ahead-of-time compiled
    function, a test oracle): every image gets the same forward."""

    def __init__(self, forward: Forward, scale: int):
        self.forward = forward
        self.scale = scale

    def prepare(self, lr_image: np.ndarray) -> Forward:
        del lr_image
        return self.forward


class _Prepared:
    """The forward `prepare` returned for the unpadded image, reused for its padded copy."""

    def __init__(self, forward: Forward, scale: int):
        self.forward, self.scale = forward, scale

    def prepare(self, lr_image: np.ndarray) -> Forward:
        del lr_image
        return self.forward


def _declared_scale(model: nnx.Module, scale: int | None) -> int:
    try:
        declared = registry.scale_of(model)
    except ValueError as e:
        if scale is None:
            raise ValueError(f"the model's scale is unknown ({e}): pass scale") from None
        return scale
    if scale is not None and scale != declared:
        raise ValueError(f"scale {scale} but the model upscales x{declared}")
    return declared


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of length `tile` covering [0, size) with at least `overlap` shared.

    The last tile is shifted to end exactly at `size`, so every tile has the same shape (one
    compilation) and no padding changes the network's border behaviour.
    """
    if tile >= size:
        return [0]
    if not 0 <= overlap < tile:
        raise ValueError(f"tile_overlap must be in [0, tile), got overlap={overlap}, tile={tile}")
    stride = tile - overlap
    starts = list(range(0, size - tile, stride))
    return starts + [size - tile]


def _owned(starts: list[int], tile: int, size: int) -> list[tuple[int, int]]:
    """The part of [0, size) each tile writes: split every overlap at its midpoint.

    A pixel is then taken from a tile where it lies at least floor(overlap / 2) pixels from any tile
    edge that is not an image edge, so a network whose receptive-field radius is at most that
    gives exactly its untiled output.
    """
    bounds = [0]
    for a, b in zip(starts[:-1], starts[1:]):
        end_a = min(a + tile, size)
        bounds.append((b + end_a) // 2)
    bounds.append(size)
    return list(zip(bounds[:-1], bounds[1:]))


def _tiled(forward: Forward, lr: np.ndarray, scale: int, tile: int, overlap: int) -> np.ndarray:
    h, w = lr.shape[:2]
    ys, xs = tile_starts(h, tile, overlap), tile_starts(w, tile, overlap)
    th, tw = min(tile, h), min(tile, w)
    out = np.empty((h * scale, w * scale, lr.shape[2]), np.float32)
    for y0, (oy0, oy1) in zip(ys, _owned(ys, th, h)):
        for x0, (ox0, ox1) in zip(xs, _owned(xs, tw, w)):
            sr = forward(lr[None, y0 : y0 + th, x0 : x0 + tw])[0]
            _check_scale(sr, (th, tw), scale)
            out[oy0 * scale : oy1 * scale, ox0 * scale : ox1 * scale] = sr[
                (oy0 - y0) * scale : (oy1 - y0) * scale, (ox0 - x0) * scale : (ox1 - x0) * scale
            ]
    return out


def _check_scale(sr: np.ndarray, lr_hw: tuple[int, int], scale: int) -> None:
    if sr.shape[:2] != (lr_hw[0] * scale, lr_hw[1] * scale):
        raise ValueError(
            f"the model maps {lr_hw} to {sr.shape[:2]}, not x{scale}: check --scale / the architecture's scale"
        )


def super_resolve(
    upscaler: Upscaler,
    lr: np.ndarray,
    *,
    tile: int | None = None,
    tile_overlap: int = 32,
    self_ensemble: bool = False,
    pad_to_tile: bool = False,
) -> np.ndarray:
    """Super-resolves one image.

    Args:
      upscaler: e.g. a `NetworkUpscaler`; `prepare` is called once, on the whole image.
      lr: uint8 (h, w, 3) RGB (or float32 in [0, 1]).
      tile: LR tile size for images too large to run at once (None: whole image).
      tile_overlap: LR pixels shared by neighbouring tiles; the output is exact when the network's
        receptive-field radius (in LR pixels) is at most tile_overlap // 2.
      self_ensemble: average the outputs over the 8 flips/transposes (x8 self-ensemble).
      pad_to_tile: run every tile at exactly (tile, tile), so that images of any size share one
        compiled shape: a height or width below `tile` is reflect-padded at the bottom/right and
        the output cropped. This changes the network's view of that (padded) image edge: outputs
        within the receptive-field radius of it differ from the unpadded forward; all others are
        the same (bit-identical for exact arithmetic, float rounding otherwise).
    Returns:
      float32 (h*scale, w*scale, 3), clipped to [0, 1].
    """
    x = np.asarray(lr)
    if x.ndim != 3 or x.shape[-1] != 3:
        raise ValueError(f"super_resolve expects an RGB (h, w, 3) image, got shape {x.shape}")
    x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
    scale = upscaler.scale
    forward = upscaler.prepare(x)
    if pad_to_tile:
        if tile is None:
            raise ValueError("pad_to_tile needs a tile size")
        h, w = x.shape[:2]
        x = np.pad(x, ((0, max(tile - h, 0)), (0, max(tile - w, 0)), (0, 0)), mode="reflect")
        return super_resolve(
            _Prepared(forward, scale), x, tile=tile, tile_overlap=tile_overlap, self_ensemble=self_ensemble
        )[: h * scale, : w * scale]

    def run(img):
        if tile is None:
            sr = forward(img[None])[0]
            _check_scale(sr, img.shape[:2], scale)
            return sr
        return _tiled(forward, img, scale, tile, tile_overlap)

    if not self_ensemble:
        return np.clip(run(x), 0.0, 1.0)
    acc = np.zeros((x.shape[0] * scale, x.shape[1] * scale, 3), np.float32)
    for transpose in (False, True):
        for flip_h in (False, True):
            for flip_w in (False, True):
                y = run(dihedral(x, transpose, flip_h, flip_w))
                acc += dihedral(y, transpose, flip_h, flip_w, inverse=True)
    return np.clip(acc / 8.0, 0.0, 1.0)


ALPHA_MODES = ("bicubic", "model")

# ITU-R BT.601 luma, what OpenCV's RGB2GRAY (and so Real-ESRGAN) uses to turn an SR output back to grey.
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def to_grey(rgb: np.ndarray) -> np.ndarray:
    """float (..., 3) RGB -> (...) grey by BT.601 luma (equal channels give that value back)."""
    return np.asarray(rgb, np.float32) @ _LUMA


def super_resolve_image(upscaler: Upscaler, img: np.ndarray, *, alpha: str = "bicubic", **kwargs) -> np.ndarray:
    """Super-resolves a grey, grey + alpha, RGB or RGBA image with an RGB network.

    Grey is run as three equal channels and turned back to grey (`to_grey`); alpha is upscaled
    separately: 'bicubic' with MATLAB's bicubic (`sslsr.data.imresize`, exact for constant alpha),
    'model' by running it through the network as a grey image (sharper edges, and a second forward).

    Args:
      upscaler: as for `super_resolve`.
      img: float32 in [0, 1]: (h, w) grey, (h, w, 2) grey + alpha, (h, w, 3) RGB or (h, w, 4) RGBA.
      alpha: one of `ALPHA_MODES`.
      **kwargs: `super_resolve`'s tiling and self-ensemble arguments.
    Returns:
      float32 in [0, 1], the same layout as `img` at (h*scale, w*scale).
    """
    if alpha not in ALPHA_MODES:
        raise ValueError(f"alpha must be one of {', '.join(ALPHA_MODES)}, got {alpha!r}")
    x = np.asarray(img, np.float32)
    if x.ndim == 2:
        x = x[:, :, None]
    if x.ndim != 3 or x.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"expected an (h, w[, 2|3|4]) image, got shape {np.shape(img)}")
    grey = x.shape[2] in (1, 2)
    colour, a = (x[:, :, :1], x[:, :, 1:]) if grey else (x[:, :, :3], x[:, :, 3:])

    def as_rgb(c):
        return super_resolve(upscaler, np.repeat(c, 3, axis=2) if c.shape[2] == 1 else c, **kwargs)

    sr = as_rgb(colour)
    if grey:
        sr = np.clip(to_grey(sr), 0.0, 1.0)[:, :, None]  # luma weights sum to 1 only up to rounding
    if a.shape[2]:
        if alpha == "model":
            sr_a = np.clip(to_grey(as_rgb(a)), 0.0, 1.0)[:, :, None]
        else:
            sr_a = np.clip(imresize(a, float(upscaler.scale)), 0.0, 1.0).astype(np.float32)
        sr = np.concatenate([sr, sr_a], axis=2)
    return sr[:, :, 0] if np.ndim(img) == 2 else sr
