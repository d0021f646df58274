"""SwinIR-GAN-SSL: SwinIR classical x4 (pad_mode 'flip', as the SSL paper's fork) fine-tuned with the
ESRGAN-SSL losses against a VGGStyleDiscriminator at 256 px.

Run:
    python train.py --config configs/swinirgan_ssl.py --workdir workdirs/swinirgan_ssl \
        --config.generator.init_from=/path/to/001_classicalSR_DF2K_s64w8_SwinIR-M_x4.pth \
        --config.loss.perceptual_weights=/path/to/vgg19-dcbfe0e4.pth --config.data.train=/path/to/DF2K_HR
  Settings: HR patch 256, batch 4 per GPU in the published config (`train.batch_size` is global:
  multiply by your GPU count), MultiStep x0.5 at 50k/80k/90k/95k of 100k, other settings as
  configs/esrgan_ssl.py.
Variants: `:demo` (a 2-block SwinIR with 16 channels, 64 px patches and UNetDiscriminatorSN, a few
  minutes on CPU; see configs/esrgan_ssl.py).
Expected time: 100k iterations of SwinIR-M at 256 px: days on one GPU.
Expected result: the paper's SwinIR-GAN-SSL row (better LPIPS/DISTS than SwinIR-GAN).
"""

from sslsr.train.config import base_config, demo, variants


def get_config(arg: str | None = None):
    chosen = variants(arg, ("demo",), "configs/swinirgan_ssl.py")
    c = base_config()
    c.generator.arch = "SwinIR"
    c.generator.kwargs = dict(upscale=4, in_chans=3, img_size=64, window_size=8, img_range=1.0,
                              depths=(6, 6, 6, 6, 6, 6), embed_dim=180, num_heads=(6, 6, 6, 6, 6, 6),
                              mlp_ratio=2.0, upsampler="pixelshuffle", resi_connection="1conv", pad_mode="flip")
    c.generator.init_from = "pretrained/001_classicalSR_DF2K_s64w8_SwinIR-M_x4.pth"
    c.generator.init_key = "params"
    c.discriminator.kwargs.input_size = 256
    c.data.train = "datasets/DF2K/HR"
    c.data.val = "datasets/Set14"
    c.data.hr_patch = 256
    c.train.batch_size = 4
    c.train.total_steps = 100_000
    c.train.milestones = (50_000, 80_000, 90_000, 95_000)
    if "demo" in chosen:
        demo(c)
        c.generator.kwargs.update(img_size=16, depths=(2,), embed_dim=16, num_heads=(2,))
    return c
