"""The GAN methods' loss terms (LDL, BebyGAN, SPSR) against NumPy references written from their
definitions (the methods' papers and code), and the JAX bicubic resizers against the NumPy MATLAB
imresize and PyTorch's `F.interpolate`."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sslsr.data.imresize import imresize as np_imresize
from sslsr.data.resample import resize as np_resize
from sslsr.losses.bestbuddy import best_buddy_loss
from sslsr.losses.bicubic import imresize, interpolate_bicubic
from sslsr.losses.gradient import gradient_map
from sslsr.losses.ldl import artifact_loss, artifact_map
from sslsr.losses.region import region_mask


def _reflect_windows(x: np.ndarray, window: int):
    """(H, W) -> (H, W, window*window) neighbourhoods, reflect padding without edge repeat."""
    pad = window // 2
    p = np.pad(x, pad, mode="reflect")
    h, w = x.shape
    return np.stack([p[i : i + h, j : j + w] for i in range(window) for j in range(window)], -1)


def _np_artifact_map(sr, ema, hr, window=7):
    out = np.zeros(sr.shape[:3] + (1,))
    for b in range(sr.shape[0]):
        r = np.abs(hr[b] - sr[b]).sum(-1)
        r_ema = np.abs(hr[b] - ema[b]).sum(-1)
        weight = np.var(r, ddof=1) ** 0.2 * np.var(_reflect_windows(r, window), axis=-1, ddof=1)
        out[b, ..., 0] = np.where(r < r_ema, 0.0, weight)
    return out


def _images(seed, shape, n=3):
    rng = np.random.default_rng(seed)
    return [rng.random(shape).astype(np.float32) for _ in range(n)]


def test_artifact_map_and_loss_match_numpy_and_ldl_gradient():
    hr, sr, ema = _images(0, (2, 12, 10, 3))
    ema = 0.5 * (ema + hr)  # the EMA is better on some pixels, worse on others
    expect = _np_artifact_map(sr.astype(np.float64), ema.astype(np.float64), hr.astype(np.float64))
    got = np.asarray(jax.jit(artifact_map)(sr, ema, hr))
    assert got.shape == (2, 12, 10, 1)
    assert 0 < (expect == 0).mean() < 1
    np.testing.assert_allclose(got, expect, rtol=1e-5, atol=1e-7)
    loss, grad = jax.jit(jax.value_and_grad(artifact_loss))(sr, ema, hr)
    assert float(loss) == pytest.approx(float(np.mean(np.abs(expect * sr - expect * hr))), rel=1e-5)

    torch = pytest.importorskip("torch")
    # LDL's get_refined_artifact_map + L1Loss, in torch, without any detach (as LDL trains): the
    # gradient also flows through the map.
    t_sr = torch.tensor(sr.transpose(0, 3, 1, 2), dtype=torch.float64, requires_grad=True)
    t_hr = torch.tensor(hr.transpose(0, 3, 1, 2), dtype=torch.float64)
    t_ema = torch.tensor(ema.transpose(0, 3, 1, 2), dtype=torch.float64)
    r = torch.sum(torch.abs(t_hr - t_sr), 1, keepdim=True)
    r_ema = torch.sum(torch.abs(t_hr - t_ema), 1, keepdim=True)
    unfolded = torch.nn.functional.pad(r, [3, 3, 3, 3], mode="reflect").unfold(2, 7, 1).unfold(3, 7, 1)
    w = torch.var(r, dim=(-1, -2, -3), keepdim=True) ** 0.2 * torch.var(unfolded, dim=(-1, -2))
    w = torch.where(r < r_ema, torch.zeros_like(w), w)
    torch.nn.functional.l1_loss(w * t_sr, w * t_hr).backward()
    np.testing.assert_allclose(np.asarray(grad), t_sr.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-4, atol=1e-8)


def _np_unfold(x, patch, stride):
    h, w = x.shape[:2]
    return np.stack([x[i : i + patch, j : j + patch].ravel()
                     for i in range(0, h - patch + 1, stride) for j in range(0, w - patch + 1, stride)])


def _np_best_buddy(sr, hr, scales=(1.0, 0.5, 0.25)):
    total, count = 0.0, 0
    for b in range(sr.shape[0]):
        p_sr, p_gt = _np_unfold(sr[b], 3, 3), _np_unfold(hr[b], 3, 3)
        h, w = hr.shape[1:3]
        cands = np.concatenate([_np_unfold(np_resize(hr[b], (int(h * s), int(w * s)), "bicubic") if s != 1 else hr[b],
                                           3, 3) for s in scales])
        for a, g in zip(p_sr, p_gt):
            score = ((a - cands) ** 2).sum(-1) + ((g - cands) ** 2).sum(-1)
            total += np.abs(a - cands[np.argmin(score)]).sum()
            count += a.size
    return total / count


def test_best_buddy_loss_matches_numpy():
    hr, sr = _images(2, (2, 16, 12, 3), n=2)
    sr = 0.7 * hr + 0.3 * sr  # buddies differ from the co-located GT patch for some patches
    hr64, sr64 = hr.astype(np.float64), sr.astype(np.float64)
    expect = _np_best_buddy(sr64, hr64)
    got, g = jax.jit(jax.value_and_grad(best_buddy_loss))(sr, hr)
    got, g = float(got), np.asarray(g)
    assert got == pytest.approx(expect, rel=1e-5)
    plain = np.mean([np.abs(_np_unfold(sr64[b], 3, 3) - _np_unfold(hr64[b], 3, 3)).mean() for b in range(2)])
    assert got < plain  # the buddies are never further (L1 aside, they are chosen closer)
    # Gradient: sign(p_sr - buddy) / n on the patch pixels only (row 15 is in no 3x3 patch).
    assert np.all(g[:, 15] == 0) and np.all(np.abs(g[:, :15]) > 0)
    with pytest.raises(ValueError, match="whole size"):
        best_buddy_loss(sr[:, :15], hr[:, :15])


def test_imresize_matches_numpy_matlab_and_interpolate_matches_torch():
    x = _images(3, (2, 17, 12, 3), n=1)[0]
    scales, sizes = (0.25, 0.5, 2.0), ((8, 6), (4, 3), (34, 24))

    @jax.jit
    def resized(v):
        # The gradient of a sum is the column sums of the (linear) resize: rows sum to 1.
        grad = jax.grad(lambda a: imresize(a, 0.25).sum())(v)
        return [imresize(v, s) for s in scales], [interpolate_bicubic(v, size) for size in sizes], grad

    matlab, torch_like, grad = resized(jnp.asarray(x))
    for scale, got in zip(scales, matlab):
        expect = np.stack([np_imresize(xi.astype(np.float64), scale) for xi in x])
        assert got.shape == expect.shape
        np.testing.assert_allclose(np.asarray(got), expect, atol=1e-5)
    assert grad.shape == x.shape and np.isclose(float(grad.sum()), 2 * 5 * 3 * 3, rtol=1e-5)
    torch = pytest.importorskip("torch")
    for size, got in zip(sizes, torch_like):
        ref = torch.nn.functional.interpolate(torch.from_numpy(x.transpose(0, 3, 1, 2)), size=size, mode="bicubic",
                                              align_corners=False).numpy().transpose(0, 2, 3, 1)
        np.testing.assert_allclose(np.asarray(got), ref, atol=1e-5)


def test_region_mask_matches_numpy():
    rng = np.random.default_rng(4)
    hr = np.full((2, 16, 14, 3), 0.5, np.float32)
    hr[:, :, 7:] = rng.random((2, 16, 7, 3))  # flat left half, textured right half
    hr[1, 3:6, 2:4] += 0.02 * rng.standard_normal((3, 2, 3)).astype(np.float32)  # weak texture
    luma = hr.astype(np.float64) @ np.array([0.2989, 0.587, 0.114])
    std = np.stack([np.std(_reflect_windows(l, 11), axis=-1, ddof=1) for l in luma])
    expect = (std >= 0.025).astype(np.float32)[..., None]
    got = np.asarray(jax.jit(region_mask)(hr))
    assert got.shape == (2, 16, 14, 1) and 0 < expect.mean() < 1
    keep = np.abs(std - 0.025)[..., None] > 1e-5  # rounding may flip pixels at the threshold
    np.testing.assert_array_equal(got[keep], expect[keep])


def test_gradient_map_matches_numpy():
    x = _images(5, (2, 6, 5, 3), n=1)[0]
    p = np.pad(x.astype(np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)))
    dv = p[:, 2:, 1:-1] - p[:, :-2, 1:-1]
    dh = p[:, 1:-1, 2:] - p[:, 1:-1, :-2]
    np.testing.assert_allclose(np.asarray(jax.jit(gradient_map)(x)), np.sqrt(dv**2 + dh**2 + 1e-6), rtol=1e-6)
