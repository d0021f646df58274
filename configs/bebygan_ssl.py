"""BebyGAN-SSL: BebyGAN (Li et al., 2022, "Best-Buddy GANs for Highly Detailed Image
Super-Resolution") with the SSL term, the SSL paper's Table 1 row (its code:
options/train/BebyGANSSL/train_BebyGANSSL_bicubic_x4.yml, models/bebyganssl_model.py).

RRDBNet-23 (BebyGAN's checkpoints use the old ESRGAN key names, which `from_torch` reads)
fine-tuned from BebyGAN's warm-up model with: best-buddy loss 1 (3x3 patches at stride 3, each
matched among the HR patches at scales 1, 1/2, 1/4; it replaces the pixel L1, whose weight is 0),
back-projection L1(MATLAB-bicubic(SR, 1/4), LR) 1, VGG19 perceptual conv3_4 0.125 / conv4_4 0.25 /
conv5_4 0.5, region-aware relativistic GAN 5e-3 (G's GAN term and D's update see SR and HR
multiplied by the mask of textured HR regions: 11x11 luminance std >= 0.025) against mmsr's
Discriminator_VGG_192, SSL (search 25, window 9, h 0.004, KL and L1 each x1000, every edge pixel).
Crop 192, batch 16 per GPU, Adam 1e-4 (0.9, 0.99) halved at 200k and 400k of 600k, EMA 0.999.

Run:
    python train.py --config configs/bebygan_ssl.py --workdir workdirs/bebygan_ssl \
        --config.generator.init_from=/path/to/RRDB_warmup.pth \
        --config.loss.perceptual_weights=/path/to/vgg19-dcbfe0e4.pth --config.data.train=/path/to/DF2K_HR
  (BebyGAN's warm-up is an L1-trained RRDBNet: configs/rrdb_psnr.py trains an equivalent one,
  then init_from=workdirs/rrdb_psnr with init_key=params_ema.)
Variants: `:demo` (2-block RRDBNet, 64 px patches of the bundled photos, UNetDiscriminatorSN (the
  192 px D does not fit 64 px crops), VGG16 conv3_3/conv4_3/conv5_3, 250 L1 + 150 GAN steps: a few
  minutes on 2 CPU cores).
Expected time: 600k iterations of RRDBNet-23 at 192 px, batch 16: days on one GPU.
  The demo: about 7-8 min on the shared 2-core VM (estimated from ldl_ssl:demo's measured 7.4 min
  and the step times in benchmarks/results/methods_speed.txt).
Expected result: the paper's BebyGAN-SSL row (better LPIPS/DISTS than BebyGAN). The demo is a
  pipeline check.
"""

import ml_collections

from sslsr.train.config import base_config, demo, variants


def get_config(arg: str | None = None):
    chosen = variants(arg, ("demo",), "configs/bebygan_ssl.py")
    c = base_config()
    c.generator.init_from = "pretrained/RRDB_warmup.pth"
    c.generator.init_key = "params"
    c.discriminator.arch = "VGGDiscriminator192"
    c.discriminator.kwargs = ml_collections.ConfigDict(dict(num_in_ch=3, num_feat=64))
    c.data.train = "datasets/DF2K/HR"
    c.data.val = "datasets/Set14"
    c.data.hr_patch = 192
    c.train.batch_size = 16
    c.train.total_steps = 600_000
    c.train.milestones = (200_000, 400_000)
    c.loss.pixel_weight = 0.0
    c.loss.bestbuddy_weight = 1.0
    c.loss.backprojection_weight = 1.0
    c.loss.gan_region_mask = True
    c.loss.perceptual_layers = ml_collections.ConfigDict(dict(conv3_4=0.125, conv4_4=0.25, conv5_4=0.5))
    if "demo" in chosen:
        demo(c)
    return c
