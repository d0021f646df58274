"""SPSR's generator (Ma et al., CVPR 2020, "Structure-Preserving Super Resolution with Gradient
Guidance"), weight-compatible with the published `SPSRNet` checkpoints.

Two branches:
- the SR branch is ESRGAN's RRDB trunk (`nb` RRDBs + a conv, global skip), nearest-upsampling
  convs and two HR convs, ending in `nf` features (not an image);
- the gradient branch starts from the gradient map of the LR input
  (`sslsr.losses.gradient.gradient_map`), and four times concatenates the trunk's features after
  RRDB blocks 5, 10, 15 and 20 (hence nb >= 20), each time through an RRDB on 2*nf channels and a
  conv back to nf; then a conv with a skip, the same upsampling, two HR convs: its `nf` features
  give the gradient output through a 1x1 conv.
The two branches' HR features are fused by an RRDB on 2*nf channels, a conv and two HR convs
into the SR image.

Keys. The published module nests everything in `nn.Sequential`s (`model.0`, `model.1.sub.N.RDB1.
conv1.0`, `b_module.4`, `conv_w.0`, ...); here the layers have readable names and reuse
`sslsr.models.rrdbnet.RRDB`, and `torch_key` spells each NNX key the PyTorch way (the registry
row's `torch_key`). PyTorch registers `HR_conv0_new` twice (as itself and inside `model`), so
its state dict holds that conv under two keys (`torch_aliases`), and it stores the fixed
gradient kernels as parameters (`torch_buffers`).

Differences from the published code: its forward also returns the LR gradient map (only shown
in its visuals, never in a loss): dropped. It ignores `gc` (hard-coded 32); `gc` is honoured here
(its default is 32, the same).
"""

from __future__ import annotations

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sslsr.losses.gradient import gradient_map
from sslsr.models.layers import leaky_relu, torch_conv, upsample_nearest
from sslsr.models.rrdbnet import RRDB

# The gradient branch taps the trunk after these many RRDB blocks.
_TAPS = (5, 10, 15, 20)


def _conv(cin: int, cout: int, rngs: nnx.Rngs, k: int = 3) -> nnx.Conv:
    # SPSR's define_G initialises every conv with kaiming-normal * 0.1 and zero bias.
    return torch_conv(cin, cout, k, init_scale=0.1, rngs=rngs)


def _lrelu(x: jax.Array) -> jax.Array:
    return leaky_relu(x, 0.2)


