"""ELAN-GAN baseline: configs/elangan_ssl.py without the SSL term.

Run:
    python train.py --config configs/elangan.py --workdir workdirs/elangan \
        --config.generator.init_from=/path/to/ELAN/net_g.pth \
        --config.loss.perceptual_weights=/path/to/vgg19-dcbfe0e4.pth --config.data.train=/path/to/DF2K_HR
Variants: `:demo` (as configs/elangan_ssl.py:demo, a few minutes on 2 CPU cores).
Expected time: as elangan_ssl, a little faster per step (no SSL).
Expected result: the SSL paper's ELAN-GAN column.
"""

from sslsr.train.config import sibling_config, variants


def get_config(arg: str | None = None):
    variants(arg, ("demo",), "configs/elangan.py")
    c = sibling_config(__file__, "elangan_ssl", arg)
    c.loss.ssl_weight = 0.0
    return c
