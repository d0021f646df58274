"""PSNR/SSIM against independent references (direct NumPy PSNR, scikit-image SSIM) on real photos."""

import numpy as np
import pytest
from PIL import Image
from skimage.metrics import structural_similarity

from sslsr.metrics import psnr, ssim


def _degrade(img: np.ndarray, seed: int) -> np.ndarray:
    """A realistic SR-like error: bicubic down/up by 4 plus a little noise, rounded to uint8."""
    h, w = img.shape[:2]
    small = Image.fromarray(img).resize((w // 4, h // 4), Image.BICUBIC)
    up = np.asarray(small.resize((w, h), Image.BICUBIC), np.float64)
    noise = np.random.default_rng(seed).normal(0, 2.0, up.shape)
    return np.clip(np.round(up + noise), 0, 255).astype(np.uint8)


def _y_reference(img: np.ndarray) -> np.ndarray:
    # Written from the BT.601 definition, per channel (not through rgb_to_y).
    r, g, b = (img[..., i].astype(np.float64) / 255.0 for i in range(3))
    return 16.0 + 65.481 * r + 128.553 * g + 24.966 * b


def _psnr_reference(a: np.ndarray, b: np.ndarray) -> float:
    return 10.0 * np.log10(255.0**2 / np.mean((a - b) ** 2))


def _crop(img, c):
    return img[c:-c, c:-c] if c else img


@pytest.fixture(scope="module")
def pairs(photos):
    # 256x256 centre crops keep the skimage reference fast; one full-size photo for realism.
    out = {}
    for i, (name, img) in enumerate(photos.items()):
        h, w = img.shape[:2]
        crop = img if name == "chelsea" else img[h // 2 - 128 : h // 2 + 128, w // 2 - 128 : w // 2 + 128]
        out[name] = (crop, _degrade(crop, i))
    return out


@pytest.mark.parametrize("crop_border", [0, 4])
def test_psnr_y_matches_direct_numpy(pairs, crop_border):
    for name, (hr, sr) in pairs.items():
        want = _psnr_reference(_crop(_y_reference(sr), crop_border), _crop(_y_reference(hr), crop_border))
        got = psnr(sr, hr, crop_border=crop_border)
        assert abs(got - want) < 1e-6, name
        assert 15 < got < 40, (name, got)  # a real degradation, not a degenerate case


def test_psnr_rgb_matches_direct_numpy(pairs):
    for name, (hr, sr) in pairs.items():
        want = _psnr_reference(_crop(sr.astype(np.float64), 4), _crop(hr.astype(np.float64), 4))
        assert abs(psnr(sr, hr, crop_border=4, y_channel=False) - want) < 1e-6, name


@pytest.mark.parametrize("crop_border", [0, 4])
def test_ssim_y_matches_skimage(pairs, crop_border):
    for name, (hr, sr) in pairs.items():
        want = structural_similarity(
            _crop(_y_reference(sr), crop_border),
            _crop(_y_reference(hr), crop_border),
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=255,
        )
        got = ssim(sr, hr, crop_border=crop_border)
        assert abs(got - want) < 1e-6, (name, got, want)
        assert 0.3 < got < 0.99, (name, got)


def test_ssim_rgb_matches_skimage(pairs):
    hr, sr = pairs["astronaut"]
    want = structural_similarity(
        _crop(sr.astype(np.float64), 4),
        _crop(hr.astype(np.float64), 4),
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=255,
        channel_axis=-1,
    )
    assert abs(ssim(sr, hr, crop_border=4, y_channel=False) - want) < 1e-6


def test_ssim_matches_opencv_filter2d_formulation(pairs):
    # BasicSR's own formulation: cv2.filter2D with the outer-product Gaussian, then [5:-5, 5:-5].
    cv2 = pytest.importorskip("cv2")
    hr, sr = pairs["coffee"]
    x, y = _y_reference(sr), _y_reference(hr)
    k = cv2.getGaussianKernel(11, 1.5)
    win = k @ k.T
    f = lambda a: cv2.filter2D(a, -1, win)[5:-5, 5:-5]  # noqa: E731
    mx, my = f(x), f(y)
    sxx, syy, sxy = f(x * x) - mx**2, f(y * y) - my**2, f(x * y) - mx * my
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    want = np.mean(((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2)))
    assert abs(ssim(sr, hr, crop_border=0) - want) < 1e-6


def test_identical_images(pairs):
    hr, _ = pairs["rocket"]
    assert psnr(hr, hr, crop_border=4) == float("inf")
    assert psnr(hr, hr, crop_border=0, y_channel=False) == float("inf")
    assert ssim(hr, hr, crop_border=4) == pytest.approx(1.0, abs=1e-12)


def test_grey_images_become_rgb(pairs):
    hr, sr = pairs["astronaut"]
    grey_hr, grey_sr = hr[..., 0], sr[..., 0]
    as_rgb = lambda g: np.repeat(g[..., None], 3, axis=-1)  # noqa: E731
    assert psnr(grey_sr, grey_hr, crop_border=4) == psnr(as_rgb(grey_sr), as_rgb(grey_hr), crop_border=4)
    assert ssim(grey_sr[..., None], grey_hr, crop_border=4) == ssim(as_rgb(grey_sr), as_rgb(grey_hr), crop_border=4)
    # Y of a grey value v is 16 + 219 v / 255.
    gs, gh = grey_sr.astype(np.float64), grey_hr.astype(np.float64)
    want = _psnr_reference(16 + 219 * gs / 255.0, 16 + 219 * gh / 255.0)
    assert abs(psnr(grey_sr, grey_hr, crop_border=0) - want) < 1e-6


def test_bad_input_raises():
    a = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(a, a[:16], crop_border=0)
    with pytest.raises(ValueError, match="RGB image"):
        ssim(np.zeros((32, 32, 4), np.uint8), a, crop_border=0)
    with pytest.raises(ValueError, match="crop_border"):
        psnr(a, a, crop_border=16)


@pytest.mark.shared
def test_set5_bicubic_matches_published_baseline(shared_data):
    # Bicubic x4 on Set5 is reported as 28.42 dB / 0.8104 (Y, border 4) in SR papers (EDSR, RCAN,
    # ESRGAN); those used MATLAB, whose rgb2ycbcr rounds Y to uint8, so allow a small gap.
    from sslsr.data.datasets import iterate_eval_pairs
    from sslsr.data.degradations import imresize

    p, s = [], []
    for _, lr, hr in iterate_eval_pairs(shared_data / "Set5", scale=4):
        bic = imresize(lr, 4)
        p.append(psnr(bic, hr, crop_border=4))
        s.append(ssim(bic, hr, crop_border=4))
    assert len(p) == 5
    assert abs(np.mean(p) - 28.42) < 0.02, np.mean(p)
    assert abs(np.mean(s) - 0.8104) < 0.001, np.mean(s)
