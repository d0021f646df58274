"""Comparison crops: bicubic | SR | HR where the model gains, or loses, most against bicubic."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from sslsr.evaluate.scoring import LOWER_IS_BETTER


def advantage(metric: str, sr: float, bicubic: float) -> float:
    """How much better SR scores than bicubic on `metric` (positive: better); inf when SR is
    identical to HR (PSNR inf), 0 when either score is not finite otherwise."""
    sign = -1.0 if LOWER_IS_BETTER[metric] else 1.0
    if math.isfinite(sr) and math.isfinite(bicubic):
        return sign * (sr - bicubic)
    return math.inf if math.isinf(sr) else 0.0


def extremes(advantages: Sequence[tuple[float, str]], n: int) -> list[tuple[str, str]]:
    """[(image, 'gain'|'loss')]: the n largest advantages, then the n smallest (disjoint).

    Args:
      advantages: (advantage, image name) per image; ties rank by name.
    """
    ranked = sorted(advantages, reverse=True)
    best = ranked[:n]
    worst = [r for r in ranked[::-1][:n] if r not in best]
    return [(img, "gain") for _, img in best] + [(img, "loss") for _, img in worst]


def _box_sums(a: np.ndarray, size: int) -> np.ndarray:
    """Sums of `a` over every size x size window ('valid'), via an integral image."""
    s = np.pad(np.cumsum(np.cumsum(a, 0), 1), ((1, 0), (1, 0)))
    return s[size:, size:] - s[:-size, size:] - s[size:, :-size] + s[:-size, :-size]


def comparison_strip(bicubic: np.ndarray, sr: np.ndarray, hr: np.ndarray, *, crop: int, gain: bool) -> np.ndarray:
    """bicubic | SR | HR crops (uint8) at the window where SR beats (gain) or trails bicubic most.

    The window is chosen by the local difference of absolute errors on the luma.
    Args:
      bicubic, sr, hr: uint8 (H, W, 3).
      crop: side of the square crops (at most the image's smaller side).
    Returns:
      uint8 (crop, 3 * crop + 8, 3): the three crops separated by 4-pixel white gaps.
    """
    from sslsr.metrics import rgb_to_y

    y_hr = rgb_to_y(hr)
    adv = np.abs(rgb_to_y(bicubic) - y_hr) - np.abs(rgb_to_y(sr) - y_hr)
    crop = min(crop, *hr.shape[:2])
    sums = _box_sums(adv if gain else -adv, crop)
    i, j = np.unravel_index(np.argmax(sums), sums.shape)
    gap = np.full((crop, 4, 3), 255, np.uint8)
    parts = [bicubic, sr, hr]
    row = []
    for k, img in enumerate(parts):
        row.append(img[i : i + crop, j : j + crop])
        if k < len(parts) - 1:
            row.append(gap)
    return np.concatenate(row, axis=1)
