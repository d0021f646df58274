"""Offline edge masks, as the paper's `generate_mask.py`: one PNG (0/255) per HR image.

    python -m sslsr.data.masks <hr_dir> <mask_dir> [--threshold 20] [--overwrite] [--workers N]

The mask of `<hr_dir>/<name>.<ext>` is written to `<mask_dir>/<name>.png`; the training loader
reads it from there (`make_train_loader(mask_dir=...)`) and crops it with the HR patch.
"""

from __future__ import annotations

import os
import pathlib
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from absl import flags

from sslsr import cli, edges
from sslsr.data import io

THRESHOLD = flags.DEFINE_float("threshold", 20.0, "Laplacian threshold of the edge mask (paper: 20).")
OVERWRITE = flags.DEFINE_bool("overwrite", False, "Recompute masks that already exist.")
WORKERS = flags.DEFINE_integer("workers", 1, "Worker processes (1 or less: this process).")


def mask_path_for(mask_dir: str | os.PathLike, hr_path: str | os.PathLike) -> pathlib.Path:
    return pathlib.Path(mask_dir) / f"{pathlib.Path(hr_path).stem}.png"


def write_mask(hr_path: str | os.PathLike, mask_path: str | os.PathLike, threshold: float = 20.0) -> float:
    """Computes `sslsr.edges.edge_mask` of one HR file, writes it as 0/255 PNG.

    Returns the fraction of mask pixels set.
    """
    m = edges.edge_mask(io.read_image(hr_path), threshold=threshold) > 0.5
    io.write_png(mask_path, m.astype(np.uint8) * np.uint8(255))
    return float(m.mean())


def _job(args):
    return write_mask(*args)


def write_masks(
    hr_dir: str | os.PathLike,
    mask_dir: str | os.PathLike,
    *,
    threshold: float = 20.0,
    overwrite: bool = False,
    workers: int = 1,
    progress: bool = True,
) -> int:
    """Writes the masks of every image in hr_dir (existing ones kept unless overwrite).

    Returns the number of masks written.
    """
    from tqdm import tqdm

    todo = []
    for p in io.list_images(hr_dir):
        out = mask_path_for(mask_dir, p)
        if overwrite or not out.is_file():
            todo.append((p, out, threshold))
    pathlib.Path(mask_dir).mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=len(todo), unit="image", desc="masks", disable=not progress)
    if workers > 1 and len(todo) > 1:
        with ProcessPoolExecutor(workers) as ex:
            for _ in ex.map(_job, todo, chunksize=4):
                bar.update(1)
    else:
        for job in todo:
            _job(job)
            bar.update(1)
    bar.close()
    return len(todo)


def main(argv: list[str]) -> None:
    if len(argv) != 3:
        raise cli.UserError(f"<hr_dir> <mask_dir>: expected these two folders, got {argv[1:]}")
    hr_dir, mask_dir = argv[1:]
    try:
        n = write_masks(hr_dir, mask_dir, threshold=THRESHOLD.value, overwrite=OVERWRITE.value, workers=WORKERS.value)
    except ValueError as e:  # an unreadable image or an empty folder; the message names the file
        raise cli.UserError(str(e)) from e
    print(f"wrote {n} masks to {mask_dir}")


if __name__ == "__main__":
    cli.run(main)
