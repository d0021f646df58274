"""Which benchmark datasets an evaluation runs on: the built-in demo photos or BasicSR folders."""

from __future__ import annotations

import os
import pathlib
from typing import NamedTuple


class DatasetSource(NamedTuple):
    name: str  # the name in the reports
    root: str | pathlib.Path  # what `sslsr.data.datasets.iterate_eval_pairs` reads
    count: int  # number of images (for the progress bar)


def dataset_source(name: str, data_root: str | os.PathLike | None) -> DatasetSource:
    """Resolves a dataset name: 'demo', or the folder `<data_root>/<name>` holding HR/.

    Raises:
      FileNotFoundError: no HR/ folder there (so a typo fails before any image is processed).
      ValueError: HR/ holds no image.
    """
    if name == "demo":
        from sslsr.data.builtin import VAL_NAMES

        return DatasetSource("demo", "demo", len(VAL_NAMES))
    root = pathlib.Path(data_root) / name if data_root is not None else pathlib.Path(name)
    if not (root / "HR").is_dir():
        where = f"under --data_root {data_root}" if data_root is not None else "(give --data_root)"
        raise FileNotFoundError(f"dataset {name!r}: {root}/HR not found {where}")
    from sslsr.data.io import list_images

    return DatasetSource(root.name, root, len(list_images(root / "HR")))
