"""Float64 NumPy oracle of the paper's SSG/SSL, written directly from the semantics (no JAX).

It literally builds each edge pixel's search area from the reflect-padded image, zero-pads it,
and compares the centre window with every candidate window, one pixel at a time.
"""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

EPS = 1e-10


def window_distances(img, coords, search_size=25, window_size=9):
    """d^2 of the given pixels of one image to every candidate of their search areas.

    Args:
      img: (H, W, C) float.
      coords: iterable of (i, j).

    Returns:
      (len(coords), search_size^2) float64: mean squared difference over the window and the
      channels, offsets row-major in (dy, dx).
    """
    img = np.asarray(img, np.float64)
    c = img.shape[-1]
    r, w = search_size // 2, window_size // 2
    padded = np.pad(img, ((r, r), (r, r), (0, 0)), mode="reflect")
    rows = []
    for i, j in coords:
        area = padded[i : i + search_size, j : j + search_size]  # centred on (i, j)
        area = np.pad(area, ((w, w), (w, w), (0, 0)))  # zero-padded search area
        centre = area[r : r + window_size, r : r + window_size]
        # (S, S, C, K, K): the window around every candidate q of the search area
        wins = sliding_window_view(area, (window_size, window_size), axis=(0, 1))
        d2 = np.sum((wins - np.moveaxis(centre, -1, 0)) ** 2, axis=(2, 3, 4)) / (c * window_size**2)
        rows.append(d2.reshape(-1))
    return np.array(rows).reshape(-1, search_size * search_size)


def ssg_rows(img, coords, search_size=25, window_size=9, h=0.004):
    """SSG rows of the given pixels of one image.

    Args:
      img: (H, W, C) float.
      coords: iterable of (i, j).

    Returns:
      (len(coords), search_size^2) float64, row-normalised, offsets row-major in (dy, dx).
    """
    s = np.exp(-window_distances(img, coords, search_size, window_size) / h)
    return s / (s.sum(axis=1, keepdims=True) + EPS)


def ssl_terms(sr, hr, mask, search_size=25, window_size=9, h=0.004):
    """(KL, L1) of the paper's loss for a batch, float64.

    Args:
      sr, hr: (B, H, W, C); mask: (B, H, W) in {0, 1}.
    """
    s_sr, s_hr = [], []
    for b in range(sr.shape[0]):
        coords = list(zip(*np.nonzero(np.asarray(mask[b]) > 0.5)))
        if not coords:
            continue
        s_sr.append(ssg_rows(sr[b], coords, search_size, window_size, h))
        s_hr.append(ssg_rows(hr[b], coords, search_size, window_size, h))
    if not s_sr:
        return 0.0, 0.0
    s_sr, s_hr = np.concatenate(s_sr), np.concatenate(s_hr)
    c_sr, c_hr = np.maximum(s_sr, EPS), np.maximum(s_hr, EPS)
    kl = np.mean(c_hr * (np.log(c_hr) - np.log(c_sr)))
    l1 = np.mean(np.abs(s_sr - s_hr))
    return float(kl), float(l1)
