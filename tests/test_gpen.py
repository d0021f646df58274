"""GPEN's FullGenerator (sslsr.models.gpen) and the face restorers (sslsr.faces.restore).

Parity against tests/torch_refs/gpen.py with random weights at a tiny width, both conversion
directions, the published GPEN-BFR-512/-256 key sets (built on torch's 'meta' device: no weights
allocated), and the restorers' contracts and errors.
"""

import jax.numpy as jnp
import numpy as np
import pytest

from sslsr.errors import InputError, UserError
from sslsr.faces.restore import GPENRestorer, OracleRestorer, load_restorer
from sslsr.models import gpen, registry
from sslsr.weights import pytorch

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

from tests.torch_refs.gpen import FullGenerator as TorchFullGenerator  # noqa: E402

# 8 channels at every resolution (narrow 1/64 of 512), two mapping layers: ~0.1 s per forward.
TINY = dict(size=32, style_dim=16, n_mlp=2, channel_multiplier=1, narrow=1 / 64)


def nchw(x):
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def torch_forward(model, x_nhwc):
    with torch.no_grad():
        return model(nchw(x_nhwc)).numpy().transpose(0, 2, 3, 1)


@pytest.fixture(scope="module")
def tiny():
    """(torch reference, its state dict) with every parameter random, zero-initialised ones too
    (noise weights, biases), so each term of the forward matters; the RGB layers are scaled down
    so that the output stays inside [-1, 1] (the restorer clips)."""
    torch.manual_seed(0)
    ref = TorchFullGenerator(**TINY).eval()
    with torch.no_grad():
        for name, p in ref.named_parameters():
            if name.endswith("bias") or name.endswith("noise.weight"):
                p.normal_(0.0, 0.5)
            if "to_rgb" in name and name.endswith("conv.weight"):
                p.mul_(0.1)
    return ref, {k: v.clone() for k, v in ref.state_dict().items()}


@pytest.fixture(scope="module")
def faces():
    return np.random.default_rng(0).uniform(0, 1, (2, 32, 32, 3)).astype(np.float32)


def rel_err(a, b):
    return float(np.max(np.abs(np.asarray(a) - b)) / np.max(np.abs(b)))


def test_gpen_matches_pytorch_both_directions(tiny, faces):
    ref, sd = tiny
    x = faces * 2 - 1
    expected = torch_forward(ref, x)
    assert 0.2 < np.abs(expected).max() < 1  # no clipping hides a difference
    model = pytorch.from_torch(sd, "GPEN", **TINY)
    restorer = GPENRestorer(model)
    got = np.asarray(restorer.restore(faces))  # the restorer maps [0, 1] <-> [-1, 1] like GPEN
    np.testing.assert_array_less(rel_err(got, np.clip(expected * 0.5 + 0.5, 0, 1)), 1e-4)
    assert restorer.size == 32

    # NNX -> PyTorch: every key (blur buffers included) loads strictly and gives the same output.
    back = pytorch.to_torch_state_dict(model, "GPEN")
    assert set(back) == set(sd)
    for key in sd:
        np.testing.assert_array_equal(back[key], sd[key].numpy(), err_msg=key)
    fresh = TorchFullGenerator(**TINY).eval()
    fresh.load_state_dict({k: torch.from_numpy(v) for k, v in back.items()}, strict=True)
    np.testing.assert_allclose(torch_forward(fresh, x), expected, rtol=0, atol=1e-6)


def test_restorer_resizes_other_face_sizes(tiny):
    model = pytorch.from_torch(tiny[1], "GPEN", **TINY)
    faces = np.random.default_rng(1).uniform(0, 1, (2, 48, 48, 3)).astype(np.float32)
    out = np.asarray(GPENRestorer(model, batch_size=1).restore(faces))  # two chunks, one compile
    assert out.shape == faces.shape and out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("size", [512, 256])
def test_published_key_sets(size):
    """Every key and shape of GPEN-BFR-`size` (GPEN's own module tree, rebuilt on 'meta')."""
    kw = gpen.BFR[size]
    abstract = pytorch.abstract_model("GPEN", **kw)
    ours = {k: tuple(var.get_value().shape) for k, (_, var) in pytorch.torch_variables(abstract).items()}
    buffers = gpen.torch_buffers(abstract)
    with torch.device("meta"):
        published = TorchFullGenerator(**kw)
    theirs = {k: tuple(v.shape) for k, v in published.state_dict().items()}
    assert {**ours, **{k: v.shape for k, v in buffers.items()}} == theirs
    n_params = sum(int(np.prod(s)) for s in ours.values())
    assert n_params == {512: 71_005_223, 256: 18_879_010}[size]
    assert registry.architecture("GPEN").role == registry.RESTORER


def _save_gpen_file(path, size):
    """A GPEN-BFR-`size`-shaped state dict (zeros, real blur buffers) saved as a .pth."""
    abstract = pytorch.abstract_model("GPEN", **gpen.BFR[size])
    sd = {k: torch.zeros(var.get_value().shape) for k, (_, var) in pytorch.torch_variables(abstract).items()}
    sd.update({k: torch.from_numpy(v) for k, v in gpen.torch_buffers(abstract).items()})
    torch.save(sd, path)


def test_load_restorer_and_its_errors(tmp_path, tiny):
    good = tmp_path / "GPEN-BFR-256.pth"
    _save_gpen_file(good, 256)
    restorer = load_restorer(good, size=256)
    assert (restorer.size, restorer.name) == (256, "GPEN-BFR-256")
    assert isinstance(restorer.module, gpen.FullGenerator)

    def one_line_error(kind, path, size=512):
        with pytest.raises(kind) as info:
            load_restorer(path, size=size)
        message = str(info.value)
        assert "\n" not in message and message.startswith(str(path)), message
        return message

    # The 256 file read as a 512 restorer; an SR network's file; a truncated file; no file.
    assert "not a GPEN-BFR-512 face restorer" in one_line_error(InputError, good)
    other = tmp_path / "RealESRGAN.pth"
    torch.save({"conv_first.weight": torch.zeros(4, 3, 3, 3)}, other)
    assert "missing keys" in one_line_error(InputError, other, size=256)
    broken = tmp_path / "broken.pth"
    broken.write_bytes(good.read_bytes()[:1000])
    one_line_error(UserError, broken)
    one_line_error(UserError, tmp_path / "absent.pth")
    with pytest.raises(UserError, match="restorer size 128"):
        load_restorer(good, size=128)


def test_oracle_restorer_returns_ground_truth(faces):
    oracle = OracleRestorer(faces)
    assert (oracle.name, oracle.size) == ("oracle", 32)
    np.testing.assert_array_equal(np.asarray(oracle.restore(jnp.zeros_like(faces))), faces)
    with pytest.raises(InputError, match="oracle"):
        oracle.restore(faces[:1])
    with pytest.raises(InputError, match="oracle"):
        OracleRestorer(faces[..., 0])
