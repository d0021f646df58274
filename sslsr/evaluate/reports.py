"""The reports of an evaluation: results.md (paper-style table), results.csv, results.json.

All three are written from the same per-image `Row`s and the summary `summarize` builds from them.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import pathlib
from collections.abc import Iterable

import numpy as np

from sslsr.files import atomic_path, write_text

HEADERS = {"psnr": "PSNR↑", "ssim": "SSIM↑", "lpips": "LPIPS↓", "dists": "DISTS↓"}
_FORMATS = {"psnr": "{:.2f}", "ssim": "{:.4f}", "lpips": "{:.4f}", "dists": "{:.4f}"}


@dataclasses.dataclass
class Row:
    """One method's scores on one image; `seconds` is the SR time (None for bicubic)."""

    dataset: str
    image: str
    method: str
    values: dict[str, float]
    seconds: float | None = None


def _mean(values: Iterable[float]) -> float:
    values = list(values)
    return float(np.mean(values)) if values else math.nan


def summarize(rows: list[Row], config: dict, skipped: dict[str, str]) -> dict:
    """The content of results.json: config, skipped metrics, means per dataset/method, per image.

    Args:
      config: needs 'datasets', 'model' (the method's name) and 'metrics'.
    """
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


def format_value(metric: str, value: float) -> str:
    return "inf" if math.isinf(value) else ("–" if math.isnan(value) else _FORMATS[metric].format(value))


def results_table(results: dict) -> str:
    """Markdown table: one row per method (bicubic first), columns dataset x metric."""
    cfg = results["config"]
    datasets, metrics = cfg["datasets"], cfg["metrics"]
    header = ["Method"] + [f"{ds} {HEADERS[m]}" for ds in datasets for m in metrics]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method in ("Bicubic", cfg["model"]):
        cells = [method] + [format_value(m, results["means"][ds][method][m]) for ds in datasets for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_markdown(path: pathlib.Path, results: dict) -> None:
    """results.md: the protocol's options in one line, the table, image counts, skipped metrics."""
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
    write_text(path, "\n".join(md) + "\n")


def write_csv(path: pathlib.Path, rows: list[Row], metrics: list[str]) -> None:
    """results.csv: one line per (dataset, image, method), full-precision values."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["dataset", "image", "method", *metrics, "seconds"])
        for r in rows:
            vals = [repr(r.values[m]) for m in metrics]
            w.writerow([r.dataset, r.image, r.method, *vals, "" if r.seconds is None else f"{r.seconds:.4f}"])


def write_json(path: pathlib.Path, results: dict) -> None:
    """results.json: `results` with inf/nan written as strings."""
    write_text(path, json.dumps(_json_safe(results), indent=2, allow_nan=False) + "\n")


def write_reports(out_dir: pathlib.Path, rows: list[Row], results: dict) -> None:
    """results.md, results.csv and results.json in `out_dir`."""
    write_markdown(out_dir / "results.md", results)
    write_csv(out_dir / "results.csv", rows, results["config"]["metrics"])
    write_json(out_dir / "results.json", results)
