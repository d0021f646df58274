"""ELAN x4 L1 training: the initialisation configs/elangan.py and elangan_ssl.py fine-tune from.

Run:
    python train.py --config configs/elan_psnr.py --workdir workdirs/elan_psnr \
        --config.data.train=/path/to/DIV2K_HR --config.data.val=/work/shared/data/Set14
  Settings of the official ELAN repository (configs/elan_x4.yml): HR patch 192, batch 32, Adam
  2e-4, halved at epochs 250/400/450/475/500 of 1000 with 800 DIV2K images repeated 80 times per
  epoch (2000 iterations each: steps 500k/800k/900k/950k/1M of 2M), L1, no EMA; the network is the
  SSL code's port (LayerNorm in the attention projection, as its published weights).
Variants: `:demo` (300 L1 steps of a 4-block, 30-channel ELAN on 64 px patches; a few minutes on CPU).
Expected time: 2M iterations: about a week on one GPU.
Expected result: ELAN x4's published PSNR (32.75 dB Y on Set5 in the ELAN paper, for the official
  BatchNorm variant; not measured here).
"""

from sslsr.train.config import sibling_config, variants


def get_config(arg: str | None = None):
    chosen = variants(arg, ("demo",), "configs/elan_psnr.py")
    c = sibling_config(__file__, "rrdb_psnr", arg)
    c.generator = sibling_config(__file__, "elangan_ssl", arg).generator  # the same ELAN (demo: smaller)
    c.generator.init_from = ""
    c.generator.init_key = "params"
    if "demo" not in chosen:  # the demo keeps rrdb_psnr's short L1 schedule
        c.data.hr_patch = 192
        c.train.batch_size = 32
        c.train.lr_g = 2e-4
        c.train.schedule = "multistep"
        c.train.milestones = (500_000, 800_000, 900_000, 950_000, 1_000_000)
        c.train.total_steps = 2_000_000
        c.train.ema_decay = 0.0
    return c
