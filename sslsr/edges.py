"""The paper's offline edge mask and its stride-s sampling pattern (NumPy, integer-exact).

A bottom-layer module with no dependency but NumPy: the data pipeline (grain workers) computes
masks with it without loading JAX, and `sslsr.losses` re-exports it for the loss's users.

The SSL reference computes the mask once per HR image, offline, with PIL + OpenCV:

    grey = Image.fromarray(hr).convert("L")
    lap = cv2.Laplacian(np.asarray(grey), -1, ksize=1)     # uint8 out, BORDER_REFLECT_101
    mask = lap > threshold

This module reproduces that bit for bit without PIL or OpenCV. As in the paper, compute it once on
the whole HR image and crop/flip/rotate it together with the image (the SSL only ever reads the
ground truth's mask). Masks stored as PNG 0/255, like the paper's offline files, must be read
back as {0, 1} (divide by 255).
"""

import math

import numpy as np


def _pil_luma(rgb: np.ndarray) -> np.ndarray:
    """PIL's ``convert("L")``: ITU-R 601-2 luma in 16-bit fixed point, rounded half up.

    Float 0.299/0.587/0.114 rounds differently on some pixels, which flips mask bits.
    """
    rgb = rgb.astype(np.int32)
    return (19595 * rgb[..., 0] + 38470 * rgb[..., 1] + 7471 * rgb[..., 2] + 32768) >> 16


def edge_mask(hr: np.ndarray, threshold: float = 20.0) -> np.ndarray:
    """Edge mask of a uint8 RGB ground-truth image, equal to the paper's offline mask.

    grey = PIL luma of ``hr``; response = Laplacian with kernel [[0,1,0],[1,-4,1],[0,1,0]] and
    reflect-101 borders (OpenCV's default, ``dcb|abcd|cba``), saturated into uint8 as
    ``cv2.Laplacian(grey, -1, ksize=1)`` does (negative responses become 0, >255 becomes 255);
    mask = response > threshold.

    Args:
      hr: uint8 RGB, (H, W, 3) or a batch (B, H, W, 3). H, W >= 2 (reflect-101 needs them).
      threshold: strict lower bound on the saturated Laplacian (paper: 20); a finite number >= 0
        (NaN, negative or infinite thresholds would give all-zero or all-one masks).

    Returns:
      float32 array in {0, 1}, (H, W) or (B, H, W).
    """
    if not 0 <= float(threshold) < math.inf:
        raise ValueError(f"edge_mask: threshold must be a finite number >= 0, got {threshold}")
    hr = np.asarray(hr)
    if hr.dtype != np.uint8:
        raise ValueError(f"edge_mask: hr must be uint8 RGB, got dtype {hr.dtype}")
    if hr.ndim not in (3, 4) or hr.shape[-1] != 3:
        raise ValueError(f"edge_mask: hr must be (H, W, 3) or (B, H, W, 3), got shape {hr.shape}")
    if hr.shape[-3] < 2 or hr.shape[-2] < 2:
        raise ValueError(f"edge_mask: H and W must be >= 2, got shape {hr.shape}")
    grey = _pil_luma(hr)
    pad = [(0, 0)] * (grey.ndim - 2) + [(1, 1), (1, 1)]
    g = np.pad(grey, pad, mode="reflect")  # numpy "reflect" == OpenCV BORDER_REFLECT_101
    lap = g[..., :-2, 1:-1] + g[..., 2:, 1:-1] + g[..., 1:-1, :-2] + g[..., 1:-1, 2:] - 4 * grey
    response = np.clip(lap, 0, 255)
    return (response > threshold).astype(np.float32)


def mask_stride_pattern(h: int, w: int, stride: int = 3) -> np.ndarray:
    """The paper's stride-s sampling pattern: 1 where (i mod s) == (j mod s), else 0.

    A tiled s x s identity matrix, multiplied into the edge mask to keep about 1/s of the edge
    pixels. The paper describes s = 3, but all three published GAN configs (ESRGAN, SwinIR,
    Real-ESRGAN) gate the pattern on a config key none of them sets, so the published numbers use
    every edge pixel; the trainer therefore defaults to stride 1 (no pattern) with 3 as an option.

    Returns:
      float32 (h, w) in {0, 1}.
    """
    if stride < 1:
        raise ValueError(f"mask_stride_pattern: stride must be >= 1, got {stride}")
    i = np.arange(h)[:, None] % stride
    j = np.arange(w)[None, :] % stride
    return (i == j).astype(np.float32)
