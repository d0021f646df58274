"""Paired, scale-aware crops and dihedral augmentation applied identically to LR, HR and mask."""

from __future__ import annotations

import numpy as np


def paired_random_crop(
    hr: np.ndarray,
    lr: np.ndarray | None,
    mask: np.ndarray | None,
    patch_size: int,
    scale: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Crops an HR patch and the LR/mask regions covering exactly the same scene.

    The corner is drawn on the LR grid (BasicSR's `paired_random_crop`) so that the HR corner is a
    multiple of `scale`; without an LR, on the HR grid restricted to multiples of `scale` too, so the
    crop then bicubic-downscaled is aligned the same way as a crop of a stored LR.

    Args:
      hr: (H, W, C) with H, W >= patch_size (and, with lr, H >= lr_h * scale).
      lr: (h, w, C) with h = floor(H / scale), or None.
      mask: (H, W) aligned with hr, or None.
      patch_size: HR patch side, a multiple of scale.
      scale: integer SR factor.
      rng: the only randomness.
    Returns:
      (hr (P, P, C), lr (P/s, P/s, C) or None, mask (P, P) or None).
    """
    if patch_size % scale:
        raise ValueError(f"patch_size {patch_size} must be a multiple of scale {scale}")
    lp = patch_size // scale
    if lr is not None:
        h, w = lr.shape[:2]
    else:
        h, w = hr.shape[0] // scale, hr.shape[1] // scale
    if h < lp or w < lp:
        raise ValueError(f"image {hr.shape[:2]} is smaller than the patch {patch_size}x{patch_size}")
    top = int(rng.integers(0, h - lp + 1))
    left = int(rng.integers(0, w - lp + 1))
    ht, hl = top * scale, left * scale
    hr_p = hr[ht : ht + patch_size, hl : hl + patch_size]
    lr_p = None if lr is None else lr[top : top + lp, left : left + lp]
    m_p = None if mask is None else mask[ht : ht + patch_size, hl : hl + patch_size]
    return hr_p, lr_p, m_p


def dihedral(img: np.ndarray, transpose: bool, flip_h: bool, flip_w: bool, inverse: bool = False) -> np.ndarray:
    """One of the 8 flips / rotations by 90 degrees of an (H, W, ...) array, or its inverse.

    Forward: transpose H and W, then flip along H (flip_h) and W (flip_w); `inverse=True` undoes
    the same (transpose, flip_h, flip_w): the flips first, then the transpose. The x8
    self-ensemble maps an input forward and the network's output back with the inverse.

    Returns:
      a C-contiguous (H, W, ...) array, or (W, H, ...) when transposed.
    """
    if transpose and not inverse:
        img = np.swapaxes(img, 0, 1)
    if flip_h:
        img = img[::-1]
    if flip_w:
        img = img[:, ::-1]
    if transpose and inverse:
        img = np.swapaxes(img, 0, 1)
    return np.ascontiguousarray(img)


def random_augment(
    arrays: tuple[np.ndarray | None, ...],
    rng: np.random.Generator,
    use_hflip: bool = True,
    use_rot: bool = True,
) -> tuple[np.ndarray | None, ...]:
    """Same random horizontal flip (p=0.5) and, with use_rot, vertical flip + transpose (each
    p=0.5: together the rotations by 90 degrees) applied to all arrays (None passes through)."""
    draws = rng.random(3) < 0.5
    hflip = bool(use_hflip and draws[0])
    vflip = bool(use_rot and draws[1])
    transpose = bool(use_rot and draws[2])
    # BasicSR's augment flips, then transposes: the inverse form of `dihedral`.
    return tuple(None if a is None else dihedral(a, transpose, vflip, hflip, inverse=True) for a in arrays)
