"""Evaluate an SR generator on benchmark datasets (PSNR/SSIM on Y, LPIPS, DISTS) and write reports.

  python eval.py --checkpoint workdirs/esrgan_ssl --datasets Set5,Set14,Urban100 \
      --data_root ../shared/data --out workdirs/esrgan_ssl/eval
  python eval.py --checkpoint RealESRGAN_x4plus.pth --arch RRDBNet --arch_kwargs num_block=23 \
      --datasets Set5 --data_root ../shared/data --scale 4 --out /tmp/eval --tile 128

Writes results.md (paper-style table with a bicubic row), results.csv, results.json, the SR images
and comparisons/ crops into --out. See `sslsr.evaluate`.
"""

from __future__ import annotations

import ast

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("checkpoint", None, "Training workdir, or a .pth/.safetensors weights file (needs --arch).")
flags.DEFINE_string("arch", None, "Architecture of a weights file: RRDBNet, MSRResNet or SwinIR.")
flags.DEFINE_list("arch_kwargs", [], "Constructor arguments for --arch, e.g. num_block=23,num_feat=64.")
flags.DEFINE_list("datasets", ["Set5", "Set14", "Urban100"], "Dataset folders under --data_root, or 'demo'.")
flags.DEFINE_string("data_root", None, "Folder holding the datasets (BasicSR layout <name>/HR, <name>/LR_bicubic/X<s>).")
flags.DEFINE_integer("scale", None, "SR factor (default: the model's own scale).")
flags.DEFINE_string("out", None, "Output folder.")
flags.DEFINE_list("metrics", ["psnr", "ssim", "lpips", "dists"], "Metrics to compute.")
flags.DEFINE_integer("tile", 0, "LR tile size for tiled inference (0: whole images).")
flags.DEFINE_integer("tile_overlap", 32, "LR pixels shared by neighbouring tiles.")
flags.DEFINE_bool("self_ensemble", False, "Average over the 8 flips/transposes (x8 self-ensemble).")
flags.DEFINE_bool("bf16", False, "Run the model in bfloat16 (metrics stay float64/float32).")
flags.DEFINE_integer("hr_mod", None, "Mod-crop of HR when LR is made from HR (default: scale).")
flags.DEFINE_bool("save_images", True, "Write the SR images.")
flags.DEFINE_integer("num_comparisons", 2, "Comparison crops per dataset for the largest gains (and losses).")
flags.DEFINE_string("name", None, "Method name in the tables (default: the checkpoint's name).")
flags.mark_flags_as_required(["checkpoint", "out"])


def parse_kwargs(items: list[str]) -> dict:
    """['num_block=23', 'upsampler=pixelshuffle'] -> {'num_block': 23, 'upsampler': 'pixelshuffle'}."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise app.UsageError(f"--arch_kwargs: expected key=value, got {item!r}")
        try:
            out[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            out[key.strip()] = value.strip()
    return out


def main(argv):
    del argv
    import pathlib

    from sslsr import evaluate

    model = evaluate.load_model(FLAGS.checkpoint, arch=FLAGS.arch, **parse_kwargs(FLAGS.arch_kwargs))
    scale = FLAGS.scale or evaluate.model_scale(model)
    if scale is None:
        raise app.UsageError("--scale: the model does not declare its scale; pass --scale")
    declared = evaluate.model_scale(model)
    if declared is not None and declared != scale:
        raise app.UsageError(f"--scale {scale} but the model upscales x{declared}")
    results = evaluate.evaluate(
        model,
        FLAGS.datasets,
        scale=scale,
        out_dir=FLAGS.out,
        data_root=FLAGS.data_root,
        metrics=FLAGS.metrics,
        tile=FLAGS.tile or None,
        tile_overlap=FLAGS.tile_overlap,
        self_ensemble=FLAGS.self_ensemble,
        bf16=FLAGS.bf16,
        hr_mod=FLAGS.hr_mod,
        save_images=FLAGS.save_images,
        num_comparisons=FLAGS.num_comparisons,
        model_name=FLAGS.name or pathlib.Path(FLAGS.checkpoint).stem,
    )
    print(evaluate.results_table(results))
    print(f"Reports written to {FLAGS.out}")


if __name__ == "__main__":
    app.run(main)
