"""The architecture and constructor kwargs of a PyTorch state dict, read from its keys and shapes.

`identify(sd)` -> (registry name, kwargs, sd with BasicSR key names). Recognised:

- RRDBNet, BasicSR keys (`conv_first`, `body.N.rdb1.conv1`, ...), the old BasicSR keys
  (`RRDB_trunk.N.RDB1.conv1`, `trunk_conv`, `upconv1`, `HRconv`) and the original ESRGAN keys
  (`model.0`, `model.1.sub.N.RDB1.conv1.0`, `model.1.sub.<blocks>`, `model.3/6/8/10`), both renamed
  to BasicSR's on import; scale x4/x2/x1 from conv_first's input channels (pixel-unshuffle:
  x2 has 4x, x1 16x the output channels, as spandrel reads it).
- SwinIR (classical 'pixelshuffle', lightweight 'pixelshuffledirect', real-SR 'nearest+conv';
  '1conv' / '3conv'): depths, heads, window, embed dim, mlp ratio, and img_size from attn_mask.
- SRVGGNetCompact (`body.N` only): feat, convs, scale from the last conv; PReLU when the slopes
  are stored (a ReLU and a LeakyReLU file look identical: that is ambiguous).
- MSRResNet (`body.N.conv1`, `upconv1`): feat, blocks, scale.
- SPSRNet (`b_fea_conv.0`, `model.1.sub.N.RDB1...`; checked before the old ESRGAN renaming, whose
  keys its trunk shares): nf, nb, gc, scale 2**(upsampling convs) (a x3 file looks like x2).
- SRResNet, RankSRGAN's (`recon_trunk.N.conv1`, `LRconv`): nf, blocks, scale.
- ELAN, the SSL paper's BasicSR port (`head.0`, `body.N.modules_lfe.lfe_J...`): c_elan, blocks,
  n_share, r_expand, colors, scale; the window sizes, img_range and rgb_mean are not in the file
  (ELAN's 4/8/16, 255 and DIV2K mean are assumed). The official repository's BatchNorm variant is
  refused with one line.

`family(sd)` recognises the networks that are not SR generators (ResShift's denoiser and
autoencoder, RankSRGAN's ranker) so that a file given in the wrong place fails with one line
saying what it holds.
"""

from __future__ import annotations

import math
import re

import numpy as np

from sslsr.errors import UserError
from sslsr.models import registry

KNOWN = "RRDBNet (new or old ESRGAN keys), SwinIR, SRVGGNetCompact, MSRResNet, SPSRNet, SRResNet (RankSRGAN) or ELAN"

_OLD_ESRGAN_TAIL = {"model.3": "conv_up1", "model.6": "conv_up2", "model.8": "conv_hr", "model.10": "conv_last"}
_OLD_BASICSR = {"trunk_conv": "conv_body", "upconv1": "conv_up1", "upconv2": "conv_up2", "HRconv": "conv_hr"}


# Keys only these networks have (registry name -> keys that must all be present).
_FAMILIES = {
    "ResShiftUNet": ("time_embed.0.weight", "input_blocks.0.0.weight", "middle_block.0.in_layers.0.weight"),
    "VQAutoencoder": ("quantize.embedding.weight", "encoder.conv_in.weight", "decoder.conv_in.weight"),
    # Ranker_VGG12_296: the discriminators' trunk, but conv4_1 has a bias and the head is `classifier`.
    "RankerVGG12": ("conv0_0.weight", "conv4_1.bias", "classifier.0.weight", "classifier.2.weight"),
}


def family(sd) -> str | None:
    """The registry name of the non-generator network whose keys `sd` holds, else None."""
    return next((name for name, keys in _FAMILIES.items() if all(k in sd for k in keys)), None)


def holds_other(sd, arch: str | None, where: str) -> str | None:
    """'<where> holds a <name> (<role>) state dict, not a <arch>' when `sd` is a network of
    `family` other than `arch` (None: not an SR generator); None otherwise."""
    name = family(sd)
    if name is None or name == arch:
        return None
    expected = arch if arch is not None else "super-resolution generator"
    return f"{where} holds a {name} ({registry.architecture(name).role}) state dict, not a {expected}"


def _fail(where: str, sd: dict, problem: str) -> UserError:
    sample = ", ".join(list(sd)[:3])
    return UserError(f"{where}: {problem} (found {len(sd)} keys: {sample}, ...); expected {KNOWN} weights")


def _indices(sd: dict, pattern: str) -> list[int]:
    """Sorted distinct integers N of the keys matching `pattern` (a regex with one group)."""
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in sd if (m := rx.match(k))})


def _rename_old_esrgan(sd: dict) -> dict:
    """Original ESRGAN (`model.N`) keys -> BasicSR's."""
    trunk = _indices(sd, r"model\.1\.sub\.(\d+)\.RDB1\.")
    num_block = len(trunk)
    out = {}
    for key, value in sd.items():
        new = key
        if m := re.match(r"model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.(weight|bias)$", key):
            new = f"body.{m[1]}.rdb{m[2]}.conv{m[3]}.{m[4]}"
        elif key.startswith(f"model.1.sub.{num_block}."):
            new = "conv_body." + key.rsplit(".", 1)[1]
        elif key.startswith("model.0."):
            new = "conv_first." + key.rsplit(".", 1)[1]
        else:
            head, _, leaf = key.rpartition(".")
            new = f"{_OLD_ESRGAN_TAIL[head]}.{leaf}" if head in _OLD_ESRGAN_TAIL else key
        out[new] = value
    return out


