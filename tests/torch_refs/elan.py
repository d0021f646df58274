"""PyTorch reference of ELAN as ported to BasicSR in the SSL paper's code (LayerNorm in the input
projection, mean shift as arithmetic), written from the published architecture for parity tests
only: NCHW, the official key names, the fixed shift kernel as a frozen parameter."""

import math

import torch
import torch.nn.functional as F
from torch import nn


class ShiftConv2d1(nn.Module):
    def __init__(self, inp, out):
        super().__init__()
        g = inp // 5
        weight = torch.zeros(inp, 1, 3, 3)
        for k, (r, c) in enumerate(((1, 2), (1, 0), (2, 1), (0, 1))):
            weight[k * g : (k + 1) * g, 0, r, c] = 1.0
        weight[4 * g :, 0, 1, 1] = 1.0
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.conv1x1 = nn.Conv2d(inp, out, 1)

    def forward(self, x):
        return self.conv1x1(F.conv2d(x, self.weight, padding=1, groups=x.shape[1]))


class ShiftConv2d(nn.Module):
    def __init__(self, inp, out):
        super().__init__()
        self.shift_conv = ShiftConv2d1(inp, out)

    def forward(self, x):
        return self.shift_conv(x)


class LFE(nn.Module):
    def __init__(self, ch, exp_ratio):
        super().__init__()
        self.conv0 = ShiftConv2d(ch, ch * exp_ratio)
        self.conv1 = ShiftConv2d(ch * exp_ratio, ch)

    def forward(self, x):
        return self.conv1(F.relu(self.conv0(x)))


class ChannelLayerNorm(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.norm = nn.LayerNorm(ch)

    def forward(self, x):
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def to_windows(x, ws):
    """(b, c, h, w) -> (b * h/ws * w/ws, ws*ws, c)."""
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // ws, ws, w // ws, ws).permute(0, 2, 4, 3, 5, 1)
    return x.reshape(-1, ws * ws, c)


def from_windows(t, ws, b, h, w):
    c = t.shape[-1]
    t = t.reshape(b, h // ws, w // ws, ws, ws, c).permute(0, 5, 1, 3, 2, 4)
    return t.reshape(b, c, h, w)


class GMSA(nn.Module):
    def __init__(self, ch, shifts, window_sizes, calc_attn):
        super().__init__()
        self.shifts, self.window_sizes, self.calc_attn = shifts, window_sizes, calc_attn
        width = ch * 2 if calc_attn else ch
        self.split_chns = [width // 3] * 3
        self.project_inp = nn.Sequential(nn.Conv2d(ch, width, 1), ChannelLayerNorm(width))
        self.project_out = nn.Conv2d(ch, ch, 1)

    def forward(self, x, prev_atns=None):
        b, _, h, w = x.shape
        xs = torch.split(self.project_inp(x), self.split_chns, dim=1)
        ys, atns = [], []
        for idx, part in enumerate(xs):
            ws = self.window_sizes[idx]
            if self.shifts > 0:
                part = torch.roll(part, shifts=(-ws // 2, -ws // 2), dims=(2, 3))
            if prev_atns is None:
                half = part.shape[1] // 2
                q, v = to_windows(part[:, :half], ws), to_windows(part[:, half:], ws)
                atn = (q @ q.transpose(-2, -1)).softmax(dim=-1)
            else:
                v, atn = to_windows(part, ws), prev_atns[idx]
            y = from_windows(atn @ v, ws, b, h, w)
            if self.shifts > 0:
                y = torch.roll(y, shifts=(ws // 2, ws // 2), dims=(2, 3))
            ys.append(y)
            atns.append(atn)
        return self.project_out(torch.cat(ys, dim=1)), atns


class ELAB(nn.Module):
    def __init__(self, ch, exp_ratio, shifts, window_sizes, shared_depth):
        super().__init__()
        self.depth = 1 + shared_depth
        self.modules_lfe = nn.ModuleDict({f"lfe_{i}": LFE(ch, exp_ratio) for i in range(self.depth)})
        self.modules_gmsa = nn.ModuleDict(
            {f"gmsa_{i}": GMSA(ch, shifts, window_sizes, i == 0) for i in range(self.depth)})

    def forward(self, x):
        atn = None
        for i in range(self.depth):
            x = self.modules_lfe[f"lfe_{i}"](x) + x
            y, atn = self.modules_gmsa[f"gmsa_{i}"](x, atn)
            x = y + x
        return x


class ELAN(nn.Module):
    def __init__(self, scale=4, img_range=255.0, colors=3, window_sizes=(4, 8, 16), m_elan=36, c_elan=180,
                 n_share=0, r_expand=2, rgb_mean=(0.4488, 0.4371, 0.4040)):
        super().__init__()
        self.scale, self.img_range, self.window_sizes = scale, img_range, list(window_sizes)
        self.mean = torch.tensor(rgb_mean).view(1, colors, 1, 1)
        self.head = nn.Sequential(nn.Conv2d(colors, c_elan, 3, 1, 1))
        self.body = nn.Sequential(*[ELAB(c_elan, r_expand, i % 2, self.window_sizes, n_share)
                                    for i in range(m_elan // (1 + n_share))])
        tail = [nn.Conv2d(c_elan, colors * scale * scale, 3, 1, 1)]
        if scale != 1:
            tail.append(nn.PixelShuffle(scale))
        self.tail = nn.Sequential(*tail)

    def forward(self, x):
        h, w = x.shape[2:]
        m = math.lcm(*self.window_sizes)
        x = F.pad(x, (0, (m - w % m) % m, 0, (m - h % m) % m), "reflect")
        x = (x - self.mean) * self.img_range
        x = self.head(x)
        x = self.tail(self.body(x) + x)
        x = x / self.img_range + self.mean
        return x[:, :, : h * self.scale, : w * self.scale]
