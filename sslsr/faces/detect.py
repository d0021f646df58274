"""MTCNN face detection with five landmarks, run as facenet-pytorch's `detect_face` runs it.

The networks are `sslsr.models.mtcnn` with the weights of the facenet-pytorch wheel
(`sslsr.weights.facenet`); the box stages are NumPy. The pipeline, for one RGB uint8 image:

1. Pyramid: scales 12/min_face_size * factor**k while the short side stays >= 12 px; each level
   is the image resized with torch's 'area' interpolation to (int(h*s + 1), int(w*s + 1)),
   normalised as (x - 127.5) * 0.0078125.
2. PNet on every level; a candidate per output cell with P(face) >= thresholds[0], box
   floor((2*cell + 1) / s) .. floor((2*cell + 12) / s); NMS 0.5 per level, NMS 0.7 over all;
   box regression (offsets times the box width/height), squared around its centre.
3. RNet on the 24x24 crops (area resize) of the boxes clipped to the image; P > thresholds[1];
   NMS 0.7; regression (+1 pixel widths); squared.
4. ONet on 48x48 crops; P > thresholds[2]; landmarks from the box before regression;
   regression; NMS 0.7 with intersection over the smaller box ('Min').
NMS at stages 2-3 is torchvision's (IoU, areas without +1), the last one facenet's own (+1 areas).
Faces with score >= min_score are returned, highest score first.

Differences from facenet-pytorch, on purpose: a box whose clipped crop is empty is dropped (facenet
keeps the box but not its crop, misaligning boxes and crops); ties in NMS order are broken by
index.

Compiled shapes stay few: PNet runs on the level zero-padded to a multiple of `_PNET_STEP` (it is
told the real size, so the result is unchanged), RNet/ONet on batches padded to a power of two.

Input: uint8 (H, W, 3); grey images ((H, W) or (H, W, 1)) are converted to RGB (MTCNN was
trained on colour); an image whose short side is below 12 px after the min_face_size scaling has
no pyramid level and gives [] (the caller decides what no face means).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sslsr.data.resample import resize
from sslsr.errors import InputError
from sslsr.weights import facenet

_PNET_STEP = 32  # pyramid levels are padded up to a multiple of this (bounds PNet compiles)
_MIN_BATCH, _MAX_BATCH = 16, 512  # RNet/ONet batches: powers of two in this range
_STAGE_NMS = (0.5, 0.7, 0.7, 0.7)  # per level, over all levels, after RNet, after ONet ('Min')


@dataclasses.dataclass(frozen=True)
class Face:
    """One detected face, in pixel coordinates of the input image (x right, y down).

    box: (4,) float32 x0, y0, x1, y1.
    score: ONet's face probability.
    landmarks: (5, 2) float32 (x, y) of the left eye, right eye, nose, left and right mouth
      corners (left/right as seen in the image).
    """

    box: np.ndarray
    score: float
    landmarks: np.ndarray


def detect_faces(
    image: np.ndarray,
    *,
    min_face_size: int = 20,
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
    factor: float = 0.709,
    min_score: float = 0.9,
) -> list[Face]:
    """The faces MTCNN finds in a uint8 image (see the module docstring), highest score first."""
    img = _rgb(image)
    if min_face_size < 1 or not 0 < factor < 1:
        raise ValueError(f"detect_faces: min_face_size {min_face_size} must be >= 1 and factor {factor} in (0, 1)")
    scales = _pyramid(*img.shape[:2], min_face_size, factor)
    if not scales:
        return []
    pnet, rnet, onet = _networks()

    boxes = _propose(pnet, img, scales, thresholds[0])
    boxes, crops = _crops(img, boxes, 24)
    if len(boxes):
        reg, prob = _batched(rnet, crops)
        keep = prob[:, 1] > thresholds[1]
        boxes = np.concatenate([boxes[keep, :4], prob[keep, 1:2]], 1)
        pick = nms(boxes[:, :4], boxes[:, 4], _STAGE_NMS[2])
        boxes = _square(_regress(boxes[pick], reg[keep][pick]))
    boxes, crops = _crops(img, boxes, 48)
    if not len(boxes):
        return []
    reg, marks, prob = _batched(onet, crops)
    keep = prob[:, 1] > thresholds[2]
    boxes, reg, marks = np.concatenate([boxes[keep, :4], prob[keep, 1:2]], 1), reg[keep], marks[keep]
    size = boxes[:, 2:4] - boxes[:, 0:2] + 1
    points = np.stack([size[:, :1] * marks[:, :5], size[:, 1:] * marks[:, 5:]], 2) + boxes[:, None, :2] - 1
    boxes = _regress(boxes, reg)
    pick = nms(boxes[:, :4], boxes[:, 4], _STAGE_NMS[3], min_overlap=True)
    return [Face(boxes[i, :4].copy(), float(boxes[i, 4]), points[i].astype(np.float32))
            for i in pick if boxes[i, 4] >= min_score]


def _rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise InputError(f"detect_faces: expected a uint8 image, got {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"detect_faces: expected an (H, W, 3), (H, W, 1) or (H, W) image, got shape {image.shape}")
    return image.astype(np.float32)


def _pyramid(h: int, w: int, min_face_size: int, factor: float) -> list[float]:
    # Repeated products, not powers, so that int(h * scale + 1) matches facenet-pytorch's.
    scale = 12.0 / min_face_size
    scales, short = [], min(h, w) * scale
    while short >= 12:
        scales.append(scale)
        scale, short = scale * factor, short * factor
    return scales


@functools.cache
def _networks():
    """Jitted (PNet, RNet, ONet) with the wheel's weights, loaded once per process."""

    def jitted(module):
        graphdef, state = nnx.split(module)
        run = jax.jit(lambda state, *args: nnx.merge(graphdef, state)(*args))
        return functools.partial(run, state)

    return tuple(jitted(net) for net in facenet.load_mtcnn())


