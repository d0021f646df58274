"""sslsr.weights: load_generator's sources and errors, and module constructors free of file I/O."""

import builtins

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from sslsr.errors import UserError
from sslsr.metrics import DISTS, LPIPS
from sslsr.models import AlexNetFeatures, VGGFeatures
from sslsr.weights import checkpoints, load_generator, offline, pytorch

MSR_KW = dict(num_feat=8, num_block=1, upscale=2)


def _forward(model, x):
    return np.asarray(nnx.jit(lambda m, x: m(x))(model, jnp.asarray(x)))


def test_constructors_read_no_files(monkeypatch):
    def no_open(*args, **kwargs):
        raise AssertionError(f"a constructor opened {args[0] if args else kwargs}")

    monkeypatch.setattr(builtins, "open", no_open)
    for make in (
        lambda: VGGFeatures("vgg19", ("conv5_4",), rngs=nnx.Rngs(0)),
        lambda: AlexNetFeatures(rngs=nnx.Rngs(0)),
        lambda: LPIPS("vgg", input_range="[0,1]", rngs=nnx.Rngs(0)),
        lambda: DISTS(rngs=nnx.Rngs(0)),
    ):
        nnx.eval_shape(make)


def test_load_generator_from_a_weights_file(tmp_path):
    from safetensors.numpy import save_file

    from sslsr.models import MSRResNet

    model = MSRResNet(**MSR_KW, rngs=nnx.Rngs(1))
    path = tmp_path / "msr.safetensors"
    save_file(pytorch.to_torch_state_dict(model, "MSRResNet"), str(path))
    loaded = load_generator(path, arch="MSRResNet", **MSR_KW)
    x = np.random.default_rng(0).random((1, 6, 5, 3)).astype(np.float32)
    np.testing.assert_array_equal(_forward(loaded, x), _forward(model, x))


def test_load_generator_from_a_workdir_prefers_ema(tmp_path):
    config = ml_collections.ConfigDict({"generator": {"arch": "MSRResNet", "kwargs": MSR_KW}})
    checkpoints.save_config(str(tmp_path), config)
    g = checkpoints.build_generator(config, seed=1)
    ema = checkpoints.build_generator(config, seed=2)
    ckpt = checkpoints.Checkpointer(str(tmp_path), keep=1)
    ckpt.save(5, nnx.State({"g": nnx.state(g), "ema": nnx.state(ema)}))
    ckpt.close()
    x = np.random.default_rng(0).random((1, 6, 5, 3)).astype(np.float32)
    np.testing.assert_array_equal(_forward(load_generator(tmp_path), x), _forward(ema, x))
    step_dir = tmp_path / "checkpoints" / "5"
    np.testing.assert_array_equal(_forward(load_generator(step_dir, prefer_ema=False), x), _forward(g, x))


def test_load_generator_errors_name_the_file(tmp_path):
    with pytest.raises(UserError, match="missing.pth: no such checkpoint"):
        load_generator(tmp_path / "missing.pth", arch="RRDBNet")
    (tmp_path / "w.pth").write_bytes(b"")
    # Without --arch the architecture is detected from the file (issue 12); an empty file is unreadable.
    with pytest.raises(UserError, match=r"w.pth: cannot read weights, the file is truncated"):
        load_generator(tmp_path / "w.pth")
    (tmp_path / "w.ckpt").write_bytes(b"")
    with pytest.raises(UserError, match="w.ckpt: unsupported checkpoint type '.ckpt'"):
        load_generator(tmp_path / "w.ckpt", arch="RRDBNet")


def test_load_features_checks_arch_and_lists_every_problem():
    with pytest.raises(ValueError, match="arch must be one of vgg16, vgg19, alexnet"):
        offline.load_features("resnet50")
    module = nnx.eval_shape(lambda: VGGFeatures("vgg16", ("relu1_2",), rngs=nnx.Rngs(0)))
    arrays = {"features.0.kernel": np.zeros((3, 3, 3, 64)), "features.2.kernel": np.zeros((3, 3, 64, 8))}
    with pytest.raises(ValueError, match=r"src: .*missing features.0.bias; .*features.2.kernel has shape \(3, 3, 64, 8\)"):
        offline.fill(module, arrays, "src")
