"""ELAN-GAN-SSL: the ELAN backbone (Zhang et al., ECCV 2022) trained as a GAN with the SSL term,
the SSL paper's Table 1 row (its code: options/train/ELANGANSSL/train_ELANGANSSL_bicubic_x4.yml).

ELAN x4 (36 blocks, 180 channels, windows 4/8/16, r_expand 2, no shared attention, img_range 255
with the DIV2K mean shift; the SSL code's BasicSR port, whose checkpoints are the published ones)
fine-tuned from a pretrained ELAN (`params`) with L1 1e-2 + VGG19 conv5_4 perceptual 1 +
relativistic GAN 5e-3 against mmsr's Discriminator_VGG_192 + SSL (search 25, window 9, h 0.004,
KL and L1 each x1000, every edge pixel). Crop 192, batch 16 per GPU, Adam 1e-4 (0.9, 0.99) halved
at 200k/250k/275k/287.5k of 300k, EMA 0.999.

Run:
    python train.py --config configs/elangan_ssl.py --workdir workdirs/elangan_ssl \
        --config.generator.init_from=/path/to/ELAN/net_g.pth \
        --config.loss.perceptual_weights=/path/to/vgg19-dcbfe0e4.pth --config.data.train=/path/to/DF2K_HR
  (configs/elan_psnr.py trains the ELAN initialisation: init_from=workdirs/elan_psnr.)
Variants: `:demo` (a 4-block, 30-channel ELAN on 64 px patches of the bundled photos,
  UNetDiscriminatorSN (the 192 px D does not fit 64 px crops), VGG16 conv5_3, 250 L1 + 150 GAN
  steps: a few minutes on 2 CPU cores).
Expected time: 300k iterations of ELAN at 192 px, batch 16: days on one GPU.
  The demo: about 6-7 min on the shared 2-core VM (estimated from ldl_ssl:demo's measured 7.4 min
  and the step times in benchmarks/results/methods_speed.txt).
Expected result: the paper's ELAN-GAN-SSL row (better LPIPS/DISTS than ELAN-GAN). The demo is a
  pipeline check.
"""

import ml_collections

from sslsr.train.config import base_config, demo, variants

# The ELAN x4 of the SSL paper's ELAN-GAN (sslsr.models.elan defaults, spelled out).
ELAN_X4 = dict(scale=4, img_range=255.0, colors=3, window_sizes=(4, 8, 16), m_elan=36, c_elan=180, n_share=0,
               r_expand=2, rgb_mean=(0.4488, 0.4371, 0.4040))


def get_config(arg: str | None = None):
    chosen = variants(arg, ("demo",), "configs/elangan_ssl.py")
    c = base_config()
    c.generator.arch = "ELAN"
    c.generator.kwargs = ml_collections.ConfigDict(ELAN_X4)
    c.generator.init_from = "workdirs/elan_psnr"
    c.generator.init_key = "params"
    c.discriminator.arch = "VGGDiscriminator192"
    c.discriminator.kwargs = ml_collections.ConfigDict(dict(num_in_ch=3, num_feat=64))
    c.data.train = "datasets/DF2K/HR"
    c.data.val = "datasets/Set14"
    c.data.hr_patch = 192
    c.train.batch_size = 16
    c.train.total_steps = 300_000
    c.train.milestones = (200_000, 250_000, 275_000, 287_500)
    if "demo" in chosen:
        demo(c)
        c.generator.kwargs.update(m_elan=4, c_elan=30)
    return c
