"""Generators: exact parameter counts, flip padding, layout helpers and outputs vs PyTorch references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from sslsr import convert
from sslsr.models.precision import cast_floating
from sslsr.models import SwinIR
from sslsr.models.layers import pixel_shuffle, pixel_unshuffle, upsample_bilinear
from sslsr.weights import pytorch

try:
    import torch
except ImportError:  # the parameter-count and padding tests run without the torch extra
    torch = None


def needs_torch(test):
    """PyTorch is the reference for most tests here (the `torch` extra)."""
    return pytest.mark.torch(pytest.mark.skipif(torch is None, reason="needs the torch extra")(test))


def n_params(module) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(module, nnx.Param)))


def rel_err(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a) - b)) / np.max(np.abs(b)))


def torch_forward(model, x_nhwc: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        y = model(torch.from_numpy(x_nhwc.transpose(0, 3, 1, 2).copy()))
    return y.numpy().transpose(0, 2, 3, 1)


def jax_forward(model, x_nhwc: np.ndarray) -> np.ndarray:
    return np.asarray(nnx.jit(lambda m, x: m(x))(model, jnp.asarray(x_nhwc)))


def test_full_size_parameter_counts():
    # abstract_model is nnx.eval_shape (no init, no compile) with a tracing-speed workaround.
    assert n_params(pytorch.abstract_model("RRDBNet")) == 16_697_987
    # BasicSR's MSRResNet (num_feat 64, 16 blocks, x4).
    assert n_params(pytorch.abstract_model("MSRResNet")) == 1_517_571


@needs_torch
def test_pixel_shuffle_matches_torch_ordering():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 5, 12)).astype(np.float32)  # NHWC, 12 = 3 * 2 * 2
    ref = torch.nn.functional.pixel_shuffle(torch.from_numpy(x.transpose(0, 3, 1, 2)), 2).numpy()
    np.testing.assert_array_equal(np.asarray(pixel_shuffle(jnp.asarray(x), 2)), ref.transpose(0, 2, 3, 1))
    y = rng.standard_normal((1, 8, 4, 3)).astype(np.float32)
    ref = torch.nn.functional.pixel_unshuffle(torch.from_numpy(y.transpose(0, 3, 1, 2)), 4).numpy()
    np.testing.assert_array_equal(np.asarray(pixel_unshuffle(jnp.asarray(y), 4)), ref.transpose(0, 2, 3, 1))


@needs_torch
def test_bilinear_upsample_matches_torch():
    x = np.random.default_rng(1).random((1, 5, 7, 2)).astype(np.float32)
    for s in (2, 3, 4):
        ref = torch.nn.functional.interpolate(
            torch.from_numpy(x.transpose(0, 3, 1, 2)), scale_factor=s, mode="bilinear", align_corners=False
        ).numpy()
        np.testing.assert_allclose(
            np.asarray(upsample_bilinear(jnp.asarray(x), s)), ref.transpose(0, 2, 3, 1), atol=1e-6
        )


@needs_torch
@pytest.mark.parametrize("scale", [4, 2, 1])
def test_rrdbnet_matches_pytorch(scale):
    from tests.torch_refs.rrdbnet import RRDBNet as TorchRRDBNet

    torch.manual_seed(scale)
    kw = dict(num_in_ch=3, num_out_ch=3, scale=scale, num_feat=16, num_block=2, num_grow_ch=8)
    ref = TorchRRDBNet(**kw).eval()
    model = convert.from_torch(ref.state_dict(), "RRDBNet", **kw)
    x = np.random.default_rng(scale).random((1, 12, 8, 3)).astype(np.float32)
    out = jax_forward(model, x)
    expected = torch_forward(ref, x)
    assert out.shape == (1, 12 * scale, 8 * scale, 3)
    assert rel_err(out, expected) <= 1e-4


@needs_torch
@pytest.mark.parametrize("upscale", [4, 3])
def test_msrresnet_matches_pytorch(upscale):
    from tests.torch_refs.msrresnet import MSRResNet as TorchMSRResNet

    torch.manual_seed(upscale)
    kw = dict(num_in_ch=3, num_out_ch=3, num_feat=16, num_block=2, upscale=upscale)
    ref = TorchMSRResNet(**kw).eval()
    model = convert.from_torch(ref.state_dict(), "MSRResNet", **kw)
    x = np.random.default_rng(upscale).random((2, 7, 9, 3)).astype(np.float32)
    out = jax_forward(model, x)
    expected = torch_forward(ref, x)
    assert out.shape == (2, 7 * upscale, 9 * upscale, 3)
    assert rel_err(out, expected) <= 1e-4


def test_swinir_parameter_counts():
    assert n_params(pytorch.abstract_model("SwinIR", upscale=4)) == 11_900_199
    # Lightweight x4: the paper's 897K excludes the 24 relative-position bias tables (225 x 6 each).
    light = pytorch.abstract_model(
        "SwinIR", upscale=4, embed_dim=60, depths=(6,) * 4, num_heads=(6,) * 4, upsampler="pixelshuffledirect"
    )
    assert n_params(light) - 24 * 225 * 6 == 897_228


def test_swinir_flip_padding_is_mirror_with_edge_repeat():
    tiny = dict(depths=(1,), num_heads=(1,), embed_dim=4, window_size=8)
    model = nnx.eval_shape(lambda: SwinIR(**tiny, pad_mode="flip", rngs=nnx.Rngs(0)))
    x = np.random.default_rng(0).random((1, 64, 61, 3)).astype(np.float32)
    padded = np.asarray(model._pad(jnp.asarray(x)))
    assert padded.shape == (1, 72, 64, 3)
    np.testing.assert_array_equal(padded[:, 64:, :61], x[:, ::-1][:, :8])  # rows 63, 62, ... 56
    np.testing.assert_array_equal(padded[:, :64, 61:], x[:, :, ::-1][:, :, :3])
    reflect = nnx.eval_shape(lambda: SwinIR(**tiny, rngs=nnx.Rngs(0)))
    assert reflect._pad(jnp.asarray(x)).shape == (1, 64, 64, 3)


def randomize_(model, scale=0.05):
    """Perturb every parameter so LayerNorm scales/biases and zero-init biases are exercised."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * scale)
    return model


