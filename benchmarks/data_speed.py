"""Training-data throughput: samples/s of 128x128 HR crops (x4) through the grain loader.

    python benchmarks/data_speed.py [--data /work/shared/data/T91/HR] [--workers 2] [--batches 20]

For each degradation ('bicubic', 'realesrgan', 'realesrgan_ssl'), the baseline is a plain
single-process NumPy loop doing the same per-sample work (cached decoded image + mask, crop,
degrade, flip, to float; no grain); the loader (cache_images=True) is measured with 0 and N worker processes after a warm-up batch (worker
start-up excluded). Prints a markdown table with the ratios loader / baseline.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import platform
import time

import numpy as np


def _source(data: str | None):
    if data and pathlib.Path(data).is_dir():
        return {"hr_dir": data}, f"{data}"
    from sslsr.data.builtin import demo_images

    return {"images": demo_images("train")}, "built-in demo images (train)"


def baseline(src_kw, degradation, n_samples, patch, scale, seed=0) -> float:
    """Samples/s of a bare loop over the same per-sample work in this process."""
    from sslsr.data import datasets
    from sslsr.data.pipeline import RandomPatch, TrainSource

    if "hr_dir" in src_kw:
        records = datasets.folder_records(src_kw["hr_dir"])
    else:
        records = datasets.array_records(src_kw["images"])
    records = [r for r in records if min(datasets.record_hr_size(r)) >= patch]
    source = TrainSource(records, scale, use_mask=True, cache_images=True)
    op = RandomPatch(scale=scale, patch_size=patch, degradation=degradation, use_hflip=True, use_rot=True)
    rng = np.random.default_rng(seed)
    order = rng.permutation(n_samples) % len(source)
    # Same image/mask caching as the loader: warm it so both measure the steady state.
    for i in range(len(source)):
        source[i]
    t = time.perf_counter()
    for i in order:
        s = op.random_map(source[int(i)], rng)
        _ = s["lr"].astype(np.float32) / 255, s["hr"].astype(np.float32) / 255
    return n_samples / (time.perf_counter() - t)


def loader_rate(src_kw, degradation, workers, batches, batch_size, patch, scale) -> float:
    import warnings

    from sslsr.data.pipeline import make_train_loader

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small T91 images skipped: reported once by the loader
        ds = make_train_loader(
            **src_kw, scale=scale, patch_size=patch, batch_size=batch_size, degradation=degradation,
            num_workers=workers, seed=0, shard=(0, 1), cache_images=True,
            # The Real-ESRGAN pool only reorders samples; without it no refill of 180 samples
            # falls inside (or outside) the timed window, so the rate is the steady state.
            pool_size=0,
        )
    it = iter(ds)
    try:
        for _ in range(max(2, len(src_kw.get("images", [])) // batch_size + 1)):
            next(it)  # warm-up: worker start-up and the per-image mask caches
        t = time.perf_counter()
        for _ in range(batches):
            next(it)
        return batches * batch_size / (time.perf_counter() - t)
    finally:
        if hasattr(it, "close"):
            it.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="/work/shared/data/T91/HR")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--patch", type=int, default=128)
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--modes", default="bicubic,realesrgan,realesrgan_ssl")
    a = ap.parse_args()
    src_kw, src_name = _source(a.data)
    n = a.batches * a.batch_size
    print(f"data: {src_name}; {a.patch}x{a.patch} HR crops, x{a.scale}, batch {a.batch_size}, {n} samples timed; "
          f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}")
    print()
    print(f"| degradation | baseline loop (1 proc) | grain 0 workers | grain {a.workers} workers | ratio {a.workers}w / baseline |")
    print("|---|---|---|---|---|")
    for mode in a.modes.split(","):
        base = baseline(src_kw, mode, n, a.patch, a.scale)
        r0 = loader_rate(src_kw, mode, 0, a.batches, a.batch_size, a.patch, a.scale)
        rw = loader_rate(src_kw, mode, a.workers, a.batches, a.batch_size, a.patch, a.scale)
        print(f"| {mode} | {base:.1f} samples/s | {r0:.1f} samples/s | {rw:.1f} samples/s | {rw / base:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
