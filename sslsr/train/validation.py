"""Validation during training: metrics of the recipe's inference model on the validation images,
and the best checkpoint by one of them.

`Validator`: PSNR/SSIM (Y channel) and LPIPS-Alex, all with crop_border = scale as in
`sslsr.evaluate`'s protocol. The SR forward runs on `log.val_tile` x `log.val_tile` LR tiles
(`sslsr.inference.super_resolve`), so every image, whatever its size, uses one compiled shape and
bounded memory; an image smaller than the tile in a dimension is reflected out to the tile and the
SR cropped back. LPIPS runs on the whole (cropped) image, jitted once: one compilation per distinct
validation image size, at most `data.val_max_images`, reused by every later validation.

`BestCheckpoint`: `<workdir>/best` is a workdir of its own (`config.json` +
`checkpoints/<step>/g`, one step kept) holding the network validation scored (the EMA generator
when the run keeps one) at the best `log.best_metric` so far, and `best.json` with the metric,
value and step. So `restore_generator('<workdir>/best')`, `sslsr.weights.load_generator`,
`eval.py --checkpoint <workdir>/best` and `upscale` open it like any workdir; the regular
checkpoints' keep-last-k never touches it.
"""

from __future__ import annotations

import json
import math
import os

import jax
import ml_collections
import numpy as np

from sslsr.files import write_text
from sslsr.train.config import error

METRICS = ("psnr", "ssim", "lpips")
LOWER_IS_BETTER = frozenset({"lpips"})
BEST_DIR = "best"
BEST_RECORD = "best.json"
TILE_OVERLAP = 32  # LR pixels shared by neighbouring validation tiles (super_resolve's default)


def validate_config(c: ml_collections.ConfigDict) -> None:
    """Raises ConfigError naming the `log.*` validation / writer field that is invalid."""
    metrics = tuple(c.log.val_metrics)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown or not metrics:
        raise error("log.val_metrics", f"must be a non-empty subset of {METRICS}, got {metrics}")
    if c.log.best_metric and c.log.best_metric not in metrics:
        raise error("log.best_metric", f"{c.log.best_metric!r} is not one of log.val_metrics={metrics} ('' keeps none)")
    if c.log.val_tile and c.log.val_tile <= 2 * TILE_OVERLAP:
        raise error("log.val_tile", f"must be 0 (whole images) or > {2 * TILE_OVERLAP} LR pixels, got {c.log.val_tile}")
    if c.log.wandb:
        import importlib.util

        if importlib.util.find_spec("wandb") is None:
            raise error("log.wandb", "needs the wandb package: pip install 'sslsr[wandb]'")


def _grid(lr: np.ndarray, sr: np.ndarray, hr: np.ndarray, scale: int) -> np.ndarray:
    """LR (nearest-upsampled) | SR | HR side by side, uint8 (H, 3W, 3)."""
    up = np.repeat(np.repeat(lr, scale, axis=0), scale, axis=1)[: hr.shape[0], : hr.shape[1]]
    return np.concatenate([up, sr, hr], axis=1)


