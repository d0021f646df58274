"""RankSRGAN-SSL: RankSRGAN (Zhang et al., ICCV 2019) with the SSL term, the SSL paper's Table 1
row (its code: options/train/RankSRGANPISSL/train_RankSRGANPISSL_bicubic_x4.yml,
models/ranksrganssl_model.py).

RankSRGAN's SRResNet (16 residual blocks, ReLU) fine-tuned from mmsr's SRResNet with L1 1e-2 +
VGG19 conv5_4 perceptual 1 + plain (non-relativistic) GAN 5e-3 against mmsr's Discriminator_VGG_296
+ the rank-content loss 0.03 x sum over the batch of sigmoid(Ranker(SR)) from a trained, frozen
Ranker_VGG12_296 (`mmsr_Ranker_PI.pth`, the perceptual-index ranker; run in eval mode) + SSL
(search 25, window 9, h 0.004, KL and L1 each x1000, every edge pixel). Crop 296, batch 32 per GPU,
Adam 1e-4 (0.9, 0.99) halved at 50k/100k/200k/300k of 500k, EMA 0.999.
The rank term's gradient flows into G (RankSRGAN's own code); the SSL paper's code runs the ranker
under torch.no_grad(), so there the term never trains G: `--config.loss.rank_grad=False`
reproduces that. The ranker can also be trained here from perceptual-index labels
(configs/ranker.py): `--config.loss.rank_weights=<its workdir>`.

Run:
    python train.py --config configs/ranksrgan_ssl.py --workdir workdirs/ranksrgan_ssl \
        --config.generator.init_from=/path/to/mmsr_SRResNet_pretrain.pth \
        --config.loss.rank_weights=/path/to/mmsr_Ranker_PI.pth \
        --config.loss.perceptual_weights=/path/to/vgg19-dcbfe0e4.pth --config.data.train=/path/to/DIV2K_HR
  (configs/ranksrgan_psnr.py trains the SRResNet initialisation: init_from=workdirs/ranksrgan_psnr
  with init_key=params_ema.)
Variants: `:demo` (an 8-block, 32-channel SRResNet on 64 px patches of the bundled photos,
  UNetDiscriminatorSN (the 296 px D does not fit 64 px crops), VGG16 conv5_3, and a RANDOM,
  untrained ranker (`rank_weights='random'`: the rank term then exercises the code path but
  measures nothing), 250 L1 + 150 GAN steps: a few minutes on 2 CPU cores).
Expected time: 500k iterations at 296 px, batch 32: days on one GPU.
  The demo: about 7-8 min on the shared 2-core VM (estimated from ldl_ssl:demo's measured 7.4 min
  and the step times in benchmarks/results/methods_speed.txt).
Expected result: the paper's RankSRGAN-SSL row (better LPIPS/DISTS than RankSRGAN). The demo is a
  pipeline check.
"""

import ml_collections

from sslsr.train.config import base_config, demo, variants


def get_config(arg: str | None = None):
    chosen = variants(arg, ("demo",), "configs/ranksrgan_ssl.py")
    c = base_config()
    c.generator.arch = "SRResNet"
    c.generator.kwargs = ml_collections.ConfigDict(dict(in_nc=3, out_nc=3, nf=64, nb=16, upscale=4))
    c.generator.init_from = "pretrained/mmsr_SRResNet_pretrain.pth"
    c.generator.init_key = "params"
    c.discriminator.arch = "VGGDiscriminator296"
    c.discriminator.kwargs = ml_collections.ConfigDict(dict(num_in_ch=3, num_feat=64))
    c.data.train = "datasets/DIV2K/HR"
    c.data.val = "datasets/Set14"
    c.data.hr_patch = 296
    c.train.batch_size = 32
    c.train.total_steps = 500_000
    c.loss.gan_type = "vanilla"
    c.loss.rank_weight = 0.03
    c.loss.rank_weights = "pretrained/mmsr_Ranker_PI.pth"
    if "demo" in chosen:
        demo(c)
        c.generator.kwargs.update(nf=32, nb=8)
        c.loss.rank_weights = "random"
    return c
