"""Evaluation protocol: super-resolve benchmark datasets, score them, write reports.

`evaluate(model, datasets, ...)` runs the protocol of SR papers (BasicSR): for every LR image the
model's output is rounded to uint8 and compared to the (mod-cropped) HR with PSNR/SSIM on Y
(border = scale), LPIPS-Alex and DISTS (border = scale, float32 networks); the MATLAB-bicubic
upsampling of the same LR is scored as a baseline row. Outputs under `out_dir`:

  results.md     table like the paper's Table 1 (methods x datasets/metrics), means per dataset
  results.csv    one row per (dataset, image, method)
  results.json   config, means and per-image values (SR seconds per image include the XLA
                 compilation whenever an image has a new shape)
  <dataset>/<image>.png            the SR images
  comparisons/<dataset>_<image>_{gain,loss}.png   bicubic | SR | HR crops for the images where the
                 model gains / loses most against bicubic

Inference (`make_forward`, `super_resolve`): the model runs jitted on NHWC float32 [0, 1] (bf16
optional), optionally tile by tile and/or with the x8 self-ensemble; metrics stay float64/float32.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import pathlib
import time
from collections.abc import Callable, Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

Forward = Callable[[np.ndarray], np.ndarray]

# ----------------------------------------------------------------------------- inference


def make_forward(model: nnx.Module, *, bf16: bool = False) -> Forward:
    """A jitted NumPy-in/NumPy-out forward pass of an SR network (eval mode).

    Args:
      model: NNX SR network mapping NHWC float32 [0, 1] (N, h, w, 3) to (N, h*s, w*s, 3).
      bf16: run the network with bfloat16 parameters and activations (output returned as float32).
    Returns:
      fn(x: float32 (N, h, w, 3)) -> float32 (N, h*s, w*s, 3), unclipped. Compiles once per shape.
    """
    model.eval()
    graphdef, state = nnx.split(model)
    if bf16:
        state = jax.tree.map(
            lambda a: a.astype(jnp.bfloat16) if jnp.issubdtype(a.dtype, jnp.floating) else a, state
        )
    compute_dtype = jnp.bfloat16 if bf16 else jnp.float32

    @jax.jit
    def fwd(state, x):
        y = nnx.merge(graphdef, state)(x.astype(compute_dtype))
        return y.astype(jnp.float32)

    return lambda x: np.asarray(fwd(state, jnp.asarray(x, jnp.float32)))


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of length `tile` covering [0, size) with at least `overlap` shared.

    The last tile is shifted to end exactly at `size`, so every tile has the same shape (one
    compilation) and no padding changes the network's border behaviour.
    """
    if tile >= size:
        return [0]
    if not 0 <= overlap < tile:
        raise ValueError(f"tile_overlap must be in [0, tile), got overlap={overlap}, tile={tile}")
    stride = tile - overlap
    starts = list(range(0, size - tile, stride))
    return starts + [size - tile]


