"""RankSRGAN's ranker (Zhang et al., ICCV 2019): `Ranker_VGG12_296` trained to order SR results by
their perceptual index, the `loss.rank_weights` of configs/ranksrgan*.py (recipe 'ranker',
sslsr/train/recipes/ranker.py; settings of RankSRGAN's options/train/train_Ranker.yml and
models/Ranker_model.py).

Margin ranking loss (margin 0.5, scores clamped to [-5, 5], the worse-labelled image of a pair to
score higher), BatchNorm in train mode, Adam 1e-4 (torch defaults 0.9, 0.999) with L2 weight decay
1e-4, halved at 100k and 200k of 400k iterations, batch 16, 296 px patches.

Data: one folder per SR method under data.train (RankSRGAN: ESRGAN, SRGAN and SRResNet results on
DF2K patches), the same file name in each folder for the same content, and a label file with one
`<method>/<name> <score>` line per image (its perceptual index, e.g. PI; lower = better). See the
recipe's docstring and docs/methods.md.

Run:
    python train.py --config configs/ranker.py --workdir workdirs/ranker \
        --config.data.train=/path/to/rankdataset --config.ranking.labels=/path/to/labels.txt
  then use it in RankSRGAN: --config.loss.rank_weights=workdirs/ranker (configs/ranksrgan*.py).
Variants: `:demo` (an 8-channel ranker on 64 px crops of the bundled photos, each clean and with
  Gaussian noise of std 0.04 and 0.1, labelled 0/1/2 by noise level; 200 steps of batch 8, about
  40 s on 2 CPU cores, measured).
Expected time: 400k iterations of 2 x 16 296 px forwards: about a day on one GPU.
Expected result: a ranker ordering held-out pairs like the published mmsr_Ranker_PI.pth (RankSRGAN
  reports ~0.9 Spearman correlation with PI on its test patches); the demo's logged `acc` (pairs of
  the batch ordered correctly) rises from ~0.5 to ~1 (noise level is easy to rank).
"""

import ml_collections

from sslsr.train.config import base_config, variants
from sslsr.train.recipes.ranker import ranking_config


def get_config(arg: str | None = None):
    chosen = variants(arg, ("demo",), "configs/ranker.py")
    c = base_config()
    c.recipe = "ranker"
    c.ranking = ranking_config("datasets/rankdataset/labels.txt")
    c.generator.arch = "RankerVGG12"
    c.generator.kwargs = ml_collections.ConfigDict(dict(in_nc=3, nf=64))
    c.discriminator.arch = ""
    c.data.train = "datasets/rankdataset"
    c.data.val = ""  # a ranker has no SR output to validate
    c.data.hr_patch = 296
    c.log.best_metric = ""
    c.train.batch_size = 16
    c.train.total_steps = 400_000
    c.train.lr_g = 1e-4
    c.train.betas = (0.9, 0.999)
    c.train.milestones = (100_000, 200_000)
    c.train.gamma = 0.5
    c.train.ema_decay = 0.0
    if "demo" in chosen:
        c.generator.kwargs.nf = 8
        c.data.train = "demo"
        c.data.hr_patch = 64
        c.train.batch_size = 8
        c.train.total_steps = 200
        c.train.lr_g = 1e-3
        c.train.milestones = ()
        c.log.every = 20
        c.log.ckpt_every = 100
        c.log.keep = 2
    return c
