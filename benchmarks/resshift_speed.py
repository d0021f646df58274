"""ResShift cost: training step time and memory with and without SSL, sampling time per image.

    python benchmarks/resshift_speed.py [--repeats 3] [--big] [--micro 1,2,4]

Prints the machine, then:
  * at the demo size (configs/resshift.py:demo and configs/resshift_ssl.py:demo: pixel space,
    32-channel 2-level ResShiftUNet, batch 4 x 64 px): compile time, best-of step time and XLA's
    compiled memory (temporaries + arguments + outputs - donated) of the jitted training step, without and
    with SSL (beta 1, gamma 0.1, through the identity "decoder"), and the SSL/plain ratios;
  * sampling one 64 x 64 LR image (x4, 256 px out) with the demo model: 15 steps and 4 (respaced);
  * with --big, the published model (ResShiftUNet 118.6M + VQ-f4, 256 px HR / 64 px LR, the
    decoder in the SSL step): the compiled memory of the training step per micro-batch size given
    by --micro, without and with SSL, compile only (abstract weights, nothing runs: 8 helpers share
    this machine's 24 GB), the per-sample slope and the largest micro-batch whose estimate fits in
    24 GB (this machine) and in 80 GB; plus sampling one 64 px LR image (random weights): time and
    compiled memory.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from metaf2n_speed import machine  # noqa: E402
from timing import best_of  # noqa: E402

GB = 1024**3


def _config(ssl: bool, big: bool, micro: int = 4):
    from configs import resshift, resshift_ssl

    c = (resshift_ssl if ssl else resshift).get_config(None if big else "demo")
    c.train.batch_size = micro
    return c


def _memory(compiled) -> float:
    """XLA's peak estimate: temporaries + arguments + outputs, less the outputs that reuse donated
    arguments (the train state)."""
    m = compiled.memory_analysis()
    return (m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes) / GB


def _batch(c, abstract: bool):
    from sslsr.train import config as config_lib

    b, p = c.train.batch_size, c.data.hr_patch
    s = config_lib.scale(c)
    shapes = {"hr": (b, p, p, 3), "lr": (b, p // s, p // s, 3)}
    if c.loss.ssl_weight:
        shapes["mask"] = (b, p, p)
    if abstract:
        return {k: jax.ShapeDtypeStruct(v, jnp.float32) for k, v in shapes.items()}
    rng = np.random.default_rng(0)
    batch = {k: jnp.asarray(rng.random(v), jnp.float32) for k, v in shapes.items()}
    if "mask" in batch:
        from sslsr.edges import mask_stride_pattern

        batch["mask"] = jnp.asarray((rng.random(shapes["mask"]) < 0.3) * mask_stride_pattern(p, p, 3), jnp.float32)
    return batch


def _state(c, abstract: bool):
    """(graphdef, state) of the recipe's DiffusionState; abstract: shapes only, no weights file read."""
    from sslsr.diffusion import networks
    from sslsr.train.recipes import resshift
    from sslsr.train.recipes.gan import _adam

    def build():
        return resshift.DiffusionState(networks.build_unet(c), _adam(c.train, resshift._schedule(c.train)),
                                       ema=True, autoencoder=networks.build_autoencoder(c))

    ts = nnx.eval_shape(build) if abstract else build()
    return nnx.split(ts)


def train_step(c, abstract: bool, repeats: int = 0):
    """(compile s, step s or None, compiled GB) of the recipe's step for config `c`."""
    from sslsr.train.recipes import resshift

    graphdef, state = _state(c, abstract)
    step = jax.jit(resshift.make_train_step(graphdef, c), static_argnums=4, donate_argnums=0)
    t = time.perf_counter()
    compiled = step.lower(state, {}, _batch(c, abstract), jnp.int32(0), None).compile()
    compile_s = time.perf_counter() - t
    if not repeats:
        return compile_s, None, _memory(compiled)
    batch = _batch(c, False)
    holder = {"state": state}

    def run():
        holder["state"], m = compiled(holder["state"], {}, batch, jnp.int32(0))  # static arg baked in
        jax.block_until_ready(m)

    run()
    return compile_s, best_of(run, repeats), _memory(compiled)


def demo_sampling(repeats: int):
    from sslsr.diffusion import networks
    from sslsr.inference import super_resolve

    c = _config(False, False)
    lr = np.random.default_rng(1).random((64, 64, 3)).astype(np.float32)
    for steps in (15, 4):
        up = networks.make_sampler(c, networks.build_unet(c), None, sample_steps=steps)
        t = time.perf_counter()
        super_resolve(up, lr)
        first = time.perf_counter() - t
        per_image = best_of(lambda u=up: super_resolve(u, lr), repeats)
        print(f"  demo model, 64x64 LR -> 256x256, {steps:2d} steps: {per_image:.2f} s "
              f"per image (first call incl. compile {first:.1f} s)")


def big_sampling():
    """The published model's sampler (random weights) on one 64 x 64 LR image: compiled memory and time."""
    from sslsr.diffusion import networks
    from sslsr.inference import super_resolve

    c = _config(False, True)
    up = networks.make_sampler(c, networks.build_unet(c), networks.build_autoencoder(c))
    lr = np.random.default_rng(1).random((64, 64, 3)).astype(np.float32)
    t = time.perf_counter()
    compiled = up._run.lower(up._states, jnp.asarray(lr[None]), jax.random.key(0)).compile()
    compile_s = time.perf_counter() - t
    super_resolve(up, lr)  # warm-up (the jit's own cache)
    print(f"  sampling one 64x64 LR image -> 256x256 (15 steps + encode/decode): "
          f"{best_of(lambda: super_resolve(up, lr), 1):.1f} s, compiled memory {_memory(compiled):.2f} GB "
          f"(compile {compile_s:.0f} s)")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--big", action="store_true")
    p.add_argument("--micro", default="1,2")
    args = p.parse_args()
    print(machine())
    print("demo size (pixel space, 32-ch 2-level ResShiftUNet, batch 4 x 64 px):")
    results = {}
    for ssl in (False, True):
        compile_s, step_s, gb = train_step(_config(ssl, False), abstract=False, repeats=args.repeats)
        results[ssl] = (step_s, gb)
        print(f"  {'with SSL   ' if ssl else 'without SSL'}: step {step_s * 1000:.0f} ms, compiled memory {gb:.3f} GB, "
              f"compile {compile_s:.0f} s")
    (t0, m0), (t1, m1) = results[False], results[True]
    print(f"  SSL / plain: time x{t1 / t0:.2f}, memory x{m1 / m0:.2f}")
    demo_sampling(args.repeats)
    if args.big:
        print("published model (ResShiftUNet 118.6M + VQ-f4), 256 px HR, compile only:")
        micro = [int(m) for m in args.micro.split(",")]
        for ssl in (False, True):
            mem = []
            for m in micro:
                compile_s, _, gb = train_step(_config(ssl, True, m), abstract=True)
                mem.append(gb)
                label = "with SSL   " if ssl else "without SSL"
                print(f"  {label} micro-batch {m}: {gb:.2f} GB (compile {compile_s:.0f} s)")
            if len(micro) > 1:
                slope = (mem[-1] - mem[0]) / (micro[-1] - micro[0])
                base = mem[0] - slope * micro[0]
                fits = {cap: int((cap - base) // slope) for cap in (24, 80)}
                print(f"    {slope:.2f} GB per sample + {base:.2f} GB; largest micro-batch: {fits[24]} in 24 GB, "
                      f"{fits[80]} in 80 GB")
        big_sampling()


if __name__ == "__main__":
    main()
