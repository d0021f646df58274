"""Real-ESRGAN-SSL: RRDBNet-23 fine-tuned from RealESRNet (its `params_ema`) on second-order
degraded data, UNetDiscriminatorSN, plain GAN, multi-layer VGG19 perceptual loss, SSL (beta 1000).

Run:
    python train.py --config configs/realesrgan_ssl.py --workdir workdirs/realesrgan_ssl \
        --config.generator.init_from=/path/to/RealESRNet_x4plus.pth \
        --config.loss.perceptual_weights=/path/to/vgg19-dcbfe0e4.pth --config.data.train=/path/to/DF2K_HR
  Settings: HR patch 256, batch 12 per GPU in the published config (`train.batch_size` is global),
  L1 1.0, perceptual conv1_2 0.1 / conv2_2 0.1 / conv3_4 1 / conv4_4 1 / conv5_4 1, GAN 0.1, no EMA,
  MultiStep x0.5 at 100k of 150k, degradation 'realesrgan_ssl' (sslsr.data.degradations).
  As in Real-ESRGAN, the LR is degraded from the USM-sharpened HR patch and the L1 and perceptual
  targets are that sharpened patch (sslsr.data.usm); the discriminator and SSL see the plain HR.
Variants: `:demo` (2-block RRDBNet, 64 px patches, VGG16 conv1_2/conv2_2/conv3_3/conv4_3/conv5_3, a few
  minutes on CPU).
Expected time: 150k iterations at 256 px, batch 12: days on one GPU.
Expected result: the paper's Real-ESRGAN-SSL row (fewer artifacts than Real-ESRGAN).
"""

from sslsr.train.config import base_config, demo, variants


def get_config(arg: str | None = None):
    chosen = variants(arg, ("demo",), "configs/realesrgan_ssl.py")
    c = base_config()
    c.generator.init_from = "pretrained/RealESRNet_x4plus.pth"
    c.generator.init_key = "params_ema"
    c.discriminator.arch = "UNetDiscriminatorSN"
    c.discriminator.kwargs = dict(num_in_ch=3, num_feat=64, skip_connection=True)
    c.data.train = "datasets/DF2K/HR"
    c.data.val = "datasets/Set14"
    c.data.degradation = "realesrgan_ssl"
    c.data.hr_patch = 256
    c.train.batch_size = 12
    c.train.total_steps = 150_000
    c.train.milestones = (100_000,)
    c.train.ema_decay = 0.0
    c.loss.pixel_weight = 1.0
    c.loss.perceptual_layers = dict(conv1_2=0.1, conv2_2=0.1, conv3_4=1.0, conv4_4=1.0, conv5_4=1.0)
    c.loss.pixel_gt_usm = True
    c.loss.perceptual_gt_usm = True
    c.loss.gan_type = "vanilla"
    c.loss.gan_weight = 0.1
    if "demo" in chosen:
        demo(c)
    return c
