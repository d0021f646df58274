"""ResShift's denoiser (ResShiftUNet) and autoencoder (VQAutoencoder) against PyTorch references
written from the published architecture: forward parity, weight round trips, the straight-through
decode gradient, the published sizes, and wrong-file errors.

Modules are built from the PyTorch weights (`convert.from_torch`, no NNX initialisation) and run
under one jit each, at tiny widths, to keep this file fast on CPU.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from sslsr import convert
from sslsr.errors import InputError, UserError
from sslsr.models import precision, registry
from sslsr.weights import detect
from sslsr.weights.pytorch import abstract_model

torch = pytest.importorskip("torch")

from tests.torch_refs import resshift as ref  # noqa: E402 - needs torch

pytestmark = pytest.mark.torch

# Two levels, Swin at 16 (shifted 4x4 windows) and 8 (encoder, middle, decoder), per-level blocks.
UNET_KW = dict(image_size=16, in_channels=3, model_channels=32, out_channels=3, num_res_blocks=(2, 1),
               attention_resolutions=(16, 8), channel_mult=(1, 2), num_head_channels=16, swin_depth=2,
               swin_embed_dim=32, window_size=4, mlp_ratio=2, lq_size=16)
# lq twice the latent size: ResShift's learned feature extractor; one level, middle Swin only.
UNET_LQ_KW = dict(image_size=8, in_channels=4, model_channels=32, out_channels=2, num_res_blocks=1,
                  attention_resolutions=(), channel_mult=(1,), num_head_channels=16, swin_depth=1,
                  swin_embed_dim=32, window_size=4, mlp_ratio=2, lq_size=16)
VQ_KW = dict(ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(8,), resolution=16, z_channels=3,
             embed_dim=3, n_embed=64)


def randomize(model, seed):
    """Random weights everywhere, norms and position-bias tables included (defaults hide bugs)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if name.endswith("relative_position_bias_table"):
                p.copy_(0.5 * noise)
            elif p.ndim == 1 and ("norm" in name or "in_layers.0" in name or "out_layers.0" in name
                                  or name.startswith("out.0")):
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.2 * noise)
            elif p.ndim == 1:
                p.copy_(0.1 * noise)
            elif "embedding" in name:
                p.copy_(noise)
            else:
                p.copy_(noise / np.sqrt(p[0].numel()))
    return model.eval()


def numpy_sd(model):
    return {k: v.numpy() for k, v in model.state_dict().items()}


def nchw(x):
    return torch.from_numpy(np.ascontiguousarray(np.asarray(x, np.float32).transpose(0, 3, 1, 2)))


def nhwc(t):
    return t.detach().numpy().transpose(0, 2, 3, 1)


def assert_close(actual, expected, rel=1e-4):
    actual, expected = np.asarray(actual, np.float32), np.asarray(expected, np.float32)
    assert actual.shape == expected.shape
    err = np.abs(actual - expected).max() / np.abs(expected).max()
    assert err <= rel, f"max error {err:.2e} of the output scale"


def assert_same_state(a, b):
    assert sorted(a) == sorted(b)
    for key in a:
        assert a[key].dtype == b[key].dtype, key
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.fixture(scope="module")
def unet():
    torch_model = randomize(ref.UNetModelSwin(**UNET_KW), 0)
    return torch_model, convert.from_torch(torch_model.state_dict(), "ResShiftUNet", **UNET_KW)


@pytest.fixture(scope="module")
def vq():
    torch_model = randomize(ref.VQModelTorch(**VQ_KW), 1)
    return torch_model, convert.from_torch(torch_model.state_dict(), "VQAutoencoder", **VQ_KW)


def test_unet_matches_pytorch_and_round_trips(unet):
    torch_model, model = unet
    rng = np.random.default_rng(0)
    x, lq = rng.standard_normal((2, 16, 16, 3)), rng.uniform(-1, 1, (2, 16, 16, 3))
    t = np.array([0, 11], np.int32)
    with torch.no_grad():
        expected = nhwc(torch_model(nchw(x), torch.from_numpy(t), nchw(lq)))
    got = nnx.jit(lambda m, x, t, lq: m(x, t, lq))(model, jnp.asarray(x, jnp.float32), jnp.asarray(t),
                                                     jnp.asarray(lq, jnp.float32))
    assert_close(got, expected)
    sd = numpy_sd(torch_model)
    assert any(k.endswith("attn_mask") for k in sd)  # the shifted 16x16 level's buffers travel too
    assert_same_state(convert.to_torch_state_dict(model, "ResShiftUNet"), sd)


def test_unet_lq_feature_extractor_float_timesteps_and_bf16():
    torch_model = randomize(ref.UNetModelSwin(**UNET_LQ_KW), 2)
    model = convert.from_torch(torch_model.state_dict(), "ResShiftUNet", **UNET_LQ_KW)
    assert any(k.startswith("feature_extractor.2.op.") for k in torch_model.state_dict())
    rng = np.random.default_rng(1)
    x, lq = rng.standard_normal((1, 8, 8, 4)), rng.uniform(-1, 1, (1, 16, 16, 3))
    t = np.array([3.5], np.float32)
    with torch.no_grad():
        expected = nhwc(torch_model(nchw(x), torch.from_numpy(t), nchw(lq)))

    @nnx.jit(static_argnums=4)
    def run(m, x, t, lq, dtype):
        m, x, lq = precision.cast_floating((m, x, lq), dtype)
        return m(x, t, lq)

    args = (model, jnp.asarray(x, jnp.float32), jnp.asarray(t), jnp.asarray(lq, jnp.float32))
    assert_close(run(*args, jnp.float32), expected)
    low = run(*args, jnp.bfloat16)
    assert low.dtype == jnp.bfloat16
    assert_close(low, expected, rel=5e-2)
    with pytest.raises(ValueError, match="lq"):
        model(jnp.zeros((1, 8, 8, 4)), jnp.zeros((1,)), jnp.zeros((1, 8, 8, 3)))
    assert_same_state(convert.to_torch_state_dict(model, "ResShiftUNet"), numpy_sd(torch_model))


