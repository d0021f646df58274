"""Mask and preparation CLIs."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from sslsr.data import io, masks, prepare
from sslsr.edges import edge_mask


def _cli(module, *args):
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def photo():
    from skimage import data

    return np.ascontiguousarray(data.chelsea()[100:160, 150:250])  # 60 x 100


def test_masks_cli(tmp_path, photo):
    io.write_png(tmp_path / "hr" / "cat.png", photo)
    io.write_png(tmp_path / "hr" / "flip.png", photo[::-1])
    r = _cli("sslsr.data.masks", tmp_path / "hr", tmp_path / "m")
    assert r.returncode == 0, r.stderr
    assert "wrote 2 masks" in r.stdout
    for name, img in (("cat", photo), ("flip", photo[::-1])):
        m = io.read_image(tmp_path / "m" / f"{name}.png")[:, :, 0]
        np.testing.assert_array_equal(m, edge_mask(img).astype(np.uint8) * 255)
    assert masks.write_masks(tmp_path / "hr", tmp_path / "m", progress=False) == 0  # kept
    assert masks.write_masks(tmp_path / "hr", tmp_path / "m", overwrite=True, progress=False) == 2


def test_windows_rule():
    assert prepare.windows(40, 16, 8, 0) == [0, 8, 16, 24]
    assert prepare.windows(45, 16, 8, 0) == [0, 8, 16, 24, 29]  # border strip included
    assert prepare.windows(45, 16, 8, 5) == [0, 8, 16, 24]  # ... unless narrower than thresh
    assert prepare.windows(10, 16, 8, 0) == []


def test_multiscale_names_sizes_and_lanczos(tmp_path, photo):
    io.write_png(tmp_path / "in" / "img.png", photo)
    out = prepare.multiscale(tmp_path / "in" / "img.png", tmp_path / "ms", shortest_edge=32)
    sizes = {p.name: Image.open(p).size for p in out}
    # 0.75 -> 75x45 and 0.6 -> 60x36 keep short side >= 32; 1/3 (33x20) does not.
    assert sizes == {"imgT0.png": (75, 45), "imgT1.png": (60, 36), "imgS.png": (53, 32), "img.png": (100, 60)}
    want = np.asarray(Image.fromarray(photo).resize((60, 36), resample=Image.LANCZOS))
    np.testing.assert_array_equal(io.read_image(tmp_path / "ms" / "imgT1.png"), want)
    np.testing.assert_array_equal(io.read_image(tmp_path / "ms" / "img.png"), photo)
    small = prepare.multiscale(tmp_path / "in" / "img.png", tmp_path / "ms2", shortest_edge=80)
    assert [p.name for p in small] == ["imgS.png"] and Image.open(small[0]).size == (133, 80)


def test_prepare_all_crops_masks_with_images(tmp_path, photo):
    io.write_png(tmp_path / "in" / "a.png", photo)
    r = _cli("sslsr.data.prepare", "all", tmp_path / "in", tmp_path / "out", "--shortest_edge", "40", "--crop", "32", "--step", "16")
    assert r.returncode == 0, r.stderr
    ms = io.read_image(tmp_path / "out" / "multiscale_HR" / "a.png")
    full_mask = edge_mask(ms).astype(np.uint8) * 255
    subs = sorted((tmp_path / "out" / "HR_sub").glob("a_s*.png"))
    ys, xs = prepare.windows(60, 32, 16, 0), prepare.windows(100, 32, 16, 0)
    assert len(subs) == len(ys) * len(xs) and xs == [0, 16, 32, 48, 64, 68]
    # Sub-image k is window (ys[i], xs[j]) in row-major order; its mask is the crop of the full mask.
    k = 0
    for y in ys:
        for x in xs:
            k += 1
            name = f"a_s{k:03d}.png"
            np.testing.assert_array_equal(io.read_image(tmp_path / "out" / "HR_sub" / name), ms[y : y + 32, x : x + 32])
            np.testing.assert_array_equal(io.read_image(tmp_path / "out" / "mask_sub" / name)[:, :, 0], full_mask[y : y + 32, x : x + 32])


def test_cli_user_errors_are_one_line_naming_the_flag_or_file(tmp_path, photo):
    io.write_png(tmp_path / "in" / "a.png", photo)
    (tmp_path / "empty").mkdir()
    for args, names in [
        (("sslsr.data.prepare", "multiscale", tmp_path / "in", tmp_path / "o", "--crop", "32"), "--crop"),
        (("sslsr.data.prepare", "subimages", tmp_path / "in", tmp_path / "o", "--mask_dir", tmp_path), "--mask_dir"),
        (("sslsr.data.prepare", "bogus", tmp_path / "in", tmp_path / "o"), "<subcommand>"),
        (("sslsr.data.prepare", "multiscale", tmp_path / "empty", tmp_path / "o"), str(tmp_path / "empty")),
        (("sslsr.data.masks", tmp_path / "missing", tmp_path / "m"), str(tmp_path / "missing")),
    ]:
        r = _cli(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert r.stderr.strip().splitlines() == [r.stderr.strip()] and r.stderr.startswith(f"error: {names}"), r.stderr
    # The former argparse spelling still works.
    r = _cli("sslsr.data.prepare", "multiscale", tmp_path / "in", tmp_path / "ms", "--shortest-edge", "40")
    assert r.returncode == 0 and "wrote 3 images" in r.stdout, r.stderr
