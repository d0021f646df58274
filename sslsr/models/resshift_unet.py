"""ResShift's denoiser (`UNetModelSwin`, Yue et al. 2023) in Flax NNX, NHWC, with the published keys.

A guided-diffusion UNet (timestep MLP, scale-shift ResBlocks, skip concatenation) whose attention
layers are small Swin transformers: at every resolution in `attention_resolutions` the first
ResBlock of the encoder and of the decoder level is followed by one Swin layer, and the middle
block is ResBlock -> Swin layer -> ResBlock. ResShift's Swin layers are channel-first: GroupNorm32
instead of LayerNorm, 1x1 convolutions for the MLP and for the patch (un)embedding; the window
attention itself is SwinIR's (`sslsr.models.swinir`, reused here).

Attribute paths equal the published keys (`time_embed.0.weight`, `input_blocks.1.0.in_layers.2.
weight`, `input_blocks.1.1.blocks.1.attn.qkv.weight`, `middle_block.1.patch_embed.proj.weight`,
`output_blocks.2.2.conv.weight`, `out.2.weight`, ...), so `sslsr.convert.from_torch` reads
`resshift_realsrx4_s15_v1.pth` 1:1. The PyTorch buffers `relative_position_index` and `attn_mask`
are recomputed (`torch_buffers`, the registry row's converter hook).

The constructor keywords are ResShift's config keys; the defaults are the published model's
(`configs/realsr_swinunet_realesrgan256.yaml`, 118.6M parameters). Settings the published model
does not use and which ResShift's code does not support consistently (3-D convolutions, fp16
modules, ResBlock resampling, dropout, patch norm, no LR conditioning) are rejected with a
ValueError rather than carried as untested options; mixed precision goes through
`sslsr.models.precision.cast_floating` like every other network.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sslsr.models.layers import torch_conv, torch_uniform, upsample_nearest
from sslsr.models.swinir import (
    Mlp,
    SwinTransformerBlock,
    WindowAttention,
    relative_position_index,
    shifted_window_mask,
)

# The published config's values of keywords this port does not make variable (see module doc).
_FIXED = {
    "dims": 2,
    "use_fp16": False,
    "resblock_updown": False,
    "dropout": 0,
    "patch_norm": False,
    "cond_lq": True,
    "conv_resample": True,
    "use_scale_shift_norm": True,
}


def group_norm(channels: int, *, rngs: nnx.Rngs, epsilon: float = 1e-5) -> nnx.GroupNorm:
    """PyTorch `GroupNorm(32, channels, eps)` over the last axis of NHWC input.

    Statistics are computed in float32 whatever the input dtype (flax promotes them), like
    guided-diffusion's GroupNorm32, and the two-pass variance matches PyTorch's.
    """
    return nnx.GroupNorm(channels, num_groups=32, epsilon=epsilon, use_fast_variance=False, rngs=rngs)


def strided_conv(in_ch: int, out_ch: int, padding, *, rngs: nnx.Rngs) -> nnx.Conv:
    """3x3 stride-2 conv (PyTorch `Conv2d(in, out, 3, 2, padding)` and its default init)."""
    init = torch_uniform(in_ch * 9)
    return nnx.Conv(
        in_ch, out_ch, (3, 3), strides=2, padding=padding, kernel_init=init, bias_init=init, rngs=rngs
    )


def _linear(cin: int, cout: int, rngs: nnx.Rngs) -> nnx.Linear:
    init = torch_uniform(cin)  # PyTorch's default Linear init
    return nnx.Linear(cin, cout, kernel_init=init, bias_init=init, rngs=rngs)


def timestep_embedding(timesteps: jax.Array, dim: int, max_period: float = 10000.0) -> jax.Array:
    """guided-diffusion's sinusoidal embedding: (B,) int or float -> (B, dim) float32, [cos | sin]."""
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
    args = jnp.asarray(timesteps).astype(jnp.float32)[:, None] * freqs[None]
    emb = jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)
    if dim % 2:
        emb = jnp.pad(emb, ((0, 0), (0, 1)))
    return emb