def test_vq_encode_decode_match_pytorch_and_round_trip(vq):
    torch_model, model = vq
    assert model.factor == 2
    x = np.random.default_rng(2).uniform(-1, 1, (2, 16, 16, 3))
    with torch.no_grad():
        z_ref = torch_model.encode(nchw(x))
        dec_ref = torch_model.decode(z_ref)

    @nnx.jit
    def run(m, x):
        z = m.encode(x)
        return z, m.decode(z)

    z, dec = run(model, jnp.asarray(x, jnp.float32))
    assert z.shape == (2, 8, 8, 3) and dec.shape == (2, 16, 16, 3)
    assert_close(z, nhwc(z_ref))
    assert_close(dec, nhwc(dec_ref))
    assert_same_state(convert.to_torch_state_dict(model, "VQAutoencoder"), numpy_sd(torch_model))


def test_decode_gradient_is_straight_through(vq):
    _, model = vq
    rng = np.random.default_rng(3)
    z = jnp.asarray(rng.standard_normal((1, 4, 4, 3)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((1, 8, 8, 3)), jnp.float32)

    @nnx.jit
    def grads(m, z):
        zq = m.quantize(z)
        through = jax.grad(lambda z: jnp.sum(m.decode(z) * w))(z)
        direct = jax.grad(lambda q: jnp.sum(m.decode(q, force_not_quantize=True) * w))(zq)
        return zq, through, direct

    zq, through, direct = grads(model, z)
    codes = np.asarray(model.quantize.embedding.weight[...])
    assert np.isin(np.asarray(zq).reshape(-1, 3).round(5), codes.round(5)).all()  # zq holds codes
    assert float(jnp.abs(through).max()) > 0
    np.testing.assert_allclose(through, direct, rtol=1e-5, atol=1e-6 * float(jnp.abs(direct).max()))


def test_published_sizes():
    def count(module):
        return sum(int(np.prod(v.shape)) for v in jax.tree.leaves(nnx.state(module, nnx.Param)))

    unet = abstract_model("ResShiftUNet")  # defaults = realsr_swinunet_realesrgan256
    vq = abstract_model("VQAutoencoder")  # defaults = VQ-f4
    with torch.device("meta"):  # shapes only
        torch_unet = ref.UNetModelSwin(64, 3, 160, 3, 2, (64, 32, 16, 8), (1, 2, 2, 4), 32, 2, 192, 8, 4, 64)
        torch_vq = ref.VQModelTorch(128, (1, 2, 4), 2, (), 256, 3, 3, 8192)
    assert count(unet) == sum(p.numel() for p in torch_unet.parameters()) == 118_593_583  # the paper's 118.6M
    assert count(vq) == sum(p.numel() for p in torch_vq.parameters())
    assert unet.size_multiple == 64 and vq.factor == 4 and unet.in_channels == vq.embed_dim == 3
    # The published pipeline's shapes, traced only: 256x256 image <-> 64x64 latent, 64x64 LR.
    latent = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
    image = jax.ShapeDtypeStruct((1, 256, 256, 3), jnp.float32)
    assert nnx.eval_shape(lambda m, z: m(z, jnp.zeros((1,), jnp.int32), z), unet, latent).shape == latent.shape
    assert nnx.eval_shape(lambda m, x: m.encode(x), vq, image).shape == latent.shape
    assert nnx.eval_shape(lambda m, z: m.decode(z), vq, latent).shape == image.shape
    assert registry.architecture("ResShiftUNet").role == registry.DENOISER
    assert registry.architecture("VQAutoencoder").role == registry.AUTOENCODER


def test_wrong_files_fail_with_one_line(unet, vq, tmp_path):
    unet_sd, vq_sd = numpy_sd(unet[0]), numpy_sd(vq[0])
    path = tmp_path / "resshift.pth"
    torch.save({"state_dict": unet[0].state_dict()}, path)
    with pytest.raises(InputError) as e:
        convert.from_torch(path, "VQAutoencoder", **VQ_KW)
    assert str(e.value) == f"{path} holds a ResShiftUNet (denoiser) state dict, not a VQAutoencoder"
    with pytest.raises(InputError, match=r"^state dict holds a VQAutoencoder \(autoencoder\) state dict, "
                                         r"not a ResShiftUNet$"):
        convert.from_torch(vq_sd, "ResShiftUNet", **UNET_KW)
    with pytest.raises(UserError, match="holds a ResShiftUNet .* not a super-resolution generator"):
        detect.identify(unet_sd, "resshift.pth")  # what generator loading (upscale, eval) reports


def test_wrappers_and_prefixes(vq):
    torch_model, _ = vq
    sd = numpy_sd(torch_model)
    wrapped = {"state_dict": {f"module._orig_mod.{k}": v for k, v in sd.items()}}
    wrapped["state_dict"]["loss.discriminator.main.0.weight"] = np.zeros(3, np.float32)  # LDM training loss
    loaded = convert.to_torch_state_dict(convert.from_torch(wrapped, "VQAutoencoder", **VQ_KW), "VQAutoencoder")
    assert_same_state(loaded, sd)
    assert sorted(convert.load_state_dict({f"_orig_mod.module.{k}": v for k, v in sd.items()})) == sorted(sd)
