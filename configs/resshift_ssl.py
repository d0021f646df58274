"""ResShift-SSL: ResShift (configs/resshift.py) plus the self-similarity loss on the decoded x_0
prediction, the paper's Eq. 7 carried over to ResShift (designed here: the SSL paper's code ships
DM-SSL for StableSR only). Per step: ResShift's latent MSE + gamma * L1(decode(x0_pred), HR) +
beta * SSL(decode(x0_pred), HR, mask), decoded and HR in [0, 1], gradients through the frozen VQ
decoder into the denoiser; SSL (25 x 25 search, 9 x 9 window, h 0.004) on the stride-3 edge mask
(the paper's DM code applies the stride; its GAN code does not), in float32 even with
--config.train.compute_dtype=bfloat16.

Weights (defaults = the paper's text): beta = loss.ssl_weight = 1, gamma = loss.pixel_weight = 0.1,
alpha = loss.ssl_alpha = 1. The paper's StableSR configs instead weigh SSL's KL and L1 parts 0.5
each (configs/SSL/base.yaml: --config.loss.ssl_weight=0.5) or 500 each
(StableSRISSLStage1_ks25_kc9_h0.004_1000.yml: --config.loss.ssl_weight=500).

Run:
    python train.py --config configs/resshift_ssl.py --workdir workdirs/resshift_ssl \
        --config.autoencoder.weights=/path/to/autoencoder_vq_f4.pth \
        --config.generator.init_from=/path/to/resshift_realsrx4_s15_v1.pth \
        --config.data.train=/path/to/HR_images --config.data.val=/work/shared/data/Set14
  (init_from: fine-tune the published model with SSL, the cheap way to the paper's comparison;
  '' trains from scratch like configs/resshift.py). Evaluate / upscale as in configs/resshift.py.
Variants:
    :demo  the pixel-space demo of configs/resshift.py with beta 1, gamma 0.1 (SSL straight on the
           x_0 prediction: a pixel-space model has no decoder; the decoder path is covered by
           tests/test_resshift_recipe.py). ~2x the plain demo's step time: 7 minutes of training
           on the 2-core VM at load ~8, then 1 minute of validation.
Expected time: SSL adds the decoder's backward pass and the SSL graph at 256 px
  (benchmarks/results/resshift_speed.txt: step time and memory with and without SSL).
Expected result: the paper reports better LPIPS/DISTS for DM-SSL models than their baselines with
  fewer artifacts (Table 2); not reproduced here for ResShift (no GPU-days). The demo (run
  2026-12-01, docs/diffusion.md): l_mse 0.31 -> 0.04, L1 0.23 -> 0.07, l_ssl 0.006 -> 0.002 over
  300 steps; validation PSNR-Y 21.8 dB / LPIPS 0.54 on coffee + rocket (a toy, below bicubic).
"""

from sslsr.train.config import variants
from sslsr.train.recipes.resshift import base_config, demo


def get_config(arg: str | None = None):
    chosen = variants(arg, ("demo",), "configs/resshift_ssl.py")
    c = base_config()
    c.data.train = "datasets/ImageNet/train"
    c.data.val = "datasets/Set14"
    c.loss.ssl_weight = 1.0  # beta (paper text)
    c.loss.pixel_weight = 0.1  # gamma (paper text, and its StableSR code)
    c.loss.ssl_alpha = 1.0
    if "demo" in chosen:
        demo(c)
    return c
