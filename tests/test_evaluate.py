"""Evaluation protocol: metrics, a full run writing all reports, the eval CLI.

The inference it runs (tiling, self-ensemble, dtype) is tested in test_inference.py, the upscale
CLI in test_upscale.py."""

import csv
import json
import math

import numpy as np
import pytest
from flax import nnx
from PIL import Image

from sslsr import evaluate, inference, metrics
from sslsr.data.imresize import imresize
from sslsr.models import MSRResNet


def test_unavailable_metric_is_skipped_with_one_line(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "DISTS_pytorch" else real(name, *a)
    )
    lines = []
    fns, skipped = evaluate.build_metrics(["psnr", "dists"], crop_border=4, log=lines.append)
    assert list(fns) == ["psnr"] and list(skipped) == ["dists"]
    assert len(lines) == 1 and lines[0].startswith("DISTS skipped:") and "dists-pytorch" in lines[0]


def _write_dataset(root, images, with_lr):
    (root / "HR").mkdir(parents=True)
    if with_lr:
        (root / "LR_bicubic" / "X4").mkdir(parents=True)
    for name, hr in images.items():
        Image.fromarray(hr).save(root / "HR" / f"{name}.png")
        if with_lr:
            Image.fromarray(imresize(hr, 0.25)).save(root / "LR_bicubic" / "X4" / f"{name}x4.png")


def test_full_evaluation_writes_all_outputs(tmp_path, photos):
    crops = {n: photos[n][120:184, 200:248] for n in ("astronaut", "coffee", "rocket")}
    _write_dataset(tmp_path / "data" / "Tiny", crops, with_lr=True)
    _write_dataset(tmp_path / "data" / "TinyHR", {"chelsea": photos["chelsea"][50:114, 60:108]}, with_lr=False)
    model = MSRResNet(num_feat=8, num_block=1, upscale=4, rngs=nnx.Rngs(0))
    out = tmp_path / "out"
    results = evaluate.evaluate(
        model, ["Tiny", "TinyHR"], scale=4, out_dir=out, data_root=tmp_path / "data",
        comparison_crop=32, num_comparisons=1, model_name="tiny", progress=False,
    )

    # SR images: the model's output, HR-sized.
    sr = np.asarray(Image.open(out / "Tiny" / "coffee.png"))
    assert sr.shape == (64, 48, 3)
    lr = imresize(crops["coffee"], 0.25)
    want_sr = inference.to_uint8(inference.super_resolve(inference.NetworkUpscaler(model), lr))
    np.testing.assert_array_equal(sr, want_sr)
    assert (out / "TinyHR" / "chelsea.png").is_file()

    # CSV: one row per image and method, values recomputed independently.
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 4 and set(rows[0]) >= {"dataset", "image", "method", "psnr", "ssim", "lpips", "dists"}
    by_key = {(r["dataset"], r["image"], r["method"]): r for r in rows}
    r = by_key[("Tiny", "coffee", "tiny")]
    assert float(r["psnr"]) == pytest.approx(metrics.psnr(sr, crops["coffee"], crop_border=4), abs=1e-9)
    assert float(r["ssim"]) == pytest.approx(metrics.ssim(sr, crops["coffee"], crop_border=4), abs=1e-9)
    bic = imresize(lr, 4)
    rb = by_key[("Tiny", "coffee", "Bicubic")]
    assert float(rb["psnr"]) == pytest.approx(metrics.psnr(bic, crops["coffee"], crop_border=4), abs=1e-9)
    # LPIPS through the shared-reference batched path = the module on the cropped pair in [-1, 1].
    c = lambda a: a[4:-4, 4:-4].astype(np.float32)[None] / 127.5 - 1  # noqa: E731
    want_lpips = float(nnx.jit(lambda m, a, b: m(a, b))(metrics.load_lpips("alex"), c(sr), c(crops["coffee"]))[0])
    assert float(r["lpips"]) == pytest.approx(want_lpips, abs=1e-5)
    for row in rows:
        for m in ("lpips", "dists"):
            assert 0.0 < float(row[m]) < 1.0, (m, row)

    # JSON means = CSV means; markdown table has both rows and every dataset/metric.
    data = json.loads((out / "results.json").read_text())
    assert data == json.loads(json.dumps(data))
    mean_psnr = np.mean([float(r["psnr"]) for r in rows if r["dataset"] == "Tiny" and r["method"] == "tiny"])
    assert data["means"]["Tiny"]["tiny"]["psnr"] == pytest.approx(mean_psnr)
    assert data["means"]["TinyHR"]["Bicubic"]["images"] == 1
    assert results["config"]["metrics"] == ["psnr", "ssim", "lpips", "dists"]
    md = (out / "results.md").read_text()
    assert "| Bicubic |" in md and "| tiny |" in md
    for header in ("Tiny PSNR↑", "Tiny SSIM↑", "Tiny LPIPS↓", "TinyHR DISTS↓"):
        assert header in md

    # comparisons/: bicubic | SR | HR strips for the largest gain and loss per dataset.
    comps = sorted(p.name for p in (out / "comparisons").iterdir())
    assert len([c for c in comps if c.startswith("Tiny_")]) == 2
    assert any(c.endswith("_gain.png") for c in comps) and any(c.endswith("_loss.png") for c in comps)
    strip = np.asarray(Image.open(out / "comparisons" / comps[0]))
    assert strip.shape == (32, 3 * 32 + 2 * 4, 3)


