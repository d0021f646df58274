"""MetaF2N test-time adaptation: super-resolve one photo with a network adapted to it from its faces.

  python -m sslsr.adapt --checkpoint workdirs/metaf2n --input photo.png --out out.png \
      --restorer GPEN-BFR-512.pth [--steps 1] [--faces boxes.json]
  python -m sslsr.adapt --checkpoint workdirs/metaf2n_demo --input lr.png --out out.png \
      --restorer oracle --ground_truth hr.png --faces boxes.json          (synthetic evaluation)

Faces: `--faces boxes.json` (a list of [x0, y0, x1, y1] boxes, or of {"box": [...], "landmarks":
[[x, y] x 5]} objects, in pixels of the input photo; landmarks let the restorer see aligned faces),
else found by MTCNN (`sslsr.faces.detect`, with landmarks). Pseudo ground truth:
`--restorer` a GPEN-BFR `.pth` (its size by --restorer_size), or 'oracle' (the --ground_truth
photo's face, for synthetic data). The MaskNet comes from the MetaF2N workdir; any other
checkpoint adapts with uniform weights (with a warning). No face: a warning, and the unadapted
model's output. Writes --out (the SR photo) and beside it `<stem>_faces.json` (boxes, scores,
mask statistics, what happened), `<stem>_face<i>.png` (bicubic-upsampled LR face | pseudo-GT) and
`<stem>_mask<i>.png` (the MaskNet map, 255 = weight 1 or more). See docs/metaf2n.md.
"""

from __future__ import annotations

import json
import pathlib
import warnings

import numpy as np
from absl import flags

from sslsr.cli import UserError, define_out, run
from sslsr.upscale import CHECKPOINT, TILE, TILE_OVERLAP

INPUT = flags.DEFINE_string("input", None, "The LR photo to super-resolve.")
OUT = define_out("The SR photo to write (.png/.jpg/.webp); face files go beside it.")
STEPS = flags.DEFINE_integer("steps", 1, "Inner SGD steps on the faces (MetaF2N: 1).")
FACES = flags.DEFINE_string("faces", None, "JSON list of face boxes [x0, y0, x1, y1] in input pixels (default: detect).")
RESTORER = flags.DEFINE_string("restorer", None, "Pseudo ground truth: a GPEN-BFR .pth file, or 'oracle' (needs --ground_truth).")
RESTORER_SIZE = flags.DEFINE_integer("restorer_size", 512, "The GPEN file's face size (512 or 256).")
GROUND_TRUTH = flags.DEFINE_string("ground_truth", None, "With --restorer oracle: the HR photo (input size x scale).")
INNER_LR = flags.DEFINE_float("inner_lr", 1e-2, "Inner SGD learning rate (MetaF2N: 0.01).")
FACE_PATCHES = flags.DEFINE_integer("face_patches", 16, "Random LR patches (16 px) per face (MetaF2N: 16).")
FACE_THRESHOLD = flags.DEFINE_float("face_threshold", 0.9, "Detector score a face needs (MetaF2N: 0.9).")

MIN_SIDE = 16  # one 16 px LR patch


def read_boxes(path: str):
    """`--faces` file -> [FaceBox]; UserError naming the file otherwise."""
    from sslsr.meta.adapt import FaceBox

    try:
        items = json.loads(pathlib.Path(path).read_text())
        boxes = []
        for it in items:
            if isinstance(it, dict):
                marks = None if it.get("landmarks") is None else np.asarray(it["landmarks"], np.float64).reshape(5, 2)
                boxes.append(FaceBox(*map(float, it["box"]), score=float(it.get("score", 1.0)), landmarks=marks))
            else:
                boxes.append(FaceBox(*map(float, it)))
    except FileNotFoundError:
        raise
    except (ValueError, TypeError, KeyError) as e:
        raise UserError(f"{path}: not a list of face boxes [x0, y0, x1, y1] ({type(e).__name__}: {e})") from None
    return boxes


