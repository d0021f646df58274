"""BebyGAN baseline (Li et al., 2022): configs/bebygan_ssl.py without the SSL term.

Run:
    python train.py --config configs/bebygan.py --workdir workdirs/bebygan \
        --config.generator.init_from=/path/to/RRDB_warmup.pth \
        --config.loss.perceptual_weights=/path/to/vgg19-dcbfe0e4.pth --config.data.train=/path/to/DF2K_HR
Variants: `:demo` (as configs/bebygan_ssl.py:demo, a few minutes on 2 CPU cores).
Expected time: as bebygan_ssl, a little faster per step (no SSL).
Expected result: BebyGAN's published numbers; the SSL paper's BebyGAN column.
"""

from sslsr.train.config import sibling_config, variants


def get_config(arg: str | None = None):
    variants(arg, ("demo",), "configs/bebygan.py")
    c = sibling_config(__file__, "bebygan_ssl", arg)
    c.loss.ssl_weight = 0.0
    return c
