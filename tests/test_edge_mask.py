"""edge_mask equals the paper's offline PIL + OpenCV computation; the stride pattern."""

import numpy as np
import pytest

from sslsr.losses import edge_mask, mask_stride_pattern

cv2 = pytest.importorskip("cv2")
Image = pytest.importorskip("PIL.Image")


def _reference_mask(rgb: np.ndarray, threshold: float = 20.0) -> np.ndarray:
    grey = np.asarray(Image.fromarray(rgb).convert("L"))
    lap = cv2.Laplacian(grey, -1, ksize=1)  # uint8 saturation, BORDER_REFLECT_101 by default
    return (lap > threshold).astype(np.float32)


def test_edge_mask_equals_pil_opencv_on_photos(photos):
    for name, rgb in photos.items():
        got = edge_mask(rgb)
        assert got.dtype == np.float32 and got.shape == rgb.shape[:2], name
        np.testing.assert_array_equal(got, _reference_mask(rgb), err_msg=name)
        assert 0.02 < got.mean() < 0.5, name  # real photos have a real amount of edges


def test_edge_mask_threshold_and_odd_crop(photos):
    rgb = photos["coffee"][17:120, 33:98]  # odd sizes; borders exercise reflect-101
    for threshold in (0.0, 20.0, 100.0):
        np.testing.assert_array_equal(edge_mask(rgb, threshold), _reference_mask(rgb, threshold))


def test_edge_mask_batch(photos):
    batch = np.stack([photos["astronaut"][:64, :80], photos["rocket"][100:164, 200:280]])
    got = edge_mask(batch)
    assert got.shape == (2, 64, 80)
    for b in range(2):
        np.testing.assert_array_equal(got[b], _reference_mask(batch[b]))


def test_edge_mask_uses_pil_fixed_point_luma():
    # (0, 190, 105): PIL's fixed point gives 124, float 0.299/0.587/0.114 rounding gives 123.
    rgb = np.zeros((5, 5, 3), np.uint8)
    rgb[2, 2] = (0, 190, 105)
    assert np.asarray(Image.fromarray(rgb).convert("L"))[2, 2] == 124
    # A single bright pixel: the Laplacian at its 4-neighbours equals its grey value, so the
    # threshold 123 separates the two luma conventions.
    mask = edge_mask(rgb, threshold=123.0)
    assert mask[1, 2] == mask[3, 2] == mask[2, 1] == mask[2, 3] == 1.0
    assert edge_mask(rgb, threshold=124.0)[1, 2] == 0.0
    assert mask[2, 2] == 0.0  # the negative response at the pixel saturates to 0
    assert mask.sum() == 4.0


def test_edge_mask_rejects_float():
    with pytest.raises(ValueError, match="uint8"):
        edge_mask(np.zeros((8, 8, 3), np.float32))


def test_mask_stride_pattern_is_tiled_identity():
    got = mask_stride_pattern(7, 11, 3)
    expected = np.tile(np.eye(3, dtype=np.float32), (3, 4))[:7, :11]
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(mask_stride_pattern(4, 5, 1), np.ones((4, 5), np.float32))


def test_losses_import_neither_torch_nor_grain():
    import subprocess
    import sys

    code = "import sys, sslsr.losses; print('torch' in sys.modules, 'grain' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.split() == ["False", "False"], (r.stdout, r.stderr)


def test_edge_mask_lives_in_sslsr_edges():
    import sslsr.edges
    import sslsr.losses.edge

    assert edge_mask is sslsr.edges.edge_mask is sslsr.losses.edge.edge_mask
    assert mask_stride_pattern is sslsr.edges.mask_stride_pattern
