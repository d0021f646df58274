"""PyTorch rebuild of SPSR's generator (Maclory/SPSR `SPSRNet`, upsample_mode 'upconv', no norm),
written from the published architecture for parity tests only (NCHW).

The layers sit in the same `nn.Sequential` nesting as the original so the state-dict keys are the
published ones (`model.0`, `model.1.sub.N.RDB1.conv1.0`, `b_module.4`, `conv_w.0`, ...), including
`HR_conv0_new`, registered both as itself and inside `model`. One generalisation: `gc` is used for
every RRDB (the original hard-codes 32).
"""

import math

import torch
import torch.nn.functional as F
from torch import nn


def conv_block(cin, cout, k=3, act=False):
    """SPSR's conv_block without norm: Sequential(conv[, LeakyReLU 0.2])."""
    layers = [nn.Conv2d(cin, cout, k, 1, k // 2)]
    if act:
        layers.append(nn.LeakyReLU(0.2))
    return nn.Sequential(*layers)


def flat(*blocks):
    """nn.Sequential of the blocks with nested Sequentials unwrapped (SPSR's `sequential`)."""
    out = []
    for b in blocks:
        out.extend(b.children() if isinstance(b, nn.Sequential) else [b])
    return nn.Sequential(*out)


def upconv(nf, factor):
    return flat(nn.Upsample(scale_factor=factor, mode="nearest"), conv_block(nf, nf, act=True))


class RDB(nn.Module):
    def __init__(self, nc, gc):
        super().__init__()
        self.conv1 = conv_block(nc, gc, act=True)
        self.conv2 = conv_block(nc + gc, gc, act=True)
        self.conv3 = conv_block(nc + 2 * gc, gc, act=True)
        self.conv4 = conv_block(nc + 3 * gc, gc, act=True)
        self.conv5 = conv_block(nc + 4 * gc, nc)

    def forward(self, x):
        x1 = self.conv1(x)
        x2 = self.conv2(torch.cat((x, x1), 1))
        x3 = self.conv3(torch.cat((x, x1, x2), 1))
        x4 = self.conv4(torch.cat((x, x1, x2, x3), 1))
        return self.conv5(torch.cat((x, x1, x2, x3, x4), 1)) * 0.2 + x


class RRDB(nn.Module):
    def __init__(self, nc, gc):
        super().__init__()
        self.RDB1, self.RDB2, self.RDB3 = RDB(nc, gc), RDB(nc, gc), RDB(nc, gc)

    def forward(self, x):
        return self.RDB3(self.RDB2(self.RDB1(x))) * 0.2 + x


class Shortcut(nn.Module):
    """Holds the trunk as `.sub`; SPSR's forward walks it block by block."""

    def __init__(self, sub):
        super().__init__()
        self.sub = sub


class Gradient(nn.Module):
    """Per-channel central-difference magnitude, zero padding (the fixed kernels are parameters)."""

    def __init__(self):
        super().__init__()
        v = torch.tensor([[0.0, -1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
        self.weight_h = nn.Parameter(v.t().clone()[None, None], requires_grad=False)
        self.weight_v = nn.Parameter(v.clone()[None, None], requires_grad=False)

    def forward(self, x):
        chans = []
        for i in range(x.shape[1]):
            xi = x[:, i : i + 1]
            gv = F.conv2d(xi, self.weight_v, padding=1)
            gh = F.conv2d(xi, self.weight_h, padding=1)
            chans.append(torch.sqrt(gv**2 + gh**2 + 1e-6))
        return torch.cat(chans, 1)


class SPSRNet(nn.Module):
    def __init__(self, in_nc=3, out_nc=3, nf=64, nb=23, gc=32, upscale=4):
        super().__init__()
        factors = [3] if upscale == 3 else [2] * int(math.log2(upscale))
        self.HR_conv0_new = conv_block(nf, nf, act=True)
        self.HR_conv1_new = conv_block(nf, nf)
        trunk = flat(*[RRDB(nf, gc) for _ in range(nb)], conv_block(nf, nf))
        self.model = flat(conv_block(in_nc, nf), Shortcut(trunk), *[upconv(nf, f) for f in factors],
                          self.HR_conv0_new)
        self.get_g_nopadding = Gradient()
        self.b_fea_conv = conv_block(in_nc, nf)
        for k in range(1, 5):
            setattr(self, f"b_concat_{k}", conv_block(2 * nf, nf))
            setattr(self, f"b_block_{k}", RRDB(2 * nf, gc))
        self.b_LR_conv = conv_block(nf, nf)
        self.b_module = flat(*[upconv(nf, f) for f in factors], conv_block(nf, nf, act=True), conv_block(nf, nf))
        self.conv_w = conv_block(nf, out_nc, k=1)
        self.f_concat = conv_block(2 * nf, nf)
        self.f_block = RRDB(2 * nf, gc)
        self.f_HR_conv0 = conv_block(nf, nf, act=True)
        self.f_HR_conv1 = conv_block(nf, out_nc)

    def forward(self, x):
        """(branch output, SR, LR gradient map), the published order."""
        grad = self.get_g_nopadding(x)
        fea = self.model[0](x)
        blocks = self.model[1].sub
        t = fea
        taps = []
        for i in range(20):
            t = blocks[i](t)
            if (i + 1) % 5 == 0:
                taps.append(t)
        t = fea + blocks[20:](t)
        t = self.HR_conv1_new(self.model[2:](t))

        b_fea = self.b_fea_conv(grad)
        b = b_fea
        for k, tap in enumerate(taps, start=1):
            b = getattr(self, f"b_concat_{k}")(getattr(self, f"b_block_{k}")(torch.cat([b, tap], 1)))
        b = self.b_module(self.b_LR_conv(b) + b_fea)
        out_branch = self.conv_w(b)
        f = self.f_concat(self.f_block(torch.cat([b, t], 1)))
        return out_branch, self.f_HR_conv1(self.f_HR_conv0(f)), grad