@needs_torch
@pytest.mark.parametrize(
    "upsampler,upscale,resi,pad_mode,size",
    [
        ("pixelshuffle", 2, "1conv", "reflect", (13, 10)),  # pads to img_size: the stored mask
        ("pixelshuffle", 3, "1conv", "flip", (9, 11)),  # 12 x 12 != img_size: recomputed mask
        ("pixelshuffledirect", 4, "1conv", "flip", (16, 16)),  # flip always pads: 16 -> 20
        ("nearest+conv", 4, "3conv", "reflect", (11, 16)),
    ],
)
def test_swinir_matches_pytorch(upsampler, upscale, resi, pad_mode, size):
    from tests.torch_refs.swinir import SwinIR as TorchSwinIR

    torch.manual_seed(upscale)
    kw = dict(
        upscale=upscale,
        in_chans=3,
        img_size=16,
        window_size=4,
        img_range=1.0,
        depths=(2, 2),
        embed_dim=24,
        num_heads=(2, 2),
        mlp_ratio=2.0,
        upsampler=upsampler,
        resi_connection=resi,
        pad_mode=pad_mode,
    )
    ref = randomize_(TorchSwinIR(**kw).eval())
    model = convert.from_torch(ref.state_dict(), "SwinIR", **kw)
    x = np.random.default_rng(upscale).random((2, *size, 3)).astype(np.float32)
    out = jax_forward(model, x)
    expected = torch_forward(ref, x)
    assert out.shape == (2, size[0] * upscale, size[1] * upscale, 3)
    assert rel_err(out, expected) <= 1e-4


@needs_torch
def test_swinir_drop_path_acts_in_training_only():
    from tests.torch_refs.swinir import SwinIR as TorchSwinIR

    kw = dict(upscale=2, img_size=8, window_size=4, depths=(2,), embed_dim=8, num_heads=(2,))
    torch.manual_seed(0)
    sd = TorchSwinIR(**kw).state_dict()  # converted weights: eager NNX init compiles per shape
    model = convert.from_torch(sd, "SwinIR", **kw, drop_path_rate=0.5)
    plain = convert.from_torch(sd, "SwinIR", **kw)
    x = np.random.default_rng(0).random((4, 8, 8, 3)).astype(np.float32)
    train_a, train_b = jax_forward(model, x), jax_forward(model, x)
    assert not np.allclose(train_a, train_b)  # fresh per-sample draws each call
    model.eval()
    np.testing.assert_allclose(jax_forward(model, x), jax_forward(plain, x), atol=1e-6)


@needs_torch
@pytest.mark.parametrize("arch", ["RRDBNet", "SwinIR"])
def test_bfloat16_compute_stays_close_to_float32(arch):
    if arch == "RRDBNet":
        from tests.torch_refs.rrdbnet import RRDBNet as Ref

        kw = dict(num_feat=8, num_block=1, num_grow_ch=4)
    else:
        from tests.torch_refs.swinir import SwinIR as Ref

        kw = dict(upscale=2, img_size=8, window_size=4, depths=(2,), embed_dim=8, num_heads=(2,))
    torch.manual_seed(0)
    sd = Ref(**kw).state_dict()
    x = np.random.default_rng(0).random((1, 8, 8, 3)).astype(np.float32)
    model = convert.from_torch(sd, arch, **kw)
    full = jax_forward(model, x)
    # The one bf16 mechanism (sslsr.models.precision): cast the parameters and the input.
    graphdef, state = nnx.split(model)
    low_model = nnx.merge(graphdef, cast_floating(state, jnp.bfloat16))
    low = np.asarray(nnx.jit(lambda m, x: m(x))(low_model, jnp.asarray(x, jnp.bfloat16)))
    assert low.dtype == jnp.bfloat16
    assert 0 < rel_err(low.astype(np.float32), full) < 3e-2  # bf16 really used, and still close
