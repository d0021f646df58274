"""Evaluate an SR generator on benchmark datasets (PSNR/SSIM on Y, LPIPS, DISTS) and write reports.

  python eval.py --checkpoint workdirs/esrgan_ssl --datasets Set5,Set14,Urban100 \
      --data_root ../shared/data --out workdirs/esrgan_ssl/eval
  python eval.py --checkpoint RealESRGAN_x4plus.pth --arch RRDBNet --arch_kwargs num_block=23 \
      --datasets Set5 --data_root ../shared/data --scale 4 --out /tmp/eval --tile 128

Writes results.md (paper-style table with a bicubic row), results.csv, results.json, the SR images,
comparisons/ crops, labelled figures/ and report.html (table + figures + SR images, opens offline)
into --out; --compare_with adds models evaluated earlier (their --out folders) to report.html, the
figures and the printed table. See `sslsr.evaluate`. The model flags (--checkpoint, --arch,
--arch_kwargs, --scale, --tile, --tile_overlap, --self_ensemble, --dtype) are those of
`python -m sslsr.upscale`.
"""

from __future__ import annotations

import pathlib

from absl import flags

from sslsr import upscale
from sslsr.cli import UserError, define_out, run

flags.adopt_module_key_flags(upscale)
FLAGS = flags.FLAGS
flags.DEFINE_list("datasets", ["Set5", "Set14", "Urban100"], "Dataset folders under --data_root, or 'demo'.")
flags.DEFINE_string("data_root", None, "Folder holding the datasets (BasicSR layout <name>/HR, <name>/LR_bicubic/X<s>).")
define_out("Output folder (required).")
flags.DEFINE_list("metrics", ["psnr", "ssim", "lpips", "dists"], "Metrics to compute.")
flags.DEFINE_integer("hr_mod", None, "Mod-crop of HR when LR is made from HR (default: scale).")
flags.DEFINE_bool("save_images", True, "Write the SR images.")
flags.DEFINE_integer("num_comparisons", 2, "Comparison crops per dataset for the largest gains (and losses).")
flags.DEFINE_string("name", None, "Method name in the tables (default: the checkpoint's name).")
flags.DEFINE_list("compare_with", [], "--out folders of earlier evaluations (same datasets) shown beside this model.")


def main(argv):
    if len(argv) > 1:
        raise UserError(f"unexpected arguments: {' '.join(argv[1:])}")
    # Checked here, not by absl, like --checkpoint (see sslsr.upscale.load_upscaler).
    if not FLAGS.out:
        raise UserError("--out: the output folder is required")
    from sslsr import evaluate
    from sslsr.data.datasets import check_output_dir
    from sslsr.evaluate.datasets import dataset_source
    from sslsr.evaluate.scoring import METRICS

    # Cheap checks before the model is loaded and compiled.
    unknown = [m for m in FLAGS.metrics if m not in METRICS]
    if unknown:
        raise UserError(f"--metrics: unknown {', '.join(map(repr, unknown))}; choose from {', '.join(METRICS)}")
    for name in FLAGS.datasets:
        source = dataset_source(name, FLAGS.data_root)
        if source.root != "demo":  # never write the SR images into a dataset
            for inputs in (source.root / "HR", source.root / "LR_bicubic"):
                check_output_dir(inputs, FLAGS.out, "reports and SR images")

    from sslsr.evaluate import figures

    others = [figures.load_run(f) for f in FLAGS.compare_with]
    upscaler = upscale.load_upscaler()
    results = evaluate.evaluate(
        upscaler,
        FLAGS.datasets,
        out_dir=FLAGS.out,
        data_root=FLAGS.data_root,
        metrics=FLAGS.metrics,
        tile=upscale.TILE.value or None,
        tile_overlap=upscale.TILE_OVERLAP.value,
        self_ensemble=upscale.SELF_ENSEMBLE.value,
        hr_mod=FLAGS.hr_mod,
        save_images=FLAGS.save_images,
        num_comparisons=FLAGS.num_comparisons,
        model_name=FLAGS.name or pathlib.Path(upscale.CHECKPOINT.value).stem,
        compare_with=FLAGS.compare_with,
    )
    if others:
        print(figures.markdown_table([*others, figures.Run(pathlib.Path(FLAGS.out), results)]))
    else:
        print(evaluate.results_table(results))
    print(f"Reports written to {FLAGS.out}")


if __name__ == "__main__":
    run(main)
