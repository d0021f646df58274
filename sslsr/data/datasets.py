"""Image folders and in-memory images as indexed sources, with checks that name the bad file.

Layouts: BasicSR/SwinIR paired folders `<root>/HR/<name>.png` + `<root>/LR_bicubic/X<s>/<name>x<s>.png`,
HR-only folders (LR made on the fly), and in-memory `(name, uint8 HWC)` lists (built-in demo).

Size convention (BasicSR's): an LR must be floor(HR / scale); the HR is then cropped top-left to
LR size x scale. When the LR is made from the HR, the HR is first mod-cropped to a multiple of the
scale (or of `hr_mod`, e.g. 12 for the paper's test sets).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from sslsr.data import io
from sslsr.errors import InputError, UserError
from sslsr.data.imresize import imresize, mod_crop


@dataclasses.dataclass(frozen=True)
class ImageRecord:
    """One training/eval image: a file (hr_path) or an in-memory array (hr), optional LR file and
    mask file (the mask file may not exist yet: it is then computed and written there)."""

    name: str
    hr_path: pathlib.Path | None = None
    hr: np.ndarray | None = dataclasses.field(default=None, repr=False, compare=False)
    lr_path: pathlib.Path | None = None
    mask_path: pathlib.Path | None = None


def image_size(path: pathlib.Path) -> tuple[int, int]:
    """(H, W) from the file header, without decoding; ValueError naming the file if unreadable."""
    try:
        with Image.open(path) as im:
            w, h = im.size
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such image file") from None
    except (OSError, SyntaxError, ValueError) as e:
        msg = str(e).replace("\n", " ")
        raise InputError(f"{path}: cannot read image ({type(e).__name__}: {msg})") from None
    return h, w


def find_lr(lr_dir: pathlib.Path, hr_path: pathlib.Path, scale: int) -> pathlib.Path:
    """The LR of `hr_path` in `lr_dir`: `<stem>x<s>.<ext>` (BasicSR) or `<stem>.<ext>`."""
    stems = (f"{hr_path.stem}x{scale}", hr_path.stem)
    suffixes = (hr_path.suffix,) + tuple(e for e in io.IMAGE_EXTENSIONS if e != hr_path.suffix.lower())
    for stem in stems:
        for suf in suffixes:
            p = lr_dir / f"{stem}{suf}"
            if p.is_file():
                return p
    raise FileNotFoundError(
        f"{hr_path}: no LR image for it in {lr_dir} (expected {hr_path.stem}x{scale}{hr_path.suffix})"
    )


def check_lr_size(hr_hw: tuple[int, int], lr_hw: tuple[int, int], scale: int, hr_name, lr_name) -> None:
    want = (hr_hw[0] // scale, hr_hw[1] // scale)
    if tuple(lr_hw) != want:
        raise InputError(
            f"{lr_name}: LR size {lr_hw[0]}x{lr_hw[1]} is not floor(HR/{scale}) = {want[0]}x{want[1]} "
            f"for HR {hr_name} ({hr_hw[0]}x{hr_hw[1]})"
        )


def folder_records(
    hr_dir: str | os.PathLike,
    lr_dir: str | os.PathLike | None = None,
    scale: int = 4,
    mask_dir: str | os.PathLike | None = None,
    skip_bad: bool = False,
) -> list[ImageRecord]:
    """Records for every image in `hr_dir` (sorted), paired with `lr_dir` and `mask_dir` files.

    Checks (main process, headers only): every HR has its LR, of size floor(HR/scale); existing
    mask files have the HR's size; no two HR files share a mask name. Errors name the offending
    file; with skip_bad, an HR whose header is unreadable is skipped with one warning instead.
    """
    hr_dir = pathlib.Path(hr_dir)
    lr_dir = None if lr_dir is None else pathlib.Path(lr_dir)
    mask_dir = None if mask_dir is None else pathlib.Path(mask_dir)
    if lr_dir is not None and not lr_dir.is_dir():
        raise FileNotFoundError(f"{lr_dir}: no such LR folder")
    records = []
    files = io.list_images(hr_dir)
    if mask_dir is not None:
        check_unique_stems(files, f"the masks in {mask_dir}")
    unreadable = []
    for p in files:
        try:
            hw = image_size(p)
        except InputError as e:
            if not skip_bad:
                raise
            unreadable.append(str(e))
            continue
        lr_path = None
        if lr_dir is not None:
            lr_path = find_lr(lr_dir, p, scale)
            check_lr_size(hw, image_size(lr_path), scale, p, lr_path)
        mask_path = None
        if mask_dir is not None:
            mask_path = mask_dir / f"{p.stem}.png"
            if mask_path.is_file() and image_size(mask_path) != hw:
                mh, mw = image_size(mask_path)
                raise InputError(f"{mask_path}: mask size {mh}x{mw} differs from its HR {p} ({hw[0]}x{hw[1]})")
        records.append(ImageRecord(name=p.stem, hr_path=p, lr_path=lr_path, mask_path=mask_path))
    if unreadable:
        if not records:
            raise InputError(f"{hr_dir}: every image is unreadable, e.g. {unreadable[0]}")
        warnings.warn(f"skipping {len(unreadable)} of {len(files)} unreadable images: {'; '.join(unreadable)}",
                      stacklevel=2)
    return records


def check_output_dir(in_dir: str | os.PathLike, out_dir: str | os.PathLike, what: str) -> None:
    """Refuses an output folder that is the input folder or inside it (outputs would overwrite the
    inputs or be read back as inputs)."""
    src, dst = pathlib.Path(in_dir).resolve(), pathlib.Path(out_dir).resolve()
    if dst == src or src in dst.parents:
        raise UserError(f"{out_dir}: is {'the' if dst == src else 'inside the'} input folder {in_dir}; "
                        f"write the {what} to a separate folder")


def check_unique_stems(files: Sequence[pathlib.Path], what: str) -> None:
    """Refuses two images that would share one `<stem>.png` (a.png and a.jpg): one file could only
    hold the mask of one of them, silently used for both."""
    seen: dict[str, pathlib.Path] = {}
    for p in files:
        if p.stem in seen:
            raise InputError(f"{seen[p.stem]}, {p}: same name, so they would share one file among {what}; "
                             f"rename one of them")
        seen[p.stem] = p


def verify_records(records: list[ImageRecord], skip_bad: bool = False, threads: int = 8) -> list[ImageRecord]:
    """Decodes every file of `records` once (HR, stored LR, existing mask) before training, so a
    truncated image with a valid header fails now, naming the file, not at the batch that reads it.

    skip_bad: drop the records with an unreadable file, with one warning listing them (an error
    when none is left), instead of raising InputError for the first.
    """

    def problem(r: ImageRecord) -> str | None:
        try:
            for path in (r.hr_path, r.lr_path, r.mask_path):
                if path is not None and (path is not r.mask_path or path.is_file()):
                    io.read_image(path)
        except (ValueError, OSError) as e:
            return str(e)
        return None

    with ThreadPoolExecutor(threads) as ex:  # Pillow decodes without the GIL
        problems = list(ex.map(problem, records))
    bad = [msg for msg in problems if msg is not None]
    if not bad:
        return records
    if not skip_bad:
        more = f" (and {len(bad) - 1} more; data.skip_bad=True skips them)" if len(bad) > 1 else ""
        raise InputError(bad[0] + more)
    keep = [r for r, msg in zip(records, problems) if msg is None]
    if not keep:
        raise InputError(f"all {len(records)} training images are unreadable, e.g. {bad[0]}")
    warnings.warn(f"skipping {len(bad)} of {len(records)} unreadable training images: {'; '.join(bad)}", stacklevel=2)
    return keep


def array_records(images: Sequence[tuple[str, np.ndarray]]) -> list[ImageRecord]:
    """Records for in-memory uint8 (H, W, 3) images."""
    if not images:
        raise InputError("images: empty list")
    out = []
    for name, img in images:
        img = np.asarray(img)
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise InputError(f"{name}: expected uint8 (H, W, 3), got {img.dtype} {img.shape}")
        out.append(ImageRecord(name=str(name), hr=img))
    return out


def record_hr_size(r: ImageRecord) -> tuple[int, int]:
    return r.hr.shape[:2] if r.hr is not None else image_size(r.hr_path)


def drop_small(records: list[ImageRecord], patch_size: int, scale: int) -> list[ImageRecord]:
    """Drops images that cannot hold one patch, with ONE warning listing them; error if none remain."""
    lp = patch_size // scale
    keep, small = [], []
    for r in records:
        h, w = record_hr_size(r)
        # The patch must fit in the HR and its LR (floor(HR/scale)).
        (keep if min(h // scale, w // scale) >= lp else small).append(r)
    if small:
        names = ", ".join(f"{r.name} ({'x'.join(map(str, record_hr_size(r)))})" for r in small)
        if not keep:
            raise InputError(f"all {len(records)} training images are smaller than the {patch_size}x{patch_size} patch: {names}")
        warnings.warn(f"skipping {len(small)} of {len(records)} training images smaller than the {patch_size}x{patch_size} patch: {names}", stacklevel=2)
    return keep


def load_hr(r: ImageRecord) -> np.ndarray:
    return r.hr if r.hr is not None else io.read_image(r.hr_path)


def load_lr(r: ImageRecord, hr: np.ndarray, scale: int) -> np.ndarray:
    """The record's stored LR, checked against the decoded HR (size errors name the file)."""
    lr = io.read_image(r.lr_path)
    check_lr_size(hr.shape[:2], lr.shape[:2], scale, r.hr_path or r.name, r.lr_path)
    return lr


