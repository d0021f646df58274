"""Writes a generator to the files other SR tools open: BasicSR `.pth` and flat `.safetensors`.

- `.pth`: `{'params_ema': sd}` (EMA weights) or `{'params': sd}`, official/BasicSR key names: what
  BasicSR's `load_network` reads, and what spandrel/chaiNNer unwrap.
- `.safetensors`: the same flat state dict (the format cannot nest) with our metadata: the
  architecture, its constructor kwargs (JSON), scale, training step and weights kind, so that
  `sslsr.weights.load_generator` rebuilds it exactly. Written with safetensors' NumPy API (no torch).

Every file is written to a temporary name in the target folder and renamed when complete, so a
failed export never leaves a partial file. Writers of formats another module owns (ONNX:
`sslsr.weights.onnx`) use `atomic_path` too.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib

import numpy as np

from sslsr import files
from sslsr.errors import UserError
from sslsr.models import registry
from sslsr.weights import Generator
from sslsr.weights.pytorch import to_torch_state_dict

FORMATS = {".pth": "pth", ".pt": "pth", ".safetensors": "safetensors", ".onnx": "onnx"}


def check_writable(path: str | os.PathLike) -> pathlib.Path:
    """`path` as a Path; UserError naming it when its folder is missing or read-only, or it is a folder."""
    path = pathlib.Path(path)
    if not path.parent.is_dir():
        raise UserError(f"{path}: the output folder {path.parent} does not exist")
    if not os.access(path.parent, os.W_OK):
        raise UserError(f"{path}: the output folder {path.parent} is not writable")
    if path.is_dir():
        raise UserError(f"{path}: is a folder, expected an output file name")
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yields a temporary path beside `path`; renamed to `path` when the block succeeds, removed
    otherwise. An unwritable folder is a UserError naming `path`."""
    path = check_writable(path)
    try:
        with files.atomic_path(path) as tmp:
            yield tmp
    except OSError as e:
        raise UserError(f"{path}: cannot write ({e.strerror or e})") from None


def param_key(gen: Generator) -> str:
    """BasicSR's wrapper key for the generator's weights kind."""
    return "params_ema" if gen.weights == "ema" else "params"


def check_portable(gen: Generator, target: str) -> None:
    """UserError when `target` cannot hold the generator (a network PyTorch's original lacks)."""
    if gen.arch == "SRVGGNetCompact" and gen.kwargs.get("net_scale", gen.kwargs.get("upscale")) != gen.kwargs.get(
        "upscale", 4
    ):
        raise UserError(
            f"{target}: this SRVGGNetCompact is the x{gen.kwargs['net_scale']} network followed by a bicubic "
            f"resize to x{gen.kwargs['upscale']}, which the PyTorch SRVGGNetCompact (and spandrel) cannot hold; "
            f"export the x{gen.kwargs['net_scale']} model and resize its output instead"
        )


def state_dict(gen: Generator) -> dict[str, np.ndarray]:
    """The official/BasicSR state dict of the generator."""
    return to_torch_state_dict(gen.model, gen.arch)


def metadata(gen: Generator) -> dict[str, str]:
    """Our safetensors header fields (all strings, as the format requires)."""
    scale = registry.architecture(gen.arch).scale(gen.kwargs)
    kwargs = {k: list(v) if isinstance(v, tuple) else v for k, v in gen.kwargs.items()}
    return {
        "format": "pt",  # the tensor layout is PyTorch's (read by safetensors.torch loaders)
        "architecture": gen.arch,
        "kwargs": json.dumps(kwargs, sort_keys=True),
        "scale": str(scale),
        "step": "" if gen.step is None else str(gen.step),
        "weights": gen.weights,
    }


def write(gen: Generator, path: str | os.PathLike, kind: str | None = None) -> pathlib.Path:
    """Writes `kind` ('pth' | 'safetensors'; default by the suffix of `path`). Returns the path."""
    path = pathlib.Path(path)
    kind = kind or FORMATS.get(path.suffix)
    if kind not in ("pth", "safetensors"):
        raise UserError(f"{path}: unsupported output type {path.suffix!r} (expected .pth or .safetensors)")
    check_portable(gen, str(path))
    sd = state_dict(gen)
    with atomic_path(path) as tmp:
        if kind == "safetensors":
            from safetensors.numpy import save_file

            save_file({k: np.ascontiguousarray(v) for k, v in sd.items()}, str(tmp), metadata=metadata(gen))
        else:
            try:
                import torch
            except ImportError:
                raise UserError(f"{path}: writing .pth needs the torch extra (or write .safetensors)") from None
            with open(tmp, "wb") as f:
                torch.save({param_key(gen): {k: torch.from_numpy(np.array(v)) for k, v in sd.items()}}, f)
    return path
