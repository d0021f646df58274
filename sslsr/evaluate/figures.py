"""Labelled comparison figures and `report.html`: what a person looks at after an evaluation.

For each image picked for comparison, one figure: a row per texture window (the windows of the HR
with the most edge pixels, `sslsr.edges.edge_mask`, the SSL paper's mask), each row an overview of
the HR with the window outlined, then the window in every panel (Bicubic, each evaluated model,
HR) enlarged with nearest-neighbour so the pixels stay visible, a caption under each crop with
the panel's label and its PSNR/LPIPS on the whole image. `report.html` puts the results table of
every method, the figures and the full-size SR images on one page; every path in it is relative,
so the folder opens offline and can be moved as a whole.

Models evaluated in earlier runs join a report through their output folders (`compare_with`):
their results.json gives their scores, their `<dataset>/<image>.png` their SR images.
"""

from __future__ import annotations

import dataclasses
import html
import json
import math
import os
import pathlib
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from sslsr import edges
from sslsr.errors import UserError
# The tables here show the same numbers as results.md, in the same format.
from sslsr.evaluate.reports import HEADERS as TABLE_HEADERS
from sslsr.evaluate.reports import format_value
from sslsr.evaluate.scoring import LOWER_IS_BETTER, METRICS
from sslsr.files import write_text

FIGURE_DIR = "figures"
REPORT_FILE = "report.html"
# The two metrics a caption shows: one fidelity, one perceptual (the paper's pair).
CAPTION_METRICS = (("psnr", "PSNR {:.2f} dB"), ("lpips", "LPIPS {:.3f}"))
_FONT_SIZE = 13
_PAD = 4  # pixels around the caption text and between cells
_OUTLINE = (230, 30, 30)


@dataclasses.dataclass
class Panel:
    """One column of a figure: a whole image the size of the HR, its label and its scores."""

    label: str
    image: np.ndarray  # uint8 (H, W, 3)
    scores: dict[str, float] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Figure:
    image: np.ndarray  # uint8 (height, width, 3)
    labels: list[str]  # the panel labels, in column order
    windows: list[tuple[int, int]]  # (top, left) of each row's crop in HR pixels


@dataclasses.dataclass
class Run:
    """An evaluation output folder: its results.json and where its SR images are."""

    folder: pathlib.Path
    results: dict

    @property
    def method(self) -> str:
        return self.results["config"]["model"]

    def scores(self, dataset: str, image: str, method: str | None = None) -> dict[str, float]:
        method = method or self.method
        for row in self.results["per_image"]:
            if row["dataset"] == dataset and row["image"] == image and row["method"] == method:
                return {k: float(v) for k, v in row.items() if k in METRICS}
        return {}

    def sr_path(self, dataset: str, image: str) -> pathlib.Path:
        return self.folder / dataset / f"{image}.png"


def load_run(folder: str | os.PathLike) -> Run:
    """An earlier evaluation's output folder (results.json + SR images).

    Raises:
      UserError: naming the folder, when it holds no readable results.json.
    """
    folder = pathlib.Path(folder)
    path = folder / "results.json"
    try:
        results = json.loads(path.read_text())
        results["config"]["model"], results["per_image"]  # noqa: B018 - the fields a report reads
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"{folder}: not an evaluation output folder (no readable results.json: {e})") from None
    return Run(folder, results)


def texture_windows(hr: np.ndarray, size: int, count: int) -> list[tuple[int, int]]:
    """(top, left) of up to `count` size x size windows with the most edge pixels, at least one
    window side apart (so that the rows of a figure show different parts of the image).

    Args:
      hr: uint8 (H, W, 3); size: window side, clipped to the image's smaller side.
    Returns:
      The densest window first; every window lies inside the image.
    """
    size = min(size, *hr.shape[:2])
    mask = edges.edge_mask(hr).astype(np.float64)
    integral = np.pad(np.cumsum(np.cumsum(mask, 0), 1), ((1, 0), (1, 0)))
    density = (integral[size:, size:] - integral[:-size, size:] - integral[size:, :-size]
               + integral[:-size, :-size])
    windows = []
    for _ in range(count):
        i, j = np.unravel_index(np.argmax(density), density.shape)
        if density[i, j] < 0:  # every remaining window is too close to a chosen one
            break
        windows.append((int(i), int(j)))
        # Windows whose top-left lies within 2 * size of this one overlap it or touch its neighbour.
        reach = 2 * size
        density[max(0, i - reach + 1): i + reach, max(0, j - reach + 1): j + reach] = -1
    return windows


def caption_text(panel: Panel) -> list[str]:
    """The caption lines of a panel: its label, then its scores (when it has any)."""
    scores = [fmt.format(panel.scores[m]) for m, fmt in CAPTION_METRICS
              if m in panel.scores and math.isfinite(panel.scores[m])]
    return [panel.label] + (["  ".join(scores)] if scores else [])


def _font() -> ImageFont.ImageFont:
    # Pillow's built-in font: nothing to download, the same glyphs on every machine.
    return ImageFont.load_default(size=_FONT_SIZE)


