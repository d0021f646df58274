"""SSG / SSL parity with the float64 NumPy oracle and the paper-style PyTorch path; gradients.

Compilation dominates this file's runtime, so the tests share a few shapes: one jitted
value-and-grad at (2, 48, 48, 3) with the paper's sizes, and one small (1, 14, 15, 3) config.
The parity tests run for both implementations ("scan", the CPU default, and "fused", the
accelerator default) on CPU.
"""

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from sslsr.losses import edge_mask, mask_stride_pattern, self_similarity_graph, ssl_loss
from tests import ssl_oracle


@pytest.fixture(scope="module")
def crops(photos):
    """Two real 48x48 photo crops (float32 in [0, 1]), their real edge masks, a perturbed SR."""
    hr_u8 = np.stack([photos["astronaut"][100:148, 200:248], photos["coffee"][150:198, 300:348]])
    # The paper computes the mask on the whole HR image and crops it with the image.
    mask = np.stack(
        [edge_mask(photos["astronaut"])[100:148, 200:248], edge_mask(photos["coffee"])[150:198, 300:348]]
    )
    hr = hr_u8.astype(np.float32) / 255.0
    rng = np.random.default_rng(0)
    sr = np.clip(hr + 0.06 * rng.standard_normal(hr.shape), 0.0, 1.0).astype(np.float32)
    return sr, hr, mask


IMPLS = ["kernel", "scan", "fused"]


@functools.partial(jax.jit, static_argnums=(5, 6, 7))
def _jitted_loss_and_grad(sr, hr, mask, alpha, h, search_size, window_size, impl):
    return jax.value_and_grad(ssl_loss)(
        sr, hr, mask, alpha=alpha, h=h, search_size=search_size, window_size=window_size, impl=impl
    )


def _loss_and_grad(sr, hr, mask, alpha=1.0, h=0.004, search_size=25, window_size=9, impl="scan"):
    # Always the same positional signature, so every call with a shape hits one compilation.
    return _jitted_loss_and_grad(sr, hr, mask, alpha, h, search_size, window_size, impl)


def _loss_terms(sr, hr, mask, **kw):
    kl = float(_loss_and_grad(sr, hr, mask, alpha=0.0, **kw)[0])
    total = float(_loss_and_grad(sr, hr, mask, alpha=1.0, **kw)[0])
    return kl, total - kl


def test_ssg_rows_match_oracle_on_photo_crops(crops):
    _, hr, mask = crops
    graph = np.asarray(self_similarity_graph(hr))
    assert graph.shape == (2, 48, 48, 625) and graph.dtype == np.float32
    for b in range(2):
        coords = [tuple(c) for c in np.argwhere(mask[b] > 0)[::7]]
        coords += [(0, 0), (47, 47), (0, 30), (20, 47), (12, 0)]  # image borders
        expected = ssl_oracle.ssg_rows(hr[b], coords)
        got = np.stack([graph[b, i, j] for i, j in coords])
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
        # The 1e-10 clamp is live: a large share of real-photo HR entries are below it.
        assert (expected < 1e-10).mean() > 0.2


def test_ssg_rows_match_oracle_odd_bright_image():
    # Odd sizes, bright values (the float32 worst case for cancellation-prone formulations).
    rng = np.random.default_rng(1)
    img = (0.85 + 0.15 * rng.random((37, 53, 3))).astype(np.float32)
    img[10:20, 5:40] = 0.98  # flat bright block: many near-identical windows
    graph = np.asarray(self_similarity_graph(img))
    assert graph.shape == (37, 53, 625)
    coords = [(0, 0), (36, 52), (0, 52), (36, 0), (18, 26), (5, 13), (15, 20), (30, 49)]
    expected = ssl_oracle.ssg_rows(img, coords)
    got = np.stack([graph[i, j] for i, j in coords])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("impl", IMPLS)
def test_loss_terms_match_oracle_on_photo_crops(crops, impl):
    sr, hr, mask = crops
    kl, l1 = _loss_terms(sr, hr, mask, impl=impl)
    kl_ref, l1_ref = ssl_oracle.ssl_terms(sr, hr, mask)
    assert kl_ref > 0 and l1_ref > 0
    np.testing.assert_allclose(kl, kl_ref, rtol=1e-4)
    np.testing.assert_allclose(l1, l1_ref, rtol=1e-4)


