"""ESRGAN baseline (BasicSR's train_ESRGAN_x4): esrgan_ssl without the SSL term.

Run:
    python train.py --config configs/esrgan.py --workdir workdirs/esrgan \
        --config.generator.init_from=workdirs/rrdb_psnr \
        --config.loss.perceptual_weights=/path/to/vgg19-dcbfe0e4.pth --config.data.train=/path/to/DF2K_HR
Variants: `:demo` (a few minutes on 2 CPU cores, see configs/esrgan_ssl.py).
Expected time: as esrgan_ssl, a little faster per step (no SSL).
Expected result: ESRGAN's published numbers (e.g. Set14 LPIPS ~0.13 with the official weights);
  the SSL paper's baseline column.
"""

from sslsr.train.config import base_config, demo, variants


def get_config(arg: str | None = None):
    chosen = variants(arg, ("demo",), "configs/esrgan.py")
    c = base_config()
    c.generator.init_from = "workdirs/rrdb_psnr"
    c.generator.init_key = "params_ema"
    c.data.train = "datasets/DF2K/HR"
    c.data.val = "datasets/Set14"
    c.loss.ssl_weight = 0.0
    if "demo" in chosen:
        demo(c)
    return c
