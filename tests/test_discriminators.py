"""Discriminators: exact parameter counts and PyTorch parity (BatchNorm, spectral norm) in train
and eval mode, including running statistics, u/v updates and gradients."""

import numpy as np
import pytest

import jax
import jax.numpy as jnp
from flax import nnx

from sslsr import convert
from sslsr.models.discriminators import BatchNorm2d, UNetDiscriminatorSN, VGGStyleDiscriminator
from sslsr.models.spectral_norm import SpectralNormConv

torch = pytest.importorskip("torch")
refs = pytest.importorskip("tests.torch_refs.discriminators")


def n_params(module) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(module, nnx.Param)))


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def torch_sd(model) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def to_torch_tensors(sd: dict[str, np.ndarray]) -> dict:
    return {k: torch.from_numpy(np.array(v)) for k, v in sd.items()}


def to_nchw(x):
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def forward(model, x):
    return nnx.jit(lambda m, x: m(x))(model, jnp.asarray(x))


def test_full_size_parameter_counts():
    assert n_params(nnx.eval_shape(lambda: VGGStyleDiscriminator(3, 64, rngs=nnx.Rngs(0)))) == 14_499_401
    assert n_params(nnx.eval_shape(lambda: UNetDiscriminatorSN(3, 64, rngs=nnx.Rngs(0)))) == 4_376_897
    # 256 input: one more stage (2 convs of 512x512, 2 BatchNorms) than at 128.
    extra = 512 * 512 * (9 + 16) + 2 * 2 * 512
    assert n_params(nnx.eval_shape(lambda: VGGStyleDiscriminator(3, 64, 256, rngs=nnx.Rngs(0)))) == 14_499_401 + extra
    # Same counts as the PyTorch reference (u, v are buffers there and state here).
    assert sum(p.numel() for p in refs.UNetDiscriminatorSN(3, 64).parameters()) == 4_376_897


def test_bad_input_sizes_raise():
    d = nnx.eval_shape(lambda: VGGStyleDiscriminator(3, 8, rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match="128x128"):
        d(jnp.zeros((1, 64, 64, 3)))
    with pytest.raises(ValueError, match="input_size"):
        VGGStyleDiscriminator(3, 8, input_size=96, rngs=nnx.Rngs(0))
    u = nnx.eval_shape(lambda: UNetDiscriminatorSN(3, 8, rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match="multiples of 8"):
        u(jnp.zeros((1, 20, 24, 3)))


def test_train_eval_switch_reaches_bn_and_sn():
    u = nnx.eval_shape(lambda: UNetDiscriminatorSN(3, 4, rngs=nnx.Rngs(0)))
    d = nnx.eval_shape(lambda: VGGStyleDiscriminator(3, 4, rngs=nnx.Rngs(0)))
    assert not u.conv3.use_running_average and not d.bn2_1.use_running_average  # PyTorch default
    u.eval()
    d.eval()
    assert u.conv3.use_running_average and d.bn2_1.use_running_average
    u.train()
    assert not u.conv3.use_running_average
    # u, v and running statistics are state, not parameters.
    assert {p[-1] for p, _ in nnx.to_flat_state(nnx.state(u, nnx.BatchStat))} == {"weight_u", "weight_v"}
    assert {p[-1] for p, _ in nnx.to_flat_state(nnx.state(d, nnx.BatchStat))} == {"mean", "var", "num_batches_tracked"}


def test_batchnorm_matches_numpy_oracle():
    """Train mode normalises with the biased variance and stores the unbiased one (n/(n-1))."""
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 4)).astype(np.float32) * 3 + 1
    bn = BatchNorm2d(4)
    y = np.asarray(bn(jnp.asarray(x)))
    mu, var = x.mean((0, 1, 2)), x.var((0, 1, 2))
    np.testing.assert_allclose(y, (x - mu) / np.sqrt(var + 1e-5), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(bn.mean[...]), 0.1 * mu, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(bn.var[...]), 0.9 + 0.1 * var * 30 / 29, rtol=1e-5)
    assert int(bn.num_batches_tracked[...]) == 1


def test_spectral_norm_eval_uses_stored_uv_and_train_updates_them():
    sn = SpectralNormConv(3, 5, 3, 1, 1, rngs=nnx.Rngs(1))
    w = np.asarray(sn.weight_orig[...]).transpose(3, 2, 0, 1).reshape(5, -1)
    u0, v0 = np.asarray(sn.weight_u[...]), np.asarray(sn.weight_v[...])
    sn.eval()
    np.testing.assert_allclose(np.asarray(sn.normalized_kernel()), np.asarray(sn.weight_orig[...]) / (u0 @ w @ v0), rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(sn.weight_u[...]), u0)
    sn.train()
    sn.normalized_kernel()
    v1 = w.T @ u0
    v1 /= np.linalg.norm(v1)
    u1 = w @ v1
    u1 /= np.linalg.norm(u1)
    np.testing.assert_allclose(np.asarray(sn.weight_v[...]), v1, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(sn.weight_u[...]), u1, rtol=1e-5, atol=1e-6)


