"""USM-sharpened ground truth (sslsr.data.usm) against an OpenCV + NumPy oracle of Real-ESRGAN's rule."""

import cv2
import jax
import numpy as np
import pytest

from sslsr.data.usm import gaussian_blur, gaussian_taps, usm_sharpen


def _oracle(img: np.ndarray, weight=0.5, threshold=10.0) -> np.ndarray:
    """float64, cv2.GaussianBlur(51x51, sigma from size) with its default reflect-101 border."""
    blur = lambda x: cv2.GaussianBlur(x, (51, 51), 0)  # noqa: E731
    residual = img - blur(img)
    mask = (np.abs(residual) * 255 > threshold).astype(np.float64)
    soft = blur(mask)
    sharp = np.clip(img + weight * residual, 0, 1)
    return soft * sharp + (1 - soft) * img


def test_taps_are_opencvs():
    np.testing.assert_allclose(gaussian_taps(51), cv2.getGaussianKernel(51, 0)[:, 0], rtol=1e-10)


@pytest.mark.parametrize("backend", ["jax", "numpy"])
@pytest.mark.parametrize("name, box", [("astronaut", (100, 180, 96, 120)), ("coffee", (60, 300, 70, 41))])
def test_matches_the_oracle_on_photos(photos, name, box, backend):
    y, x, h, w = box
    img = photos[name][y:y + h, x:x + w].astype(np.float64) / 255  # non-square, odd sizes, real edges
    if backend == "jax":
        ours = np.asarray(jax.jit(usm_sharpen)(img.astype(np.float32)))
    else:
        ours = usm_sharpen(img.astype(np.float32))
        assert isinstance(ours, np.ndarray) and ours.dtype == np.float32
    ref = _oracle(img)
    np.testing.assert_allclose(np.asarray(gaussian_blur(img.astype(np.float32))), cv2.GaussianBlur(img, (51, 51), 0),
                               atol=2e-6)
    np.testing.assert_allclose(ours, ref, atol=2e-5)
    changed = np.abs(ref - img) > 1e-3
    assert 0.05 < changed.mean() < 0.95  # the mask is neither empty nor everything on these crops


def test_batched_flat_and_bounds(photos):
    crops = np.stack([photos["astronaut"][:64, :64], photos["coffee"][:64, :64]]).astype(np.float32) / 255
    batched = np.asarray(usm_sharpen(crops))
    for i in range(2):
        np.testing.assert_allclose(batched[i], np.asarray(usm_sharpen(crops[i])), atol=1e-6)
    assert batched.min() >= 0 and batched.max() <= 1
    flat = np.full((40, 40, 3), 0.3, np.float32)
    np.testing.assert_allclose(np.asarray(usm_sharpen(flat)), flat, atol=1e-6)  # nothing to sharpen


def test_too_small_image_is_refused():
    with pytest.raises(ValueError, match="larger than 25 px"):
        usm_sharpen(np.zeros((25, 64, 3), np.float32))
