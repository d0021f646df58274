"""The evaluation protocol of SR papers (BasicSR), image by image.

For every LR image the model's output is rounded to uint8 and compared to the (mod-cropped) HR with
PSNR/SSIM on Y (border = scale), LPIPS-Alex and DISTS (border = scale, float32 networks); the
MATLAB-bicubic upsampling of the same LR is scored as a baseline row. The model runs through
`sslsr.inference` (tiling, self-ensemble, dtype); the reports are written by
`sslsr.evaluate.reports`, the comparison crops chosen by `sslsr.evaluate.comparisons`.
"""

from __future__ import annotations

import os
import pathlib
import time
from collections.abc import Callable, Sequence

import numpy as np
from flax import nnx

from sslsr.errors import InputError
from sslsr.evaluate import comparisons, figures, reports
from sslsr.evaluate.datasets import dataset_source
from sslsr.evaluate.scoring import METRICS, build_metrics
from sslsr.inference import Forward, ForwardUpscaler, NetworkUpscaler, Upscaler, super_resolve, to_uint8


def _upscaler(model: nnx.Module | Upscaler | Forward, scale: int | None, dtype: str) -> Upscaler:
    if isinstance(model, nnx.Module):
        return NetworkUpscaler(model, scale=scale, dtype=dtype)
    if dtype != "float32":
        raise ValueError(f"evaluate: dtype={dtype!r} needs an nnx.Module model (an upscaler sets its own dtype)")
    if hasattr(model, "prepare"):
        if scale is not None and scale != model.scale:
            raise InputError(f"evaluate: scale {scale} but the upscaler upscales x{model.scale}")
        return model
    if scale is None:
        raise ValueError("evaluate: a forward function needs scale")
    return ForwardUpscaler(model, scale)


