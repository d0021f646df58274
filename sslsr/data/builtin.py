"""Built-in demo images: real photographs shipped inside the scikit-image wheel (no download).

Only these seven are inside the wheel; every other `skimage.data` image is fetched from the
internet on first use and fails offline, so they are never touched here.
"""

from __future__ import annotations

import numpy as np

TRAIN_NAMES = ("astronaut", "chelsea", "hubble_deep_field", "immunohistochemistry", "retina")
VAL_NAMES = ("coffee", "rocket")


def demo_images(split: str) -> list[tuple[str, np.ndarray]]:
    """The built-in demo images of one split.

    Args:
      split: 'train' (astronaut, chelsea, hubble_deep_field, immunohistochemistry, retina) or
        'val' (coffee, rocket).
    Returns:
      [(name, uint8 (H, W, 3) RGB)] in the order above.
    """
    if split == "train":
        names = TRAIN_NAMES
    elif split == "val":
        names = VAL_NAMES
    else:
        raise ValueError(f"demo_images split must be 'train' or 'val', got {split!r}")
    from skimage import data

    out = []
    for name in names:
        img = np.asarray(getattr(data, name)())
        if img.ndim == 2:
            img = np.repeat(img[:, :, None], 3, axis=2)
        out.append((name, np.ascontiguousarray(img[:, :, :3].astype(np.uint8))))
    return out
