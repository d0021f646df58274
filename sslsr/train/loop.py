"""The generic training loop: `train_and_evaluate(config, workdir)` runs the recipe `config.recipe`.

Per step: next batch (grain, sharded over processes) -> the jitted step of the stage that owns the
step. Values stay on the device between steps; they reach the host at log steps (metrics,
`<workdir>/metrics.jsonl`), checkpoint steps (the finite check before every save) and validation
steps. Every `log.ckpt_every` steps (and on SIGTERM/SIGINT, and at the end) a checkpoint with the
data-iterator state; every `log.val_every` steps `log.val_metrics` on the validation images,
LR | SR | HR grids in TensorBoard and the best checkpoint by `log.best_metric` in `<workdir>/best`
(`sslsr.train.validation`). A workdir that already holds checkpoints resumes from the latest
one; the result is the same as an uninterrupted run (same batches, same per-step randomness, same
optimizer/EMA state).
"""

from __future__ import annotations

import json
import math
import os
import signal
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from sslsr.errors import UserError
from sslsr.train import config as config_lib
from sslsr.train import recipes, sharding
from sslsr.train.recipe import Stage
from sslsr.train.validation import BestCheckpoint, Validator
from sslsr.weights import checkpoints as ckpt_lib

# Loss terms shown in the progress bar (when present).
_BAR_KEYS = ("l_pre_pix", "l_g_pix", "l_g_percep", "l_g_gan", "l_g_ssl", "l_d_real", "l_d_fake")
METRICS_FILE = "metrics.jsonl"


class NonFiniteLossError(UserError, FloatingPointError):
    """A loss became NaN/inf; the message names the step and the term."""


class TrainResult(dict):
    """The last metrics, and `stopped_by`: the signal (SIGTERM/SIGINT) that saved and stopped the
    run before train.total_steps, else None (train.py exits 128 + that signal)."""

    def __init__(self, metrics: dict, stopped_by: int | None = None):
        super().__init__(metrics)
        self.stopped_by = stopped_by


class _StopFlag:
    """SIGTERM/SIGINT set a flag; the loop saves a checkpoint and returns at the next step boundary."""

    def __init__(self):
        self.signum = None
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: no signal handling
                pass
        return self

    def _handle(self, signum, frame):
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: stop now
        self.signum = signum

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class _Logger:
    """On process 0: plain-text log (`log.txt`), TensorBoard (`tb/`), `metrics.jsonl` (one JSON
    object per log step and per validation, the file scripts read) and, with `log.wandb`, W&B."""

    def __init__(self, workdir: str, enabled: bool, config: ml_collections.ConfigDict):
        self.enabled = enabled
        self.tb = self.text = self.jsonl = self.wandb = None
        if enabled and config.log.wandb:
            from sslsr.train.wandb_writer import WandbWriter

            self.wandb = WandbWriter(workdir, config)
        if enabled:
            from tensorboardX import SummaryWriter

            self.tb = SummaryWriter(os.path.join(workdir, "tb"))
            self.text = open(os.path.join(workdir, "log.txt"), "a", buffering=1)
            self.jsonl = open(os.path.join(workdir, METRICS_FILE), "a", buffering=1)

    def line(self, msg: str, echo: bool = True) -> None:
        if echo and self.enabled:
            from tqdm import tqdm

            tqdm.write(msg)
        if self.text:
            self.text.write(time.strftime("%Y-%m-%d %H:%M:%S ") + msg + "\n")

    def record(self, step: int, values: dict, section: str) -> None:
        """TensorBoard scalars `<section>/<name>` and one metrics.jsonl object: {"step": step, name:
        value, ...} for 'train', {"step": step, "<section>_<name>": value, ...} otherwise."""
        if self.tb:
            for k, v in values.items():
                self.tb.add_scalar(f"{section}/{k}", float(v), step)
        if self.wandb:
            self.wandb.scalars(step, values, section)
        if self.jsonl:
            key = (lambda k: k) if section == "train" else (lambda k: f"{section}_{k}")
            self.jsonl.write(json.dumps({"step": step, **{key(k): float(v) for k, v in values.items()}}) + "\n")

    def image(self, step: int, tag: str, img: np.ndarray) -> None:
        if self.tb:
            self.tb.add_image(tag, img, step, dataformats="HWC")
        if self.wandb:
            self.wandb.image(step, tag, img)

    def close(self) -> None:
        for f in (self.tb, self.text, self.jsonl, self.wandb):
            if f:
                f.close()


