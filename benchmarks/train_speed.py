"""Steps/s of the ESRGAN-SSL training step (G + D + EMA update) on CPU, with and without SSL.

Both variants are built from the same config in the same process (the one without SSL only sets
loss.ssl_weight = 0, which removes the term at trace time) and timed alternately, so their ratio is
insensitive to machine load drifts; the SSL share of a step is (t_ssl - t_no_ssl) / t_ssl.

    python benchmarks/train_speed.py                      # demo size: RRDBNet 2x32, 64 px, batch 4
    python benchmarks/train_speed.py --patch 128 --steps 5 --out benchmarks/results/train.md
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import pathlib
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

REPO = pathlib.Path(__file__).resolve().parents[1]


def _config(patch: int, batch: int):
    spec = importlib.util.spec_from_file_location("esrgan_ssl", REPO / "configs" / "esrgan_ssl.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    c = mod.get_config("demo")
    c.data.hr_patch = patch
    c.train.batch_size = batch
    return c


def _build(c):
    import optax

    from sslsr.train import trainer
    from sslsr.train.step import LossSpec, TrainState, make_train_step

    spec = LossSpec.from_config(c)
    g = trainer._init_generator(c)
    d = trainer._build_discriminator(c)
    ts = TrainState(g, optax.adam(1e-4), d=d, tx_d=optax.adam(1e-4), ema=True)
    ts.train()
    frozen = trainer._build_frozen(c, spec)
    graphdef, state = nnx.split(ts)
    fgd, fstate = nnx.split(frozen)
    step = jax.jit(make_train_step(graphdef, fgd, spec), static_argnums=4, donate_argnums=0)
    return step, state, fstate


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patch", type=int, default=64, help="HR patch side (LR = patch / 4)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=10, help="timed steps per variant and round")
    ap.add_argument("--rounds", type=int, default=2, help="alternating timing rounds (best kept)")
    ap.add_argument("--out", default="", help="append a markdown section to this file")
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    hr = rng.random((args.batch, args.patch, args.patch, 3), np.float32)
    p = args.patch // 4
    batch = {"lr": jnp.asarray(hr.reshape(args.batch, p, 4, p, 4, 3).mean(axis=(2, 4))), "hr": jnp.asarray(hr),
             "mask": jnp.asarray((rng.random(hr.shape[:3]) > 0.7).astype(np.float32))}

    variants = {}
    for name, ssl in (("with SSL", 1000.0), ("without SSL", 0.0)):
        c = _config(args.patch, args.batch)
        c.loss.ssl_weight = ssl
        step, state, fstate = _build(c)
        t0 = time.perf_counter()
        state, m = step(state, fstate, batch, jnp.int32(0), False)
        jax.block_until_ready(m)
        variants[name] = {"step": step, "state": state, "fstate": fstate, "compile_s": time.perf_counter() - t0,
                          "best": float("inf")}
    for _ in range(args.rounds):
        for v in variants.values():
            t0 = time.perf_counter()
            for i in range(args.steps):
                v["state"], m = v["step"](v["state"], v["fstate"], batch, jnp.int32(i + 1), False)
            jax.block_until_ready(m)
            v["best"] = min(v["best"], (time.perf_counter() - t0) / args.steps)

    t_ssl, t_base = variants["with SSL"]["best"], variants["without SSL"]["best"]
    share = (t_ssl - t_base) / t_ssl
    cmd = "python benchmarks/train_speed.py " + " ".join(
        f"--{k}={v}" for k, v in vars(args).items() if k != "out" and v != ap.get_default(k))
    lines = [
        "## Training step speed (CPU)",
        "",
        f"Command: `{cmd.strip()}` on {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"jax {jax.__version__}, backend {jax.default_backend()}.",
        f"Step = ESRGAN-SSL demo recipe: G RRDBNet(num_feat=32, num_block=2) L1 + VGG16 conv5_3 perceptual + "
        f"relativistic GAN (UNetDiscriminatorSN, 16 features) + SSL (25/9, h 0.004), then the D update and "
        f"the EMA; batch {args.batch}, HR patch {args.patch} px, float32.",
        "",
        "| variant | s/step | steps/s | first call (compile) s |",
        "|---|---|---|---|",
    ]
    for name, v in variants.items():
        lines.append(f"| {name} | {v['best']:.3f} | {1 / v['best']:.2f} | {v['compile_s']:.1f} |")
    lines += ["", f"SSL share of the step: **{100 * share:.1f}%** (with/without SSL time ratio {t_ssl / t_base:.2f}).", ""]
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "a") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