def _owned(starts: list[int], tile: int, size: int) -> list[tuple[int, int]]:
    """The part of [0, size) each tile writes: split every overlap at its midpoint.

    A pixel is then taken from a tile where it lies at least floor(overlap / 2) pixels from any tile
    edge that is not an image edge, so a network whose receptive-field radius is at most that
    gives exactly its untiled output.
    """
    bounds = [0]
    for a, b in zip(starts[:-1], starts[1:]):
        end_a = min(a + tile, size)
        bounds.append((b + end_a) // 2)
    bounds.append(size)
    return list(zip(bounds[:-1], bounds[1:]))


def _tiled(forward: Forward, lr: np.ndarray, scale: int, tile: int, overlap: int) -> np.ndarray:
    h, w = lr.shape[:2]
    ys, xs = tile_starts(h, tile, overlap), tile_starts(w, tile, overlap)
    th, tw = min(tile, h), min(tile, w)
    out = np.empty((h * scale, w * scale, lr.shape[2]), np.float32)
    for y0, (oy0, oy1) in zip(ys, _owned(ys, th, h)):
        for x0, (ox0, ox1) in zip(xs, _owned(xs, tw, w)):
            sr = forward(lr[None, y0 : y0 + th, x0 : x0 + tw])[0]
            _check_scale(sr, (th, tw), scale)
            out[oy0 * scale : oy1 * scale, ox0 * scale : ox1 * scale] = sr[
                (oy0 - y0) * scale : (oy1 - y0) * scale, (ox0 - x0) * scale : (ox1 - x0) * scale
            ]
    return out


def _check_scale(sr: np.ndarray, lr_hw: tuple[int, int], scale: int) -> None:
    if sr.shape[:2] != (lr_hw[0] * scale, lr_hw[1] * scale):
        raise ValueError(
            f"the model maps {lr_hw} to {sr.shape[:2]}, not x{scale}: check --scale / the architecture's scale"
        )


def super_resolve(
    forward: Forward,
    lr: np.ndarray,
    *,
    scale: int,
    tile: int | None = None,
    tile_overlap: int = 32,
    self_ensemble: bool = False,
) -> np.ndarray:
    """Super-resolves one image.

    Args:
      forward: from `make_forward`.
      lr: uint8 (h, w, 3) RGB (or float32 in [0, 1]).
      scale: the network's upscaling factor.
      tile: LR tile size for images too large to run at once (None: whole image).
      tile_overlap: LR pixels shared by neighbouring tiles; the output is exact when the network's
        receptive-field radius (in LR pixels) is at most tile_overlap // 2.
      self_ensemble: average the outputs over the 8 flips/transposes (x8 self-ensemble).
    Returns:
      float32 (h*scale, w*scale, 3), clipped to [0, 1].
    """
    x = np.asarray(lr)
    if x.ndim != 3 or x.shape[-1] != 3:
        raise ValueError(f"super_resolve expects an RGB (h, w, 3) image, got shape {x.shape}")
    x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)

    def run(img):
        if tile is None:
            sr = forward(img[None])[0]
            _check_scale(sr, img.shape[:2], scale)
            return sr
        return _tiled(forward, img, scale, tile, tile_overlap)

    if not self_ensemble:
        return np.clip(run(x), 0.0, 1.0)
    acc = np.zeros((x.shape[0] * scale, x.shape[1] * scale, 3), np.float32)
    for transpose in (False, True):
        for flip_h in (False, True):
            for flip_w in (False, True):
                acc += _dihedral(run(_dihedral(x, transpose, flip_h, flip_w)), transpose, flip_h, flip_w, inverse=True)
    return np.clip(acc / 8.0, 0.0, 1.0)


def _dihedral(img, transpose, flip_h, flip_w, inverse=False):
    if not inverse and transpose:
        img = img.transpose(1, 0, 2)
    if flip_h:
        img = img[::-1]
    if flip_w:
        img = img[:, ::-1]
    if inverse and transpose:
        img = img.transpose(1, 0, 2)
    return np.ascontiguousarray(img)


def to_uint8(img: np.ndarray) -> np.ndarray:
    """[0, 1] float -> uint8, rounded like BasicSR's `tensor2img` (clip, *255, round)."""
    return np.round(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)


# ----------------------------------------------------------------------------- models


