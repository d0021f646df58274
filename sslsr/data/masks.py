"""Offline edge masks, as the paper's `generate_mask.py`: one PNG (0/255) per HR image.

    python -m sslsr.data.masks <hr_dir> <mask_dir> [--threshold 20] [--overwrite] [--workers N]

The mask of `<hr_dir>/<name>.<ext>` is written to `<mask_dir>/<name>.png`; the training loader
reads it from there (`make_train_loader(mask_dir=...)`) and crops it with the HR patch.

Refused up front (nothing written): a mask_dir that is hr_dir or inside it (masks would replace or
join the photos), two images sharing a name (`a.png`, `a.jpg`: one mask file for both), a
threshold that is NaN, negative or infinite. An unreadable image does not stop the others: every
other mask is written, then the bad files are reported in one line and the exit status is 2.
"""

from __future__ import annotations

import math
import os
import pathlib
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from absl import flags

from sslsr import cli, edges
from sslsr.data import datasets, io
from sslsr.errors import InputError, UserError

THRESHOLD = flags.DEFINE_float("threshold", 20.0, "Laplacian threshold of the edge mask (paper: 20).")
OVERWRITE = flags.DEFINE_bool("overwrite", False, "Recompute masks that already exist.")
WORKERS = flags.DEFINE_integer("workers", 1, "Worker processes (1 or less: this process).")


def mask_path_for(mask_dir: str | os.PathLike, hr_path: str | os.PathLike) -> pathlib.Path:
    return pathlib.Path(mask_dir) / f"{pathlib.Path(hr_path).stem}.png"


def check_threshold(threshold: float, name: str = "threshold") -> None:
    if not 0 <= threshold < math.inf:
        raise UserError(f"{name}: must be a finite number >= 0 (paper: 20), got {threshold}")


def write_mask(hr_path: str | os.PathLike, mask_path: str | os.PathLike, threshold: float = 20.0) -> float:
    """Computes `sslsr.edges.edge_mask` of one HR file, writes it as 0/255 PNG.

    Returns the fraction of mask pixels set.
    """
    hr = io.read_image(hr_path)
    try:
        m = edges.edge_mask(hr, threshold=threshold) > 0.5
    except ValueError as e:  # edge_mask does not know the file
        raise InputError(f"{hr_path}: {e}") from None
    io.write_png(mask_path, m.astype(np.uint8) * np.uint8(255))
    return float(m.mean())


def _job(args) -> str | None:
    """One mask; the problem with its image as one line, or None."""
    try:
        write_mask(*args)
    except (ValueError, FileNotFoundError) as e:  # this image; a full disk (OSError) stops the run
        return str(e)
    return None


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

    Returns the number of masks written. Raises UserError before writing anything for a mask_dir
    in hr_dir, images sharing a name or a bad threshold; InputError after writing every other mask
    when some images could not be read (naming each).
    """
    from tqdm import tqdm

    check_threshold(threshold)
    datasets.check_output_dir(hr_dir, mask_dir, "masks")
    files = io.list_images(hr_dir)
    datasets.check_unique_stems(files, f"the masks in {mask_dir}")
    todo = []
    for p in files:
        out = mask_path_for(mask_dir, p)
        if overwrite or not out.is_file():
            todo.append((p, out, threshold))
    pathlib.Path(mask_dir).mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=len(todo), unit="image", desc="masks", disable=not progress)
    problems = []
    if workers > 1 and len(todo) > 1:
        with ProcessPoolExecutor(workers) as ex:
            for problem in ex.map(_job, todo, chunksize=4):
                problems.append(problem)
                bar.update(1)
    else:
        for job in todo:
            problems.append(_job(job))
            bar.update(1)
    bar.close()
    bad = [p for p in problems if p is not None]
    if bad:
        raise InputError(f"{hr_dir}: {len(bad)} of {len(todo)} images failed, their masks were not written "
                         f"({len(todo) - len(bad)} written): {'; '.join(bad)}")
    return len(todo)


def main(argv: list[str]) -> None:
    if len(argv) != 3:
        raise cli.UserError(f"<hr_dir> <mask_dir>: expected these two folders, got {argv[1:]}")
    hr_dir, mask_dir = argv[1:]
    check_threshold(THRESHOLD.value, "--threshold")
    n = write_masks(hr_dir, mask_dir, threshold=THRESHOLD.value, overwrite=OVERWRITE.value, workers=WORKERS.value)
    print(f"wrote {n} masks to {mask_dir}")


if __name__ == "__main__":
    cli.run(main)
