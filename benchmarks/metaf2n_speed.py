"""MetaF2N cost: meta-step time and memory (first vs second order, with/without SSL), adaptation time.

    python benchmarks/metaf2n_speed.py [--repeats 2] [--big]

Prints the machine, then:
  * at the demo size (configs/metaf2n_ssl.py:demo: 2-block RRDBNet, 2 tasks x 2 patches, 16->64 px):
    compile time, best-of step time and XLA's compiled memory (temporaries + arguments) of the
    jitted meta-step, for order 1 / order 2, without / with the SSL term; the ratio to first order;
  * with --big, RRDBNet-23 (64 features) at paper scale (faces 32->128, backgrounds 64->256,
    4 patches per task, the full outer loss with SSL): the compiled memory of the meta-step for 1
    and 2 tasks (compile only, nothing is run: 8 helpers share this machine's 24 GB), the per-task
    slope, and the largest meta-batch whose estimate fits in 24 GB;
  * the test-time adaptation of one photo (sslsr.meta.adapt, astronaut 512 px degraded x4, one
    face, 16 patches, 1 step), compile excluded: the demo model, and with --big RRDBNet-23.
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

from timing import best_of  # noqa: E402

GB = 1024**3


def machine() -> str:
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, jax {jax.__version__} {jax.default_backend()}, load {os.getloadavg()[0]:.1f}"


def _config(order: int, ssl: bool, big: bool):
    import importlib

    cfg = importlib.import_module("configs.metaf2n_ssl").get_config(None if big else "demo")
    cfg.meta.order = order
    cfg.loss.ssl_weight = 1000.0 if ssl else 0.0
    cfg.train.pretrain_steps = 0
    cfg.generator.init_from = ""  # timing only: random weights, no file read
    if big:
        cfg.meta.faces = "demo"
        cfg.data.train = "demo"
    return cfg


def _step(cfg, tasks: int):
    """(jitted step, state, constants, batch) for `tasks` tasks of the config's sizes."""
    from sslsr.train.recipes.metaf2n import MetaRecipe

    cfg.train.batch_size = tasks
    recipe = MetaRecipe()
    setup = recipe.setup(cfg)
    batch = next(iter(recipe.train_loader(cfg, tasks)))
    batch = {k: jnp.asarray(v) for k, v in batch.items()}
    step = jax.jit(setup.stages[-1].step, static_argnums=4)
    return step, setup.state, setup.constants, batch


def _memory(compiled) -> float:
    m = compiled.memory_analysis()
    return (m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes) / GB


def demo_rows(repeats: int, emit, ssl_arms=(False, True)):
    base = None
    for ssl in ssl_arms:
        for order in (1, 2):
            cfg = _config(order, ssl, big=False)
            step, state, consts, batch = _step(cfg, int(cfg.train.batch_size))
            t = time.perf_counter()
            compiled = step.lower(state, consts, batch, jnp.int32(0), None).compile()
            compile_s = time.perf_counter() - t
            out = compiled(state, consts, batch, jnp.int32(0))
            jax.block_until_ready(out)
            s = best_of(lambda: jax.block_until_ready(compiled(state, consts, batch, jnp.int32(0))), repeats)
            if order == 1:
                base = s
            emit(f"  demo  order={order} ssl={int(ssl)}  compile {compile_s:6.1f} s  step {s:6.2f} s "
                 f"({s / base:4.2f}x order 1)  compiled memory {_memory(compiled):5.2f} GB")