def caption(lines: Sequence[str], width: int) -> np.ndarray:
    """Black text lines on a white strip, uint8 (height, width, 3); text wider than the strip is
    cut at its right edge."""
    font = _font()
    line_h = _FONT_SIZE + 3
    strip = Image.new("RGB", (width, 2 * _PAD + line_h * max(len(lines), 1)), "white")
    draw = ImageDraw.Draw(strip)
    for k, line in enumerate(lines):
        draw.text((_PAD, _PAD + k * line_h), line, fill="black", font=font)
    return np.asarray(strip)


def _enlarge(crop: np.ndarray, zoom: int) -> np.ndarray:
    return np.repeat(np.repeat(crop, zoom, axis=0), zoom, axis=1)


def _overview(hr: np.ndarray, window: tuple[int, int], size: int, side: int) -> np.ndarray:
    """The HR shrunk to fit side x side with the window outlined, on a white square."""
    h, w = hr.shape[:2]
    f = side / max(h, w)
    small = Image.fromarray(hr).resize((max(1, round(w * f)), max(1, round(h * f))), Image.BILINEAR)
    draw = ImageDraw.Draw(small)
    top, left = window
    draw.rectangle([left * f, top * f, (left + size) * f - 1, (top + size) * f - 1], outline=_OUTLINE, width=2)
    canvas = np.full((side, side, 3), 255, np.uint8)
    canvas[: small.height, : small.width] = np.asarray(small)
    return canvas


def _stack_rows(rows: Sequence[np.ndarray], gap: int) -> np.ndarray:
    width = max(r.shape[1] for r in rows)
    out = []
    for k, r in enumerate(rows):
        if r.shape[1] < width:
            r = np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255)
        out.append(r)
        if k < len(rows) - 1:
            out.append(np.full((gap, width, 3), 255, np.uint8))
    return np.concatenate(out, axis=0)


def comparison_figure(panels: Sequence[Panel], *, crop: int = 64, zoom: int = 3, windows: int = 2,
                      title: str = "") -> Figure:
    """One labelled figure: a row per texture window of the last panel (the HR).

    Args:
      panels: Bicubic, the models, then the HR (the windows are chosen on the last one); every
        image the same size.
      crop: window side in HR pixels; zoom: nearest-neighbour enlargement of the crops.
      windows: rows (at most this many non-overlapping windows).
      title: a line above the rows.
    """
    hr = panels[-1].image
    if any(p.image.shape != hr.shape for p in panels):
        raise ValueError("comparison_figure: every panel must have the HR's shape "
                         + ", ".join(f"{p.label} {p.image.shape}" for p in panels))
    size = min(crop, *hr.shape[:2])
    cell = size * zoom
    chosen = texture_windows(hr, size, windows)
    rows = [caption([title], cell * (len(panels) + 1) + _PAD * len(panels))] if title else []
    for k, (top, left) in enumerate(chosen):
        cells = [(_overview(hr, (top, left), size, cell), [f"window {k + 1}", f"at ({left}, {top})"])]
        cells += [(_enlarge(p.image[top: top + size, left: left + size], zoom), caption_text(p)) for p in panels]
        columns = []
        for img, lines in cells:
            columns.append(np.concatenate([img, caption(lines, cell)], axis=0))
        height = max(c.shape[0] for c in columns)
        gap = np.full((height, _PAD, 3), 255, np.uint8)
        row = []
        for c in columns:
            row += [np.pad(c, ((0, height - c.shape[0]), (0, 0), (0, 0)), constant_values=255), gap]
        rows.append(np.concatenate(row[:-1], axis=1))
    return Figure(_stack_rows(rows, 2 * _PAD), [p.label for p in panels], chosen)


def table_cells(runs: Sequence[Run]) -> tuple[list[str], list[list[str]], list[list[bool]]]:
    """(header, rows, best) of the table of every method: Bicubic (from the first run), then each
    run's model; columns dataset x metric of the first run; `best` marks each column's best value."""
    cfg = runs[0].results["config"]
    datasets, metrics = cfg["datasets"], cfg["metrics"]
    header = ["Method"] + [f"{ds} {TABLE_HEADERS[m]}" for ds in datasets for m in metrics]
    entries = [("Bicubic", runs[0])] + [(r.method, r) for r in runs]
    values = []
    for method, run in entries:
        means = run.results["means"]
        values.append([float(means.get(ds, {}).get(method, {}).get(m, math.nan)) for ds in datasets for m in metrics])
    best = [[False] * len(values[0]) for _ in values]
    for c, m in enumerate([m for _ in datasets for m in metrics]):
        column = [(v[c] if not LOWER_IS_BETTER[m] else -v[c]) for v in values]
        finite = [x for x in column if math.isfinite(x)]
        for r, x in enumerate(column):
            best[r][c] = bool(finite) and x == max(finite)
    rows = [[method] + [format_value(m, v) for v, m in zip(vals, [m for _ in datasets for m in metrics])]
            for (method, _), vals in zip(entries, values)]
    return header, rows, best


