"""Steps/s of the ESRGAN-SSL training step (G + D + EMA update) on CPU, with and without SSL,
and of the whole training loop (data, step, logging) around it.

Both step variants are built by the GAN recipe from the same config in the same process (the one
without SSL only sets loss.ssl_weight = 0, which removes the term at trace time) and timed
alternately, so their ratio is insensitive to machine load drifts; the SSL share of a step is
(t_ssl - t_no_ssl) / t_ssl. The loop measurement runs `train_and_evaluate` for `--loop_steps`
steps after a first logging window that holds the compilation, and reports the median steps/s of
the following windows from `<workdir>/metrics.jsonl` (the loop pulls values to the host only at
log and checkpoint steps).

    python benchmarks/train_speed.py                      # demo size (configs/esrgan_ssl.py:demo), 64 px, batch 4
    python benchmarks/train_speed.py --patch 128 --steps 5 --out benchmarks/results/train.md
    python benchmarks/train_speed.py --paper --steps 3                  # paper-like size (issue 17)

`--paper` times the paper's ESRGAN-SSL step instead (`configs/esrgan_ssl.py` without `:demo`):
RRDBNet-23 (64 features), VGGStyleDiscriminator (128 px input), VGG19 conv5_4 perceptual loss,
128 px HR patches at batch 4. VGG19's ImageNet weights are a file the user supplies; the step's
cost does not depend on their values, so a random VGG19 in torchvision's layout stands in.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pathlib
import platform
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]


def _random_vgg19(path: pathlib.Path) -> str:
    """A torchvision-layout VGG19 state dict with random values (the paper's perceptual net)."""
    import torch
    from flax import nnx

    from sslsr.models import registry
    from sslsr.weights.pytorch import to_torch_state_dict

    vgg = registry.build("VGG19", rngs=nnx.Rngs(0), layers=("conv5_4",))
    torch.save({k: torch.from_numpy(v) for k, v in to_torch_state_dict(vgg, "VGG19").items()}, path)
    return str(path)


def _config(patch: int, batch: int, paper_vgg19: str = ""):
    spec = importlib.util.spec_from_file_location("esrgan_ssl", REPO / "configs" / "esrgan_ssl.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    if paper_vgg19:
        c = mod.get_config()
        c.generator.init_from = ""  # the PSNR init's values do not change the step's cost
        c.loss.perceptual_weights = paper_vgg19
    else:
        c = mod.get_config("demo")
    c.data.hr_patch = patch
    c.data.val = ""
    c.train.batch_size = batch
    c.train.pretrain_steps = 0  # the GAN step alone
    return c


def _describe(part) -> str:
    return f"{part.arch}({', '.join(f'{k}={v}' for k, v in part.kwargs.items())})"


def _build(c):
    from sslsr.train.recipes import RECIPES

    setup = RECIPES[c.recipe].setup(c)
    (stage,) = setup.stages
    step = jax.jit(stage.step, static_argnums=4, donate_argnums=0)
    return step, setup.state, setup.constants


def _loop_rate(c, steps: int, window: int) -> float:
    """Median steps/s of the training loop's logging windows after the first (compilation)."""
    from sslsr.train import train_and_evaluate
    from sslsr.train.loop import METRICS_FILE

    c.train.total_steps = window + steps
    c.train.milestones = ()
    c.log.every = window
    c.log.ckpt_every = c.log.val_every = 10**9
    with tempfile.TemporaryDirectory() as workdir:
        train_and_evaluate(c, workdir)
        lines = (pathlib.Path(workdir) / METRICS_FILE).read_text().splitlines()
    rates = sorted(json.loads(line)["steps_per_s"] for line in lines[1:])
    return rates[len(rates) // 2]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patch", type=int, default=0, help="HR patch side (LR = patch / 4); 0: 64 (demo), 128 (--paper)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=10, help="timed steps per variant and round")
    ap.add_argument("--rounds", type=int, default=2, help="alternating timing rounds (best kept)")
    ap.add_argument("--loop_steps", type=int, default=10,
                    help="timed steps of the whole loop on the demo data (0: skip; not with --paper)")
    ap.add_argument("--loop_window", type=int, default=5, help="loop steps per logging window")
    ap.add_argument("--out", default="", help="append a markdown section to this file")
    ap.add_argument("--paper", action="store_true",
                    help="the paper's step (RRDBNet-23, VGG discriminator, VGG19) instead of the demo's")
    args = ap.parse_args()
    args.patch = args.patch or (128 if args.paper else 64)
    if args.paper and args.patch != 128:
        ap.error("--paper uses the paper's 128 px patches (VGGStyleDiscriminator's input size)")
    if args.paper:
        args.loop_steps = 0  # the paper config trains on DF2K, which is not here
    tmp = tempfile.TemporaryDirectory()
    vgg19 = _random_vgg19(pathlib.Path(tmp.name) / "vgg19_random.pth") if args.paper else ""

    rng = np.random.default_rng(0)
    hr = rng.random((args.batch, args.patch, args.patch, 3), np.float32)
    p = args.patch // 4
    batch = {"lr": jnp.asarray(hr.reshape(args.batch, p, 4, p, 4, 3).mean(axis=(2, 4))), "hr": jnp.asarray(hr),
             "mask": jnp.asarray((rng.random(hr.shape[:3]) > 0.7).astype(np.float32))}

    variants = {}
    for name, ssl in (("with SSL", 1000.0), ("without SSL", 0.0)):
        c = _config(args.patch, args.batch, vgg19)
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
    flags = [f"--{k}" if v is True else f"--{k}={v}" for k, v in vars(args).items()
             if k not in ("out", "patch", "loop_steps") and v != ap.get_default(k)]
    if args.patch != (128 if args.paper else 64):
        flags.append(f"--patch={args.patch}")
    if not args.paper and args.loop_steps != ap.get_default("loop_steps"):
        flags.append(f"--loop_steps={args.loop_steps}")
    cmd = " ".join(["python benchmarks/train_speed.py", *flags])
    lines = [
        "## Training step speed (CPU)",
        "",
        f"Command: `{cmd}` on {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"jax {jax.__version__}, backend {jax.default_backend()}.",
        f"Step = ESRGAN-SSL {'paper' if args.paper else 'demo'} recipe: G {_describe(c.generator)}, "
        f"L1 + {c.loss.perceptual_arch.upper()} {', '.join(c.loss.perceptual_layers)} perceptual"
        f"{' (random weights: the cost does not depend on them)' if args.paper else ''} + "
        f"relativistic GAN (D {_describe(c.discriminator)}) + SSL (25/9, h 0.004), then the D update and "
        f"the EMA; batch {args.batch}, HR patch {args.patch} px, float32.",
        "",
        "| variant | s/step | steps/s | first call (compile) s |",
        "|---|---|---|---|",
    ]
    for name, v in variants.items():
        lines.append(f"| {name} | {v['best']:.3f} | {1 / v['best']:.2f} | {v['compile_s']:.1f} |")
    lines += ["", f"SSL share of the step: **{100 * share:.1f}%** (with/without SSL time ratio {t_ssl / t_base:.2f}).", ""]
    if args.loop_steps:
        rate = _loop_rate(_config(args.patch, args.batch), args.loop_steps, args.loop_window)
        lines += [f"Whole loop with SSL (`train_and_evaluate`: grain data on the fly, the step, logging every "
                  f"{args.loop_window} steps): **{rate:.2f} steps/s** ({1 / rate:.3f} s/step; median of "
                  f"{args.loop_steps // args.loop_window} windows after the compiling one).", ""]
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "a") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