def big_rows(emit):
    for order in (1, 2):
        mems = {}
        for tasks in (1, 2):
            cfg = _config(order, True, big=True)
            cfg.train.batch_size = tasks
            from sslsr.train.recipes.metaf2n import MetaRecipe

            setup = MetaRecipe().setup(cfg)
            me, p = cfg.meta, cfg.data.hr_patch
            f, n = me.face_size, me.patches
            shapes = {"face_lr": (tasks, n, f // 4, f // 4, 3), "face_hr": (tasks, n, f, f, 3),
                      "bg_lr": (tasks, n, p // 4, p // 4, 3), "bg_hr": (tasks, n, p, p, 3), "bg_mask": (tasks, n, p, p)}
            batch = {k: jax.ShapeDtypeStruct(s, jnp.float32) for k, s in shapes.items()}
            step = jax.jit(setup.stages[-1].step, static_argnums=4)
            t = time.perf_counter()
            compiled = step.lower(setup.state, setup.constants, batch, jnp.int32(0), None).compile()
            mems[tasks] = _memory(compiled)
            emit(f"  RRDBNet-23  order={order} ssl=1  tasks={tasks} x {n} patches  compiled memory "
                 f"{mems[tasks]:6.2f} GB  (compile {time.perf_counter() - t:5.1f} s)")
            del setup, compiled
        slope = mems[2] - mems[1]
        fit = int((24 - (mems[1] - slope)) // slope) if slope > 0 else 0
        emit(f"  RRDBNet-23  order={order}: {slope:.2f} GB per task -> largest meta-batch within 24 GB: "
             f"{fit} tasks x {n} patches (linear estimate)")


def adaptation_row(repeats: int, emit, big: bool = False):
    """prepare (face crop, MaskNet, k=1 SGD step on 16 patches) and the adapted forward of one photo."""
    from skimage import data

    from sslsr.data.realesrgan import realesrgan_degrade
    from sslsr.inference import super_resolve
    from sslsr.meta.adapt import AdaptingUpscaler, FaceBox, OracleFaces
    from sslsr.meta.tasks import DEMO_FACE_BOXES
    from sslsr.models import registry

    hr = data.astronaut()
    lr = realesrgan_degrade(hr, 4, np.random.default_rng(0)).astype(np.float32) / 255
    kw, feat, name = (dict(), 64, "RRDBNet-23") if big else (dict(num_feat=32, num_block=2, num_grow_ch=16), 32, "2-block RRDBNet")
    g = registry.build("RRDBNet", rngs=nnx.Rngs(0), **kw)
    mask = registry.build("MaskNet", rngs=nnx.Rngs(1), num_feat=feat)
    box = FaceBox(*(v / 4 for v in DEMO_FACE_BOXES["astronaut"]))
    up = AdaptingUpscaler(g, mask, pseudo_gt=OracleFaces(hr.astype(np.float32) / 255), boxes=[box])
    t = time.perf_counter()
    super_resolve(up, lr)  # compiles the adaptation and the forward
    first = time.perf_counter() - t
    prep = best_of(lambda: up.prepare(lr), repeats)
    whole = best_of(lambda: super_resolve(up, lr), repeats)
    emit(f"  adaptation, {name} (MaskNet {feat}), 1 face, 16 patches 16->64, 1 step, 128x128 LR photo: "
         f"prepare {prep:.2f} s, prepare + SR {whole:.2f} s per photo (first photo incl. compile {first:.1f} s)")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--big", action="store_true", help="also compile RRDBNet-23 at paper scale (minutes)")
    parser.add_argument("--only_ssl", action="store_true", help="demo rows with the SSL term only (half the compiles)")
    parser.add_argument("--skip_demo", action="store_true", help="no demo-size rows (e.g. a separate --big run)")
    args = parser.parse_args()

    def emit(line=""):
        print(line, flush=True)

    emit(f"machine: {machine()}")
    emit("meta-step (jitted, one meta-update of G + MaskNet and one D update), best of "
         f"{args.repeats}; compiled memory = XLA memory_analysis (arguments + temporaries + outputs - aliases)")
    if not args.skip_demo:
        demo_rows(args.repeats, emit, (True,) if args.only_ssl else (False, True))
    if args.big:
        big_rows(emit)
    adaptation_row(args.repeats, emit)
    if args.big:
        adaptation_row(1, emit, big=True)


if __name__ == "__main__":
    main()
