"""Shared pytest setup: persistent XLA compilation cache, real photos, optional shared data."""

import os
import pathlib

import jax
import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]

# One compilation cache for the whole session (and across sessions on the same machine):
# the suite compiles many small jitted functions with repeated shapes.
jax.config.update(
    "jax_compilation_cache_dir", os.environ.get("JAX_COMPILATION_CACHE_DIR", str(REPO / ".jax_cache"))
)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def shared_data_dir() -> pathlib.Path | None:
    """`../shared/data` beside the checkout (or $SSLSR_SHARED_DATA), None when absent."""
    candidate = pathlib.Path(os.environ.get("SSLSR_SHARED_DATA", REPO.parent / "shared" / "data"))
    return candidate if candidate.is_dir() else None


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    path = shared_data_dir()
    if path is None:
        pytest.skip("../shared/data is absent")
    return path


@pytest.fixture(scope="session")
def photos() -> dict[str, np.ndarray]:
    """Real RGB photographs bundled inside the scikit-image wheel (no download)."""
    from skimage import data

    return {
        "astronaut": data.astronaut(),
        "chelsea": data.chelsea(),
        "coffee": data.coffee(),
        "rocket": data.rocket(),
    }


def run_cli(main, prog: str, *args) -> None:
    """Runs an absl CLI's `main` in-process with `args` parsed as its flags (then unparsed, so the
    next call starts from the defaults)."""
    from absl import flags

    argv = flags.FLAGS([prog, *map(str, args)])
    try:
        main(argv)
    finally:
        flags.FLAGS.unparse_flags()
