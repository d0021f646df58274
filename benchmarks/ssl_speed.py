"""SSL fwd+bwd speed and peak memory: dense JAX ``ssl_loss`` vs the paper-style PyTorch unfold path.

Every measurement runs in its own child process so that its peak RSS (``ru_maxrss``) is its own.
Cases:
  * 4 x 128^2 real photo crops with their real edge masks: JAX vs PyTorch (2 threads), time and
    peak-memory ratios measured in the same run; the JAX case again pinned to one core (its CPU
    time there is the single-core cost, the least load-dependent number on a shared machine);
  * 64 x 128^2 (the paper's training batch): JAX time and peak RSS;
  * 4 x 128^2 with random masks of 5% / 15% / 30% density: JAX time vs edge density.

Usage:
  .venv/bin/python benchmarks/ssl_speed.py [--skip-torch] [--markdown benchmarks/results/ssl.md]
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CROP = 128
# (photo, top, left): 128^2 windows with a typical amount of texture and edges.
CROPS = [("astronaut", 40, 170), ("chelsea", 100, 150), ("coffee", 140, 220), ("rocket", 180, 200)]


def real_batch(batch: int):
    """HR crops (uint8), a plausible SR (bicubic x4 down-up of the HR) and the HR edge masks."""
    from PIL import Image
    from skimage import data

    sys.path.insert(0, REPO)
    from sslsr.losses import edge_mask

    hr, mask = [], []
    for b in range(batch):
        name, top, left = CROPS[b % len(CROPS)]
        image = getattr(data, name)()
        shift = 8 * (b // len(CROPS))  # distinct crops when the batch exceeds the list
        top, left = top + shift % 64, left + (3 * shift) % 64
        # The mask is computed once on the whole HR image and cropped with it, as in the paper.
        mask.append(edge_mask(image)[top : top + CROP, left : left + CROP])
        hr.append(image[top : top + CROP, left : left + CROP])
    hr = np.stack(hr)
    sr = np.stack(
        [
            np.asarray(
                Image.fromarray(x)
                .resize((CROP // 4, CROP // 4), Image.BICUBIC)
                .resize((CROP, CROP), Image.BICUBIC)
            )
            for x in hr
        ]
    )
    return sr.astype(np.float32) / 255.0, hr.astype(np.float32) / 255.0, np.stack(mask)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _timed(fn, repeats):
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return walls, cpus


def worker_jax(batch: int, densities, repeats: int) -> dict:
    import jax

    sys.path.insert(0, REPO)
    from sslsr.losses import ssl_loss

    sr, hr, mask = real_batch(batch)
    base_rss = _rss_mb()
    step = jax.jit(jax.value_and_grad(ssl_loss))
    t0 = time.perf_counter()
    value, grad = step(sr, hr, mask)
    jax.block_until_ready(grad)
    compile_s = time.perf_counter() - t0
    walls, cpus = _timed(lambda: jax.block_until_ready(step(sr, hr, mask)), repeats)
    out = dict(
        loss=float(value),
        edges=int(mask.sum()),
        compile_s=compile_s,
        wall_s=walls,
        cpu_s=cpus,
        rss_before_mb=base_rss,
    )
    rng = np.random.default_rng(0)
    out["density"] = {}
    for density in densities:
        rand_mask = (rng.random(mask.shape) < density).astype(np.float32)
        w, c = _timed(lambda: jax.block_until_ready(step(sr, hr, rand_mask)), repeats)
        out["density"][str(density)] = dict(edges=int(rand_mask.sum()), wall_s=w, cpu_s=c)
    out["peak_rss_mb"] = _rss_mb()
    return out


def worker_torch(batch: int) -> dict:
    import torch

    sys.path.insert(0, REPO)
    from tests.torch_refs.ssl import ssl_loss

    torch.set_num_threads(2)
    sr, hr, mask = real_batch(batch)
    base_rss = _rss_mb()
    sr_t = torch.tensor(sr.transpose(0, 3, 1, 2), requires_grad=True)
    hr_t = torch.tensor(hr.transpose(0, 3, 1, 2))
    mask_t = torch.tensor(mask)

    def run():
        sr_t.grad = None
        loss = ssl_loss(sr_t, hr_t, mask_t)
        loss.backward()
        return float(loss.detach())

    wall, cpu = time.perf_counter(), time.process_time()
    value = run()
    return dict(
        loss=value,
        edges=int(mask.sum()),
        wall_s=[time.perf_counter() - wall],
        cpu_s=[time.process_time() - cpu],
        rss_before_mb=base_rss,
        peak_rss_mb=_rss_mb(),
    )


def child(args: list[str]) -> dict:
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--worker", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"worker {args} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--skip-torch", action="store_true", help="skip the ~50 s, ~10 GB baseline")
    parser.add_argument("--skip-64", action="store_true", help="skip the 64 x 128^2 batch")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--markdown", help="also write the results as a markdown section here")
    args = parser.parse_args()

    if args.worker:
        kind, batch = args.worker[0], int(args.worker[1])
        if kind == "jax1":  # pinned to one core: a load-independent single-core cost
            if hasattr(os, "sched_setaffinity"):  # Linux only; elsewhere it runs unpinned
                os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
            kind = "jax"
        if kind == "jax":
            densities = [float(d) for d in args.worker[3:]]
            result = worker_jax(batch, densities, int(args.worker[2]))
        else:
            result = worker_torch(batch)
        print(json.dumps(result))
        return

    load_before = os.getloadavg()
    lines = []

    def emit(line=""):
        print(line, flush=True)
        lines.append(line)

    jax4 = child(["jax", "4", str(args.repeats), "0.05", "0.15", "0.30"])
    jax4_pinned = child(["jax1", "4", str(args.repeats)])
    torch4 = None if args.skip_torch else child(["torch", "4"])
    jax64 = None if args.skip_64 else child(["jax", "64", "1"])
    load_after = os.getloadavg()

    best = min(jax4["wall_s"])
    emit("## SSL loss: dense JAX vs paper-style PyTorch unfold path (fwd+bwd, float32, CPU)")
    emit()
    emit(f"Command: `.venv/bin/python benchmarks/ssl_speed.py{' --skip-torch' if args.skip_torch else ''}`")
    emit(
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, shared "
        f"(load average {load_before[0]:.1f} before, {load_after[0]:.1f} after; wall times on a "
        "loaded machine are inflated, the process CPU time is shown alongside)."
    )
    emit()
    emit("| case | edge px | fwd+bwd wall (best) | CPU time | compile | peak RSS |")
    emit("|---|---|---|---|---|---|")
    emit(
        f"| JAX `ssl_loss`, 4x128² real crops | {jax4['edges']} | {best:.3f} s | "
        f"{min(jax4['cpu_s']):.2f} s | {jax4['compile_s']:.1f} s | {jax4['peak_rss_mb']:.0f} MB |"
    )
    emit(
        f"| same, pinned to one core | {jax4_pinned['edges']} | {min(jax4_pinned['wall_s']):.3f} s | "
        f"{min(jax4_pinned['cpu_s']):.2f} s | {jax4_pinned['compile_s']:.1f} s | "
        f"{jax4_pinned['peak_rss_mb']:.0f} MB |"
    )
    if torch4:
        emit(
            f"| PyTorch unfold path (2 threads), same input | {torch4['edges']} | "
            f"{torch4['wall_s'][0]:.2f} s | {torch4['cpu_s'][0]:.1f} s | - | "
            f"{torch4['peak_rss_mb']:.0f} MB |"
        )
    if jax64:
        emit(
            f"| JAX `ssl_loss`, 64x128² (paper batch) | {jax64['edges']} | "
            f"{min(jax64['wall_s']):.2f} s | {min(jax64['cpu_s']):.1f} s | {jax64['compile_s']:.1f} s | "
            f"{jax64['peak_rss_mb']:.0f} MB |"
        )
    emit()
    if torch4:
        rel = abs(jax4["loss"] - torch4["loss"]) / abs(torch4["loss"])
        emit(
            f"- time ratio PyTorch / JAX: **{torch4['wall_s'][0] / best:.0f}x** (wall), "
            f"{torch4['cpu_s'][0] / min(jax4['cpu_s']):.0f}x (CPU time)"
        )
        emit(
            f"- peak-memory ratio PyTorch / JAX: **{torch4['peak_rss_mb'] / jax4['peak_rss_mb']:.0f}x** "
            f"(whole-process peak RSS, compilation included; the JAX process holds "
            f"{jax4['rss_before_mb']:.0f} MB before the loss runs)"
        )
        emit(
            f"- loss values agree: JAX {jax4['loss']:.6e}, PyTorch {torch4['loss']:.6e} "
            f"(rel. diff {rel:.1e})"
        )
    emit()
    emit("Cost vs edge density (random masks, 4x128², same compiled function):")
    emit()
    emit("| density | edge px | fwd+bwd wall (best) | CPU time |")
    emit("|---|---|---|---|")
    emit(f"| real masks | {jax4['edges']} | {best:.3f} s | {min(jax4['cpu_s']):.2f} s |")
    for density, r in jax4["density"].items():
        emit(f"| {float(density):.0%} | {r['edges']} | {min(r['wall_s']):.3f} s | {min(r['cpu_s']):.2f} s |")
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
