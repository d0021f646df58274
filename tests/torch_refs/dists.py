"""Test-only PyTorch DISTS (Ding et al. 2020) built from NumPy arrays (torchvision never imported).

VGG16 `features` (torchvision layout) with each max-pool replaced by L2 pooling (Hann 3x3 of x^2,
stride 2, padding 1, sqrt(+1e-12)); stages [x, relu1_2, relu2_2, relu3_3, relu4_3, relu5_3];
per-channel mean/variance/covariance similarities weighted by alpha/beta (normalized by their sum).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)


class TorchL2Pool(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        a = np.hanning(5)[1:-1]
        g = torch.tensor(a[:, None] * a[None, :], dtype=torch.float32)
        self.register_buffer("filter", (g / g.sum())[None, None].repeat(channels, 1, 1, 1))

    def forward(self, x):
        out = F.conv2d(x**2, self.filter, stride=2, padding=1, groups=x.shape[1])
        return (out + 1e-12).sqrt()


class TorchDISTS(nn.Module):
    """forward(x, y): NCHW in [0, 1] -> (N,). `vgg` maps 'features.<i>.kernel' (HWIO) / '.bias'."""

    def __init__(self, vgg: dict[str, np.ndarray], alpha: np.ndarray, beta: np.ndarray):
        super().__init__()
        stages, current, idx, cin = [], [], 0, 3
        for v in _CFG:
            if v == "M":
                stages.append(nn.Sequential(*current))
                current = [TorchL2Pool(cin)]
                idx += 1
            else:
                conv = nn.Conv2d(cin, v, 3, padding=1)
                with torch.no_grad():
                    conv.weight.copy_(torch.from_numpy(np.ascontiguousarray(vgg[f"features.{idx}.kernel"].transpose(3, 2, 0, 1))))
                    conv.bias.copy_(torch.from_numpy(vgg[f"features.{idx}.bias"]))
                current += [conv, nn.ReLU()]
                idx += 2
                cin = v
        stages.append(nn.Sequential(*current))
        self.stages = nn.ModuleList(stages)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        self.chns = [3, 64, 128, 256, 512, 512]
        self.register_buffer("alpha", torch.from_numpy(alpha).view(1, -1, 1, 1))
        self.register_buffer("beta", torch.from_numpy(beta).view(1, -1, 1, 1))

    def feats(self, x):
        out, h = [x], (x - self.mean) / self.std
        for stage in self.stages:
            h = stage(h)
            out.append(h)
        return out

    def forward(self, x, y):
        fx, fy = self.feats(x), self.feats(y)
        w_sum = self.alpha.sum() + self.beta.sum()
        alpha = torch.split(self.alpha / w_sum, self.chns, dim=1)
        beta = torch.split(self.beta / w_sum, self.chns, dim=1)
        d1 = d2 = 0
        for k in range(len(self.chns)):
            mx, my = fx[k].mean([2, 3], keepdim=True), fy[k].mean([2, 3], keepdim=True)
            s1 = (2 * mx * my + 1e-6) / (mx**2 + my**2 + 1e-6)
            vx = ((fx[k] - mx) ** 2).mean([2, 3], keepdim=True)
            vy = ((fy[k] - my) ** 2).mean([2, 3], keepdim=True)
            cov = (fx[k] * fy[k]).mean([2, 3], keepdim=True) - mx * my
            s2 = (2 * cov + 1e-6) / (vx + vy + 1e-6)
            d1 = d1 + (alpha[k] * s1).sum(1, keepdim=True)
            d2 = d2 + (beta[k] * s2).sum(1, keepdim=True)
        return 1 - (d1 + d2).flatten()