def load_model(checkpoint: str | os.PathLike, *, arch: str | None = None, **arch_kwargs) -> nnx.Module:
    """An SR generator from a training workdir or a PyTorch/safetensors weights file.

    Args:
      checkpoint: a training workdir (the EMA generator is restored with its saved config) or a
        `.pth` / `.safetensors` file of BasicSR/official weights.
      arch: architecture of a weights file ('RRDBNet', 'MSRResNet', 'SwinIR'); ignored for workdirs.
      **arch_kwargs: constructor arguments for `arch` (e.g. num_block=23, scale=4).
    """
    path = pathlib.Path(checkpoint)
    if path.is_dir():
        from sslsr.train import restore_generator

        return restore_generator(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint (expected a training workdir, .pth or .safetensors)")
    if path.suffix not in (".pth", ".pt", ".safetensors"):
        raise ValueError(f"{path}: unsupported checkpoint type {path.suffix!r} (expected a workdir, .pth or .safetensors)")
    if arch is None:
        raise ValueError(f"{path}: a weights file needs --arch (RRDBNet, MSRResNet or SwinIR)")
    from sslsr.convert import from_torch

    return from_torch(str(path), arch, **arch_kwargs)


def model_scale(model) -> int | None:
    """The upscaling factor a model declares (RRDBNet.scale, MSRResNet/SwinIR.upscale), else None."""
    for attr in ("scale", "upscale"):
        value = getattr(model, attr, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


# ----------------------------------------------------------------------------- metrics

METRICS = ("psnr", "ssim", "lpips", "dists")
LOWER_IS_BETTER = {"psnr": False, "ssim": False, "lpips": True, "dists": True}
_HEADERS = {"psnr": "PSNR↑", "ssim": "SSIM↑", "lpips": "LPIPS↓", "dists": "DISTS↓"}
_FORMATS = {"psnr": "{:.2f}", "ssim": "{:.4f}", "lpips": "{:.4f}", "dists": "{:.4f}"}

# fn(hr, [candidate, ...]) -> [score of each candidate against hr]; all uint8 (H, W, 3).
MetricFn = Callable[[np.ndarray, Sequence[np.ndarray]], list[float]]


def _pairwise_metric(fn: Callable[[np.ndarray, np.ndarray], float]) -> MetricFn:
    return lambda hr, images: [fn(img, hr) for img in images]


def _network_metric(module: nnx.Module, crop_border: int) -> MetricFn:
    """A jitted metric network (`features` + `distance`, NHWC [0, 1]) as a MetricFn.

    The reference's features are computed once for all candidates (SR and bicubic).
    """
    graphdef, state = nnx.split(module)

    @jax.jit
    def dist(state, ref, images):
        m = nnx.merge(graphdef, state)
        return m.distance(m.features(images), m.features(ref))

    def fn(hr, images):
        c = crop_border
        crop = (lambda a: a[c:-c, c:-c]) if c else (lambda a: a)
        ref = crop(hr)[None].astype(np.float32) / 255.0
        batch = np.stack([crop(img) for img in images]).astype(np.float32) / 255.0
        return [float(v) for v in np.asarray(dist(state, ref, batch))]

    return fn


def build_metrics(names: Sequence[str], *, crop_border: int, log: Callable[[str], None] = print):
    """Metric functions on uint8 RGB (sr, hr) pairs, and the reasons for those that cannot run.

    PSNR/SSIM: Y channel, BasicSR protocol. LPIPS: AlexNet v0.1 (the paper's protocol), images
    mapped to [-1, 1]. DISTS: VGG16 with L2 pooling, images in [0, 1], full resolution (no resize
    to 256 as DISTS_pytorch's demo script does). All with `crop_border` removed.
    Returns:
      ({name: fn(hr, [image, ...]) -> [float, ...]}, {name: one-line reason it was skipped}).
    """
    from sslsr import metrics

    fns: dict[str, MetricFn] = {}
    skipped: dict[str, str] = {}
    for name in names:
        if name == "psnr":
            fns[name] = _pairwise_metric(lambda sr, hr: metrics.psnr(sr, hr, crop_border=crop_border))
        elif name == "ssim":
            fns[name] = _pairwise_metric(lambda sr, hr: metrics.ssim(sr, hr, crop_border=crop_border))
        elif name == "lpips":
            try:
                fns[name] = _network_metric(metrics.LPIPS(net="alex", input_range="[0,1]"), crop_border)
            except (OSError, ImportError, ValueError) as e:
                skipped[name] = f"LPIPS skipped: {e}"
        elif name == "dists":
            try:
                fns[name] = _network_metric(metrics.load_dists(), crop_border)
            except metrics.MetricUnavailable as e:
                skipped[name] = f"DISTS skipped: {e}"
        else:
            raise ValueError(f"unknown metric {name!r}; choose from {', '.join(METRICS)}")
    for line in skipped.values():
        log(line)
    return fns, skipped


# ----------------------------------------------------------------------------- datasets


def _dataset_source(name: str, data_root: str | os.PathLike | None) -> tuple[str, str | pathlib.Path, int | None]:
    """(display name, root for iterate_eval_pairs, number of images or None)."""
    if name == "demo":
        from sslsr.data.builtin import VAL_NAMES

        return "demo", "demo", len(VAL_NAMES)
    root = pathlib.Path(data_root) / name if data_root is not None else pathlib.Path(name)
    if not (root / "HR").is_dir():
        where = f"under --data_root {data_root}" if data_root is not None else "(give --data_root)"
        raise FileNotFoundError(f"dataset {name!r}: {root}/HR not found {where}")
    from sslsr.data.io import IMAGE_EXTENSIONS

    count = sum(1 for p in (root / "HR").iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    return root.name, root, count


# ----------------------------------------------------------------------------- comparisons


def _box_sums(a: np.ndarray, size: int) -> np.ndarray:
    """Sums of `a` over every size x size window ('valid'), via an integral image."""
    s = np.pad(np.cumsum(np.cumsum(a, 0), 1), ((1, 0), (1, 0)))
    return s[size:, size:] - s[:-size, size:] - s[size:, :-size] + s[:-size, :-size]


def comparison_strip(bicubic: np.ndarray, sr: np.ndarray, hr: np.ndarray, *, crop: int, gain: bool) -> np.ndarray:
    """bicubic | SR | HR crops (uint8) at the window where SR beats (gain) or trails bicubic most.

    The window is chosen by the local difference of absolute errors on the luma.
    """
    from sslsr.metrics import rgb_to_y

    y_hr = rgb_to_y(hr)
    adv = np.abs(rgb_to_y(bicubic) - y_hr) - np.abs(rgb_to_y(sr) - y_hr)
    crop = min(crop, *hr.shape[:2])
    sums = _box_sums(adv if gain else -adv, crop)
    i, j = np.unravel_index(np.argmax(sums), sums.shape)
    gap = np.full((crop, 4, 3), 255, np.uint8)
    parts = [bicubic, sr, hr]
    row = []
    for k, img in enumerate(parts):
        row.append(img[i : i + crop, j : j + crop])
        if k < len(parts) - 1:
            row.append(gap)
    return np.concatenate(row, axis=1)


def _save_png(path: pathlib.Path, img: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)


# ----------------------------------------------------------------------------- protocol


@dataclasses.dataclass
class _Row:
    dataset: str
    image: str
    method: str
    values: dict[str, float]
    seconds: float | None = None


def evaluate(
    model: nnx.Module | Forward,
    datasets: Sequence[str],
    *,
    scale: int,
    out_dir: str | os.PathLike,
    data_root: str | os.PathLike | None = None,
    metrics: Sequence[str] = METRICS,
    tile: int | None = None,
    tile_overlap: int = 32,
    self_ensemble: bool = False,
    bf16: bool = False,
    hr_mod: int | None = None,
    save_images: bool = True,
    num_comparisons: int = 2,
    comparison_crop: int = 128,
    model_name: str = "SR",
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict:
    """Runs the evaluation protocol and writes the reports (see the module docstring).

    Args:
      model: NNX SR network (NHWC [0, 1] -> x`scale`) or a `make_forward`-style callable.
      datasets: names: 'demo' (built-in photos), or folders `<data_root>/<name>` in the BasicSR
        layout (HR/ and optionally LR_bicubic/X<scale>/; without LR, LR = MATLAB bicubic of HR).
      scale: SR factor; also the border cropped for every metric.
      out_dir: where results.md/.csv/.json, SR images and comparisons/ go.
      data_root: parent folder of the datasets.
      metrics: subset of ('psnr', 'ssim', 'lpips', 'dists'); those that cannot run are skipped with
        one line (and noted in the reports), never reported as 0.
      tile, tile_overlap, self_ensemble: see `super_resolve`.
      bf16: run the model in bfloat16 (metrics are unaffected: float64/float32).
      hr_mod: mod-crop for HR-only datasets (default scale).
      save_images: write the SR PNGs.
      num_comparisons: images per dataset with the largest gains (and as many with the largest losses).
      comparison_crop: HR-pixel side of the comparison crops.
      model_name: the method's row label.
    Returns:
      The content of results.json.
    """
    from tqdm import tqdm

    from sslsr.data.datasets import iterate_eval_pairs
    from sslsr.data.degradations import imresize

    if bf16 and not isinstance(model, nnx.Module):
        raise ValueError("evaluate: bf16=True needs an nnx.Module model (a forward callable sets its own dtype)")
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    forward = make_forward(model, bf16=bf16) if isinstance(model, nnx.Module) else model
    sources = [_dataset_source(d, data_root) for d in datasets]  # fail fast on a missing dataset
    fns, skipped = build_metrics(metrics, crop_border=scale, log=log)
    primary = "lpips" if "lpips" in fns else next(iter(fns), None)

    rows: list[_Row] = []
    for ds_name, root, count in sources:
        ds_rows: list[tuple[_Row, _Row]] = []
        keep: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        pairs = iterate_eval_pairs(root, scale=scale, hr_mod=hr_mod)
        for name, lr, hr in tqdm(pairs, desc=ds_name, total=count, disable=not progress, unit="img"):
            t0 = time.perf_counter()
            sr = to_uint8(
                super_resolve(forward, lr, scale=scale, tile=tile, tile_overlap=tile_overlap, self_ensemble=self_ensemble)
            )
            seconds = time.perf_counter() - t0
            bic = imresize(lr, scale)
            scores = {m: f(hr, [sr, bic]) for m, f in fns.items()}
            row_sr = _Row(ds_name, name, model_name, {m: float(v[0]) for m, v in scores.items()}, seconds)
            row_bic = _Row(ds_name, name, "Bicubic", {m: float(v[1]) for m, v in scores.items()})
            ds_rows.append((row_bic, row_sr))
            if save_images:
                _save_png(out_dir / ds_name / f"{name}.png", sr)
            if num_comparisons and primary is not None:
                # Keep only the images that can still make the comparison lists (bounded memory).
                keep[name] = (bic, sr, hr)
                keep = _prune(keep, ds_rows, primary, num_comparisons)
        if num_comparisons and primary is not None:
            for name, tag in _extremes(ds_rows, primary, num_comparisons):
                bic, sr, hr = keep[name]
                strip = comparison_strip(bic, sr, hr, crop=comparison_crop, gain=tag == "gain")
                _save_png(out_dir / "comparisons" / f"{ds_name}_{name}_{tag}.png", strip)
        for pair in ds_rows:
            rows.extend(pair)

    config = dict(
        model=model_name, scale=scale, datasets=[s[0] for s in sources], metrics=list(fns), tile=tile,
        tile_overlap=tile_overlap if tile else None, self_ensemble=self_ensemble, bf16=bf16,
        crop_border=scale, y_channel=True,
    )
    if "lpips" in fns:
        config["lpips"] = "AlexNet v0.1, images mapped to [-1, 1]"
    results = _summarize(rows, config, skipped)
    _write_reports(out_dir, rows, results)
    return results


def _gains(ds_rows, metric):
    sign = -1.0 if LOWER_IS_BETTER[metric] else 1.0
    out = []
    for bic, sr in ds_rows:
        a, b = sr.values[metric], bic.values[metric]
        gain = sign * (a - b) if math.isfinite(a) and math.isfinite(b) else (math.inf if math.isinf(a) else 0.0)
        out.append((gain, sr.image))
    return out


def _extremes(ds_rows, metric, n) -> list[tuple[str, str]]:
    """[(image, 'gain'|'loss')]: the n largest gains, then the n smallest (disjoint)."""
    ranked = sorted(_gains(ds_rows, metric), reverse=True)
    best = ranked[:n]
    worst = [r for r in ranked[::-1][:n] if r not in best]
    return [(img, "gain") for _, img in best] + [(img, "loss") for _, img in worst]


def _prune(keep, ds_rows, metric, n):
    wanted = {img for img, _ in _extremes(ds_rows, metric, n)}
    return {k: v for k, v in keep.items() if k in wanted}


def _mean(values: Iterable[float]) -> float:
    values = list(values)
    return float(np.mean(values)) if values else math.nan


def _summarize(rows: list[_Row], config: dict, skipped: dict[str, str]) -> dict:
    means: dict[str, dict[str, dict[str, float]]] = {}
    for ds in config["datasets"]:
        means[ds] = {}
        for method in ("Bicubic", config["model"]):
            sel = [r for r in rows if r.dataset == ds and r.method == method]
            means[ds][method] = {m: _mean(r.values[m] for r in sel) for m in config["metrics"]}
            means[ds][method]["images"] = len(sel)
            if method != "Bicubic":
                means[ds][method]["seconds_per_image"] = _mean(r.seconds for r in sel)
    return dict(
        config=config,
        skipped=skipped,
        means=means,
        per_image=[dict(dataset=r.dataset, image=r.image, method=r.method, **r.values) for r in rows],
    )


def _json_safe(x):
    # JSON has no inf/nan: identical images give PSNR inf, empty datasets nan.
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_json_safe(v) for v in x]
    return x


def _fmt(metric: str, value: float) -> str:
    return "inf" if math.isinf(value) else ("–" if math.isnan(value) else _FORMATS[metric].format(value))


def results_table(results: dict) -> str:
    """Markdown table: one row per method (bicubic first), columns dataset x metric."""
    cfg = results["config"]
    datasets, metrics = cfg["datasets"], cfg["metrics"]
    header = ["Method"] + [f"{ds} {_HEADERS[m]}" for ds in datasets for m in metrics]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method in ("Bicubic", cfg["model"]):
        cells = [method] + [_fmt(m, results["means"][ds][method][m]) for ds in datasets for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _write_reports(out_dir: pathlib.Path, rows: list[_Row], results: dict) -> None:
    cfg = results["config"]
    options = [f"x{cfg['scale']}", f"border {cfg['crop_border']} px cropped", "PSNR/SSIM on Y (BT.601)"]
    if "lpips" in cfg["metrics"]:
        options.append("LPIPS AlexNet v0.1")
    if cfg["tile"]:
        options.append(f"tiled {cfg['tile']} (overlap {cfg['tile_overlap']})")
    if cfg["self_ensemble"]:
        options.append("self-ensemble x8")
    if cfg["bf16"]:
        options.append("bf16 model")
    md = [f"# Evaluation of {cfg['model']}", "", "; ".join(options) + ".", "", results_table(results), ""]
    counts = ", ".join(f"{ds}: {results['means'][ds]['Bicubic']['images']}" for ds in cfg["datasets"])
    md.append(f"Images per dataset: {counts}.")
    for line in results["skipped"].values():
        md.append(f"\n{line}")
    (out_dir / "results.md").write_text("\n".join(md) + "\n")

    with open(out_dir / "results.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["dataset", "image", "method", *cfg["metrics"], "seconds"])
        for r in rows:
            vals = [repr(r.values[m]) for m in cfg["metrics"]]
            w.writerow([r.dataset, r.image, r.method, *vals, "" if r.seconds is None else f"{r.seconds:.4f}"])

    (out_dir / "results.json").write_text(json.dumps(_json_safe(results), indent=2, allow_nan=False) + "\n")
