"""The optional tensorflow-datasets source, with a stand-in module (no TensorFlow needed)."""

import sys
import types

import numpy as np
import pytest

from sslsr.data import io
from sslsr.data import tfds as T


def test_not_imported_until_used(monkeypatch):
    attempts = []

    class Spy:
        def find_spec(self, name, path=None, target=None):
            if name.startswith("tensorflow"):
                attempts.append(name)
            return None

    monkeypatch.setattr(sys, "meta_path", [Spy()] + sys.meta_path)
    monkeypatch.delitem(sys.modules, "sslsr.data.tfds")
    import importlib

    importlib.import_module("sslsr.data.tfds")
    assert attempts == []


def test_missing_package_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # import fails
    with pytest.raises(ImportError, match=r"sslsr\[tfds\]"):
        next(T.tfds_images("div2k"))


def test_fake_tfds_export(monkeypatch, tmp_path):
    rng = np.random.default_rng(0)
    records = [{"hr": rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), "lr": None} for _ in range(3)]
    records.append({"hr": rng.integers(0, 256, (5, 5, 1), dtype=np.uint8), "lr": None})
    calls = {}

    def load(name, split, data_dir, shuffle_files):
        calls.update(name=name, split=split, shuffle_files=shuffle_files)
        return records

    fake = types.SimpleNamespace(load=load, as_numpy=lambda ds: iter(ds))
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake)
    assert T.export_folder(tmp_path, "div2k/bicubic_x4", "validation", limit=3) == 3
    assert calls == {"name": "div2k/bicubic_x4", "split": "validation", "shuffle_files": False}
    files = io.list_images(tmp_path)
    assert [f.name for f in files] == [f"div2k_bicubic_x4_validation_{i:06d}.png" for i in range(3)]
    np.testing.assert_array_equal(io.read_image(files[1]), records[1]["hr"])
    grey = list(T.tfds_images("x", "train"))[3][1]
    assert grey.shape == (5, 5, 3)
    with pytest.raises(KeyError, match="image"):
        next(T.tfds_images("x", "train", image_key="image"))
