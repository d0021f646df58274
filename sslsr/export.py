"""Export a generator to the files other SR tools open.

  python -m sslsr.export workdirs/esrgan_ssl esrgan_ssl.pth              # BasicSR/spandrel .pth (EMA)
  python -m sslsr.export workdirs/esrgan_ssl g.safetensors --weights raw
  python -m sslsr.export realesrgan-x4plus x4plus.pth                    # a named model
  python -m sslsr.export RealESRGAN_x4plus.pth x4plus.onnx --format onnx --dtype fp16 --dynamic

The source is anything `--checkpoint` accepts (a training workdir or checkpoint step, a
.pth/.safetensors/ncnn .param file, a named model); a file's architecture is detected from its
keys unless --arch is given. `.pth` holds `{'params_ema' | 'params': state_dict}` with the
official/BasicSR key names; `.safetensors` the flat state dict with the architecture, kwargs,
scale and step in its metadata; ONNX see `sslsr.weights.onnx`. The output is written under a
temporary name and renamed, so a failed export leaves no file.
"""

from __future__ import annotations

import pathlib
import sys

from absl import flags

from sslsr import upscale
from sslsr.cli import UserError, parse_kwargs, run

WEIGHTS = flags.DEFINE_enum(
    "weights", "ema", ["ema", "raw"],
    "ema: a workdir's EMA generator (the trained G when the run kept none), stored under 'params_ema'; "
    "raw: the trained G, under 'params'. For a .pth source: the wrapper key read first.",
)
FORMAT = flags.DEFINE_enum("format", "auto", ["auto", "pth", "safetensors", "onnx"],
                           "Output format; auto: from the output suffix (.pth/.pt, .safetensors, .onnx).")
DYNAMIC = flags.DEFINE_bool("dynamic", False, "ONNX only: dynamic batch, height and width (else fixed --size).")
SIZE = flags.DEFINE_integer("size", 64, "ONNX only: the LR height and width the graph is traced (and fixed) at.")
# --arch / --arch_kwargs (when detection cannot tell, e.g. an SRVGGNetCompact without PReLU) and
# --dtype (ONNX: fp32/float32 or fp16/float16) are upscale's flags: one definition per name.
ARCH, ARCH_KWARGS, DTYPE = upscale.ARCH, upscale.ARCH_KWARGS, upscale.DTYPE
_ONNX_DTYPES = {"fp32": "fp32", "float32": "fp32", "fp16": "fp16", "float16": "fp16"}

_SUFFIX_FORMAT = {".pth": "pth", ".pt": "pth", ".safetensors": "safetensors", ".onnx": "onnx"}


def _format(out: pathlib.Path) -> str:
    fmt = FORMAT.value if FORMAT.value != "auto" else _SUFFIX_FORMAT.get(out.suffix)
    if fmt is None:
        raise UserError(f"{out}: cannot tell the format from {out.suffix!r} (use .pth, .safetensors, .onnx or --format)")
    if _SUFFIX_FORMAT.get(out.suffix, fmt) != fmt:
        raise UserError(f"{out}: --format {fmt} but the suffix {out.suffix!r} says {_SUFFIX_FORMAT[out.suffix]}")
    if fmt != "onnx":
        for name, changed in (("dtype", DTYPE.present), ("dynamic", DYNAMIC.value), ("size", SIZE.present)):
            if changed:
                raise UserError(f"--{name}: applies to --format onnx only")
    elif DTYPE.value not in _ONNX_DTYPES:
        raise UserError(f"--dtype: ONNX export takes fp32 or fp16, got {DTYPE.value!r}")
    return fmt


def main(argv: list[str]) -> None:
    if len(argv) != 3:
        raise UserError("expected two arguments: the source (workdir, weights file or named model) and the output file")
    from sslsr.weights import open_generator, save

    source, out = argv[1], pathlib.Path(argv[2])
    fmt = _format(out)
    save.check_writable(out)  # before the (slow) load
    if pathlib.Path(source).resolve() == out.resolve():
        raise UserError(f"{out}: the output would overwrite the source")
    ema = WEIGHTS.value == "ema"
    gen = open_generator(source, arch=ARCH.value, prefer_ema=ema, param_key="params_ema" if ema else "params",
                         **parse_kwargs(ARCH_KWARGS.value))
    if pathlib.Path(source).is_dir() and ema and gen.weights != "ema":
        print(f"{source}: the run kept no EMA generator; exporting the trained G under 'params'", file=sys.stderr)
    if fmt == "onnx":
        from sslsr.weights import onnx

        onnx.write(gen, out, dtype=_ONNX_DTYPES[DTYPE.value], dynamic=DYNAMIC.value, size=SIZE.value)
    else:
        save.write(gen, out, fmt)
    print(f"{source} ({gen.arch}, {gen.weights} weights) -> {out}", file=sys.stderr)


if __name__ == "__main__":
    run(main)
