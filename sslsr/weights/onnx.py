"""ONNX export of a generator, traced from our JAX module with jax2onnx.

Route: jax2onnx 0.17.1 on the NNX module itself (no PyTorch), NCHW float input and output in
[0, 1] like the PyTorch originals (`input` (N, C, H, W) -> `output` (N, C, sH, sW)), opset 23.
What it cannot do directly, and what is done instead:

- Dynamic height/width with RRDBNet x2/x1: the pixel-unshuffle is a reshape/transpose whose
  (H/s, s) split JAX's shape polymorphism cannot prove for a free symbolic H (and jax2onnx does
  not accept `2*h`-style input dims). An x2/x1 RRDBNet is exactly pixel-unshuffle followed by the
  x4 RRDBNet with 4x/16x input channels and the same parameters, so the export runs that x4 network
  behind the unshuffle written as a stride-s convolution with a one-hot kernel (exact: each output
  is one input value times 1).
- fp16: jax2onnx traced in float16 mixes float32 constants into float16 nodes (onnxruntime rejects
  the graph), so the float32 graph is converted afterwards: every float tensor, Cast target and
  graph input/output becomes float16 (onnxruntime inserts float32 casts around kernels its CPU
  provider lacks in float16).
- Dynamic sizes are refused where the network itself depends on the image size: SwinIR (the
  shifted-window attention mask is built for one size), MSRResNet (its bilinear skip and the
  x2/x3 realesr-animevideov3 bicubic resize are matrices of that size). Those export with a fixed
  `--size`.
"""

from __future__ import annotations

import logging
import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sslsr.errors import UserError
from sslsr.models import registry
from sslsr.weights import Generator
from sslsr.weights.save import atomic_path

OPSET = 23
_FIXED_SIZE_ONLY = {
    "SwinIR": "its shifted-window attention mask is built for one image size",
    "MSRResNet": "its bilinear skip connection is a matrix for one image size",
}


def _unshuffle_kernel(channels: int, s: int) -> np.ndarray:
    """HWIO one-hot kernel: a stride-s VALID conv with it is BasicSR's pixel_unshuffle (output
    channel c*s*s + i*s + j takes input pixel (i, j) of channel c in each s x s cell)."""
    k = np.zeros((s, s, channels, channels * s * s), np.float32)
    for c in range(channels):
        for i in range(s):
            for j in range(s):
                k[i, j, c, c * s * s + i * s + j] = 1.0
    return k


def _forward(gen: Generator):
    """NHWC float32 -> NHWC float32, written so that jax2onnx traces it with symbolic H and W."""
    model = gen.model
    if gen.arch == "RRDBNet" and gen.kwargs.get("scale", 4) != 4:
        s = {2: 2, 1: 4}[gen.kwargs["scale"]]
        channels = gen.kwargs.get("num_in_ch", 3)
        x4_kwargs = {**gen.kwargs, "scale": 4, "num_in_ch": channels * s * s}
        x4 = nnx.eval_shape(lambda: registry.build("RRDBNet", rngs=nnx.Rngs(0), **x4_kwargs))
        graphdef, _ = nnx.split(x4)
        net = nnx.merge(graphdef, nnx.state(model))  # same parameter names and shapes
        kernel = jnp.asarray(_unshuffle_kernel(channels, s))

        def forward(x):
            cells = jax.lax.conv_general_dilated(x, kernel.astype(x.dtype), (s, s), "VALID",
                                                 dimension_numbers=("NHWC", "HWIO", "NHWC"))
            return net(cells)

        return forward
    return model


def _check(gen: Generator, path: pathlib.Path, dynamic: bool) -> None:
    if not dynamic:
        return
    reason = _FIXED_SIZE_ONLY.get(gen.arch)
    if gen.arch == "SRVGGNetCompact" and gen.kwargs.get("net_scale", gen.kwargs.get("upscale")) != gen.kwargs.get(
            "upscale"):
        reason = "its bicubic output resize is a matrix for one image size"
    if reason:
        raise UserError(f"{path}: --dynamic is not possible for this {gen.arch}: {reason}; export a fixed --size")


def to_float16(model) -> None:
    """Converts a float32 ONNX graph to float16 in place (tensors, Cast targets, I/O types)."""
    from onnx import TensorProto, numpy_helper

    f32, f16 = TensorProto.FLOAT, TensorProto.FLOAT16

    def half(tensor):
        if tensor.data_type == f32:
            tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float16), tensor.name))

    graph = model.graph
    for init in graph.initializer:
        half(init)
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                half(attr.t)
            if node.op_type == "Cast" and attr.name == "to" and attr.i == f32:
                attr.i = f16
    for value in (*graph.input, *graph.output, *graph.value_info):
        if value.type.tensor_type.elem_type == f32:
            value.type.tensor_type.elem_type = f16


def write(gen: Generator, path: str | os.PathLike, *, dtype: str = "fp32", dynamic: bool = False,
          size: int = 64) -> pathlib.Path:
    """Writes the generator as ONNX (see the module docstring). Returns the path.

    Args:
      dtype: 'fp32' | 'fp16' (weights, input and output).
      dynamic: dynamic batch, height and width; else a (1, C, size, size) input.
      size: the fixed LR height and width (ignored when dynamic).
    """
    path = pathlib.Path(path)
    _check(gen, path, dynamic)
    try:
        import jax2onnx
        import onnx
    except ImportError as e:
        raise UserError(f"{path}: ONNX export needs jax2onnx and onnx (make install; {e})") from None
    channels = gen.kwargs.get("num_in_ch", gen.kwargs.get("in_chans", 3))
    spec = jax.export.symbolic_shape(f"B, H, W, {channels}") if dynamic else (1, size, size, channels)
    forward = _forward(gen)
    # jax2onnx logs a traceback for every optional example plugin whose library is absent.
    for name in ("jax2onnx", "onnx_ir"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        proto = jax2onnx.to_onnx(
            lambda x: forward(x), inputs=[jax.ShapeDtypeStruct(spec, jnp.float32)], opset=OPSET,
            model_name=gen.arch, inputs_as_nchw=[0], outputs_as_nchw=[0], input_names=["input"],
            output_names=["output"],
        )
    except Exception as e:  # noqa: BLE001 - jax2onnx raises many types for an unsupported graph
        raise UserError(f"{path}: jax2onnx cannot export this {gen.arch} ({type(e).__name__}: "
                        f"{str(e).splitlines()[0][:300]})") from None
    if dtype == "fp16":
        to_float16(proto)
    with atomic_path(path) as tmp:
        onnx.save(proto, str(tmp))
    return path
