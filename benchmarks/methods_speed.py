"""Step time of each GAN method of the SSL paper's Table 1 with and without SSL, at the demo size.

For every method (configs/<method>_ssl.py:demo: 64 px HR patches, batch 4, the demo networks) the
GAN recipe builds the main step twice in this process, as configured and with loss.ssl_weight = 0
(which removes the SSL term at trace time); the two are timed alternately, so their ratio is
insensitive to load drifts; SSL's share of a step is (t_ssl - t_no_ssl) / t_ssl. The batch is
fixed random data with a fixed edge mask (~30% of pixels, like real photos' edge masks at
threshold 20), so data loading is not measured.

    python benchmarks/methods_speed.py                      # all methods, 3 steps x 2 rounds each
    python benchmarks/methods_speed.py --methods ldl,spsr --steps 5 --out benchmarks/results/methods_speed.txt
"""

from __future__ import annotations

import argparse
import os
import pathlib
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

from ssl_speed import cpu_model  # benchmarks/ is on sys.path when run as a script
from train_speed import _build

from sslsr.train.config import sibling_config

REPO = pathlib.Path(__file__).resolve().parents[1]
METHODS = ("esrgan", "ldl", "bebygan", "spsr", "ranksrgan", "elangan")
SIZE_KWARGS = ("num_feat", "num_block", "nf", "nb", "m_elan", "c_elan")  # shown in the table


def _config(method: str, ssl: bool):
    c = sibling_config(str(REPO / "configs" / "x.py"), f"{method}_ssl", "demo")
    c.data.val = ""
    c.train.pretrain_steps = 0  # the GAN step alone
    c.train.total_steps = 10**6
    c.train.milestones = ()
    if method == "esrgan":  # the plain ESRGAN demo: a 2-block RRDBNet, as the other RRDB demos
        c.generator.arch = "RRDBNet"
        c.generator.kwargs = dict(num_in_ch=3, num_out_ch=3, scale=4, num_feat=32, num_block=2, num_grow_ch=16)
        c.generator.init_from = ""
        c.loss.pixel_weight = 1e-2
    if not ssl:
        c.loss.ssl_weight = 0.0
    return c


def _batch(c):
    rng = np.random.default_rng(0)
    b, p = c.train.batch_size, c.data.hr_patch
    hr = rng.random((b, p, p, 3), np.float32)
    q = p // 4
    return {"lr": jnp.asarray(hr.reshape(b, q, 4, q, 4, 3).mean(axis=(2, 4))), "hr": jnp.asarray(hr),
            "mask": jnp.asarray((rng.random(hr.shape[:3]) > 0.7).astype(np.float32))}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--steps", type=int, default=3, help="timed steps per variant and round")
    ap.add_argument("--rounds", type=int, default=2, help="alternating timing rounds (best kept)")
    ap.add_argument("--out", default="", help="also write the report to this file")
    args = ap.parse_args()

    lines = []

    def emit(line=""):
        print(line, flush=True)
        lines.append(line)

    cmd = "python benchmarks/methods_speed.py " + " ".join(
        f"--{k}={v}" for k, v in vars(args).items() if k != "out" and v != ap.get_default(k))
    emit(f"Command: `{cmd.strip()}`")
    emit(f"Machine: {cpu_model()}, {os.cpu_count()} CPUs, {platform.system()}; jax {jax.__version__}, "
         f"backend {jax.default_backend()}. Load average at the start: {os.getloadavg()[0]:.1f} "
         "(with and without SSL are timed alternately in one process, so their ratio holds under "
         "load; absolute times do not).")
    emit()
    emit("| method (demo config) | G | s/step with SSL | s/step without SSL | SSL share | compile s (with / without) |")
    emit("|---|---|---|---|---|---|")
    for method in args.methods.split(","):
        variants = {}
        for ssl in (True, False):
            c = _config(method, ssl)
            batch = _batch(c)
            step, state, fstate = _build(c)
            t0 = time.perf_counter()
            state, m = step(state, fstate, batch, jnp.int32(0), False)
            jax.block_until_ready(m)
            variants[ssl] = {"step": step, "state": state, "fstate": fstate, "batch": batch,
                             "compile": time.perf_counter() - t0, "best": float("inf"), "metrics": m}
        for _ in range(args.rounds):
            for v in variants.values():
                t0 = time.perf_counter()
                for i in range(args.steps):
                    v["state"], m = v["step"](v["state"], v["fstate"], v["batch"], jnp.int32(i + 1), False)
                jax.block_until_ready(m)
                v["best"] = min(v["best"], (time.perf_counter() - t0) / args.steps)
        on, off = variants[True], variants[False]
        assert all(np.isfinite(float(x)) for x in on["metrics"].values()), method
        size = {k: v for k, v in c.generator.kwargs.items() if k in SIZE_KWARGS}
        g = f"{c.generator.arch}({', '.join(f'{k}={v}' for k, v in size.items())})"
        emit(f"| {method}_ssl:demo | {g} | {on['best']:.3f} | {off['best']:.3f} | "
             f"{100 * (on['best'] - off['best']) / on['best']:.0f}% | {on['compile']:.0f} / {off['compile']:.0f} |")
    emit()
    emit(f"Load average at the end: {os.getloadavg()[0]:.1f}.")
    if args.out:
        pathlib.Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
