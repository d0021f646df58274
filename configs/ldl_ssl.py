"""LDL-SSL: LDL (Liang et al., CVPR 2022, "Details or Artifacts") with the SSL term, the SSL
paper's Table 1 row (its code: options/train/LDLSSL/train_LDLSSL_bicubic_x4.yml).

RRDBNet-23 fine-tuned from ESRGAN's PSNR model (`params_ema`) with L1 1e-2 + LDL's artifact loss
1 (L1 between the artifact-map-weighted SR and HR; the map compares G's residual with the EMA
generator's, EMA 0.999) + VGG19 perceptual (conv1_2 0.1, conv2_2 0.1, conv3_4 / conv4_4 /
conv5_4 1.0) + relativistic GAN 5e-3 against a VGG-style discriminator at 128 px + SSL (search 25,
window 9, h 0.004, KL and L1 each x1000, every edge pixel). Crop 128, batch 64 per GPU, Adam 1e-4
(0.9, 0.99) constant (the published MultiStep has gamma 1), 300k iterations.

Run:
    python train.py --config configs/ldl_ssl.py --workdir workdirs/ldl_ssl \
        --config.generator.init_from=/path/to/ESRGAN_PSNR_SRx4_DF2K_official-150ff491.pth \
        --config.loss.perceptual_weights=/path/to/vgg19-dcbfe0e4.pth --config.data.train=/path/to/DF2K_HR
  (or init_from=workdirs/rrdb_psnr: configs/rrdb_psnr.py trains that PSNR initialisation.)
Variants: `:demo` (a 2-block RRDBNet on 64 px patches of the bundled photos, UNetDiscriminatorSN,
  VGG16 conv1_2/conv2_2/conv3_3/conv4_3/conv5_3, EMA 0.99, 250 L1 + 150 GAN steps: a few minutes
  on 2 CPU cores; see docs/methods.md).
Expected time: 300k iterations of RRDBNet-23 at batch 64: days on one GPU.
  The demo: 7.4 min wall / 4.7 min CPU on the shared 2-core VM at load ~5.7 (measured; GAN+SSL
  step ~2 s, benchmarks/results/methods_speed.txt); validation on the two held-out photos ends at
  PSNR-Y 27.7 dB / LPIPS 0.425 (bicubic 28.6 / 0.368): 150 GAN steps check the pipeline only.
Expected result: the paper's LDL-SSL row (Set14 / Urban100 / DIV2K-val LPIPS and DISTS better than
  LDL's, fewer artifacts). The demo is a pipeline check, not a trained model.
"""

import ml_collections

from sslsr.train.config import base_config, demo, variants


def get_config(arg: str | None = None):
    chosen = variants(arg, ("demo",), "configs/ldl_ssl.py")
    c = base_config()
    c.generator.init_from = "workdirs/rrdb_psnr"
    c.generator.init_key = "params_ema"
    c.data.train = "datasets/DF2K/HR"
    c.data.val = "datasets/Set14"
    c.train.total_steps = 300_000
    c.train.milestones = ()
    c.loss.artifact_weight = 1.0
    c.loss.perceptual_layers = ml_collections.ConfigDict(
        dict(conv1_2=0.1, conv2_2=0.1, conv3_4=1.0, conv4_4=1.0, conv5_4=1.0))
    if "demo" in chosen:
        demo(c)
    return c
