"""ESRGAN-SSL, the paper's main run: RRDBNet-23 fine-tuned from an L1 (PSNR) model with
L1 1e-2 + VGG19 conv5_4 perceptual 1.0 + relativistic GAN 5e-3 + SSL (beta 1000).

Run:
    python train.py --config configs/esrgan_ssl.py --workdir workdirs/esrgan_ssl \
        --config.generator.init_from=workdirs/rrdb_psnr \
        --config.loss.perceptual_weights=/path/to/vgg19-dcbfe0e4.pth \
        --config.data.train=/path/to/DF2K_HR --config.data.val=/work/shared/data/Set14
  (`init_from` also takes BasicSR's RRDB_PSNR_x4.pth; `train.batch_size` is the GLOBAL batch:
  the published config uses 64 per GPU without saying how many GPUs, so set it for your setup.)
Variants:
    :stride3   SSL on every third edge pixel (the paper's text; the published runs used stride 1).
    :demo      a few minutes on 2 CPU cores: RRDBNet with 2 blocks / 32 features, 250 L1 steps then
               150 GAN+SSL steps at batch 4 on 64 px patches of photos bundled with scikit-image
               (LR made on the fly), VGG16 conv5_3 as the perceptual network, and
               UNetDiscriminatorSN (VGGStyleDiscriminator only takes 128/256 px inputs, too slow
               for a CPU demo). `make demo` runs it and then evaluates the workdir.
    variants combine with commas, e.g. `:demo,stride3`.
Expected time: 400k iterations of RRDBNet-23 at 128 px patches take days on one GPU (ESRGAN-scale
  training). The demo: ~7 CPU-minutes, i.e. about 4-5 minutes on 2 idle cores (measured: 12 min
  wall / 6.8 min user CPU for train + eval on a 2-core machine shared with ~6 other jobs, see
  benchmarks/results/train.md).
Expected result: the paper reports for ESRGAN-SSL better LPIPS/DISTS than ESRGAN on Set14 /
  Urban100 / DIV2K-val with fewer artifacts. The demo only shows the pipeline end to end, it is not
  a trained model: on the two demo validation photos (coffee, rocket) it reaches 26.9 dB PSNR (Y)
  after the L1 stage and 27.6 dB / LPIPS 0.43 at the end, below bicubic's 28.6 dB / 0.37 (`eval.py --checkpoint <workdir> --datasets demo`).
"""

from sslsr.train.config import base_config, demo, variants


def get_config(arg: str | None = None):
    chosen = variants(arg, ("demo", "stride3"), "configs/esrgan_ssl.py")
    c = base_config()
    c.generator.init_from = "workdirs/rrdb_psnr"
    c.generator.init_key = "params_ema"
    c.data.train = "datasets/DF2K/HR"
    c.data.val = "datasets/Set14"
    if "stride3" in chosen:
        c.loss.ssl_mask_stride = 3
    if "demo" in chosen:
        demo(c)
    return c