class Validator:
    """`log.val_metrics` of the recipe's inference model on the first `data.val_max_images` pairs."""

    def __init__(self, config: ml_collections.ConfigDict, upscaler):
        from sslsr.data import datasets

        self.upscaler = upscaler
        self.scale = upscaler.scale
        self.pairs = []
        for i, pair in enumerate(datasets.iterate_eval_pairs(config.data.val, scale=self.scale)):
            if i >= config.data.val_max_images:
                break
            self.pairs.append(pair)
        self.num_images = config.log.images
        self.metrics = tuple(config.log.val_metrics)
        self.tile = int(config.log.val_tile) or None
        self._lpips = None
        if "lpips" in self.metrics and self.pairs:
            from flax import nnx

            from sslsr.metrics import load_lpips

            graphdef, self._lpips_state = nnx.split(load_lpips("alex", input_range="[0,1]"))
            self._lpips = jax.jit(lambda state, x, y: nnx.merge(graphdef, state)(x, y))

    def super_resolve(self, upscaler, lr: np.ndarray) -> np.ndarray:
        """uint8 SR of one LR image through tiles of one shape (the whole image when val_tile=0)."""
        from sslsr.inference import super_resolve, to_uint8

        if self.tile is None:
            return to_uint8(super_resolve(upscaler, lr))
        h, w = lr.shape[:2]
        pad = ((0, max(self.tile - h, 0)), (0, max(self.tile - w, 0)), (0, 0))
        padded = np.pad(lr, pad, mode="symmetric") if pad[0][1] or pad[1][1] else lr
        sr = super_resolve(upscaler, padded, tile=self.tile, tile_overlap=TILE_OVERLAP)
        return to_uint8(sr[: h * self.scale, : w * self.scale])

    def __call__(self, eval_state) -> tuple[dict, list]:
        from sslsr.metrics import psnr, ssim

        if not self.pairs:
            return {}, []
        # Replicated arrays -> this process's copy, so validation needs no collectives.
        upscaler = self.upscaler.with_state(jax.tree.map(lambda x: x.addressable_data(0), eval_state))
        values = {m: [] for m in self.metrics}
        grids = []
        c = self.scale
        for i, (name, lr, hr) in enumerate(self.pairs):
            sr = self.super_resolve(upscaler, lr)
            if "psnr" in values:
                values["psnr"].append(psnr(sr, hr, crop_border=c))
            if "ssim" in values:
                values["ssim"].append(ssim(sr, hr, crop_border=c))
            if "lpips" in values:
                x, y = (a[None, c:-c, c:-c].astype(np.float32) / 255.0 for a in (sr, hr))
                values["lpips"].append(float(np.mean(self._lpips(self._lpips_state, x, y))))
            if i < self.num_images:
                grids.append((name, _grid(lr, sr, hr, self.scale)))
        return {m: float(np.mean(v)) for m, v in values.items()}, grids


class BestCheckpoint:
    """Keeps `<workdir>/best` at the validation with the best `config.log.best_metric`.

    Every process calls `update` at every validation (the save is collective); process 0's scores
    decide. A resumed run reads the best value so far from `best.json`.
    """

    def __init__(self, workdir: str, config: ml_collections.ConfigDict):
        self.metric = config.log.best_metric
        self.config = config
        self.root = os.path.join(workdir, BEST_DIR)
        record = os.path.join(self.root, BEST_RECORD)
        self.value = None
        if os.path.isfile(record):
            with open(record) as f:
                saved = json.load(f)
            if saved.get("metric") == self.metric:
                self.value = float(saved["value"])
        self._checkpointer = None

    def better(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.value is None:
            return True
        return value < self.value if self.metric in LOWER_IS_BETTER else value > self.value

    def update(self, step: int, scores: dict, eval_state) -> bool:
        """Saves `eval_state` (the inference network's state) when `scores` beat the best so far."""
        from jax.experimental import multihost_utils

        from sslsr.weights import checkpoints as ckpt_lib

        value = float(multihost_utils.broadcast_one_to_all(np.float64(scores.get(self.metric, math.nan))))
        if not self.better(value):
            return False
        if self._checkpointer is None:
            ckpt_lib.save_config(self.root, self.config)
            self._checkpointer = ckpt_lib.Checkpointer(self.root, keep=1)
        manager = self._checkpointer.manager
        for old in manager.all_steps():
            if old >= step:  # a resumed run re-reaching a step saved before the interruption
                manager.delete(old)
        self._checkpointer.save(step, {"g": eval_state})
        if jax.process_index() == 0:
            write_text(os.path.join(self.root, BEST_RECORD),
                       json.dumps({"metric": self.metric, "value": value, "step": int(step)}))
        self.value = value
        return True

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.close()
