"""Optional tensorflow-datasets source (e.g. `div2k`), for users with internet access.

`tensorflow_datasets` is imported only when these functions are called (extra `sslsr[tfds]`).
`export_folder` writes a split to PNG files, which the folder loaders then use like any HR folder
(`make_train_loader(hr_dir=...)`, `python -m sslsr.data.prepare ...`).
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterator

import numpy as np

from sslsr.data import io


def _tfds():
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise ImportError(
            "the tensorflow-datasets source needs `pip install sslsr[tfds]` (tensorflow-datasets and tensorflow)"
        ) from e
    return tfds


def tfds_images(
    name: str = "div2k",
    split: str = "train",
    *,
    image_key: str = "hr",
    data_dir: str | None = None,
    limit: int | None = None,
) -> Iterator[tuple[str, np.ndarray]]:
    """Yields (name, uint8 (H, W, 3)) from a TFDS image dataset, in the dataset's order.

    Args:
      name: TFDS dataset name (e.g. 'div2k', 'div2k/bicubic_x4').
      split: TFDS split ('train', 'validation', ...).
      image_key: feature holding the image ('hr' for div2k; 'image' for most others).
      data_dir: TFDS data folder (default ~/tensorflow_datasets); downloads when absent.
      limit: stop after this many images.
    Names are `<name>_<split>_<index:06d>` (TFDS records carry no file names).
    """
    tfds = _tfds()
    ds = tfds.load(name, split=split, data_dir=data_dir, shuffle_files=False)
    prefix = f"{name.replace('/', '_')}_{split}"
    for i, ex in enumerate(tfds.as_numpy(ds)):
        if limit is not None and i >= limit:
            return
        if image_key not in ex:
            raise KeyError(f"tfds {name}/{split}: no feature {image_key!r} (features: {sorted(ex)})")
        img = np.asarray(ex[image_key])
        if img.ndim == 2:
            img = img[:, :, None]
        if img.shape[2] == 1:
            img = np.repeat(img, 3, axis=2)
        if img.dtype != np.uint8 or img.shape[2] not in (3, 4):
            raise ValueError(f"tfds {name}/{split} #{i}: expected uint8 images, got {img.dtype} {img.shape}")
        yield f"{prefix}_{i:06d}", np.ascontiguousarray(img[:, :, :3])


def export_folder(
    out_dir: str | os.PathLike,
    name: str = "div2k",
    split: str = "train",
    *,
    image_key: str = "hr",
    data_dir: str | None = None,
    limit: int | None = None,
) -> int:
    """Writes a TFDS split as `<out_dir>/<name>.png`; returns the number of images written."""
    out = pathlib.Path(out_dir)
    n = 0
    for img_name, img in tfds_images(name, split, image_key=image_key, data_dir=data_dir, limit=limit):
        io.write_png(out / f"{img_name}.png", img)
        n += 1
    return n
