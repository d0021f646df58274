"""SPSR-SSL: SPSR (Ma et al., CVPR 2020, "Structure-Preserving Super Resolution with Gradient
Guidance") with the SSL term, the SSL paper's Table 1 row (its code:
options/train/SPSRSSL/train_SPSRSSL_bicubic_x4.yml, models/spsrssl_model.py).

SPSRNet (RRDB trunk of 23 blocks, a gradient branch fed by the trunk after blocks 5/10/15/20, a
fusion block) fine-tuned from a PSNR-oriented SPSRNet (`params_ema`) with L1 1e-2 + SR-gradient
MSE 1e-2 (gradient maps of SR and HR) + branch-gradient L1 0.5 (the branch's output vs HR's
gradient map) + VGG19 conv5_4 perceptual 1 + relativistic GAN 5e-3 of an image discriminator +
relativistic GAN 5e-3 of a second discriminator on gradient maps (both VGG-style at 128 px, each
with its own Adam) + SSL (search 25, window 9, h 0.004, KL and L1 each x1000, every edge pixel).
Crop 128, batch 30 per GPU, Adam 1e-4 (0.9, 0.99) halved at 50k/100k/200k/300k of 400k, EMA 0.999.

Run:
    python train.py --config configs/spsr_ssl.py --workdir workdirs/spsr_ssl \
        --config.generator.init_from=workdirs/spsr_psnr \
        --config.loss.perceptual_weights=/path/to/vgg19-dcbfe0e4.pth --config.data.train=/path/to/DF2K_HR
  (configs/spsr_psnr.py trains the PSNR initialisation; a published SPSR .pth also loads.)
Variants: `:demo` (SPSRNet with 20 blocks (the fewest its branch allows) of 16 channels, 64 px
  patches of the bundled photos, UNetDiscriminatorSN for both discriminators, VGG16 conv5_3,
  250 L1 + 150 GAN steps: a few minutes on 2 CPU cores, most of it compiling the 20 blocks).
Expected time: 400k iterations of SPSRNet at batch 30: days on one GPU.
  The demo: about 12-15 min on the shared 2-core VM (estimated: each of its two step functions
  compiles for ~2.5 min, GAN+SSL step ~2.7 s, benchmarks/results/methods_speed.txt).
Expected result: the paper's SPSR-SSL row (better LPIPS/DISTS than SPSR). The demo is a
  pipeline check.
"""

import ml_collections

from sslsr.train.config import base_config, demo, variants


def get_config(arg: str | None = None):
    chosen = variants(arg, ("demo",), "configs/spsr_ssl.py")
    c = base_config()
    c.generator.arch = "SPSRNet"
    c.generator.kwargs = ml_collections.ConfigDict(dict(in_nc=3, out_nc=3, nf=64, nb=23, gc=32, upscale=4))
    c.generator.init_from = "workdirs/spsr_psnr"
    c.generator.init_key = "params_ema"
    c.data.train = "datasets/DF2K/HR"
    c.data.val = "datasets/Set14"
    c.train.batch_size = 30
    c.loss.gradient_weight = 1e-2
    c.loss.branch_weight = 0.5
    c.loss.gradient_gan_weight = 5e-3
    if "demo" in chosen:
        demo(c)
        c.generator.kwargs.update(nf=16, nb=20, gc=8)
    return c