def _rename_old_basicsr(sd: dict) -> dict:
    out = {}
    for key, value in sd.items():
        new = re.sub(r"^RRDB_trunk\.(\d+)\.RDB(\d)\.", r"body.\1.rdb\2.", key)
        head, _, leaf = new.rpartition(".")
        out[f"{_OLD_BASICSR.get(head, head)}.{leaf}"] = value
    return out


def _rrdbnet(sd: dict, where: str):
    extra_up = [k for k in sd if re.match(r"(model\.(1[3-9]|[2-9]\d)|conv_up3)\.", k)]
    if extra_up:
        raise _fail(where, sd, f"RRDBNet with more than two upsampling convs ({extra_up[0]}: x8 or more)")
    first, last = sd["conv_first.weight"], sd["conv_last.weight"]
    ratio = first.shape[1] / last.shape[0]
    scale = {1: 4, 4: 2, 16: 1}.get(ratio)
    if scale is None:
        raise _fail(where, sd, f"RRDBNet conv_first takes {first.shape[1]} channels for {last.shape[0]} out")
    kwargs = {
        "num_in_ch": last.shape[0] if scale != 4 else first.shape[1],
        "num_out_ch": last.shape[0],
        "scale": scale,
        "num_feat": first.shape[0],
        "num_block": len(_indices(sd, r"body\.(\d+)\.rdb1\.")),
        "num_grow_ch": sd["body.0.rdb1.conv1.weight"].shape[0],
    }
    return kwargs


