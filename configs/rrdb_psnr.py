"""RRDBNet-23 L1 pretraining (BasicSR's train_RRDBNet_PSNR_x4): the initialisation every ESRGAN /
ESRGAN-SSL run fine-tunes from.

Run:
    python train.py --config configs/rrdb_psnr.py --workdir workdirs/rrdb_psnr \
        --config.data.train=/path/to/DF2K_HR --config.data.val=/work/shared/data/Set14
  Settings: batch 16, 128 px HR patches, Adam 2e-4 (0.9, 0.99), cosine annealing with restarts
  every 250k of 1M iterations (eta_min 1e-7), EMA 0.999, L1 only, no discriminator.
Variants: `:demo` (300 L1 steps of a 2-block RRDBNet on 64 px patches of the bundled photos, ~2 minutes on CPU).
Expected time: 1M iterations are several GPU-days.
Expected result: BasicSR's RRDB_PSNR_x4 reaches ~30.9 dB PSNR (Y) on Set5 (x4, bicubic).
"""

from sslsr.train.config import base_config, demo, variants


def get_config(arg: str | None = None):
    chosen = variants(arg, ("demo",), "configs/rrdb_psnr.py")
    c = base_config()
    c.discriminator.arch = ""
    c.data.train = "datasets/DF2K/HR"
    c.data.val = "datasets/Set14"
    c.train.total_steps = 1_000_000
    c.train.batch_size = 16
    c.train.lr_g = 2e-4
    c.train.schedule = "cosine_restart"
    c.train.restart_periods = (250_000, 250_000, 250_000, 250_000)
    c.train.eta_min = 1e-7
    c.loss.pixel_weight = 1.0
    c.loss.perceptual_weight = 0.0
    c.loss.gan_weight = 0.0
    c.loss.ssl_weight = 0.0
    c.log.best_metric = "psnr"  # a PSNR-oriented model: keep the checkpoint with the best PSNR
    if "demo" in chosen:
        demo(c)
        c.train.pretrain_steps = 0
        c.train.total_steps = 300
        c.train.lr_g = 1e-3
        c.train.restart_periods = (300,)
    return c
