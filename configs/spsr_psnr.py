"""SPSRNet L1 pretraining: the PSNR-oriented initialisation configs/spsr.py and spsr_ssl.py
fine-tune from (the SSL paper's code loads an `SPSR-PSNR/net_g.pth` whose training config it does
not publish; this trains the whole SPSRNet as configs/rrdb_psnr.py trains RRDBNet).

Run:
    python train.py --config configs/spsr_psnr.py --workdir workdirs/spsr_psnr \
        --config.data.train=/path/to/DF2K_HR --config.data.val=/work/shared/data/Set14
  Settings: configs/rrdb_psnr.py's (batch 16, 128 px, Adam 2e-4, cosine restarts every 250k of 1M,
  EMA 0.999, L1 only, no discriminator) with generator SPSRNet (nf 64, nb 23, gc 32).
Variants: `:demo` (300 L1 steps of a 20-block, 16-channel SPSRNet on 64 px patches; a few minutes on CPU).
Expected time: 1M iterations are several GPU-days.
Expected result: about RRDB_PSNR's PSNR (~30.9 dB Y on Set5 x4): the SR branch is an RRDBNet.
"""

from sslsr.train.config import sibling_config, variants


def get_config(arg: str | None = None):
    variants(arg, ("demo",), "configs/spsr_psnr.py")
    c = sibling_config(__file__, "rrdb_psnr", arg)
    c.generator = sibling_config(__file__, "spsr_ssl", arg).generator  # the same network (demo: smaller)
    c.generator.init_from = ""
    c.generator.init_key = "params"
    return c