@pytest.mark.parametrize("impl", IMPLS)
def test_loss_concatenates_rows_across_images(crops, impl):
    # An empty-mask image contributes nothing and the mean is over all rows of the batch, not a
    # mean of per-image means: drop the second image's edges except a stride-3 subset of them.
    sr, hr, mask = crops
    mask = mask.copy()
    mask[1] *= mask_stride_pattern(48, 48, 3)
    mask[0, :, :] = 0.0
    kl, l1 = _loss_terms(sr, hr, mask, impl=impl)
    kl_ref, l1_ref = ssl_oracle.ssl_terms(sr, hr, mask)
    np.testing.assert_allclose(kl, kl_ref, rtol=1e-4)
    np.testing.assert_allclose(l1, l1_ref, rtol=1e-4)


@pytest.mark.parametrize("impl", IMPLS)
def test_loss_matches_oracle_odd_size_random(impl):
    # Pixel noise of std 0.1 keeps window distances ~ h, so the rows are not one-hot.
    rng = np.random.default_rng(2)
    hr = np.clip(0.5 + 0.1 * rng.standard_normal((1, 37, 53, 3)), 0, 1).astype(np.float32)
    sr = np.clip(hr + 0.05 * rng.standard_normal(hr.shape), 0, 1).astype(np.float32)
    mask = (rng.random((1, 37, 53)) < 0.1).astype(np.float32)
    mask[0, 0, 0] = mask[0, 36, 52] = 1.0  # border edge pixels
    kl, l1 = _loss_terms(sr, hr, mask, impl=impl)
    kl_ref, l1_ref = ssl_oracle.ssl_terms(sr, hr, mask)
    np.testing.assert_allclose(kl, kl_ref, rtol=1e-4)
    np.testing.assert_allclose(l1, l1_ref, rtol=1e-4)


def _small_case(seed):
    rng = np.random.default_rng(seed)
    hr = rng.random((1, 14, 15, 3)).astype(np.float32)
    sr = rng.random((1, 14, 15, 3)).astype(np.float32)
    return sr, hr, dict(search_size=7, window_size=3, h=0.1)


def test_bf16_input_computes_in_float32():
    sr, hr, kw = _small_case(5)
    mask = np.ones((1, 14, 15), np.float32)
    sr16, hr16 = jnp.asarray(sr, jnp.bfloat16), jnp.asarray(hr, jnp.bfloat16)
    value, grad = _loss_and_grad(sr16, hr16, mask, **kw)
    assert value.dtype == jnp.float32 and grad.dtype == jnp.bfloat16
    expected = _loss_and_grad(sr16.astype(jnp.float32), hr16.astype(jnp.float32), mask, **kw)[0]
    np.testing.assert_allclose(float(value), float(expected), rtol=1e-6)


@pytest.mark.parametrize("impl", IMPLS)
def test_empty_mask_gives_zero_and_finite_grads(crops, impl):
    sr, hr, mask = crops
    value, grad = _loss_and_grad(sr, hr, np.zeros_like(mask), impl=impl)
    assert float(value) == 0.0
    assert np.all(np.isfinite(np.asarray(grad))) and not np.any(np.asarray(grad))


@pytest.mark.parametrize("impl", IMPLS)
def test_border_edge_pixel_gradient_is_finite_and_local(impl):
    sr, hr, kw = _small_case(3)
    mask = np.zeros((1, 14, 15), np.float32)
    mask[0, 0, 14] = 1.0  # top-right corner
    value, grad = _loss_and_grad(sr, hr, mask, **kw, impl=impl)
    kl_ref, l1_ref = ssl_oracle.ssl_terms(sr, hr, mask, **kw)
    np.testing.assert_allclose(float(value), kl_ref + l1_ref, rtol=1e-4)
    grad = np.asarray(grad)
    assert np.all(np.isfinite(grad)) and np.abs(grad).sum() > 0
    # Only pixels within search//2 + window//2 (+ their reflections) can matter.
    assert not np.any(grad[0, 6:, :8])


