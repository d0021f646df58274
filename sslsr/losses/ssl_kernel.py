"""Compiled CPU kernel of the SSL loss and its gradient (``ssl_loss(..., impl="kernel")``).

The same dense offset-major formulation as ``sslsr.losses.ssl`` (see its docstring for the
notation: P2, D_o, the tap validity v and the energy complements), compiled with numba and called
by XLA through its FFI (``ffi_target``). Why a kernel of its own: XLA:CPU runs every stage of the
pipelined scan as a separate pass over (S, N, rows, W) arrays on one core, so the scan is bound
by memory passes and leaves the second core idle. Here every stage works on blocks of a few
image rows that stay in L1/L2, and the images of a batch are spread over the cores. Savings the
XLA formulation cannot express with static shapes:
- offsets come in pairs o, -o whose squared differences are the same field shifted by o
  (D_{-o}(q) = D_o(q - o)): each pair computes them once, and so its box sums when both axes'
  offsets are interior (all taps valid) or its x-box when dx is; the adjoint sums the pair's
  cotangents before the one distance adjoint (the three-channel products) per pair. About half
  the distance work of a per-offset pass;
- the pairs of one dy go in groups of 4 consecutive dx that walk the same row blocks: their
  squared differences and their distance adjoints each take one pass for the group, which reads
  the shared pixel once and the shifted ones from the same cache lines;
- d^2 is needed only at masked pixels, so the exps, the normalisation and the loss terms run on
  the masked pixels only (~10-15% of an image), and row blocks that no masked pixel reads are
  skipped in the forward and the adjoint passes;
- box sums by doubling (4 passes for a 9-tap sum instead of 10); along y the doubling carries
  over from one block to the next, so halo rows are not summed twice; complements that are 0
  (interior offsets) are not read;
- blocks start on cache lines (in P2's frame, for every array) when the rows keep their phase;
- float32 exps use a vectorisable polynomial (the Cephes expf reduction, relative error
  3.0e-7 measured, < 5e-7 tested), where numba would call the scalar libm exp; float64 keeps ``np.exp``.

Memory: per core, the logits of both graphs at the masked pixels, two (S^2, masked pixels)
arrays (7 MB each for 2,800 edge pixels, 41 MB for a fully masked 128² image) allocated once for
all of the core's images, plus ~12 MB of per-group and complement buffers: flat in the batch
size, linear in the masked pixels per image.

All arrays are channels-first and per image; the loss value and the gradient come out of one call
(the loss is a scalar, so ``ssl_loss`` computes its gradient in the forward rule anyway).
"""

import ctypes
import functools

import jax
import numba
import numpy as np
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

# 'nnan'/'ninf' are left out on purpose: a NaN in a masked image must reach the loss.
_FAST = {"contract", "reassoc", "nsz", "arcp"}
# Rows per block of the distance pipelines: the fastest of 4-32 on 128-px images (a block's
# working rows stay in L1/L2).
_BLOCK_ROWS = 16
# Pairs of offsets (one dy, consecutive dx) whose squared differences and distance adjoints take
# one pass each (``_squared_distance_group``, ``_scatter_products_group``).
_GROUP = 4
_EPS = 1e-10

# Cephes expf: exp(x) = 2^n exp(r), r = x - n ln2 split in two parts, degree-6 polynomial.
_LOG2E = np.float32(1.44269504088896341)
_LN2_HI = np.float32(0.693359375)
_LN2_LO = np.float32(-2.12194440e-4)
_EXP_MIN = np.float32(-87.33654)  # below this float32 exp(x) is subnormal: flushed to 0
_P = tuple(np.float32(c) for c in (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1))


@numba.njit(cache=True, fastmath=_FAST)
def _exp_into(x, out, bits):
    """out[m] = exp(x[m]) for m < len(out); bits: int32 scratch of the same length (float32)."""
    if x.itemsize == 8:
        for m in range(out.shape[0]):
            out[m] = np.exp(x[m])
        return
    for m in range(out.shape[0]):
        v = x[m]
        if v < _EXP_MIN:  # NaN fails the comparison and stays NaN
            v = _EXP_MIN
        n = np.floor(v * _LOG2E + np.float32(0.5))
        r = v - n * _LN2_HI - n * _LN2_LO
        p = ((((_P[0] * r + _P[1]) * r + _P[2]) * r + _P[3]) * r + _P[4]) * r + _P[5]
        out[m] = p * (r * r) + r + np.float32(1.0)
        bits[m] = (np.int32(n) + np.int32(127)) << 23
    scale = bits[: out.shape[0]].view(np.float32)
    for m in range(out.shape[0]):
        # exp of NaN stays NaN through the polynomial; a result below float32's normal range is 0.
        out[m] = out[m] * scale[m] if not x[m] < _EXP_MIN else 0.0


@numba.njit(cache=True)
def _tap_range(offset, r, w, k):
    """Taps k with |offset - r + k - w| <= r, i.e. inside the search area: [lo, hi)."""
    return max(0, w - offset), min(k, 2 * r + w - offset + 1)


@numba.njit(cache=True, fastmath=_FAST)
def _box(dst, src, start, stop, lo, hi, stride):
    """dst[q] += sum_{k in [lo, hi)} src[q + k * stride] for q in [start, stop).

    One pass over dst per tap: each pass is a long unit-stride loop that vectorises, where a tap
    loop with run-time bounds inside the q loop would not. All hot loops here index views from 0:
    numba wraps negative indices, and only an index that provably starts at 0 drops that check
    (and with it the scalar code).
    """
    out = dst[start:stop]
    for k in range(lo, hi):
        shift = k * stride
        _add(out, src[start + shift : stop + shift])


@numba.njit(cache=True, fastmath=_FAST)
def _add(dst, src):
    for q in range(dst.shape[0]):
        dst[q] += src[q]


@numba.njit(cache=True, fastmath=_FAST)
def _add_sum(dst, a, b):
    for q in range(dst.shape[0]):
        dst[q] = a[q] + b[q]


@numba.njit(cache=True, fastmath=_FAST)
def _doubling(src, pairs, quads, start, stop, stride, quads_start):
    """pairs[x] = src[x] + src[x + stride] on [start, stop), quads[x] = pairs[x] + pairs[x + 2 stride]
    on [quads_start, stop - 2 stride).

    quads_start = start for a fresh range; start - 2 stride extends the previous call on the same
    arrays (whose pairs ended at ``start``), so blocks walked in order reuse their halo rows.
    """
    _add_sum(pairs[start:stop], src[start:stop], src[start + stride : stop + stride])
    end = stop - 2 * stride
    if end > quads_start:
        _add_sum(quads[quads_start:end], pairs[quads_start:end], pairs[quads_start + 2 * stride : end + 2 * stride])


