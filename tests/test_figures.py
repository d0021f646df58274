"""Labelled comparison figures and report.html (sslsr.evaluate.figures), and their hook in evaluate."""

import html.parser
import json
import pathlib

import numpy as np
import pytest
from PIL import Image

from sslsr import evaluate
from sslsr.errors import UserError
from sslsr.evaluate import figures


def _textured(h=120, w=160, box=(70, 90, 32)):
    """A flat grey image holding one checkerboard square at (top, left) with side `box[2]`."""
    img = np.full((h, w, 3), 128, np.uint8)
    top, left, side = box
    yy, xx = np.mgrid[:side, :side]
    img[top: top + side, left: left + side] = np.where(((yy // 2 + xx // 2) % 2)[..., None], 230, 20)
    return img


def test_texture_windows_find_the_edges_and_stay_inside():
    hr = _textured()
    windows = figures.texture_windows(hr, 32, 3)
    # On the checkerboard, the only edges (the Laplacian also fires one pixel outside it).
    assert abs(windows[0][0] - 70) <= 1 and abs(windows[0][1] - 90) <= 1
    assert len(windows) == 3
    for top, left in windows:
        assert 0 <= top <= hr.shape[0] - 32 and 0 <= left <= hr.shape[1] - 32
    for a in windows:  # pairwise at least one window side apart
        for b in windows:
            if a != b:
                assert abs(a[0] - b[0]) >= 64 or abs(a[1] - b[1]) >= 64
    # A window larger than the image is clipped to it.
    (top, left), = figures.texture_windows(hr, 500, 2)  # one 120 px window: any other overlaps it
    assert top == 0 and 0 <= left <= 160 - 120


def test_caption_has_label_and_scores_and_is_drawn():
    panel = figures.Panel("GAN+SSL", np.zeros((4, 4, 3), np.uint8), {"psnr": 28.123, "lpips": 0.25, "ssim": 0.8})
    assert figures.caption_text(panel) == ["GAN+SSL", "PSNR 28.12 dB  LPIPS 0.250"]
    assert figures.caption_text(figures.Panel("HR", panel.image)) == ["HR"]
    strip = figures.caption(figures.caption_text(panel), 200)
    assert strip.shape[1] == 200 and strip.dtype == np.uint8
    dark = (strip.min(axis=2) < 100).sum(axis=1)
    assert dark.max() > 0  # text was drawn
    # Two lines of text: dark rows in both halves of the strip.
    half = strip.shape[0] // 2
    assert dark[:half].sum() > 0 and dark[half:].sum() > 0
    blank = figures.caption([""], 200)
    assert (blank == 255).all()


def test_comparison_figure_layout():
    hr = _textured()
    rng = np.random.default_rng(0)
    noisy = np.clip(hr + rng.integers(-20, 20, hr.shape), 0, 255).astype(np.uint8)
    panels = [figures.Panel("Bicubic", noisy, {"psnr": 20.0}), figures.Panel("start", noisy, {"psnr": 21.0}),
              figures.Panel("GAN+SSL", noisy, {"psnr": 22.0}), figures.Panel("HR", hr)]
    fig = figures.comparison_figure(panels, crop=32, zoom=3, windows=2, title="t")
    assert fig.labels == ["Bicubic", "start", "GAN+SSL", "HR"]
    assert len(fig.windows) == 2
    top, left = fig.windows[0]
    assert abs(top - 70) <= 1 and abs(left - 90) <= 1
    cell = 32 * 3
    # An overview column plus one per panel, 4 px apart.
    assert fig.image.shape[1] == 5 * cell + 4 * 4
    # The HR crop of the first row, enlarged by nearest neighbour, sits in the last column.
    row_top = figures.caption(["t"], 10).shape[0] + 8
    last = fig.image[row_top: row_top + cell, 4 * (cell + 4):]
    want = np.repeat(np.repeat(hr[top: top + 32, left: left + 32], 3, axis=0), 3, axis=1)
    np.testing.assert_array_equal(last, want)
    with pytest.raises(ValueError, match="HR's shape"):
        figures.comparison_figure([figures.Panel("a", hr[:50]), figures.Panel("HR", hr)])


class _Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.links = []

    def handle_starttag(self, tag, attrs):
        self.links += [v for k, v in attrs if k in ("src", "href")]


def _write_tiny(root: pathlib.Path):
    (root / "Tiny" / "HR").mkdir(parents=True)
    for k, name in enumerate(("a", "b")):
        Image.fromarray(np.roll(_textured(64, 96, (16 + 8 * k, 30, 24)), k, axis=1)).save(root / "Tiny" / "HR" / f"{name}.png")


def _nearest(x):  # NHWC float -> x4 nearest upsampling, a "model" that is cheap to run
    return np.repeat(np.repeat(x, 4, axis=1), 4, axis=2)


def _blurry(x):  # a second "model": the nearest upsampling, averaged with its neighbours
    y = _nearest(x)
    return (y + np.roll(y, 1, axis=1) + np.roll(y, 1, axis=2)) / 3


def test_evaluate_writes_figures_and_an_offline_report(tmp_path):
    _write_tiny(tmp_path / "data")
    common = dict(scale=4, data_root=tmp_path / "data", metrics=["psnr"], progress=False, comparison_crop=16)
    evaluate.evaluate(_blurry, ["Tiny"], out_dir=tmp_path / "first", model_name="start", **common)
    out = tmp_path / "second"
    evaluate.evaluate(_nearest, ["Tiny"], out_dir=out, model_name="GAN+SSL", compare_with=[tmp_path / "first"], **common)

    figs = sorted(p.name for p in (out / "figures").iterdir())
    assert figs == ["Tiny_a.png", "Tiny_b.png"]
    fig = np.asarray(Image.open(out / "figures" / "Tiny_a.png"))
    # Overview + Bicubic + start + GAN+SSL + HR: 64 px windows (the images' height) enlarged x3.
    assert fig.shape[1] == 5 * 64 * 3 + 4 * 4
    page = (out / "report.html").read_text()
    for label in ("Bicubic", "start", "GAN+SSL"):
        assert f"<td>{label}</td>" in page
    # The table's per-method means are the ones of each run's results.json.
    first = json.loads((tmp_path / "first" / "results.json").read_text())
    assert f"{first['means']['Tiny']['start']['psnr']:.2f}" in page
    links = _Links()
    links.feed(page)
    assert links.links and not any(link.startswith(("/", "http")) for link in links.links)
    for link in links.links:  # relative and resolvable: the folder opens offline
        assert (out / link).resolve().is_file(), link
    assert "../first/Tiny/a.png" in links.links and "figures/Tiny_a.png" in links.links

    # The printed table of every method: Bicubic, then the runs in order, best value in bold.
    runs = [figures.load_run(tmp_path / "first"), figures.load_run(out)]
    table = figures.markdown_table(runs).splitlines()
    assert [line.split("|")[1].strip() for line in table[2:]] == ["Bicubic", "start", "GAN+SSL"]
    assert sum("**" in line for line in table[2:]) == 1


def test_compare_with_errors_name_the_folder(tmp_path):
    with pytest.raises(UserError, match=f"{tmp_path}: not an evaluation output folder"):
        figures.load_run(tmp_path)
    _write_tiny(tmp_path / "data")
    common = dict(scale=4, data_root=tmp_path / "data", metrics=["psnr"], progress=False, comparison_crop=16)
    evaluate.evaluate(_blurry, ["Tiny"], out_dir=tmp_path / "first", model_name="start", save_images=False, **common)
    with pytest.raises(UserError, match="has no SR image Tiny/"):
        evaluate.evaluate(_nearest, ["Tiny"], out_dir=tmp_path / "second", compare_with=[tmp_path / "first"], **common)


def test_eval_cli_rejects_a_wrong_compare_with_folder(tmp_path):
    import subprocess
    import sys

    repo = pathlib.Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, str(repo / "eval.py"), "--datasets=demo", f"--out={tmp_path / 'out'}",
         f"--compare_with={tmp_path}"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: {tmp_path}: not an evaluation output folder")
