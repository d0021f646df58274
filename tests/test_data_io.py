"""read_image conversions and bad-file errors; built-in demo images."""

import numpy as np
import pytest
from PIL import Image

from sslsr.data import builtin, io


def _rng():
    return np.random.default_rng(0)


def test_rgb_roundtrip(tmp_path):
    img = _rng().integers(0, 256, (7, 9, 3), dtype=np.uint8)
    io.write_png(tmp_path / "sub" / "a.png", img)
    out = io.read_image(tmp_path / "sub" / "a.png")
    assert out.dtype == np.uint8 and out.shape == (7, 9, 3)
    np.testing.assert_array_equal(out, img)


def test_grey_becomes_three_equal_channels(tmp_path):
    g = _rng().integers(0, 256, (5, 6), dtype=np.uint8)
    Image.fromarray(g, "L").save(tmp_path / "g.png")
    out = io.read_image(tmp_path / "g.png")
    assert out.shape == (5, 6, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], g)


def test_rgba_drops_alpha(tmp_path):
    a = _rng().integers(0, 256, (4, 5, 4), dtype=np.uint8)
    a[..., 3] = np.arange(20).reshape(4, 5)  # mostly transparent: must NOT be composited
    Image.fromarray(a, "RGBA").save(tmp_path / "a.png")
    np.testing.assert_array_equal(io.read_image(tmp_path / "a.png"), a[..., :3])


def test_palette_expands(tmp_path):
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[1:3, 1:3] = (200, 30, 90)
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=4).save(tmp_path / "p.png")
    with Image.open(tmp_path / "p.png") as im:
        assert im.mode == "P"
    np.testing.assert_array_equal(io.read_image(tmp_path / "p.png"), rgb)


def test_16bit_keeps_high_byte_like_opencv(tmp_path):
    cv2 = pytest.importorskip("cv2")
    rng = _rng()
    rgb16 = rng.integers(0, 65536, (6, 7, 3), dtype=np.uint16)
    g16 = rng.integers(0, 65536, (6, 7), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "rgb16.png"), rgb16[..., ::-1])  # cv2 writes BGR
    cv2.imwrite(str(tmp_path / "g16.png"), g16)
    out = io.read_image(tmp_path / "rgb16.png")
    np.testing.assert_array_equal(out, (rgb16 >> 8).astype(np.uint8))
    out_g = io.read_image(tmp_path / "g16.png")
    np.testing.assert_array_equal(out_g, np.repeat((g16 >> 8).astype(np.uint8)[..., None], 3, 2))
    # BasicSR reads with cv2.IMREAD_COLOR: identical result.
    for name in ("rgb16.png", "g16.png"):
        ref = cv2.imread(str(tmp_path / name), cv2.IMREAD_COLOR)[..., ::-1]
        np.testing.assert_array_equal(io.read_image(tmp_path / name), ref)


def test_truncated_png_one_line_error_naming_file(tmp_path):
    img = _rng().integers(0, 256, (64, 64, 3), dtype=np.uint8)
    io.write_png(tmp_path / "full.png", img)
    data = (tmp_path / "full.png").read_bytes()
    bad = tmp_path / "trunc.png"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError) as e:
        io.read_image(bad)
    assert str(bad) in str(e.value) and "\n" not in str(e.value)
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match="junk.png"):
        io.read_image(junk)
    with pytest.raises(FileNotFoundError, match="missing.png"):
        io.read_image(tmp_path / "missing.png")


def test_list_images_sorted_and_empty_folder(tmp_path):
    with pytest.raises(ValueError, match=str(tmp_path)):
        io.list_images(tmp_path)
    for n in ("b", "a", "c"):
        io.write_png(tmp_path / f"{n}.png", np.zeros((2, 2, 3), np.uint8))
    (tmp_path / "notes.txt").write_text("x")
    assert [p.name for p in io.list_images(tmp_path)] == ["a.png", "b.png", "c.png"]


def test_demo_images():
    train = builtin.demo_images("train")
    assert [n for n, _ in train] == ["astronaut", "chelsea", "hubble_deep_field", "immunohistochemistry", "retina"]
    val = builtin.demo_images("val")
    assert [n for n, _ in val] == ["coffee", "rocket"]
    for _, img in train + val:
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3 and min(img.shape[:2]) >= 300
        assert img.std() > 10  # real photos, not blanks
    with pytest.raises(ValueError, match="split"):
        builtin.demo_images("test")


def test_to_uint8_clips_and_rounds_like_basicsr():
    x = np.array([-0.5, 0.0, 0.5 / 255, 1.5 / 255, 0.2, 1.0, 2.0], np.float32)
    np.testing.assert_array_equal(io.to_uint8(x), [0, 0, 0, 2, 51, 255, 255])  # halves to even