@numba.njit(cache=True, fastmath=_FAST)
def _start_sum(out, base, start, a, b):
    """out = base[start:] + a (+ b): the first pass of a box sum; base None: no base (0)."""
    if base is None:
        if b is None:
            out[:] = a
        else:
            _add_sum(out, a, b)
    elif b is None:
        _add_sum(out, base[start : start + out.shape[0]], a)
    else:
        _sum3(out, base[start : start + out.shape[0]], a, b)


@numba.njit(cache=True, fastmath=_FAST)
def _assemble(dst, base, src, start, stop, lo, hi, stride, pairs, quads):
    """dst[q] = base[q] + sum_{k in [lo, hi)} src[q + k * stride] for q in [start, stop), from
    the doubling of src (``_doubling``), valid on [start + lo stride, stop + (hi - 2) stride).

    base None: 0 (a complement of an interior offset, a fresh adjoint), not read. The terms:
    quads at 0, 4, ..., then pairs and src for the remainder; the first pass adds two of them to
    base. Every sum is still one of non-negative terms or of cotangents, only grouped
    differently.
    """
    length, first, n = hi - lo, start + lo * stride, stop - start
    out = dst[start:stop]
    if length <= 0:
        if base is None:
            out[:] = 0
        else:
            out[:] = base[start:stop]
        return
    if length < 4:
        if length == 1:
            _start_sum(out, base, start, src[first : first + n], None)
            return
        _start_sum(out, base, start, src[first : first + n], src[first + stride : first + stride + n])
        if length == 3:
            _add(out, src[first + 2 * stride : first + 2 * stride + n])
        return
    second = first + 4 * stride
    if length >= 8:
        _start_sum(out, base, start, quads[first : first + n], quads[second : second + n])
        k = 8
    elif length >= 6:
        _start_sum(out, base, start, quads[first : first + n], pairs[second : second + n])
        k = 6
    elif length == 5:
        _start_sum(out, base, start, quads[first : first + n], src[second : second + n])
        k = 5
    else:
        _start_sum(out, base, start, quads[first : first + n], None)
        k = 4
    while k + 4 <= length:
        _add(out, quads[first + k * stride : first + k * stride + n])
        k += 4
    if length - k >= 2:
        _add(out, pairs[first + k * stride : first + k * stride + n])
        k += 2
    if k < length:
        _add(out, src[first + k * stride : first + k * stride + n])


@numba.njit(cache=True, fastmath=_FAST)
def _window_sum(dst, base, src, start, stop, lo, hi, stride, pairs, quads):
    """dst[q] = base[q] + sum_{k in [lo, hi)} src[q + k * stride] for q in [start, stop).

    Box sums by doubling (pairs, quads: scratch as long as src): a 9-tap sum takes 4 passes over
    cache-resident rows instead of 10.
    """
    if hi - lo >= 4:
        first = start + lo * stride
        _doubling(src, pairs, quads, first, stop + (hi - 2) * stride, stride, first)
    _assemble(dst, base, src, start, stop, lo, hi, stride, pairs, quads)


@numba.njit(cache=True, fastmath=_FAST)
def _sum3(dst, a, b, c):
    for q in range(dst.shape[0]):
        dst[q] = a[q] + b[q] + c[q]


@numba.njit(cache=True)
def _edge_row(o, r, w):
    """The row of offset component o (0 <= o < S) in arrays that hold only the 2w components
    with invalid taps (o < w or o > 2R - w, as K <= S): the complements and their adjoints,
    which are 0 for the interior ones. An interior o gets row 0, and nothing reads it there."""
    if o < w:
        return o
    if o > 2 * r - w:
        return o - (2 * r - 2 * w + 1)
    return 0


@numba.njit(cache=True, fastmath=_FAST)
def _complements(pf, s, k, height, wp, margin):
    """Energy complements of the zero-padded search area, flat with row stride Wp.

    E[q] = sum_c centre^2, fx (S, Hc * Wp) = sum_{kx invalid for dx} E[q + kx] and comp
    (S, H * Wp) = sum_{ky invalid for dy} sum_{all kx} E[q + ky Wp + kx] (valid columns x < W),
    both stored from index ``margin`` on, with ``margin`` zeros on either side: the mirrored
    offset of a pair reads them shifted (see ``_logits``). Rows by ``_edge_row``: those of the
    interior components would be 0.
    """
    r, w = s // 2, k // 2
    hc = height + 2 * w
    width = wp - 2 * r - 2 * w
    n_tap = hc * wp - 2 * r  # the last row's final 2R columns would read past P2
    n_box = n_tap - (k - 1)
    centre = r * wp + r
    energy = np.zeros(hc * wp, pf.dtype)
    for c in range(pf.shape[0]):
        x = pf[c, centre : centre + n_tap]
        for q in range(n_tap):
            energy[q] += x[q] * x[q]
    row_energy = np.zeros(hc * wp, pf.dtype)
    _box(row_energy, energy, 0, n_box, 0, k, 1)
    fx = np.zeros((2 * w, 2 * margin + hc * wp), pf.dtype)
    comp = np.zeros_like(fx)
    n_comp = (height - 1) * wp + width
    for o in range(s):
        lo, hi = _tap_range(o, r, w, k)
        if _is_full(lo, hi, k):
            continue
        fx_o, comp_o = fx[_edge_row(o, r, w), margin:], comp[_edge_row(o, r, w), margin:]
        _box(fx_o, energy, 0, n_box, 0, lo, 1)
        _box(fx_o, energy, 0, n_box, hi, k, 1)
        _box(comp_o, row_energy, 0, n_comp, 0, lo, wp)
        _box(comp_o, row_energy, 0, n_comp, hi, k, wp)
    return fx, comp


@numba.njit(cache=True, fastmath=_FAST)
def _squared_distance(dst, pf, first, second):
    """dst[q] = sum_c (pf[c, first + q] - pf[c, second + q])^2, one pass for 3 channels."""
    n = dst.shape[0]
    if pf.shape[0] == 3:
        x0, x1, x2 = pf[0, first : first + n], pf[1, first : first + n], pf[2, first : first + n]
        y0, y1, y2 = pf[0, second : second + n], pf[1, second : second + n], pf[2, second : second + n]
        for q in range(n):
            d0, d1, d2 = x0[q] - y0[q], x1[q] - y1[q], x2[q] - y2[q]
            dst[q] = d0 * d0 + d1 * d1 + d2 * d2
        return
    dst[:] = 0
    for c in range(pf.shape[0]):
        x, y = pf[c, first : first + n], pf[c, second : second + n]
        for q in range(n):
            diff = x[q] - y[q]
            dst[q] += diff * diff


