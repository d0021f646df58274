"""Inference layer: exact tiling, self-ensemble, dtype, weights swapped without recompiling, layering."""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from sslsr import inference
from sslsr.data.imresize import imresize
from sslsr.models import MSRResNet


class IntegerSR(nnx.Module):
    """x2 SR net whose arithmetic is exact in float32 (integer weights and activations), so any
    tiling that respects its receptive field must give bit-identical output. Receptive-field
    radius: 3 LR pixels (three 3x3 convs)."""

    def __init__(self):
        rng = np.random.default_rng(0)
        shapes = ((3, 8), (8, 8), (8, 12))
        self.kernels = nnx.List(
            [nnx.Param(jnp.asarray(rng.integers(-2, 3, (3, 3, i, o)), jnp.float32)) for i, o in shapes]
        )
        self.biases = nnx.List([nnx.Param(jnp.asarray(rng.integers(-50, 50, (o,)), jnp.float32)) for _, o in shapes])

    def __call__(self, x):
        h = jnp.round(x * 255.0)
        for i, (k, b) in enumerate(zip(self.kernels, self.biases)):
            h = jax.lax.conv_general_dilated(h, k[...], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
            h = h + b[...]
            if i < 2:
                h = jnp.clip(h, 0, 4000)  # keeps every intermediate an exact float32 integer
        n, hh, ww, _ = h.shape
        h = h.reshape(n, hh, ww, 3, 2, 2).transpose(0, 1, 4, 2, 5, 3).reshape(n, 2 * hh, 2 * ww, 3)
        return h / 65536.0 + 0.25


@pytest.fixture(scope="module")
def lr_image(photos):
    return photos["coffee"][60:105, 100:161]  # 45 x 61: tiles do not divide it


def test_tile_starts_cover_and_share_overlap():
    assert inference.tile_starts(45, 16, 6) == [0, 10, 20, 29]
    assert inference.tile_starts(10, 16, 6) == [0]
    for size, tile, ov in ((45, 16, 6), (100, 32, 8), (33, 32, 4)):
        s = inference.tile_starts(size, tile, ov)
        assert s[0] == 0 and s[-1] + tile == size
        assert all(b - a <= tile - ov for a, b in zip(s, s[1:]))
    with pytest.raises(ValueError, match="tile_overlap"):
        inference.tile_starts(45, 16, 16)


def test_tiling_is_exact_within_receptive_field(lr_image):
    up = inference.NetworkUpscaler(IntegerSR(), scale=2)
    full = inference.super_resolve(up, lr_image)
    assert full.shape == (90, 122, 3) and 0.05 < full.std()
    # radius 3 <= overlap // 2: bit-identical.
    tiled = inference.super_resolve(up, lr_image, tile=16, tile_overlap=6)
    np.testing.assert_array_equal(tiled, full)
    # Too little overlap: the seams show (the test can fail).
    seams = inference.super_resolve(up, lr_image, tile=16, tile_overlap=2)
    assert np.abs(seams - full).max() > 1e-3


def test_tiling_msrresnet(lr_image):
    # MSRResNet, 1 block: radius <= 5 LR pixels (conv_first 1, block 2, upconv1 1, then < 1 at 2x/4x
    # resolution, plus the bilinear skip); overlap 12 contains it. Float32 convolutions on different
    # shapes round differently in the last bit, so floats agree to ~1e-7 and uint8 exactly.
    model = MSRResNet(num_feat=8, num_block=1, upscale=4, rngs=nnx.Rngs(1))
    up = inference.NetworkUpscaler(model)
    assert up.scale == 4  # from the registry
    lr = lr_image[:40, :44]
    full = inference.super_resolve(up, lr)
    tiled = inference.super_resolve(up, lr, tile=24, tile_overlap=12)
    assert np.abs(tiled - full).max() < 1e-5
    np.testing.assert_array_equal(inference.to_uint8(tiled), inference.to_uint8(full))


def test_self_ensemble(lr_image):
    up = inference.NetworkUpscaler(IntegerSR(), scale=2)
    lr = lr_image[:20, :24]
    got = inference.super_resolve(up, lr, self_ensemble=True)
    # Independent formulation: the 8 rotations/reflections via np.rot90 on a float image.
    x = lr.astype(np.float32) / 255.0
    outs = []
    for flip in (False, True):
        for k in range(4):
            t = np.rot90(x[:, ::-1] if flip else x, k)
            y = np.rot90(up(np.ascontiguousarray(t)[None])[0], -k)
            outs.append(y[:, ::-1] if flip else y)
    want = np.clip(np.mean(outs, axis=0), 0, 1)
    np.testing.assert_allclose(got, want, atol=1e-6)
    plain = inference.super_resolve(up, lr)
    assert np.abs(got - plain).max() > 1e-3  # the net is not flip-equivariant: ensembling matters


def test_bf16_model_close_to_float32(lr_image):
    model = MSRResNet(num_feat=8, num_block=1, upscale=4, rngs=nnx.Rngs(1))
    lr = lr_image[:16, :16]
    f32 = inference.super_resolve(inference.NetworkUpscaler(model), lr)
    b16 = inference.super_resolve(inference.NetworkUpscaler(model, dtype="bfloat16"), lr)
    assert b16.dtype == np.float32
    dev = np.abs(b16 - f32).max()
    assert 0 < dev < 0.02, dev
    with pytest.raises(ValueError, match="compute dtype"):
        inference.NetworkUpscaler(model, dtype="int8")
    # float16 (inference only): a finer mantissa than bfloat16, so closer to float32.
    f16 = inference.super_resolve(inference.NetworkUpscaler(model, dtype="float16"), lr)
    assert f16.dtype == np.float32
    assert 0 < np.abs(f16 - f32).max() < min(dev, 0.005)


def test_wrong_scale_is_a_clear_error(lr_image):
    up = inference.NetworkUpscaler(IntegerSR(), scale=4)  # unregistered: the given scale is trusted
    with pytest.raises(ValueError, match="not x4"):
        inference.super_resolve(up, lr_image[:16, :16])
    model = MSRResNet(num_feat=8, num_block=1, upscale=4, rngs=nnx.Rngs(1))
    with pytest.raises(ValueError, match="scale 2 but the model upscales x4"):
        inference.NetworkUpscaler(model, scale=2)
    with pytest.raises(ValueError, match="pass scale"):
        inference.NetworkUpscaler(IntegerSR())


TRACES = []


class CountingMSRResNet(MSRResNet):
    """MSRResNet that records every trace of its forward (a Python side effect runs only then)."""

    def __call__(self, x):
        TRACES.append(x.shape)
        return super().__call__(x)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_with_state_reuses_the_compiled_forward(lr_image, dtype):
    lr = lr_image[:12, :14]
    first = CountingMSRResNet(num_feat=8, num_block=1, upscale=4, rngs=nnx.Rngs(1))
    second = CountingMSRResNet(num_feat=8, num_block=1, upscale=4, rngs=nnx.Rngs(2))
    nnx.update(second, jax.tree.map(lambda a: 5 * a, nnx.state(second)))  # outputs far from the first's
    TRACES.clear()
    up = inference.NetworkUpscaler(first, scale=4, dtype=dtype)
    out_first = inference.super_resolve(up, lr)
    assert len(TRACES) == 1
    swapped = up.with_state(nnx.split(second)[1])
    got = inference.super_resolve(swapped, lr)
    assert len(TRACES) == 1  # new weights, same structure and shape: no new trace
    np.testing.assert_array_equal(inference.super_resolve(up, lr), out_first)  # the original is unchanged

    fresh = inference.NetworkUpscaler(second, scale=4, dtype=dtype)
    np.testing.assert_array_equal(got, inference.super_resolve(fresh, lr))
    assert len(TRACES) == 2  # a new upscaler does trace: the counter sees compilations
    assert np.abs(got - out_first).max() > 1e-3
    assert swapped.scale == 4 and swapped.dtype == dtype


class DropoutSR(nnx.Module):
    """x2 nearest upsampling after dropout: deterministic only in eval mode."""

    def __init__(self):
        self.drop = nnx.Dropout(0.5, rngs=nnx.Rngs(0))

    def __call__(self, x):
        y = self.drop(x)
        return jnp.repeat(jnp.repeat(y, 2, axis=1), 2, axis=2)


def test_runs_in_eval_mode_and_leaves_the_model_as_it_was():
    model = DropoutSR()
    model.train()
    x = np.random.default_rng(0).random((1, 4, 5, 3), np.float32)
    got = inference.NetworkUpscaler(model, scale=2)(x)
    np.testing.assert_array_equal(got, np.repeat(np.repeat(x, 2, axis=1), 2, axis=2))
    assert model.drop.deterministic is False


def test_forward_upscaler_and_prepare_once_per_image(lr_image):
    calls = []

    class Adapting:
        """A per-image upscaler: `prepare` sees the whole image once, tiles and flips reuse it."""

        scale = 2

        def prepare(self, lr):
            calls.append(lr.shape)
            return lambda x: np.repeat(np.repeat(x, 2, axis=1), 2, axis=2) * 0 + lr.mean()

    out = inference.super_resolve(Adapting(), lr_image[:20, :24], tile=8, tile_overlap=2, self_ensemble=True)
    assert calls == [(20, 24, 3)]
    np.testing.assert_allclose(out, lr_image[:20, :24].mean() / 255.0, rtol=1e-5)

    nearest = inference.ForwardUpscaler(lambda x: np.repeat(np.repeat(x, 2, axis=1), 2, axis=2), 2)
    got = inference.super_resolve(nearest, lr_image[:4, :5])
    np.testing.assert_array_equal(inference.to_uint8(got)[::2, ::2], lr_image[:4, :5])


def test_pad_to_tile_is_one_shape_and_exact_away_from_the_padded_edge(lr_image):
    # IntegerSR's receptive-field radius is 3 LR pixels: outputs of LR rows/columns more than 3
    # from a padded (bottom/right) edge are bit-identical to the unpadded forward.
    up = inference.NetworkUpscaler(IntegerSR(), scale=2)
    for h, w in ((20, 24), (45, 20), (45, 61)):
        lr = lr_image[:h, :w]
        full = inference.super_resolve(up, lr)
        got = inference.super_resolve(up, lr, tile=32, tile_overlap=6, pad_to_tile=True)
        assert got.shape == full.shape == (2 * h, 2 * w, 3)
        keep_h = 2 * (h - 3) if h < 32 else 2 * h  # rows of a padded height within the radius differ
        keep_w = 2 * (w - 3) if w < 32 else 2 * w
        np.testing.assert_array_equal(got[:keep_h, :keep_w], full[:keep_h, :keep_w])
        if (h, w) == (20, 24):
            assert np.abs(got - full).max() > 1e-3  # the padded edge does change (the statement is tight)
    with pytest.raises(ValueError, match="needs a tile"):
        inference.super_resolve(up, lr_image[:8, :8], pad_to_tile=True)


def test_pad_to_tile_compiles_one_shape_for_many_sizes(lr_image):
    TRACES.clear()
    up = inference.NetworkUpscaler(CountingMSRResNet(num_feat=4, num_block=1, upscale=4, rngs=nnx.Rngs(1)), scale=4)
    for h, w in ((12, 14), (9, 30), (40, 21)):
        out = inference.super_resolve(up, lr_image[:h, :w], tile=16, tile_overlap=4, pad_to_tile=True)
        assert out.shape == (4 * h, 4 * w, 3)
    assert TRACES == [(1, 16, 16, 3)]


def test_grey_and_alpha_images():
    up = inference.ForwardUpscaler(lambda x: np.repeat(np.repeat(x, 2, axis=1), 2, axis=2) * [[[[1.0, 0.5, 0.25]]]], 2)
    rng = np.random.default_rng(0)
    grey = rng.random((5, 6), np.float32)
    luma = 0.299 + 0.587 * 0.5 + 0.114 * 0.25  # BT.601 of the forward's (1, 0.5, 0.25) channel gains
    got = inference.super_resolve_image(up, grey)
    assert got.shape == (10, 12)
    np.testing.assert_allclose(got[::2, ::2], grey * luma, rtol=1e-6)
    rgba = rng.random((5, 6, 4), np.float32)
    bicubic = inference.super_resolve_image(up, rgba, alpha="bicubic")
    np.testing.assert_allclose(bicubic[..., 3], np.clip(imresize(rgba[..., 3], 2.0), 0, 1), atol=1e-6)
    np.testing.assert_allclose(bicubic[::2, ::2, :3], rgba[..., :3] * [1.0, 0.5, 0.25], rtol=1e-6)
    model = inference.super_resolve_image(up, rgba, alpha="model")
    np.testing.assert_allclose(model[::2, ::2, 3], rgba[..., 3] * luma, rtol=1e-5)
    la = inference.super_resolve_image(up, rgba[..., 2:], alpha="bicubic")
    assert la.shape == (10, 12, 2)
    np.testing.assert_allclose(la[..., 1], bicubic[..., 3])


def test_import_does_not_load_the_trainer_nor_the_protocol():
    code = (
        "import sys, sslsr.inference; "
        "bad = [m for m in sys.modules if m.startswith('sslsr.train') or m.startswith('sslsr.evaluate')]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
