"""MetaF2N's training tasks: one random Real-ESRGAN degradation applied to face and background images.

A task is a set of aligned HR face images and HR background crops degraded with the SAME sampled
degradation (kernels, resize scales and modes, noise kind and strength, JPEG qualities, order of
the final resize and JPEG); only the noise maps differ, since the images differ in size. The
adaptation learns from the faces what it is then scored on over the backgrounds.

The sharing is exact without a second copy of the pipeline: `sslsr.data.realesrgan.realesrgan_degrade`
draws every parameter from its generator as a scalar, and the noise maps as arrays. `SharedDraws`
is that generator for one task: the first image's scalar draws are recorded and every later image
replays them in order (checking that the same draw is asked for), while arrays come from a
generator of each image's own.
"""

from __future__ import annotations

import numpy as np

from sslsr.data.imresize import imresize
from sslsr.data.realesrgan import REALESRGAN_PRESETS, realesrgan_degrade
from sslsr.data.transforms import random_augment

# numpy.random.Generator methods the Real-ESRGAN pipeline draws parameters with (scalars) and
# noise maps with (arrays).
_SCALAR = ("random", "uniform", "integers", "choice")
_ARRAY = ("standard_normal", "poisson")

# Faces in the photos bundled with scikit-image (no download): name -> box (x0, y0, x1, y1) in
# pixels, a square around the face found by eye. Only the astronaut (Eileen Collins) is a colour
# photo with a face; the cameraman is grey and seen from the side.
DEMO_FACE_BOXES = {"astronaut": (160, 48, 288, 176)}


def demo_faces() -> list[tuple[str, np.ndarray]]:
    """[(name, uint8 (S, S, 3) face crop)] of `DEMO_FACE_BOXES`: the demo's "aligned faces"."""
    from skimage import data

    out = []
    for name, (x0, y0, x1, y1) in DEMO_FACE_BOXES.items():
        out.append((name, np.ascontiguousarray(getattr(data, name)()[y0:y1, x0:x1, :3])))
    return out


class SharedDraws:
    """The parameter draws of one task, shared by all its images.

    `for_image(i)` is a generator stand-in for image i: its scalar draws are the task's (drawn
    from `rng` by whichever image asks first, then replayed), its array draws come from a
    generator seeded by (the task's seed, i). `log` records every scalar call as
    (method, args, value), for tests and reports.
    """

    def __init__(self, rng: np.random.Generator):
        self._rng = rng
        self._seed = int(rng.integers(2**63))
        self.log: list[tuple[str, tuple, object]] = []

    def for_image(self, index: int) -> _ImageDraws:
        return _ImageDraws(self, np.random.default_rng([self._seed, index]))


class _ImageDraws:
    def __init__(self, shared: SharedDraws, noise: np.random.Generator):
        self._shared, self._noise, self._pos = shared, noise, 0

    def __getattr__(self, name):
        if name in _ARRAY:
            return getattr(self._noise, name)
        if name not in _SCALAR:
            raise AttributeError(f"SharedDraws: the degradation asked for an unsupported draw {name!r}")

        def draw(*args, **kwargs):
            if kwargs.get("size") is not None:
                raise ValueError(f"SharedDraws: {name} with a size is an array draw, not a parameter")
            log, key = self._shared.log, (name, _hashable(args))
            if self._pos < len(log):
                if log[self._pos][:2] != key:
                    raise RuntimeError(f"SharedDraws: draw {self._pos} is {key}, the task recorded {log[self._pos][:2]}")
                value = log[self._pos][2]
            else:
                value = getattr(self._shared._rng, name)(*args, **kwargs)
                log.append((*key, value))
            self._pos += 1
            return value

        return draw


def _hashable(args) -> tuple:
    return tuple(tuple(np.asarray(a).ravel().tolist()) if np.ndim(a) else a for a in args)


def degrade_task(images, scale: int, rng: np.random.Generator, degradation: str = "realesrgan") -> list[np.ndarray]:
    """Degrades every image with one sampled Real-ESRGAN degradation.

    Args:
      images: uint8 (H_i, W_i, 3) HR images (sides multiples of scale, > 25 px), any sizes.
      scale: the SR factor; rng: the task's randomness; degradation: 'realesrgan' or
        'realesrgan_ssl' (a preset of sslsr.data.realesrgan).
    Returns:
      uint8 LR images (H_i / scale, W_i / scale, 3), in the order given.
    """
    if degradation not in REALESRGAN_PRESETS:
        raise ValueError(f"task degradation must be one of {tuple(REALESRGAN_PRESETS)}, got {degradation!r}")
    shared = SharedDraws(rng)
    params = REALESRGAN_PRESETS[degradation]
    return [realesrgan_degrade(img, scale, shared.for_image(i), params) for i, img in enumerate(images)]


def random_crop(img: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A random (size, size) crop of a uint8 (H, W, 3) image at least that large."""
    h, w = img.shape[:2]
    y, x = int(rng.integers(h - size + 1)), int(rng.integers(w - size + 1))
    return img[y : y + size, x : x + size]


def face_view(face: np.ndarray, size: int, rng: np.random.Generator, jitter: float = 0.0) -> np.ndarray:
    """An aligned face image at (size, size): a random square crop keeping (1 - jitter) of its side
    or more (0: the whole face), MATLAB-bicubic resized, randomly mirrored."""
    h, w = face.shape[:2]
    side = min(h, w)
    crop = int(round(side * (1.0 - rng.uniform(0.0, jitter)))) if jitter else side
    out = random_crop(face, crop, rng)
    if crop != size:
        out = np.clip(np.round(imresize(out.astype(np.float64), size / crop)), 0, 255).astype(np.uint8)
    (out,) = random_augment((out,), rng, True, False)
    return np.ascontiguousarray(out)


def sample_task(faces, backgrounds, *, n: int, face_size: int, bg_patch: int, scale: int,
                rng: np.random.Generator, degradation: str = "realesrgan", face_jitter: float = 0.0,
                with_mask: bool = False, edge_threshold: float = 20.0) -> dict:
    """One task: n face views and n background crops, all degraded by one sampled degradation.

    faces / backgrounds: sequences of uint8 (H, W, 3) images (aligned faces; photos at least
    bg_patch on each side). Returns uint8 arrays {'face_lr' (n, f/s, f/s, 3), 'face_hr' (n, f, f, 3),
    'bg_lr' (n, p/s, p/s, 3), 'bg_hr' (n, p, p, 3)} and, with_mask, 'bg_mask' (n, p, p) {0, 1}: the
    SSL edge mask of each background crop (`sslsr.edges.edge_mask` on the crop).
    """
    face_hr = [face_view(faces[int(rng.integers(len(faces)))], face_size, rng, face_jitter) for _ in range(n)]
    bg_hr = []
    for _ in range(n):
        crop = random_crop(backgrounds[int(rng.integers(len(backgrounds)))], bg_patch, rng)
        (crop,) = random_augment((crop,), rng, True, True)
        bg_hr.append(np.ascontiguousarray(crop))
    lrs = degrade_task(face_hr + bg_hr, scale, rng, degradation)
    out = {"face_lr": np.stack(lrs[:n]), "face_hr": np.stack(face_hr), "bg_lr": np.stack(lrs[n:]),
           "bg_hr": np.stack(bg_hr)}
    if with_mask:
        from sslsr.edges import edge_mask

        out["bg_mask"] = np.stack([edge_mask(b, edge_threshold) for b in bg_hr]).astype(np.uint8)
    return out
