"""SPSR baseline (Ma et al., CVPR 2020): configs/spsr_ssl.py without the SSL term.

Run:
    python train.py --config configs/spsr.py --workdir workdirs/spsr \
        --config.generator.init_from=workdirs/spsr_psnr \
        --config.loss.perceptual_weights=/path/to/vgg19-dcbfe0e4.pth --config.data.train=/path/to/DF2K_HR
Variants: `:demo` (as configs/spsr_ssl.py:demo, a few minutes on 2 CPU cores).
Expected time: as spsr_ssl, a little faster per step (no SSL).
Expected result: SPSR's published numbers; the SSL paper's SPSR column.
"""

from sslsr.train.config import sibling_config, variants


def get_config(arg: str | None = None):
    variants(arg, ("demo",), "configs/spsr.py")
    c = sibling_config(__file__, "spsr_ssl", arg)
    c.loss.ssl_weight = 0.0
    return c
