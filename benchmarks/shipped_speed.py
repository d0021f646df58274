"""Inference time of the shipped model on a 512 x 512 input: sslsr vs the same network in PyTorch.

The shipped weights (`sslsr.weights.zoo`, loaded by name) run three ways in one process on the
same 512 x 512 RGB LR photo (scikit-image's astronaut) -> 2048 x 2048: sslsr's whole-image path
(`super_resolve`, one jitted forward), the path `python -m sslsr.upscale` takes by default (256 px
LR tiles with 32 px overlap, every tile the same compiled shape), and the PyTorch reference module
of the architecture (tests/torch_refs, eager, the same weights through `to_torch_state_dict`).
Prints a markdown table: steady-state seconds per image (best of --repeats), compile time, and the
largest difference from PyTorch's output in 8-bit levels.

    .venv/bin/python benchmarks/shipped_speed.py [--model srvgg-x4-psnr] [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from timing import best_of  # noqa: E402  (benchmarks/, the script's folder)


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="srvgg-x4-psnr", help="a shipped model name (sslsr.weights.zoo)")
    p.add_argument("--size", type=int, default=512, help="LR input height = width (a crop of astronaut)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per path")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (XLA uses all visible cores)")
    return p.parse_args()



def _torch_reference(arch: str, kwargs: dict):
    """The PyTorch module of `arch` from tests/torch_refs, built with the shipped kwargs."""
    if arch == "SRVGGNetCompact":
        from tests.torch_refs.srvgg import SRVGGNetCompact

        return SRVGGNetCompact(**{k: v for k, v in kwargs.items() if k != "net_scale"})
    if arch == "MSRResNet":
        from tests.torch_refs.msrresnet import MSRResNet

        return MSRResNet(**kwargs)
    raise SystemExit(f"no PyTorch reference for {arch} in tests/torch_refs")


def main() -> None:
    args = _parse()
    import jax
    import numpy as np
    import torch
    from skimage import data

    from sslsr.inference import NetworkUpscaler, super_resolve
    from sslsr.upscale import DEFAULT_TILE
    from sslsr.weights import open_generator, pytorch, zoo

    torch.set_num_threads(args.threads)
    gen = open_generator(args.model)
    lr = data.astronaut()[: args.size, : args.size]
    upscaler = NetworkUpscaler(gen.model)

    t0 = time.perf_counter()
    whole = super_resolve(upscaler, lr)  # first call: compiles for this shape
    compile_whole = time.perf_counter() - t0
    t_whole = best_of(lambda: super_resolve(upscaler, lr), args.repeats)

    tiled_kw = dict(tile=DEFAULT_TILE, tile_overlap=32, pad_to_tile=True)
    t0 = time.perf_counter()
    tiled = super_resolve(upscaler, lr, **tiled_kw)
    compile_tiled = time.perf_counter() - t0
    t_tiled = best_of(lambda: super_resolve(upscaler, lr, **tiled_kw), args.repeats)

    ref = _torch_reference(gen.arch, gen.kwargs).eval()
    state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in pytorch.to_torch_state_dict(gen.model, gen.arch).items()}
    ref.load_state_dict(state)
    x = torch.from_numpy(lr.astype(np.float32).transpose(2, 0, 1)[None] / 255.0)
    with torch.inference_mode():
        expected = ref(x)[0].numpy().transpose(1, 2, 0).clip(0, 1)  # warm-up
        t_torch = best_of(lambda: ref(x), args.repeats)

    def levels(a):  # largest difference from PyTorch in 8-bit levels
        return float(np.abs(a - expected).max() * 255)

    size = zoo.locate(args.model).stat().st_size
    print(f"{args.model}: {gen.arch} {gen.kwargs}, {sum(v.numel() for v in state.values())} parameters, "
          f"{size / 1e6:.2f} MB file")
    print(f"LR {args.size}x{args.size}x3 -> x4; {jax.devices()[0].device_kind}, os.cpu_count()={os.cpu_count()}, "
          f"torch threads {args.threads}, best of {args.repeats}, float32")
    print()
    print("| path | s / image | compile (s) | max diff vs PyTorch (8-bit levels) |")
    print("|---|---|---|---|")
    print(f"| sslsr, whole image (`super_resolve`) | {t_whole:.2f} | {compile_whole - t_whole:.1f} | {levels(whole):.3f} |")
    print(f"| sslsr, `python -m sslsr.upscale` default ({DEFAULT_TILE} px tiles) | {t_tiled:.2f} | "
          f"{compile_tiled - t_tiled:.1f} | {levels(tiled):.3f} |")
    print(f"| PyTorch {torch.__version__} eager (tests/torch_refs) | {t_torch:.2f} | – | 0 |")
    print()
    print(f"sslsr whole image / PyTorch: {t_whole / t_torch:.2f}")


if __name__ == "__main__":
    main()
