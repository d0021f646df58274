"""SSL fwd+bwd speed and peak memory: JAX ``ssl_loss`` vs the paper-style PyTorch unfold path.

Every measurement runs in its own child process so that its peak RSS (``ru_maxrss``) is its own.
CPU (default):
  * the machine: CPU model, cores, and its measured float32 peak (a 4096^2 matmul, same run);
  * 2 and 4 x 128^2 real photo crops with their real edge masks: ``ssl_loss`` fwd+bwd (the CPU
    default, ``impl="kernel"``) vs the PyTorch unfold path (all cores), the time ratio and the
    achieved GFLOP/s (``flops`` below), and the XLA implementation (``impl="scan"``) for
    reference; the 4-crop unfold baseline peaks near 19 GB and runs only when 21 GB are available;
  * 64 x 128^2 (the paper's training batch): time, GFLOP/s and peak RSS.
GPU (``--device gpu``): the "fused" implementation, fwd+bwd time and peak device memory for
4 and 64 x 128^2.

Usage:
  .venv/bin/python benchmarks/ssl_speed.py [--skip-torch] [--skip-scan] [--skip-64] [--markdown FILE]
  .venv/bin/python benchmarks/ssl_speed.py --device gpu
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


def flops(batch: int, channels: int = 3, search: int = 25, window: int = 9) -> float:
    """Useful FLOPs of one fwd+bwd of the dense formulation (strip halos not counted).

    Per pixel and offset: each of the three distance pipelines (SR forward, HR forward, the SR
    adjoint) costs 3C (difference, square, channel sum) + 2K (x-box) + 2K (y-box), and the loss
    entries ~10 (exp, normalisation, KL, L1 and their adjoint; exp counted as one flop):
    f = 3 (3C + 4K) + 10 = 145 for C = 3, K = 9.
    """
    per_entry = 3 * (3 * channels + 4 * window) + 10
    return batch * CROP * CROP * search * search * per_entry


def worker_peak() -> dict:
    """Float32 GFLOP/s of a 4096^2 matmul on this machine (the measured peak)."""
    import jax
    import jax.numpy as jnp

    n = 4096
    a = jnp.ones((n, n), jnp.float32)
    mm = jax.jit(lambda x: x @ x)
    jax.block_until_ready(mm(a))
    walls, _ = _timed(lambda: jax.block_until_ready(mm(a)), 5)
    return dict(gflops=2 * n**3 / min(walls) / 1e9)


def worker_jax(batch: int, repeats: int, device: str, impl: str) -> dict:
    import jax

    sys.path.insert(0, REPO)
    from sslsr.losses import ssl_loss

    sr, hr, mask = real_batch(batch)
    dev = jax.devices(device)[0]
    sr, hr, mask = (jax.device_put(x, dev) for x in (sr, hr, mask))
    base_rss = _rss_mb()
    step = jax.jit(jax.value_and_grad(lambda s, h, m: ssl_loss(s, h, m, impl=impl)))
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
        peak_rss_mb=_rss_mb(),
    )
    stats = dev.memory_stats() if device == "gpu" else None
    if stats:
        out["device_peak_mb"] = stats.get("peak_bytes_in_use", 0) / 2**20
    return out


def worker_torch(batch: int) -> dict:
    import torch

    sys.path.insert(0, REPO)
    from tests.torch_refs.ssl import ssl_loss

    torch.set_num_threads(os.cpu_count())
    sr, hr, mask = real_batch(batch)
    base_rss = _rss_mb()
    sr_t = torch.tensor(sr.transpose(0, 3, 1, 2), requires_grad=True)
    hr_t = torch.tensor(hr.transpose(0, 3, 1, 2))
    mask_t = torch.tensor(mask)

    wall, cpu = time.perf_counter(), time.process_time()
    loss = ssl_loss(sr_t, hr_t, mask_t)
    loss.backward()
    return dict(
        loss=float(loss.detach()),
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


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def available_gb() -> float:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return 0.0


TORCH4_NEEDS_GB = 21.0  # the 4-crop unfold path peaks near 19 GB


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--skip-torch", action="store_true", help="skip the PyTorch baseline")
    parser.add_argument("--skip-scan", action="store_true", help='skip the impl="scan" reference')
    parser.add_argument("--skip-64", action="store_true", help="skip the 64 x 128^2 batch")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--markdown", help="also write the results as a markdown section here")
    args = parser.parse_args()

    if args.worker:
        kind = args.worker[0]
        if kind == "peak":
            result = worker_peak()
        elif kind == "jax":
            result = worker_jax(int(args.worker[1]), int(args.worker[2]), args.worker[3], args.worker[4])
        else:
            result = worker_torch(int(args.worker[1]))
        print(json.dumps(result))
        return

    lines = []

    def emit(line=""):
        print(line, flush=True)
        lines.append(line)

    if args.device == "gpu":
        emit("## SSL loss on GPU (`impl=\"fused\"`, fwd+bwd, float32)")
        emit()
        emit("| batch | edge px | fwd+bwd (best) | compile | peak device memory |")
        emit("|---|---|---|---|---|")
        for batch in (4, 64):
            try:
                r = child(["jax", str(batch), str(args.repeats), "gpu", "fused"])
            except RuntimeError as err:  # no GPU (or no CUDA jaxlib) on this machine
                emit(f"| {batch}x128² | not run: {str(err).strip().splitlines()[-1][:120]} | | | |")
                continue
            emit(
                f"| {batch}x128² | {r['edges']} | {min(r['wall_s']) * 1e3:.1f} ms | "
                f"{r['compile_s']:.1f} s | {r.get('device_peak_mb', float('nan')):.0f} MB |"
            )
    else:
        load_before = os.getloadavg()
        peak = child(["peak"])["gflops"]
        emit("## SSL loss: JAX `ssl_loss` vs the paper-style PyTorch unfold path (fwd+bwd, float32, CPU)")
        emit()
        flags = "".join(f" --{k.replace('_', '-')}" for k in ("skip_torch", "skip_scan", "skip_64") if getattr(args, k))
        emit(f"Command: `.venv/bin/python benchmarks/ssl_speed.py{flags}`")
        emit(
            f"Machine: {cpu_model()}, {os.cpu_count()} CPUs; measured float32 peak "
            f"{peak:.0f} GFLOP/s (4096² matmul, same run); load average {load_before[0]:.1f} at start."
        )
        emit(
            "GFLOP/s = useful FLOPs / time, FLOPs = B x 128² x 625 x 145 "
            "(`flops()` in the script: SR, HR and adjoint distance pipelines, 3(3C + 4K), plus ~10 "
            "for the loss entries)."
        )
        emit()
        emit(
            "`kernel` is `ssl_loss`'s CPU default, `scan` its XLA implementation (the default before "
            "issue 17); the ratio is unfold path / kernel."
        )
        emit()
        emit("| case | edge px | kernel fwd+bwd (best) | kernel CPU time | GFLOP/s (% of peak) | scan fwd+bwd | unfold path | ratio | kernel peak RSS | unfold peak RSS |")
        emit("|---|---|---|---|---|---|---|---|---|---|")
        batches = [2, 4] + ([] if args.skip_64 else [64])
        # All JAX runs first: right after the unfold path's 19 GB the OS is still reclaiming
        # memory, and a kernel run then was ~10% slower.
        kernel = {batch: child(["jax", str(batch), str(args.repeats), "cpu", "kernel"]) for batch in batches}
        scans = {} if args.skip_scan else {b: min(child(["jax", str(b), str(args.repeats), "cpu", "scan"])["wall_s"]) for b in batches}
        for batch in batches:
            r = kernel[batch]
            scan = f"{scans[batch]:.3f} s" if scans else "-"
            best = min(r["wall_s"])
            rate = flops(batch) / best / 1e9
            t = None
            note = "-"
            if batch <= 4 and not args.skip_torch:
                if batch == 4 and available_gb() < TORCH4_NEEDS_GB:
                    note = f"not run ({available_gb():.0f} GB available, needs {TORCH4_NEEDS_GB:.0f})"
                else:
                    t = child(["torch", str(batch)])
            unfold = f"{t['wall_s'][0]:.1f} s" if t else note
            ratio = f"**{t['wall_s'][0] / best:.0f}x**" if t else "-"
            unfold_rss = f"{t['peak_rss_mb']:.0f} MB" if t else "-"
            emit(
                f"| {batch}x128² | {r['edges']} | {best:.3f} s | {min(r['cpu_s']):.2f} s | "
                f"{rate:.1f} ({100 * rate / peak:.0f}%) | {scan} | {unfold} | {ratio} | "
                f"{r['peak_rss_mb']:.0f} MB | {unfold_rss} |"
            )
            if t:
                rel = abs(r["loss"] - t["loss"]) / abs(t["loss"])
                emit(f"|  | loss: JAX {r['loss']:.6e}, PyTorch {t['loss']:.6e} (rel. diff {rel:.1e}) | | | | | | | | |")
        emit()
        emit(f"Load average at the end: {os.getloadavg()[0]:.1f}.")
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
