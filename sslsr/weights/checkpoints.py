"""Checkpoints of a training workdir (orbax), generator restore and `init_from`.

Layout: `<workdir>/config.json` (the run's config) and `<workdir>/checkpoints/<step>/` with one
orbax item per part of the `TrainState` ('g', 'opt_g', 'd', 'opt_d', 'ema', 'opt_pre'), the grain
iterator state ('data', one JSON file per process) and 'meta' (step). Items are flat
{'path.to.leaf': array} dicts so that a generator can be restored from 'ema' or 'g' alone.

Orbax writes each step to a temporary directory and renames it when complete, and older steps are
deleted only after a newer one is finalized, so an interrupted save never destroys the last good
checkpoint; the trainer never saves non-finite parameters. A step that does not restore (a
truncated or corrupt file) is skipped with one warning naming it, and the newest step that does
restore is used (`Checkpointer.restore_latest`, `restore_generator`); the trainer moves such a step
to `<workdir>/checkpoints_broken/<step>` (kept, not deleted), so it neither blocks the new save of
that step nor counts against `keep` (which would delete a good older step to make room for it).
When no step restores (typically: the config changed), nothing is moved and the error names the
workdir. `config.json` is written atomically (temporary name, then rename).
"""

from __future__ import annotations

import json
import os
import pathlib
import warnings

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from sslsr.errors import UserError
from sslsr.files import write_text
from sslsr.models import registry

CONFIG_FILE = "config.json"
CKPT_DIR = "checkpoints"
BROKEN_DIR = "checkpoints_broken"


def flatten(state) -> dict[str, jax.Array]:
    """nnx.State -> {'a.b.0.kernel': array} (names from the pytree paths)."""
    leaves, _ = jax.tree_util.tree_flatten_with_path(state)
    return {_name(path): leaf for path, leaf in leaves}


def _name(path) -> str:
    parts = []
    for k in path:
        for attr in ("key", "name", "idx"):
            if hasattr(k, attr):
                parts.append(str(getattr(k, attr)))
                break
        else:
            parts.append(str(k))
    return ".".join(parts)