@jax.jit
def _watch(first_bad, bad_metrics, metrics, step):
    """Keeps, on the device, the first step whose metrics were not all finite and those metrics."""
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(v)) for v in jax.tree.leaves(metrics)]))
    new = (first_bad < 0) & ~finite
    return (jnp.where(new, step, first_bad),
            jax.tree.map(lambda old, m: jnp.where(new, m, old), bad_metrics, metrics))


class _FiniteCheck:
    """NaN/inf watch without a per-step host sync: `check` (at log and checkpoint steps, before
    every save) raises for the first non-finite step since the last check."""

    def __init__(self, workdir: str, last_saved: int | None):
        self.workdir, self.last_saved = workdir, last_saved
        self._first_bad = self._bad = None

    def update(self, step: int, metrics: dict) -> None:
        if self._bad is None or jax.tree.structure(self._bad) != jax.tree.structure(metrics):
            self.check()  # a new stage: its metrics have other names
            self._first_bad, self._bad = jnp.int32(-1), metrics
        self._first_bad, self._bad = _watch(self._first_bad, self._bad, metrics, jnp.int32(step))

    def check(self) -> None:
        if self._bad is None or int(self._first_bad) < 0:
            return
        step = int(self._first_bad)
        metrics = {k: float(v) for k, v in jax.device_get(self._bad).items()}
        bad = [k for k, v in metrics.items() if not math.isfinite(v)]
        kept = (f"the last good checkpoint (step {self.last_saved}) in {self.workdir}/checkpoints is kept"
                if self.last_saved is not None else "no checkpoint had been saved yet")
        raise NonFiniteLossError(
            f"non-finite loss at step {step}: " + ", ".join(f"{k}={metrics[k]}" for k in bad)
            + f"; stopped without saving, {kept}")


def _train_loader(config, options: dict, per_process_batch: int):
    from sslsr.data import pipeline

    d = config.data
    source = {}
    if d.train == "demo":
        from sslsr.data.builtin import demo_images

        source["images"] = demo_images("train")
    else:
        source["hr_dir"] = d.train
        source["lr_dir"] = d.train_lr or None
        source["mask_dir"] = (d.mask_dir or None) if options.get("use_mask") else None
    return pipeline.make_train_loader(
        **source, **options, scale=config_lib.scale(config), patch_size=d.hr_patch, batch_size=per_process_batch,
        degradation=d.degradation, edge_threshold=d.edge_threshold, seed=config.seed, num_workers=d.num_workers,
        verify_images=True, skip_bad=d.skip_bad)