def markdown_table(runs: Sequence[Run]) -> str:
    """The table of every method as Markdown (best value of each column in bold)."""
    header, rows, best = table_cells(runs)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row, marks in zip(rows, best):
        cells = [row[0]] + [f"**{v}**" if b else v for v, b in zip(row[1:], marks)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _html_table(runs: Sequence[Run]) -> str:
    header, rows, best = table_cells(runs)
    out = ["<table>", "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"]
    for row, marks in zip(rows, best):
        cells = [f"<td>{html.escape(row[0])}</td>"]
        cells += [f"<td class=\"best\">{html.escape(v)}</td>" if b else f"<td>{html.escape(v)}</td>"
                  for v, b in zip(row[1:], marks)]
        out.append("<tr>" + "".join(cells) + "</tr>")
    return "\n".join(out + ["</table>"])


_STYLE = """body{font-family:sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #bbb;padding:.3em .6em;text-align:right}td:first-child,th:first-child{text-align:left}
td.best{font-weight:bold;background:#e8f4e8}img.figure{max-width:100%;image-rendering:pixelated}
.full{display:flex;flex-wrap:wrap;gap:.8em}.full figure{margin:0;width:23em}.full img{width:100%}
figcaption{font-size:.9em}"""


def write_report(out_dir: str | os.PathLike, results: dict, images: Sequence[tuple[str, str, np.ndarray, np.ndarray, np.ndarray]],
                 compare_with: Sequence[Run] = (), *, crop: int = 64, zoom: int = 3) -> list[pathlib.Path]:
    """Writes `<out_dir>/figures/<dataset>_<image>.png` for each compared image and `report.html`.

    Args:
      out_dir: the evaluation's output folder (its SR images at `<dataset>/<image>.png`).
      results: the evaluation's results.json content.
      images: (dataset, image, bicubic, sr, hr) uint8 of each image to show.
      compare_with: earlier evaluations of other models on the same datasets (`load_run`); their
        models are shown between Bicubic and this one, in this order.
      crop, zoom: see `comparison_figure`.
    Returns:
      The figure paths written.
    Raises:
      UserError: a compare_with run without the SR image of a shown image (evaluated with
        --nosave_images, or on other datasets).
    """
    from sslsr.data.io import read_image, write_png

    out_dir = pathlib.Path(out_dir)
    run = Run(out_dir, results)
    others = list(compare_with)
    runs = others + [run]
    written, sections = [], []
    for dataset, name, bic, sr, hr in images:
        panels = [Panel("Bicubic", bic, run.scores(dataset, name, "Bicubic"))]
        for other in others:
            path = other.sr_path(dataset, name)
            if not path.is_file():
                raise UserError(f"{other.folder}: has no SR image {dataset}/{name}.png to compare with "
                                "(evaluate it on the same datasets, with --save_images)")
            panels.append(Panel(other.method, read_image(path), other.scores(dataset, name)))
        panels += [Panel(run.method, sr, run.scores(dataset, name)), Panel("HR", hr)]
        title = (f"{dataset} / {name}: x{zoom} nearest-neighbour crops of the HR's densest edge windows; "
                 "scores on the whole image")
        fig = comparison_figure(panels, crop=crop, zoom=zoom, title=title)
        path = out_dir / FIGURE_DIR / f"{dataset}_{name}.png"
        write_png(path, fig.image)
        written.append(path)
        full = [(r.method, r.sr_path(dataset, name)) for r in runs]
        sections.append((dataset, name, path, full))
    write_text(out_dir / REPORT_FILE, _report_html(out_dir, runs, sections))
    return written


def _report_html(out_dir: pathlib.Path, runs: Sequence[Run], sections) -> str:
    cfg = runs[-1].results["config"]
    title = f"Evaluation of {cfg['model']}" + (f" beside {', '.join(r.method for r in runs[:-1])}" if len(runs) > 1 else "")
    rel = lambda p: html.escape(pathlib.Path(os.path.relpath(p, out_dir)).as_posix(), quote=True)  # noqa: E731
    parts = [f"<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>",
             f"<style>{_STYLE}</style></head><body>", f"<h1>{html.escape(title)}</h1>",
             f"<p>x{cfg['scale']}, {cfg['crop_border']} px border cropped, PSNR/SSIM on Y; means over each "
             "dataset's images; best value of each column highlighted.</p>", _html_table(runs)]
    skipped = runs[-1].results.get("skipped") or {}
    parts += [f"<p>{html.escape(line)}</p>" for line in skipped.values()]
    if not sections:
        parts.append("<p>No comparison figures (SR images not saved, or comparisons turned off).</p>")
    for dataset, name, fig, full in sections:
        parts += [f"<h2>{html.escape(dataset)} / {html.escape(name)}</h2>",
                  f"<img class=\"figure\" src=\"{rel(fig)}\" alt=\"labelled crops of {html.escape(name)}\">",
                  "<p>Full-size SR images (open for 1:1):</p><div class=\"full\">"]
        parts += [f"<figure><a href=\"{rel(p)}\"><img src=\"{rel(p)}\" alt=\"{html.escape(m)}\"></a>"
                  f"<figcaption>{html.escape(m)}</figcaption></figure>" for m, p in full if p.is_file()]
        parts.append("</div>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
