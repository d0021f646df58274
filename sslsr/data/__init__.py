"""Data: image I/O, MATLAB-exact bicubic, BSRGAN/Real-ESRGAN degradations, grain pipelines.

NumPy (and grain) only: nothing here imports JAX or sslsr.losses at module level, so grain worker
processes stay light. Public API (import the submodules; this package itself imports nothing):

- `sslsr.data.io.read_image(path) -> uint8 (H, W, 3)` RGB (grey -> 3 channels, RGBA -> RGB,
  16-bit -> high byte); one-line ValueError naming the file for unreadable/truncated images.
  `io.write_png(path, img)` (atomic), `io.list_images(folder)`, `io.to_uint8(float image)`.
- `sslsr.data.imresize.imresize(img, scale)`: MATLAB `imresize` bicubic with antialiasing,
  any scale, uint8 (bit-exact with MATLAB) or float; `mod_crop`, `bicubic_lr`, `resize_matrix`.
- `sslsr.data.degradations.degrade(name, hr, scale, rng)` with name in `degradations.NAMES`
  ('bicubic', 'realesrgan', 'realesrgan_ssl', 'bsrgan'). The models:
  `sslsr.data.realesrgan.realesrgan_degrade(hr, scale, rng, params)` (params: a
  `RealESRGANParams` of two `DegradationStage`s; presets `REALESRGAN_PRESETS`),
  `sslsr.data.bsrgan.bsrgan_degrade(hr, scale, rng)`; their building blocks in
  `sslsr.data.kernels` (blur kernels, filter2d), `sslsr.data.resample` (torch-style resize) and
  `sslsr.data.artifacts` (noise, JPEG); `sslsr.data.usm` (USM sharpening).
- `sslsr.data.builtin.demo_images('train'|'val') -> [(name, uint8 HWC)]` (scikit-image photos,
  no download).
- `sslsr.data.pipeline.make_train_loader(*, hr_dir | images, lr_dir=None, scale, patch_size,
  batch_size, degradation='bicubic'|'realesrgan'|'realesrgan_ssl'|'bsrgan', use_mask=True,
  mask_dir=None, edge_threshold=20.0, mask_stride=1, pool_size=None, cache_images=False, seed=0,
  num_workers=0, shard=None)`: infinite grain IterDataset of {'lr', 'hr', 'mask'} NHWC float32
  [0, 1] batches (mask (B, H, W) in {0, 1}, `sslsr.edges.edge_mask` of the whole HR); `it =
  iter(loader)` has `get_state()` (JSON-serializable dict: save it in the checkpoint) /
  `set_state(state)` (resume with the same num_workers), `close()`. Sharded by
  (jax.process_index(), jax.process_count()) unless `shard` is given. With workers, the calling
  script needs the `if __name__ == "__main__":` guard (processes are spawned).
- `sslsr.data.datasets.iterate_eval_pairs(root | 'demo', scale=, hr_dir=, lr_dir=, hr_mod=)`:
  whole-image (name, lr uint8, hr uint8) in sorted order, BasicSR size convention.
- `sslsr.data.transforms`: `paired_random_crop`, `random_augment`, `dihedral(img, transpose,
  flip_h, flip_w, inverse=False)` (the 8 flips/rotations, also used by the x8 self-ensemble).
- CLIs (absl flags): `python -m sslsr.data.masks <hr_dir> <mask_dir>`,
  `python -m sslsr.data.prepare multiscale|subimages|all <in> <out>`.
- `sslsr.data.tfds.tfds_images(name, split)` / `export_folder(out_dir, name, split)`: optional
  tensorflow-datasets source (imported only when called).
"""
