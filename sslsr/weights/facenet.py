"""MTCNN's weights from the facenet-pytorch wheel, read without PyTorch and without importing it.

facenet-pytorch ships `facenet_pytorch/data/{pnet,rnet,onet}.pt` (2 MB): state dicts written by
`torch.save` in its legacy (pre-1.6, non-zip) format. The package pins torch<2.3, numpy<2 and
imports torchvision, so it is installed `--no-deps` (Makefile) and only its files are used: they
are found through the distribution's file list (`importlib.metadata`), not by importing it.

`read_torch_file` is a small torch-free reader for both `torch.save` formats:
- legacy: a pickled magic number, protocol version and system info, then the pickled object whose
  storages are persistent ids, then the pickled list of storage keys, then each storage as an
  int64 element count followed by its raw little-endian bytes;
- zip (torch >= 1.6): `<name>/data.pkl` plus one `<name>/data/<key>` entry per storage.
The unpickler is restricted: it can only build dicts (OrderedDict) and tensors (rebuilt as NumPy
arrays from their storage, offset, size and stride); anything else in the file is refused.
Missing and corrupt files raise `sslsr.errors.InputError` with one line naming the file.
"""

from __future__ import annotations

import collections
import importlib.metadata
import io
import os
import pathlib
import pickle
import struct
import zipfile
from typing import Any

import numpy as np
from flax import nnx

from sslsr.errors import InputError, UserError
from sslsr.weights import pytorch

DISTRIBUTION = "facenet-pytorch"
INSTALL = "pip install --no-deps facenet-pytorch==2.6.0"
NETWORKS = {"pnet": "MTCNN-PNet", "rnet": "MTCNN-RNet", "onet": "MTCNN-ONet"}  # file -> registry name

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


def weights_path(name: str) -> pathlib.Path:
    """`facenet_pytorch/data/<name>.pt` ('pnet', 'rnet' or 'onet') of the installed wheel."""
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        missing = f"MTCNN weights: the {DISTRIBUTION} wheel is not installed; `{INSTALL}` provides them"
        raise UserError(missing) from None
    wanted = f"facenet_pytorch/data/{name}.pt"
    for file in dist.files or ():
        if str(file).replace(os.sep, "/") == wanted:
            path = pathlib.Path(dist.locate_file(file))
            if path.is_file():
                return path
            break
    raise UserError(f"MTCNN weights: {wanted} is missing from the installed {DISTRIBUTION} ({INSTALL})")


class _Storage:
    def __init__(self, dtype, key: str, numel: int):
        self.dtype, self.key, self.numel = dtype, key, numel


class _Tensor:
    """A tensor whose storage bytes are read later (legacy files store them after the pickle)."""

    def __init__(self, storage: _Storage, offset: int, size: tuple, stride: tuple):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)


def _rebuild_tensor_v2(storage, offset, size, stride, *_ignored):
    return _Tensor(storage, offset, size, stride)


def _rebuild_parameter(data, *_ignored):
    return data


class _StorageType:
    def __init__(self, name: str):
        self.dtype = _STORAGE_DTYPES[name]


class _Unpickler(pickle.Unpickler):
    """Builds only OrderedDicts and (lazy) tensors; storages come from `persistent_load`."""

    _ALLOWED = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    }

    def __init__(self, file, storages: dict[str, _Storage]):
        super().__init__(file)
        self.storages = storages

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return self._ALLOWED[module, name]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name} (only state dicts of tensors are read)")

    def persistent_load(self, pid):
        # legacy: ('storage', type, key, location, numel, view_metadata); zip: the first five.
        if not (isinstance(pid, tuple) and pid[0] == "storage" and isinstance(pid[1], _StorageType)):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        key = str(pid[2])
        if key not in self.storages:
            self.storages[key] = _Storage(pid[1].dtype, key, int(pid[4]))
        return self.storages[key]


