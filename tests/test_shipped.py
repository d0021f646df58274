"""The x4 model shipped inside the package ('srvgg-x4-psnr', configs/srvgg_psnr.py).

Checks that it loads by name wherever a checkpoint is accepted, that its file is the one trained
(size, parameter count, a checksum of its output on a fixed input with a tolerance that holds on
any x86 CPU), that it upscales better than bicubic on a held-out photo, and that it is the default
of `python -m sslsr.upscale` and part of the installed package data.
"""

import hashlib
import pathlib
import tomllib

import jax
import numpy as np
import pytest
from flax import nnx

from sslsr.data.imresize import imresize
from sslsr.inference import NetworkUpscaler, super_resolve, to_uint8
from sslsr.metrics import psnr
from sslsr.weights import open_generator, zoo

NAME = "srvgg-x4-psnr"
REPO = pathlib.Path(__file__).resolve().parents[1]
# Pinned when the weights were exported (see README "Shipped model"); a retrained file changes them.
FILE_SHA256 = "3a3752f68077a71ed594f778cab9d773440e0420f7856a76e5d8dd1caec202b7"
PARAMETERS = 126_160
# The output on the fixed input below: per-channel mean and std of the float32 output in [0, 1].
# XLA's CPU convolutions differ between instruction sets by ~1e-6; 1e-4 holds on any x86 CPU.
OUTPUT_MEAN = (0.642231, 0.349236, 0.49484)
OUTPUT_STD = (0.298218, 0.301581, 0.268152)


@pytest.fixture(scope="module")
def shipped():
    return open_generator(NAME)


def _fixed_input() -> np.ndarray:
    """48 x 48 LR: a smooth gradient with a diagonal edge and a checkerboard patch (no file needed)."""
    yy, xx = np.mgrid[:48, :48].astype(np.float32)
    img = np.stack([xx / 47, yy / 47, (xx + yy) / 94], axis=-1)
    img = np.where((xx > yy)[..., None], img, 1 - img)
    img[8:24, 28:44] = ((np.add.outer(np.arange(16), np.arange(16)) // 2) % 2)[..., None] * 0.8 + 0.1
    return img.astype(np.float32)


def test_loads_by_name_with_its_metadata(shipped):
    path = zoo.locate(NAME)
    assert path.is_file() and path.parent == REPO / "sslsr" / "weights" / "shipped"
    assert path.stat().st_size < 1_000_000  # "a few MB at most": float32, ~0.5 MB
    assert hashlib.sha256(path.read_bytes()).hexdigest() == FILE_SHA256
    assert shipped.arch == "SRVGGNetCompact"
    assert shipped.kwargs == dict(num_in_ch=3, num_out_ch=3, num_feat=32, num_conv=12, upscale=4, act_type="prelu")
    assert shipped.weights == "ema"
    count = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(nnx.state(shipped.model, nnx.Param)))
    assert count == PARAMETERS


def test_output_checksum_on_a_fixed_input(shipped):
    out = np.asarray(NetworkUpscaler(shipped.model)(_fixed_input()[None]))[0]
    assert out.shape == (192, 192, 3)
    np.testing.assert_allclose(out.mean(axis=(0, 1)), OUTPUT_MEAN, atol=1e-4)
    np.testing.assert_allclose(out.std(axis=(0, 1)), OUTPUT_STD, atol=1e-4)


def test_beats_bicubic_on_a_held_out_photo(shipped, photos):
    hr = photos["coffee"][100:292, 200:392]  # coffee is held out of the training data
    lr = imresize(hr, 0.25)
    sr = to_uint8(super_resolve(NetworkUpscaler(shipped.model), lr))
    gain = psnr(sr, hr, crop_border=4) - psnr(imresize(lr, 4), hr, crop_border=4)
    assert gain > 0.5, gain


def test_is_the_upscale_default_and_package_data():
    from sslsr import upscale

    assert upscale.CHECKPOINT.default == NAME
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = project["tool"]["setuptools"]["package-data"]["sslsr.weights"]
    row = zoo.MODELS[NAME]["file"]
    assert any(pathlib.PurePath(row).relative_to("sslsr/weights").match(p) for p in patterns)
