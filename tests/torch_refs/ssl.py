"""Paper-style PyTorch SSL: materialise every search area and every window with unfold.

Written from the semantics (test/benchmark only): the second, independent parity reference for
``sslsr.losses.ssl_loss`` and the speed/memory baseline of ``benchmarks/ssl_speed.py``. Memory is
N_edge x C x window^2 x search^2 per tensor, the cost the dense JAX formulation avoids.
"""

import warnings

import torch
import torch.nn.functional as F

EPS = 1e-10


def ssg_rows(img: torch.Tensor, mask: torch.Tensor, search_size=25, window_size=9, h=0.004):
    """Row-normalised SSG rows of the masked pixels, concatenated over the batch.

    Args:
      img: (B, C, H, W); mask: (B, H, W) bool.

    Returns:
      (N_masked, search_size^2), offsets row-major in (dy, dx).
    """
    b, c, height, width = img.shape
    r, s, k = search_size // 2, search_size, window_size
    padded = F.pad(img, (r, r, r, r), mode="reflect")
    areas = F.unfold(padded, s)  # (B, C*S*S, H*W): the search area of every pixel
    areas = areas.view(b, c, s, s, height * width).permute(0, 4, 1, 2, 3)
    areas = areas[mask.reshape(b, height * width)]  # (N, C, S, S)
    areas = F.pad(areas, (k // 2,) * 4)  # zero-padded search area
    windows = F.unfold(areas, k)  # (N, C*K*K, S*S): the window around every candidate
    centre = windows[:, :, r * s + r : r * s + r + 1].clone()
    diff = windows - centre
    del windows, areas  # free what autograd does not need (the unfolds dominate memory)
    d2 = diff.square().sum(1) / (c * k * k)
    sim = torch.exp(-d2 / h)
    return sim / (sim.sum(1, keepdim=True) + EPS)


def ssl_loss(sr, hr, mask, search_size=25, window_size=9, h=0.004, alpha=1.0):
    """KL(S_HR || S_SR) + alpha * L1 as the paper's code reduces it.

    Args:
      sr, hr: (B, C, H, W) tensors (hr is detached); mask: (B, H, W) in {0, 1}.
    """
    mask = mask > 0.5
    if not bool(mask.any()):
        return (sr * 0).sum()
    with torch.no_grad():  # first, so its transient unfolds are gone before the SR graph's
        s_hr = ssg_rows(hr.detach(), mask, search_size, window_size, h)
    s_sr = ssg_rows(sr, mask, search_size, window_size, h)
    with warnings.catch_warnings():  # "mean" (per entry) is what the paper's code uses
        warnings.simplefilter("ignore", UserWarning)
        kl = F.kl_div(torch.log(torch.clamp(s_sr, min=EPS)), torch.clamp(s_hr, min=EPS), reduction="mean")
    return kl + alpha * F.l1_loss(s_sr, s_hr)
