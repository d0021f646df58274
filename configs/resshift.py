"""ResShift (Yue et al., NeurIPS 2023), realsr x4 (`realsr_swinunet_realesrgan256`): a 118.6M-parameter
Swin-UNet denoiser in the latent space of the VQ-f4 autoencoder, 15 residual-shifting steps
(kappa 2, sqrt(eta) 0.02 -> 0.99), x_0 prediction with an MSE loss on the latent; Real-ESRGAN
degradations, 256 px HR / 64 px LR patches, batch 64, Adam 5e-5 with 5k warm-up steps, EMA 0.999,
300k iterations. No SSL (configs/resshift_ssl.py adds it).

Run (the autoencoder's weights are needed; nothing is downloaded):
    python train.py --config configs/resshift.py --workdir workdirs/resshift \
        --config.autoencoder.weights=/path/to/autoencoder_vq_f4.pth \
        --config.data.train=/path/to/HR_images --config.data.val=/work/shared/data/Set14
  --config.generator.init_from=/path/to/resshift_realsrx4_s15_v1.pth starts from the published
  denoiser (fine-tuning) instead of from scratch. Then:
    python eval.py --checkpoint workdirs/resshift --datasets Set14 --data_root ... --out ...
    python -m sslsr.upscale photo.png photo_x4.png --checkpoint workdirs/resshift \
        [--sample_steps 15 --sample_seed 12345]
  ResShift's published model itself, without training:
    python -m sslsr.upscale photo.png photo_x4.png --checkpoint resshift_realsrx4_s15_v1.pth \
        --autoencoder autoencoder_vq_f4.pth
Variants:
    :demo  minutes on 2 CPU cores: a pixel-space model (no autoencoder; docs/diffusion.md says why)
           with a 32-channel 2-level ResShiftUNet on 64 px patches of the bundled photos, 300 steps
           at batch 4; shows the MSE of the x_0 prediction falling. Validation samples with 4 of the
           15 steps (respaced).
Expected time: 300k iterations at batch 64 of a 118.6M-parameter UNet: GPU-days (not measured
  here). Batch 64 does not fit one accelerator at once: ResShift accumulates micro-batches of 8
  (here --config.train.grad_accum=8); compiled memory per sample in
  benchmarks/results/resshift_speed.txt. The demo: ~5 minutes of training on the 2-core VM
  (~0.6 s per step, ~1 s at load 8) plus ~1 minute of validation sampling.
Expected result: a full run should approach the published model's (resshift_realsrx4_s15_v1.pth,
  ResShift's paper tables on RealSR / ImageNet-Test); this toolkit has not retrained it. The demo's
  l_mse falls from ~0.3 to ~0.04 (docs/diffusion.md lists a run); its samples after 300 steps are
  far below bicubic (PSNR-Y ~22 dB on the two held-out photos): a toy that shows the pipeline.
"""

from sslsr.train.config import variants
from sslsr.train.recipes.resshift import base_config, demo


def get_config(arg: str | None = None):
    chosen = variants(arg, ("demo",), "configs/resshift.py")
    c = base_config()
    c.data.train = "datasets/ImageNet/train"
    c.data.val = "datasets/Set14"
    if "demo" in chosen:
        demo(c)
    return c
