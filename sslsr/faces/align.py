"""Five-point face alignment to GPEN's face template, the inverse warp and soft pasting.

Template: GPEN's (and many face restorers') reference points, the 96x112 crop of the SphereFace /
ArcFace alignment (left eye, right eye, nose, left and right mouth corners) made square (x + 8,
112x112), padded by 25% on every side (+28 px, 168x168) and scaled to the face size: at 512 px
the eyes sit at about (202, 243) and (309, 242).

Transform: the least-squares similarity (rotation, uniform scale, translation, no reflection;
Umeyama 1991) taking the detected landmarks onto the template. Affines are (2, 3) float64 and
map image pixel coordinates (pixel centres at integers, OpenCV's convention) to face pixels.

Images: float32 in [0, 1] in and out (uint8 input is divided by 255), (H, W, C). Warps are
OpenCV's bilinear `warpAffine` with zeros outside the image, like GPEN's.
"""

from __future__ import annotations

import cv2
import numpy as np

# (x, y) in the 96 x 112 reference crop
_REFERENCE_96x112 = np.array([
    [30.29459953, 51.69630051],
    [65.53179932, 51.50139999],
    [48.02519989, 71.73660278],
    [33.54930115, 92.3655014],
    [62.72990036, 92.20410156],
])


def face_template(size: int) -> np.ndarray:
    """(5, 2) landmark positions (x, y) in a size x size aligned face (GPEN's template)."""
    return (_REFERENCE_96x112 + [8.0 + 28.0, 28.0]) * (size / 168.0)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """(2, 3) least-squares similarity taking points src (N, 2) onto dst (N, 2) (Umeyama)."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s0, d0 = src - mu_s, dst - mu_d
    u, sv, vt = np.linalg.svd(d0.T @ s0 / len(src))
    d = np.array([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])  # no reflection
    rot = u @ np.diag(d) @ vt
    scale = (sv * d).sum() / (s0**2).sum(1).mean()
    return np.concatenate([scale * rot, (mu_d - scale * rot @ mu_s)[:, None]], 1)


def _float_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    return image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image.astype(np.float32)


def _warp(image: np.ndarray, affine: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    out = cv2.warpAffine(image, affine, (int(out_hw[1]), int(out_hw[0])), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return out.reshape(*out.shape[:2], *image.shape[2:])  # OpenCV drops a single channel axis


def align_face(image: np.ndarray, landmarks: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The face at `landmarks` (5, 2) warped onto the template of a size x size face.

    Returns (face (size, size, C) float32 in [0, 1], affine (2, 3) image -> face).
    """
    affine = similarity_transform(landmarks, face_template(size))
    return _warp(_float_image(image), affine, (size, size)), affine


def scale_affine(affine: np.ndarray, scale: float) -> np.ndarray:
    """The image -> face affine for the same image upscaled by `scale` (e.g. the x4 SR output).

    An upscaled pixel q sits at (q + 0.5) / scale - 0.5 in the original (pixel centres, as the
    resizers of sslsr.data and PyTorch's align_corners=False place them).
    """
    lin = affine[:, :2]
    return np.concatenate([lin / scale, (affine[:, 2] + lin @ np.full(2, 0.5 / scale - 0.5))[:, None]], 1)


def warp_back(face: np.ndarray, affine: np.ndarray, out_hw: tuple[int, int], *, scale: float = 1) -> np.ndarray:
    """The aligned `face` warped back into an image of out_hw (the original upscaled by `scale`);
    zero where the face does not reach."""
    inverse = cv2.invertAffineTransform(scale_affine(affine, scale))
    return _warp(_float_image(face), inverse, out_hw)


def paste_mask(size: int) -> np.ndarray:
    """(size, size) float32 soft mask for pasting: 1 inside, 0 at the border, blurred like GPEN's
    (a rectangle 26/512 of the size in from the edges, two Gaussian blurs of sigma 11/512)."""
    margin = round(26 * size / 512)
    mask = np.zeros((size, size), np.float32)
    mask[margin:size - margin, margin:size - margin] = 1.0
    k = 2 * round(50 * size / 512) + 1
    sigma = 11 * size / 512
    for _ in range(2):
        mask = cv2.GaussianBlur(mask, (k, k), sigma)
    return mask


def paste_face(image: np.ndarray, face: np.ndarray, affine: np.ndarray, *, scale: float = 1) -> np.ndarray:
    """`image` (H, W, C), the original upscaled by `scale`, with the aligned `face` blended in
    through the warped `paste_mask`; float32 in [0, 1]."""
    image = _float_image(image)
    out_hw = image.shape[:2]
    mask = warp_back(paste_mask(face.shape[0]), affine, out_hw, scale=scale)[..., None]
    return image * (1.0 - mask) + warp_back(face, affine, out_hw, scale=scale) * mask