@pytest.mark.parametrize("impl", IMPLS)
def test_strips_with_overlap_and_chunk_padding(impl):
    # 70 rows -> strips at rows 0, 32, 38 (the last overlaps); width 60 -> two strips per chunk,
    # so the third chunk slot is padding. Value against the oracle, gradient against PyTorch.
    rng = np.random.default_rng(7)
    hr = np.clip(0.5 + 0.15 * rng.standard_normal((1, 70, 60, 3)), 0, 1).astype(np.float32)
    sr = np.clip(hr + 0.05 * rng.standard_normal(hr.shape), 0, 1).astype(np.float32)
    mask = (rng.random((1, 70, 60)) < 0.05).astype(np.float32)
    mask[0, 31:40, 10] = 1.0  # rows on both sides of the strip seams
    kw = dict(search_size=7, window_size=3, h=0.02)
    value, grad = _loss_and_grad(sr, hr, mask, **kw, impl=impl)
    kl_ref, l1_ref = ssl_oracle.ssl_terms(sr, hr, mask, **kw)
    np.testing.assert_allclose(float(value), kl_ref + l1_ref, rtol=1e-4)
    torch = pytest.importorskip("torch")
    from tests.torch_refs import ssl as torch_ssl

    sr_t = torch.tensor(sr.transpose(0, 3, 1, 2), dtype=torch.float64, requires_grad=True)
    hr_t = torch.tensor(hr.transpose(0, 3, 1, 2), dtype=torch.float64)
    torch_ssl.ssl_loss(sr_t, hr_t, torch.tensor(mask), **kw).backward()
    ref_grad = sr_t.grad.numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(np.asarray(grad), ref_grad, rtol=0, atol=1e-4 * np.abs(ref_grad).max())


@pytest.mark.parametrize("impl", IMPLS)
def test_check_grads_float64(impl):
    rng = np.random.default_rng(4)
    with jax.enable_x64(True):
        hr = jnp.asarray(rng.random((1, 9, 10, 2)))
        sr = jnp.asarray(np.clip(np.asarray(hr) + 0.1 * rng.standard_normal(hr.shape), 0, 1))
        mask = jnp.asarray((rng.random((1, 9, 10)) < 0.4).astype(np.float64))

        def loss(x):
            return ssl_loss(x, hr, mask, search_size=5, window_size=3, h=0.05, impl=impl)

        assert loss(sr).dtype == jnp.float64
        check_grads(loss, (sr,), order=1, modes=("rev",), eps=1e-6, atol=1e-7, rtol=1e-5)


def test_too_small_image_raises():
    x = np.zeros((1, 12, 30, 3), np.float32)
    with pytest.raises(ValueError, match="search_size//2\\+1"):
        ssl_loss(x, x, np.zeros((1, 12, 30), np.float32))
    with pytest.raises(ValueError, match="search_size//2\\+1"):
        self_similarity_graph(np.zeros((30, 12, 3), np.float32))
    with pytest.raises(ValueError, match="window_size"):
        ssl_loss(x, x, np.zeros((1, 12, 30), np.float32), search_size=7, window_size=4)
    # The smallest legal size works: H = W = search_size // 2 + 1.
    sr, hr, kw = _small_case(6)
    got = ssl_loss(sr[:, :4, :4], hr[:, :4, :4], np.ones((1, 4, 4), np.float32), **kw)
    assert np.isfinite(float(got)) and float(got) > 0


@pytest.mark.torch
@pytest.mark.parametrize("impl", IMPLS)
def test_matches_torch_unfold_path_loss_and_gradient(crops, impl):
    torch = pytest.importorskip("torch")
    from tests.torch_refs import ssl as torch_ssl

    sr, hr, mask = crops
    # Keep the unfold path's memory small: a stride-3 subset of the first crop's edges and one
    # edge pixel of the second (whose gradient must then be local to that pixel).
    mask = mask * mask_stride_pattern(48, 48, 3)
    mask[1] = 0.0
    mask[1, 30, 30] = 1.0
    value, grad = _loss_and_grad(sr, hr, mask, impl=impl)

    sr_t = torch.tensor(sr.transpose(0, 3, 1, 2), dtype=torch.float64, requires_grad=True)
    hr_t = torch.tensor(hr.transpose(0, 3, 1, 2), dtype=torch.float64)
    ref = torch_ssl.ssl_loss(sr_t, hr_t, torch.tensor(mask))
    ref.backward()
    ref_grad = sr_t.grad.numpy().transpose(0, 2, 3, 1)

    np.testing.assert_allclose(float(value), float(ref.detach()), rtol=1e-4)
    scale = np.abs(ref_grad).max()
    assert scale > 0
    np.testing.assert_allclose(np.asarray(grad), ref_grad, rtol=0, atol=2e-4 * scale)


