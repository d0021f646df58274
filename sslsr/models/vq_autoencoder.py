"""ResShift's latent autoencoder (`VQModelTorch`, the LDM VQ-f4) in Flax NNX, NHWC, published keys.

Encoder: conv_in, per level `num_res_blocks` ResnetBlocks (+ single-head attention at
`attn_resolutions`) and a stride-2 conv (padded right/bottom only) between levels, a middle
block ResnetBlock -> attention -> ResnetBlock, GroupNorm, SiLU, conv_out to `z_channels`;
`quant_conv` (1x1) to `embed_dim`. Decoder: the mirror image with nearest x2 + conv upsampling and
one more ResnetBlock per level. Between them a codebook of `n_embed` vectors: decoding first
replaces every latent vector by its nearest code (straight-through, so gradients reach the
latent unchanged), as ResShift's `decode` does.

Attribute paths equal the published keys (`encoder.down.0.block.1.conv2.weight`,
`encoder.mid.attn_1.q.weight`, `decoder.up.2.upsample.conv.weight`, `quantize.embedding.weight`,
`quant_conv.weight`, `post_quant_conv.weight`, ...), so `sslsr.convert.from_torch` reads
`autoencoder_vq_f4.pth` 1:1. Constructor keywords are ResShift's config keys with `ddconfig`
flattened; the defaults are the published VQ-f4's.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from sslsr.models.layers import torch_conv
from sslsr.models.resshift_unet import Upsample, group_norm, strided_conv  # same layers as LDM's

_EPS = 1e-6  # LDM's `Normalize`: GroupNorm(32, C, eps=1e-6)
_CODE_CHUNK = 4096  # latent vectors per nearest-code step: bounds the (rows, n_embed) distance matrix


def _norm(channels: int, rngs: nnx.Rngs) -> nnx.GroupNorm:
    return group_norm(channels, epsilon=_EPS, rngs=rngs)


class ResnetBlock(nnx.Module):
    """x + conv2(silu(norm2(conv1(silu(norm1(x)))))), with a 1x1 `nin_shortcut` when the width changes."""

    def __init__(self, in_channels: int, out_channels: int, *, rngs: nnx.Rngs):
        self.norm1 = _norm(in_channels, rngs)
        self.conv1 = torch_conv(in_channels, out_channels, 3, rngs=rngs)
        self.norm2 = _norm(out_channels, rngs)
        self.conv2 = torch_conv(out_channels, out_channels, 3, rngs=rngs)
        self.nin_shortcut = torch_conv(in_channels, out_channels, 1, rngs=rngs) if in_channels != out_channels else None

    def __call__(self, x: jax.Array) -> jax.Array:
        h = self.conv1(jax.nn.silu(self.norm1(x)))
        h = self.conv2(jax.nn.silu(self.norm2(h)))
        return (x if self.nin_shortcut is None else self.nin_shortcut(x)) + h


class AttnBlock(nnx.Module):
    """Single-head self-attention over all H*W positions with 1x1 q/k/v/proj_out; residual."""

    def __init__(self, channels: int, *, rngs: nnx.Rngs):
        self.norm = _norm(channels, rngs)
        self.q = torch_conv(channels, channels, 1, rngs=rngs)
        self.k = torch_conv(channels, channels, 1, rngs=rngs)
        self.v = torch_conv(channels, channels, 1, rngs=rngs)
        self.proj_out = torch_conv(channels, channels, 1, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        b, hh, ww, c = x.shape
        h = self.norm(x)
        q, k, v = (f(h).reshape(b, hh * ww, c) for f in (self.q, self.k, self.v))
        logits = jnp.einsum("bic,bjc->bij", q, k) * c**-0.5
        weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(v.dtype)  # f32 under bf16
        out = jnp.einsum("bij,bjc->bic", weights, v).reshape(b, hh, ww, c)
        return x + self.proj_out(out)


class Downsample(nnx.Module):
    """Zero-pad right/bottom by one, then a 3x3 stride-2 conv (LDM's asymmetric `Downsample`)."""

    def __init__(self, channels: int, *, rngs: nnx.Rngs):
        self.conv = strided_conv(channels, channels, ((0, 1), (0, 1)), rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.conv(x)


class Level(nnx.Module):
    """One resolution: `block` ResnetBlocks, each followed by its `attn` block when that resolution
    has attention, then the optional `downsample` (encoder) or `upsample` (decoder)."""

    def __init__(self, widths, attention: bool, resample, *, rngs: nnx.Rngs):
        self.block = nnx.List([ResnetBlock(a, b, rngs=rngs) for a, b in zip(widths[:-1], widths[1:], strict=True)])
        self.attn = nnx.List([AttnBlock(b, rngs=rngs) for b in widths[1:]] if attention else [])
        self.downsample = resample if isinstance(resample, Downsample) else None
        self.upsample = resample if isinstance(resample, Upsample) else None

    def __call__(self, x: jax.Array) -> jax.Array:
        for i, block in enumerate(self.block):
            x = block(x)
            if len(self.attn):
                x = self.attn[i](x)
        for resample in (self.downsample, self.upsample):
            if resample is not None:
                x = resample(x)
        return x


class Middle(nnx.Module):
    """ResnetBlock -> attention -> ResnetBlock at the lowest resolution (keys `mid.*`)."""

    def __init__(self, channels: int, *, rngs: nnx.Rngs):
        self.block_1 = ResnetBlock(channels, channels, rngs=rngs)
        self.attn_1 = AttnBlock(channels, rngs=rngs)
        self.block_2 = ResnetBlock(channels, channels, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.block_2(self.attn_1(self.block_1(x)))


class Encoder(nnx.Module):
    """(B, H, W, in_channels) -> (B, H/f, W/f, z_channels), f = 2^(len(ch_mult)-1)."""

    def __init__(self, ch, ch_mult, num_res_blocks, attn_resolutions, in_channels, resolution, z_channels, *, rngs):
        self.conv_in = torch_conv(in_channels, ch, 3, rngs=rngs)
        levels, width, res = [], ch, resolution
        for i, mult in enumerate(ch_mult):
            out = ch * mult
            last = i == len(ch_mult) - 1
            down = None if last else Downsample(out, rngs=rngs)
            levels.append(Level([width] + [out] * num_res_blocks[i], res in attn_resolutions, down, rngs=rngs))
            width, res = out, res if last else res // 2
        self.down = nnx.List(levels)
        self.mid = Middle(width, rngs=rngs)
        self.norm_out = _norm(width, rngs)
        self.conv_out = torch_conv(width, z_channels, 3, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        h = self.conv_in(x)
        for level in self.down:
            h = level(h)
        h = self.mid(h)
        return self.conv_out(jax.nn.silu(self.norm_out(h)))


class Decoder(nnx.Module):
    """(B, h, w, z_channels) -> (B, h*f, w*f, out_ch). `up[i]` is level i (0 = full resolution),
    run from the lowest level up, as in LDM."""

    def __init__(self, ch, out_ch, ch_mult, num_res_blocks, attn_resolutions, resolution, z_channels, *, rngs):
        n = len(ch_mult)
        width, res = ch * ch_mult[-1], resolution // 2 ** (n - 1)
        self.conv_in = torch_conv(z_channels, width, 3, rngs=rngs)
        self.mid = Middle(width, rngs=rngs)
        levels = [None] * n
        for i in reversed(range(n)):
            out = ch * ch_mult[i]
            up = Upsample(out, rngs=rngs) if i else None
            levels[i] = Level([width] + [out] * (num_res_blocks[i] + 1), res in attn_resolutions, up, rngs=rngs)
            width, res = out, res * 2 if i else res
        self.up = nnx.List(levels)
        self.norm_out = _norm(width, rngs)
        self.conv_out = torch_conv(width, out_ch, 3, rngs=rngs)

    def __call__(self, z: jax.Array) -> jax.Array:
        h = self.mid(self.conv_in(z))
        for i in reversed(range(len(self.up))):
            h = self.up[i](h)
        return self.conv_out(jax.nn.silu(self.norm_out(h)))


class Codebook(nnx.Module):
    """`n_embed` code vectors, PyTorch `nn.Embedding` layout (key `embedding.weight`)."""

    def __init__(self, n_embed: int, embed_dim: int, *, rngs: nnx.Rngs):
        bound = 1.0 / n_embed  # LDM's VectorQuantizer2 init: U(-1/n, 1/n)
        self.weight = nnx.Param(jax.random.uniform(rngs.params(), (n_embed, embed_dim), jnp.float32, -bound, bound))


class Quantizer(nnx.Module):
    """Nearest-code vector quantisation (LDM's `VectorQuantizer2`, key `quantize.embedding.weight`)."""

    def __init__(self, n_embed: int, embed_dim: int, *, rngs: nnx.Rngs):
        self.embedding = Codebook(n_embed, embed_dim, rngs=rngs)

    def indices(self, z: jax.Array) -> jax.Array:
        """(..., embed_dim) -> (...) int32 index of the nearest code (squared Euclidean).

        Distances are float32 whatever z's dtype (bf16 rounding would pick neighbouring codes)
        and are formed in chunks of rows so the (rows, n_embed) matrix stays small for large
        latents and batches.
        """
        codes = self.embedding.weight[...].astype(jnp.float32)
        flat = z.reshape(-1, z.shape[-1]).astype(jnp.float32)
        rows = flat.shape[0]
        chunk = min(rows, _CODE_CHUNK)
        pad = -rows % chunk
        flat = jnp.pad(flat, ((0, pad), (0, 0))).reshape(-1, chunk, flat.shape[-1])
        code_sq = jnp.sum(codes**2, axis=1)

        def nearest(block):
            # Same expansion as the original, |z|^2 + |e|^2 - 2 z.e, so near-ties resolve alike.
            d = jnp.sum(block**2, axis=1, keepdims=True) + code_sq - 2.0 * block @ codes.T
            return jnp.argmin(d, axis=1).astype(jnp.int32)

        idx = jax.lax.map(nearest, flat).reshape(-1)[:rows]
        return idx.reshape(z.shape[:-1])

    def __call__(self, z: jax.Array) -> jax.Array:
        """(..., embed_dim) -> the nearest codes, with the straight-through gradient of z."""
        codes = self.embedding.weight[...].astype(z.dtype)
        z_q = codes[self.indices(z)]
        return z + jax.lax.stop_gradient(z_q - z)


class VQAutoencoder(nnx.Module):
    """ResShift's `VQModelTorch`: `encode` (B, H, W, 3) in [-1, 1] -> (B, H/f, W/f, embed_dim)
    pre-quantisation latent; `decode` latent -> (B, H*f, W*f, out_ch) in about [-1, 1].

    Args (ResShift's `ddconfig` keys flattened, plus `n_embed` and `embed_dim`; defaults = VQ-f4):
      ch, ch_mult: base width and per-level multipliers; `factor` = 2^(len(ch_mult)-1).
      num_res_blocks: ResnetBlocks per encoder level (int or per level; decoder levels get one more).
      attn_resolutions: resolutions (counted from `resolution`) with attention after every block.
      in_channels, out_ch, resolution, z_channels, n_embed, embed_dim: as in LDM.
      double_z, dropout, padding_mode: accepted with the VQ values (False, 0, 'zeros') only.
    """

    def __init__(
        self,
        ch: int = 128,
        ch_mult=(1, 2, 4),
        num_res_blocks=2,
        z_channels: int = 3,
        embed_dim: int = 3,
        n_embed: int = 8192,
        attn_resolutions=(),
        in_channels: int = 3,
        out_ch: int = 3,
        resolution: int = 256,
        double_z: bool = False,
        dropout: float = 0.0,
        padding_mode: str = "zeros",
        *,
        rngs: nnx.Rngs,
    ):
        if double_z or dropout or padding_mode != "zeros":
            raise ValueError(
                "VQAutoencoder: only double_z=False, dropout=0, padding_mode='zeros' (the VQ-f4 settings) are "
                f"supported, got double_z={double_z!r}, dropout={dropout!r}, padding_mode={padding_mode!r}"
            )
        if isinstance(num_res_blocks, int):
            num_res_blocks = (num_res_blocks,) * len(ch_mult)
        if len(num_res_blocks) != len(ch_mult):
            raise ValueError(f"VQAutoencoder: num_res_blocks {num_res_blocks} needs one entry per ch_mult level")
        self.factor = 2 ** (len(ch_mult) - 1)
        self.embed_dim = embed_dim  # latent channels, for callers' checks against the denoiser
        self.encoder = Encoder(ch, ch_mult, num_res_blocks, attn_resolutions, in_channels, resolution, z_channels,
                               rngs=rngs)
        self.decoder = Decoder(ch, out_ch, ch_mult, num_res_blocks, attn_resolutions, resolution, z_channels,
                               rngs=rngs)
        self.quantize = Quantizer(n_embed, embed_dim, rngs=rngs)
        self.quant_conv = torch_conv(z_channels, embed_dim, 1, rngs=rngs)
        self.post_quant_conv = torch_conv(embed_dim, z_channels, 1, rngs=rngs)

    def encode(self, x: jax.Array) -> jax.Array:
        """(B, H, W, in_channels) in [-1, 1], H and W multiples of `factor` -> (B, H/f, W/f, embed_dim)."""
        if x.shape[1] % self.factor or x.shape[2] % self.factor:
            raise ValueError(f"VQAutoencoder: image {x.shape[1]}x{x.shape[2]} is not a multiple of {self.factor}")
        return self.quant_conv(self.encoder(x))

    def decode(self, z: jax.Array, force_not_quantize: bool = False) -> jax.Array:
        """(B, h, w, embed_dim) -> (B, h*f, w*f, out_ch): quantise (straight-through), decode.

        `force_not_quantize=True` (ResShift's keyword) decodes z as given, e.g. codes already looked
        up, or a smooth decoder for finite-difference checks.
        """
        quant = z if force_not_quantize else self.quantize(z)
        return self.decoder(self.post_quant_conv(quant))

    def __call__(self, x: jax.Array) -> jax.Array:
        """decode(encode(x)), ResShift's `forward`."""
        return self.decode(self.encode(x))
