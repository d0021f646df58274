"""Exported .pth / .safetensors files open in spandrel 0.4.2 (architecture, scale, output) and in
our loader; the export CLI's errors are one line and never leave a partial file."""

import json

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from sslsr.errors import UserError
from sslsr.models import registry
from sslsr.weights import Generator, load_generator, open_generator, save
from tests.spandrel_stub import import_spandrel
from tests.conftest import run_cli

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

SWIN = dict(img_size=8, window_size=4, depths=(2, 2), embed_dim=12, num_heads=(2, 3), mlp_ratio=2.0)
# spandrel's ESRGAN loader assumes 32 growth channels (it never reads them from the file).
CASES = {
    # name: (arch, kwargs, spandrel id, LR size)
    "rrdb_x4": ("RRDBNet", dict(num_feat=8, num_block=2, num_grow_ch=32, scale=4), "ESRGAN", 8),
    "rrdb_x2": ("RRDBNet", dict(num_feat=8, num_block=2, num_grow_ch=32, scale=2), "ESRGAN", 8),
    "rrdb_x1": ("RRDBNet", dict(num_feat=8, num_block=2, num_grow_ch=32, scale=1), "ESRGAN", 8),
    "swinir_classical": ("SwinIR", dict(SWIN, upscale=2, upsampler="pixelshuffle"), "SwinIR", 8),
    "swinir_lightweight": ("SwinIR", dict(SWIN, upscale=3, upsampler="pixelshuffledirect"), "SwinIR", 8),
    "swinir_real": ("SwinIR", dict(SWIN, upscale=4, upsampler="nearest+conv", resi_connection="3conv"), "SwinIR", 8),
    "srvgg": ("SRVGGNetCompact", dict(num_feat=8, num_conv=2, upscale=4), "Compact", 8),
}


def make(name, seed=0, weights="ema", step=7):
    arch, kwargs, _, _ = CASES[name]
    model = registry.build(arch, rngs=nnx.Rngs(seed), **kwargs)
    if arch == "SRVGGNetCompact":  # PReLU slopes differ per channel, so a mix-up shows
        for i in range(1, len(model.body) - 1, 2):
            model.body[i].weight.set_value(jnp.linspace(-0.3, 0.6, 8))
    model.eval()
    return Generator(model, arch, kwargs, weights, step)


def lr_input(size, seed=1):
    return np.random.default_rng(seed).random((1, size, size, 3), np.float32)


def ours(model, x):
    return np.asarray(model(jnp.asarray(x)))


def spandrel_run(descriptor, x):
    with torch.no_grad():
        y = descriptor.model.eval()(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()))
    return y.numpy().transpose(0, 2, 3, 1)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_spandrel_opens_the_export(name, suffix, tmp_path):
    spandrel = import_spandrel()
    gen = make(name)
    path = save.write(gen, tmp_path / f"{name}{suffix}")
    descriptor = spandrel.ModelLoader().load_from_file(str(path))
    _, kwargs, spandrel_id, size = CASES[name]
    scale = registry.scale_of(gen.model)
    assert descriptor.architecture.id == spandrel_id and descriptor.scale == scale
    x = lr_input(size)
    expected = ours(gen.model, x)
    assert expected.shape == (1, size * scale, size * scale, 3)
    np.testing.assert_allclose(spandrel_run(descriptor, x), expected, atol=1e-4)
    # and back into ours: the safetensors metadata, or the keys of the .pth
    again = open_generator(path)
    assert again.arch == gen.arch
    np.testing.assert_allclose(ours(again.model, x), expected, atol=1e-6)


def test_pth_wraps_params_ema_or_params_and_safetensors_keeps_metadata(tmp_path):
    from safetensors import safe_open

    ema = save.write(make("rrdb_x4"), tmp_path / "ema.pth")
    raw = save.write(make("rrdb_x4", weights="raw"), tmp_path / "raw.pth")
    assert list(torch.load(ema, weights_only=True)) == ["params_ema"]
    assert list(torch.load(raw, weights_only=True)) == ["params"]
    st = save.write(make("swinir_real"), tmp_path / "g.safetensors")
    with safe_open(str(st), "np") as f:
        meta = f.metadata()
    assert meta["architecture"] == "SwinIR" and meta["scale"] == "4" and meta["step"] == "7"
    assert json.loads(meta["kwargs"])["depths"] == [2, 2] and meta["weights"] == "ema"
    loaded = open_generator(st)
    assert loaded.kwargs == CASES["swinir_real"][1] and loaded.step == 7 and loaded.weights == "ema"


def test_writers_leave_no_partial_file(tmp_path, monkeypatch):
    gen = make("srvgg")
    with pytest.raises(UserError, match="missing/g.pth: the output folder .* does not exist"):
        save.write(gen, tmp_path / "missing" / "g.pth")
    with pytest.raises(UserError, match=r"g.onnx: unsupported output type '.onnx'"):
        save.write(gen, tmp_path / "g.onnx")

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(UserError, match="g.pth: cannot write"):
        save.write(gen, tmp_path / "g.pth")
    assert list(tmp_path.iterdir()) == []
    resized = Generator(gen.model, "SRVGGNetCompact", dict(upscale=2, net_scale=4), "ema")
    with pytest.raises(UserError, match="x4 network followed by a bicubic resize to x2"):
        save.write(resized, tmp_path / "g.safetensors")


def run_export(*args):
    from sslsr import export

    run_cli(export.main, "export", *args)