def _normalise(x: np.ndarray) -> np.ndarray:
    return (x - 127.5) * 0.0078125


def _pnet_out(n: int) -> int:
    # conv 3 -> pool 2/2 (ceil) -> conv 3 -> conv 3
    return math.ceil((n - 4) / 2) + 1 - 4


def _propose(pnet, img: np.ndarray, scales: list[float], threshold: float) -> np.ndarray:
    """Stage 1: PNet over the pyramid -> squared, regressed candidates (n, 5) x0, y0, x1, y1, score."""
    h, w = img.shape[:2]
    levels = []
    for scale in scales:
        hs, ws = int(h * scale + 1), int(w * scale + 1)
        level = _normalise(resize(img, (hs, ws), "area"))
        padded = np.zeros((-(-hs // _PNET_STEP) * _PNET_STEP, -(-ws // _PNET_STEP) * _PNET_STEP, 3), np.float32)
        padded[:hs, :ws] = level
        reg, prob = pnet(padded[None], (jnp.int32(hs), jnp.int32(ws)))
        oh, ow = _pnet_out(hs), _pnet_out(ws)
        cand = _candidates(np.asarray(reg[0, :oh, :ow]), np.asarray(prob[0, :oh, :ow, 1]), scale, threshold)
        levels.append(cand[nms(cand[:, :4], cand[:, 4], _STAGE_NMS[0])])
    boxes = np.concatenate(levels) if levels else np.zeros((0, 9), np.float32)
    boxes = boxes[nms(boxes[:, :4], boxes[:, 4], _STAGE_NMS[1])]
    wh = boxes[:, 2:4] - boxes[:, 0:2]
    corners = boxes[:, :4] + boxes[:, 5:9] * np.concatenate([wh, wh], 1)
    return _square(np.concatenate([corners, boxes[:, 4:5]], 1))


def _candidates(reg: np.ndarray, prob: np.ndarray, scale: float, threshold: float) -> np.ndarray:
    """(n, 9) x0, y0, x1, y1, score, 4 regression offsets of the PNet cells with prob >= threshold."""
    ys, xs = np.nonzero(prob >= threshold)
    cell = np.stack([xs, ys], 1).astype(np.float32)
    scale = np.float32(scale)
    q0, q1 = np.floor((2 * cell + 1) / scale), np.floor((2 * cell + 12) / scale)
    return np.concatenate([q0, q1, prob[ys, xs, None], reg[ys, xs]], 1).astype(np.float32)


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, *, min_overlap: bool = False) -> np.ndarray:
    """Greedy non-maximum suppression: indices kept, highest score first.

    Default: torchvision's `nms` (IoU, areas (x1 - x0) * (y1 - y0)). min_overlap: facenet's final
    'Min' NMS (intersection over the smaller box, areas with +1 pixel). A box is dropped when its
    overlap with a kept box exceeds `threshold`.
    """
    one = np.float32(1.0 if min_overlap else 0.0)
    x0, y0, x1, y1 = boxes.T
    area = (x1 - x0 + one) * (y1 - y0 + one)
    order, keep = np.argsort(-scores, kind="stable"), []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        iw = np.maximum(0, np.minimum(x1[i], x1[rest]) - np.maximum(x0[i], x0[rest]) + one)
        ih = np.maximum(0, np.minimum(y1[i], y1[rest]) - np.maximum(y0[i], y0[rest]) + one)
        inter = iw * ih
        overlap = inter / (np.minimum(area[i], area[rest]) if min_overlap else area[i] + area[rest] - inter)
        order = rest[overlap <= threshold]
    return np.asarray(keep, np.int64)


def _regress(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    """RNet/ONet box regression: offsets times the +1-pixel width/height."""
    wh = boxes[:, 2:4] - boxes[:, 0:2] + 1
    return np.concatenate([boxes[:, :4] + reg * np.concatenate([wh, wh], 1), boxes[:, 4:]], 1).astype(np.float32)


def _square(boxes: np.ndarray) -> np.ndarray:
    """Each box grown to a square of its longer side around the same centre (facenet's rerec)."""
    wh = boxes[:, 2:4] - boxes[:, 0:2]
    side = wh.max(1, keepdims=True)
    corner = boxes[:, 0:2] + wh * 0.5 - side * 0.5
    return np.concatenate([corner, corner + side, boxes[:, 4:]], 1).astype(np.float32)


def _crops(img: np.ndarray, boxes: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(boxes kept, normalised crops (n, size, size, 3)): each box truncated to integers, clipped
    to the image (1-based, like facenet's `pad`) and area-resized; empty crops are dropped."""
    h, w = img.shape[:2]
    b = np.trunc(boxes[:, :4]).astype(np.int64)
    x0, y0 = np.maximum(b[:, 0], 1), np.maximum(b[:, 1], 1)
    x1, y1 = np.minimum(b[:, 2], w), np.minimum(b[:, 3], h)
    keep = np.flatnonzero((y1 > y0 - 1) & (x1 > x0 - 1))
    crops = [resize(img[y0[k] - 1:y1[k], x0[k] - 1:x1[k]], (size, size), "area") for k in keep]
    crops = np.stack(crops) if crops else np.zeros((0, size, size, 3), np.float32)
    return boxes[keep], _normalise(crops).astype(np.float32)


def _batched(net, crops: np.ndarray) -> tuple[np.ndarray, ...]:
    """`net` on (n >= 1) crops in batches padded to a power of two (few compiled shapes)."""
    outs = []
    for start in range(0, len(crops), _MAX_BATCH):
        chunk = crops[start:start + _MAX_BATCH]
        n = max(_MIN_BATCH, 1 << (len(chunk) - 1).bit_length())
        padded = np.zeros((n, *chunk.shape[1:]), np.float32)
        padded[:len(chunk)] = chunk
        outs.append([np.asarray(o[:len(chunk)]) for o in net(padded)])
    return tuple(np.concatenate(parts) for parts in zip(*outs))
