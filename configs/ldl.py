"""LDL baseline (Liang et al., CVPR 2022): configs/ldl_ssl.py without the SSL term.

Run:
    python train.py --config configs/ldl.py --workdir workdirs/ldl \
        --config.generator.init_from=/path/to/ESRGAN_PSNR_SRx4_DF2K_official-150ff491.pth \
        --config.loss.perceptual_weights=/path/to/vgg19-dcbfe0e4.pth --config.data.train=/path/to/DF2K_HR
Variants: `:demo` (as configs/ldl_ssl.py:demo, a few minutes on 2 CPU cores).
Expected time: as ldl_ssl, a little faster per step (no SSL).
Expected result: LDL's published numbers; the SSL paper's LDL column.
"""

from sslsr.train.config import sibling_config, variants


def get_config(arg: str | None = None):
    variants(arg, ("demo",), "configs/ldl.py")
    c = sibling_config(__file__, "ldl_ssl", arg)
    c.loss.ssl_weight = 0.0
    return c
