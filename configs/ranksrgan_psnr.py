"""RankSRGAN's SRResNet, L1 pretraining: the initialisation configs/ranksrgan.py and
ranksrgan_ssl.py fine-tune from (RankSRGAN publishes it as mmsr_SRResNet_pretrain.pth).

Run:
    python train.py --config configs/ranksrgan_psnr.py --workdir workdirs/ranksrgan_psnr \
        --config.data.train=/path/to/DIV2K_HR --config.data.val=/work/shared/data/Set14
  Settings: mmsr's SRResNet (MSRResNet) x4 pretraining, which are configs/rrdb_psnr.py's: batch 16,
  128 px, Adam 2e-4 (0.9, 0.99), cosine restarts every 250k of 1M iterations (eta_min 1e-7), L1
  only, no discriminator; plus an EMA 0.999 (mmsr keeps none; use init_key=params for the raw G).
Variants: `:demo` (300 L1 steps of an 8-block, 32-channel SRResNet on 64 px patches; ~2 minutes on CPU).
Expected time: 1M iterations: a few GPU-days.
Expected result: mmsr's MSRResNet x4 reaches ~30.2 dB PSNR (Y) on Set5.
"""

from sslsr.train.config import sibling_config, variants


def get_config(arg: str | None = None):
    variants(arg, ("demo",), "configs/ranksrgan_psnr.py")
    c = sibling_config(__file__, "rrdb_psnr", arg)
    c.generator = sibling_config(__file__, "ranksrgan_ssl", arg).generator  # the same network (demo: smaller)
    c.generator.init_from = ""
    c.generator.init_key = "params"
    return c