# ----------------------------------------------------------------------------- evaluation


def _resolve_eval_dirs(root, hr_dir, lr_dir, scale):
    if root is not None:
        root = pathlib.Path(root)
        hr_dir = root / "HR"
        if not hr_dir.is_dir():
            raise FileNotFoundError(f"{root}: expected an HR/ folder (BasicSR layout <root>/HR, <root>/LR_bicubic/X{scale})")
        cand = root / "LR_bicubic" / f"X{scale}"
        lr_dir = cand if cand.is_dir() else None
    if hr_dir is None:
        raise InputError("iterate_eval_pairs: give root, hr_dir or 'demo'")
    return pathlib.Path(hr_dir), (None if lr_dir is None else pathlib.Path(lr_dir))


def iterate_eval_pairs(
    root: str | os.PathLike | None = None,
    *,
    scale: int,
    hr_dir: str | os.PathLike | None = None,
    lr_dir: str | os.PathLike | None = None,
    hr_mod: int | None = None,
) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Whole-image (name, lr uint8, hr uint8) pairs in sorted-name order.

    Args:
      root: BasicSR-layout folder (`<root>/HR`, and `<root>/LR_bicubic/X<scale>` when present,
        else LR made from HR), or 'demo' for the built-in validation photos (coffee, rocket).
      scale: SR factor.
      hr_dir, lr_dir: explicit folders instead of root (lr_dir None: LR made from HR).
      hr_mod: when LR is made from HR, HR is mod-cropped to a multiple of this (default: scale;
        the paper's test sets use 12). Must be a multiple of scale.
    Yields:
      (name, lr (h, w, 3), hr (h*scale, w*scale, 3)): with stored LR, h, w = LR size and HR is cropped
      top-left to it (LR must be floor(HR/scale)); otherwise HR is mod-cropped and LR = imresize(HR, 1/scale).
    """
    hr_mod = scale if hr_mod is None else hr_mod
    if hr_mod % scale:
        raise InputError(f"hr_mod {hr_mod} must be a multiple of scale {scale}")

    def from_hr(name, hr):
        hr = mod_crop(hr, hr_mod)
        return name, imresize(hr, 1.0 / scale), hr

    if root is not None and str(root) == "demo":
        from sslsr.data.builtin import demo_images

        for name, hr in demo_images("val"):
            yield from_hr(name, hr)
        return
    hr_dir, lr_dir = _resolve_eval_dirs(root, hr_dir, lr_dir, scale)
    # Validate everything (headers only) before yielding, so a bad file fails fast.
    records = folder_records(hr_dir, lr_dir, scale)
    for r in records:
        hr = io.read_image(r.hr_path)
        if r.lr_path is None:
            yield from_hr(r.name, hr)
        else:
            lr = load_lr(r, hr, scale)
            yield r.name, lr, hr[: lr.shape[0] * scale, : lr.shape[1] * scale]
