"""Evaluation library: tiled inference exactness, self-ensemble, bf16, and a full run writing all reports."""

import csv
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from PIL import Image

from sslsr import evaluate, metrics
from sslsr.data.degradations import imresize
from sslsr.models import MSRResNet


class IntegerSR(nnx.Module):
    """x2 SR net whose arithmetic is exact in float32 (integer weights and activations), so any
    tiling that respects its receptive field must give bit-identical output. Receptive-field
    radius: 3 LR pixels (three 3x3 convs)."""

    def __init__(self):
        rng = np.random.default_rng(0)
        shapes = ((3, 8), (8, 8), (8, 12))
        self.kernels = nnx.List(
            [nnx.Param(jnp.asarray(rng.integers(-2, 3, (3, 3, i, o)), jnp.float32)) for i, o in shapes]
        )
        self.biases = nnx.List([nnx.Param(jnp.asarray(rng.integers(-50, 50, (o,)), jnp.float32)) for _, o in shapes])

    def __call__(self, x):
        h = jnp.round(x * 255.0)
        for i, (k, b) in enumerate(zip(self.kernels, self.biases)):
            h = jax.lax.conv_general_dilated(h, k[...], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
            h = h + b[...]
            if i < 2:
                h = jnp.clip(h, 0, 4000)  # keeps every intermediate an exact float32 integer
        n, hh, ww, _ = h.shape
        h = h.reshape(n, hh, ww, 3, 2, 2).transpose(0, 1, 4, 2, 5, 3).reshape(n, 2 * hh, 2 * ww, 3)
        return h / 65536.0 + 0.25


@pytest.fixture(scope="module")
def lr_image(photos):
    return photos["coffee"][60:105, 100:161]  # 45 x 61: tiles do not divide it


def test_tile_starts_cover_and_share_overlap():
    assert evaluate.tile_starts(45, 16, 6) == [0, 10, 20, 29]
    assert evaluate.tile_starts(10, 16, 6) == [0]
    for size, tile, ov in ((45, 16, 6), (100, 32, 8), (33, 32, 4)):
        s = evaluate.tile_starts(size, tile, ov)
        assert s[0] == 0 and s[-1] + tile == size
        assert all(b - a <= tile - ov for a, b in zip(s, s[1:]))
    with pytest.raises(ValueError, match="tile_overlap"):
        evaluate.tile_starts(45, 16, 16)


def test_tiling_is_exact_within_receptive_field(lr_image):
    fwd = evaluate.make_forward(IntegerSR())
    full = evaluate.super_resolve(fwd, lr_image, scale=2)
    assert full.shape == (90, 122, 3) and 0.05 < full.std()
    # radius 3 <= overlap // 2: bit-identical.
    tiled = evaluate.super_resolve(fwd, lr_image, scale=2, tile=16, tile_overlap=6)
    np.testing.assert_array_equal(tiled, full)
    # Too little overlap: the seams show (the test can fail).
    seams = evaluate.super_resolve(fwd, lr_image, scale=2, tile=16, tile_overlap=2)
    assert np.abs(seams - full).max() > 1e-3


def test_tiling_msrresnet(lr_image):
    # MSRResNet, 1 block: radius <= 5 LR pixels (conv_first 1, block 2, upconv1 1, then < 1 at 2x/4x
    # resolution, plus the bilinear skip); overlap 12 contains it. Float32 convolutions on different
    # shapes round differently in the last bit, so floats agree to ~1e-7 and uint8 exactly.
    model = MSRResNet(num_feat=8, num_block=1, upscale=4, rngs=nnx.Rngs(1))
    fwd = evaluate.make_forward(model)
    lr = lr_image[:40, :44]
    full = evaluate.super_resolve(fwd, lr, scale=4)
    tiled = evaluate.super_resolve(fwd, lr, scale=4, tile=24, tile_overlap=12)
    assert np.abs(tiled - full).max() < 1e-5
    np.testing.assert_array_equal(evaluate.to_uint8(tiled), evaluate.to_uint8(full))


def test_self_ensemble(lr_image):
    fwd = evaluate.make_forward(IntegerSR())
    lr = lr_image[:20, :24]
    got = evaluate.super_resolve(fwd, lr, scale=2, self_ensemble=True)
    # Independent formulation: the 8 rotations/reflections via np.rot90 on a float image.
    x = lr.astype(np.float32) / 255.0
    outs = []
    for flip in (False, True):
        for k in range(4):
            t = np.rot90(x[:, ::-1] if flip else x, k)
            y = np.rot90(fwd(np.ascontiguousarray(t)[None])[0], -k)
            outs.append(y[:, ::-1] if flip else y)
    want = np.clip(np.mean(outs, axis=0), 0, 1)
    np.testing.assert_allclose(got, want, atol=1e-6)
    plain = evaluate.super_resolve(fwd, lr, scale=2)
    assert np.abs(got - plain).max() > 1e-3  # the net is not flip-equivariant: ensembling matters


def test_bf16_model_close_to_float32(lr_image):
    model = MSRResNet(num_feat=8, num_block=1, upscale=4, rngs=nnx.Rngs(1))
    lr = lr_image[:16, :16]
    f32 = evaluate.super_resolve(evaluate.make_forward(model), lr, scale=4)
    b16 = evaluate.super_resolve(evaluate.make_forward(model, bf16=True), lr, scale=4)
    assert b16.dtype == np.float32
    dev = np.abs(b16 - f32).max()
    assert 0 < dev < 0.02, dev


def test_wrong_scale_is_a_clear_error(lr_image):
    fwd = evaluate.make_forward(IntegerSR())
    with pytest.raises(ValueError, match="not x4"):
        evaluate.super_resolve(fwd, lr_image[:16, :16], scale=4)


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
    want_sr = evaluate.to_uint8(evaluate.super_resolve(evaluate.make_forward(model), lr, scale=4))
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
    want_lpips = float(nnx.jit(lambda m, a, b: m(a, b))(metrics.LPIPS("alex"), c(sr), c(crops["coffee"]))[0])
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
    import importlib.util
    import pathlib

    from absl import flags

    model, path = tiny_weights
    _write_dataset(tmp_path / "data" / "Tiny", {"coffee": photos["coffee"][120:184, 200:248]}, with_lr=True)
    import sys

    cli = sys.modules.get("eval_cli")
    if cli is None:  # executed once per process: eval.py defines absl flags globally
        spec = importlib.util.spec_from_file_location("eval_cli", pathlib.Path(__file__).parents[1] / "eval.py")
        cli = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(cli)
        sys.modules["eval_cli"] = cli
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
    want = evaluate.to_uint8(evaluate.super_resolve(evaluate.make_forward(model), lr, scale=4))
    np.testing.assert_array_equal(sr, want)  # overlap 10 covers the receptive field (radius <= 5)


def test_upscale_cli(tmp_path, photos, tiny_weights):
    from sslsr import upscale

    model, path = tiny_weights
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(photos["rocket"][:20, :24]).save(src / "a.jpg")
    Image.fromarray(photos["rocket"][:20, :24, 0]).save(src / "grey.png")
    upscale.main([str(src), str(tmp_path / "out"), "--checkpoint", str(path), "--arch", "MSRResNet",
                  "--arch_kwargs", "num_feat=8", "num_block=1", "upscale=4"])
    grey = np.asarray(Image.open(tmp_path / "out" / "grey.png"))
    assert grey.shape == (80, 96, 3)
    rgb_in = np.repeat(photos["rocket"][:20, :24, :1], 3, axis=2)
    want = evaluate.to_uint8(evaluate.super_resolve(evaluate.make_forward(model), rgb_in, scale=4))
    np.testing.assert_array_equal(grey, want)
    assert np.asarray(Image.open(tmp_path / "out" / "a.png")).shape == (80, 96, 3)


def test_load_model_dispatch(tmp_path, monkeypatch):
    import sslsr.train

    sentinel = object()
    monkeypatch.setattr(sslsr.train, "restore_generator", lambda path: (sentinel, path))
    assert evaluate.load_model(tmp_path) == (sentinel, tmp_path)  # a folder is a training workdir
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        evaluate.load_model(tmp_path / "missing.pth", arch="RRDBNet")
    (tmp_path / "w.pth").write_bytes(b"")
    with pytest.raises(ValueError, match="needs --arch"):
        evaluate.load_model(tmp_path / "w.pth")
    (tmp_path / "w.ckpt").write_bytes(b"")
    with pytest.raises(ValueError, match="unsupported checkpoint type"):
        evaluate.load_model(tmp_path / "w.ckpt", arch="RRDBNet")