def _stage_of(stages, step: int) -> Stage:
    for stage in stages:
        if stage.start <= step < stage.end:
            return stage
    raise ValueError(f"no stage covers step {step}")


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> TrainResult:
    """Trains (or resumes) the run described by `config` in `workdir`; returns the last metrics.

    `config.json` is written only once the latest restorable checkpoint is restored, so a resume
    that fails (a changed architecture) leaves the workdir's config as it was.

    Raises ConfigError for invalid configs before anything is built or compiled, and
    NonFiniteLossError (naming step and term) when a loss becomes NaN/inf; a non-finite state is
    never saved.
    """
    sharding.maybe_initialize_distributed()
    config_lib.validate(config, num_devices=jax.device_count())
    if config.train.batch_size % jax.process_count():
        raise config_lib.error(
            "train.batch_size", f"{config.train.batch_size} is not divisible by {jax.process_count()} processes")
    workdir = os.path.abspath(os.path.expanduser(workdir))
    os.makedirs(workdir, exist_ok=True)
    primary = jax.process_index() == 0
    logger = _Logger(workdir, primary, config)
    t = config.train
    recipe = recipes.RECIPES[config.recipe]
    mesh = sharding.data_mesh()
    rep, data_sh = sharding.replicated(mesh), sharding.batch_sharded(mesh)

    setup = recipe.setup(config)
    sharding.barrier("sslsr_train_built")
    state = sharding.replicate(setup.state, mesh)
    constants = sharding.replicate(setup.constants, mesh)

    per_process_batch = t.batch_size // jax.process_count()
    # A recipe whose batches are not (LR, HR) patches (MetaF2N's tasks) builds its own stream.
    own_loader = getattr(recipe, "train_loader", None)
    loader = (own_loader(config, per_process_batch) if own_loader is not None
              else _train_loader(config, recipe.loader_options(config), per_process_batch))
    data_iter = iter(loader)
    checkpointer = ckpt_lib.Checkpointer(workdir, keep=config.log.keep)
    start, state = checkpointer.restore_latest(state, data_iter, sharding=rep)
    start = start or 0
    if start:
        logger.line(f"resumed from {workdir}/checkpoints/{start}")
    ckpt_lib.save_config(workdir, config)
    finite = _FiniteCheck(workdir, start or None)

    steps = {stage.name: jax.jit(stage.step, in_shardings=(rep, rep, data_sh, rep), out_shardings=(rep, rep),
                                 static_argnums=4, donate_argnums=0) for stage in setup.stages}
    validator = Validator(config, setup.upscaler) if primary and config.data.val else None
    best = BestCheckpoint(workdir, config) if config.data.val and config.log.best_metric else None

    from tqdm import tqdm

    bar = tqdm(total=t.total_steps, initial=start, disable=not primary, dynamic_ncols=True, unit="it")
    metrics: dict = {}
    window_start, window_steps = time.perf_counter(), 0
    stopped_by = None
    logger.line(f"training {config.generator.arch} ({config.recipe}) for {t.total_steps} steps (from step "
                f"{start}) on {jax.device_count()} devices / {jax.process_count()} processes, workdir {workdir}")
    try:
        with _StopFlag() as stop:
            for step in range(start, t.total_steps):
                stage = _stage_of(setup.stages, step)
                if step == stage.start and stage.begin is not None:
                    state = stage.begin(state)
                batch = sharding.global_batch(next(data_iter), mesh)
                state, m = steps[stage.name](state, constants, batch, jnp.int32(step), stage.static(step))
                finite.update(step + 1, m)
                done = step + 1
                window_steps += 1
                bar.update(1)
                stopping = stop.signum is not None
                if done % config.log.every == 0 or done == t.total_steps or stopping:
                    metrics = {k: float(v) for k, v in jax.device_get(m).items()}
                    finite.check()
                    rate = window_steps / max(time.perf_counter() - window_start, 1e-9)
                    window_start, window_steps = time.perf_counter(), 0
                    bar.set_postfix({k.removeprefix("l_"): f"{metrics[k]:.4g}" for k in _BAR_KEYS if k in metrics})
                    logger.record(done, {**metrics, "steps_per_s": rate}, "train")
                    logger.line(f"step {done} " + " ".join(f"{k}={v:.5g}" for k, v in sorted(metrics.items()))
                                + f" it/s={rate:.3g}", echo=False)
                if done % config.log.ckpt_every == 0 or done == t.total_steps or stopping:
                    finite.check()
                    checkpointer.save(done, state, data_iter)
                    finite.last_saved = done
                if (validator or best) and (done % config.log.val_every == 0 or done == t.total_steps):
                    scores, grids = validator(stage.eval_state(state)) if validator else ({}, [])
                    if scores:
                        logger.record(done, scores, "val")
                        logger.line(f"step {done} validation " + " ".join(f"{k}={v:.4f}" for k, v in scores.items()))
                        metrics.update({f"val_{k}": v for k, v in scores.items()})
                    for name, img in grids:
                        logger.image(done, f"val/{name}", img)
                    if best and best.update(done, scores, stage.eval_state(state)):
                        logger.line(f"step {done} best {best.metric} so far ({best.value:.4f}): kept in {best.root}")
                if stopping:
                    logger.line(f"signal {stop.signum}: saved step {done} and stopped; rerun to resume")
                    stopped_by = stop.signum if done < t.total_steps else None
                    break
    finally:
        bar.close()
        checkpointer.close()
        if best:
            best.close()
        logger.close()
    return TrainResult(metrics, stopped_by)