@numba.njit(cache=True)
def _masked_span(row_m, y0, y1, height):
    """The masked pixels [m0, m1) of rows [y0, y1) clipped to the image."""
    return row_m[min(max(y0, 0), height)], row_m[min(max(y1, 0), height)]


@numba.njit(cache=True)
def _is_full(lo, hi, k):
    return lo == 0 and hi == k


@numba.njit(cache=True)
def _zeros(n, like):
    """Zeros of like's dtype whose first element sits on a 64-byte boundary, as XLA's buffers
    do: with the same phase as P2, the unit-stride passes of a block start on cache lines."""
    unit = 64 // like.itemsize
    buffer = np.zeros(n + unit, like.dtype)
    shift = -(buffer.ctypes.data // like.itemsize) % unit
    return buffer[shift : shift + n]


@numba.njit(cache=True)
def _line_unit(wp, like):
    """Elements per 64-byte cache line when every row starts at the same phase (Wp a multiple of
    the line), else 1: the unit that block starts are rounded to."""
    unit = 64 // like.itemsize
    return unit if wp % unit == 0 else 1


@numba.njit(cache=True)
def _block_start(row, first_row, wp, left, centre, unit):
    """The flat start of the block that begins at ``row``: the first block starts exactly, the
    others on the cache line (in P2's frame, z + centre) just before their first row."""
    z = row * wp + left
    if row == first_row:
        return z
    return z - (z + centre) % unit


@numba.njit(cache=True, fastmath=_FAST)
def _logits(pf, qm, row_m, s, k, height, scale, out):
    """out[o, m] = d^2(pixel m, offset o) * scale for the masked pixels at flat qm[m] = y Wp + x.

    pf: (C, Hp * Wp) flat P2. Everything is flat with row stride Wp (the 2R columns past each
    row's valid ones are computed and ignored), so every stage is a long unit-stride loop.

    Offsets come in pairs o, -o that share their squared differences: with delta = dy Wp + dx,
    D_{-o}(q) = D_o(q - delta). Each pair is computed once in the frame of o, over the union of
    both offsets' rows and columns: z = q for o and z = q - delta for -o (arrays are indexed by
    margin + z, margin = R Wp + R). The two offsets' x-boxes are the same when dx is interior
    (all taps valid, |dx| <= R - w), their y-boxes when dy is too; otherwise each offset
    assembles its own box from the shared doubling (``_doubling``) and reads its complements
    shifted by delta for -o.

    The pairs of one dy go in groups of _GROUP consecutive dx (``_squared_distance_group``) that
    walk the same blocks of ``_BLOCK_ROWS`` rows, each member with arrays of its own: per block,
    the distances and x-boxes of the tap rows the block needs (each tap row once, in order), then
    the y-boxes, whose doubling carries over from the block above. row_m[y]: the first masked
    pixel of row y (qm is sorted); blocks whose rows hold no masked pixel of any offset of the
    group are skipped.
    """
    r, w = s // 2, k // 2
    hc = height + 2 * w
    wp = pf.shape[1] // (hc + 2 * r)
    n_tap = hc * wp - 2 * r
    n_box = n_tap - (k - 1)
    n_pix = height * wp
    centre = r * wp + r
    margin = centre  # z >= -(R Wp + R); with P2's phase, so that blocks start on lines in both
    fx, comp = _complements(pf, s, k, height, wp, margin)
    size = 2 * margin + hc * wp
    # One row per member of a group: the distances, and the boxes that carry over between blocks.
    dist, t_o, t_m = _zero_rows(_GROUP, size, pf), _zero_rows(_GROUP, size, pf), _zero_rows(_GROUP, size, pf)
    y_pairs_o, y_quads_o = _zero_rows(_GROUP, size, pf), _zero_rows(_GROUP, size, pf)
    y_pairs_m, y_quads_m = _zero_rows(_GROUP, size, pf), _zero_rows(_GROUP, size, pf)
    x_pairs, x_quads, d2_o, d2_m = _zeros(size, pf), _zeros(size, pf), _zeros(size, pf), _zeros(size, pf)
    unit = _line_unit(wp, pf)
    doubled = k >= 4  # shorter boxes add src directly
    for i in range(r, s):
        dy, mi = i - r, 2 * r - i
        ylo, yhi = _tap_range(i, r, w, k)
        mylo, myhi = _tap_range(mi, r, w, k)
        y_shared = _is_full(ylo, yhi, k)
        for j0 in range(r if dy == 0 else 0, s, _GROUP):  # (0, -dx) was done as (0, dx)
            members = min(_GROUP, s - j0)
            delta0 = dy * wp + j0 - r
            left = min(0, r - (j0 + members - 1))  # the group's first column in the z frame
            paired = dy != 0 or j0 + members - 1 > r  # a member has delta != 0
            t_done, y_done = -dy, -1
            for v0 in range(-dy, height, _BLOCK_ROWS):
                v1 = min(v0 + _BLOCK_ROWS, height)
                m0, m1 = _masked_span(row_m, v0, v1, height)
                n0, n1 = _masked_span(row_m, v0 + dy, v1 + dy, height)
                if not (m0 < m1 or (paired and n0 < n1)):
                    continue
                ya, yb = max(t_done, v0), v1 + k - 1
                if ya < yb:
                    a = margin + _block_start(ya, -dy, wp, left, centre, unit)
                    b = margin + (n_box if yb >= hc else min(_block_start(yb, -dy, wp, left, centre, unit), n_box))
                    end = min(b + k - 1, margin + n_tap)
                    first = a - margin + centre
                    if members == _GROUP and pf.shape[0] == 3:
                        _squared_distance_group(dist, pf, first, first + delta0, a, end - a)
                    else:
                        for g in range(members):
                            _squared_distance(dist[g, a:end], pf, first, first + delta0 + g)
                    for g in range(members):
                        _pair_block_x(dist[g], x_pairs, x_quads, t_o[g], t_m[g], fx, i, j0 + g, r, w, k, wp, a, b, doubled)
                    t_done = yb
                a = margin + _block_start(v0, -dy, wp, left, centre, unit)
                b = margin + (min(v1 * wp + left, n_pix) if v1 == height else _block_start(v1, -dy, wp, left, centre, unit))
                # The doubling of the y-boxes for rows [v0, v1 + K - 2): fresh, or only the
                # rows below the previous block's.
                start, quads_start = (a + (k - 2) * wp, a + (k - 4) * wp) if y_done == a else (a, a)
                y_done = b
                for g in range(members):
                    j = j0 + g
                    dx, mj = j - r, 2 * r - j
                    delta = delta0 + g
                    xlo, xhi = _tap_range(j, r, w, k)
                    x_shared = _is_full(xlo, xhi, k)
                    separate = delta != 0 and not x_shared  # -o has a t of its own
                    need_o, need_m = m0 < m1, delta != 0 and n0 < n1
                    if doubled:
                        _doubling(t_o[g], y_pairs_o[g], y_quads_o[g], start, b + (k - 2) * wp, wp, quads_start)
                        if separate:
                            _doubling(t_m[g], y_pairs_m[g], y_quads_m[g], start, b + (k - 2) * wp, wp, quads_start)
                    if y_shared and (need_o or x_shared):  # comp_o is 0
                        _assemble(d2_o, None, t_o[g], a, b, ylo, yhi, wp, y_pairs_o[g], y_quads_o[g])
                    elif need_o:
                        _assemble(d2_o, comp[_edge_row(i, r, w)], t_o[g], a, b, ylo, yhi, wp, y_pairs_o[g], y_quads_o[g])
                    out_o = out[i * s + j]
                    for m in range(m0, m1):
                        out_o[m] = d2_o[margin + qm[m]] * scale
                    if not need_m:
                        continue
                    # -o reads its complements at q = z + delta.
                    comp_m = comp[_edge_row(mi, r, w), delta:]
                    if x_shared and y_shared:
                        src = d2_o
                    else:
                        src = d2_m
                        if separate and y_shared:  # comp_m is 0
                            _assemble(d2_m, None, t_m[g], a, b, mylo, myhi, wp, y_pairs_m[g], y_quads_m[g])
                        elif separate:
                            _assemble(d2_m, comp_m, t_m[g], a, b, mylo, myhi, wp, y_pairs_m[g], y_quads_m[g])
                        else:
                            _assemble(d2_m, comp_m, t_o[g], a, b, mylo, myhi, wp, y_pairs_o[g], y_quads_o[g])
                    out_m = out[mi * s + mj]
                    for m in range(n0, n1):
                        out_m[m] = src[margin + qm[m] - delta] * scale


@numba.njit(cache=True, fastmath=_FAST)
def _squared_distance_group(dist, pf, first, second, start, n):
    """``_squared_distance`` of _GROUP (4) pairs whose offsets are consecutive along x, 3
    channels: dist[g, start + q] = sum_c (pf[c, first + q] - pf[c, second + g + q])^2.

    The first pixel's channels are read once for the 4 pairs, and the second pixels of
    neighbouring pairs share their cache lines (~1.45x faster than 4 single passes).
    """
    uf, us, ud = np.uint64(first), np.uint64(second), np.uint64(start)
    one, two, three = np.uint64(1), np.uint64(2), np.uint64(3)  # uint64 +- int64 would be float64
    d0, d1, d2, d3 = dist[0], dist[1], dist[2], dist[3]
    for q in range(n):
        uq = np.uint64(q)
        x0, x1, x2 = pf[0, uf + uq], pf[1, uf + uq], pf[2, uf + uq]
        y = us + uq
        e0, e1, e2 = x0 - pf[0, y], x1 - pf[1, y], x2 - pf[2, y]
        d0[ud + uq] = e0 * e0 + e1 * e1 + e2 * e2
        e0, e1, e2 = x0 - pf[0, y + one], x1 - pf[1, y + one], x2 - pf[2, y + one]
        d1[ud + uq] = e0 * e0 + e1 * e1 + e2 * e2
        e0, e1, e2 = x0 - pf[0, y + two], x1 - pf[1, y + two], x2 - pf[2, y + two]
        d2[ud + uq] = e0 * e0 + e1 * e1 + e2 * e2
        e0, e1, e2 = x0 - pf[0, y + three], x1 - pf[1, y + three], x2 - pf[2, y + three]
        d3[ud + uq] = e0 * e0 + e1 * e1 + e2 * e2


@numba.njit(cache=True, fastmath=_FAST)
def _pair_block_x(dist, x_pairs, x_quads, t_o, t_m, fx, i, j, r, w, k, wp, a, b, doubled):
    """The x-boxes t[z] = fx[z] + sum_{kx in [xlo, xhi)} dist[z + kx] of pair (i, j)'s tap rows
    [a, b) (see ``_logits``): t_o, and t_m for -o unless both share it (dx interior)."""
    dy, dx, mj = i - r, j - r, 2 * r - j
    xlo, xhi = _tap_range(j, r, w, k)
    mxlo, mxhi = _tap_range(mj, r, w, k)
    if doubled:
        _doubling(dist, x_pairs, x_quads, a, b + k - 2, 1, a)
    if _is_full(xlo, xhi, k):  # fx_o is 0, and -o shares t_o
        _assemble(t_o, None, dist, a, b, xlo, xhi, 1, x_pairs, x_quads)
        return
    _assemble(t_o, fx[_edge_row(j, r, w)], dist, a, b, xlo, xhi, 1, x_pairs, x_quads)
    if dy * wp + dx != 0:
        # -o reads its complements at q = z + delta.
        _assemble(t_m, fx[_edge_row(mj, r, w), dy * wp + dx :], dist, a, b, mxlo, mxhi, 1, x_pairs, x_quads)


@numba.njit(cache=True, fastmath=_FAST)
def _row_terms(a_sr, a_hr, weights, alpha, scale, eps, with_grad):
    """Masked sum of KL + alpha * L1 entries; with_grad: a_sr <- d value / d d^2_SR (in place).

    a_sr, a_hr: (S^2, M) logits; a_hr is used as scratch. Scalars are of the arrays' dtype.
    """
    n_off, m_total = a_sr.shape
    dtype = a_sr.dtype
    log_eps = np.log(eps)
    zero = eps - eps
    bits = np.empty(m_total, np.int32)
    e = np.empty(m_total, dtype)
    neg = np.empty(m_total, dtype)
    z_s = np.full(m_total, eps, dtype)
    z_h = np.full(m_total, eps, dtype)
    for o in range(n_off):
        for m in range(m_total):
            neg[m] = -a_sr[o, m]
        _exp_into(neg, e, bits)
        for m in range(m_total):
            z_s[m] += e[m]
        for m in range(m_total):
            neg[m] = -a_hr[o, m]
        _exp_into(neg, e, bits)
        for m in range(m_total):
            z_h[m] += e[m]
    lz_s, lz_h = np.log(z_s), np.log(z_h)
    value = np.zeros(m_total, dtype)
    g_sum = np.zeros(m_total, dtype)
    log_s, log_h = np.empty(m_total, dtype), np.empty(m_total, dtype)
    s_s, s_h = np.empty(m_total, dtype), np.empty(m_total, dtype)
    for o in range(n_off):
        for m in range(m_total):
            log_s[m] = -a_sr[o, m] - lz_s[m]
            log_h[m] = -a_hr[o, m] - lz_h[m]
        _exp_into(log_s, s_s, bits)
        _exp_into(log_h, s_h, bits)
        for m in range(m_total):
            c_h = max(s_h[m], eps)
            c_log_h = max(log_h[m], log_eps)
            # max(NaN, x) must stay NaN: the comparison form keeps it.
            c_log_s = log_s[m] if not log_s[m] < log_eps else log_eps
            diff = s_s[m] - s_h[m]
            value[m] += weights[m] * (c_h * (c_log_h - c_log_s) + alpha * abs(diff))
            if with_grad:
                kl = -c_h if log_s[m] > log_eps else zero
                gl = weights[m] * (kl + alpha * np.sign(diff) * s_s[m])
                g_sum[m] += gl
                a_sr[o, m] = s_s[m]
                a_hr[o, m] = gl
    if with_grad:
        for o in range(n_off):
            for m in range(m_total):
                a_sr[o, m] = scale * (a_sr[o, m] * g_sum[m] - a_hr[o, m])
    return value.sum()


@numba.njit(cache=True, fastmath=_FAST)
def _scatter_products(d_x, d_y, x, y, dd, scratch):
    """The adjoint of dist += (x - y)^2 for one channel (images of other than 3 channels):
    d_x += 2 (x - y) dd, d_y -= 2 (x - y) dd.

    Three loops of at most three arrays each: as one loop of views (two outputs, five arrays)
    LLVM's run-time aliasing checks get in the way; the whole adjoint was ~15% slower that way.
    """
    t2 = scratch[: dd.shape[0]]
    for q in range(dd.shape[0]):
        t2[q] = 2.0 * (x[q] - y[q]) * dd[q]
    _add(d_x, t2)
    for q in range(dd.shape[0]):
        d_y[q] -= t2[q]


@numba.njit(cache=True, fastmath=_FAST)
def _scatter_products3(d_x, d_y, p, dd, x0, y0, d0, n):
    """``_scatter_products`` of three channels in one loop: x = p[:, x0:], y = p[:, y0:], the
    adjoints d_x[:, x0:], d_y[:, y0:], the cotangent dd[d0:], n entries.

    Whole (C, L) arrays and unsigned indices: views from 0 would make 13 arrays whose run-time
    aliasing checks stop LLVM from vectorising (~40% slower than three loops); a signed index
    could be negative, and numba's wrap-around check would keep the loop scalar. One loop reads
    each value once: 13 loads and 6 stores per entry instead of 21 and 9.
    """
    ux, uy, ud = np.uint64(x0), np.uint64(y0), np.uint64(d0)
    for q in range(n):
        uq = np.uint64(q)
        t = 2.0 * dd[ud + uq]
        v0 = (p[0, ux + uq] - p[0, uy + uq]) * t
        v1 = (p[1, ux + uq] - p[1, uy + uq]) * t
        v2 = (p[2, ux + uq] - p[2, uy + uq]) * t
        d_x[0, ux + uq] += v0
        d_x[1, ux + uq] += v1
        d_x[2, ux + uq] += v2
        d_y[0, uy + uq] -= v0
        d_y[1, uy + uq] -= v1
        d_y[2, uy + uq] -= v2


@numba.njit(cache=True, fastmath=_FAST)
def _scatter_products_group(d_x, d_y, p, dd, x0, y0, d0, n):
    """``_scatter_products3`` of _GROUP (4) pairs at once whose offsets are consecutive along x:
    delta_g = delta_0 + g; pair g's cotangent is dd[g, d0:], the other names as there.

    Two passes: one over x (d_x[:, x0 + q] += 2 sum_g (x - y_g) dd_g(q)), one over the union of
    the y_g (d_y[:, y0 + u] -= 2 sum_g (p[:, x0 + u - g] - y) dd_g(u - g)), with its first and
    last _GROUP - 1 entries, where some pairs have no term, as short scalar loops. The y_g of
    neighbouring pairs share their cache lines, and each d_x, d_y is read and written once for
    the 4 pairs: ~2.2x faster than 4 single passes.
    """
    ux, uy, ud = np.uint64(x0), np.uint64(y0), np.uint64(d0)
    one, two, three = np.uint64(1), np.uint64(2), np.uint64(3)  # uint64 +- int64 would be float64
    dd0, dd1, dd2, dd3 = dd[0], dd[1], dd[2], dd[3]
    for q in range(n):
        uq = np.uint64(q)
        t0, t1, t2, t3 = dd0[ud + uq], dd1[ud + uq], dd2[ud + uq], dd3[ud + uq]
        for c in range(3):
            x = p[c, ux + uq]
            y = uy + uq
            total = (x - p[c, y]) * t0 + (x - p[c, y + one]) * t1 + (x - p[c, y + two]) * t2 + (x - p[c, y + three]) * t3
            d_x[c, ux + uq] += 2.0 * total
    # d_y at y0 + u: pair g's term is there when 0 <= u - g < n.
    for u in range(min(_GROUP - 1, n + _GROUP - 1)):
        _scatter_y_edge(d_y, p, dd, x0, y0, d0, n, u)
    for u in range(_GROUP - 1, n):
        uu = np.uint64(u)
        t0, t1, t2, t3 = dd0[ud + uu], dd1[ud + uu - one], dd2[ud + uu - two], dd3[ud + uu - three]
        for c in range(3):
            y = p[c, uy + uu]
            x = ux + uu
            total = (p[c, x] - y) * t0 + (p[c, x - one] - y) * t1 + (p[c, x - two] - y) * t2 + (p[c, x - three] - y) * t3
            d_y[c, uy + uu] -= 2.0 * total
    for u in range(max(n, _GROUP - 1), n + _GROUP - 1):
        _scatter_y_edge(d_y, p, dd, x0, y0, d0, n, u)


@numba.njit(cache=True, fastmath=_FAST)
def _scatter_y_edge(d_y, p, dd, x0, y0, d0, n, u):
    """One entry y0 + u of ``_scatter_products_group``'s second pass, with only the pairs that
    have a term there."""
    for g in range(max(0, u - n + 1), min(_GROUP, u + 1)):
        t = 2.0 * dd[g, d0 + u - g]
        for c in range(p.shape[0]):
            d_y[c, y0 + u] -= (p[c, x0 + u - g] - p[c, y0 + u]) * t


@numba.njit(cache=True)
def _both_shared(i, j, r, w, k):
    """Whether offset (i, j) and its mirror share both boxes: all taps valid along y and x."""
    return _is_full(*_tap_range(i, r, w, k), k) and _is_full(*_tap_range(j, r, w, k), k)


@numba.njit(cache=True, fastmath=_FAST)
def _pair_block_adjoint(gmap_o, gmap_m, y_pairs_o, y_quads_o, y_pairs_m, y_quads_m, dt_o, dt_m, dd, pairs, quads, d_fx, i, j, r, w, k, wp, qa, qb, resume, doubled):
    """Block [qa, qb) of pair (i, j)'s adjoint up to dd, the cotangent of its distances.

    From its maps of cotangents (gmap_o, and gmap_m unless both boxes are shared): dt[z] =
    sum_{ky in [ylo, yhi)} gmap[z - ky Wp], dd[z] = sum_{kx} dt[z - kx] over the pair; resume:
    the block follows the pair's previous one, whose y doubling and dt rows carry over.
    """
    dy, dx, mi, mj = i - r, j - r, 2 * r - i, 2 * r - j
    paired = dy * wp + dx != 0
    ylo, yhi = _tap_range(i, r, w, k)
    mylo, myhi = _tap_range(mi, r, w, k)
    xlo, xhi = _tap_range(j, r, w, k)
    mxlo, mxhi = _tap_range(mj, r, w, k)
    x_shared = _is_full(xlo, xhi, k)
    both_shared = x_shared and _is_full(ylo, yhi, k)
    if not resume:  # the K - 1 entries before the block may hold an earlier pair's
        dt_o[qa - k + 1 : qa] = 0
        dt_m[qa - k + 1 : qa] = 0
    if doubled:
        # The doubling of gmap for the y-box adjoints reads K - 1 rows back: fresh, or only the
        # rows below the previous block's.
        start, quads_start = (qa - wp, qa - 3 * wp) if resume else (qa - (k - 1) * wp, qa - (k - 1) * wp)
        _doubling(gmap_o, y_pairs_o, y_quads_o, start, qb - wp, wp, quads_start)
        if not both_shared:
            _doubling(gmap_m, y_pairs_m, y_quads_m, start, qb - wp, wp, quads_start)
    _assemble(dt_o, None, gmap_o, qa, qb, 1 - yhi, 1 - ylo, wp, y_pairs_o, y_quads_o)
    if both_shared or not paired:
        _window_sum(dd, None, dt_o, qa, qb, 1 - xhi, 1 - xlo, 1, pairs, quads)
    elif x_shared:
        _assemble(dt_o, dt_o, gmap_m, qa, qb, 1 - myhi, 1 - mylo, wp, y_pairs_m, y_quads_m)
        _window_sum(dd, None, dt_o, qa, qb, 1 - xhi, 1 - xlo, 1, pairs, quads)
    else:
        _assemble(dt_m, None, gmap_m, qa, qb, 1 - myhi, 1 - mylo, wp, y_pairs_m, y_quads_m)
        delta = dy * wp + dx
        _add(d_fx[_edge_row(j, r, w), qa:qb], dt_o[qa:qb])
        _add(d_fx[_edge_row(mj, r, w), qa + delta : qb + delta], dt_m[qa:qb])
        _window_sum(dd, None, dt_o, qa, qb, 1 - xhi, 1 - xlo, 1, pairs, quads)
        _window_sum(dd, dd, dt_m, qa, qb, 1 - mxhi, 1 - mxlo, 1, pairs, quads)


@numba.njit(cache=True)
def _zero_rows(rows, n, like):
    """(rows, n') zeros, n' >= n, every row starting on a 64-byte boundary (see ``_zeros``)."""
    unit = 64 // like.itemsize
    stride = (n + unit - 1) // unit * unit
    return _zeros(rows * stride, like).reshape((rows, stride))


@numba.njit(cache=True, fastmath=_FAST)
def _logits_transpose(pf, qm, row_m, s, k, height, grad, d_pf):
    """d_pf += d/dP2 of sum_{o, m} grad[o, m] d^2(m, o): the adjoint of ``_logits`` (flat).

    Per pair o, -o (see ``_logits``), the masked pixels' cotangents are written onto the grid of
    o's frame (gmap_o at z = q, gmap_m at z = q - delta) and carried, block by block of tap rows,
    through the y-box adjoints (dt), the x-box adjoints (dd, summed over the pair) and, once per
    pair, the adjoint of the shared distances into d_pf. When both boxes are shared, the pair's
    cotangents share one map. The pairs of one dy go in groups of _GROUP consecutive dx that
    walk the same blocks (those that a masked pixel of any of them reaches), each with arrays of
    its own, so that a full group's products take one ``_scatter_products_group``.
    """
    r, w = s // 2, k // 2
    hc = height + 2 * w
    wp = pf.shape[1] // (hc + 2 * r)
    n_c = pf.shape[0]
    centre = r * wp + r
    n_tap = hc * wp - 2 * r
    # Flat arrays indexed by lead + z: z goes down to -(R Wp + R) and the adjoint boxes read up
    # to K - 1 rows and columns further back.
    unit = _line_unit(wp, pf)
    lead = centre + ((k - 1) * (wp + 1) + unit - 1) // unit * unit  # lead = centre (mod unit)
    size = lead + hc * wp + centre
    # The complements' cotangents, in rows by ``_edge_row``.
    d_fx = np.zeros((2 * w, size), pf.dtype)
    g_rows = np.zeros((2 * w, height * wp), pf.dtype)
    d_centre = np.zeros_like(pf)  # indexed by centre + z, like pf
    # One row per member of a group.
    gmap_o, gmap_m = _zero_rows(_GROUP, size, pf), _zero_rows(_GROUP, size, pf)
    dt_o, dt_m, dd = _zero_rows(_GROUP, size, pf), _zero_rows(_GROUP, size, pf), _zero_rows(_GROUP, size, pf)
    y_pairs_o, y_quads_o = _zero_rows(_GROUP, size, pf), _zero_rows(_GROUP, size, pf)
    y_pairs_m, y_quads_m = _zero_rows(_GROUP, size, pf), _zero_rows(_GROUP, size, pf)
    pairs, quads = _zeros(size, pf), _zeros(size, pf)
    doubled = k >= 4  # shorter boxes add src directly
    for i in range(r, s):
        dy, mi = i - r, 2 * r - i
        ylo, yhi = _tap_range(i, r, w, k)
        mylo, myhi = _tap_range(mi, r, w, k)
        y_shared = _is_full(ylo, yhi, k)
        for j0 in range(r if dy == 0 else 0, s, _GROUP):  # (0, -dx) was done as (0, dx)
            members = min(_GROUP, s - j0)
            for g in range(members):
                j = j0 + g
                dx, mj = j - r, 2 * r - j
                delta = dy * wp + dx
                grad_o, grad_m = grad[i * s + j], grad[mi * s + mj]
                if not y_shared:  # comp[i] is 0 for an interior dy
                    g_o, g_m = g_rows[_edge_row(i, r, w)], g_rows[_edge_row(mi, r, w)]
                    for m in range(qm.shape[0]):
                        g_o[qm[m]] += grad_o[m]
                        g_m[qm[m]] += grad_m[m]
                for m in range(qm.shape[0]):
                    gmap_o[g, lead + qm[m]] = grad_o[m]
                map_m = gmap_o[g] if _both_shared(i, j, r, w, k) else gmap_m[g]
                if delta != 0:
                    for m in range(qm.shape[0]):
                        map_m[lead + qm[m] - delta] += grad_m[m]
            delta0 = dy * wp + j0 - r
            left = min(0, r - (j0 + members - 1))  # the group's first column in the z frame
            paired = dy != 0 or j0 + members - 1 > r  # a member has delta != 0
            done = -1  # the end of the last block computed: the x-box adjoint reads K - 1 back
            for y0 in range(-dy, hc, _BLOCK_ROWS):
                y1 = min(y0 + _BLOCK_ROWS, hc)
                m0, m1 = _masked_span(row_m, y0 - k + 1, y1, height)
                n0, n1 = _masked_span(row_m, y0 - k + 1 + dy, y1 + dy, height)
                if m0 == m1 and not (paired and n0 < n1):
                    continue  # no masked pixel within K - 1 rows above: dt is 0 here
                qa = lead + _block_start(y0, -dy, wp, left, centre, unit)
                qb = lead + (n_tap if y1 == hc else min(_block_start(y1, -dy, wp, left, centre, unit), n_tap))
                resume = done == qa
                done = qb
                for g in range(members):
                    _pair_block_adjoint(
                        gmap_o[g], gmap_m[g], y_pairs_o[g], y_quads_o[g], y_pairs_m[g], y_quads_m[g], dt_o[g], dt_m[g], dd[g],
                        pairs, quads, d_fx, i, j0 + g, r, w, k, wp, qa, qb, resume, doubled,
                    )
                a, b = centre + qa - lead, centre + qb - lead
                if members == _GROUP and n_c == 3:
                    _scatter_products_group(d_centre, d_pf, pf, dd, a, a + delta0, qa, b - a)
                    continue
                for g in range(members):
                    if n_c == 3:
                        _scatter_products3(d_centre, d_pf, pf, dd[g], a, a + delta0 + g, qa, b - a)
                        continue
                    for c in range(n_c):
                        _scatter_products(
                            d_centre[c, a:b],
                            d_pf[c, a + delta0 + g : b + delta0 + g],
                            pf[c, a:b],
                            pf[c, a + delta0 + g : b + delta0 + g],
                            dd[g, qa:qb],
                            pairs,
                        )
            for g in range(members):
                map_m = gmap_o[g] if _both_shared(i, j0 + g, r, w, k) else gmap_m[g]
                for m in range(qm.shape[0]):
                    gmap_o[g, lead + qm[m]] = 0
                    map_m[lead + qm[m] - delta0 - g] = 0
    width = wp - 2 * r - 2 * w
    # Energy complements (see _complements): comp[i] = sum_{ky invalid} row_energy[q + ky Wp],
    # fx[j] = sum_{kx invalid} E[q + kx], row_energy = sum_kx E[q + kx].
    n_box = n_tap - (k - 1)
    n_comp = (height - 1) * wp + width
    d_row_energy = np.zeros(hc * wp, pf.dtype)
    d_energy = np.zeros(hc * wp, pf.dtype)
    for o in range(s):
        lo, hi = _tap_range(o, r, w, k)
        row = _edge_row(o, r, w)
        for ky in range(k):
            if ky < lo or ky >= hi:
                _add(d_row_energy[ky * wp : ky * wp + n_comp], g_rows[row, :n_comp])
        for kx in range(k):
            if kx < lo or kx >= hi:
                _add(d_energy[kx : kx + n_box], d_fx[row, lead : lead + n_box])
    for kx in range(k):
        _add(d_energy[kx : kx + n_box], d_row_energy[:n_box])
    for c in range(n_c):
        _add(d_pf[c], d_centre[c])
        x, d_x = pf[c, centre : centre + n_tap], d_pf[c, centre : centre + n_tap]
        for q in range(n_tap):
            d_x[q] += 2.0 * x[q] * d_energy[q]


@numba.njit(cache=True)
def _masked_pixels(mask, wp):
    """Flat indices y Wp + x of the pixels with mask != 0 (row-major), their weights, and
    row_m[y]: the first of them in row y (row_m[H] = their number)."""
    height, width = mask.shape
    count = 0
    for y in range(height):
        for x in range(width):
            count += mask[y, x] != 0
    qm = np.empty(count, np.int64)
    weights = np.empty(count, mask.dtype)
    row_m = np.empty(height + 1, np.int64)
    m = 0
    for y in range(height):
        row_m[y] = m
        for x in range(width):
            if mask[y, x] != 0:
                qm[m], weights[m] = y * wp + x, mask[y, x]
                m += 1
    row_m[height] = m
    return qm, weights, row_m


@numba.njit(cache=True, fastmath=_FAST)
def _image_loss(p_sr, p_hr, mask, scale, alpha, eps, search_size, window_size, with_grad, d_p, scratch):
    """One image's masked sum of KL + alpha * L1 entries; with_grad: d_p += d value / d p_sr.

    p_sr, p_hr, d_p: (C, Hp * Wp) flat padded images (``ssl._prepare``); mask: (H, W) row weights,
    pixels with mask == 0 take no part. scale = 1 / (C window_size^2 h); alpha, eps (1e-10) are
    scalars of the images' dtype. scratch: room for both graphs' logits (``_logits_scratch``).
    """
    height = mask.shape[0]
    wp = p_sr.shape[1] // (height + search_size + window_size - 2)  # Hp = H + 2R + 2w
    qm, weights, row_m = _masked_pixels(mask, wp)
    if qm.shape[0] == 0:
        return eps - eps  # 0 in the images' dtype
    shape = (search_size * search_size, qm.shape[0])
    size = shape[0] * shape[1]
    a_sr, a_hr = scratch[:size].reshape(shape), scratch[size : 2 * size].reshape(shape)
    _logits(p_sr, qm, row_m, search_size, window_size, height, scale, a_sr)
    _logits(p_hr, qm, row_m, search_size, window_size, height, scale, a_hr)
    value = _row_terms(a_sr, a_hr, weights, alpha, scale, eps, with_grad)
    if with_grad:
        _logits_transpose(p_sr, qm, row_m, search_size, window_size, height, a_sr, d_p)
    return value


@numba.njit(cache=True)
def _logits_scratch(mask, search_size, images):
    """Room for ``_image_loss``'s logits on any one of ``images`` (indices into mask).

    One per worker, reused for all of its images: the logits are megabytes, and an allocation
    that large comes as fresh pages from the OS, a page fault per 4 KiB (~10% of the loss's time
    at 4 images per call when they were allocated per image).
    """
    most = 0
    for b in images:
        most = max(most, np.count_nonzero(mask[b]))
    return np.empty(2 * search_size * search_size * most, mask.dtype)


# The batch drivers: (N, C, Hp * Wp) images, (N, H, W) masks, values (N,) and d_p (zeroed) out.
# The parallel one deals the images out to ``workers`` tasks of numba's thread pool.
@numba.njit(cache=True, parallel=True)
def _batch_parallel(p_sr, p_hr, mask, scale, alpha, eps, search_size, window_size, with_grad, values, d_p, workers):
    n = p_sr.shape[0]
    workers = min(workers, n)
    for worker in numba.prange(workers):
        images = np.arange(worker, n, workers)
        scratch = _logits_scratch(mask, search_size, images)
        for b in images:
            values[b] = _image_loss(p_sr[b], p_hr[b], mask[b], scale, alpha, eps, search_size, window_size, with_grad, d_p[b], scratch)


@numba.njit(cache=True)
def _batch_serial(p_sr, p_hr, mask, scale, alpha, eps, search_size, window_size, with_grad, values, d_p):
    scratch = _logits_scratch(mask, search_size, np.arange(p_sr.shape[0]))
    for b in range(p_sr.shape[0]):
        values[b] = _image_loss(p_sr[b], p_hr[b], mask[b], scale, alpha, eps, search_size, window_size, with_grad, d_p[b], scratch)


# The XLA FFI glue: XLA calls ``handler(XLA_FFI_CallFrame*)`` (xla/ffi/api/c_api.h, the typed FFI
# that jax.ffi targets) without Python in between, so the kernel runs without the GIL, and the
# compiled executables stay in the persistent compilation cache (a Python callback would keep
# them out). All structs are read as arrays of 64-bit words; offsets are those of c_api.h on
# x86-64: CallFrame {struct_size, extension_start, api, ctx, stage, args: Args, rets: Rets, ...},
# Args/Rets {struct_size, extension_start, size, types, pointers}, Buffer {struct_size,
# extension_start, dtype, data, rank, dims}.
_FFI_API_VERSION = (0, 3)  # XLA_FFI_API_MAJOR / MINOR of the jaxlib this was written against
_EXTENSION_METADATA = 1
_STAGE_EXECUTE = 3


@intrinsic
def _pointer(typingctx, address):
    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], cgutils.voidptr_t)

    return types.voidptr(types.int64), codegen


