"""Training-set preparation as the paper's code did it (DF2K-OST style).

    python -m sslsr.data.prepare multiscale <hr_dir> <out_dir> [--shortest-edge 512]
    python -m sslsr.data.prepare subimages <in_dir> <out_dir> [--crop 512 --step 256 --thresh 0]
    python -m sslsr.data.prepare all <hr_dir> <out_root>   # multiscale -> masks -> sub-images

Multiscale: for each HR, copies resized by 0.75, 0.6 and 1/3 (`<name>T0/T1/T2.png`) when their
short side stays >= 512, a copy resized to short side 512 (`<name>S.png`), and the original
(`<name>.png`) when its short side is >= 512; PIL LANCZOS. Sub-images: crop x crop windows every
`step` pixels plus the window flush with the bottom/right border when more than `thresh` pixels
would be left out (BasicSR's extract_subimages), named `<name>_s001.png`, ...
`all` makes the masks on the multiscale images and crops them with the same windows, so a
sub-image's mask is a crop of its whole image's mask (as the paper), not recomputed on the crop.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import warnings
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from PIL import Image

from sslsr.data import io

SCALES = (0.75, 0.6, 1 / 3)


def multiscale(path: str | os.PathLike, out_dir: str | os.PathLike, shortest_edge: int = 512) -> list[pathlib.Path]:
    """Writes the multiscale copies of one HR image; returns their paths."""
    path, out_dir = pathlib.Path(path), pathlib.Path(out_dir)
    img = Image.fromarray(io.read_image(path))
    w, h = img.size
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
            raise ValueError(f"{mask_path}: mask size {mask.shape} differs from its image {path} {img.shape[:2]}")
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
    jobs = [(p, out_dir, shortest_edge) for p in io.list_images(hr_dir)]
    return sum(len(r) for r in _run(multiscale, jobs, workers, "multiscale"))


def prepare_subimages(in_dir, out_dir, crop=512, step=256, thresh=0, mask_dir=None, mask_out_dir=None, workers=1) -> int:
    files = io.list_images(in_dir)
    jobs = []
    for p in files:
        mp = None if mask_dir is None else pathlib.Path(mask_dir) / f"{p.stem}.png"
        if mp is not None and not mp.is_file():
            raise FileNotFoundError(f"{p}: no mask {mp} (run python -m sslsr.data.masks first)")
        jobs.append((p, out_dir, crop, step, thresh, mp, mask_out_dir))
    counts = _run(subimages, jobs, workers, "sub-images")
    small = [p.name for p, c in zip(files, counts) if c == 0]
    if small:
        warnings.warn(f"{len(small)} images smaller than {crop}x{crop} gave no sub-image: {', '.join(small)}", stacklevel=2)
    return sum(counts)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m sslsr.data.prepare", description="Training-set preparation (multiscale HR, edge masks, sub-images).")
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("multiscale", help="multiscale HR copies")
    m.add_argument("hr_dir")
    m.add_argument("out_dir")
    s = sub.add_parser("subimages", help="crop into overlapping sub-images")
    s.add_argument("in_dir")
    s.add_argument("out_dir")
    s.add_argument("--mask-dir", help="masks of in_dir to crop with the same windows")
    s.add_argument("--mask-out-dir")
    a_ = sub.add_parser("all", help="multiscale -> masks -> sub-images under out_root")
    a_.add_argument("hr_dir")
    a_.add_argument("out_root")
    a_.add_argument("--threshold", type=float, default=20.0, help="edge-mask threshold")
    for p in (m, a_):
        p.add_argument("--shortest-edge", type=int, default=512)
    for p in (s, a_):
        p.add_argument("--crop", type=int, default=512)
        p.add_argument("--step", type=int, default=256)
        p.add_argument("--thresh", type=int, default=0, help="border strip kept when wider than this")
    for p in (m, s, a_):
        p.add_argument("--workers", type=int, default=1)
    a = ap.parse_args(argv)
    if a.cmd == "multiscale":
        print(f"wrote {prepare_multiscale(a.hr_dir, a.out_dir, a.shortest_edge, a.workers)} images to {a.out_dir}")
    elif a.cmd == "subimages":
        if (a.mask_dir is None) != (a.mask_out_dir is None):
            ap.error("--mask-dir and --mask-out-dir go together")
        n = prepare_subimages(a.in_dir, a.out_dir, a.crop, a.step, a.thresh, a.mask_dir, a.mask_out_dir, a.workers)
        print(f"wrote {n} sub-images to {a.out_dir}")
    else:
        from sslsr.data.masks import write_masks

        root = pathlib.Path(a.out_root)
        ms, ms_mask = root / "multiscale_HR", root / "multiscale_mask"
        prepare_multiscale(a.hr_dir, ms, a.shortest_edge, a.workers)
        write_masks(ms, ms_mask, threshold=a.threshold, workers=a.workers)
        n = prepare_subimages(ms, root / "HR_sub", a.crop, a.step, a.thresh, ms_mask, root / "mask_sub", a.workers)
        print(f"wrote {n} sub-images to {root / 'HR_sub'} and their masks to {root / 'mask_sub'}")


if __name__ == "__main__":
    main()