def _pseudo_gt(lr_shape, scale: int):
    from sslsr.meta.adapt import OracleFaces, RestorerFaces

    if not RESTORER.value:
        raise UserError("--restorer: give a GPEN-BFR .pth file, or 'oracle' with --ground_truth")
    if RESTORER.value == "oracle":
        if not GROUND_TRUTH.value:
            raise UserError("--ground_truth: --restorer oracle takes the faces from the HR photo; give it")
        from sslsr.data.io import read_image

        hr = read_image(GROUND_TRUTH.value)
        want = (lr_shape[0] * scale, lr_shape[1] * scale)
        if hr.shape[:2] != want:
            raise UserError(f"{GROUND_TRUTH.value}: {hr.shape[1]}x{hr.shape[0]} px, expected the input x{scale} "
                            f"({want[1]}x{want[0]})")
        return OracleFaces(hr.astype(np.float32) / 255)
    try:
        from sslsr.faces.restore import load_restorer
    except ImportError as e:
        raise UserError(f"--restorer: face restoration is not available ({e}); use 'oracle'") from None
    try:
        restorer = load_restorer(RESTORER.value, RESTORER_SIZE.value)
    except UserError:
        raise
    except (ValueError, KeyError) as e:  # a file of another architecture
        raise UserError(f"{RESTORER.value}: not a GPEN-BFR-{RESTORER_SIZE.value} file ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''})") from None
    return RestorerFaces(restorer)


def _as_float(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float32) / (65535.0 if img.dtype == np.uint16 else 255.0)


def adapt_photo(checkpoint: str, src: str, dst: str) -> dict:
    """The whole command: reads, adapts, writes; returns the `_faces.json` report."""
    from sslsr.data.io import read_image_unchanged, to_uint8, write_image
    from sslsr.files import write_text
    from sslsr.inference import super_resolve_image
    from sslsr.meta.adapt import AdaptingUpscaler, load_masknet
    from sslsr.weights import load_generator

    out = pathlib.Path(dst)
    if out.resolve() == pathlib.Path(src).resolve():
        raise UserError(f"{dst}: would overwrite the input photo; choose another --out")
    img = read_image_unchanged(src)
    h, w = img.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise UserError(f"{src}: {w}x{h} px is too small to adapt on (faces need at least {MIN_SIDE} px)")
    grey = img.ndim == 2 or img.shape[2] == 2
    if grey:
        warnings.warn(f"{src}: grey photo: faces are found and restored on three equal channels; the output is grey")
    boxes = read_boxes(FACES.value) if FACES.value else None
    g = load_generator(checkpoint)
    mask = load_masknet(checkpoint)
    if mask is None:
        warnings.warn(f"{checkpoint}: not a MetaF2N workdir (no MaskNet): every face pixel weighs 1")
    from sslsr.models import registry

    upscaler = AdaptingUpscaler(g, mask, pseudo_gt=_pseudo_gt(img.shape, registry.scale_of(g)), boxes=boxes,
                                steps=STEPS.value, inner_lr=INNER_LR.value, patches=FACE_PATCHES.value,
                                threshold=FACE_THRESHOLD.value)
    tile = TILE.value or None
    sr = super_resolve_image(upscaler, _as_float(img), tile=tile, tile_overlap=TILE_OVERLAP.value)
    write_image(out, to_uint8(sr))
    report = {"input": str(src), "checkpoint": str(checkpoint), "restorer": upscaler.pseudo_gt.name,
              "steps": STEPS.value, "message": upscaler.last.get("message", ""), "faces": []}
    for i, face in enumerate(upscaler.last.get("faces", [])):
        b, m = face["box"], face["mask"]
        pair = np.concatenate([face["lr_up"], np.clip(face["pseudo_gt"], 0, 1)], axis=1)
        write_image(out.with_name(f"{out.stem}_face{i}.png"), to_uint8(pair))
        write_image(out.with_name(f"{out.stem}_mask{i}.png"), to_uint8(np.clip(m, 0, 1)))
        report["faces"].append({"box": [b.x0, b.y0, b.x1, b.y1], "score": b.score, "crop_yx_side": list(face["crop"]),
                                "landmarks": None if b.landmarks is None else np.asarray(b.landmarks).tolist(),
                                "mask_min": float(m.min()), "mask_mean": float(m.mean()), "mask_max": float(m.max())})
    write_text(out.with_name(f"{out.stem}_faces.json"), json.dumps(report, indent=2) + "\n")
    print(f"{dst}: {report['message']}")
    return report


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise UserError(f"unexpected arguments {argv[1:]}: use --input and --out")
    for flag in (INPUT, OUT):
        if not flag.value:
            raise UserError(f"--{flag.name}: required")
    adapt_photo(CHECKPOINT.value, INPUT.value, OUT.value)


if __name__ == "__main__":
    run(main)
