"""Training-set preparation as the paper's code did it (DF2K-OST style).

    python -m sslsr.data.prepare multiscale <hr_dir> <out_dir> [--shortest_edge 512]
    python -m sslsr.data.prepare subimages <in_dir> <out_dir> [--crop 512 --step 256 --thresh 0]
        [--mask_dir <masks of in_dir> --mask_out_dir <their crops>]
    python -m sslsr.data.prepare all <hr_dir> <out_root> [--threshold 20]  # multiscale -> masks -> sub-images

Every subcommand takes --workers N. The flags are absl flags, spelled with underscores
(--shortest_edge, --mask_dir, --mask_out_dir); the former dashed spellings (--shortest-edge,
--mask-dir, --mask-out-dir) still work as aliases. A flag the subcommand does not use is an error.

Multiscale: for each HR, copies resized by 0.75, 0.6 and 1/3 (`<name>T0/T1/T2.png`) when their
short side stays >= 512, a copy resized to short side 512 (`<name>S.png`), and the original
(`<name>.png`) when its short side is >= 512; PIL LANCZOS. Sub-images: crop x crop windows every
`step` pixels plus the window flush with the bottom/right border when more than `thresh` pixels
would be left out (BasicSR's extract_subimages), named `<name>_s001.png`, ...
`all` makes the masks on the multiscale images and crops them with the same windows, so a
sub-image's mask is a crop of its whole image's mask (as the paper), not recomputed on the crop.

Refused up front, before anything is written: a flag out of range (--crop, --step,
--shortest_edge < 1, --thresh < 0), an output folder that is an input folder or inside one, and
for multiscale an image whose long side exceeds MAX_ASPECT (16) times its short side (its `S` copy
would be enormous: 3x4000 -> 682,666x512). `subimages` that yields no sub-image is an error.
"""

from __future__ import annotations

import os
import pathlib
import warnings
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from absl import flags
from PIL import Image

from sslsr import cli
from sslsr.data import datasets, io, masks
from sslsr.errors import InputError

SCALES = (0.75, 0.6, 1 / 3)
# The S copy scales the short side to --shortest_edge, so its long side is this many times that
# at most (8192 px for 512).
MAX_ASPECT = 16

SHORTEST_EDGE = flags.DEFINE_integer("shortest_edge", 512, "Short side of the `S` copy; smaller copies are not written.")
CROP = flags.DEFINE_integer("crop", 512, "Sub-image side.")
STEP = flags.DEFINE_integer("step", 256, "Stride between sub-images.")
THRESH = flags.DEFINE_integer("thresh", 0, "The border-flush window is added when more than this many pixels would be left out.")
MASK_DIR = flags.DEFINE_string("mask_dir", None, "subimages: masks of in_dir, cropped with the same windows.")
MASK_OUT_DIR = flags.DEFINE_string("mask_out_dir", None, "subimages: where the mask crops go (with --mask_dir).")
# The spellings of the former argparse CLI keep working.
flags.DEFINE_alias("shortest-edge", "shortest_edge")
flags.DEFINE_alias("mask-dir", "mask_dir")
flags.DEFINE_alias("mask-out-dir", "mask_out_dir")
# Shared with the mask CLI, whose flags they are; listed in this command's --help too.
flags.declare_key_flag("threshold")
flags.declare_key_flag("workers")

# The flags each subcommand reads.
SUBCOMMANDS = {
    "multiscale": ("shortest_edge", "workers"),
    "subimages": ("crop", "step", "thresh", "mask_dir", "mask_out_dir", "workers"),
    "all": ("shortest_edge", "crop", "step", "thresh", "threshold", "workers"),
}


def multiscale(path: str | os.PathLike, out_dir: str | os.PathLike, shortest_edge: int = 512) -> list[pathlib.Path]:
    """Writes the multiscale copies of one HR image; returns their paths."""
    path, out_dir = pathlib.Path(path), pathlib.Path(out_dir)
    img = Image.fromarray(io.read_image(path))
    w, h = img.size
    check_aspect(path, h, w)
    written = []

    def save(im, name):
        dst = out_dir / f"{name}.png"
        io.write_png(dst, np.asarray(im))
        written.append(dst)

    for i, s in enumerate(SCALES):
        sw, sh = int(w * s), int(h * s)
        if min(sw, sh) >= shortest_edge:
            save(img.resize((sw, sh), resample=Image.LANCZOS), f"{path.stem}T{i}")
    if w < h:
        sw, sh = shortest_edge, int(shortest_edge * h / w)
    else:
        sw, sh = int(shortest_edge * w / h), shortest_edge
    save(img.resize((sw, sh), resample=Image.LANCZOS), f"{path.stem}S")
    if min(w, h) >= shortest_edge:
        save(img, path.stem)
    return written


def check_aspect(path, h: int, w: int) -> None:
    if max(h, w) > MAX_ASPECT * min(h, w):
        raise InputError(f"{path}: {w}x{h} is more than {MAX_ASPECT}:1, its multiscale copies would be "
                         f"{MAX_ASPECT}+ times longer than --shortest_edge; crop it first")


def windows(length: int, crop: int, step: int, thresh: int) -> list[int]:
    """Window starts along one axis: 0, step, ... plus the border-flush one (BasicSR's rule)."""
    if length < crop:
        return []
    starts = list(range(0, length - crop + 1, step))
    if length - (starts[-1] + crop) > thresh:
        starts.append(length - crop)
    return starts


