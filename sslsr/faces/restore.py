"""Face restorers: aligned faces (N, S, S, 3) float32 in [0, 1] -> restored faces, same shape.

MetaF2N's pseudo ground truth. `GPENRestorer` runs GPEN's `FullGenerator` (`sslsr.models.gpen`)
with GPEN's own pre/post-processing (face_model/face_gan.py): bilinear resize to the model's size
(cv2's INTER_LINEAR, no antialiasing), [0, 1] -> [-1, 1], network, back to [0, 1] and clipped.
Unlike GPEN we keep float output (no uint8 rounding) and resize back to S (antialiased when
shrinking) when S is not the model's size. `load_restorer` reads a user-supplied GPEN-BFR-512 /
GPEN-BFR-256 `.pth` (nothing is downloaded). `OracleRestorer` returns the ground-truth faces it
was given: for synthetic evaluation only, reported as 'oracle'.
"""

from __future__ import annotations

import os
import pathlib
from typing import Protocol

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sslsr.errors import InputError, UserError
from sslsr.models import gpen


class Restorer(Protocol):
    """`size`: the face size the restorer works at (faces of another size are resized);
    `name`: what reports call it ('GPEN-BFR-512', 'oracle', ...)."""

    size: int
    name: str

    def restore(self, faces: jax.Array | np.ndarray) -> jax.Array:
        """(N, S, S, 3) float32 in [0, 1] -> (N, S, S, 3) float32 in [0, 1]."""
        ...


def _check_faces(faces, who: str) -> None:
    if faces.ndim != 4 or faces.shape[-1] != 3 or faces.shape[1] != faces.shape[2]:
        raise InputError(f"{who}: expects faces (N, S, S, 3), got shape {tuple(faces.shape)}")


def restore_faces(model: gpen.FullGenerator, faces: jax.Array) -> jax.Array:
    """GPEN on faces (N, S, S, 3) in [0, 1] -> (N, S, S, 3) in [0, 1]; traceable (use it inside a
    jitted step, e.g. MetaF2N's pseudo ground truth on the fly)."""
    n, s = faces.shape[0], faces.shape[1]
    size = model.size
    x = faces.astype(jnp.float32)
    if s != size:
        x = jax.image.resize(x, (n, size, size, 3), "linear", antialias=False)
    y = jnp.clip(model(x * 2.0 - 1.0) * 0.5 + 0.5, 0.0, 1.0)
    if s != size:
        y = jnp.clip(jax.image.resize(y, (n, s, s, 3), "linear", antialias=True), 0.0, 1.0)
    return y


class GPENRestorer:
    """A `Restorer` running a GPEN `FullGenerator` (`module`), `batch_size` faces per call
    (each distinct chunk size compiles once)."""

    def __init__(self, module: gpen.FullGenerator, *, name: str | None = None, batch_size: int = 8):
        self.module = module
        self.size = module.size
        self.name = name or f"GPEN-{module.size}"
        self.batch_size = batch_size
        graphdef, state = nnx.split(module)
        self._state = state
        self._forward = jax.jit(lambda st, x: restore_faces(nnx.merge(graphdef, st), x))

    def restore(self, faces: jax.Array | np.ndarray) -> jax.Array:
        _check_faces(faces, self.name)
        faces = jnp.asarray(faces, jnp.float32)
        chunks = [self._forward(self._state, faces[i:i + self.batch_size])
                  for i in range(0, faces.shape[0], self.batch_size)]
        return chunks[0] if len(chunks) == 1 else jnp.concatenate(chunks)


def load_restorer(path: str | os.PathLike, size: int = 512, *, batch_size: int = 8) -> GPENRestorer:
    """A GPENRestorer holding a published GPEN-BFR-`size` `.pth` (size 512 or 256).

    Raises:
      UserError: `size` is not a published one; the file is absent or cannot be read.
      InputError: the file is not a GPEN-BFR-`size` state dict (one line naming the file).
    """
    from sslsr.weights import read_state_dict
    from sslsr.weights.pytorch import from_torch

    if size not in gpen.BFR:
        raise UserError(f"restorer size {size}: GPEN-BFR models exist for sizes {sorted(gpen.BFR)}")
    name = f"GPEN-BFR-{size}"
    path = pathlib.Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such {name} weights file")
    sd, _ = read_state_dict(path)
    try:
        module = from_torch(sd, "GPEN", **gpen.BFR[size])
    except InputError as e:
        # from_torch lists every key; one line says what is wrong first.
        lines = str(e).splitlines()
        first = lines[1].strip() if len(lines) > 1 else lines[0]
        first = first if len(first) <= 160 else first[:160] + " ..."
        raise InputError(f"{path}: not a {name} face restorer ({first})") from None
    return GPENRestorer(module, name=name, batch_size=batch_size)


class OracleRestorer:
    """Returns the ground-truth faces it holds (synthetic evaluation; reports name it 'oracle').

    `faces`: (N, S, S, 3) in [0, 1], aligned like the faces `restore` will be given.
    """

    name = "oracle"

    def __init__(self, faces: jax.Array | np.ndarray):
        _check_faces(faces, self.name)
        self.faces = jnp.asarray(faces, jnp.float32)
        self.size = int(self.faces.shape[1])

    def restore(self, faces: jax.Array | np.ndarray) -> jax.Array:
        if tuple(faces.shape) != tuple(self.faces.shape):
            raise InputError(f"oracle restorer: holds faces {tuple(self.faces.shape)}, "
                             f"asked to restore {tuple(faces.shape)}")
        return self.faces