def _swinir(sd: dict, where: str):
    layers = _indices(sd, r"layers\.(\d+)\.residual_group\.")
    depths = tuple(len(_indices(sd, rf"layers\.{i}\.residual_group\.blocks\.(\d+)\.")) for i in layers)
    heads = tuple(
        sd[f"layers.{i}.residual_group.blocks.0.attn.relative_position_bias_table"].shape[1] for i in layers
    )
    table = sd["layers.0.residual_group.blocks.0.attn.relative_position_bias_table"].shape[0]
    window = (math.isqrt(table) + 1) // 2
    embed_dim = sd["conv_first.weight"].shape[0]
    in_chans = sd["conv_first.weight"].shape[1]
    mlp_ratio = sd["layers.0.residual_group.blocks.0.mlp.fc1.weight"].shape[0] / embed_dim
    resi = "1conv" if "conv_after_body.weight" in sd else "3conv"
    if "conv_up1.weight" in sd:
        upsampler, upscale = "nearest+conv", 2 ** len(_indices(sd, r"conv_up(\d+)\.weight"))
    elif "conv_before_upsample.0.weight" in sd and "upsample.0.weight" in sd:
        upsampler = "pixelshuffle"
        convs = _indices(sd, r"upsample\.(\d+)\.weight")
        factor = sd["upsample.0.weight"].shape[0] // sd["upsample.0.weight"].shape[1]
        upscale = 3 if factor == 9 else 2 ** len(convs)
    elif "upsample.0.weight" in sd:
        upsampler = "pixelshuffledirect"
        upscale = math.isqrt(sd["upsample.0.weight"].shape[0] // in_chans)
    else:
        raise _fail(where, sd, "SwinIR without an upsampler (denoising/JPEG models are not SR generators)")
    img_size = 64  # the official default; only the stored attn_mask depends on it
    for i, depth in enumerate(depths):
        if depth > 1 and (mask := sd.get(f"layers.{i}.residual_group.blocks.1.attn_mask")) is not None:
            img_size = math.isqrt(mask.shape[0]) * window
            break
    return {
        "upscale": upscale, "in_chans": in_chans, "img_size": img_size, "window_size": window,
        "depths": depths, "embed_dim": embed_dim, "num_heads": heads, "mlp_ratio": mlp_ratio,
        "upsampler": upsampler, "resi_connection": resi,
    }


def _srvgg(sd: dict, where: str):
    convs = [i for i in _indices(sd, r"body\.(\d+)\.weight") if sd[f"body.{i}.weight"].ndim == 4]
    if len(convs) < 3 or convs != list(range(0, 2 * len(convs), 2)):
        raise _fail(where, sd, "SRVGGNetCompact-like keys whose convs are not body.0, body.2, ...")
    prelu = "body.1.weight" in sd
    if not prelu:
        raise _fail(where, sd, "SRVGGNetCompact without PReLU slopes: ReLU or LeakyReLU is ambiguous "
                               "(pass --arch SRVGGNetCompact --arch_kwargs act_type=relu|leakyrelu)")
    first, last = sd["body.0.weight"], sd[f"body.{convs[-1]}.weight"]
    upscale = math.isqrt(last.shape[0] // first.shape[1])
    return {
        "num_in_ch": first.shape[1], "num_out_ch": first.shape[1], "num_feat": first.shape[0],
        "num_conv": len(convs) - 2, "upscale": upscale, "act_type": "prelu",
    }


def _shuffle_upscale(sd: dict) -> int:
    """x4 = two pixel-shuffle convs `upconv1`/`upconv2`; else upconv1's channels give r*r."""
    first, up1 = sd["conv_first.weight"], sd["upconv1.weight"]
    return 4 if "upconv2.weight" in sd else math.isqrt(up1.shape[0] // first.shape[0])


def _msrresnet(sd: dict, where: str):
    first = sd["conv_first.weight"]
    return {
        "num_in_ch": first.shape[1], "num_out_ch": sd["conv_last.weight"].shape[0], "num_feat": first.shape[0],
        "num_block": len(_indices(sd, r"body\.(\d+)\.conv1\.")), "upscale": _shuffle_upscale(sd),
    }


def _spsr(sd: dict, where: str):
    first = sd["model.0.weight"]
    n_up = len(_indices(sd, r"b_module\.(\d+)\.weight")) - 2  # b_HR_conv0, b_HR_conv1
    return {
        "in_nc": first.shape[1], "out_nc": sd["f_HR_conv1.0.weight"].shape[0], "nf": first.shape[0],
        "nb": len(_indices(sd, r"model\.1\.sub\.(\d+)\.RDB1\.")),
        "gc": sd["model.1.sub.0.RDB1.conv1.0.weight"].shape[0], "upscale": 2**n_up,
    }


def _srresnet(sd: dict, where: str):
    first = sd["conv_first.weight"]
    return {
        "in_nc": first.shape[1], "out_nc": sd["conv_last.weight"].shape[0], "nf": first.shape[0],
        "nb": len(_indices(sd, r"recon_trunk\.(\d+)\.conv1\.")), "upscale": _shuffle_upscale(sd),
    }


def _elan(sd: dict, where: str):
    head = sd["head.0.weight"]
    c_elan, colors = head.shape[0], head.shape[1]
    if "body.0.modules_gmsa.gmsa_0.project_inp.1.running_mean" in sd:
        raise _fail(where, sd, "the official ELAN's BatchNorm layout (only the BasicSR port is supported)")
    depth = len(_indices(sd, r"body\.0\.modules_lfe\.lfe_(\d+)\.conv0\."))
    expand = sd["body.0.modules_lfe.lfe_0.conv0.shift_conv.conv1x1.weight"].shape[0] // c_elan
    return {
        "colors": colors, "c_elan": c_elan, "n_share": depth - 1, "r_expand": expand,
        "m_elan": depth * len(_indices(sd, r"body\.(\d+)\.modules_lfe\.")),
        "scale": math.isqrt(sd["tail.0.weight"].shape[0] // colors),
    }


def normalize_keys(sd: dict) -> dict:
    """Old ESRGAN / old BasicSR RRDBNet keys renamed to BasicSR's; any other dict unchanged."""
    if "model.1.sub.0.RDB1.conv1.0.weight" in sd:
        return _rename_old_esrgan(sd)
    if "RRDB_trunk.0.RDB1.conv1.weight" in sd:
        return _rename_old_basicsr(sd)
    return sd


def identify(sd: dict[str, np.ndarray], where: str = "state dict"):
    """(architecture, kwargs, sd with BasicSR keys) of a PyTorch state dict.

    Raises:
      UserError: one line naming what was found and what was expected.
    """
    try:
        if "b_fea_conv.0.weight" in sd:  # before normalize_keys: SPSR's trunk has old ESRGAN keys
            return "SPSRNet", _spsr(sd, where), sd
    except (KeyError, IndexError, ValueError) as e:
        raise _fail(where, sd, f"incomplete SPSRNet weights ({type(e).__name__}: {e})") from None
    sd = normalize_keys(sd)
    if other := holds_other(sd, None, where):
        raise UserError(other)
    try:
        if "layers.0.residual_group.blocks.0.attn.qkv.weight" in sd:
            return "SwinIR", _swinir(sd, where), sd
        if "body.0.rdb1.conv1.weight" in sd:
            return "RRDBNet", _rrdbnet(sd, where), sd
        if "body.0.conv1.weight" in sd and "upconv1.weight" in sd:
            return "MSRResNet", _msrresnet(sd, where), sd
        if "recon_trunk.0.conv1.weight" in sd and "LRconv.weight" in sd:
            return "SRResNet", _srresnet(sd, where), sd
        if "head.0.weight" in sd and "body.0.modules_lfe.lfe_0.conv0.shift_conv.conv1x1.weight" in sd:
            return "ELAN", _elan(sd, where), sd
        if sd and all(k.startswith("body.") for k in sd) and "body.0.weight" in sd:
            return "SRVGGNetCompact", _srvgg(sd, where), sd
    except (KeyError, IndexError, ValueError, ZeroDivisionError) as e:
        raise _fail(where, sd, f"incomplete weights ({type(e).__name__}: {e})") from None
    raise _fail(where, sd, "no known architecture's keys")
