"""Train a super-resolution model: `python train.py --config configs/esrgan_ssl.py:demo --workdir workdirs/demo`.

Any config field can be overridden, e.g. `--config.train.total_steps=1000`. Rerunning with the same
workdir resumes from its latest checkpoint. A bad config field or a NaN loss ends with one line
`error: ...` (exit status 2); `--debug` shows the traceback.
"""

from absl import app, flags, logging
from ml_collections import config_flags

from sslsr import cli

_CONFIG = config_flags.DEFINE_config_file("config", None, "Training config file (configs/<name>.py[:variant]).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and TensorBoard files.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)  # orbax logs every file it writes at INFO
    from sslsr.train import train_and_evaluate

    train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    cli.run(main)
