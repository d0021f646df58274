"""Plain inference: super-resolve image files with a trained generator.

  python -m sslsr.upscale photo.jpg photo_x4.png --checkpoint workdirs/esrgan_ssl
  python -m sslsr.upscale in_dir/ out_dir/ --checkpoint RealESRGAN_x4plus.pth --arch RRDBNet \
      --arch_kwargs num_block=23 --tile 256

Inputs are decoded to RGB (alpha dropped, grey replicated); outputs are PNG. A folder input writes
`<out>/<stem>.png` for every image in it.
"""

from __future__ import annotations

import argparse
import ast
import pathlib
import sys
from collections.abc import Sequence


def _kwargs(items: Sequence[str]) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--arch_kwargs: expected key=value, got {item!r}")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def _pairs(src: pathlib.Path, dst: pathlib.Path) -> list[tuple[pathlib.Path, pathlib.Path]]:
    from sslsr.data.io import IMAGE_EXTENSIONS

    if src.is_dir():
        files = sorted(p for p in src.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise SystemExit(f"{src}: no images ({', '.join(IMAGE_EXTENSIONS)})")
        if dst.suffix:
            raise SystemExit(f"{dst}: the input is a folder, so the output must be a folder too")
        return [(p, dst / f"{p.stem}.png") for p in files]
    if not src.is_file():
        raise SystemExit(f"{src}: no such file or folder")
    return [(src, dst if dst.suffix else dst / f"{src.stem}.png")]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sslsr.upscale", description=__doc__.splitlines()[0])
    parser.add_argument("input", type=pathlib.Path, help="image file or folder")
    parser.add_argument("output", type=pathlib.Path, help="output .png file or folder")
    parser.add_argument("--checkpoint", required=True, help="training workdir, or .pth/.safetensors weights")
    parser.add_argument("--arch", help="architecture of a weights file: RRDBNet, MSRResNet or SwinIR")
    parser.add_argument("--arch_kwargs", nargs="*", default=[], help="constructor arguments, e.g. num_block=23")
    parser.add_argument("--scale", type=int, help="SR factor (default: the model's own)")
    parser.add_argument("--tile", type=int, default=0, help="LR tile size (0: whole image)")
    parser.add_argument("--tile_overlap", type=int, default=32, help="LR pixels shared by neighbouring tiles")
    parser.add_argument("--self_ensemble", action="store_true", help="x8 self-ensemble")
    parser.add_argument("--bf16", action="store_true", help="run the model in bfloat16")
    args = parser.parse_args(argv)

    from PIL import Image
    from tqdm import tqdm

    from sslsr import evaluate
    from sslsr.data.io import read_image

    jobs = _pairs(args.input, args.output)
    model = evaluate.load_model(args.checkpoint, arch=args.arch, **_kwargs(args.arch_kwargs))
    scale = args.scale or evaluate.model_scale(model)
    if scale is None:
        raise SystemExit("--scale: the model does not declare its scale; pass --scale")
    forward = evaluate.make_forward(model, bf16=args.bf16)
    for src, dst in tqdm(jobs, unit="img", disable=len(jobs) == 1):
        sr = evaluate.super_resolve(
            forward, read_image(src), scale=scale, tile=args.tile or None,
            tile_overlap=args.tile_overlap, self_ensemble=args.self_ensemble,
        )
        dst.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(evaluate.to_uint8(sr)).save(dst)
        print(f"{src} -> {dst} ({sr.shape[1]}x{sr.shape[0]})", file=sys.stderr)


if __name__ == "__main__":
    main()
