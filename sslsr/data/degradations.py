"""Degradation by name: how the training pipeline turns an HR patch into its LR.

    lr = degrade("realesrgan", hr, 4, np.random.default_rng(0))

The models themselves live in their own modules: sslsr.data.imresize (MATLAB bicubic),
sslsr.data.realesrgan (Real-ESRGAN's second-order pipeline and its presets) and
sslsr.data.bsrgan. Randomness comes only from the `numpy.random.Generator` given, so the same seed
gives the same LR.
"""

from __future__ import annotations

import numpy as np

from sslsr.data.bsrgan import bsrgan_degrade
from sslsr.data.imresize import imresize
from sslsr.data.realesrgan import REALESRGAN_PRESETS, realesrgan_degrade

NAMES = ("bicubic", "realesrgan", "realesrgan_ssl", "bsrgan")


def degrade(name: str, hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
    """LR (H/scale, W/scale, 3) uint8 from an HR patch uint8 (H, W, 3) (H, W multiples of scale).

    name: 'bicubic' (MATLAB imresize; rng unused), 'realesrgan', 'realesrgan_ssl' or 'bsrgan'.
    """
    if name == "bicubic":
        return imresize(hr, 1.0 / scale)
    if name in REALESRGAN_PRESETS:
        return realesrgan_degrade(hr, scale, rng, REALESRGAN_PRESETS[name])
    if name == "bsrgan":
        return bsrgan_degrade(hr, scale, rng)
    raise ValueError(f"unknown degradation {name!r}; one of {NAMES}")
