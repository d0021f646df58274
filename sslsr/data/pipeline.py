"""grain training pipeline: random paired patches (+ edge masks) as NHWC float32 batches.

    loader = make_train_loader(hr_dir=..., scale=4, patch_size=128, batch_size=16, seed=0)
    it = iter(loader)                  # grain DatasetIterator
    batch = next(it)                   # {'lr': (B,32,32,3), 'hr': (B,128,128,3), 'mask': (B,128,128)}
    state = it.get_state()             # JSON-serializable dict: store it in the checkpoint
    it2 = iter(loader); it2.set_state(state)   # continues exactly where `it` was

`json.dumps(state)` round-trips (or use orbax with `grain.checkpoint.CheckpointSave(it)` /
`CheckpointRestore(it)`). The stream depends only on the seed, the data, the shard and the batch
size, not on `num_workers` (samples are batched after the worker processes); the saved state's
format does, so resume with the same `num_workers`. Call `it.close()` to stop worker processes.

Order of operations per sample (as the paper's code): mask on the WHOLE HR image (cached per image,
or read from mask_dir), random crop (scale-aware; the mask is cropped with the HR), LR made from the
HR patch when there is no stored LR (bicubic / Real-ESRGAN / BSRGAN), then the same random
flip/rotation for LR, HR and mask.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import grain
import numpy as np

from sslsr import edges
from sslsr.data import datasets, degradations, io
from sslsr.data.realesrgan import REALESRGAN_PRESETS
from sslsr.data.transforms import paired_random_crop, random_augment
from sslsr.errors import InputError


class TrainSource:
    """grain random-access source: index -> {'hr', 'lr' (or absent), 'mask' (or absent)} whole images.

    Edge masks are read from `<mask_dir>/<name>.png` (0/255, used as they are, whatever threshold
    made them) or computed with `sslsr.edges.edge_mask(hr, edge_threshold)` on the whole HR;
    computed masks are written to mask_dir when it is given and kept bit-packed in memory per
    process either way.
    """

    def __init__(
        self,
        records: Sequence[datasets.ImageRecord],
        scale: int,
        use_mask: bool,
        cache_images: bool = False,
        edge_threshold: float = 20.0,
    ):
        self._records = list(records)
        self._scale = scale
        self._use_mask = use_mask
        self._edge_threshold = edge_threshold
        self._cache_images = cache_images
        self._mask_cache: dict[int, tuple[tuple[int, int], np.ndarray]] = {}
        self._image_cache: dict[int, dict] = {}

    def __len__(self) -> int:
        return len(self._records)

    def __repr__(self) -> str:  # grain logs sources; keep it short
        return f"TrainSource({len(self._records)} images, x{self._scale})"

    def _mask(self, i: int, hr: np.ndarray) -> np.ndarray:
        hit = self._mask_cache.get(i)
        if hit is not None:
            shape, packed = hit
            return np.unpackbits(packed, count=shape[0] * shape[1]).reshape(shape)
        r = self._records[i]
        if r.mask_path is not None and r.mask_path.is_file():
            m = io.read_image(r.mask_path)[:, :, 0]
            if m.shape != hr.shape[:2]:
                raise InputError(
                    f"{r.mask_path}: mask size {m.shape[0]}x{m.shape[1]} differs from its HR "
                    f"{r.hr_path or r.name} ({hr.shape[0]}x{hr.shape[1]})"
                )
            m = (m > 127).astype(np.uint8)
        else:
            m = (edges.edge_mask(hr, self._edge_threshold) > 0.5).astype(np.uint8)
            if r.mask_path is not None:
                io.write_png(r.mask_path, m * np.uint8(255))
        self._mask_cache[i] = (m.shape, np.packbits(m))
        return m

    def __getitem__(self, i: int) -> dict:
        cached = self._image_cache.get(i)
        if cached is not None:
            out = dict(cached)
        else:
            r = self._records[i]
            hr = datasets.load_hr(r)
            out = {"hr": hr}
            if r.lr_path is not None:
                out["lr"] = datasets.load_lr(r, hr, self._scale)
            if self._cache_images:
                self._image_cache[i] = dict(out)
        hr = out["hr"]
        if self._use_mask:
            out["mask"] = self._mask(i, hr)
        return out


class RandomPatch(grain.transforms.RandomMap):
    """Whole images -> one random aligned (lr, hr, mask) uint8 patch; LR degraded from HR if absent."""

    def __init__(self, *, scale: int, patch_size: int, degradation: str, use_hflip: bool, use_rot: bool):
        self.scale, self.patch_size, self.degradation = scale, patch_size, degradation
        self.use_hflip, self.use_rot = use_hflip, use_rot

    def random_map(self, element: dict, rng: np.random.Generator) -> dict:
        hr, lr, mask = paired_random_crop(
            element["hr"], element.get("lr"), element.get("mask"), self.patch_size, self.scale, rng
        )
        if lr is None:
            lr = degradations.degrade(self.degradation, np.ascontiguousarray(hr), self.scale, rng)
        hr, lr, mask = random_augment((hr, lr, mask), rng, self.use_hflip, self.use_rot)
        out = {"hr": np.ascontiguousarray(hr), "lr": np.ascontiguousarray(lr)}
        if mask is not None:
            out["mask"] = np.ascontiguousarray(mask)
        return out


class ToFloat(grain.transforms.Map):
    """uint8 batch -> float32 in [0, 1]; mask (B, H, W) {0, 1} times the stride pattern."""

    def __init__(self, mask_stride: int):
        self.mask_stride = mask_stride

    def map(self, batch: dict) -> dict:
        out = {
            "lr": batch["lr"].astype(np.float32) / np.float32(255),
            "hr": batch["hr"].astype(np.float32) / np.float32(255),
        }
        if "mask" in batch:
            m = batch["mask"].astype(np.float32)
            if self.mask_stride > 1:
                m = m * edges.mask_stride_pattern(m.shape[1], m.shape[2], self.mask_stride)[None]
            out["mask"] = m
        return out


def _ensure_absl_flags_parsed() -> None:
    # grain's multiprocessing reads absl flags; outside an absl app nobody parses them, which
    # raises UnparsedFlagAccessError. Marking them parsed keeps every default.
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


def _default_shard() -> tuple[int, int]:
    import jax

    return jax.process_index(), jax.process_count()


def make_random_stream(sample, *, batch_size: int, seed: int = 0, num_workers: int = 0,
                       shard: tuple[int, int] | None = None) -> grain.IterDataset:
    """Infinite, resumable stream of batches whose samples are not (LR, HR) patches (MetaF2N's
    tasks, RankSRGAN's labelled pairs): `sample(index, rng) -> {name: array}` is a grain random
    map, so each sample is a function of `seed` and its index.

    batch_size: per-process; num_workers, shard: as `make_train_loader`.
    """
    shard_index, shard_count = _default_shard() if shard is None else shard
    ds = grain.MapDataset.range(2**40).random_map(sample, seed=int(seed))
    if shard_count > 1:
        ds = ds[shard_index::shard_count]
    ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=1, prefetch_buffer_size=max(2 * batch_size, 4)))
    if num_workers > 0:
        _ensure_absl_flags_parsed()
        ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=int(num_workers)))
    return ds.batch(batch_size, drop_remainder=True)


def make_train_loader(
    *,
    hr_dir: str | os.PathLike | None = None,
    images: Sequence[tuple[str, np.ndarray]] | None = None,
    lr_dir: str | os.PathLike | None = None,
    scale: int,
    patch_size: int,
    batch_size: int,
    degradation: str = "bicubic",
    use_mask: bool = True,
    mask_dir: str | os.PathLike | None = None,
    edge_threshold: float = 20.0,
    mask_stride: int = 1,
    use_hflip: bool = True,
    use_rot: bool = True,
    pool_size: int | None = None,
    cache_images: bool = False,
    seed: int = 0,
    num_workers: int = 0,
    read_threads: int = 1,
    shard: tuple[int, int] | None = None,
    verify_images: bool = False,
    skip_bad: bool = False,
) -> grain.IterDataset:
    """Infinite, deterministic, resumable stream of training batches (see the module docstring).

    Args:
      hr_dir: folder of HR images (sorted by name), or
      images: in-memory [(name, uint8 (H, W, 3))] (e.g. `builtin.demo_images('train')`).
      lr_dir: stored LR folder (`<name>x<s>.png` or `<name>.png`, size floor(HR/scale)); only with
        degradation 'bicubic' (the stored LR is used as is). None: LR made from each HR patch.
      scale: SR factor; patch_size: HR patch side (multiple of scale).
      batch_size: per-process batch size.
      degradation: 'bicubic' (MATLAB imresize), 'realesrgan', 'realesrgan_ssl' (the SSL paper's
        weaker Real-ESRGAN setting) or 'bsrgan'.
      use_mask: add the edge mask under 'mask'; mask_dir: where masks are read / cached as PNG
        (files already there are used as they are).
      edge_threshold: the Laplacian threshold of the masks computed here (paper: 20).
      mask_stride: > 1 multiplies the mask by `sslsr.edges.mask_stride_pattern(P, P, stride)`.
      use_hflip, use_rot: random horizontal flip / rotations by 90 degrees.
      pool_size: Real-ESRGAN's training pool: degraded samples are shuffled within windows of this
        many before batching, mixing degradations across batches (default: the preset's
        queue_size, 180, for the Real-ESRGAN modes; none otherwise).
      cache_images: keep decoded images in memory in every process (PNG decoding dominates the
        bicubic mode; worth it for small sets such as T91, not for DIV2K-size folders).
      seed: the whole stream (order, crops, degradations) is a function of it.
      num_workers: grain worker processes (0: in this process).
      read_threads: threads per process reading whole images.
      shard: (index, count); default (jax.process_index(), jax.process_count()). Shards take
        disjoint interleaved samples of the same seeded stream.
      verify_images: decode every file of an hr_dir source once here, before the first batch (the
        trainer does), so an unreadable one (a truncated file with a valid header) raises
        InputError naming it now rather than at the batch that reads it, maybe hours later.
      skip_bad: verify the images and leave unreadable ones out, with one warning listing them.
    Returns:
      grain IterDataset of dicts {'lr': (B, P/s, P/s, 3), 'hr': (B, P, P, 3)[, 'mask': (B, P, P)]},
      float32 in [0, 1] (mask in {0, 1}).
    """
    if degradation not in degradations.NAMES:
        raise ValueError(f"degradation must be one of {degradations.NAMES}, got {degradation!r}")
    if (hr_dir is None) == (images is None):
        raise ValueError("make_train_loader: give exactly one of hr_dir or images")
    if lr_dir is not None and degradation != "bicubic":
        raise ValueError(f"lr_dir is a stored LR set; it cannot be combined with degradation={degradation!r}")
    if patch_size % scale:
        raise ValueError(f"patch_size {patch_size} must be a multiple of scale {scale}")
    if batch_size < 1 or num_workers < 0:
        raise ValueError(f"batch_size must be >= 1 and num_workers >= 0, got {batch_size}, {num_workers}")
    if images is not None:
        if mask_dir is not None:
            raise ValueError("mask_dir is for hr_dir sources; in-memory images compute their masks")
        records = datasets.array_records(images)
    else:
        records = datasets.folder_records(hr_dir, lr_dir, scale, mask_dir if use_mask else None, skip_bad=skip_bad)
        if verify_images or skip_bad:
            records = datasets.verify_records(records, skip_bad=skip_bad)
    records = datasets.drop_small(records, patch_size, scale)
    shard_index, shard_count = _default_shard() if shard is None else shard
    if not 0 <= shard_index < shard_count:
        raise ValueError(f"shard index {shard_index} not in [0, {shard_count})")
    if pool_size is None:
        preset = REALESRGAN_PRESETS.get(degradation)
        pool_size = 0 if preset is None else preset.queue_size

    ds = grain.MapDataset.source(TrainSource(records, scale, use_mask, cache_images, edge_threshold))
    ds = ds.shuffle(seed=seed).repeat(None)  # reshuffled every epoch
    # Crops/degradations are seeded by the global sample index (before sharding), so shards differ.
    ds = ds.random_map(
        RandomPatch(scale=scale, patch_size=patch_size, degradation=degradation, use_hflip=use_hflip, use_rot=use_rot),
        seed=seed,
    )
    if shard_count > 1:
        ds = ds[shard_index::shard_count]
    it_ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=read_threads, prefetch_buffer_size=max(2 * batch_size, 8)))
    if num_workers > 0:
        _ensure_absl_flags_parsed()
        # Workers produce single samples in the global order; batching stays here, so the stream
        # does not depend on num_workers.
        it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers, per_worker_buffer_size=batch_size))
    if pool_size > 1:
        it_ds = grain.experimental.WindowShuffleIterDataset(it_ds, window_size=pool_size, seed=seed)
    it_ds = it_ds.batch(batch_size, drop_remainder=True)
    return it_ds.map(ToFloat(mask_stride))
