"""Data: image I/O, MATLAB-exact bicubic, BSRGAN/Real-ESRGAN degradations, grain pipelines.

Public API (import the submodules; nothing heavy is imported by this package itself):

- `sslsr.data.io.read_image(path) -> uint8 (H, W, 3)` RGB (grey -> 3 channels, RGBA -> RGB,
  16-bit -> high byte); one-line ValueError naming the file for unreadable/truncated images.
  `io.write_png(path, img)`, `io.list_images(folder)`.
- `sslsr.data.degradations.imresize(img, scale)`: MATLAB `imresize` bicubic with antialiasing,
  any scale, uint8 (bit-exact with MATLAB) or float. `degradations.mod_crop`, `bicubic_lr`,
  `realesrgan_degrade(hr, scale, rng, params)`, `bsrgan_degrade(hr, scale, rng)`,
  `REALESRGAN_PRESETS` ('realesrgan', 'realesrgan_ssl'), `degrade(name, hr, scale, rng)`.
- `sslsr.data.builtin.demo_images('train'|'val') -> [(name, uint8 HWC)]` (scikit-image photos,
  no download).
- `sslsr.data.pipeline.make_train_loader(*, hr_dir | images, lr_dir=None, scale, patch_size,
  batch_size, degradation='bicubic'|'realesrgan'|'realesrgan_ssl'|'bsrgan', use_mask=True,
  mask_dir=None, mask_stride=1, pool_size=None, cache_images=False, seed=0, num_workers=0,
  shard=None)`: infinite grain IterDataset of {'lr', 'hr', 'mask'} NHWC float32 [0, 1] batches
  (mask (B, H, W) in {0, 1}); `it = iter(loader)` has `get_state()` (JSON-serializable dict: save
  it in the checkpoint) / `set_state(state)` (resume with the same num_workers), `close()`.
  Sharded by (jax.process_index(), jax.process_count()) unless `shard` is given. With workers,
  the calling script needs the `if __name__ == "__main__":` guard (processes are spawned).
- `sslsr.data.datasets.iterate_eval_pairs(root | 'demo', scale=, hr_dir=, lr_dir=, hr_mod=)`:
  whole-image (name, lr uint8, hr uint8) in sorted order, BasicSR size convention.
- `sslsr.data.transforms`: `paired_random_crop`, `random_augment`.
- CLIs: `python -m sslsr.data.masks <hr_dir> <mask_dir>`, `python -m sslsr.data.prepare ...`.
- `sslsr.data.tfds.tfds_images(name, split)` / `export_folder(out_dir, name, split)`: optional
  tensorflow-datasets source (imported only when called).
"""
