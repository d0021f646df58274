"""MATLAB bicubic: hand-computed kernel taps, independent NumPy oracle, and the Set5 MATLAB files."""

import numpy as np
import pytest

from sslsr.data import io
from sslsr.data.imresize import imresize, mod_crop, resize_matrix

# Antialiased x1/2 taps, by hand: MATLAB stretches Keys' cubic (a=-0.5) to width 8 and scales it
# by 1/2; output pixel j sits halfway between inputs 2j and 2j+1, so the input distances are
# +-0.5, +-1.5, +-2.5, +-3.5, i.e. cubic(0.25, 0.75, 1.25, 1.75) / 2:
# cubic(0.25) = 1.5/64 - 2.5/16 + 1 = 0.8671875; cubic(0.75) = 1.5*27/64 - 2.5*9/16 + 1 = 0.2265625;
# cubic(1.25) = -0.5*125/64 + 2.5*25/16 - 5 + 2 = -0.0703125; cubic(1.75) = -0.0234375 (sum 1: no
# renormalization needed).
TAPS_HALF = np.array([-0.0234375, -0.0703125, 0.2265625, 0.8671875, 0.8671875, 0.2265625, -0.0703125, -0.0234375]) / 2
# x2 upscaling, output pixel 2k+1 (1-based) samples 1-based position k + 0.75: distances
# 1.75, 0.75, -0.25, -1.25 -> cubic = -0.0234375, 0.2265625, 0.8671875, -0.0703125.
TAPS_UP_ODD = np.array([-0.0234375, 0.2265625, 0.8671875, -0.0703125])


def _oracle_half(x):
    """x1/2 along axis 0 with the hand taps and MATLAB's symmetric padding."""
    n = x.shape[0]
    p = np.pad(x, [(3, 4)] + [(0, 0)] * (x.ndim - 1), mode="symmetric")
    return np.stack([np.tensordot(TAPS_HALF, p[2 * j : 2 * j + 8], axes=(0, 0)) for j in range(n // 2)])


def test_hand_taps_in_matrix():
    m = resize_matrix(32, 16, 0.5)
    np.testing.assert_allclose(m[5, 7:15], TAPS_HALF, atol=1e-15)  # interior output 5: inputs 7..14
    assert np.abs(m[5, :7]).max() == 0 and np.abs(m[5, 15:]).max() == 0
    np.testing.assert_allclose(m.sum(1), 1, atol=1e-12)
    up = resize_matrix(10, 20, 2.0)
    np.testing.assert_allclose(up[4, 0:4], TAPS_UP_ODD, atol=1e-15)  # 1-based output 5: inputs 1..4


def test_float_matches_hand_oracle():
    x = np.random.default_rng(1).random((20, 14, 3))
    want = _oracle_half(np.swapaxes(_oracle_half(x), 0, 1)).swapaxes(0, 1)
    out = imresize(x, 0.5)
    assert out.shape == (10, 7, 3) and out.dtype == np.float64
    np.testing.assert_allclose(out, want, atol=1e-12)
    assert imresize(x.astype(np.float32), 0.5).dtype == np.float32


def test_uint8_rounds_each_pass_half_away_from_zero():
    x = np.random.default_rng(2).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    out = imresize(x, 0.5)
    h = np.clip(np.floor(_oracle_half(x.astype(np.float64)) + 0.5), 0, 255)
    want = np.clip(np.floor(_oracle_half(np.swapaxes(h, 0, 1)) + 0.5), 0, 255).swapaxes(0, 1)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, want.astype(np.uint8))


def test_shapes_any_scale_and_constant_preserved():
    x = np.full((30, 21, 3), 77, np.uint8)
    for s, shape in [(1 / 3, (10, 7)), (0.75, (23, 16)), (2.5, (75, 53)), (1 / 4, (8, 6))]:
        out = imresize(x, s)
        assert out.shape == shape + (3,), s
        assert (out == 77).all()
    assert imresize(x[..., 0], 0.5).shape == (15, 11)
    with pytest.raises(ValueError):
        imresize(x, 0)


@pytest.mark.shared
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_set5_matches_matlab_files(shared_data, scale):
    root = shared_data / "Set5"
    same = within1 = total = 0
    for p in io.list_images(root / "HR"):
        hr = io.read_image(p)
        lr = io.read_image(root / "LR_bicubic" / f"X{scale}" / f"{p.stem}x{scale}.png")
        hr = hr[: lr.shape[0] * scale, : lr.shape[1] * scale]  # BasicSR's convention
        out = imresize(hr, 1 / scale)
        assert out.shape == lr.shape
        d = np.abs(out.astype(int) - lr)
        same += (d == 0).sum()
        within1 += (d <= 1).sum()
        total += d.size
    assert within1 / total >= 0.999
    assert same / total >= 0.999  # in fact bit-exact


def test_mod_crop():
    x = np.zeros((13, 26, 3))
    assert mod_crop(x, 4).shape == (12, 24, 3)
    assert mod_crop(x, 12).shape == (12, 24, 3)
