"""Network interpolation (ESRGAN's net_interp) between two generators of the same architecture.

  python -m sslsr.interp workdirs/psnr workdirs/esrgan_ssl --alpha 0.8 interp_0.8.pth

writes alpha * A + (1 - alpha) * B, parameter by parameter: alpha 1 is A, 0 is B. A and B are any
`--checkpoint` source (training workdir or step, .pth/.safetensors/ncnn file, named model), each
taken as its EMA generator where one exists. The output is a
.pth or .safetensors file written as `python -m sslsr.export` writes it (no partial file on error).
"""

from __future__ import annotations

import pathlib
import sys

from absl import flags

from sslsr.cli import UserError, run

ALPHA = flags.DEFINE_float("alpha", None, "Weight of the first generator A, in [0, 1] for an interpolation. Required.")


def main(argv: list[str]) -> None:
    if len(argv) != 4:
        raise UserError("expected three arguments: generator A, generator B and the output .pth/.safetensors")
    if ALPHA.value is None:
        raise UserError("--alpha: required (the weight of A; 1 gives A, 0 gives B)")
    from sslsr.weights import blend, open_generator, save

    a_src, b_src, out = argv[1], argv[2], pathlib.Path(argv[3])
    if out.suffix not in (".pth", ".pt", ".safetensors"):
        raise UserError(f"{out}: unsupported output type {out.suffix!r} (expected .pth or .safetensors)")
    save.check_writable(out)  # before the (slow) loads
    # Each source's EMA generator where it has one (workdir 'ema', a .pth's 'params_ema'), as
    # `python -m sslsr.export` defaults to. (No --weights flag here: export defines that name.)
    a = open_generator(a_src, prefer_ema=True, param_key="params_ema")
    b = open_generator(b_src, prefer_ema=True, param_key="params_ema")
    mixed = blend.blend(a, b, ALPHA.value, names=(a_src, b_src))
    save.write(mixed, out)
    print(f"{ALPHA.value} * {a_src} + {1 - ALPHA.value:g} * {b_src} ({mixed.arch}) -> {out}", file=sys.stderr)


if __name__ == "__main__":
    run(main)