def test_rejects_integer_and_0_255_images():
    # Issue 18: uint8 images or floats in [0, 255] used to give 0.0, i.e. SSL silently off.
    sr, hr, kw = _small_case(8)
    mask = np.ones((1, 14, 15), np.float32)
    u8 = (hr * 255).astype(np.uint8)
    with pytest.raises(TypeError, match="ssl_loss: hr must be a float image"):
        ssl_loss(sr, u8, mask, **kw)
    with pytest.raises(TypeError, match="ssl_loss: sr must be a float image"):
        jax.jit(lambda x: ssl_loss(x, hr, mask, **kw))(u8)  # the dtype is checked under jit too
    with pytest.raises(ValueError, match=r"ssl_loss: sr must hold values in \[0, 1\].*255"):
        ssl_loss(sr * 255.0, hr, mask, **kw)
    with pytest.raises(ValueError, match="ssl_loss: hr must hold values"):
        ssl_loss(sr, hr - 1.0, mask, **kw)
    with pytest.raises(TypeError, match="self_similarity_graph: x must be a float image"):
        self_similarity_graph(u8[0], **kw)
    # Slight overshoot (an unclipped generator output) stays legal.
    assert np.isfinite(float(ssl_loss(sr * 1.2 - 0.1, hr, mask, **kw)))
    # HR closed over by a jitted function is concrete while tracing: its range is still checked
    # (eagerly), and a valid one traces.
    hr_device = jnp.asarray(hr)
    assert np.isfinite(float(jax.jit(lambda x: ssl_loss(x, hr_device, mask, **kw))(sr)))
    hr_255 = hr_device * 255.0
    with pytest.raises(ValueError, match="ssl_loss: hr must hold values"):
        jax.jit(lambda x: ssl_loss(x, hr_255, mask, **kw))(sr)


@pytest.mark.parametrize("bad", [0.0, -0.004, float("nan"), float("inf")])
def test_rejects_bad_bandwidth(bad):
    sr, hr, kw = _small_case(9)
    kw["h"] = bad
    with pytest.raises(ValueError, match="ssl_loss: h must be a finite number > 0"):
        ssl_loss(sr, hr, np.ones((1, 14, 15), np.float32), **kw)
    with pytest.raises(ValueError, match="self_similarity_graph: h must be"):
        self_similarity_graph(hr[0], **kw)


def test_rejects_bad_alpha_and_impl():
    sr, hr, kw = _small_case(10)
    mask = np.ones((1, 14, 15), np.float32)
    with pytest.raises(ValueError, match="ssl_loss: alpha must be"):
        ssl_loss(sr, hr, mask, alpha=float("nan"), **kw)
    with pytest.raises(ValueError, match="ssl_loss: impl must be one of"):
        ssl_loss(sr, hr, mask, impl="cuda", **kw)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("where", ["sr", "hr"])
def test_nan_in_an_image_with_empty_mask_does_not_poison_the_batch(impl, where):
    # Issue 18: one image's NaN made the whole batch's loss NaN even with an empty mask there.
    rng = np.random.default_rng(11)
    hr = rng.random((2, 14, 15, 3)).astype(np.float32)
    sr = np.clip(hr + 0.1 * rng.standard_normal(hr.shape), 0, 1).astype(np.float32)
    mask = (rng.random((2, 14, 15)) < 0.3).astype(np.float32)
    mask[1] = 0.0
    kw = dict(search_size=7, window_size=3, h=0.1)
    clean_value, clean_grad = _loss_and_grad(sr[:1], hr[:1], mask[:1], **kw, impl=impl)
    bad = {"sr": sr.copy(), "hr": hr.copy()}
    bad[where][1, 5, 7, 1] = np.nan
    bad[where][1, 0, 0, 0] = np.inf
    value, grad = _loss_and_grad(bad["sr"], bad["hr"], mask, **kw, impl=impl)
    grad = np.asarray(grad)
    assert np.isfinite(float(value)) and np.all(np.isfinite(grad))
    np.testing.assert_allclose(float(value), float(clean_value), rtol=1e-6)
    np.testing.assert_allclose(grad[:1], np.asarray(clean_grad), rtol=1e-5, atol=1e-9)
    assert not np.any(grad[1])


# The compiled CPU kernel ("kernel") reaches XLA through the FFI; these pin down what that adds.


def test_kernel_under_vmap_matches_a_loop(crops):
    sr, hr, mask = crops
    stack = [np.stack([sr, np.clip(sr * 0.9, 0, 1)]), np.stack([hr, hr]), np.stack([mask, mask[::-1]])]
    got = jax.vmap(lambda s, h, m: ssl_loss(s, h, m, impl="kernel"))(*stack)
    expected = [float(_loss_and_grad(stack[0][i], stack[1][i], stack[2][i], impl="scan")[0]) for i in range(2)]
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5)


