"""MetaF2N on synthetic data: a photo with a face, degraded by the Real-ESRGAN pipeline, super-resolved
before and after adaptation from its face (oracle pseudo ground truth).

    python experiments/metaf2n_synthetic/run.py --checkpoint WORKDIR [--seeds 0,1,2,3] [--steps 1,5]

Photos: the astronaut (scikit-image's bundled photo; the only bundled colour photo with a face, box
`sslsr.meta.tasks.DEMO_FACE_BOXES`), each seed a different Real-ESRGAN degradation (x4, the
'realesrgan' preset) of the whole 512 px photo. Arms:
  bicubic       MATLAB bicubic x4 of the LR;
  baseline      --baseline (e.g. the run's L1-stage checkpoint, before meta-training), unadapted;
  unadapted     the meta-learned initialisation as is;
  adapted       k SGD steps on 16 random 16->64 px face patches weighted by the learned MaskNet;
  adapted, m=1  the same steps with every face pixel weighted 1 (no MaskNet).
Scores: PSNR (Y, crop 4) and LPIPS (AlexNet) on the whole photo, on the face crop and on the rest
(the face crop zeroed in both images). Writes results.json and a Markdown table beside this file
(or --out) and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def main():
    from skimage import data

    from sslsr.data.imresize import imresize
    from sslsr.data.realesrgan import realesrgan_degrade
    from sslsr.inference import NetworkUpscaler, super_resolve, to_uint8
    from sslsr.meta.adapt import AdaptingUpscaler, FaceBox, OracleFaces, load_masknet, square_crop
    from sslsr.meta.tasks import DEMO_FACE_BOXES
    from sslsr.metrics import load_lpips, psnr
    from sslsr.weights import load_generator

    parser = argparse.ArgumentParser()
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--seeds", default="0,1,2,3")
    parser.add_argument("--steps", default="1,5")
    parser.add_argument("--baseline", default="", help="another checkpoint scored unadapted (e.g. the run's L1 stage)")
    parser.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    args = parser.parse_args()

    g = load_generator(args.checkpoint)
    mask = load_masknet(args.checkpoint)
    lpips = load_lpips("alex", input_range="[0,1]")
    hr = data.astronaut()
    box = FaceBox(*(v / 4 for v in DEMO_FACE_BOXES["astronaut"]))
    y0, x0, side = square_crop(box, hr.shape[0] // 4, hr.shape[1] // 4)
    face = (slice(4 * y0, 4 * (y0 + side)), slice(4 * x0, 4 * (x0 + side)))

    def lp(a, b):
        return float(lpips(a[None].astype(np.float32) / 255, b[None].astype(np.float32) / 255)[0])

    def scores(sr):
        rest_sr, rest_hr = sr.copy(), hr.copy()
        rest_sr[face] = 0
        rest_hr[face] = 0
        return {"psnr": psnr(sr, hr, crop_border=4), "lpips": lp(sr, hr),
                "psnr_face": psnr(sr[face], hr[face], crop_border=0), "lpips_face": lp(sr[face], hr[face]),
                "psnr_rest": psnr(rest_sr, rest_hr, crop_border=4)}

    plain = NetworkUpscaler(g)
    baseline = NetworkUpscaler(load_generator(args.baseline)) if args.baseline else None
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        lr = realesrgan_degrade(hr, 4, np.random.default_rng(seed))
        bicubic = np.clip(np.round(imresize(lr.astype(np.float64), 4.0)), 0, 255).astype(np.uint8)
        rows.append({"seed": seed, "arm": "bicubic", "steps": 0, **scores(bicubic)})
        if baseline is not None:
            rows.append({"seed": seed, "arm": "baseline (unadapted)", "steps": 0,
                         **scores(to_uint8(super_resolve(baseline, lr)))})
        rows.append({"seed": seed, "arm": "unadapted", "steps": 0, **scores(to_uint8(super_resolve(plain, lr)))})
        for steps in (int(k) for k in args.steps.split(",")):
            for arm, m in (("adapted", mask), ("adapted, m=1", None)):
                up = AdaptingUpscaler(g, m, pseudo_gt=OracleFaces(hr.astype(np.float32) / 255), boxes=[box], steps=steps)
                rows.append({"seed": seed, "arm": arm, "steps": steps, **scores(to_uint8(super_resolve(up, lr)))})
        print(f"seed {seed} done", flush=True)
    keys = ("psnr", "lpips", "psnr_face", "lpips_face", "psnr_rest")
    table = ["| arm | steps | PSNR-Y | LPIPS | PSNR-Y face | LPIPS face | PSNR-Y rest |", "|---|---|---|---|---|---|---|"]
    for arm, steps in dict.fromkeys((r["arm"], r["steps"]) for r in rows):
        sel = [r for r in rows if r["arm"] == arm and r["steps"] == steps]
        table.append(f"| {arm} | {steps} | " + " | ".join(
            f"{np.mean([r[k] for r in sel]):.{2 if 'psnr' in k else 4}f}" for k in keys) + " |")
    text = "\n".join(table)
    print(text)
    meta = {"checkpoint": os.path.abspath(args.checkpoint), "baseline": args.baseline, "masknet": mask is not None, "rows": rows,
            "note": "mean over seeds in table.md; astronaut 512 px, Real-ESRGAN x4 degradation, oracle faces"}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(meta, f, indent=1)
    with open(os.path.join(args.out, "table.md"), "w") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    main()