@numba.njit(cache=True)
def _words(address, count):
    return numba.carray(_pointer(address), (count,), np.int64)


@numba.njit(cache=True)
def _buffer(pointers, index, dtype):
    """The data of buffer ``index`` of an Args/Rets pointer array, as a flat array."""
    buffer = _words(_words(pointers, index + 1)[index], 6)
    size = 1
    for extent in _words(buffer[5], buffer[4]):
        size *= extent
    return numba.carray(_pointer(buffer[3]), (size,), dtype), _words(buffer[5], buffer[4])


@numba.njit(cache=True)
def _handle(frame_address, dtype):
    """args: config int32 (search, window, with_grad, workers), scalars (scale, alpha, eps), P2 of SR and
    HR (N, C, Hp, Wp), mask (N, H, W); rets: value (), d P2_SR (only when with_grad)."""
    frame = _words(frame_address, 15)
    if frame[1] != 0:
        # XLA asks for the handler's metadata: fill in the API version it was built for.
        extension = _words(frame[1], 4)
        if extension[1] & 0xFFFFFFFF == _EXTENSION_METADATA:
            metadata = numba.carray(_pointer(extension[3]), (9,), np.int32)
            metadata[6], metadata[7] = _FFI_API_VERSION
            metadata[8] = 0  # traits
        return _pointer(0)
    if frame[4] & 0xFFFFFFFF != _STAGE_EXECUTE:
        return _pointer(0)
    args, rets = frame[9], frame[14]
    config = _buffer(args, 0, np.int32)[0]
    # int64 sizes: the same signature as a call from Python, so both share one compiled kernel.
    search_size, window_size = np.int64(config[0]), np.int64(config[1])
    with_grad, workers = config[2] != 0, np.int64(config[3])
    scalars = _buffer(args, 1, dtype)[0]
    p_sr, dims = _buffer(args, 2, dtype)
    p_hr = _buffer(args, 3, dtype)[0]
    mask, mask_dims = _buffer(args, 4, dtype)
    n = dims[0]
    flat = (n, dims[1], dims[2] * dims[3])
    mask = mask.reshape((n, mask_dims[1], mask_dims[2]))
    values = np.empty(n, dtype)
    if with_grad:  # accumulated in place in XLA's (uninitialised) output buffer
        d_p = _buffer(rets, 1, dtype)[0]
        d_p[:] = 0
        d_p = d_p.reshape(flat)
    else:
        d_p = np.empty((n, 0, 0), dtype)
    args = (p_sr.reshape(flat), p_hr.reshape(flat), mask, scalars[0], scalars[1], scalars[2], search_size, window_size, with_grad, values, d_p)
    if workers > 1:
        _batch_parallel(*args, workers)
    else:
        _batch_serial(*args)
    _buffer(rets, 0, dtype)[0][0] = values.sum()
    return _pointer(0)