def subimages(
    path: str | os.PathLike,
    out_dir: str | os.PathLike,
    crop: int = 512,
    step: int = 256,
    thresh: int = 0,
    mask_path: str | os.PathLike | None = None,
    mask_out_dir: str | os.PathLike | None = None,
) -> int:
    """Crops one image (and its mask, same windows) into sub-images; returns how many."""
    path = pathlib.Path(path)
    img = io.read_image(path)
    mask = None
    if mask_path is not None:
        mask = io.read_image(mask_path)[:, :, 0]
        if mask.shape != img.shape[:2]:
            raise InputError(f"{mask_path}: mask size {mask.shape} differs from its image {path} {img.shape[:2]}")
    n = 0
    for y in windows(img.shape[0], crop, step, thresh):
        for x in windows(img.shape[1], crop, step, thresh):
            n += 1
            name = f"{path.stem}_s{n:03d}.png"
            io.write_png(pathlib.Path(out_dir) / name, img[y : y + crop, x : x + crop])
            if mask is not None:
                io.write_png(pathlib.Path(mask_out_dir) / name, mask[y : y + crop, x : x + crop])
    return n


def _run(fn, jobs, workers, desc):
    from tqdm import tqdm

    out = []
    with tqdm(total=len(jobs), unit="image", desc=desc) as bar:
        if workers > 1:
            with ProcessPoolExecutor(workers) as ex:
                for r in ex.map(fn, *zip(*jobs)):
                    out.append(r)
                    bar.update(1)
        else:
            for job in jobs:
                out.append(fn(*job))
                bar.update(1)
    return out


def prepare_multiscale(hr_dir, out_dir, shortest_edge=512, workers=1) -> int:
    datasets.check_output_dir(hr_dir, out_dir, "multiscale images")
    files = io.list_images(hr_dir)
    datasets.check_unique_stems(files, f"the images in {out_dir}")
    for p in files:  # headers only: refuse before writing anything
        check_aspect(p, *datasets.image_size(p))
    jobs = [(p, out_dir, shortest_edge) for p in files]
    return sum(len(r) for r in _run(multiscale, jobs, workers, "multiscale"))


def prepare_subimages(in_dir, out_dir, crop=512, step=256, thresh=0, mask_dir=None, mask_out_dir=None, workers=1) -> int:
    for src in (in_dir, mask_dir):
        for dst in (out_dir, mask_out_dir):
            if src is not None and dst is not None:
                datasets.check_output_dir(src, dst, "sub-images")
    files = io.list_images(in_dir)
    datasets.check_unique_stems(files, f"the sub-images in {out_dir}")
    jobs = []
    for p in files:
        mp = None if mask_dir is None else pathlib.Path(mask_dir) / f"{p.stem}.png"
        if mp is not None and not mp.is_file():
            raise FileNotFoundError(f"{p}: no mask {mp} (run python -m sslsr.data.masks first)")
        jobs.append((p, out_dir, crop, step, thresh, mp, mask_out_dir))
    counts = _run(subimages, jobs, workers, "sub-images")
    small = [p.name for p, c in zip(files, counts) if c == 0]
    if len(small) == len(files):
        raise InputError(f"{in_dir}: no image is at least {crop}x{crop}, no sub-image written "
                         f"(smaller --crop?)")
    if small:
        warnings.warn(f"{len(small)} images smaller than {crop}x{crop} gave no sub-image: {', '.join(small)}", stacklevel=2)
    return sum(counts)


def _check_flags(cmd: str) -> None:
    for name in ("overwrite",) + tuple(n for c in SUBCOMMANDS.values() for n in c):
        if flags.FLAGS[name].present and name not in SUBCOMMANDS[cmd]:
            raise cli.UserError(f"--{name}: not used by `{cmd}` (it takes {', '.join('--' + n for n in SUBCOMMANDS[cmd])})")
    for name, low in (("shortest_edge", 1), ("crop", 1), ("step", 1), ("thresh", 0)):
        if name in SUBCOMMANDS[cmd] and flags.FLAGS[name].value < low:
            raise cli.UserError(f"--{name}: must be >= {low}, got {flags.FLAGS[name].value}")
    if cmd == "all":
        masks.check_threshold(masks.THRESHOLD.value, "--threshold")
    if cmd == "subimages" and (MASK_DIR.value is None) != (MASK_OUT_DIR.value is None):
        raise cli.UserError("--mask_dir, --mask_out_dir: give both or neither")


def main(argv: list[str]) -> None:
    if len(argv) != 4 or argv[1] not in SUBCOMMANDS:
        raise cli.UserError(f"<subcommand> <in> <out>: expected one of {', '.join(SUBCOMMANDS)} and two folders, got {argv[1:]}")
    cmd, src, dst = argv[1:]
    _check_flags(cmd)
    workers = masks.WORKERS.value
    if cmd == "multiscale":
        print(f"wrote {prepare_multiscale(src, dst, SHORTEST_EDGE.value, workers)} images to {dst}")
    elif cmd == "subimages":
        n = prepare_subimages(src, dst, CROP.value, STEP.value, THRESH.value, MASK_DIR.value, MASK_OUT_DIR.value, workers)
        print(f"wrote {n} sub-images to {dst}")
    else:
        root = pathlib.Path(dst)
        datasets.check_output_dir(src, root, "prepared sets")
        ms, ms_mask = root / "multiscale_HR", root / "multiscale_mask"
        prepare_multiscale(src, ms, SHORTEST_EDGE.value, workers)
        masks.write_masks(ms, ms_mask, threshold=masks.THRESHOLD.value, workers=workers)
        n = prepare_subimages(ms, root / "HR_sub", CROP.value, STEP.value, THRESH.value, ms_mask, root / "mask_sub", workers)
        print(f"wrote {n} sub-images to {root / 'HR_sub'} and their masks to {root / 'mask_sub'}")


if __name__ == "__main__":
    cli.run(main)
