"""Training: a generic loop (`loop`) hosting training recipes (`recipes`, the GAN recipe first).

Public API:
- `train_and_evaluate(config, workdir)`: run or resume a training run (see `configs/`).
- `restore_generator(workdir_or_checkpoint)`: the (EMA, when kept) generator of a workdir
  (`sslsr.weights.checkpoints.restore_generator`).
- `ConfigError`, `NonFiniteLossError`.
"""

from sslsr.train.config import ConfigError
from sslsr.train.loop import NonFiniteLossError, train_and_evaluate
from sslsr.weights.checkpoints import restore_generator

__all__ = ["ConfigError", "NonFiniteLossError", "restore_generator", "train_and_evaluate"]
