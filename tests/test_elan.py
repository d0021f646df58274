"""ELAN against a PyTorch reference (tests/torch_refs/elan.py): outputs, both conversion directions,
the fixed shift kernel as a checked buffer, the full-size parameter count."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from sslsr.errors import InputError
from sslsr.models import registry
from sslsr.models.elan import shift_channels, shift_weight
from sslsr.weights import pytorch

torch = pytest.importorskip("torch")
from tests.torch_refs.elan import ELAN as TorchELAN  # noqa: E402

pytestmark = pytest.mark.torch

# Small but complete in one compiled model: both block kinds (plain, shifted), attention computed
# (gmsa_0) and shared (gmsa_1, n_share=1), three window sizes, a 16-window that the shift rolls by
# 8, an input that is not a multiple of 16 (reflect padding, then a crop).
SMALL = dict(c_elan=24, m_elan=4, n_share=1, window_sizes=(4, 8, 16), scale=2)


def _torch_state(model):
    return {k: v.detach().numpy() for k, v in model.state_dict().items()}


def _randomise(model):
    torch.manual_seed(0)
    with torch.no_grad():  # LayerNorm affine terms away from (1, 0) so they matter
        for name, p in model.named_parameters():
            if ".norm." in name:
                p.add_(0.2 * torch.randn_like(p))


def _outputs(kwargs, hw, seed):
    torch.manual_seed(seed)
    ref = TorchELAN(**kwargs).eval()
    _randomise(ref)
    x = np.random.default_rng(seed).random((2, *hw, 3)).astype(np.float32)
    with torch.no_grad():
        expect = ref(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy().transpose(0, 2, 3, 1)
    model = pytorch.from_torch(_torch_state(ref), "ELAN", **kwargs)
    got = np.asarray(nnx.jit(lambda m, v: m(v))(model, jnp.asarray(x)))
    return ref, model, x, got, expect


def test_elan_matches_pytorch_and_round_trips():
    kwargs, hw = SMALL, (13, 18)
    ref, model, x, got, expect = _outputs(kwargs, hw, seed=1)
    assert got.shape == (2, hw[0] * kwargs["scale"], hw[1] * kwargs["scale"], 3)
    assert np.max(np.abs(got - expect)) <= 1e-4 * np.max(np.abs(expect))
    # Export: loads strictly into the reference (shift kernels included) and gives the same output.
    sd = pytorch.to_torch_state_dict(model, "ELAN")
    assert set(sd) == set(ref.state_dict())
    back = TorchELAN(**kwargs).eval()
    back.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=True)
    with torch.no_grad():
        again = back(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy().transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(again, expect)


def test_shift_kernel_is_a_checked_buffer():
    torch.manual_seed(0)
    ref = TorchELAN(**SMALL)
    sd = _torch_state(ref)
    key = "body.1.modules_lfe.lfe_1.conv1.shift_conv.weight"
    np.testing.assert_array_equal(sd[key], shift_weight(48))
    bad = dict(sd, **{key: np.roll(sd[key], 1, axis=0)})
    with pytest.raises(InputError, match="buffers that do not match"):
        pytorch.from_torch(bad, "ELAN", **SMALL)
    # The slicing shift equals the depthwise conv with that kernel (zero padding).
    x = np.random.default_rng(1).random((1, 5, 6, 11)).astype(np.float32)
    conv = torch.nn.functional.conv2d(torch.from_numpy(x.transpose(0, 3, 1, 2)), torch.from_numpy(shift_weight(11)),
                                      padding=1, groups=11).numpy().transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(np.asarray(shift_channels(jnp.asarray(x))), conv)


def test_full_size_parameter_count_and_registry():
    n = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(nnx.state(pytorch.abstract_model("ELAN"), nnx.Param)))
    # The PyTorch model's trainable parameters (the frozen shift kernels excluded).
    torch_count = sum(p.numel() for p in TorchELAN().parameters() if p.requires_grad)
    assert n == torch_count
    assert registry.architecture("ELAN").scale({}) == 4
    with pytest.raises(ValueError, match="multiple of 3"):
        registry.build("ELAN", rngs=nnx.Rngs(0), c_elan=20)


def test_detect_reads_the_constructor_from_the_keys():
    from sslsr.errors import UserError
    from sslsr.weights import detect

    torch.manual_seed(0)
    sd = _torch_state(TorchELAN(**SMALL))
    arch, kwargs, _ = detect.identify(sd)
    assert arch == "ELAN"
    assert kwargs == dict(colors=3, c_elan=24, n_share=1, r_expand=2, m_elan=4, scale=2)
    official = dict(sd, **{"body.0.modules_gmsa.gmsa_0.project_inp.1.running_mean": np.zeros(48, np.float32)})
    with pytest.raises(UserError, match="BatchNorm"):
        detect.identify(official)