def _grads_as_torch(model, arch, x):
    """d(sum(D(x)))/d(params) in PyTorch naming and layout (train mode, one step)."""

    def loss(m, x):
        return jnp.sum(m(x))

    grads = nnx.jit(nnx.grad(loss))(model, jnp.asarray(x))
    holder = nnx.clone(model)
    nnx.update(holder, grads)
    return convert.to_torch_state_dict(holder, arch)


def _check_parity(ref, arch, x, kwargs, state_keys):
    ref.train()
    model = convert.from_torch(torch_sd(ref), arch, **kwargs)
    grad_model = nnx.clone(model)
    xt = to_nchw(x)

    # Two training steps: batch statistics / power iteration, and the state they leave behind.
    model.train()
    for step in range(2):
        out_t = ref(xt)
        out_j = forward(model, x)
        assert rel_err(np.moveaxis(np.asarray(out_j), -1, 1), out_t.detach().numpy()) <= 1e-4, step
    after = convert.to_torch_state_dict(model, arch)
    for key, value in torch_sd(ref).items():
        if any(key.endswith(s) for s in state_keys):
            assert rel_err(after[key], value) <= 1e-4, key
        if key.endswith("num_batches_tracked"):
            assert int(after[key]) == int(value), key

    # Eval mode: running statistics / stored u, v, and nothing changes.
    ref.eval()
    model.eval()
    before = convert.to_torch_state_dict(model, arch)
    with torch.no_grad():
        out_t = ref(xt).numpy()
    out_j = np.asarray(forward(model, x))
    assert rel_err(np.moveaxis(out_j, -1, 1), out_t) <= 1e-4
    after = convert.to_torch_state_dict(model, arch)
    for key in before:
        np.testing.assert_array_equal(after[key], before[key], err_msg=key)

    # Gradients of one training step from the converted initial weights.
    ref_grad = type(ref)(**kwargs)
    ref_grad.load_state_dict(to_torch_tensors(convert.to_torch_state_dict(grad_model, arch)))
    ref_grad.train()
    ref_grad(xt).sum().backward()
    grad_model.train()
    grads = _grads_as_torch(grad_model, arch, x)
    for name, p in ref_grad.named_parameters():
        assert rel_err(grads[name], p.grad.numpy()) <= 1e-4, name


@pytest.mark.torch
def test_vgg_style_discriminator_matches_pytorch():
    torch.manual_seed(0)
    kwargs = dict(num_in_ch=3, num_feat=8, input_size=128)
    ref = refs.VGGStyleDiscriminator(**kwargs)
    refs.randomize_batchnorm(ref)
    x = np.random.default_rng(0).random((2, 128, 128, 3)).astype(np.float32)
    _check_parity(ref, "VGGStyleDiscriminator", x, kwargs, ("running_mean", "running_var"))


@pytest.mark.torch
def test_unet_discriminator_sn_matches_pytorch():
    torch.manual_seed(0)
    kwargs = dict(num_in_ch=3, num_feat=8, skip_connection=True)
    ref = refs.UNetDiscriminatorSN(**kwargs)
    x = np.random.default_rng(1).random((2, 32, 32, 3)).astype(np.float32)
    _check_parity(ref, "UNetDiscriminatorSN", x, kwargs, ("weight_u", "weight_v"))


@pytest.mark.torch
def test_round_trip_state_dicts():
    for ref, arch, kwargs in [
        (refs.VGGStyleDiscriminator(3, 4, 256), "VGGStyleDiscriminator", dict(num_feat=4, input_size=256)),
        (refs.UNetDiscriminatorSN(3, 4, skip_connection=False), "UNetDiscriminatorSN", dict(num_feat=4, skip_connection=False)),
    ]:
        refs.randomize_batchnorm(ref)
        sd = torch_sd(ref)
        back = convert.to_torch_state_dict(convert.from_torch(sd, arch, **kwargs), arch)
        assert back.keys() == sd.keys()
        for key, value in sd.items():
            np.testing.assert_array_equal(back[key], value, err_msg=key)
            assert back[key].dtype == value.dtype, key
