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
- `sslsr.data.pipeline.make_train_loader(...)`: grain IterDataset of
  {'lr', 'hr', 'mask'} NHWC float32 [0, 1] batches; `iter(...)` gives an iterator with
  `get_state()` (JSON-serializable dict, store it in the checkpoint) / `set_state(state)`.
- `sslsr.data.datasets.iterate_eval_pairs(root | 'demo', scale=, hr_dir=, lr_dir=, hr_mod=)`:
  whole-image (name, lr uint8, hr uint8) in sorted order, BasicSR size convention.
- `sslsr.data.transforms`: `paired_random_crop`, `random_augment`.
- CLIs: `python -m sslsr.data.masks <hr_dir> <mask_dir>`, `python -m sslsr.data.prepare ...`.
- `sslsr.data.tfds.tfds_images(name, split)`: optional tensorflow-datasets source (lazy import).
"""