def test_identical_images_psnr_inf_in_reports(tmp_path, photos):
    # An oracle "model" that returns HR itself: PSNR inf must survive the means and the reports.
    hr = photos["rocket"][100:164, 100:164]
    _write_dataset(tmp_path / "data" / "Same", {"rocket": hr}, with_lr=True)
    target = hr.astype(np.float32)[None] / 255.0
    results = evaluate.evaluate(
        lambda x: target, ["Same"], scale=4, out_dir=tmp_path / "out", data_root=tmp_path / "data",
        metrics=["psnr", "ssim"], num_comparisons=1, progress=False, model_name="oracle",
    )
    assert math.isinf(results["means"]["Same"]["oracle"]["psnr"])
    assert "| oracle | inf | 1.0000 |" in (tmp_path / "out" / "results.md").read_text()
    assert json.loads((tmp_path / "out" / "results.json").read_text())["means"]["Same"]["oracle"]["psnr"] == "inf"


@pytest.fixture()
def tiny_weights(tmp_path):
    """A tiny random MSRResNet saved as PyTorch-layout safetensors (what users download)."""
    from safetensors.numpy import save_file

    from sslsr.convert import to_torch_state_dict

    model = MSRResNet(num_feat=8, num_block=1, upscale=4, rngs=nnx.Rngs(0))
    path = tmp_path / "tiny_x4.safetensors"
    save_file(to_torch_state_dict(model, "MSRResNet"), str(path))
    return model, path


def test_eval_cli_with_weights_file(tmp_path, photos, tiny_weights):
    from absl import flags

    model, path = tiny_weights
    _write_dataset(tmp_path / "data" / "Tiny", {"coffee": photos["coffee"][120:184, 200:248]}, with_lr=True)
    # One module object per process for eval.py (the repository root is on sys.path): its absl
    # flags are global, and other test files import it the same way.
    import eval as cli
    argv = [
        "eval.py", f"--checkpoint={path}", "--arch=MSRResNet", "--arch_kwargs=num_feat=8,num_block=1,upscale=4",
        "--datasets=Tiny", f"--data_root={tmp_path / 'data'}", f"--out={tmp_path / 'out'}", "--metrics=psnr,ssim",
        "--tile=12", "--tile_overlap=10",
    ]
    flags.FLAGS(argv)
    try:
        cli.main([])
    finally:
        flags.FLAGS.unparse_flags()
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    assert data["config"]["model"] == "tiny_x4" and data["config"]["scale"] == 4 and data["config"]["tile"] == 12
    sr = np.asarray(Image.open(tmp_path / "out" / "Tiny" / "coffee.png"))
    lr = imresize(photos["coffee"][120:184, 200:248], 0.25)
    want = inference.to_uint8(inference.super_resolve(inference.NetworkUpscaler(model), lr))
    np.testing.assert_array_equal(sr, want)  # overlap 10 covers the receptive field (radius <= 5)


def test_load_generator_dispatch(tmp_path, monkeypatch):
    # What eval.py and `python -m sslsr.upscale` load --checkpoint with (was evaluate.load_model).
    from sslsr import weights
    from sslsr.cli import UserError
    from sslsr.weights import checkpoints

    sentinel = object()
    monkeypatch.setattr(checkpoints, "restore_generator", lambda path, prefer_ema: (sentinel, path))
    assert weights.load_generator(tmp_path) == (sentinel, str(tmp_path))  # a folder is a training workdir
    with pytest.raises(UserError, match="no such checkpoint"):
        weights.load_generator(tmp_path / "missing.pth", arch="RRDBNet")
    (tmp_path / "w.pth").write_bytes(b"")
    with pytest.raises(UserError, match="w.pth: cannot read weights"):  # no --arch: detected, but empty
        weights.load_generator(tmp_path / "w.pth")
    (tmp_path / "w.ckpt").write_bytes(b"")
    with pytest.raises(UserError, match="unsupported checkpoint type"):
        weights.load_generator(tmp_path / "w.ckpt", arch="RRDBNet")
