"""SwinIR (Liang et al., 2021) in Flax NNX, NHWC, with the official parameter names.

Attribute paths equal the official `network_swinir.py` keys (`layers.0.residual_group.blocks.1.
attn.qkv.weight`, `conv_after_body.0.weight`, `upsample.0.weight`, ...), so `sslsr.convert` maps
published checkpoints 1:1. The PyTorch buffers `relative_position_index` and `attn_mask` are not
state here: they are recomputed from static shapes (see `torch_buffers` for the converter).

Simplifications vs the official constructor (all at the official defaults for the published
models): patch_size 1, no absolute position embedding, patch_norm on, qkv_bias on, no plain
dropout (official default 0). Stochastic depth (`drop_path_rate`) is supported but defaults to 0
here (official default 0.1, which KAIR/BasicSR training configs inherit; it only acts in training).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sslsr.models.layers import leaky_relu, pixel_shuffle, torch_conv, upsample_nearest

_RGB_MEAN = (0.4488, 0.4371, 0.4040)  # DIV2K mean used by the official SwinIR
_MASK_VALUE = -100.0  # the official attention-mask fill for tokens from different regions
_UPSAMPLERS = ("pixelshuffle", "pixelshuffledirect", "nearest+conv")
_PAD_MODES = ("reflect", "flip")


@functools.lru_cache(maxsize=None)
def relative_position_index(window_size: int) -> np.ndarray:
    """(N, N) int64 index into the ((2ws-1)^2, heads) bias table, N = ws*ws (official order)."""
    coords = np.stack(np.meshgrid(np.arange(window_size), np.arange(window_size), indexing="ij")).reshape(2, -1)
    rel = (coords[:, :, None] - coords[:, None, :]).transpose(1, 2, 0) + (window_size - 1)
    return (rel[:, :, 0] * (2 * window_size - 1) + rel[:, :, 1]).astype(np.int64)


@functools.lru_cache(maxsize=None)
def _window_region_labels(height: int, width: int, window_size: int, shift: int) -> np.ndarray:
    """(nW, N) int32 region label of every token after the cyclic shift, per window.

    Labels 0..8 mark the 3x3 regions (split at -ws and -shift) of the rolled image; tokens of
    different regions must not attend to each other. Windows are row-major over the grid.
    """
    img = np.zeros((height, width), np.int32)
    cuts = (slice(0, -window_size), slice(-window_size, -shift), slice(-shift, None))
    for i, hs in enumerate(cuts):
        for j, ws in enumerate(cuts):
            img[hs, ws] = 3 * i + j
    return window_partition(img[None, :, :, None], window_size).reshape(-1, window_size * window_size)


def shifted_window_mask(height: int, width: int, window_size: int, shift: int) -> np.ndarray:
    """(nW, N, N) float32 attention mask (official `attn_mask`): 0 within a region, -100 across."""
    labels = _window_region_labels(height, width, window_size, shift)
    return np.where(labels[:, None, :] != labels[:, :, None], _MASK_VALUE, 0.0).astype(np.float32)


def window_partition(x, window_size: int):
    """(B, H, W, C) -> (B * H/ws * W/ws, ws, ws, C), windows row-major per image."""
    b, h, w, c = x.shape
    x = x.reshape(b, h // window_size, window_size, w // window_size, window_size, c)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(-1, window_size, window_size, c)


def window_reverse(windows, window_size: int, height: int, width: int):
    """Inverse of `window_partition`: (B*nW, ws, ws, C) -> (B, H, W, C)."""
    c = windows.shape[-1]
    x = windows.reshape(-1, height // window_size, width // window_size, window_size, window_size, c)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(-1, height, width, c)


def _layer_norm(dim: int, rngs: nnx.Rngs) -> nnx.LayerNorm:
    return nnx.LayerNorm(dim, epsilon=1e-5, use_fast_variance=False, rngs=rngs)


def _linear(cin: int, cout: int, rngs: nnx.Rngs) -> nnx.Linear:
    # The official `_init_weights`: trunc_normal(std=0.02) weights, zero bias.
    return nnx.Linear(cin, cout, kernel_init=nnx.initializers.truncated_normal(0.02), rngs=rngs)


class WindowAttention(nnx.Module):
    """Multi-head self-attention inside ws×ws windows with a learned relative position bias.

    (B', N, C) tokens, optional (nW, N, N) additive mask with B' a multiple of nW -> (B', N, C).
    """

    def __init__(self, dim: int, window_size: int, num_heads: int, *, rngs: nnx.Rngs):
        self.dim, self.window_size, self.num_heads = dim, window_size, num_heads
        self.scale = (dim // num_heads) ** -0.5
        table = nnx.initializers.truncated_normal(0.02)(rngs.params(), ((2 * window_size - 1) ** 2, num_heads))
        self.relative_position_bias_table = nnx.Param(table)
        self.qkv = _linear(dim, dim * 3, rngs)
        self.proj = _linear(dim, dim, rngs)

    def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        bw, n, c = x.shape
        h = self.num_heads
        qkv = self.qkv(x).reshape(bw, n, 3, h, c // h).transpose(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]
        attn = q @ k.swapaxes(-1, -2)  # (B', heads, N, N)
        index = relative_position_index(self.window_size).reshape(-1)
        bias = self.relative_position_bias_table[...][index].reshape(n, n, h).transpose(2, 0, 1)
        attn = attn + bias[None].astype(attn.dtype)
        if mask is not None:
            nw = mask.shape[0]
            attn = attn.reshape(bw // nw, nw, h, n, n) + mask.astype(attn.dtype)[None, :, None]
            attn = attn.reshape(bw, h, n, n)
        attn = jax.nn.softmax(attn.astype(jnp.float32), axis=-1).astype(v.dtype)  # f32 under bf16
        out = (attn @ v).transpose(0, 2, 1, 3).reshape(bw, n, c)
        return self.proj(out)


class Mlp(nnx.Module):
    """fc1 -> GELU (exact, like torch.nn.GELU) -> fc2; (..., C) -> (..., C)."""

    def __init__(self, dim: int, hidden: int, *, rngs: nnx.Rngs):
        self.fc1 = _linear(dim, hidden, rngs)
        self.fc2 = _linear(hidden, dim, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fc2(jax.nn.gelu(self.fc1(x), approximate=False))


class SwinTransformerBlock(nnx.Module):
    """(Shifted-)window attention + MLP, both pre-norm residual. (B, H, W, C) -> same.

    H and W must be multiples of the window size. As in the official code, a block whose
    training resolution (`input_resolution`) is not larger than the window uses one window
    covering it and no shift.
    """

    def __init__(
        self,
        dim: int,
        input_resolution: tuple[int, int],
        num_heads: int,
        window_size: int,
        shift_size: int,
        mlp_ratio: float,
        drop_path: float = 0.0,
        *,
        rngs: nnx.Rngs,
    ):
        if min(input_resolution) <= window_size:
            shift_size, window_size = 0, min(input_resolution)
        self.input_resolution = tuple(input_resolution)
        self.window_size, self.shift_size = window_size, shift_size
        self.norm1 = _layer_norm(dim, rngs)
        self.attn = WindowAttention(dim, window_size, num_heads, rngs=rngs)
        self.norm2 = _layer_norm(dim, rngs)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), rngs=rngs)
        # Stochastic depth: one keep/drop draw per sample, i.e. a dropout mask shared over H, W, C.
        self.drop_path = nnx.Dropout(drop_path, broadcast_dims=(1, 2, 3), rngs=rngs) if drop_path > 0 else None

    def _drop_path(self, x: jax.Array) -> jax.Array:
        return x if self.drop_path is None else self.drop_path(x)

    def __call__(self, x: jax.Array) -> jax.Array:
        _, hh, ww, c = x.shape
        ws, shift = self.window_size, self.shift_size
        y = self.norm1(x)
        mask = None
        if shift:
            y = jnp.roll(y, (-shift, -shift), axis=(1, 2))
            # Built in the graph from the small (nW, N) label table: a (nW, N, N) constant per
            # block would bloat the compiled program for large inputs.
            labels = jnp.asarray(_window_region_labels(hh, ww, ws, shift))
            mask = jnp.where(labels[:, None, :] != labels[:, :, None], _MASK_VALUE, 0.0)
        windows = window_partition(y, ws).reshape(-1, ws * ws, c)
        y = window_reverse(self.attn(windows, mask).reshape(-1, ws, ws, c), ws, hh, ww)
        if shift:
            y = jnp.roll(y, (shift, shift), axis=(1, 2))
        x = x + self._drop_path(y)
        return x + self._drop_path(self.mlp(self.norm2(x)))


def _conv_stack(dim: int, resi_connection: str, rngs: nnx.Rngs):
    """The conv closing each residual group: '1conv' = 3x3 conv; '3conv' = the official
    Sequential(conv3x3 dim->dim/4, LReLU, conv1x1, LReLU, conv3x3 ->dim), keys 0/2/4."""
    if resi_connection == "1conv":
        return torch_conv(dim, dim, 3, rngs=rngs)
    q = dim // 4
    return nnx.Dict(
        {
            "0": torch_conv(dim, q, 3, rngs=rngs),
            "2": torch_conv(q, q, 1, rngs=rngs),
            "4": torch_conv(q, dim, 3, rngs=rngs),
        }
    )


def _apply_conv_stack(stack, x: jax.Array) -> jax.Array:
    if isinstance(stack, nnx.Conv):
        return stack(x)
    x = leaky_relu(stack["0"](x), 0.2)
    x = leaky_relu(stack["2"](x), 0.2)
    return stack["4"](x)


class BasicLayer(nnx.Module):
    """`depth` Swin blocks alternating plain and shifted windows (official `blocks.<i>`)."""

    def __init__(self, dim, input_resolution, depth, num_heads, window_size, mlp_ratio, drop_path, *, rngs):
        self.blocks = nnx.List(
            [
                SwinTransformerBlock(
                    dim,
                    input_resolution,
                    num_heads,
                    window_size,
                    0 if i % 2 == 0 else window_size // 2,
                    mlp_ratio,
                    drop_path[i],
                                rngs=rngs,
                )
                for i in range(depth)
            ]
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        for block in self.blocks:
            x = block(x)
        return x


class RSTB(nnx.Module):
    """Residual Swin Transformer block: `x + conv(residual_group(x))`. (B, H, W, C) -> same."""

    def __init__(
        self,
        dim,
        input_resolution,
        depth,
        num_heads,
        window_size,
        mlp_ratio,
        resi_connection,
        drop_path,
        *,
        rngs,
    ):
        self.residual_group = BasicLayer(
            dim, input_resolution, depth, num_heads, window_size, mlp_ratio, drop_path, rngs=rngs
        )
        self.conv = _conv_stack(dim, resi_connection, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return x + _apply_conv_stack(self.conv, self.residual_group(x))


class PatchEmbed(nnx.Module):
    """patch_size 1: only the LayerNorm over channels (official `patch_embed.norm`)."""

    def __init__(self, dim: int, *, rngs: nnx.Rngs):
        self.norm = _layer_norm(dim, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.norm(x)


class SwinIR(nnx.Module):
    """SwinIR: (B, H, W, in_chans) in [0, 1] -> (B, H*upscale, W*upscale, in_chans).

    Args (official names):
      upscale: 2, 3, 4 or 8 ('nearest+conv': 4 only).
      in_chans: image channels; the DIV2K RGB mean is subtracted when 3, none otherwise.
      img_size: training patch size; fixes which blocks shift (and the `attn_mask` buffer shape
        of PyTorch checkpoints), not the input size.
      window_size, depths, embed_dim, num_heads, mlp_ratio: transformer settings.
      img_range: inputs are scaled by this after mean subtraction (1.0 or 255.0).
      upsampler: 'pixelshuffle' (classical), 'pixelshuffledirect' (lightweight) or
        'nearest+conv' (real-world SR).
      resi_connection: '1conv' or '3conv'.
      drop_path_rate: stochastic depth, rising linearly from 0 to this over all blocks (training
        only; `model.eval()` turns it off).
      pad_mode: 'reflect' pads bottom/right to the next window multiple by reflection (official
        model); 'flip' always adds (h // ws + 1) * ws - h rows (and likewise columns) mirrored
        with the edge repeated, like the SSL paper's fork (64 -> 72). The output is cropped back
        to H*upscale x W*upscale either way.
    """

    def __init__(
        self,
        upscale: int = 4,
        in_chans: int = 3,
        img_size: int = 64,
        window_size: int = 8,
        img_range: float = 1.0,
        depths=(6, 6, 6, 6, 6, 6),
        embed_dim: int = 180,
        num_heads=(6, 6, 6, 6, 6, 6),
        mlp_ratio: float = 2.0,
        upsampler: str = "pixelshuffle",
        resi_connection: str = "1conv",
        drop_path_rate: float = 0.0,
        pad_mode: str = "reflect",
        *,
        rngs: nnx.Rngs,
    ):
        if upsampler not in _UPSAMPLERS:
            raise ValueError(f"SwinIR: upsampler must be one of {_UPSAMPLERS}, got {upsampler!r}")
        if resi_connection not in ("1conv", "3conv"):
            raise ValueError(f"SwinIR: resi_connection must be '1conv' or '3conv', got {resi_connection!r}")
        if pad_mode not in _PAD_MODES:
            raise ValueError(f"SwinIR: pad_mode must be one of {_PAD_MODES}, got {pad_mode!r}")
        if len(depths) != len(num_heads):
            raise ValueError(f"SwinIR: depths {depths} and num_heads {num_heads} differ in length")
        if upsampler == "nearest+conv" and upscale != 4:
            raise ValueError(f"SwinIR: upsampler 'nearest+conv' supports upscale 4 only, got {upscale}")
        if upsampler == "pixelshuffle" and not (upscale == 3 or (upscale > 0 and upscale & (upscale - 1) == 0)):
            raise ValueError(f"SwinIR: 'pixelshuffle' supports upscale 2^n or 3, got {upscale}")
        self.upscale, self.window_size, self.img_range = upscale, window_size, img_range
        self.upsampler, self.pad_mode = upsampler, pad_mode
        self.mean = _RGB_MEAN if in_chans == 3 else (0.0,) * in_chans
        num_feat = 64
        res = (img_size, img_size)

        self.conv_first = torch_conv(in_chans, embed_dim, 3, rngs=rngs)
        self.patch_embed = PatchEmbed(embed_dim, rngs=rngs)
        dpr = np.linspace(0.0, drop_path_rate, sum(depths)).tolist()
        starts = np.cumsum((0, *depths)).tolist()
        self.layers = nnx.List(
            [
                RSTB(
                    embed_dim,
                    res,
                    d,
                    h,
                    window_size,
                    mlp_ratio,
                    resi_connection,
                    dpr[s : s + d],
                                rngs=rngs,
                )
                for d, h, s in zip(depths, num_heads, starts, strict=False)
            ]
        )
        self.norm = _layer_norm(embed_dim, rngs)
        self.conv_after_body = _conv_stack(embed_dim, resi_connection, rngs)
        if upsampler == "pixelshuffle":
            self.conv_before_upsample = nnx.List([torch_conv(embed_dim, num_feat, 3, rngs=rngs)])
            if upscale == 3:
                self.upsample = nnx.Dict({"0": torch_conv(num_feat, 9 * num_feat, 3, rngs=rngs)})
            else:
                # Official Upsample is Sequential(conv, PixelShuffle(2), conv, ...): convs at even keys.
                steps = int(math.log2(upscale))
                self.upsample = nnx.Dict(
                    {str(2 * i): torch_conv(num_feat, 4 * num_feat, 3, rngs=rngs) for i in range(steps)}
                )
            self.conv_last = torch_conv(num_feat, in_chans, 3, rngs=rngs)
        elif upsampler == "pixelshuffledirect":
            self.upsample = nnx.Dict(
                {"0": torch_conv(embed_dim, upscale * upscale * in_chans, 3, rngs=rngs)}
            )
        else:
            self.conv_before_upsample = nnx.List([torch_conv(embed_dim, num_feat, 3, rngs=rngs)])
            self.conv_up1 = torch_conv(num_feat, num_feat, 3, rngs=rngs)
            self.conv_up2 = torch_conv(num_feat, num_feat, 3, rngs=rngs)
            self.conv_hr = torch_conv(num_feat, num_feat, 3, rngs=rngs)
            self.conv_last = torch_conv(num_feat, in_chans, 3, rngs=rngs)

    def _pad(self, x: jax.Array) -> jax.Array:
        _, h, w, _ = x.shape
        ws = self.window_size
        if self.pad_mode == "reflect":
            ph, pw = (-h) % ws, (-w) % ws
            mode = "reflect"
        else:
            ph, pw = (h // ws + 1) * ws - h, (w // ws + 1) * ws - w
            mode = "symmetric"  # == torch.cat([x, x.flip(dim)])[:h + pad] for pad <= h
        if ph == 0 and pw == 0:
            return x
        return jnp.pad(x, ((0, 0), (0, ph), (0, pw), (0, 0)), mode=mode)

    def forward_features(self, x: jax.Array) -> jax.Array:
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x)
        return self.norm(x)

    def __call__(self, x: jax.Array) -> jax.Array:
        _, h, w, _ = x.shape
        mean = jnp.asarray(self.mean, x.dtype)
        x = (self._pad(x) - mean) * self.img_range
        x = self.conv_first(x)
        x = x + _apply_conv_stack(self.conv_after_body, self.forward_features(x))
        if self.upsampler == "pixelshuffle":
            x = leaky_relu(self.conv_before_upsample[0](x), 0.01)  # nn.LeakyReLU() default slope
            for conv in self.upsample.values():
                x = pixel_shuffle(conv(x), 3 if self.upscale == 3 else 2)
            x = self.conv_last(x)
        elif self.upsampler == "pixelshuffledirect":
            x = pixel_shuffle(self.upsample["0"](x), self.upscale)
        else:
            x = leaky_relu(self.conv_before_upsample[0](x), 0.01)
            x = leaky_relu(self.conv_up1(upsample_nearest(x, 2)), 0.2)
            x = leaky_relu(self.conv_up2(upsample_nearest(x, 2)), 0.2)
            x = self.conv_last(leaky_relu(self.conv_hr(x), 0.2))
        x = x / self.img_range + mean
        return x[:, : h * self.upscale, : w * self.upscale]


def torch_buffers(model: SwinIR) -> dict[str, np.ndarray]:
    """The official model's persistent buffers, recomputed: per block `attn.relative_position_index`
    (int64) and, for shifted blocks, `attn_mask` at the `img_size` resolution (float32)."""
    out = {}
    for i, layer in enumerate(model.layers):
        for j, block in enumerate(layer.residual_group.blocks):
            prefix = f"layers.{i}.residual_group.blocks.{j}"
            out[f"{prefix}.attn.relative_position_index"] = relative_position_index(block.window_size).copy()
            if block.shift_size:
                h, w = block.input_resolution
                out[f"{prefix}.attn_mask"] = shifted_window_mask(h, w, block.window_size, block.shift_size)
    return out
