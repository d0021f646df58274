"""MetaF2N (Yin et al., ICCV 2023): meta-learned test-time adaptation of RRDBNet-23 from faces.

Outer loss 1 L1 + 0.5 LPIPS(AlexNet) + 0.1 GAN (Real-ESRGAN BCE) + 0.002 L_reg, second-order MAML
(`meta.order=2`, the published code), meta Adam 3e-5 over G + MaskNet, D Adam 1e-4, 4 tasks x 4
patches, faces 32->128, backgrounds 64->256; G starts from Real-ESRGAN x4plus (the offline ncnn
copy, fp16-rounded), D (UNetDiscriminatorSN) from scratch (its Real-ESRGAN weights are not
available offline). configs/metaf2n_ssl.py adds SSL to the outer loss. See docs/metaf2n.md.

Run:
    python train.py --config configs/metaf2n.py --workdir workdirs/metaf2n \
        --config.meta.faces=/path/to/FFHQ_aligned --config.data.train=/path/to/DF2K/HR
  then adapt per photo: python -m sslsr.adapt --checkpoint workdirs/metaf2n --input photo.png \
        --out out.png --restorer /path/to/GPEN-BFR-512.pth
  (`--config.meta.pseudo_gt=gpen --config.meta.restorer=GPEN-BFR-256.pth` trains with GPEN's faces
  as the published code does; the default 'oracle' uses the HR faces.)
Variants:
    :demo   2-block RRDBNet from scratch (300 L1 steps, then 100 meta-steps), the astronaut's face
            (scikit-image's bundled photo, known box) as the only face, bundled photos as
            backgrounds, 2 tasks x 2 patches of 16->64 px, oracle faces. configs/metaf2n_ssl.py:demo
            (the same with SSL) took 26 min on the 2-core VM at load ~5 (L1 stage 1 min, meta-step
            compile ~5 min, ~13-15 s per meta-step); without SSL somewhat less.
Expected time: not published, and not measured here (no GPU): the second-order meta-step of
  RRDBNet-23 at 4 tasks x 4 patches needs ~31 GB by XLA's compiled memory (3 tasks fit in 24 GB;
  benchmarks/results/metaf2n_speed.txt), and 100k meta-steps are days on one GPU.
Expected result: the paper reports better PSNR/LPIPS than the unadapted Real-ESRGAN on real
  photos with faces; experiments/metaf2n_synthetic/README.md gives what the demo reaches (after one
  adaptation step better PSNR and LPIPS than its pre-meta L1 model; the meta-learned weights alone,
  unadapted, are poor).
"""

from sslsr.train.config import variants
from sslsr.train.recipes.metaf2n import metaf2n_config, shrink_to_demo


def get_config(arg: str | None = None):
    chosen = variants(arg, ("demo",), "configs/metaf2n.py")
    c = metaf2n_config(ssl=False)
    if "demo" in chosen:
        shrink_to_demo(c)
    return c
