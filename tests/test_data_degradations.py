"""Real-ESRGAN / BSRGAN degradations: kernels, resampling, noise, JPEG, seeding and statistics."""

import math

import numpy as np
import pytest
from scipy.special import j1

from sslsr.data import artifacts, kernels, realesrgan, resample
from sslsr.data.degradations import degrade
from sslsr.data.imresize import imresize


@pytest.fixture(scope="module")
def patch():
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[80:144, 180:244])  # 64x64, face + background


# ----------------------------------------------------------------------------- kernels


def test_gaussian_kernels_match_formulas():
    k = kernels.gaussian_kernel(7, 1.3)
    g = np.exp(-np.arange(-3, 4) ** 2 / (2 * 1.3**2))
    np.testing.assert_allclose(k, np.outer(g, g) / np.outer(g, g).sum(), atol=1e-12)
    # Anisotropic: second moments of a wide kernel reproduce R diag(sx^2, sy^2) R^T.
    sx, sy, th = 2.0, 0.8, 0.6
    k = kernels.gaussian_kernel(31, sx, sy, th)
    ax = np.arange(31) - 15
    xx, yy = np.meshgrid(ax, ax)
    cov = np.array([[(k * xx * xx).sum(), (k * xx * yy).sum()], [(k * xx * yy).sum(), (k * yy * yy).sum()]])
    c, s = math.cos(th), math.sin(th)
    want = np.array([[c * c * sx**2 + s * s * sy**2, c * s * (sx**2 - sy**2)], [c * s * (sx**2 - sy**2), s * s * sx**2 + c * c * sy**2]])
    np.testing.assert_allclose(cov, want, atol=1e-6)
    # Generalized Gaussian with beta = 1 is the Gaussian; plateau value by hand at offset (1, 0).
    np.testing.assert_allclose(kernels.generalized_gaussian_kernel(9, 1.5, 0.7, 0.3, 1.0), kernels.gaussian_kernel(9, 1.5, 0.7, 0.3), atol=1e-12)
    p = kernels.plateau_kernel(5, 1.0, 1.0, 0.0, 2.0)
    q = 1 / (1 + (np.add.outer(np.arange(-2, 3) ** 2, np.arange(-2, 3) ** 2)) ** 2.0)
    np.testing.assert_allclose(p, q / q.sum(), atol=1e-12)


def test_sinc_kernel():
    k = kernels.sinc_kernel(3, np.pi)
    r1, r2 = j1(np.pi) / 2, j1(np.pi * math.sqrt(2)) / (2 * math.sqrt(2))
    raw = np.array([[r2, r1, r2], [r1, np.pi / 4, r1], [r2, r1, r2]])
    np.testing.assert_allclose(k, raw / raw.sum(), atol=1e-12)
    big = kernels.sinc_kernel(21, np.pi / 3, pad_to=25)
    assert big.shape == (25, 25) and abs(big.sum() - 1) < 1e-12 and (big[:2] == 0).all()
    # Low-pass: almost no response above the cutoff (pi/3), full response at DC.
    resp = np.abs(np.fft.fftshift(np.fft.fft2(big, (128, 128))))
    f = np.fft.fftshift(np.fft.fftfreq(128)) * 2 * np.pi
    rad = np.sqrt(np.add.outer(f**2, f**2))
    assert resp[rad > 1.6 * np.pi / 3].max() < 0.15 and resp[rad < 0.5 * np.pi / 3].min() > 0.85


def test_random_kernels_seeded_and_valid():
    for preset in (realesrgan.REALESRGAN, realesrgan.REALESRGAN_SSL):
        a = realesrgan.realesrgan_kernels(np.random.default_rng(7), preset)
        b = realesrgan.realesrgan_kernels(np.random.default_rng(7), preset)
        for name in ("kernel1", "kernel2", "sinc"):
            assert a[name].shape == (preset.kernel_pad,) * 2
            np.testing.assert_allclose(a[name].sum(), 1, atol=1e-9)
            np.testing.assert_array_equal(a[name], b[name])
    # SSL preset: small supports (odd 3..7 first, 3..5 second).
    rng = np.random.default_rng(0)
    for _ in range(30):
        ks = realesrgan.realesrgan_kernels(rng, realesrgan.REALESRGAN_SSL)
        nz = np.argwhere(np.abs(ks["kernel2"]) > 0)
        assert nz.max(0)[0] - nz.min(0)[0] + 1 <= 5


# ----------------------------------------------------------------------------- filtering, resampling


def test_filter2d_matches_opencv_reflect101():
    cv2 = pytest.importorskip("cv2")
    img = np.random.default_rng(0).random((24, 19, 3)).astype(np.float32)
    for k in (kernels.gaussian_kernel(5, 1.0, 0.5, 0.4), kernels.sinc_kernel(13, 1.2), np.pad(kernels.gaussian_kernel(3, 0.7), 9)):
        want = cv2.filter2D(img, -1, k.astype(np.float32), borderType=cv2.BORDER_REFLECT_101)
        np.testing.assert_allclose(kernels.filter2d(img, k), want, atol=2e-5)