def _handle_float32(frame_address):
    return _handle(frame_address, np.float32)


def _handle_float64(frame_address):
    return _handle(frame_address, np.float64)


def threads() -> int:
    """The threads of numba's pool: the most images ``_batch_parallel`` works on at once."""
    return numba.get_num_threads()


@functools.cache
def ffi_target(dtype_name: str) -> str:
    """Compiles (or loads from numba's cache) and registers the handler for one dtype."""
    handle = {"float32": _handle_float32, "float64": _handle_float64}[dtype_name]
    # The parallel driver calls into numba's thread pool through pointers that are set when the
    # pool starts. A handler loaded from numba's cache does not start it (only compiling or a call
    # through a Python dispatcher does) and links against null pointers: start it first.
    numba.get_num_threads()
    handler = numba.cfunc(types.voidptr(types.int64), cache=True)(handle)
    new_capsule = ctypes.pythonapi.PyCapsule_New
    new_capsule.restype = ctypes.py_object
    new_capsule.argtypes = (ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p)
    name = f"sslsr_ssl_loss_{dtype_name}"
    jax.ffi.register_ffi_target(name, new_capsule(handler.address, None, None), platform="cpu")
    # The handler object owns the compiled code: keep it alive with the registration.
    _HANDLERS.append(handler)
    return name


_HANDLERS = []
