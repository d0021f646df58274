"""The optional Weights & Biases writer beside TensorBoard (`config.log.wandb`).

The run id is created once and kept in `<workdir>/wandb_run_id`, so a resumed run (same workdir)
logs into the same W&B run (`resume='allow'`). Files go under `<workdir>/wandb/`. Offline mode
(`WANDB_MODE=offline`) needs no network; `wandb sync <workdir>/wandb/offline-run-*` uploads later.
W&B drops values logged at a step below the run's last one, so after resuming from an older
checkpoint the repeated steps appear once (from the first attempt).
"""

from __future__ import annotations

import os
import secrets
import string

import ml_collections
import numpy as np

from sslsr.files import write_text

RUN_ID_FILE = "wandb_run_id"


def run_id(workdir: str) -> str:
    """The workdir's W&B run id, created (and written atomically) on first use."""
    path = os.path.join(workdir, RUN_ID_FILE)
    if os.path.isfile(path):
        with open(path) as f:
            return f.read().strip()
    # W&B's own id format (8 characters of [a-z0-9]); wandb has no public generator for it.
    new = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))
    write_text(path, new + "\n")
    return new


class WandbWriter:
    """Scalars `<section>/<name>` and images at the training step, like the TensorBoard writer."""

    def __init__(self, workdir: str, config: ml_collections.ConfigDict):
        import wandb

        self._wandb = wandb
        self.run = wandb.init(project=config.log.wandb_project, id=run_id(workdir), resume="allow", dir=workdir,
                              name=os.path.basename(os.path.normpath(workdir)), config=config.to_dict())

    def scalars(self, step: int, values: dict, section: str) -> None:
        self.run.log({f"{section}/{k}": float(v) for k, v in values.items()}, step=step)

    def image(self, step: int, tag: str, img: np.ndarray) -> None:
        self.run.log({tag: self._wandb.Image(img)}, step=step)

    def close(self) -> None:
        self.run.finish()