def test_export_cli_from_a_file_and_its_errors(tmp_path):
    src = save.write(make("rrdb_x2"), tmp_path / "src.pth")
    run_export(src, tmp_path / "out.safetensors", "--weights=raw")
    x = lr_input(8)
    np.testing.assert_allclose(ours(load_generator(tmp_path / "out.safetensors"), x), ours(make("rrdb_x2").model, x),
                               atol=1e-6)
    with pytest.raises(UserError, match="--dtype: applies to --format onnx only"):
        run_export(src, tmp_path / "o.pth", "--dtype=fp16")
    with pytest.raises(UserError, match=r"o.bin: cannot tell the format from '.bin'"):
        run_export(src, tmp_path / "o.bin")
    with pytest.raises(UserError, match="nope.pth: no such checkpoint"):
        run_export(tmp_path / "nope.pth", tmp_path / "o.pth")
    (tmp_path / "bad.pth").write_bytes(src.read_bytes()[:1000])
    with pytest.raises(UserError, match="bad.pth: cannot read weights, the file is truncated"):
        run_export(tmp_path / "bad.pth", tmp_path / "o.pth")
    torch.save({"params": {"foo.weight": torch.zeros(3)}}, tmp_path / "alien.pth")
    with pytest.raises(UserError, match=r"alien.pth: no known architecture's keys \(found 1 keys: foo.weight"):
        run_export(tmp_path / "alien.pth", tmp_path / "o.pth")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alien.pth", "bad.pth", "out.safetensors", "src.pth"]


ONNX_TOL = {"fp32": 1e-4, "fp16": 5e-3}  # fp16: weights and activations rounded to 11-bit mantissas


@pytest.mark.parametrize("name,dtype", [("rrdb_x2", "fp32"), ("rrdb_x2", "fp16"), ("rrdb_x1", "fp32"),
                                        ("rrdb_x4", "fp16"), ("srvgg", "fp32"), ("srvgg", "fp16")])
def test_onnx_dynamic_export_matches_ours_in_onnxruntime(name, dtype, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("jax2onnx")
    from sslsr.weights import onnx as onnx_export

    gen = make(name)
    path = onnx_export.write(gen, tmp_path / f"{name}.onnx", dtype=dtype, dynamic=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    np_dtype = np.float16 if dtype == "fp16" else np.float32
    for h, w in ((8, 8), (12, 16)):  # one graph, several sizes (and a batch of 2)
        x = np.random.default_rng(h).random((2, h, w, 3), np.float32)
        (y,) = session.run(None, {"input": x.transpose(0, 3, 1, 2).astype(np_dtype)})
        assert y.dtype == np_dtype
        np.testing.assert_allclose(y.astype(np.float32).transpose(0, 2, 3, 1), ours(gen.model, x),
                                   atol=ONNX_TOL[dtype])


def test_onnx_fixed_size_swinir_through_the_cli_and_refusals(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("jax2onnx")
    src = save.write(make("swinir_real"), tmp_path / "swin.safetensors")
    run_export(src, tmp_path / "swin.onnx", "--size=8")
    session = ort.InferenceSession(str(tmp_path / "swin.onnx"), providers=["CPUExecutionProvider"])
    x = lr_input(8)
    (y,) = session.run(None, {"input": x.transpose(0, 3, 1, 2)})
    np.testing.assert_allclose(y.transpose(0, 2, 3, 1), ours(make("swinir_real").model, x), atol=1e-4)
    with pytest.raises(UserError, match="swin2.onnx: --dynamic is not possible for this SwinIR: its shifted-window"):
        run_export(src, tmp_path / "swin2.onnx", "--dynamic")
    with pytest.raises(UserError, match="--dtype: ONNX export takes fp32 or fp16, got 'bfloat16'"):
        run_export(src, tmp_path / "swin2.onnx", "--dtype=bfloat16")
    msr = Generator(registry.build("MSRResNet", rngs=nnx.Rngs(0), num_feat=8, num_block=1, upscale=2),
                    "MSRResNet", dict(num_feat=8, num_block=1, upscale=2))
    from sslsr.weights import onnx as onnx_export

    with pytest.raises(UserError, match="MSRResNet: its bilinear skip"):
        onnx_export.write(msr, tmp_path / "msr.onnx", dynamic=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["swin.onnx", "swin.safetensors"]


def test_export_of_a_workdir_takes_ema_or_g_and_records_the_step(tmp_path):
    import ml_collections
    from safetensors import safe_open

    from sslsr.weights import checkpoints

    kw = dict(num_feat=8, num_conv=2, upscale=2)
    config = ml_collections.ConfigDict({"generator": {"arch": "SRVGGNetCompact", "kwargs": kw}})
    workdir = tmp_path / "run"
    checkpoints.save_config(str(workdir), config)
    g, ema = checkpoints.build_generator(config, seed=1), checkpoints.build_generator(config, seed=2)
    ckpt = checkpoints.Checkpointer(str(workdir), keep=1)
    ckpt.save(12, nnx.State({"g": nnx.state(g), "ema": nnx.state(ema)}))
    ckpt.close()
    run_export(workdir, tmp_path / "ema.pth")
    run_export(workdir / "checkpoints" / "12", tmp_path / "g.safetensors", "--weights=raw")
    x = lr_input(6)
    (key, sd), = torch.load(tmp_path / "ema.pth", weights_only=True).items()
    assert key == "params_ema"
    np.testing.assert_allclose(ours(load_generator(tmp_path / "ema.pth", param_key="params_ema"), x), ours(ema, x),
                               atol=1e-6)
    with safe_open(str(tmp_path / "g.safetensors"), "np") as f:
        meta = f.metadata()
    assert (meta["step"], meta["weights"], meta["architecture"]) == ("12", "raw", "SRVGGNetCompact")
    np.testing.assert_allclose(ours(load_generator(tmp_path / "g.safetensors"), x), ours(g, x), atol=1e-6)
