"""Forward speed of the full-size generators: jitted JAX vs the PyTorch reference modules (eager).

Both sides run the same random weights (converted with `sslsr.convert.from_torch`) on one LR
input, in the same process; the script prints a markdown table with the steady-state time per
forward, the JAX/PyTorch ratio (< 1 means JAX is faster), JAX compile time and the output
agreement.

    .venv/bin/python benchmarks/models_speed.py [--size 128] [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=128, help="LR input height = width")
    p.add_argument("--repeats", type=int, default=3, help="timed forwards per model and framework")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (XLA uses all visible cores)")
    p.add_argument("--models", default="RRDBNet,SwinIR", help="comma-separated subset of RRDBNet,SwinIR")
    return p.parse_args()


def _pure_forward(graphdef):
    from flax import nnx

    return lambda state, x: nnx.merge(graphdef, state)(x)


def main() -> None:
    args = _parse()
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch
    from flax import nnx

    from sslsr import convert
    from tests.torch_refs.rrdbnet import RRDBNet as TorchRRDBNet
    from tests.torch_refs.swinir import SwinIR as TorchSwinIR

    torch.set_num_threads(args.threads)
    configs = {
        "RRDBNet": (TorchRRDBNet, dict(num_in_ch=3, num_out_ch=3, scale=4, num_feat=64, num_block=23, num_grow_ch=32)),
        "SwinIR": (TorchSwinIR, dict(upscale=4, img_size=64, window_size=8, upsampler="pixelshuffle")),
    }
    x = np.random.default_rng(0).random((1, args.size, args.size, 3)).astype(np.float32)
    x_torch = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    rows = []
    for name in args.models.split(","):
        torch_cls, kw = configs[name]
        torch.manual_seed(0)
        ref = torch_cls(**kw).eval()
        model = convert.from_torch(ref.state_dict(), name, **kw)
        graphdef, state = nnx.split(model)
        fwd = jax.jit(_pure_forward(graphdef))

        t0 = time.perf_counter()
        compiled = fwd.lower(state, jnp.asarray(x)).compile()
        compile_s = time.perf_counter() - t0
        out = np.asarray(compiled(state, jnp.asarray(x)))  # warm-up
        jax_times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            compiled(state, jnp.asarray(x)).block_until_ready()
            jax_times.append(time.perf_counter() - t0)

        with torch.inference_mode():
            expected = ref(x_torch).numpy().transpose(0, 2, 3, 1)  # warm-up
            torch_times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                ref(x_torch)
                torch_times.append(time.perf_counter() - t0)
        err = float(np.max(np.abs(out - expected)) / np.max(np.abs(expected)))
        tj, tt = min(jax_times), min(torch_times)
        rows.append((name, tj, tt, tj / tt, compile_s, err))
        print(
            f"{name}: jax {tj:.2f}s torch {tt:.2f}s ratio {tj / tt:.2f} compile {compile_s:.1f}s rel err {err:.1e}",
            flush=True,
        )

    print()
    print(
        f"LR input 1x{args.size}x{args.size}x3, x4 output; {jax.devices()[0].device_kind}, "
        f"os.cpu_count()={os.cpu_count()}, torch threads {args.threads}, best of {args.repeats}"
    )
    print()
    print("| model | JAX jit (s) | PyTorch eager (s) | JAX / PyTorch | JAX compile (s) | max rel diff |")
    print("|---|---|---|---|---|---|")
    for name, tj, tt, ratio, compile_s, err in rows:
        print(f"| {name} | {tj:.2f} | {tt:.2f} | {ratio:.2f} | {compile_s:.1f} | {err:.1e} |")


if __name__ == "__main__":
    main()