def test_kernel_serial_and_parallel_drivers_agree(crops):
    # Several CPU devices switch the kernel to its serial driver; both must give the same sums.
    # Three images on two workers: one worker reuses its logits scratch for a smaller mask.
    from sslsr.losses import ssl as ssl_module
    from sslsr.losses import ssl_kernel

    sr, hr, mask = crops
    sr, hr = (np.concatenate([x, x[:1, ::-1]]) for x in (sr, hr))
    mask = np.concatenate([mask, mask[:1, ::-1] * (np.arange(mask.shape[2]) < 40)])
    assert mask[2].sum() < mask[0].sum()
    # Writable copies and int64 sizes: the signature the FFI handler compiles, so its compiled
    # drivers are reused here instead of compiled again.
    p_sr, p_hr = (np.array(ssl_module._prepare(jnp.asarray(x), 25, 9)) for x in (sr, hr))
    flat = p_sr.shape[:2] + (-1,)
    results = []
    for driver, workers in ((ssl_kernel._batch_serial, ()), (ssl_kernel._batch_parallel, (2,))):
        values, d_p = np.zeros(3, np.float32), np.zeros(p_sr.reshape(flat).shape, np.float32)
        args = (np.float32(1 / (3 * 81 * 0.004)), np.float32(1.0), np.float32(1e-10), 25, 9, True)
        driver(p_sr.reshape(flat), p_hr.reshape(flat), mask.astype(np.float32), *args, values, d_p, *workers)
        results.append((values, d_p))
    assert np.all(results[0][0] > 0) and np.abs(results[0][1]).max() > 0
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])
    # Each image as a batch of its own: the same value and gradient as within the batch.
    for b in range(3):
        values, d_p = np.zeros(1, np.float32), np.zeros((1,) + p_sr.reshape(flat).shape[1:], np.float32)
        ssl_kernel._batch_serial(p_sr.reshape(flat)[b : b + 1], p_hr.reshape(flat)[b : b + 1], mask[b : b + 1].astype(np.float32), *args, values, d_p)
        np.testing.assert_array_equal(values[0], results[0][0][b])
        np.testing.assert_array_equal(d_p[0], results[0][1][b])


_CACHED_RUN = """
import json, numpy as np, jax
from sslsr.losses import ssl_loss
rng = np.random.default_rng(7)
hr = rng.random((2, 20, 21, 3)).astype(np.float32)
sr = np.clip(hr + 0.1 * rng.standard_normal(hr.shape), 0, 1).astype(np.float32)
mask = (rng.random((2, 20, 21)) < 0.3).astype(np.float32)
f = jax.jit(jax.value_and_grad(lambda x: ssl_loss(x, hr, mask, search_size=7, window_size=3, h=0.1, impl="kernel")))
value, grad = f(sr)
print(json.dumps([float(value), float(np.abs(grad).sum())]))
"""


def test_kernel_in_a_fresh_process_with_warm_caches(tmp_path):
    # The second process loads both the executable (JAX's persistent cache) and the handler
    # (numba's cache) without compiling them: a handler linked before numba's thread pool
    # started used to call a null pointer there (a segfault, not an error).
    import subprocess
    import sys

    env = dict(
        __import__("os").environ,
        JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jax_cache"),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
    )
    runs = [subprocess.run([sys.executable, "-c", _CACHED_RUN], capture_output=True, text=True, env=env) for _ in range(2)]
    for run in runs:
        assert run.returncode == 0, run.stderr[-2000:]
    assert any((tmp_path / "jax_cache").iterdir())  # the executable was cached
    first, second = (json.loads(run.stdout.strip().splitlines()[-1]) for run in runs)
    assert first == second and first[0] > 0 and first[1] > 0


def test_kernel_float32_exp_is_accurate_and_keeps_nan():
    from sslsr.losses import ssl_kernel

    x = np.concatenate([np.linspace(-87.3, 0.0, 200_001, dtype=np.float32), np.float32([np.nan, -np.inf, -100.0])])
    out, bits = np.empty_like(x), np.empty(x.shape, np.int32)
    ssl_kernel._exp_into(x, out, bits)
    expected = np.exp(x[:-3].astype(np.float64))
    # 3.0e-7 measured on a 2M-point grid; the margin covers FMA contraction on other x86 CPUs.
    np.testing.assert_allclose(out[:-3], expected, rtol=5e-7, atol=0)
    assert np.isnan(out[-3]) and out[-2] == 0.0 and out[-1] == 0.0


