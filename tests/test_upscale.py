"""`python -m sslsr.upscale`: image layouts (16-bit, alpha, grey), naming, bounded compilation,
bad inputs and safe outputs. The inference it runs is tested in test_inference.py."""

import os
import subprocess
import sys

import cv2
import jax
import numpy as np
import pytest
from flax import nnx
from PIL import Image

from sslsr import inference, upscale
from sslsr.cli import UserError
from sslsr.data.imresize import imresize
from sslsr.models import MSRResNet
from tests.conftest import run_cli

ARCH = ["--arch", "MSRResNet", "--arch_kwargs", "num_feat=8,num_block=1,upscale=4"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny random MSRResNet x4 saved as PyTorch-layout safetensors, and its upscaler."""
    from safetensors.numpy import save_file

    from sslsr.convert import to_torch_state_dict

    model = MSRResNet(num_feat=8, num_block=1, upscale=4, rngs=nnx.Rngs(0))
    # Larger weights than the initialisation's, so that the residual branch (not the bilinear skip)
    # shapes the output: its channels differ for a grey input and half precision shows.
    nnx.update(model, jax.tree.map(lambda a: 4 * a, nnx.state(model)))
    path = tmp_path_factory.mktemp("weights") / "tiny_x4.safetensors"
    save_file(to_torch_state_dict(model, "MSRResNet"), str(path))
    return inference.NetworkUpscaler(model), path


def cli(*args):
    run_cli(upscale.main, "upscale", *args)


def forward(up, x, **kw):
    """What the CLI computes for a float image, in [0, 1]."""
    return inference.super_resolve_image(up, x, **kw)


def test_upscale_cli(tmp_path, photos, tiny):
    up, path = tiny
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(photos["rocket"][:20, :24]).save(src / "a.jpg")
    Image.fromarray(photos["rocket"][:20, :24, 0]).save(src / "grey.png")
    cli(src, tmp_path / "out", "--checkpoint", path, *ARCH, "--tile=0", "--ext=png")
    grey = np.asarray(Image.open(tmp_path / "out" / "grey.png"))
    assert grey.shape == (80, 96)  # grey stays grey
    rgb_in = np.repeat(photos["rocket"][:20, :24, :1], 3, axis=2)
    rgb = inference.super_resolve(up, rgb_in)
    np.testing.assert_array_equal(grey, inference.to_uint8(np.clip(inference.to_grey(rgb), 0, 1)))
    assert np.abs(rgb[..., 0] - rgb[..., 2]).max() > 1e-3  # the net's channels differ: conversion matters
    assert np.asarray(Image.open(tmp_path / "out" / "a.png")).shape == (80, 96, 3)


def test_16bit_png_in_16bit_out(tmp_path, tiny):
    up, path = tiny
    yy, xx = np.mgrid[0:20, 0:24]
    img = np.stack([yy * 3000 + xx * 7, xx * 2700 + 11, 60000 - yy * xx * 120], axis=2).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "g16.png"), img[..., ::-1])  # OpenCV writes BGR
    out = tmp_path / "out" / "g16.png"
    cli(tmp_path / "g16.png", out, "--checkpoint", path, *ARCH)
    got = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert got.dtype == np.uint16 and got.shape == (80, 96, 3)
    got = got[..., ::-1]
    assert len(np.unique(got)) > 256  # not 8-bit data in a 16-bit file
    want = forward(up, img.astype(np.float32) / 65535, tile=256, tile_overlap=32, pad_to_tile=True)
    assert np.abs(got / 65535.0 - want).max() <= 1.01 / 65535  # rounding to 1/65535 (plus float noise)


def test_alpha_is_kept(tmp_path, photos, tiny):
    up, path = tiny
    rgb = photos["coffee"][:20, :24]
    yy, xx = np.mgrid[0:20, 0:24]
    a = np.clip(xx * 12 + yy * 3, 0, 255).astype(np.uint8)
    Image.fromarray(np.dstack([rgb, a])).save(tmp_path / "rgba.png")
    x = np.dstack([rgb, a]).astype(np.float32) / 255
    got = {}
    for mode in ("bicubic", "model"):
        out = tmp_path / f"{mode}.png"
        cli(tmp_path / "rgba.png", out, "--checkpoint", path, *ARCH, f"--alpha={mode}", "--tile=0")
        got[mode] = np.asarray(Image.open(out))
        assert got[mode].shape == (80, 96, 4)
        np.testing.assert_array_equal(got[mode], inference.to_uint8(forward(up, x, alpha=mode)))
    bicubic = got["bicubic"]
    np.testing.assert_array_equal(bicubic[..., 3], inference.to_uint8(np.clip(imresize(a / 255.0, 4.0), 0, 1)))
    np.testing.assert_array_equal(bicubic[..., :3], inference.to_uint8(inference.super_resolve(up, rgb)))
    np.testing.assert_array_equal(got["model"][..., :3], bicubic[..., :3])
    assert np.abs(got["model"][..., 3].astype(int) - bicubic[..., 3]).max() > 2  # the model's alpha differs


def test_outscale_suffix_and_ext(tmp_path, photos, tiny):
    _, path = tiny
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(photos["rocket"][:20, :23]).save(src / "a.png")
    Image.fromarray(np.dstack([photos["rocket"][:10, :10], np.full((10, 10), 128, np.uint8)])).save(src / "b.webp",
                                                                                                   lossless=True)
    out = tmp_path / "out"
    cli(src, out, "--checkpoint", path, *ARCH, "--outscale=3.5", "--suffix=_out", "--ext=jpg")
    assert sorted(p.name for p in out.iterdir()) == ["a_out.jpg", "b_out.png"]  # alpha: png, not jpg
    with Image.open(out / "a_out.jpg") as im:
        assert im.format == "JPEG" and im.size == (81, 70)  # ceil(23 * 3.5), 20 * 3.5
    with Image.open(out / "b_out.png") as im:
        assert im.mode == "RGBA" and im.size == (35, 35)
        assert set(np.asarray(im)[..., 3].ravel()) == {128}  # bicubic keeps a constant alpha exactly
    cli(src, tmp_path / "auto", "--checkpoint", path, *ARCH)
    assert sorted(p.name for p in (tmp_path / "auto").iterdir()) == ["a.png", "b.webp"]
    with Image.open(tmp_path / "auto" / "a.png") as im:
        assert im.size == (92, 80)


def test_a_folder_of_sizes_compiles_one_shape(tmp_path, photos, tiny, monkeypatch):
    _, path = tiny
    traced = []
    real_call = MSRResNet.__call__

    def counting(self, x):
        traced.append(x.shape)  # runs only while tracing
        return real_call(self, x)

    monkeypatch.setattr(MSRResNet, "__call__", counting)
    src = tmp_path / "in"
    src.mkdir()
    for name, (h, w) in {"a": (20, 24), "b": (13, 40), "c": (37, 9)}.items():
        Image.fromarray(photos["astronaut"][:h, :w]).save(src / f"{name}.png")
    cli(src, tmp_path / "out", "--checkpoint", path, *ARCH, "--tile=32", "--tile_overlap=8")
    assert traced == [(1, 32, 32, 3)]
    assert Image.open(tmp_path / "out" / "b.png").size == (160, 52)
    traced.clear()
    cli(src, tmp_path / "whole", "--checkpoint", path, *ARCH, "--tile=0")
    assert len(traced) == 3  # the counter does count: whole images compile once per size


def test_bad_image_in_a_folder(tmp_path, photos, tiny):
    _, path = tiny
    src = tmp_path / "in"
    src.mkdir()
    for name in ("a", "c"):
        Image.fromarray(photos["chelsea"][:12, :12]).save(src / f"{name}.png")
    (src / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really" * 10)
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run(
        [sys.executable, "-m", "sslsr.upscale", str(src), str(tmp_path / "out"), f"--checkpoint={path}", *ARCH,
         "--tile=16", "--tile_overlap=4"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "c.png"]  # no partial/temp files
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith(("failed:", "error:"))]
    assert len(lines) == 2 and "b.png" in lines[0] and "1 of 3 images failed" in lines[1], proc.stderr
    assert "Traceback" not in proc.stderr


def test_never_writes_into_the_input(tmp_path, photos, tiny):
    _, path = tiny
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(photos["chelsea"][:12, :12]).save(src / "a.png")
    Image.fromarray(photos["chelsea"][:12, :12]).save(src / "a.jpg")
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    with pytest.raises(UserError, match="is the input folder"):
        cli(src, src, "--checkpoint", path, *ARCH)
    with pytest.raises(UserError, match="is the input folder"):
        cli(src, tmp_path / "in" / ".." / "in", "--checkpoint", path, *ARCH)
    with pytest.raises(UserError, match="is inside the input folder"):
        cli(src, src / "sr", "--checkpoint", path, *ARCH)
    with pytest.raises(UserError, match="would overwrite the input image"):
        cli(src / "a.png", src / "a.png", "--checkpoint", path, *ARCH)
    with pytest.raises(UserError, match="would overwrite the input image"):
        cli(src / "a.png", src, "--checkpoint", path, *ARCH)  # <folder>/<stem>.png is the input itself
    with pytest.raises(UserError, match="both a.jpg and a.png"):
        cli(src, tmp_path / "out", "--checkpoint", path, *ARCH, "--ext=png")
    assert {p.name: p.read_bytes() for p in src.iterdir()} == before
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "args,match",
    [
        (["--tile=-1"], "--tile: must be >= 0"),
        (["--tile=16", "--tile_overlap=16"], "--tile_overlap: must be in"),
        (["--outscale=0"], "--outscale: must be > 0"),
        (["--suffix=a/b"], "--suffix"),
        (["--arch=NoSuchNet"], "--arch: unknown generator 'NoSuchNet'"),
        (["--arch=VGG16"], "--arch: unknown generator 'VGG16'"),
        (["--arch_kwargs=num_blok=1"], "--arch_kwargs: MSRResNet: got an unexpected keyword argument 'num_blok'"),
        (["--arch_kwargs=num_feat=8,num_block=1,upscale=4", "--scale=3"], "--scale: 3, but MSRResNet"),
        (["--dtype=float64"], "--dtype"),
    ],
)
def test_one_line_errors_before_loading(tmp_path, photos, args, match):
    Image.fromarray(photos["chelsea"][:12, :12]).save(tmp_path / "a.png")
    weights = tmp_path / "absent.pth"  # never read: the flags are checked first
    weights.write_bytes(b"")
    arch = [] if any(a.startswith("--arch=") for a in args) else ["--arch=MSRResNet"]
    with pytest.raises(UserError, match=match):
        cli(tmp_path / "a.png", tmp_path / "out", f"--checkpoint={weights}", *arch, *args)
    assert not (tmp_path / "out").exists()


def test_missing_checkpoint(tmp_path, photos):
    Image.fromarray(photos["chelsea"][:12, :12]).save(tmp_path / "a.png")
    with pytest.raises(UserError, match="no such checkpoint"):
        cli(tmp_path / "a.png", tmp_path / "out", f"--checkpoint={tmp_path / 'nope.pth'}", *ARCH)


def test_scale_from_the_weights_is_checked_before_any_image(tmp_path, tiny):
    _, path = tiny
    (tmp_path / "a.png").write_bytes(b"not an image")  # would fail if it were read first
    with pytest.raises(UserError, match="--scale: scale 2 but the model upscales x4"):
        cli(tmp_path / "a.png", tmp_path / "out.png", "--checkpoint", path, "--arch=MSRResNet",
            "--arch_kwargs=num_feat=8,num_block=1", "--scale=2")


def test_float16_close_to_float32(tmp_path, photos, tiny):
    _, path = tiny
    Image.fromarray(photos["coffee"][:20, :24]).save(tmp_path / "a.png")
    outs = {}
    for dtype in ("float32", "float16"):
        cli(tmp_path / "a.png", tmp_path / f"{dtype}.png", "--checkpoint", path, *ARCH, f"--dtype={dtype}")
        outs[dtype] = np.asarray(Image.open(tmp_path / f"{dtype}.png")).astype(int)
    dev = np.abs(outs["float16"] - outs["float32"])
    assert dev.max() <= 2 and dev.max() > 0  # half precision, and it does run in half precision


def test_compilation_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "jax"))
    assert upscale.compilation_cache_dir() == str(tmp_path / "jax")
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert upscale.compilation_cache_dir() == str(tmp_path / "xdg" / "sslsr" / "jax")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert upscale.compilation_cache_dir() == str(tmp_path / ".cache" / "sslsr" / "jax")
