"""Inference speed of RRDBNet-23 x4 (ESRGAN generator) on Set5 / Urban100, vs MATLAB bicubic.

  python benchmarks/eval_speed.py --data_root ../shared/data --urban100_images 2 \
      --out benchmarks/results/eval.md

Random weights (BasicSR initialisation): speed does not depend on the values, and no pretrained
RRDBNet ships offline. Per image: XLA compilation for the image's shape is timed separately
(ahead-of-time compile) from the forward pass; bicubic upsampling (`imresize`, the baseline row of
the reports) of the same LR is timed in the same run. Also the deviation of tiled from untiled
inference on one Set5 image (the net's receptive field is far wider than any tile overlap, so
tiling is not exact for it).
"""

from __future__ import annotations

import argparse
import pathlib
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from sslsr import inference  # noqa: E402
from sslsr.data.datasets import iterate_eval_pairs  # noqa: E402
from sslsr.data.imresize import imresize  # noqa: E402
from sslsr.models import RRDBNet, registry  # noqa: E402


def compiled_forwards(model: nnx.Module):
    """shape -> (upscaler for that shape, compile seconds); each shape compiled ahead of time."""
    model.eval()
    scale = registry.scale_of(model)
    graphdef, state = nnx.split(model)
    jitted = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))
    cache = {}

    def get(shape):
        if shape not in cache:
            t0 = time.perf_counter()
            exe = jitted.lower(state, jax.ShapeDtypeStruct(shape, jnp.float32)).compile()
            fwd = lambda x: np.asarray(exe(state, jnp.asarray(x)))  # noqa: E731
            cache[shape] = (inference.ForwardUpscaler(fwd, scale), time.perf_counter() - t0)
        return cache[shape]

    return get


def time_dataset(get, root, n_images, scale):
    rows = []
    for i, (name, lr, hr) in enumerate(iterate_eval_pairs(root, scale=scale)):
        if i == n_images:
            break
        upscaler, compile_s = get((1, *lr.shape))
        t0 = time.perf_counter()
        inference.super_resolve(upscaler, lr)
        model_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        imresize(lr, scale)
        bic_s = time.perf_counter() - t0
        rows.append(dict(name=name, lr=lr.shape[:2], model_s=model_s, compile_s=compile_s, bicubic_s=bic_s))
        print(f"  {name} LR {lr.shape[1]}x{lr.shape[0]}: model {model_s:.2f}s (compile {compile_s:.1f}s), "
              f"bicubic {bic_s * 1e3:.1f} ms", flush=True)
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data_root", default=str(pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"))
    p.add_argument("--set5_images", type=int, default=5)
    p.add_argument("--urban100_images", type=int, default=2, help="Urban100 is slow on CPU: a subset")
    p.add_argument("--tile", type=int, default=64, help="LR tile for the deviation measurement")
    p.add_argument("--tile_overlap", type=int, default=16)
    p.add_argument("--out", default=None, help="markdown file for the results section")
    args = p.parse_args()

    root = pathlib.Path(args.data_root)
    t0 = time.perf_counter()
    model = RRDBNet(num_block=23, scale=4, rngs=nnx.Rngs(0))
    init_s = time.perf_counter() - t0
    get = compiled_forwards(model)
    print(f"RRDBNet-23 x4, random init ({init_s:.0f}s); devices: {jax.devices()}", flush=True)

    summary = {}
    for ds, n in (("Set5", args.set5_images), ("Urban100", args.urban100_images)):
        print(ds, flush=True)
        rows = time_dataset(get, root / ds, n, 4)
        summary[ds] = rows

    # Tiled vs untiled on the first Set5 image (baby, LR 128x128).
    name, lr, _ = next(iter(iterate_eval_pairs(root / "Set5", scale=4)))
    full = inference.super_resolve(get((1, *lr.shape))[0], lr)
    tile_up, tile_compile = get((1, args.tile, args.tile, 3))
    t0 = time.perf_counter()
    tiled = inference.super_resolve(tile_up, lr, tile=args.tile, tile_overlap=args.tile_overlap)
    tiled_s = time.perf_counter() - t0
    dev = float(np.abs(tiled - full).max())
    u8 = inference.to_uint8(tiled).astype(int) - inference.to_uint8(full).astype(int)
    print(f"tiled {args.tile}/{args.tile_overlap} vs untiled on {name}: max |diff| {dev:.3g} (float, [0,1]), "
          f"uint8 max {np.abs(u8).max()}, {np.mean(u8 != 0) * 100:.2f}% of values differ; tiled {tiled_s:.1f}s", flush=True)

    cmd = "python benchmarks/eval_speed.py " + " ".join(sys.argv[1:])
    lines = [
        "## Evaluation inference speed (RRDBNet-23 x4, CPU)",
        "",
        f"Command: `{cmd}`. Machine: {platform.machine()}, {jax.devices()[0].platform.upper()} "
        f"({jax.device_count()} device), shared with other jobs. RRDBNet-23 x4 with **random weights** "
        "(BasicSR init; speed does not depend on the values). Model time excludes XLA compilation, which "
        "is listed separately (once per LR shape); bicubic = MATLAB-exact `imresize` x4 of the same LR, "
        "timed in the same run.",
        "",
        "| dataset | images | mean LR pixels | model s/img | compile s/shape | bicubic s/img | model / bicubic |",
        "|---|---|---|---|---|---|---|",
    ]
    for ds, rows in summary.items():
        if not rows:
            continue
        m = np.mean([r["model_s"] for r in rows])
        c = np.mean([r["compile_s"] for r in rows])
        b = np.mean([r["bicubic_s"] for r in rows])
        px = np.mean([r["lr"][0] * r["lr"][1] for r in rows])
        lines.append(f"| {ds} | {len(rows)} | {px:.0f} | {m:.2f} | {c:.1f} | {b:.4f} | {m / b:.0f}x |")
    lines += [
        "",
        f"Tiled vs untiled (Set5 {name}, LR {lr.shape[1]}x{lr.shape[0]}, tile {args.tile}, overlap "
        f"{args.tile_overlap}): max |diff| {dev:.3g} on [0, 1] floats; after uint8 rounding max "
        f"{np.abs(u8).max()} levels, {np.mean(u8 != 0) * 100:.2f}% of values differ. "
        "The receptive field of RRDBNet-23 is far wider than the overlap, so tiling is approximate for "
        "it; with random weights (0.1-scaled dense blocks, 0.2 residual scaling) distant pixels barely "
        "contribute, so trained weights may deviate more. "
        f"Tiled run {tiled_s:.1f}s vs untiled {summary['Set5'][0]['model_s']:.1f}s.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