def unflatten_into(template, flat: dict):
    """Inverse of `flatten`: `template`'s structure (e.g. a freshly built state) with `flat`'s arrays."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    names = [_name(path) for path, _ in leaves]
    missing = [n for n in names if n not in flat]
    if missing:
        raise KeyError(f"checkpoint lacks {len(missing)} of {len(names)} entries, e.g. {missing[:3]}")
    return jax.tree_util.tree_unflatten(treedef, [flat[n] for n in names])


def save_config(workdir: str, config: ml_collections.ConfigDict) -> None:
    """Writes `<workdir>/config.json` whole or not at all (a full disk leaves the old one)."""
    os.makedirs(workdir, exist_ok=True)
    if jax.process_index() == 0:
        write_text(pathlib.Path(workdir) / CONFIG_FILE, config.to_json_best_effort(indent=2))


def load_config(workdir: str) -> ml_collections.ConfigDict:
    path = pathlib.Path(workdir) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not a training workdir (no {CONFIG_FILE})")
    try:
        return ml_collections.ConfigDict(json.loads(path.read_text()))
    except (ValueError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not a readable run config ({type(e).__name__}: {e})") from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:300] if text else ''}"


def _newest_restorable(directory: pathlib.Path, steps, restore):
    """Tries `restore(step)` from the newest step down; returns (step, result, [broken newer steps]).

    One warning per step that failed while an older one restored. When none restores (a config
    that no longer fits, rather than a damaged file), raises UserError naming the folder and the
    newest step's problem, and nothing is reported as broken.
    """
    failures = []
    for step in sorted(steps, reverse=True):
        try:
            result = restore(step)
        except Exception as e:  # noqa: BLE001 - any damage (TensorStore, JSON, grain) is a failed step
            failures.append((step, e))
            continue
        for bad, e in failures:
            warnings.warn(f"{directory / str(bad)}: checkpoint does not restore ({_first_line(e)}); "
                          f"using step {step}", stacklevel=3)
        return step, result, [bad for bad, _ in failures]
    if len(failures) == 1:
        step, e = failures[0]
        raise UserError(f"{directory / str(step)}: checkpoint does not restore ({_first_line(e)})") from e
    if failures:
        step, e = failures[0]
        raise UserError(f"{directory}: no checkpoint restores into this model (step {step}: {_first_line(e)}); "
                        f"does the config still match the saved run's?") from e
    raise FileNotFoundError(f"{directory}: no checkpoint saved yet")


class Checkpointer:
    """orbax CheckpointManager over `<workdir>/checkpoints` keeping the last `keep` steps."""

    def __init__(self, workdir: str, keep: int = 3):
        self.directory = pathlib.Path(workdir).absolute() / CKPT_DIR
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=False),
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def restore_latest(self, state: nnx.State, data_iter=None, sharding=None) -> tuple[int | None, nnx.State]:
        """(step, restored state) of the newest checkpoint that restores, or (None, state) when
        none was saved. Newer steps that do not restore are warned about and moved to
        `<workdir>/checkpoints_broken/` (process 0); UserError when no step restores."""
        steps = self.manager.all_steps()
        if not steps:
            return None, state
        step, out, broken = _newest_restorable(
            self.directory, steps, lambda s: self.restore(s, state, data_iter, sharding))
        if broken:
            if jax.process_index() == 0:
                aside = self.directory.parent / BROKEN_DIR
                aside.mkdir(exist_ok=True)
                for bad in broken:
                    os.replace(self.directory / str(bad), aside / f"{bad}.{os.getpid()}")
            self.manager.reload()
        return step, out

    def save(self, step: int, state: nnx.State, data_iter=None) -> None:
        import grain

        items = {name: ocp.args.StandardSave(flatten(part)) for name, part in _parts(state).items()}
        if data_iter is not None:
            items["data"] = grain.checkpoint.CheckpointSave(data_iter)
        items["meta"] = ocp.args.JsonSave({"step": int(step)})
        self.manager.save(step, args=ocp.args.Composite(**items), force=True)
        self.manager.wait_until_finished()

    def restore(self, step: int, state: nnx.State, data_iter=None, sharding=None) -> nnx.State:
        """Restores every part of `state` (the template gives structure, dtypes, shardings) and the
        data iterator in place. Returns the restored state."""
        import grain

        parts = _parts(state)
        items = {name: ocp.args.StandardRestore(_abstract(flatten(part), sharding)) for name, part in parts.items()}
        if data_iter is not None:
            items["data"] = grain.checkpoint.CheckpointRestore(data_iter)
        restored = self.manager.restore(step, args=ocp.args.Composite(**items))
        new = {name: unflatten_into(part, dict(restored[name])) for name, part in parts.items()}
        out = jax.tree.map(lambda x: x, state)
        for name, part in new.items():
            out[name] = part
        return out

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def _parts(state: nnx.State) -> dict:
    return {name: state[name] for name in state.keys()}


def _abstract(flat: dict, sharding) -> dict:
    def spec(x):
        sh = sharding if sharding is not None else getattr(x, "sharding", None)
        return jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=sh)

    return {k: spec(v) for k, v in flat.items()}


def build_generator(config: ml_collections.ConfigDict, seed: int = 0) -> nnx.Module:
    """The generator `config.generator` describes (arch + kwargs), freshly initialised."""
    return registry.build(config.generator.arch, rngs=nnx.Rngs(seed), **dict(config.generator.kwargs))


def resolve(path: str) -> tuple[pathlib.Path, int | None]:
    """workdir or `<workdir>/checkpoints[/<step>]` -> (workdir, step or None for the latest)."""
    p = pathlib.Path(path).expanduser().absolute()
    if (p / CONFIG_FILE).is_file():
        return p, None
    if p.name == CKPT_DIR and (p.parent / CONFIG_FILE).is_file():
        return p.parent, None
    if p.name.isdigit() and p.parent.name == CKPT_DIR and (p.parent.parent / CONFIG_FILE).is_file():
        return p.parent.parent, int(p.name)
    raise FileNotFoundError(f"{path}: neither a training workdir nor one of its checkpoint steps")


def restore_generator(workdir: str, *, prefer_ema: bool = True) -> nnx.Module:
    """The generator of a training workdir (or checkpoint step directory), in eval mode.

    Takes the EMA generator when the run kept one (and `prefer_ema`), else the trained G, from the
    latest checkpoint (or the given step directory).
    """
    root, _ = resolve(workdir)
    config = load_config(str(root))
    arch = registry.architecture(config.generator.arch)
    if arch.role != registry.GENERATOR:  # e.g. a trained ranker: its network does not upscale
        raise UserError(f"{workdir}: a {config.get('recipe')!r} run training a {arch.name} ({arch.role}), "
                        "not a super-resolution model")
    g = build_generator(config)
    return restore_part(workdir, g, lambda s: "ema" if prefer_ema and (root / CKPT_DIR / str(s) / "ema").exists() else "g")


def restore_part(workdir: str, module: nnx.Module, item) -> nnx.Module:
    """`module` (built to the run's config) filled from one checkpoint item of a workdir, in eval mode.

    item: the item name (e.g. 'mask', MetaF2N's MaskNet), or step -> item name. The latest step that
    restores is used, or the step directory given.
    """
    root, step = resolve(workdir)
    mngr = ocp.CheckpointManager(root / CKPT_DIR, options=ocp.CheckpointManagerOptions(create=False, read_only=True, save_interval_steps=0))
    template = nnx.state(module)
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    item_of = item if callable(item) else (lambda s: item)

    def restore(s: int):
        name = item_of(s)
        restored = mngr.restore(s, args=ocp.args.Composite(
            **{name: ocp.args.StandardRestore(_abstract(flatten(template), device))}))
        return unflatten_into(template, dict(restored[name]))

    try:
        if step is None:  # the latest step that restores (read only: nothing is moved)
            _, state, _ = _newest_restorable(root / CKPT_DIR, mngr.all_steps(), restore)
        else:  # the step asked for, or a one-line error
            if not (root / CKPT_DIR / str(step)).is_dir():
                raise FileNotFoundError(f"{root / CKPT_DIR / str(step)}: no such checkpoint step")
            _, state, _ = _newest_restorable(root / CKPT_DIR, [step], restore)
    finally:
        mngr.close()
    nnx.update(module, state)
    module.eval()
    return module