class Downsample(nnx.Module):
    """Stride-2 3x3 conv with padding 1 (guided-diffusion `Downsample`, key `op`)."""

    def __init__(self, channels: int, out_channels: int, *, rngs: nnx.Rngs):
        self.op = strided_conv(channels, out_channels, ((1, 1), (1, 1)), rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.op(x)


class Upsample(nnx.Module):
    """Nearest x2 then a 3x3 conv (guided-diffusion `Upsample`, key `conv`)."""

    def __init__(self, channels: int, *, rngs: nnx.Rngs):
        self.conv = torch_conv(channels, channels, 3, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.conv(upsample_nearest(x, 2))


class ResBlock(nnx.Module):
    """Scale-shift ResBlock: (B, H, W, C), (B, E) embedding -> (B, H, W, out_channels).

    h = conv(silu(norm(x))); h = norm(h) * (1 + scale) + shift with (scale, shift) from the
    embedding; out = skip(x) + conv(silu(h)). Keys `in_layers.0/2`, `emb_layers.1`,
    `out_layers.0/3`, `skip_connection` (1x1, only when the width changes).
    """

    def __init__(self, channels: int, emb_channels: int, out_channels: int, *, rngs: nnx.Rngs):
        self.in_layers = nnx.Dict(
            {"0": group_norm(channels, rngs=rngs), "2": torch_conv(channels, out_channels, 3, rngs=rngs)}
        )
        self.emb_layers = nnx.Dict({"1": _linear(emb_channels, 2 * out_channels, rngs)})
        # guided-diffusion zero-initialises the last conv so every block starts as the identity.
        last = nnx.Conv(out_channels, out_channels, (3, 3), padding=((1, 1), (1, 1)),
                        kernel_init=nnx.initializers.zeros, bias_init=nnx.initializers.zeros, rngs=rngs)
        self.out_layers = nnx.Dict({"0": group_norm(out_channels, rngs=rngs), "3": last})
        self.skip_connection = torch_conv(channels, out_channels, 1, rngs=rngs) if channels != out_channels else None

    def __call__(self, x: jax.Array, emb: jax.Array) -> jax.Array:
        h = self.in_layers["2"](jax.nn.silu(self.in_layers["0"](x)))
        scale, shift = jnp.split(self.emb_layers["1"](jax.nn.silu(emb))[:, None, None, :], 2, axis=-1)
        h = self.out_layers["0"](h) * (1 + scale) + shift
        h = self.out_layers["3"](jax.nn.silu(h))
        skip = x if self.skip_connection is None else self.skip_connection(x)
        return skip + h


class ConvMlp(Mlp):
    """SwinIR's MLP with 1x1 convolutions (ResShift's channel-first `Mlp`, keys `fc1`/`fc2` holding
    (O, I, 1, 1) weights); the forward, fc1 -> exact GELU -> fc2, is SwinIR's."""

    def __init__(self, dim: int, hidden: int, *, rngs: nnx.Rngs):
        # No super().__init__: it would build the Linear layers these convolutions replace.
        self.fc1 = torch_conv(dim, hidden, 1, rngs=rngs)
        self.fc2 = torch_conv(hidden, dim, 1, rngs=rngs)


class SwinBlock(SwinTransformerBlock):
    """ResShift's Swin block: SwinIR's (shifted-)window attention block with GroupNorm32 in place
    of LayerNorm and a 1x1-conv MLP. (B, H, W, C) -> same; the forward is SwinIR's.

    As in both originals, a block whose construction resolution is not larger than the window
    uses one window covering it and no shift.
    """

    def __init__(self, dim, input_resolution, num_heads, window_size, shift_size, mlp_ratio, *, rngs):
        # No super().__init__: it would build LayerNorm/Linear parameters that this block replaces.
        if min(input_resolution) <= window_size:
            shift_size, window_size = 0, min(input_resolution)
        self.input_resolution = tuple(input_resolution)
        self.window_size, self.shift_size = window_size, shift_size
        self.norm1 = group_norm(dim, rngs=rngs)
        self.attn = WindowAttention(dim, window_size, num_heads, rngs=rngs)
        self.norm2 = group_norm(dim, rngs=rngs)
        self.mlp = ConvMlp(dim, int(dim * mlp_ratio), rngs=rngs)
        self.drop_path = None


class SwinLayer(nnx.Module):
    """ResShift's `BasicLayer` (patch_size 1, no patch norm): 1x1 conv to `embed_dim`, `depth`
    Swin blocks alternating plain and shifted windows, 1x1 conv back. (B, H, W, C) -> same;
    no residual around the layer (the ResBlocks around it carry it)."""

    def __init__(self, in_chans, embed_dim, num_heads, window_size, depth, img_size, mlp_ratio, *, rngs):
        self.patch_embed = nnx.Dict({"proj": torch_conv(in_chans, embed_dim, 1, rngs=rngs)})
        self.blocks = nnx.List(
            [
                SwinBlock(embed_dim, (img_size, img_size), num_heads, window_size,
                          0 if i % 2 == 0 else window_size // 2, mlp_ratio, rngs=rngs)
                for i in range(depth)
            ]
        )
        self.patch_unembed = nnx.Dict({"proj": torch_conv(embed_dim, in_chans, 1, rngs=rngs)})

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.patch_embed["proj"](x)
        for block in self.blocks:
            x = block(x)
        return self.patch_unembed["proj"](x)


def _run(layers, h: jax.Array, emb: jax.Array) -> jax.Array:
    """guided-diffusion's TimestepEmbedSequential: ResBlocks also get the embedding."""
    for layer in layers:
        h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
    return h


class ResShiftUNet(nnx.Module):
    """ResShift's `UNetModelSwin`: (x (B, H, W, in_channels) latent, timesteps (B,), lq) ->
    (B, H, W, out_channels).

    `lq` is the low-quality image in [-1, 1], (B, h, w, 3) with h = H * lq_size / image_size:
    concatenated to x as is when lq_size == image_size (the published x4 model: 64x64 LR with
    the 64x64 latent of the 256x256 image), else first reduced to H x W by ResShift's learned
    `feature_extractor` (per factor 2: conv3x3, SiLU, stride-2 conv doubling 16 channels).
    H and W must be multiples of `size_multiple` (ResShift's sampler pads/chops to its
    training size, 64).

    Args (ResShift's config keys; defaults = `realsr_swinunet_realesrgan256`):
      image_size: the training latent size; with `attention_resolutions` it fixes which levels
        get Swin layers and each Swin block's window/shift (a level not larger than the window
        uses one unshifted window).
      in_channels, out_channels: latent channels (3 for VQ-f4).
      model_channels: base width; the timestep MLP is 4x wider.
      num_res_blocks: ResBlocks per encoder level (int or one per level); decoder levels have one
        more.
      attention_resolutions: latent resolutions (not downsampling rates) that get a Swin layer.
      channel_mult: width multiplier per level; a stride-2 conv between levels.
      num_heads / num_head_channels: Swin heads, `swin_embed_dim // num_head_channels` unless
        num_head_channels is -1.
      swin_depth, swin_embed_dim, window_size, mlp_ratio: the Swin layers.
      lq_size: the training LR size.
      dims, use_fp16, resblock_updown, dropout, patch_norm, cond_lq, conv_resample,
        use_scale_shift_norm: accepted with the published values only (see the module doc).
    """

    def __init__(
        self,
        image_size: int = 64,
        in_channels: int = 3,
        model_channels: int = 160,
        out_channels: int = 3,
        num_res_blocks=2,
        attention_resolutions=(64, 32, 16, 8),
        dropout: float = 0,
        channel_mult=(1, 2, 2, 4),
        conv_resample: bool = True,
        dims: int = 2,
        use_fp16: bool = False,
        num_heads: int = 1,
        num_head_channels: int = 32,
        use_scale_shift_norm: bool = True,
        resblock_updown: bool = False,
        swin_depth: int = 2,
        swin_embed_dim: int = 192,
        window_size: int = 8,
        mlp_ratio: float = 4.0,
        patch_norm: bool = False,
        cond_lq: bool = True,
        lq_size: int = 64,
        *,
        rngs: nnx.Rngs,
    ):
        given = dict(dims=dims, use_fp16=use_fp16, resblock_updown=resblock_updown, dropout=dropout,
                     patch_norm=patch_norm, cond_lq=cond_lq, conv_resample=conv_resample,
                     use_scale_shift_norm=use_scale_shift_norm)
        for name, value in given.items():
            if value != _FIXED[name]:
                raise ValueError(f"ResShiftUNet: only {name}={_FIXED[name]!r} (the published setting) "
                                 f"is supported, got {value!r}")
        levels = len(channel_mult)
        if isinstance(num_res_blocks, int):
            num_res_blocks = (num_res_blocks,) * levels
        if len(num_res_blocks) != levels:
            raise ValueError(f"ResShiftUNet: num_res_blocks {num_res_blocks} needs one entry per channel_mult "
                             f"level ({levels})")
        ratio = lq_size / image_size
        if ratio < 1 or ratio != 2 ** round(math.log2(ratio)):
            raise ValueError(f"ResShiftUNet: lq_size / image_size must be 1, 2, 4, ..., got {lq_size}/{image_size}")
        if num_head_channels != -1:
            if num_head_channels <= 0 or swin_embed_dim % num_head_channels:
                raise ValueError(f"ResShiftUNet: swin_embed_dim {swin_embed_dim} is not a multiple of "
                                 f"num_head_channels {num_head_channels}")
            num_heads = swin_embed_dim // num_head_channels
        self.model_channels, self.lq_factor = model_channels, round(ratio)
        self.in_channels, self.out_channels = in_channels, out_channels  # the latent's, for callers' checks
        emb_dim = 4 * model_channels

        def swin(ch: int, res: int) -> SwinLayer:
            return SwinLayer(ch, swin_embed_dim, num_heads, window_size, swin_depth, res, mlp_ratio, rngs=rngs)

        self.time_embed = nnx.Dict(
            {"0": _linear(model_channels, emb_dim, rngs), "2": _linear(emb_dim, emb_dim, rngs)}
        )
        extractor, lq_ch = {}, 3
        for i in range(round(math.log2(ratio))):
            width = 16 * 2**i
            extractor[str(3 * i)] = torch_conv(lq_ch, width, 3, rngs=rngs)
            extractor[str(3 * i + 2)] = Downsample(width, 2 * width, rngs=rngs)
            lq_ch = 2 * width
        self.feature_extractor = nnx.Dict(extractor) if extractor else None

        ch = input_ch = int(channel_mult[0] * model_channels)
        blocks = [nnx.List([torch_conv(in_channels + lq_ch, ch, 3, rngs=rngs)])]
        skip_chans = [ch]
        # Every Swin level needs H/2^level to be a multiple of its (possibly clipped) window.
        multiple = 2 ** (levels - 1)
        ds = image_size
        for level, mult in enumerate(channel_mult):
            for j in range(num_res_blocks[level]):
                out = int(mult * model_channels)
                layers = [ResBlock(ch, emb_dim, out, rngs=rngs)]
                ch = out
                if ds in attention_resolutions and j == 0:
                    layers.append(swin(ch, ds))
                    multiple = math.lcm(multiple, min(window_size, ds) * 2**level)
                blocks.append(nnx.List(layers))
                skip_chans.append(ch)
            if level != levels - 1:
                blocks.append(nnx.List([Downsample(ch, ch, rngs=rngs)]))
                skip_chans.append(ch)
                ds //= 2
        self.input_blocks = nnx.List(blocks)

        self.middle_block = nnx.List(
            [ResBlock(ch, emb_dim, ch, rngs=rngs), swin(ch, ds), ResBlock(ch, emb_dim, ch, rngs=rngs)]
        )
        self.size_multiple = math.lcm(multiple, min(window_size, ds) * 2 ** (levels - 1))

        blocks = []
        for level, mult in list(enumerate(channel_mult))[::-1]:
            for i in range(num_res_blocks[level] + 1):
                out = int(model_channels * mult)
                layers = [ResBlock(ch + skip_chans.pop(), emb_dim, out, rngs=rngs)]
                ch = out
                if ds in attention_resolutions and i == 0:
                    layers.append(swin(ch, ds))
                if level and i == num_res_blocks[level]:
                    layers.append(Upsample(ch, rngs=rngs))
                    ds *= 2
                blocks.append(nnx.List(layers))
        self.output_blocks = nnx.List(blocks)
        self.out = nnx.Dict({"0": group_norm(ch, rngs=rngs), "2": torch_conv(input_ch, out_channels, 3, rngs=rngs)})

    def __call__(self, x: jax.Array, timesteps: jax.Array, lq: jax.Array) -> jax.Array:
        b, hh, ww, _ = x.shape
        if hh % self.size_multiple or ww % self.size_multiple:
            raise ValueError(f"ResShiftUNet: latent size {hh}x{ww} is not a multiple of {self.size_multiple}")
        want = (b, hh * self.lq_factor, ww * self.lq_factor)
        if tuple(lq.shape[:3]) != want:
            raise ValueError(f"ResShiftUNet: lq {tuple(lq.shape)} does not fit latent {tuple(x.shape)} "
                             f"(expected {want[1]}x{want[2]}, lq_size/image_size = {self.lq_factor})")
        emb = timestep_embedding(timesteps, self.model_channels).astype(x.dtype)
        emb = self.time_embed["2"](jax.nn.silu(self.time_embed["0"](emb)))
        lq = lq.astype(x.dtype)
        if self.feature_extractor is not None:
            for i in range(self.lq_factor.bit_length() - 1):  # one stride-2 stage per factor 2
                lq = self.feature_extractor[str(3 * i + 2)](jax.nn.silu(self.feature_extractor[str(3 * i)](lq)))
        h = jnp.concatenate([x, lq], axis=-1)
        skips = []
        for block in self.input_blocks:
            h = _run(block, h, emb)
            skips.append(h)
        h = _run(self.middle_block, h, emb)
        for block in self.output_blocks:
            h = _run(block, jnp.concatenate([h, skips.pop()], axis=-1), emb)
        return self.out["2"](jax.nn.silu(self.out["0"](h)))


def torch_buffers(model: ResShiftUNet) -> dict[str, np.ndarray]:
    """The published model's persistent buffers, recomputed: per Swin block
    `attn.relative_position_index` (int64) and, for shifted blocks, `attn_mask` at the block's
    construction resolution (float32)."""
    out = {}
    for path, node in nnx.iter_graph(model):
        if isinstance(node, SwinBlock):
            prefix = ".".join(str(p) for p in path)
            out[f"{prefix}.attn.relative_position_index"] = relative_position_index(node.window_size).copy()
            if node.shift_size:
                h, w = node.input_resolution
                out[f"{prefix}.attn_mask"] = shifted_window_mask(h, w, node.window_size, node.shift_size)
    return out
