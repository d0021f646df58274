"""Paired folders, eval pairs, crops/flips alignment, masks and the grain training loader."""

import json
import warnings

import numpy as np
import pytest

from sslsr.data import datasets, io, transforms
from sslsr.data.imresize import imresize
from sslsr.data.pipeline import TrainSource, make_train_loader
from sslsr.edges import edge_mask, mask_stride_pattern


def coord_image(h, w, step=1):
    """uint8 RGB whose R, G encode row, column (times `step`) and B = (row + col) % 2 * 255."""
    y, x = np.mgrid[:h, :w]
    return np.stack([y * step, x * step, (y + x) % 2 * 255], -1).astype(np.uint8)


def write_paired(root, names_sizes, scale=2, lr_sizes=None):
    """BasicSR layout with coordinate-encoded HR and matching LR (LR pixel (i, j) = HR block (i, j))."""
    for k, (name, (h, w)) in enumerate(names_sizes):
        hr = coord_image(h, w)
        io.write_png(root / "HR" / f"{name}.png", hr)
        lh, lw = (h // scale, w // scale) if lr_sizes is None else lr_sizes[k]
        lr = coord_image(lh, lw, step=scale)
        io.write_png(root / "LR_bicubic" / f"X{scale}" / f"{name}x{scale}.png", lr)
        # Mask file encodes the HR's B channel: alignment of mask vs HR is checkable.
        io.write_png(root / "masks" / f"{name}.png", hr[:, :, 2])
    return root


# ----------------------------------------------------------------------------- crops and flips


def test_paired_crop_and_dihedral_keep_alignment():
    rng = np.random.default_rng(0)
    s, p = 3, 12
    hr = np.stack(np.mgrid[:40, :31], -1)  # (y, x) coordinates
    lr = np.stack(np.mgrid[:13, :10], -1)
    mask = hr[..., 0] * 1000 + hr[..., 1]
    seen = set()
    for _ in range(40):
        h, l, m = transforms.paired_random_crop(hr, lr, mask, p, s, rng)
        assert h.shape == (p, p, 2) and l.shape == (p // s, p // s, 2) and m.shape == (p, p)
        assert h[0, 0, 0] % s == 0 and h[0, 0, 1] % s == 0
        h, l, m = transforms.random_augment((h, l, m), rng)
        seen.add((h[0, 0, 0] > h[-1, -1, 0], h[0, 0, 1] > h[-1, -1, 1], h[0, 1, 0] != h[0, 0, 0]))
        np.testing.assert_array_equal(m, h[..., 0] * 1000 + h[..., 1])
        # Each LR pixel covers the s x s HR block of the same position after any flip/rotation.
        blocks = h.reshape(p // s, s, p // s, s, 2) // s
        for c in range(2):
            np.testing.assert_array_equal(blocks[..., c].min((1, 3)), l[..., c])
            np.testing.assert_array_equal(blocks[..., c].max((1, 3)), l[..., c])
    assert len(seen) == 8  # all 8 flips/rotations occur
    with pytest.raises(ValueError, match="smaller"):
        transforms.paired_random_crop(hr[:10], None, None, p, s, rng)


def test_dihedral_inverse_undoes_each_of_the_8_transforms():
    img = np.arange(5 * 7 * 3).reshape(5, 7, 3)
    outs = set()
    for t in (False, True):
        for fh in (False, True):
            for fw in (False, True):
                y = transforms.dihedral(img, t, fh, fw)
                assert y.shape == ((7, 5, 3) if t else (5, 7, 3)) and y.flags.c_contiguous
                np.testing.assert_array_equal(transforms.dihedral(y, t, fh, fw, inverse=True), img)
                outs.add(y.tobytes())
    assert len(outs) == 8
    np.testing.assert_array_equal(transforms.dihedral(img, True, True, False), np.rot90(img, 1))  # counter-clockwise
    np.testing.assert_array_equal(transforms.dihedral(img[..., 0], False, False, True), img[:, ::-1, 0])  # (H, W) too


# ----------------------------------------------------------------------------- folders, bad input


def test_missing_lr_mismatch_and_wrong_mask_name_the_file(tmp_path):
    root = write_paired(tmp_path / "ok", [("a", (20, 20)), ("b", (21, 17))])
    assert [r.name for r in datasets.folder_records(root / "HR", root / "LR_bicubic/X2", 2)] == ["a", "b"]
    (root / "LR_bicubic/X2/bx2.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"b\.png.*bx2\.png"):
        datasets.folder_records(root / "HR", root / "LR_bicubic/X2", 2)
    bad = write_paired(tmp_path / "bad", [("a", (20, 20)), ("c", (21, 17))], lr_sizes=[(10, 10), (11, 8)])
    with pytest.raises(ValueError, match=r"cx2\.png.*floor"):
        datasets.folder_records(bad / "HR", bad / "LR_bicubic/X2", 2)
    wm = write_paired(tmp_path / "wm", [("a", (20, 20))])
    io.write_png(wm / "masks" / "a.png", np.zeros((19, 20), np.uint8))
    with pytest.raises(ValueError, match=r"masks/a\.png"):
        datasets.folder_records(wm / "HR", None, 2, wm / "masks")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty"):
        datasets.folder_records(tmp_path / "empty")
    with pytest.raises(ValueError, match="empty"):
        make_train_loader(hr_dir=tmp_path / "empty", scale=2, patch_size=8, batch_size=1, shard=(0, 1))


def test_truncated_image_error_names_file(tmp_path):
    root = write_paired(tmp_path, [("a", (40, 40))])
    data = (root / "HR/a.png").read_bytes()
    (root / "HR/a.png").write_bytes(data[:-40])  # header intact, data truncated
    records = datasets.folder_records(root / "HR")
    with pytest.raises(ValueError, match=r"HR/a\.png"):
        TrainSource(records, 2, use_mask=False)[0]
    with pytest.raises(ValueError, match=r"HR/a\.png"):
        list(datasets.iterate_eval_pairs(root, scale=2))


def test_small_images_skipped_with_one_warning(tmp_path):
    imgs = [("big", coord_image(16, 16)), ("tiny", coord_image(6, 20)), ("thin", coord_image(20, 7))]
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        kept = datasets.drop_small(datasets.array_records(imgs), 8, 2)
    assert [r.name for r in kept] == ["big"]
    assert len(w) == 1 and "tiny" in str(w[0].message) and "thin" in str(w[0].message)
    with pytest.raises(ValueError, match="tiny"):
        datasets.drop_small(datasets.array_records(imgs[1:]), 8, 2)


# ----------------------------------------------------------------------------- eval pairs


def test_eval_pairs_conventions(tmp_path):
    root = write_paired(tmp_path, [("b", (21, 17)), ("a", (20, 20))], scale=3)
    pairs = list(datasets.iterate_eval_pairs(root, scale=3))
    assert [n for n, _, _ in pairs] == ["a", "b"]
    name, lr, hr = pairs[1]
    assert lr.shape == (7, 5, 3) and hr.shape == (21, 15, 3)  # HR cropped top-left to LR x 3
    np.testing.assert_array_equal(hr, coord_image(21, 17)[:21, :15])
    # HR-only: mod-crop then MATLAB bicubic.
    pairs = list(datasets.iterate_eval_pairs(hr_dir=root / "HR", scale=3, hr_mod=6))
    _, lr, hr = pairs[1]
    assert hr.shape == (18, 12, 3)
    np.testing.assert_array_equal(lr, imresize(hr, 1 / 3))
    demo = list(datasets.iterate_eval_pairs("demo", scale=4))
    assert [n for n, _, _ in demo] == ["coffee", "rocket"]
    for _, lr, hr in demo:
        assert hr.shape[0] == 4 * lr.shape[0] and hr.shape[1] == 4 * lr.shape[1] and hr.shape[0] % 4 == 0


@pytest.mark.shared
def test_eval_pairs_set5_x3(shared_data):
    pairs = list(datasets.iterate_eval_pairs(shared_data / "Set5", scale=3))
    assert [n for n, _, _ in pairs] == ["baby", "bird", "butterfly", "head", "woman"]
    for _, lr, hr in pairs:
        assert hr.shape == (lr.shape[0] * 3, lr.shape[1] * 3, 3)
        assert (imresize(hr, 1 / 3) == lr).mean() > 0.999


# ----------------------------------------------------------------------------- masks


def test_masks_computed_on_whole_image_and_cached(tmp_path):
    from skimage import data

    hr = data.astronaut()[100:160, 150:230]
    io.write_png(tmp_path / "HR" / "cat.png", hr)
    recs = datasets.folder_records(tmp_path / "HR", None, 2, tmp_path / "m")
    src = TrainSource(recs, 2, use_mask=True)
    m = src[0]["mask"]
    want = edge_mask(hr)
    assert 0.02 < want.mean() < 0.9
    np.testing.assert_array_equal(m, want)
    np.testing.assert_array_equal(io.read_image(tmp_path / "m" / "cat.png")[:, :, 0], want * 255)  # cached on disk
    np.testing.assert_array_equal(TrainSource(recs, 2, use_mask=True)[0]["mask"], want)  # read back


def test_edge_threshold_reaches_the_computed_masks():
    from skimage import data

    hr = np.ascontiguousarray(data.astronaut()[100:164, 150:214])
    kw = dict(images=[("a", hr)], scale=2, patch_size=64, batch_size=1, seed=0, shard=(0, 1), use_rot=False, use_hflip=False)
    for threshold in (20.0, 60.0):
        got = _first(make_train_loader(**kw, edge_threshold=threshold), 1)[0]["mask"][0]
        np.testing.assert_array_equal(got, edge_mask(hr, threshold))
    assert edge_mask(hr, 60.0).sum() < edge_mask(hr, 20.0).sum()


def test_data_modules_import_neither_jax_nor_losses():
    """Grain workers import these; our modules never load JAX or sslsr.losses themselves (grain
    0.2 imports JAX on its own, so sslsr.data.pipeline is checked by its source instead)."""
    import ast
    import pathlib
    import subprocess
    import sys

    mods = "sslsr.data.degradations, sslsr.data.transforms, sslsr.data.datasets, sslsr.data.usm, sslsr.edges"
    code = f"import sys, {mods}; print(sorted(m for m in ('jax', 'sslsr.losses', 'torch') if m in sys.modules))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "[]", (r.stdout, r.stderr)
    import sslsr.data.pipeline as pipeline

    tree = ast.parse(pathlib.Path(pipeline.__file__).read_text())
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = [a.name for n in top for a in n.names] + [n.module or "" for n in top if isinstance(n, ast.ImportFrom)]
    assert not [m for m in names if m.split(".")[0] == "jax" or m.startswith("sslsr.losses")], names


# ----------------------------------------------------------------------------- loader


def _first(loader, n):
    it = iter(loader)
    return [next(it) for _ in range(n)]


def test_loader_stored_lr_alignment_masks_and_stride(tmp_path):
    root = write_paired(tmp_path, [("a", (40, 36)), ("b", (30, 44)), ("c", (5, 5))], scale=2)
    kw = dict(hr_dir=root / "HR", lr_dir=root / "LR_bicubic/X2", mask_dir=root / "masks", scale=2, patch_size=8, batch_size=3, seed=1, shard=(0, 1))
    with pytest.warns(UserWarning, match="c \\(5x5\\)"):
        loader = make_train_loader(**kw)
    for b in _first(loader, 4):
        assert b["hr"].shape == (3, 8, 8, 3) and b["lr"].shape == (3, 4, 4, 3) and b["mask"].shape == (3, 8, 8)
        assert b["hr"].dtype == b["lr"].dtype == b["mask"].dtype == np.float32
        hr = np.round(b["hr"] * 255).astype(int)
        lr = np.round(b["lr"] * 255).astype(int)
        blocks = hr.reshape(3, 4, 2, 4, 2, 3) // 2 * 2
        for c in range(2):
            np.testing.assert_array_equal(blocks[..., c].min((2, 4)), lr[..., c])
            np.testing.assert_array_equal(blocks[..., c].max((2, 4)), lr[..., c])
        np.testing.assert_array_equal(b["mask"], hr[..., 2] / 255)
    with pytest.warns(UserWarning):
        strided = _first(make_train_loader(**kw, mask_stride=2), 1)[0]
    np.testing.assert_array_equal(strided["mask"], _first(loader, 1)[0]["mask"] * mask_stride_pattern(8, 8, 2))


def test_loader_bicubic_on_the_fly_deterministic_and_resumable():
    imgs = [(n, coord_image(24 + 4 * k, 28)) for k, n in enumerate("abcd")]
    kw = dict(images=imgs, scale=4, patch_size=8, batch_size=2, use_mask=False, shard=(0, 1))
    a = _first(make_train_loader(**kw, seed=3), 5)
    b = _first(make_train_loader(**kw, seed=3), 5)
    c = _first(make_train_loader(**kw, seed=4), 5)
    for x, y in zip(a, b):
        assert set(x) == {"lr", "hr"}
        np.testing.assert_array_equal(x["hr"], y["hr"])
    assert any(not np.array_equal(x["hr"], y["hr"]) for x, y in zip(a, c))
    for x in a:  # LR = MATLAB bicubic of the (flipped) HR patch: flips commute with it here
        for hr, lr in zip(x["hr"], x["lr"]):
            hr8 = np.round(hr * 255).astype(np.uint8)
            assert np.abs(imresize(hr8, 0.25).astype(int) - np.round(lr * 255)).max() <= 1
    loader = make_train_loader(**kw, seed=3)
    it = iter(loader)
    for _ in range(3):
        next(it)
    state = json.loads(json.dumps(it.get_state()))
    rest = [next(it) for _ in range(2)]
    it2 = iter(loader)
    it2.set_state(state)
    for x, y in zip(rest, [next(it2) for _ in range(2)]):
        np.testing.assert_array_equal(x["hr"], y["hr"])
        np.testing.assert_array_equal(x["lr"], y["lr"])
    for x, y in zip(a[3:], rest):
        np.testing.assert_array_equal(x["hr"], y["hr"])


def test_loader_shards_are_disjoint_streams():
    imgs = [(n, coord_image(32, 32)) for n in "abc"]
    kw = dict(images=imgs, scale=2, patch_size=8, use_mask=False, seed=0)
    s0 = _first(make_train_loader(**kw, shard=(0, 2), batch_size=4), 1)[0]
    s1 = _first(make_train_loader(**kw, shard=(1, 2), batch_size=4), 1)[0]
    full = _first(make_train_loader(**kw, shard=(0, 1), batch_size=8), 1)[0]
    np.testing.assert_array_equal(s0["hr"], full["hr"][0::2])
    np.testing.assert_array_equal(s1["hr"], full["hr"][1::2])


@pytest.mark.slow
def test_loader_workers_give_the_same_stream_and_state():
    imgs = [(n, coord_image(32, 40)) for n in "abcde"]
    kw = dict(images=imgs, scale=2, patch_size=8, batch_size=2, seed=5, shard=(0, 1))
    ref = _first(make_train_loader(**kw, num_workers=0), 4)
    it = iter(make_train_loader(**kw, num_workers=2))
    try:
        got = [next(it) for _ in range(3)]
        state = json.loads(json.dumps(it.get_state()))
    finally:
        it.close()
    for x, y in zip(ref, got):
        for k in ("lr", "hr", "mask"):
            np.testing.assert_array_equal(x[k], y[k])
    it2 = iter(make_train_loader(**kw, num_workers=2))
    try:
        it2.set_state(state)
        np.testing.assert_array_equal(next(it2)["hr"], ref[3]["hr"])
    finally:
        it2.close()


def test_loader_realesrgan_pool_deterministic_and_resumable():
    from skimage import data

    imgs = [("astronaut", data.astronaut()[:96, :96]), ("coffee", data.coffee()[:64, :96])]
    kw = dict(images=imgs, scale=4, patch_size=32, batch_size=2, degradation="realesrgan_ssl", pool_size=6, seed=2, shard=(0, 1))
    loader = make_train_loader(**kw)
    it = iter(loader)
    first = [next(it) for _ in range(2)]  # 4 samples: mid-window of the 6-sample pool
    state = json.loads(json.dumps(it.get_state()))
    rest = [next(it) for _ in range(3)]
    again = _first(make_train_loader(**kw), 5)
    for x, y in zip(first + rest, again):
        for k in ("lr", "hr", "mask"):
            np.testing.assert_array_equal(x[k], y[k])
    it2 = iter(loader)
    it2.set_state(state)
    for x in rest:
        np.testing.assert_array_equal(next(it2)["lr"], x["lr"])
    b = first[0]
    assert b["lr"].shape == (2, 8, 8, 3) and b["hr"].shape == (2, 32, 32, 3)
    # Degraded LR stays close to the HR content (weak preset): compare with the bicubic LR.
    bic = np.stack([imresize(np.round(h * 255).astype(np.uint8), 0.25) for h in b["hr"]]) / 255
    assert np.abs(bic - b["lr"]).mean() < 0.1
    with pytest.raises(ValueError, match="lr_dir"):
        make_train_loader(hr_dir=".", lr_dir=".", scale=4, patch_size=32, batch_size=2, degradation="realesrgan", shard=(0, 1))
    with pytest.raises(ValueError, match="degradation"):
        make_train_loader(images=imgs, scale=4, patch_size=32, batch_size=2, degradation="gauss", shard=(0, 1))


def test_cache_images_same_stream(tmp_path):
    root = write_paired(tmp_path, [("a", (40, 36)), ("b", (30, 44))], scale=2)
    kw = dict(hr_dir=root / "HR", lr_dir=root / "LR_bicubic/X2", mask_dir=root / "masks", scale=2, patch_size=8, batch_size=3, seed=1, shard=(0, 1))
    for x, y in zip(_first(make_train_loader(**kw), 3), _first(make_train_loader(**kw, cache_images=True), 3)):
        for k in ("lr", "hr", "mask"):
            np.testing.assert_array_equal(x[k], y[k])
    b = _first(make_train_loader(**kw), 1)[0]
    assert b["hr"].max() <= 1.0 and b["hr"].min() >= 0.0


@pytest.mark.slow
def test_worker_error_names_the_file(tmp_path):
    root = write_paired(tmp_path, [("a", (40, 40)), ("b", (40, 40))])
    data = (root / "HR/b.png").read_bytes()
    (root / "HR/b.png").write_bytes(data[:-60])  # header intact: only decoding (in a worker) fails
    it = iter(make_train_loader(hr_dir=root / "HR", scale=2, patch_size=8, batch_size=2, num_workers=2, use_mask=False, shard=(0, 1)))
    try:
        with pytest.raises(ValueError, match=r"HR/b\.png: cannot read image"):
            for _ in range(4):
                next(it)
    finally:
        it.close()


@pytest.mark.shared
def test_t91_small_images_listed_once(shared_data):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        kept = datasets.drop_small(datasets.folder_records(shared_data / "T91" / "HR"), 128, 4)
    assert len(kept) == 84 and len(w) == 1
    assert "skipping 7 of 91" in str(w[0].message) and "t20 (78x78)" in str(w[0].message)
