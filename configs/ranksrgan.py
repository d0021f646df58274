"""RankSRGAN baseline (Zhang et al., ICCV 2019): configs/ranksrgan_ssl.py without the SSL term.

Run:
    python train.py --config configs/ranksrgan.py --workdir workdirs/ranksrgan \
        --config.generator.init_from=/path/to/mmsr_SRResNet_pretrain.pth \
        --config.loss.rank_weights=/path/to/mmsr_Ranker_PI.pth \
        --config.loss.perceptual_weights=/path/to/vgg19-dcbfe0e4.pth --config.data.train=/path/to/DIV2K_HR
Variants: `:demo` (as configs/ranksrgan_ssl.py:demo, random ranker, a few minutes on 2 CPU cores).
Expected time: as ranksrgan_ssl, a little faster per step (no SSL).
Expected result: RankSRGAN's published numbers; the SSL paper's RankSRGAN column.
"""

from sslsr.train.config import sibling_config, variants


def get_config(arg: str | None = None):
    variants(arg, ("demo",), "configs/ranksrgan.py")
    c = sibling_config(__file__, "ranksrgan_ssl", arg)
    c.loss.ssl_weight = 0.0
    return c