def evaluate(
    model: nnx.Module | Upscaler | Forward,
    datasets: Sequence[str],
    *,
    out_dir: str | os.PathLike,
    scale: int | None = None,
    data_root: str | os.PathLike | None = None,
    metrics: Sequence[str] = METRICS,
    tile: int | None = None,
    tile_overlap: int = 32,
    self_ensemble: bool = False,
    dtype: str = "float32",
    hr_mod: int | None = None,
    save_images: bool = True,
    num_comparisons: int = 2,
    comparison_crop: int = 128,
    model_name: str = "SR",
    compare_with: Sequence[str | os.PathLike] = (),
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict:
    """Runs the evaluation protocol and writes the reports.

    Outputs under `out_dir`:
      results.md     table like the paper's Table 1 (methods x datasets/metrics), means per dataset
      results.csv    one row per (dataset, image, method)
      results.json   config, means and per-image values (SR seconds per image include the XLA
                     compilation whenever an image has a new shape)
      <dataset>/<image>.png            the SR images
      figures/<dataset>_<image>.png   labelled nearest-neighbour crops (Bicubic, the models of
                     compare_with, this model, HR) of the same images, see `figures`
      report.html    the table of every method, the figures and the full-size SR images
      comparisons/<dataset>_<image>_{gain,loss}.png   bicubic | SR | HR crops for the images where
                     the model gains / loses most against bicubic

    Args:
      model: NNX SR network (NHWC [0, 1] -> x`scale`), an `Upscaler`, or a `Forward` function.
      datasets: names: 'demo' (built-in photos), or folders `<data_root>/<name>` in the BasicSR
        layout (HR/ and optionally LR_bicubic/X<scale>/; without LR, LR = MATLAB bicubic of HR).
      out_dir: where results.md/.csv/.json, SR images and comparisons/ go.
      scale: SR factor, also the border cropped for every metric; default the model's own (a
        `Forward` function needs it; given for a model or upscaler, it must match its scale).
      data_root: parent folder of the datasets.
      metrics: subset of ('psnr', 'ssim', 'lpips', 'dists'); those that cannot run are skipped with
        one line (and noted in the reports), never reported as 0.
      tile, tile_overlap, self_ensemble: see `sslsr.inference.super_resolve`.
      dtype: 'float32' | 'bfloat16' for an nnx.Module model (metrics stay float64/float32).
      hr_mod: mod-crop for HR-only datasets (default scale).
      save_images: write the SR PNGs.
      num_comparisons: images per dataset with the largest gains (and as many with the largest losses).
      comparison_crop: HR-pixel side of the comparison crops.
      model_name: the method's row label.
      compare_with: output folders of earlier evaluations (other models, same datasets) shown
        beside this one in report.html and the figures.
    Returns:
      The content of results.json.
    """
    from tqdm import tqdm

    from sslsr.data.datasets import iterate_eval_pairs
    from sslsr.data.imresize import imresize
    from sslsr.data.io import write_png

    upscaler = _upscaler(model, scale, dtype)
    scale = upscaler.scale
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sources = [dataset_source(d, data_root) for d in datasets]  # fail fast on a missing dataset
    fns, skipped = build_metrics(metrics, crop_border=scale, log=log)
    primary = "lpips" if "lpips" in fns else next(iter(fns), None)
    compare = bool(num_comparisons) and primary is not None
    others = [figures.load_run(f) for f in compare_with]  # fail fast on a wrong folder
    shown: list[tuple[str, str, np.ndarray, np.ndarray, np.ndarray]] = []

    rows: list[reports.Row] = []
    for source in sources:
        ds_rows: list[reports.Row] = []
        advantages: list[tuple[float, str]] = []
        keep: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        pairs = iterate_eval_pairs(source.root, scale=scale, hr_mod=hr_mod)
        for name, lr, hr in tqdm(pairs, desc=source.name, total=source.count, disable=not progress, unit="img"):
            t0 = time.perf_counter()
            sr = super_resolve(upscaler, lr, tile=tile, tile_overlap=tile_overlap, self_ensemble=self_ensemble)
            sr = to_uint8(sr)
            seconds = time.perf_counter() - t0
            bic = imresize(lr, scale)
            try:
                scores = {m: f(hr, [sr, bic]) for m, f in fns.items()}
            except ValueError as e:  # e.g. an image smaller than the metrics' border: name it
                raise InputError(f"{source.name}/{name}: {e}") from None
            row_sr = reports.Row(source.name, name, model_name, {m: float(v[0]) for m, v in scores.items()}, seconds)
            row_bic = reports.Row(source.name, name, "Bicubic", {m: float(v[1]) for m, v in scores.items()})
            ds_rows += [row_bic, row_sr]
            if save_images:
                write_png(out_dir / source.name / f"{name}.png", sr)
            if compare:
                gain = comparisons.advantage(primary, row_sr.values[primary], row_bic.values[primary])
                advantages.append((gain, name))
                # Keep only the images that can still make the comparison lists (bounded memory).
                keep[name] = (bic, sr, hr)
                wanted = {img for img, _ in comparisons.extremes(advantages, num_comparisons)}
                keep = {k: v for k, v in keep.items() if k in wanted}
        if compare:
            for name, tag in comparisons.extremes(advantages, num_comparisons):
                bic, sr, hr = keep[name]
                strip = comparisons.comparison_strip(bic, sr, hr, crop=comparison_crop, gain=tag == "gain")
                write_png(out_dir / "comparisons" / f"{source.name}_{name}_{tag}.png", strip)
                shown.append((source.name, name, bic, sr, hr))
        rows += ds_rows

    config = dict(
        model=model_name, scale=scale, datasets=[s.name for s in sources], metrics=list(fns), tile=tile,
        tile_overlap=tile_overlap if tile else None, self_ensemble=self_ensemble,
        bf16=getattr(upscaler, "dtype", "float32") == "bfloat16", crop_border=scale, y_channel=True,
    )
    if "lpips" in fns:
        config["lpips"] = "AlexNet v0.1, images mapped to [-1, 1]"
    results = reports.summarize(rows, config, skipped)
    reports.write_reports(out_dir, rows, results)
    figures.write_report(out_dir, results, shown, others)
    return results