def _kernel_inputs(image, mask, search_size=25, window_size=9):
    """One image's flat P2 (built in NumPy: float64 stays float64), and the kernel's index of
    the masked pixels."""
    from sslsr.losses import ssl_kernel

    r, w = search_size // 2, window_size // 2
    p2 = np.pad(np.moveaxis(image, -1, 0), ((0, 0), (r, r), (r, r)), mode="reflect")
    p2 = np.pad(p2, ((0, 0), (w, w), (w, w)))
    wp = p2.shape[-1]
    return p2.reshape(p2.shape[0], -1), wp, ssl_kernel._masked_pixels(mask.astype(image.dtype), wp)


# Geometries of the kernel-level tests: the paper's sizes on a real crop (rows a multiple of the
# cache line: aligned block starts), odd sizes (Wp = 85: unaligned starts, partial last blocks),
# a mask in two bands (skipped blocks between them), a window too short for the doubling, one
# channel (the adjoint's products have a loop of their own for three), and a window as large as
# the search area (a single interior offset).
KERNEL_GEOMETRIES = {
    "real 48x48, 25/9": (48, 48, 25, 9),
    "37x53, 25/9": (37, 53, 25, 9),
    "banded 96x48, 25/9": (96, 48, 25, 9),
    "14x15, 7/3": (14, 15, 7, 3),
    "gray 30x33, 11/5": (30, 33, 11, 5),
    "window = search, 12x13, 5/5": (12, 13, 5, 5),
}


def _kernel_case(crops, geometry):
    """(H, W, C) float64 image, (H, W) mask with some border pixels on, and the kernel's inputs."""
    height, width, search, window = KERNEL_GEOMETRIES[geometry]
    if geometry.startswith("real"):
        image, mask = crops[1][0].astype(np.float64), crops[2][0].copy()
    else:
        rng = np.random.default_rng(height)
        image = rng.random((height, width, 1 if geometry.startswith("gray") else 3))
        mask = (rng.random((height, width)) < 0.15).astype(np.float32)
        if geometry.startswith("banded"):
            mask[6:80] = 0
    mask[[0, height - 1, 0, height - 1, height // 2], [0, width - 1, width // 2, 5, 0]] = 1.0  # image borders too
    return image, mask, search, window, _kernel_inputs(image, mask, search, window)


@pytest.mark.parametrize("geometry", list(KERNEL_GEOMETRIES))
def test_kernel_distances_match_oracle_for_every_offset(crops, geometry):
    # Every offset's d^2, not only the loss: far offsets barely move the loss (their
    # similarities sit under the 1e-10 clamp), so a wrong tap there would pass the loss tests.
    from sslsr.losses import ssl_kernel

    image, _, search, window, (pf, wp, (qm, _, row_m)) = _kernel_case(crops, geometry)
    d2 = np.empty((search * search, qm.shape[0]))
    ssl_kernel._logits(pf, qm, row_m, search, window, image.shape[0], 1.0 / (image.shape[-1] * window * window), d2)
    coords = [(q // wp, q % wp) for q in qm]
    expected = ssl_oracle.window_distances(image, coords, search, window)
    np.testing.assert_allclose(d2.T, expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("geometry", list(KERNEL_GEOMETRIES))
def test_kernel_adjoint_is_the_transpose_of_its_distances(crops, geometry):
    # d^2 is quadratic in P2, so a central difference of <G, d^2(P2 + eps V)> is exact up to
    # rounding: the hand-written adjoint must give the same <adjoint(G), V> for every term.
    from sslsr.losses import ssl_kernel

    image, _, search, window, (pf, wp, (qm, _, row_m)) = _kernel_case(crops, geometry)
    height, n_off = image.shape[0], search * search
    rng = np.random.default_rng(12)
    cotangent = rng.standard_normal((n_off, qm.shape[0]))
    direction = rng.standard_normal(pf.shape)

    def distances(p):
        out = np.empty((n_off, qm.shape[0]))
        ssl_kernel._logits(p, qm, row_m, search, window, height, 1.0, out)
        return out

    eps = 1e-3
    numeric = np.sum(cotangent * (distances(pf + eps * direction) - distances(pf - eps * direction))) / (2 * eps)
    adjoint = np.zeros_like(pf)
    ssl_kernel._logits_transpose(pf, qm, row_m, search, window, height, cotangent, adjoint)
    assert adjoint.dtype == np.float64
    np.testing.assert_allclose(np.sum(adjoint * direction), numeric, rtol=1e-10)
