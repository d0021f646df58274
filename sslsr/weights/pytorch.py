"""PyTorch <-> Flax NNX weight conversion for every network of `sslsr.models.registry`.

The NNX modules name their attributes exactly like the PyTorch modules, so the NNX state path
joined with '.' is the PyTorch key once the leaf is renamed and re-laid-out:

| NNX leaf | PyTorch leaf | layout |
|---|---|---|
| conv `kernel` (kh, kw, I, O) | `weight` (O, I, kh, kw) | transpose (3, 2, 0, 1) |
| linear `kernel` (I, O) | `weight` (O, I) | transpose |
| norm `scale` | `weight` | |
| BatchNorm `mean` / `var` | `running_mean` / `running_var` | |
| spectral norm `weight_orig` (HWIO) | `weight_orig` (OIHW) | transpose (3, 2, 0, 1) |
| anything else (`bias`, `weight_u`, `weight_v`, `num_batches_tracked`, bias tables) | same name | |

Originals whose nesting NNX names cannot spell (SPSRNet's `nn.Sequential` indices) map keys through
the registry row's `torch_key`; a module PyTorch registers twice (two keys, one tensor) is the
row's `torch_aliases` (checked equal on import, written twice on export). `from_torch(sd,
"RRDBNet")` also accepts the old RRDBNet key names of mmsr / BebyGAN (`RRDB_trunk.N.RDB1.conv1`,
`trunk_conv`, `upconv1`, `upconv2`, `HRconv`) and of the original ESRGAN (`model.1.sub.N...`),
renamed by `sslsr.weights.detect.normalize_keys`; exports always use BasicSR's names.

Buffers that PyTorch stores but the NNX modules recompute (the registry row's `torch_buffers`, e.g.
SwinIR's `relative_position_index` and `attn_mask`) are checked against the recomputed values on import (or accepted when absent) and
emitted on export. A BatchNorm `num_batches_tracked` that the NNX module does not keep is accepted
and ignored (PyTorch only reads it when momentum=None); modules that keep it round-trip it (int64).

Checkpoint wrappers: BasicSR saves `{'params': sd}` and, for GAN models, `{'params_ema': sd}`;
KAIR and the official SwinIR save the bare dict; `nn.DataParallel` prefixes keys with 'module.'.
Following BasicSR's `load_network`, `param_key='params'` is used when present, else 'params_ema'
(pass `param_key='params_ema'` to prefer the EMA weights when both are stored); taking another
key than the one asked for is not silent: one warning names the file and the key loaded. A file
that does not fit the model raises `sslsr.errors.InputError` (a ValueError) naming the file
(`sslsr.weights.read_state_dict` reports unreadable files).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sslsr import jax_private
from sslsr.errors import InputError
from sslsr.models import registry
from sslsr.weights import detect

ARCHS = registry.names()  # every registered architecture converts

_WRAPPER_KEYS = ("params", "params_ema", "state_dict", "model", "net", "network")
_LEAF_TO_TORCH = {"kernel": "weight", "scale": "weight", "mean": "running_mean", "var": "running_var"}
_TRANSPOSED = ("kernel", "weight_orig")


def _architecture(arch: str) -> registry.Architecture:
    """The registry row of `arch`; ValueError naming the convertible architectures otherwise."""
    if arch not in registry.ARCHITECTURES:
        raise ValueError(f"convert: unknown arch {arch!r}; expected one of {', '.join(registry.names())}")
    return registry.architecture(arch)


def _torch_key(path: tuple) -> str:
    *prefix, leaf = (str(p) for p in path)
    return ".".join([*prefix, _LEAF_TO_TORCH.get(leaf, leaf)])


def _to_torch_layout(leaf: str, x: np.ndarray) -> np.ndarray:
    if leaf in _TRANSPOSED:
        if x.ndim == 4:
            return np.ascontiguousarray(x.transpose(3, 2, 0, 1))
        if x.ndim == 2:
            return np.ascontiguousarray(x.T)
    return x


def from_torch_layout(leaf: str, x: np.ndarray) -> np.ndarray:
    """A PyTorch array -> the layout of the NNX leaf named `leaf` (inverse of `_to_torch_layout`)."""
    if leaf in _TRANSPOSED:
        if x.ndim == 4:
            return x.transpose(2, 3, 1, 0)
        if x.ndim == 2:
            return x.T
    return x


def _as_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch
        x = x.detach().cpu()
        if str(x.dtype) == "torch.bfloat16":
            x = x.float()
        return x.numpy()
    return np.asarray(x)


def _strip_wrapper_prefixes(key: str) -> str:
    """Drops DataParallel's 'module.' and torch.compile's '_orig_mod.' (in either nesting order)."""
    while key.startswith(("module.", "_orig_mod.")):
        key = key.removeprefix("module.").removeprefix("_orig_mod.")
    return key


def load_state_dict(source: Any, param_key: str | None = "params") -> dict[str, np.ndarray]:
    """A flat {PyTorch key: numpy array} from a mapping, a `.pth` or a `.safetensors` path.

    Unwraps BasicSR/KAIR wrappers ('params', 'params_ema', 'state_dict', ...; `param_key` first)
    and strips DataParallel's 'module.' and torch.compile's '_orig_mod.' prefixes.
    """
    where = "state dict"
    if isinstance(source, (str, os.PathLike)):
        path = where = os.fspath(source)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"convert: checkpoint {path!r} does not exist")
        if path.endswith(".safetensors"):
            from safetensors.numpy import load_file

            source = load_file(path)
        else:
            try:
                import torch
            except ImportError as e:  # pragma: no cover - depends on the install
                raise ImportError(
                    f"convert: reading {path!r} needs the `torch` extra (pip install sslsr[torch])"
                ) from e
            source = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(source, Mapping):
        raise TypeError(f"convert: expected a state-dict mapping or a checkpoint path, got {type(source).__name__}")
    order = ([param_key] if param_key else []) + [k for k in _WRAPPER_KEYS if k != param_key]
    taken = []
    for _ in range(3):  # wrappers can nest, e.g. {'state_dict': {'params': ...}}
        key = next((k for k in order if isinstance(source.get(k), Mapping)), None)
        if key is None:
            break
        taken.append(key)
        source = source[key]
    ema_keys = ("params", "params_ema")  # BasicSR's two generators: say which one was taken
    if param_key in ema_keys and param_key not in taken and any(k in ema_keys for k in taken):
        warnings.warn(f"{where}: has no {param_key!r} weights; loaded {'/'.join(taken)!r}", stacklevel=2)
    out = {}
    for key, value in source.items():
        if not isinstance(key, str):
            raise TypeError(f"convert: state-dict key {key!r} is not a string")
        out[_strip_wrapper_prefixes(key)] = _as_numpy(value)
    return out


def _torch_targets(module: nnx.Module, spec: registry.Architecture) -> dict[str, tuple[str, nnx.Variable]]:
    """`torch_variables` under the original's key names (the registry row's `torch_key`)."""
    targets = torch_variables(module)
    if spec.torch_key is None:
        return targets
    return {spec.torch_key(module, key): target for key, target in targets.items()}


def torch_variables(module: nnx.Module) -> dict[str, tuple[str, nnx.Variable]]:
    """{torch key: (NNX leaf name, variable)} for every non-RNG variable of `module`."""
    out = {}
    for path, var in nnx.to_flat_state(nnx.state(module)):
        if isinstance(var, nnx.RngState):
            continue
        out[_torch_key(path)] = (str(path[-1]), var)
    return out


def _fill_rng_state(module: nnx.Module, seed: int) -> None:
    """Concrete RNG keys/counts for an abstract (eval_shape) module, e.g. dropout streams."""
    key = jax.random.key(seed)
    for i, (_, var) in enumerate(nnx.to_flat_state(nnx.state(module))):
        if isinstance(var, nnx.RngKey):
            var.set_value(jax.random.fold_in(key, i))
        elif isinstance(var, nnx.RngCount):
            abstract = var.get_value()
            var.set_value(jnp.zeros(abstract.shape, abstract.dtype))


def abstract_model(arch: str, *, seed: int = 0, **arch_kwargs) -> nnx.Module:
    """`arch` built with `nnx.eval_shape`: the structure with ShapeDtypeStruct leaves, no init."""
    spec = _architecture(arch)
    with jax_private.cheap_tracer_errors():
        return nnx.eval_shape(lambda: spec.build(rngs=nnx.Rngs(seed), **arch_kwargs))


def from_torch(
    state_dict: Any,
    arch: str,
    *,
    param_key: str | None = "params",
    seed: int = 0,
    **arch_kwargs,
) -> nnx.Module:
    """Builds `arch` (constructor kwargs `arch_kwargs`) holding the given PyTorch weights.

    Args:
      state_dict: {PyTorch key: array (numpy or torch)} or a `.pth` / `.safetensors` path.
      arch: a name of `sslsr.models.registry` (`ARCHS`).
      param_key: preferred wrapper key (BasicSR's 'params' / 'params_ema').
      seed: seeds RNG streams the module may own (never the weights).
      **arch_kwargs: constructor arguments, e.g. `num_block=23` for RRDBNet.

    Raises ValueError listing every missing key, unexpected key, shape mismatch and buffer that
    disagrees with the one recomputed from `arch_kwargs`.
    """
    spec = _architecture(arch)
    sd = load_state_dict(state_dict, param_key)
    if arch == "RRDBNet":  # BebyGAN / mmsr / original ESRGAN files spell RRDBNet's keys the old way
        sd = detect.normalize_keys(sd)
    module = abstract_model(arch, seed=seed, **arch_kwargs)
    targets = _torch_targets(module, spec)
    buffers = spec.torch_buffers(module) if spec.torch_buffers else {}
    aliases = spec.torch_aliases(module) if spec.torch_aliases else {}

    missing, unexpected, bad_shape, bad_buffer = [], [], [], []
    for key, (leaf, var) in targets.items():
        if key not in sd:
            missing.append(key)
            continue
        abstract = var.get_value()
        value = from_torch_layout(leaf, sd[key])
        if value.shape != tuple(abstract.shape):
            torch_shape = tuple(_to_torch_layout(leaf, np.empty(abstract.shape, np.int8)).shape)
            bad_shape.append(f"{key}: checkpoint {tuple(sd[key].shape)} vs model {torch_shape}")
            continue
        var.set_value(jnp.asarray(value, dtype=abstract.dtype))
    for key, value in sd.items():
        if key in targets:
            continue
        if key in aliases:
            original = sd.get(aliases[key])
            if original is not None and not np.array_equal(value, original):
                bad_buffer.append(f"{key}: differs from {aliases[key]}, the same PyTorch module")
        elif key in buffers:
            expected = buffers[key]
            if value.shape != expected.shape or not np.allclose(value, expected):
                bad_buffer.append(f"{key}: {tuple(value.shape)} differs from the recomputed {expected.shape}")
        elif key.endswith(".num_batches_tracked"):
            pass  # BatchNorm counter, only used by PyTorch when momentum=None
        elif spec.torch_ignore is None or not spec.torch_ignore(key):
            unexpected.append(key)
    problems = [
        (f"missing keys ({len(missing)})", missing),
        (f"unexpected keys ({len(unexpected)})", unexpected),
        (f"shape mismatches ({len(bad_shape)})", bad_shape),
        (f"buffers that do not match arch_kwargs ({len(bad_buffer)})", bad_buffer),
    ]
    if any(items for _, items in problems):
        name = os.fspath(state_dict) if isinstance(state_dict, (str, os.PathLike)) else "state dict"
        if other := detect.holds_other(sd, arch, name):  # e.g. a denoiser file given as autoencoder
            raise InputError(other)
        where = f"{os.fspath(state_dict)}: " if isinstance(state_dict, (str, os.PathLike)) else ""
        lines = [f"{where}convert.from_torch({arch}, {arch_kwargs}): checkpoint does not fit the model"]
        for title, items in problems:
            if items:
                lines.append(f"  {title}: " + ", ".join(items))
        raise InputError("\n".join(lines))
    _fill_rng_state(module, seed)
    return module


def to_torch_state_dict(module: nnx.Module, arch: str) -> dict[str, np.ndarray]:
    """{PyTorch key: numpy array} loadable by the PyTorch original of `arch` (strict=True)."""
    spec = _architecture(arch)
    out = {}
    for key, (leaf, var) in _torch_targets(module, spec).items():
        value = np.array(var.get_value())  # a writable copy (torch.from_numpy warns on read-only)
        if key.endswith("num_batches_tracked"):
            value = value.astype(np.int64)
        out[key] = _to_torch_layout(leaf, value)
    if spec.torch_buffers:
        out.update(spec.torch_buffers(module))
    if spec.torch_aliases:
        out.update({alias: out[key].copy() for alias, key in spec.torch_aliases(module).items()})
    return out
