"""Training: the jitted GAN(+SSL) step, the loop, checkpoints and multi-device data parallelism.

Public API:
- `train_and_evaluate(config, workdir)`: run or resume a training run (see `configs/`).
- `restore_generator(workdir_or_checkpoint)`: the (EMA, when kept) generator of a workdir.
- `ConfigError`, `NonFiniteLossError`.
"""

from sslsr.train.checkpoint import restore_generator
from sslsr.train.config import ConfigError
from sslsr.train.trainer import NonFiniteLossError, train_and_evaluate

__all__ = ["ConfigError", "NonFiniteLossError", "restore_generator", "train_and_evaluate"]
