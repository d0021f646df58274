"""Plain inference: super-resolve image files with a trained generator.

  python -m sslsr.upscale photo.jpg photo_x4.png --checkpoint workdirs/esrgan_ssl
  python -m sslsr.upscale in_dir/ out_dir/ --checkpoint RealESRGAN_x4plus.pth --arch RRDBNet \
      --arch_kwargs num_block=23 --tile 256

Inputs are decoded to RGB (alpha dropped, grey replicated); outputs are PNG. A folder input writes
`<out>/<stem>.png` for every image in it.

The flags naming the model and how it runs (--checkpoint, --arch, --arch_kwargs, --scale, --tile,
--tile_overlap, --self_ensemble, --dtype) are defined here once; `eval.py` uses them too.
"""

from __future__ import annotations

import pathlib
import sys

from absl import flags

from sslsr.cli import UserError, parse_kwargs, run

CHECKPOINT = flags.DEFINE_string(
    "checkpoint", None, "Training workdir, or a .pth/.safetensors weights file (needs --arch). Required."
)
ARCH = flags.DEFINE_string("arch", None, "Architecture of a weights file, e.g. RRDBNet, MSRResNet or SwinIR.")
ARCH_KWARGS = flags.DEFINE_list("arch_kwargs", [], "Constructor arguments for --arch, e.g. num_block=23,num_feat=64.")
SCALE = flags.DEFINE_integer("scale", None, "SR factor (default: the model's own; must agree with it).")
TILE = flags.DEFINE_integer("tile", 0, "LR tile size for tiled inference (0: whole images).")
TILE_OVERLAP = flags.DEFINE_integer("tile_overlap", 32, "LR pixels shared by neighbouring tiles.")
SELF_ENSEMBLE = flags.DEFINE_bool("self_ensemble", False, "Average over the 8 flips/transposes (x8 self-ensemble).")
DTYPE = flags.DEFINE_string("dtype", "float32", "float32 | bfloat16: the model's parameters and activations.")
BF16 = flags.DEFINE_bool("bf16", False, "Same as --dtype=bfloat16 (kept for existing command lines).")


def load_upscaler():
    """The model the flags name, ready for inference (`sslsr.inference.NetworkUpscaler`).

    Raises:
      UserError: --dtype unknown, or --scale contradicting the model's scale (checked before any
        image is processed); the weights layer's errors name the file.
    """
    from sslsr.inference import NetworkUpscaler
    from sslsr.models.precision import compute_dtype
    from sslsr.weights import load_generator

    # Checked here, not by absl, so that importing this module (eval.py, tests) adds no validator
    # that other CLIs' command lines would have to satisfy.
    if not CHECKPOINT.value:
        raise UserError("--checkpoint: required (a training workdir, or a .pth/.safetensors file with --arch)")
    dtype = "bfloat16" if BF16.value else DTYPE.value
    try:
        compute_dtype(dtype)
    except ValueError as e:
        raise UserError(f"--dtype: {e}") from None
    model = load_generator(CHECKPOINT.value, arch=ARCH.value, **parse_kwargs(ARCH_KWARGS.value))
    try:
        return NetworkUpscaler(model, scale=SCALE.value, dtype=dtype)
    except ValueError as e:
        raise UserError(f"--scale: {e}") from None


def _pairs(src: pathlib.Path, dst: pathlib.Path) -> list[tuple[pathlib.Path, pathlib.Path]]:
    from sslsr.data.io import list_images

    if src.is_dir():
        if dst.suffix:
            raise UserError(f"{dst}: the input is a folder, so the output must be a folder too")
        try:
            files = list_images(src)
        except ValueError as e:
            raise UserError(str(e)) from None
        return [(p, dst / f"{p.stem}.png") for p in files]
    if not src.is_file():
        raise UserError(f"{src}: no such file or folder")
    return [(src, dst if dst.suffix else dst / f"{src.stem}.png")]


def main(argv: list[str]) -> None:
    if len(argv) != 3:
        raise UserError("expected two arguments, the input image or folder and the output .png or folder")
    from tqdm import tqdm

    from sslsr.data.io import read_image, write_png
    from sslsr.inference import super_resolve, to_uint8

    jobs = _pairs(pathlib.Path(argv[1]), pathlib.Path(argv[2]))
    upscaler = load_upscaler()
    for src, dst in tqdm(jobs, unit="img", disable=len(jobs) == 1):
        sr = super_resolve(
            upscaler, read_image(src), tile=TILE.value or None, tile_overlap=TILE_OVERLAP.value,
            self_ensemble=SELF_ENSEMBLE.value,
        )
        write_png(dst, to_uint8(sr))
        print(f"{src} -> {dst} ({sr.shape[1]}x{sr.shape[0]})", file=sys.stderr)


if __name__ == "__main__":
    run(main)
