"""PyTorch reference of GPEN's `FullGenerator` (face_model/gpen_model.py of yangxy/GPEN), written
from the published architecture for parity tests only (NCHW, plain torch ops, no CUDA extensions).

Module names and registered buffers reproduce the published state-dict keys; the modulated convs
use GPEN's per-sample weights with grouped (transposed) convolutions, a different formulation from
the JAX port's input modulation. Builds on the 'meta' device for the full-size key sets.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

TAPS = [1.0, 3.0, 3.0, 1.0]


def _kernel(gain=1.0):
    k = torch.tensor(TAPS)
    k = k[:, None] * k[None, :]
    return k / k.sum() * gain


def upfirdn2d(x, kernel, up=1, down=1, pad=(0, 0)):
    """Zero-insert by `up`, pad both axes by `pad`, convolve with `kernel` per channel, subsample."""
    b, c, h, w = x.shape
    if up > 1:
        z = x.new_zeros(b, c, h, up, w, up)
        z[:, :, :, 0, :, 0] = x
        x = z.reshape(b, c, h * up, w * up)
    x = F.pad(x, [pad[0], pad[1], pad[0], pad[1]])
    weight = torch.flip(kernel, [0, 1])[None, None].repeat(c, 1, 1, 1)
    return F.conv2d(x, weight, groups=c)[:, :, ::down, ::down]


class Blur(nn.Module):  # also GPEN's Upsample / Downsample
    def __init__(self, pad, up=1, down=1, gain=1.0):
        super().__init__()
        self.register_buffer("kernel", _kernel(gain))
        self.pad, self.up, self.down = pad, up, down

    def forward(self, x):
        return upfirdn2d(x, self.kernel, self.up, self.down, self.pad)


def lrelu(x, bias):
    return F.leaky_relu(x + bias.view(1, -1, *([1] * (x.ndim - 2))), 0.2) * math.sqrt(2)


class FusedLeakyReLU(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(ch))

    def forward(self, x):
        return lrelu(x, self.bias)


class EqualLinear(nn.Module):
    def __init__(self, i, o, bias_init=0.0, lr_mul=1.0, activate=False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(o, i) / lr_mul)
        self.bias = nn.Parameter(torch.full((o,), float(bias_init)))
        self.scale, self.lr_mul, self.activate = lr_mul / math.sqrt(i), lr_mul, activate

    def forward(self, x):
        y = F.linear(x, self.weight * self.scale)
        return lrelu(y, self.bias * self.lr_mul) if self.activate else y + self.bias * self.lr_mul


class EqualConv2d(nn.Module):
    def __init__(self, i, o, k, stride=1, padding=0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(o, i, k, k))
        self.scale, self.stride, self.padding = 1 / math.sqrt(i * k * k), stride, padding

    def forward(self, x):
        return F.conv2d(x, self.weight * self.scale, stride=self.stride, padding=self.padding)


def conv_layer(i, o, k, downsample=False):
    if downsample:
        return nn.Sequential(Blur((2, 2)), EqualConv2d(i, o, k, stride=2), FusedLeakyReLU(o))
    return nn.Sequential(EqualConv2d(i, o, k, padding=k // 2), FusedLeakyReLU(o))


class ModulatedConv2d(nn.Module):
    def __init__(self, i, o, k, style_dim, demodulate=True, upsample=False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, o, i, k, k))
        self.modulation = EqualLinear(style_dim, i, bias_init=1)
        self.scale, self.demodulate, self.upsample = 1 / math.sqrt(i * k * k), demodulate, upsample
        if upsample:
            self.blur = Blur((1, 1), gain=4.0)

    def forward(self, x, style):
        b, i, h, w = x.shape
        _, o, _, k, _ = self.weight.shape
        weight = self.scale * self.weight * self.modulation(style).view(b, 1, i, 1, 1)
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8).view(b, o, 1, 1, 1)
        x = x.reshape(1, b * i, h, w)
        if self.upsample:
            weight = weight.transpose(1, 2).reshape(b * i, o, k, k)
            out = F.conv_transpose2d(x, weight, stride=2, groups=b)
            return self.blur(out.view(b, o, *out.shape[2:]))
        out = F.conv2d(x, weight.reshape(b * o, i, k, k), padding=k // 2, groups=b)
        return out.view(b, o, *out.shape[2:])


class NoiseInjection(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x, noise):
        return torch.cat([x, self.weight * noise], 1)


class StyledConv(nn.Module):
    def __init__(self, i, o, style_dim, upsample=False):
        super().__init__()
        self.conv = ModulatedConv2d(i, o, 3, style_dim, upsample=upsample)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(2 * o)

    def forward(self, x, style, noise):
        return self.activate(self.noise(self.conv(x, style), noise))


class ToRGB(nn.Module):
    def __init__(self, i, style_dim, upsample=True):
        super().__init__()
        if upsample:
            self.upsample = Blur((2, 1), up=2, gain=4.0)
        self.conv = ModulatedConv2d(i, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x, style, skip=None):
        out = self.conv(x, style) + self.bias
        return out if skip is None else out + self.upsample(skip)


class PixelNorm(nn.Module):
    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(1, keepdim=True) + 1e-8)


class ConstantInput(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, ch, 4, 4))


def channel_table(cm, narrow):
    table = {s: int(512 * narrow) for s in (4, 8, 16, 32)}
    table.update({64: int(256 * cm * narrow), 128: int(128 * cm * narrow), 256: int(64 * cm * narrow),
                  512: int(32 * cm * narrow), 1024: int(16 * cm * narrow)})
    return table


class Generator(nn.Module):
    def __init__(self, size, style_dim, n_mlp, cm, narrow, lr_mlp=0.01):
        super().__init__()
        ch = channel_table(cm, narrow)
        self.style = nn.Sequential(PixelNorm(), *[EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activate=True)
                                                  for _ in range(n_mlp)])
        self.input = ConstantInput(ch[4])
        self.conv1 = StyledConv(ch[4], ch[4], style_dim)
        self.to_rgb1 = ToRGB(2 * ch[4], style_dim, upsample=False)
        self.convs, self.to_rgbs = nn.ModuleList(), nn.ModuleList()
        prev = ch[4]
        for log in range(3, int(math.log2(size)) + 1):
            c = ch[2**log]
            self.convs.append(StyledConv(2 * prev, c, style_dim, upsample=True))
            self.convs.append(StyledConv(2 * c, c, style_dim))
            self.to_rgbs.append(ToRGB(2 * c, style_dim))
            prev = c

    def forward(self, z, noise):
        w = self.style(z)
        out = self.conv1(self.input.input.repeat(z.shape[0], 1, 1, 1), w, noise[0])
        skip = self.to_rgb1(out, w)
        for j, to_rgb in enumerate(self.to_rgbs):
            out = self.convs[2 * j](out, w, noise[2 * j + 1])
            out = self.convs[2 * j + 1](out, w, noise[2 * j + 2])
            skip = to_rgb(out, w, skip)
        return skip


class FullGenerator(nn.Module):
    def __init__(self, size, style_dim, n_mlp, channel_multiplier=2, narrow=1.0):
        super().__init__()
        ch = channel_table(channel_multiplier, narrow)
        self.log_size = int(math.log2(size))
        self.generator = Generator(size, style_dim, n_mlp, channel_multiplier, narrow)
        self.ecd0 = nn.Sequential(conv_layer(3, ch[size], 1))
        for j in range(1, self.log_size - 1):
            res = size >> j
            setattr(self, f"ecd{j}", nn.Sequential(conv_layer(ch[2 * res], ch[res], 3, downsample=True)))
        self.final_linear = nn.Sequential(EqualLinear(ch[4] * 16, style_dim, activate=True))

    def forward(self, x):
        feats = []
        for j in range(self.log_size - 1):
            x = getattr(self, f"ecd{j}")(x)
            feats.append(x)
        z = self.final_linear(x.reshape(x.shape[0], -1))
        # GPEN: every encoder map twice, coarsest first, minus the first copy.
        noise = [f for f in reversed(feats) for _ in range(2)][1:]
        return self.generator(z, noise)