class SPSRNet(nnx.Module):
    """SPSR generator: (B, h, w, in_nc) in [0, 1] -> SR (B, h*s, w*s, out_nc).

    `with_branch(x)` also returns the gradient branch's output (same shape), which SPSR's
    branch-gradient loss compares with the HR image's gradient map. `upscale` in {2, 3, 4, 8};
    `nb` >= 20 (the gradient branch taps blocks 5, 10, 15, 20).
    """

    def __init__(
        self,
        in_nc: int = 3,
        out_nc: int = 3,
        nf: int = 64,
        nb: int = 23,
        gc: int = 32,
        upscale: int = 4,
        *,
        rngs: nnx.Rngs,
    ):
        if nb < _TAPS[-1]:
            raise ValueError(f"SPSRNet: nb (RRDB blocks) must be at least {_TAPS[-1]}: the gradient branch "
                             f"taps the trunk after blocks {', '.join(map(str, _TAPS))}; got nb={nb}")
        if upscale not in (2, 3, 4, 8):
            raise ValueError(f"SPSRNet: upscale must be 2, 3, 4 or 8, got {upscale}")
        self.upscale = upscale
        self.nb = nb
        # Nearest-upsampling steps: one x3, else log2(upscale) x2.
        self.factors = (3,) if upscale == 3 else (2,) * int(math.log2(upscale))
        n_up = len(self.factors)
        # SR branch
        self.fea_conv = _conv(in_nc, nf, rngs)
        self.trunk = nnx.List([RRDB(nf, gc, rngs=rngs) for _ in range(nb)])
        self.LR_conv = _conv(nf, nf, rngs)
        self.upconvs = nnx.List([_conv(nf, nf, rngs) for _ in range(n_up)])
        self.HR_conv0_new = _conv(nf, nf, rngs)
        self.HR_conv1_new = _conv(nf, nf, rngs)
        # gradient branch
        self.b_fea_conv = _conv(in_nc, nf, rngs)
        for k in range(1, len(_TAPS) + 1):
            setattr(self, f"b_block_{k}", RRDB(2 * nf, gc, rngs=rngs))
            setattr(self, f"b_concat_{k}", _conv(2 * nf, nf, rngs))
        self.b_LR_conv = _conv(nf, nf, rngs)
        self.b_upconvs = nnx.List([_conv(nf, nf, rngs) for _ in range(n_up)])
        self.b_HR_conv0 = _conv(nf, nf, rngs)
        self.b_HR_conv1 = _conv(nf, nf, rngs)
        self.conv_w = _conv(nf, out_nc, rngs, k=1)
        # fusion
        self.f_block = RRDB(2 * nf, gc, rngs=rngs)
        self.f_concat = _conv(2 * nf, nf, rngs)
        self.f_HR_conv0 = _conv(nf, nf, rngs)
        self.f_HR_conv1 = _conv(nf, out_nc, rngs)

    def _upsample(self, x: jax.Array, convs: nnx.List) -> jax.Array:
        for factor, conv in zip(self.factors, convs):
            x = _lrelu(conv(upsample_nearest(x, factor)))
        return x

    def with_branch(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(SR, gradient-branch output), both (B, h*s, w*s, out_nc)."""
        grad = gradient_map(x).astype(x.dtype)
        fea = self.fea_conv(x)
        taps = []
        trunk = fea
        for i, block in enumerate(self.trunk, start=1):
            trunk = block(trunk)
            if i in _TAPS:
                taps.append(trunk)
        trunk = fea + self.LR_conv(trunk)
        trunk = self._upsample(trunk, self.upconvs)
        trunk = self.HR_conv1_new(_lrelu(self.HR_conv0_new(trunk)))

        b_fea = self.b_fea_conv(grad)
        branch = b_fea
        for k, tap in enumerate(taps, start=1):
            # Channel order of torch.cat([branch, trunk feature]).
            branch = jnp.concatenate([branch, tap], axis=-1)
            branch = getattr(self, f"b_concat_{k}")(getattr(self, f"b_block_{k}")(branch))
        branch = self.b_LR_conv(branch) + b_fea
        branch = self._upsample(branch, self.b_upconvs)
        branch = self.b_HR_conv1(_lrelu(self.b_HR_conv0(branch)))
        branch_out = self.conv_w(branch)

        fused = self.f_concat(self.f_block(jnp.concatenate([branch, trunk], axis=-1)))
        sr = self.f_HR_conv1(_lrelu(self.f_HR_conv0(fused)))
        return sr, branch_out

    def __call__(self, x: jax.Array) -> jax.Array:
        """The SR image alone (what inference and validation use)."""
        return self.with_branch(x)[0]


def _hr_conv0_key(model: SPSRNet) -> str:
    # model = [fea_conv, shortcut, (upsample, conv, lrelu) per step, HR_conv0_new conv, lrelu]
    return f"model.{3 * len(model.factors) + 2}"


def torch_key(model: SPSRNet, key: str) -> str:
    """The published SPSRNet's key of an NNX key.

    E.g. `trunk.3.rdb1.conv1.weight` -> `model.1.sub.3.RDB1.conv1.0.weight`.
    """
    # Inside RRDBs every conv is a Sequential(conv, act) of conv_block.
    key = re.sub(r"(^|\.)rdb(\d)\.conv(\d)\.", r"\1RDB\2.conv\3.0.", key)
    head, _, rest = key.partition(".")
    n_up = len(model.factors)
    if head in ("trunk", "upconvs", "b_upconvs"):
        index, _, rest = rest.partition(".")
        i = int(index)
        prefix = {"trunk": f"model.1.sub.{i}", "upconvs": f"model.{3 * i + 3}", "b_upconvs": f"b_module.{3 * i + 1}"}
        return f"{prefix[head]}.{rest}"
    fixed = {
        "fea_conv": "model.0",
        "LR_conv": f"model.1.sub.{model.nb}",
        "HR_conv0_new": _hr_conv0_key(model),
        # b_module = [(upsample, conv, lrelu) per step, b_HR_conv0 conv, lrelu, b_HR_conv1 conv]
        "b_HR_conv0": f"b_module.{3 * n_up}",
        "b_HR_conv1": f"b_module.{3 * n_up + 2}",
    }
    if head in fixed:
        return f"{fixed[head]}.{rest}"
    if head.startswith("b_block_") or head == "f_block":
        return key
    return f"{head}.0.{rest}"  # a conv_block: Sequential(conv[, act])


def torch_aliases(model: SPSRNet) -> dict[str, str]:
    """{PyTorch key: the key it duplicates}: `HR_conv0_new` is also `model.<k>` in PyTorch."""
    return {f"HR_conv0_new.0.{leaf}": f"{_hr_conv0_key(model)}.{leaf}" for leaf in ("weight", "bias")}


def torch_buffers(model: SPSRNet) -> dict[str, np.ndarray]:
    """The fixed central-difference kernels PyTorch stores as (non-trained) parameters."""
    del model
    v = np.array([[0, -1, 0], [0, 0, 0], [0, 1, 0]], np.float32)
    return {"get_g_nopadding.weight_h": v.T[None, None].copy(), "get_g_nopadding.weight_v": v[None, None].copy()}