@pytest.mark.torch
@pytest.mark.parametrize("mode", ["area", "bilinear", "bicubic"])
def test_resize_matches_torch_interpolate(mode):
    torch = pytest.importorskip("torch")
    img = np.random.default_rng(1).random((30, 22, 3)).astype(np.float32)
    t = torch.from_numpy(img).permute(2, 0, 1)[None]
    for size in [(15, 11), (10, 7), (37, 29), (30, 22)]:
        want = torch.nn.functional.interpolate(t, size=size, mode=mode)[0].permute(1, 2, 0).numpy()
        np.testing.assert_allclose(resample.resize(img, size, mode), want, atol=2e-5, err_msg=f"{mode} {size}")


# ----------------------------------------------------------------------------- noise, JPEG


def test_gaussian_noise_statistics():
    img = np.full((200, 200, 3), 0.5, np.float32)
    out = artifacts.add_gaussian_noise(img, np.random.default_rng(0), (10, 10), gray_prob=0.0)
    n = out - img
    assert abs(n.std() - 10 / 255) < 0.002 and abs(n.mean()) < 0.001
    assert abs(np.corrcoef(n[..., 0].ravel(), n[..., 1].ravel())[0, 1]) < 0.05
    grey = artifacts.add_gaussian_noise(img, np.random.default_rng(0), (10, 10), gray_prob=1.0)
    np.testing.assert_array_equal(grey[..., 0], grey[..., 2])


def test_poisson_noise_statistics():
    img = np.full((200, 200, 3), 0.25, np.float32)
    img[1, :200] = np.arange(200)[:, None] / 255  # 200 grey levels in use -> v = 256
    out = artifacts.add_poisson_noise(img, np.random.default_rng(0), (1.0, 1.0), gray_prob=0.0)
    n = (out - img)[10:]
    # Poisson(v * x) / v - x has mean 0 and variance x / v, v the next power of two >= the levels.
    x = 64 / 255  # 0.25 on the 8-bit grid
    assert abs(n.var() - x / 256) < 0.05 * x / 256 and abs(n.mean()) < 0.001
    img[1, :200] = np.arange(100).repeat(2)[:, None] / 255  # 100 levels -> v = 128: twice the variance
    n = (artifacts.add_poisson_noise(img, np.random.default_rng(1), (1.0, 1.0), gray_prob=0.0) - img)[10:]
    assert abs(n.var() - x / 128) < 0.05 * x / 128
    half = (artifacts.add_poisson_noise(img, np.random.default_rng(1), (0.5, 0.5), gray_prob=1.0) - img)[10:]
    np.testing.assert_array_equal(half[..., 0], half[..., 1])  # grey noise: one map for all channels


def test_jpeg_quality_orders_error(patch):
    x = patch.astype(np.float32) / 255
    e95 = np.abs(artifacts.jpeg(x, 95) - x).mean()
    e30 = np.abs(artifacts.jpeg(x, 30) - x).mean()
    assert 0 < e95 < e30 < 0.1
    np.testing.assert_array_equal(artifacts.jpeg(x, 60.4), artifacts.jpeg(x, 60))


# ----------------------------------------------------------------------------- pipelines


@pytest.mark.parametrize("name", ["realesrgan", "realesrgan_ssl", "bsrgan"])
def test_degradations_seeded_shapes(patch, name):
    a = degrade(name, patch, 4, np.random.default_rng(3))
    b = degrade(name, patch, 4, np.random.default_rng(3))
    c = degrade(name, patch, 4, np.random.default_rng(4))
    assert a.shape == (16, 16, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert degrade(name, patch[:48, :32], 2, np.random.default_rng(0)).shape == (24, 16, 3)
    with pytest.raises(ValueError, match="multiple"):
        degrade(name, patch[:30], 4, np.random.default_rng(0))


def test_realesrgan_degrades_the_usm_sharpened_hr(patch, monkeypatch):
    """Real-ESRGAN blurs gt_usm, not gt: same draws on a pre-sharpened input without the internal
    USM must give (up to the input's 8-bit rounding) the same LR, and the plain input another."""
    from sslsr.data.usm import usm_sharpen

    for name in ("realesrgan", "realesrgan_ssl"):
        with_usm = degrade(name, patch, 4, np.random.default_rng(7)).astype(np.float64)
        sharpened = np.round(usm_sharpen(patch.astype(np.float32) / 255) * 255).astype(np.uint8)
        with monkeypatch.context() as m:
            m.setattr(realesrgan, "usm_sharpen", lambda x: x)
            pre = degrade(name, sharpened, 4, np.random.default_rng(7)).astype(np.float64)
            plain = degrade(name, patch, 4, np.random.default_rng(7)).astype(np.float64)
        assert np.abs(with_usm - pre).mean() < 0.5 * np.abs(with_usm - plain).mean(), name
    with pytest.raises(ValueError, match="over 25 px"):
        degrade("realesrgan", patch[:24, :24], 4, np.random.default_rng(0))


def test_ssl_preset_is_weaker_than_full_realesrgan(patch):
    bic = imresize(patch, 0.25).astype(np.float64)
    dev = {}
    for name in ("realesrgan", "realesrgan_ssl", "bsrgan"):
        outs = np.stack([degrade(name, patch, 4, np.random.default_rng(i)).astype(np.float64) for i in range(12)])
        assert abs(outs.mean() - bic.mean()) < 8  # brightness preserved on average
        dev[name] = np.abs(outs - bic).mean()
    # The SSL preset stays near the bicubic LR; the full pipeline departs far more.
    assert 0.5 < dev["realesrgan_ssl"] < 0.6 * dev["realesrgan"]
    assert dev["bsrgan"] > dev["realesrgan_ssl"]
