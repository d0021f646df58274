"""MetaF2N with SSL in the outer (meta) loss:

  L_outer = 1 L1 + 0.5 LPIPS(AlexNet) + 0.1 L_adv + 0.002 L_reg + beta (KL(S_HR||S_SR) + lambda |S_SR - S_HR|_1)

with beta = loss.ssl_weight (1000, the SSL paper's) and lambda = loss.ssl_alpha (1), on the edge
mask of each HR background crop. Everything else as configs/metaf2n.py (paper scale: RRDBNet-23
from Real-ESRGAN x4plus, the offline ncnn copy being fp16-rounded; UNetDiscriminatorSN from
scratch; second-order MAML; meta Adam 3e-5; 4 tasks x 4 patches; faces 32->128, backgrounds
64->256). See docs/metaf2n.md.

Run:
    python train.py --config configs/metaf2n_ssl.py --workdir workdirs/metaf2n_ssl \
        --config.meta.faces=/path/to/FFHQ_aligned --config.data.train=/path/to/DF2K/HR
  (aligned faces: any folder of face images cropped/aligned like FFHQ, resized to meta.face_size;
  backgrounds: any folder of photos at least data.hr_patch on each side.)
Variants:
    :demo   as configs/metaf2n.py:demo with SSL: 2-block RRDBNet, astronaut face (oracle), 2 tasks x
            2 patches of 16->64 px: 26 min on the 2-core VM at load ~5 (L1 stage 1 min, meta-step
            compile ~5 min, ~13-15 s per meta-step).
Expected time: as configs/metaf2n.py (its memory figures include SSL): not measured on a GPU
  here; days on one GPU for 100k meta-steps (a 32 GB+ GPU for the published 4 x 4 meta-batch).
Expected result: no published numbers for this combination. The demo, on the astronaut degraded by
  4 Real-ESRGAN seeds (experiments/metaf2n_synthetic/README.md): unadapted 12.8 dB PSNR-Y (the
  meta-learned weights rely on the inner step), after one step on the face 21.2 dB / LPIPS 0.593,
  against 20.3 dB / 0.614 for the model before meta-training and 21.5 dB / 0.680 for bicubic.
"""

from sslsr.train.config import variants
from sslsr.train.recipes.metaf2n import metaf2n_config, shrink_to_demo


def get_config(arg: str | None = None):
    chosen = variants(arg, ("demo",), "configs/metaf2n_ssl.py")
    c = metaf2n_config(ssl=True)
    if "demo" in chosen:
        shrink_to_demo(c)
    return c