def _materialize(obj: Any, buffers: dict[str, np.ndarray]) -> Any:
    if isinstance(obj, _Tensor):
        buf = buffers[obj.storage.key]
        extent = obj.offset + sum((n - 1) * s for n, s in zip(obj.size, obj.stride)) + 1
        if any(n == 0 for n in obj.size):
            return np.zeros(obj.size, buf.dtype)
        if obj.offset < 0 or extent > buf.size:
            raise ValueError(f"a tensor of size {obj.size} runs past its storage of {buf.size} elements")
        view = np.lib.stride_tricks.as_strided(
            buf[obj.offset:], obj.size, [s * buf.itemsize for s in obj.stride], writeable=False)
        return np.array(view)
    if isinstance(obj, dict):
        return type(obj)((k, _materialize(v, buffers)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialize(v, buffers) for v in obj)
    return obj


def _read_legacy(f) -> Any:
    if pickle.load(f) != _LEGACY_MAGIC:
        raise ValueError("not a torch.save file (bad magic number)")
    pickle.load(f)  # protocol version
    pickle.load(f)  # system info (little-endian is checked per storage below)
    storages: dict[str, _Storage] = {}
    obj = _Unpickler(f, storages).load()
    buffers = {}
    for key in pickle.load(f):
        storage = storages[str(key)]
        (numel,) = struct.unpack("<q", f.read(8))
        dtype = np.dtype(storage.dtype).newbyteorder("<")
        data = f.read(numel * dtype.itemsize)
        if numel != storage.numel or len(data) != numel * dtype.itemsize:
            raise ValueError(f"storage {key} is truncated")
        buffers[storage.key] = np.frombuffer(data, dtype)
    return _materialize(obj, buffers)


def _read_zip(path: pathlib.Path) -> Any:
    with zipfile.ZipFile(path) as z:
        pkl = next((n for n in z.namelist() if n.endswith("/data.pkl") or n == "data.pkl"), None)
        if pkl is None:
            raise ValueError("zip file without data.pkl")
        prefix = pkl[: -len("data.pkl")]
        storages: dict[str, _Storage] = {}
        obj = _Unpickler(io.BytesIO(z.read(pkl)), storages).load()
        buffers = {}
        for key, storage in storages.items():
            data = z.read(f"{prefix}data/{key}")
            dtype = np.dtype(storage.dtype).newbyteorder("<")
            if len(data) < storage.numel * dtype.itemsize:
                raise ValueError(f"storage {key} is truncated")
            buffers[key] = np.frombuffer(data, dtype, count=storage.numel)
    return _materialize(obj, buffers)


def read_torch_file(path: str | os.PathLike) -> Any:
    """The object a `torch.save` file holds (dicts of tensors), tensors as NumPy arrays; no torch.

    Raises InputError (one line naming the file) for a missing, unreadable or corrupt file, or one
    holding anything but dicts of tensors.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such weight file")
    try:
        if zipfile.is_zipfile(path):
            return _read_zip(path)
        with open(path, "rb") as f:
            return _read_legacy(f)
    except (pickle.UnpicklingError, ValueError, EOFError, KeyError, struct.error, zipfile.BadZipFile,
            TypeError, IndexError, AttributeError) as e:
        raise InputError(f"{path}: not a readable torch.save state dict ({type(e).__name__}: {e})") from None


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A flat {key: array} state dict from a `torch.save` file (see `read_torch_file`)."""
    sd = read_torch_file(path)
    if not isinstance(sd, dict) or not all(isinstance(v, np.ndarray) for v in sd.values()):
        raise InputError(f"{path}: holds a {type(sd).__name__}, not a state dict of tensors")
    return dict(sd)


def load_network(name: str, path: str | os.PathLike | None = None) -> nnx.Module:
    """One MTCNN network ('pnet', 'rnet', 'onet') holding facenet-pytorch's weights (or `path`'s)."""
    if name not in NETWORKS:
        raise ValueError(f"unknown MTCNN network {name!r}; expected one of {', '.join(NETWORKS)}")
    path = weights_path(name) if path is None else pathlib.Path(path)
    try:
        module = pytorch.from_torch(read_state_dict(path), NETWORKS[name])
    except InputError as e:  # keys/shapes that do not fit: one line naming the file
        raise InputError(f"{path}: " + "; ".join(ln.strip() for ln in str(e).splitlines())) from None
    module.eval()
    return module


def load_mtcnn() -> tuple[nnx.Module, nnx.Module, nnx.Module]:
    """(PNet, RNet, ONet) with the weights of the installed facenet-pytorch wheel."""
    return tuple(load_network(name) for name in NETWORKS)
