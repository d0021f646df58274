"""The shipped x4 PSNR model ('srvgg-x4-psnr'): a small SRVGGNetCompact trained with L1 on this CPU.

The model `python -m sslsr.upscale` uses by default and the starting point of `make demo`.

Training data (assembled once into one folder, since data.train reads one folder; nothing of it
ships except the resulting weights): the 91 images of T91 (`../shared/data/T91/HR`) plus the five
scikit-image training photos (`sslsr.data.builtin.demo_images('train')`); the two held-out photos
(coffee, rocket) and every evaluation set stay out.

    mkdir -p workdirs/shipped_train && cp ../shared/data/T91/HR/*.png workdirs/shipped_train/
    python -c "from sslsr.data.builtin import demo_images; from sslsr.data.io import write_png; \\
        [write_png(f'workdirs/shipped_train/{n}.png', im) for n, im in demo_images('train')]"
    python train.py --config configs/srvgg_psnr.py --workdir workdirs/srvgg_psnr
    python -m sslsr.export workdirs/srvgg_psnr sslsr/weights/shipped/srvgg_x4_psnr.safetensors
    python eval.py --checkpoint srvgg-x4-psnr --datasets Set5,Set14,Urban100 \
        --data_root ../shared/data --out workdirs/srvgg_psnr/eval

Why this network: SRVGGNetCompact computes everything at the LR resolution and upsamples once
with a pixel shuffle, so it costs ~4x fewer operations per pixel than an MSRResNet of the same
width (whose last convolutions run at 2x and 4x resolution); on the 2 shared CPU cores that is
4x more training steps in the same time, and a 512 px input upscales in about a second.
Settings: 32 features, 12 convolutions, PReLU (~0.13 M parameters), L1 only, no discriminator,
batch 16 of 96 px HR patches (bicubic LR), Adam 1e-3 (0.9, 0.99) halved at 60/80/92% of the
run, EMA 0.99. The learning rate is 5x BasicSR's 2e-4 because the run is short (a few thousand
steps instead of 1M); EMA 0.99 (an average over the last ~100 steps) because 0.999
would still weigh the high-learning-rate steps before the last decay (0.999**300 = 74%).
Variants: none.
Expected time: 22.5 minutes of wall time for the 4000 steps on the 2-core VM shared with other
  jobs (load average 5-14; 1.3-5 steps/s).
Expected result (the shipped file, step 4000, EMA weights; PSNR-Y / SSIM-Y / LPIPS / DISTS):
  Set5 30.79 / 0.8711 / 0.1767 / 0.1496 (bicubic 28.43 / 0.8111 / 0.3435 / 0.2119),
  Set14 27.76 / 0.7593 / 0.2916 / 0.1766 (bicubic 26.09 / 0.7048 / 0.4395 / 0.2230),
  Urban100 img_001-050 (the 50 images ../shared holds) 24.90 / 0.7511 / 0.2777 / 0.2042
  (bicubic 23.24 / 0.6728 / 0.4667 / 0.2525). Validation on the two held-out photos: 28.64 dB
  after 500 steps, 29.35 after 1000, 29.50 at the end (bicubic 28.64).
"""

import ml_collections

from sslsr.train.config import base_config, variants


def get_config(arg: str | None = None):
    variants(arg, (), "configs/srvgg_psnr.py")
    c = base_config()
    c.generator.arch = "SRVGGNetCompact"
    c.generator.kwargs = ml_collections.ConfigDict(
        dict(num_in_ch=3, num_out_ch=3, num_feat=32, num_conv=12, upscale=4, act_type="prelu"))
    c.discriminator.arch = ""
    c.data.train = "workdirs/shipped_train"
    c.data.val = "demo"
    c.data.val_max_images = 2
    c.data.hr_patch = 96
    c.train.total_steps = 4000
    c.train.batch_size = 16
    c.train.lr_g = 1e-3
    c.train.schedule = "multistep"
    c.train.milestones = (2400, 3200, 3700)
    c.train.gamma = 0.5
    c.train.ema_decay = 0.99
    c.loss.pixel_weight = 1.0
    c.loss.perceptual_weight = 0.0
    c.loss.gan_weight = 0.0
    c.loss.ssl_weight = 0.0
    c.log.every = 50
    c.log.val_every = 500
    c.log.ckpt_every = 100
    c.log.keep = 2
    return c
