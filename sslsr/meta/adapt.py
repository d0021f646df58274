"""Test-time adaptation from faces: an `sslsr.inference.Upscaler` that adapts per photo (MetaF2N).

`AdaptingUpscaler.prepare(lr)`:
  1. faces: the boxes given (LR pixels), else `sslsr.faces.detect.detect_faces` on the LR photo
     (score >= the threshold);
  2. per face, a square LR crop around the box and its pseudo ground truth at x scale: a restorer
     (`sslsr.faces.restore`, e.g. GPEN-BFR-512) on the bicubic-upsampled crop, or the HR photo's
     crop (`OracleFaces`, synthetic evaluation);
  3. `patches` random LR patches (`patch` px, default 16 -> 64) per face with their pseudo-GT, the
     MaskNet's map on them, and `steps` SGD steps (lr `inner_lr`) of the SR network on
     mean(m * |pgt - SR(lr)|) (`sslsr.meta.inner.adapt`);
  4. returns the network's forward with the adapted weights (one compiled forward for every photo).
  With no face it warns and returns the unadapted forward. `last` keeps what the photo gave (faces,
  pseudo-GT, MaskNet maps, the message) for `python -m sslsr.adapt` to write.

Differences from MetaF2N's published test code: MTCNN instead of RetinaFace; the adaptation pairs
are square crops around the boxes (with detected landmarks the restorer sees the face aligned, and
its output is warped back into the crop); boxes from a file carry no landmarks, so the restorer
then sees the unaligned crop.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sslsr.errors import UserError
from sslsr.inference import Forward, NetworkUpscaler
from sslsr.meta import inner
from sslsr.models import registry


@dataclasses.dataclass(frozen=True)
class FaceBox:
    """A face in LR pixel coordinates (x0, y0, x1, y1), the detector's score and, when the detector
    gave them, its 5 landmarks ((5, 2) x, y: eyes, nose, mouth corners) for alignment."""

    x0: float
    y0: float
    x1: float
    y1: float
    score: float = 1.0
    landmarks: np.ndarray | None = dataclasses.field(default=None, compare=False)


def square_crop(box: FaceBox, h: int, w: int, margin: float = 0.25) -> tuple[int, int, int] | None:
    """(y0, x0, side) of a square around `box` grown by `margin` of its larger side on every side,
    shifted (and shrunk if need be) to lie inside an (h, w) image; None for an empty box."""
    bw, bh = box.x1 - box.x0, box.y1 - box.y0
    if bw <= 0 or bh <= 0:
        return None
    side = int(round(max(bw, bh) * (1 + 2 * margin)))
    side = max(1, min(side, h, w))
    cy, cx = (box.y0 + box.y1) / 2, (box.x0 + box.x1) / 2
    y0 = int(np.clip(round(cy - side / 2), 0, h - side))
    x0 = int(np.clip(round(cx - side / 2), 0, w - side))
    return y0, x0, side


class OracleFaces:
    """The pseudo ground truth of synthetic evaluation: the HR photo's crop at x scale (unlike
    `sslsr.faces.restore.OracleRestorer`, which is given the faces, this finds them in the photo).

    hr: float32 (H, W, 3) in [0, 1], the photo the LR was degraded from (H = h * scale).
    """

    name = "oracle"

    def __init__(self, hr: np.ndarray):
        self.hr = np.asarray(hr, np.float32)

    def __call__(self, lr: np.ndarray, lr_up: np.ndarray, box: FaceBox, y0: int, x0: int, scale: int) -> np.ndarray:
        side = lr_up.shape[0] // scale
        return self.hr[y0 * scale : (y0 + side) * scale, x0 * scale : (x0 + side) * scale]


class RestorerFaces:
    """Pseudo ground truth from a face restorer (`sslsr.faces.restore.Restorer`, e.g. GPEN-BFR-512).

    With landmarks (detected faces), as MetaF2N's test code: the face aligned to the restorer's
    template from the LR photo, restored, warped back at x scale and pasted over the
    bicubic-upsampled crop (`sslsr.faces.align`). Without (boxes from a file): the upsampled
    square crop restored as it is (the restorer resizes it to its size and back).
    """

    def __init__(self, restorer):
        self.restorer, self.name = restorer, restorer.name

    def _restore(self, faces: np.ndarray) -> np.ndarray:
        return np.clip(np.asarray(self.restorer.restore(np.clip(faces, 0, 1).astype(np.float32))), 0, 1)

    def __call__(self, lr: np.ndarray, lr_up: np.ndarray, box: FaceBox, y0: int, x0: int, scale: int) -> np.ndarray:
        if box.landmarks is None:
            return self._restore(lr_up[None])[0]
        from sslsr.faces.align import align_face, paste_face

        # Landmarks relative to the crop, so the affine maps crop pixels to the aligned face.
        aligned, affine = align_face(lr, np.asarray(box.landmarks, np.float64) - [x0, y0], self.restorer.size)
        return np.clip(paste_face(lr_up, self._restore(aligned[None])[0], affine, scale=scale), 0, 1)


def detect(lr_uint8: np.ndarray, threshold: float) -> list[FaceBox]:
    """Faces of an LR photo with score >= threshold (MTCNN, `sslsr.faces.detect`)."""
    try:
        from sslsr.faces.detect import detect_faces
    except ImportError as e:
        raise UserError(f"face detection is not available ({e}); give the faces with --faces boxes.json") from None
    return [FaceBox(*map(float, f.box), score=float(f.score), landmarks=np.asarray(f.landmarks))
            for f in detect_faces(lr_uint8, min_score=threshold)]


class AdaptingUpscaler:
    """MetaF2N's test time as an `sslsr.inference.Upscaler` (see the module docstring).

    g: the SR network (meta-learned initialisation); mask: its MaskNet, or None (every face pixel
    weighs 1: plain fine-tuning on the faces); pseudo_gt: `OracleFaces` / `RestorerFaces`;
    boxes: faces in LR pixels (None: detect them); steps, inner_lr: the inner SGD; patches, patch:
    random LR patches per face and their side; seed: the patch positions.
    """

    def __init__(self, g: nnx.Module, mask: nnx.Module | None, *, pseudo_gt: Callable, boxes: Sequence[FaceBox] | None = None,
                 steps: int = 1, inner_lr: float = 1e-2, patches: int = 16, patch: int = 16, threshold: float = 0.9,
                 seed: int = 0):
        self.network = NetworkUpscaler(g)
        self.scale = self.network.scale
        self.pseudo_gt, self.boxes, self.threshold = pseudo_gt, boxes, threshold
        self.steps, self.patches, self.patch, self.seed = steps, patches, patch, seed
        self.last: dict = {}
        g_def, g_params, g_rest = nnx.split(g, nnx.Param, ...)
        self._g_def, self._g_rest, self._g_params = g_def, g_rest, g_params
        if mask is None:
            m_def = m_params = m_rest = None
        else:
            m_def, m_params, m_rest = nnx.split(mask, nnx.Param, ...)
        self._m_params = m_params

        def weights(m_params, lr, pgt):
            if m_def is None:
                return jnp.ones(pgt.shape[:3] + (1,), jnp.float32)
            return nnx.merge(m_def, m_params, m_rest)(inner.mask_input(lr, pgt))

        def adapted(g_params, m_params, lr, pgt):
            def apply(p, x):
                return nnx.merge(g_def, p, g_rest)(x)

            return inner.adapt(apply, g_params, lr, pgt, weights(m_params, lr, pgt), lr_inner=inner_lr, steps=steps)

        self._adapt = jax.jit(adapted)
        self._weights = jax.jit(weights)

    def faces(self, lr: np.ndarray) -> list[FaceBox]:
        if self.boxes is not None:
            return list(self.boxes)
        return detect(np.clip(np.round(lr * 255), 0, 255).astype(np.uint8), self.threshold)

    def prepare(self, lr_image: np.ndarray) -> Forward:
        lr = np.asarray(lr_image, np.float32)
        h, w = lr.shape[:2]
        s, p = self.scale, self.patch
        rng = np.random.default_rng(self.seed)
        crops, lr_p, pgt_p = [], [], []
        for box in self.faces(lr):
            sq = square_crop(box, h, w)
            if sq is None or sq[2] < p:
                continue
            y0, x0, side = sq
            face = lr[y0 : y0 + side, x0 : x0 + side]
            up = np.asarray(inner.upsample(jnp.asarray(face[None]), s)[0])
            pgt = np.asarray(self.pseudo_gt(face, up, box, y0, x0, s), np.float32)
            crops.append({"box": box, "crop": (y0, x0, side), "lr": face, "lr_up": np.clip(up, 0, 1), "pseudo_gt": pgt})
            for _ in range(self.patches):
                py, px = (int(v) for v in rng.integers(side - p + 1, size=2))
                lr_p.append(face[py : py + p, px : px + p])
                pgt_p.append(pgt[py * s : (py + p) * s, px * s : (px + p) * s])
        if not crops:
            if self.boxes is None:
                msg = f"no face of at least {p} LR px found (detector score >= {self.threshold})"
            elif not self.boxes:
                msg = "no face given"
            else:
                msg = f"none of the {len(self.boxes)} given faces is at least {p} LR px inside the image"
            warnings.warn(f"{msg}: using the unadapted model", stacklevel=2)
            self.last = {"faces": [], "message": msg + ": used the unadapted model"}
            return self.network
        lr_p, pgt_p = jnp.asarray(np.stack(lr_p)), jnp.asarray(np.stack(pgt_p))
        params = self._adapt(self._g_params, self._m_params, lr_p, pgt_p)
        for c in crops:  # the MaskNet's map over each whole face, for the report
            c["mask"] = np.asarray(self._weights(self._m_params, jnp.asarray(c["lr"][None]), jnp.asarray(c["pseudo_gt"][None]))[0, ..., 0])
        self.last = {"faces": crops, "message": f"adapted on {len(crops)} face(s), {len(lr_p)} patches, {self.steps} step(s)"}
        return self.network.with_state(nnx.state(nnx.merge(self._g_def, params, self._g_rest)))


def load_masknet(checkpoint: str) -> nnx.Module | None:
    """The MaskNet of a MetaF2N training workdir (configs/metaf2n*.py), or None for any other source."""
    import os

    from sslsr.weights import checkpoints

    try:
        root, _ = checkpoints.resolve(os.fspath(checkpoint))
    except FileNotFoundError:
        return None
    config = checkpoints.load_config(str(root))
    if config.get("recipe") != "metaf2n":
        return None
    mask = registry.build("MaskNet", rngs=nnx.Rngs(0), num_feat=int(config.meta.mask_feat))
    return checkpoints.restore_part(os.fspath(checkpoint), mask, "mask")
