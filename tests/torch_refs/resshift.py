"""PyTorch references of ResShift's networks, written from the published architecture for parity
tests only (NCHW, random weights, dropout 0): `UNetModelSwin` (guided-diffusion UNet with
channel-first Swin layers, scale-shift norm, LR concatenation or a learned LR feature extractor)
and `VQModelTorch` (LDM VQ-f4 encoder/decoder with a nearest-code quantiser). Module and buffer
names follow the published state dicts."""

import math

import torch
import torch.nn.functional as F
from torch import nn


def gn32(channels, eps=1e-5):
    return nn.GroupNorm(32, channels, eps=eps)


def sinusoid(t, dim, max_period=10000.0):
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(emb, (0, 1)) if dim % 2 else emb


class Down(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.op = nn.Conv2d(cin, cout, 3, 2, 1)

    def forward(self, x):
        return self.op(x)


class Up(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, 1, 1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class ResBlock(nn.Module):
    def __init__(self, cin, emb, cout):
        super().__init__()
        self.in_layers = nn.Sequential(gn32(cin), nn.SiLU(), nn.Conv2d(cin, cout, 3, 1, 1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb, 2 * cout))
        self.out_layers = nn.Sequential(gn32(cout), nn.SiLU(), nn.Dropout(0.0), nn.Conv2d(cout, cout, 3, 1, 1))
        self.skip_connection = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def forward(self, x, emb):
        h = self.in_layers(x)
        scale, shift = self.emb_layers(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.out_layers[0](h) * (1 + scale) + shift
        for layer in self.out_layers[1:]:
            h = layer(h)
        return self.skip_connection(x) + h


def windows_of(x, ws):
    """(B, C, H, W) -> (B * nW, ws*ws, C), windows row-major."""
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // ws, ws, w // ws, ws).permute(0, 2, 4, 3, 5, 1)
    return x.reshape(-1, ws * ws, c)


def windows_back(t, ws, h, w):
    """(B * nW, ws*ws, C) -> (B, C, H, W)."""
    c = t.shape[-1]
    x = t.reshape(-1, h // ws, w // ws, ws, ws, c).permute(0, 5, 1, 3, 2, 4)
    return x.reshape(-1, c, h, w)


class WindowAttention(nn.Module):
    def __init__(self, dim, ws, heads):
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.randn((2 * ws - 1) ** 2, heads) * 0.02)
        ii, jj = torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")
        pos = torch.stack([ii.flatten(), jj.flatten()])  # (2, N)
        d = pos[:, :, None] - pos[:, None, :] + ws - 1
        self.register_buffer("relative_position_index", d[0] * (2 * ws - 1) + d[1])
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, mask=None):
        bw, n, c = x.shape
        q, k, v = self.qkv(x).reshape(bw, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attn = (q * self.scale) @ k.transpose(-1, -2)
        bias = self.relative_position_bias_table[self.relative_position_index.reshape(-1)].reshape(n, n, -1)
        attn = attn + bias.permute(2, 0, 1)[None]
        if mask is not None:
            nw = mask.shape[0]
            attn = (attn.reshape(bw // nw, nw, self.heads, n, n) + mask[None, :, None]).reshape(bw, self.heads, n, n)
        return self.proj((attn.softmax(-1) @ v).transpose(1, 2).reshape(bw, n, c))


class ConvMlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


def region_mask(h, w, ws, shift):
    labels = torch.zeros(h, w)
    cuts = (slice(0, -ws), slice(-ws, -shift), slice(-shift, None))
    for i, a in enumerate(cuts):
        for j, b in enumerate(cuts):
            labels[a, b] = 3 * i + j
    lab = windows_of(labels[None, None], ws)[..., 0]  # (nW, N)
    diff = lab[:, None, :] - lab[:, :, None]
    return torch.where(diff != 0, torch.tensor(-100.0), torch.tensor(0.0))


class SwinBlock(nn.Module):
    def __init__(self, dim, res, heads, ws, shift, mlp_ratio):
        super().__init__()
        if res <= ws:
            ws, shift = res, 0
        self.res, self.ws, self.shift = res, ws, shift
        self.norm1 = gn32(dim)
        self.attn = WindowAttention(dim, ws, heads)
        self.norm2 = gn32(dim)
        self.mlp = ConvMlp(dim, int(dim * mlp_ratio))
        self.register_buffer("attn_mask", region_mask(res, res, ws, shift) if shift else None)

    def forward(self, x):
        _, c, h, w = x.shape
        y = self.norm1(x)
        if self.shift:
            y = torch.roll(y, (-self.shift, -self.shift), dims=(2, 3))
        mask = None
        if self.shift:
            mask = self.attn_mask if (h, w) == (self.res, self.res) else region_mask(h, w, self.ws, self.shift)
        y = windows_back(self.attn(windows_of(y, self.ws), mask), self.ws, h, w)
        if self.shift:
            y = torch.roll(y, (self.shift, self.shift), dims=(2, 3))
        x = x + y
        return x + self.mlp(self.norm2(x))


class Proj(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.proj = nn.Conv2d(cin, cout, 1)

    def forward(self, x):
        return self.proj(x)


class SwinLayer(nn.Module):
    def __init__(self, cin, dim, heads, ws, depth, res, mlp_ratio):
        super().__init__()
        self.patch_embed = Proj(cin, dim)
        self.blocks = nn.ModuleList(
            [SwinBlock(dim, res, heads, ws, 0 if i % 2 == 0 else ws // 2, mlp_ratio) for i in range(depth)]
        )
        self.patch_unembed = Proj(dim, cin)

    def forward(self, x):
        x = self.patch_embed(x)
        for block in self.blocks:
            x = block(x)
        return self.patch_unembed(x)


class Stage(nn.ModuleList):
    def forward(self, x, emb):
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x


class UNetModelSwin(nn.Module):
    def __init__(self, image_size, in_channels, model_channels, out_channels, num_res_blocks,
                 attention_resolutions, channel_mult, num_head_channels, swin_depth, swin_embed_dim,
                 window_size, mlp_ratio, lq_size):
        super().__init__()
        levels = len(channel_mult)
        if isinstance(num_res_blocks, int):
            num_res_blocks = [num_res_blocks] * levels
        heads = swin_embed_dim // num_head_channels
        self.model_channels = model_channels
        emb = 4 * model_channels
        self.time_embed = nn.Sequential(nn.Linear(model_channels, emb), nn.SiLU(), nn.Linear(emb, emb))
        if lq_size == image_size:
            self.feature_extractor, lq_ch = nn.Identity(), 3
        else:
            layers, lq_ch, width = [], 3, 16
            for _ in range(int(math.log2(lq_size // image_size))):
                layers += [nn.Conv2d(lq_ch, width, 3, 1, 1), nn.SiLU(), Down(width, 2 * width)]
                lq_ch = width = 2 * width
            self.feature_extractor = nn.Sequential(*layers)

        def swin(ch, res):
            return SwinLayer(ch, swin_embed_dim, heads, window_size, swin_depth, res, mlp_ratio)

        ch = model_channels * channel_mult[0]
        self.input_blocks = nn.ModuleList([Stage([nn.Conv2d(in_channels + lq_ch, ch, 3, 1, 1)])])
        chans, res = [ch], image_size
        for level, mult in enumerate(channel_mult):
            for j in range(num_res_blocks[level]):
                stage = [ResBlock(ch, emb, model_channels * mult)]
                ch = model_channels * mult
                if res in attention_resolutions and j == 0:
                    stage.append(swin(ch, res))
                self.input_blocks.append(Stage(stage))
                chans.append(ch)
            if level < levels - 1:
                self.input_blocks.append(Stage([Down(ch, ch)]))
                chans.append(ch)
                res //= 2
        self.middle_block = Stage([ResBlock(ch, emb, ch), swin(ch, res), ResBlock(ch, emb, ch)])
        self.output_blocks = nn.ModuleList()
        for level in reversed(range(levels)):
            mult = channel_mult[level]
            for i in range(num_res_blocks[level] + 1):
                stage = [ResBlock(ch + chans.pop(), emb, model_channels * mult)]
                ch = model_channels * mult
                if res in attention_resolutions and i == 0:
                    stage.append(swin(ch, res))
                if level and i == num_res_blocks[level]:
                    stage.append(Up(ch))
                    res *= 2
                self.output_blocks.append(Stage(stage))
        self.out = nn.Sequential(gn32(ch), nn.SiLU(), nn.Conv2d(ch, out_channels, 3, 1, 1))

    def forward(self, x, timesteps, lq):
        emb = self.time_embed(sinusoid(timesteps, self.model_channels))
        h = torch.cat([x, self.feature_extractor(lq)], dim=1)
        skips = []
        for stage in self.input_blocks:
            h = stage(h, emb)
            skips.append(h)
        h = self.middle_block(h, emb)
        for stage in self.output_blocks:
            h = stage(torch.cat([h, skips.pop()], dim=1), emb)
        return self.out(h)


# ---------------------------------------------------------------- VQ-f4 autoencoder


class ResnetBlock(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.norm1 = gn32(cin, 1e-6)
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1)
        self.norm2 = gn32(cout, 1e-6)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        if cin != cout:
            self.nin_shortcut = nn.Conv2d(cin, cout, 1)

    def forward(self, x):
        h = self.conv2(F.silu(self.norm2(self.conv1(F.silu(self.norm1(x))))))
        return (self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x) + h


class AttnBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.norm = gn32(c, 1e-6)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(c, c, 1) for _ in range(4))

    def forward(self, x):
        b, c, h, w = x.shape
        y = self.norm(x)
        q, k, v = (f(y).reshape(b, c, h * w) for f in (self.q, self.k, self.v))
        weights = torch.softmax(q.transpose(1, 2) @ k / math.sqrt(c), dim=-1)  # (b, q, k)
        return x + self.proj_out((v @ weights.transpose(1, 2)).reshape(b, c, h, w))


class PadDown(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, 2, 0)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Level(nn.Module):
    def __init__(self, widths, attention):
        super().__init__()
        self.block = nn.ModuleList([ResnetBlock(a, b) for a, b in zip(widths[:-1], widths[1:])])
        self.attn = nn.ModuleList([AttnBlock(b) for b in widths[1:]] if attention else [])

    def forward(self, x):
        for i, block in enumerate(self.block):
            x = block(x)
            if len(self.attn):
                x = self.attn[i](x)
        return x


class Mid(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.block_1, self.attn_1, self.block_2 = ResnetBlock(c, c), AttnBlock(c), ResnetBlock(c, c)

    def forward(self, x):
        return self.block_2(self.attn_1(self.block_1(x)))


class Encoder(nn.Module):
    def __init__(self, ch, ch_mult, num_res_blocks, attn_resolutions, resolution, z_channels):
        super().__init__()
        self.conv_in = nn.Conv2d(3, ch, 3, 1, 1)
        self.down = nn.ModuleList()
        width, res = ch, resolution
        for i, mult in enumerate(ch_mult):
            level = Level([width] + [ch * mult] * num_res_blocks, res in attn_resolutions)
            width = ch * mult
            if i < len(ch_mult) - 1:
                level.downsample = PadDown(width)
                res //= 2
            self.down.append(level)
        self.mid = Mid(width)
        self.norm_out = gn32(width, 1e-6)
        self.conv_out = nn.Conv2d(width, z_channels, 3, 1, 1)

    def forward(self, x):
        h = self.conv_in(x)
        for level in self.down:
            h = level(h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        return self.conv_out(F.silu(self.norm_out(self.mid(h))))


class Decoder(nn.Module):
    def __init__(self, ch, ch_mult, num_res_blocks, attn_resolutions, resolution, z_channels):
        super().__init__()
        n = len(ch_mult)
        width, res = ch * ch_mult[-1], resolution // 2 ** (n - 1)
        self.conv_in = nn.Conv2d(z_channels, width, 3, 1, 1)
        self.mid = Mid(width)
        levels = []
        for i in reversed(range(n)):
            level = Level([width] + [ch * ch_mult[i]] * (num_res_blocks + 1), res in attn_resolutions)
            width = ch * ch_mult[i]
            if i:
                level.upsample = Up(width)
                res *= 2
            levels.insert(0, level)
        self.up = nn.ModuleList(levels)
        self.norm_out = gn32(width, 1e-6)
        self.conv_out = nn.Conv2d(width, 3, 3, 1, 1)

    def forward(self, z):
        h = self.mid(self.conv_in(z))
        for level in reversed(self.up):
            h = level(h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Quantizer(nn.Module):
    def __init__(self, n_embed, dim):
        super().__init__()
        self.embedding = nn.Embedding(n_embed, dim)

    def forward(self, z):
        b, c, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, c)
        codes = self.embedding.weight
        d = flat.pow(2).sum(1, keepdim=True) + codes.pow(2).sum(1) - 2 * flat @ codes.t()
        zq = codes[d.argmin(1)].reshape(b, h, w, c).permute(0, 3, 1, 2)
        return z + (zq - z).detach()


class VQModelTorch(nn.Module):
    def __init__(self, ch, ch_mult, num_res_blocks, attn_resolutions, resolution, z_channels, embed_dim, n_embed):
        super().__init__()
        args = (ch, ch_mult, num_res_blocks, attn_resolutions, resolution, z_channels)
        self.encoder, self.decoder = Encoder(*args), Decoder(*args)
        self.quantize = Quantizer(n_embed, embed_dim)
        self.quant_conv = nn.Conv2d(z_channels, embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(embed_dim, z_channels, 1)

    def encode(self, x):
        return self.quant_conv(self.encoder(x))

    def decode(self, z):
        return self.decoder(self.post_quant_conv(self.quantize(z)))
