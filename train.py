"""Train a super-resolution model: `python train.py --config configs/esrgan_ssl.py:demo --workdir workdirs/demo`.

Any config field can be overridden, e.g. `--config.train.total_steps=1000`. Rerunning with the same
workdir resumes from its latest checkpoint. A bad config file, variant or field, unreadable
training data or a NaN loss ends with one line `error: ...` (exit status 2); `--debug` shows the
traceback. SIGTERM / SIGINT save a checkpoint and stop with exit status 128 + the signal (143 for
SIGTERM, 130 for Ctrl-C), so a scheduler can tell a stopped run from a finished one (exit 0).
See docs/reliability.md.
"""

import sys

from absl import app, flags
from ml_collections import config_flags

from sslsr import cli

_CONFIG = config_flags.DEFINE_config_file("config", None, "Training config file (configs/<name>.py[:variant]).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and TensorBoard files.")
flags.mark_flags_as_required(["config", "workdir"])


def _config():
    config = _CONFIG.value
    try:
        config.recipe  # noqa: B018 - config_flags defers a failed load to the first field access
    except OSError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        raise cli.UserError(f"--config: {'; '.join(lines[-2:])}") from e
    return config


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from sslsr.train import train_and_evaluate

    result = train_and_evaluate(_config(), _WORKDIR.value)
    if result.stopped_by is not None:
        sys.exit(128 + result.stopped_by)


if __name__ == "__main__":
    cli.run(main)
