"""Self-similarity graph (SSG) and the self-similarity loss (SSL) of Chen et al., ACM MM 2024.

Formulation (dense, offset-major, exact)
----------------------------------------
The paper's code materialises, for every edge pixel p, its search area and every window in it
(625 x 81 x C values per pixel). Here the graph is computed densely per offset instead. Let
R = search_size // 2, w = window_size // 2, P the image reflect-padded by R, o = (dy, dx) in
[-R, R]^2 the offset of candidate q = p + o and k in [-w, w]^2 a window tap. The tap compares
P[p + k] with the search area at o + k, which is P[p + o + k] when |o + k| <= R on both axes and
0 otherwise (the search area is zero-padded). Hence, with

    D_o(x) = sum_c (P[x] - P[x + o])^2        E(x) = sum_c P[x]^2,

    d^2(p, o) = sum_{k valid for o} D_o(p + k)  +  sum_{k not valid for o} E(p + k).

Validity factorises per axis, v(o, k) = v(dy, ky) v(dx, kx), and the valid taps of one axis form a
contiguous range that depends only on that axis' offset, so both sums are small separable box sums
(<= window_size taps per axis) with 0/1 weights. The complement is written as

    sum_{ky invalid} [sum_{all kx} E](p + k)  +  sum_{ky valid} [sum_{kx invalid} E](p + k),

so every term is a sum of non-negative numbers: no summed-area table and no "full box minus valid
rectangle" cancellation, and float32 keeps the 1e-5 SSG tolerance on bright images. Every value
is the same sum of the same squared differences as the paper's patch comparison, only reordered,
so the result is exact up to float rounding.

Cost: ~625 offsets x (3C + 4 window_size) flops per pixel for *all* pixels, independent of the
window size's square; the mask only selects the rows of the final sums. Three implementations,
all tested against the same references:
- ``impl="kernel"`` (the default on CPU): ``sslsr.losses.ssl_kernel``, the formulation compiled
  with numba and called through the XLA FFI. Offsets o and -o share their squared differences
  (and, when interior, their box sums), so it works per pair of offsets; it walks the image in
  blocks of 16 rows that stay in L1/L2, skips blocks without masked pixels, runs the exps and loss
  terms on the masked pixels only, and spreads the images over the cores. See
  ``benchmarks/ssl_speed.py``.
- ``impl="scan"``: the same in XLA. Offsets are processed one row (fixed dy, all dx) per step of
  a software-pipelined scan whose stages pass their results through the loop carry (XLA:CPU
  would otherwise re-run a 9-tap box inside the next one or fuse a dynamic slice into the
  arithmetic, which stops vectorisation); the padded images are cut into strips of 32 rows
  processed one after the other with ``lax.map``, so memory is a few (625, 32, W) float32 graphs
  whatever the batch size. XLA:CPU runs every stage as a pass over memory on one core, which is
  why the kernel exists; "scan" stays as the pure-XLA reference.
- ``impl="fused"`` (the default on GPUs and TPUs, where the scan's ~100 tiny sequential steps per
  strip would leave the device idle): all 625 offsets of a few whole images at once as a handful
  of large elementwise ops, the loss stage's adjoint by hand and the distance stage's by
  autodiff, one ``lax.map`` step per 4 images (memory still flat in the batch).
The backward pass of "kernel" and "scan" is written by hand (the adjoint of the same pipeline)
and, because the loss is a scalar, evaluated inside the forward rule of a ``custom_vjp``: the
only residual is the image-sized gradient.

Semantics of the paper's code that this module matches
------------------------------------------------------
1. The image is padded by search_size // 2 with reflect padding (no edge repeat, ``dcb|abcd``);
   the search area of pixel p is the search_size^2 block centred on p in the padded image.
2. Each candidate q in the search area is scored by comparing the window_size^2 window around p
   with the window around q; taps of q's window that fall outside the search area read 0 (the
   search area is zero-padded), contributing (I[p + k] - 0)^2. This affects every offset beyond
   +-(search//2 - window//2) on either axis (336 of the 625 for 25/9), not only image borders.
3. d^2 = sum over taps and channels / (C * window_size^2); S = exp(-d^2 / h); each row of
   search_size^2 values is divided by (row sum + 1e-10).
4. The rows of all masked pixels of all images are concatenated: an image with an empty mask adds
   nothing (even if it holds NaN or inf: rows are selected with ``where``, never multiplied by
   the mask) and an all-empty batch gives exactly 0 (with zero, finite gradients). With
   S' = max(S, 1e-10), KL = mean over all entries of S_HR' (log S_HR' - log S_SR') (PyTorch's
   ``kl_div(log(clamp(S_SR)), clamp(S_HR), reduction="mean")``) and L1 = mean |S_SR - S_HR|.
5. The mask comes from the ground truth only (see ``sslsr.losses.edge.edge_mask``); crops, flips
   and rotations must move it together with the HR image.

Stride: the paper describes sampling the edge pixels with a stride-3 pattern
(``mask_stride_pattern``), but all three published GAN configs gate it on a key none of them
sets, so the published numbers use every edge pixel. The trainer defaults to stride 1 for that
reason; stride 3 is available by multiplying the pattern into the mask.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from sslsr.losses import ssl_kernel

_EPS = 1e-10
# Row strips and chunks per implementation. "scan" (CPU): 32-row strips, 4096 pixels per lax.map
# step, so a chunk's dense logits are 625 x 4096 x 4 bytes = 10 MB per image kind and one
# offset row's working arrays (~0.5 MB) stay in L2. "fused" (accelerators): whole 128-row images,
# 4 per step (~0.2 GB per (625, N, H, W) array), few enough launches that the device stays busy.
# Memory is flat in the batch size for both.
_STRIP_ROWS = {"scan": 32, "fused": 128}
_CHUNK_PIXELS = {"scan": 32 * 128, "fused": 4 * 128 * 128}
IMPLS = ("auto", "kernel", "scan", "fused")


def _compute_dtype():
    # float64 when x64 is enabled, float32 otherwise; never the model's (possibly bf16) dtype.
    return jax.dtypes.canonicalize_dtype(jnp.float64)


def _check_sizes(name: str, height: int, width: int, search_size: int, window_size: int) -> None:
    if search_size < 1 or search_size % 2 == 0:
        raise ValueError(f"{name}: search_size must be a positive odd integer, got {search_size}")
    if window_size < 1 or window_size % 2 == 0 or window_size > search_size:
        raise ValueError(
            f"{name}: window_size must be a positive odd integer <= search_size, got {window_size}"
        )
    need = search_size // 2 + 1
    if height < need or width < need:
        raise ValueError(
            f"{name}: images must be at least search_size//2+1 = {need} pixels on each side "
            f"(reflect padding by {search_size // 2}), got H={height}, W={width}"
        )


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _check_scalar(name: str, arg: str, value, positive: bool) -> None:
    """Reject a non-finite (or non-positive) concrete scalar; traced values cannot be checked."""
    if not _is_concrete(value):
        return
    v = float(np.asarray(value))
    if not math.isfinite(v) or (positive and v <= 0) or (not positive and v < 0):
        need = "a finite number > 0" if positive else "a finite number >= 0"
        raise ValueError(f"{name}: {arg} must be {need}, got {v}")


def _check_image(name: str, arg: str, x) -> None:
    """Images must be floats in [0, 1]: uint8 or [0, 255] input would silently turn SSL off.

    The dtype is checked always (it is static); the range only on concrete arrays (outside jit).
    """
    dtype = np.dtype(jnp.asarray(x).dtype) if not hasattr(x, "dtype") else np.dtype(x.dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"{name}: {arg} must be a float image in [0, 1], got dtype {dtype} (divide by 255)")
    if _is_concrete(x) and np.size(x):
        # A concrete array closed over by a jitted function reaches here while tracing: evaluate
        # the range eagerly instead of staging it into the trace (float() of a tracer fails).
        with jax.ensure_compile_time_eval():
            lo, hi = float(jnp.min(x)), float(jnp.max(x))
        # NaN compares False both ways: it is the loss's business (see the NaN rule), not a range.
        if hi > 1.5 or lo < -0.5:
            raise ValueError(
                f"{name}: {arg} must hold values in [0, 1], got [{lo:g}, {hi:g}]"
                + (" (looks like [0, 255]: divide by 255)" if hi > 1.5 else "")
            )


def _tap_weights(search_size: int, window_size: int) -> np.ndarray:
    """v[o + R, k + w] = 1 where tap k of the window of offset o lies inside the search area."""
    r, w = search_size // 2, window_size // 2
    o = np.arange(-r, r + 1)[:, None]
    k = np.arange(-w, w + 1)[None, :]
    return (np.abs(o + k) <= r).astype(np.float64)


def _add_all(terms):
    # Explicit adds instead of a reduce over a major axis: XLA:CPU fuses them into one
    # vectorised loop, while its major-axis partial reductions are several times slower.
    terms = list(terms)
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total


def _prepare(x: jax.Array, search_size: int, window_size: int) -> jax.Array:
    """(N, H, W, C) -> channels-first P2 (N, C, H + 2R + 2w, W + 2R + 2w).

    Reflect padding by R builds the search areas; the extra zero border of w is only ever read by
    taps whose weight is 0 and keeps every slice static.
    """
    r, w = search_size // 2, window_size // 2
    xc = jnp.moveaxis(x, -1, 1)  # W becomes the contiguous, vectorised axis
    padded = jnp.pad(xc, ((0, 0), (0, 0), (r, r), (r, r)), mode="reflect")
    return jnp.pad(padded, ((0, 0), (0, 0), (w, w), (w, w)))


class _Geometry:
    """Static sizes of one (search, window, H, W) problem, and the box stages both impls share.

    Array axes: ``d`` and ``t`` are (..., S_dx, N, Hc, Wc / W), logits (..., S_dx, N, H, W), where
    "..." is nothing (one offset row, "scan") or S_dy (all offsets, "fused").
    """

    def __init__(self, search_size, window_size, height, width):
        self.s, self.k = search_size, window_size
        self.r, self.w = search_size // 2, window_size // 2
        self.height, self.width = height, width
        self.hc, self.wc = height + 2 * self.w, width + 2 * self.w  # tap positions p + k
        self.v = _tap_weights(search_size, window_size)  # (S, K)

    def centre(self, p2):
        return p2[:, :, self.r : self.r + self.hc, self.r : self.r + self.wc]

    def complements(self, centre):
        """Taps that read the zero-padded search area contribute E = sum_c P^2 only.

        Returns fx (S_dx, N, Hc, W) = sum_j (1 - vx[j]) E[x + j] and comp_rows (S_dy, N, H, W) =
        sum_i (1 - vy[i]) sum_j E[y + i, x + j].
        """
        k, height, width = self.k, self.height, self.width
        inv = jnp.asarray(1.0 - self.v, centre.dtype)
        energy = _channel_sum(centre * centre)  # (N, Hc, Wc)
        row_energy = _add_all(energy[:, :, j : j + width] for j in range(k))  # (N, Hc, W)
        fx = _add_all(inv[:, j, None, None, None] * energy[None, :, :, j : j + width] for j in range(k))
        comp_rows = _add_all(inv[:, i, None, None, None] * row_energy[None, :, i : i + height] for i in range(k))
        return fx, comp_rows

    def distances(self, centre, rows):
        """D_o = sum_c (P[x] - P[x + o])^2 for every dx; rows: (..., N, C, Hc, Wp) shifted by dy."""
        return jnp.stack(
            [_channel_sum((centre - rows[..., dx : dx + self.wc]) ** 2) for dx in range(self.s)],
            axis=-4,
        )

    def x_box(self, d, fx):
        v = jnp.asarray(self.v, d.dtype)
        return _add_all(v[:, j, None, None, None] * d[..., j : j + self.width] for j in range(self.k)) + fx

    def y_box(self, t, wy, comp):
        """sum_i wy[i] t[y + i] + comp; wy[i] broadcasts against t (a scalar for one offset row)."""
        return _add_all(wy[i] * t[..., i : i + self.height, :] for i in range(self.k)) + comp


def _channel_sum(x):  # over the channel axis of (..., C, H, W)
    return _add_all(x[..., c, :, :] for c in range(x.shape[-3]))


def _logits(p2: jax.Array, scale, g: _Geometry):
    """a = d^2 / (C K^2 h) for every offset and pixel, and log(row sum of exp(-a) + 1e-10).

    One offset row per scan step ("scan" implementation).

    Args:
      p2: (N, C, Hp, Wp) from ``_prepare``.

    Returns:
      a (S + 1, S, N, H, W) with a[1 + dy_index, dx_index] (a[0] is pipeline fill; indexing
      instead of slicing it off avoids a copy), log_z (N, H, W).
    """
    s = g.s
    v = jnp.asarray(g.v, p2.dtype)
    centre = g.centre(p2)
    fx, comp_rows = g.complements(centre)

    def rows_at(dy):  # P2 rows shifted by the offset row dy: (N, C, Hc, Wp)
        return jax.lax.dynamic_slice_in_dim(p2, jnp.minimum(dy, s - 1), g.hc, axis=2)

    def x_box(rows):
        return g.x_box(g.distances(centre, rows), fx)

    # A software pipeline over offset rows: step i slices the rows of offset row i + 2, computes
    # the x-box of row i + 1, the y-box of row i and the row sum of row i - 1. Every stage reads
    # its input from the loop carry, so XLA:CPU can neither fuse a 9-tap box into the next one
    # (redoing it 9 times) nor a dynamic slice into the arithmetic (which stops vectorisation),
    # nor duplicate a producer into two consumers; the per-step arrays stay cache-sized.
    def step(carry, i):
        rows, t, a_prev, z = carry
        z = z + _add_all(jnp.exp(-a_prev[dx]) for dx in range(s))
        dy = jnp.minimum(i, s - 1)
        a = scale * g.y_box(t, v[dy], comp_rows[dy])
        return (rows_at(i + 2), x_box(rows), a, z), a_prev

    n, height, width = p2.shape[0], g.height, g.width
    init = (
        rows_at(1),
        x_box(rows_at(0)),
        jnp.full((s, n, height, width), jnp.inf, p2.dtype),
        jnp.zeros((n, height, width), p2.dtype),
    )
    (_, _, _, z), a = jax.lax.scan(step, init, jnp.arange(s + 1))
    # a >= 0 and a == 0 at o = 0, so z >= 1: no overflow, no log(0).
    return a, jnp.log(z + _EPS)


def _dense_logits(p2: jax.Array, scale, g: _Geometry):
    """The same a (S_dy, S_dx, N, H, W) as ``_logits`` in a few large fused ops ("fused")."""
    s = g.s
    v = jnp.asarray(g.v, p2.dtype)
    centre = g.centre(p2)
    fx, comp_rows = g.complements(centre)
    rows = jnp.stack([p2[:, :, dy : dy + g.hc] for dy in range(s)])  # (S_dy, N, C, Hc, Wp)
    t = g.x_box(g.distances(centre, rows), fx)
    wy = [v[:, i, None, None, None, None] for i in range(g.k)]
    return scale * g.y_box(t, wy, comp_rows[:, None])


def _shifted_sum(q):
    """out[..., x] = sum_d q[d][..., x - d] for x in [0, L + len(q) - 1), q[d] of width L.

    The interior, where every q[d] contributes, is a sum of plain slices; only the two borders of
    width len(q) - 1 need zero padding (a padded operand costs a select per element in XLA:CPU).
    """
    s, wc = len(q), q[0].shape[-1]
    zero = ((0, 0),) * (q[0].ndim - 1)
    if wc < s:  # tiny images: no interior
        return _add_all(jnp.pad(q[d], zero + ((d, s - 1 - d),)) for d in range(s))
    inner = _add_all(q[d][..., s - 1 - d : wc - d] for d in range(s))
    if s == 1:
        return inner
    left = _add_all(jnp.pad(q[d][..., : s - 1 - d], zero + ((d, 0),)) for d in range(s - 1))
    right = _add_all(jnp.pad(q[d][..., wc - d :], zero + ((0, s - 1 - d),)) for d in range(1, s))
    return jnp.concatenate([left, inner, right], axis=-1)


def _logits_transpose(p2, grad_rows, g: _Geometry):
    """Cotangent of P2 given the cotangent of d^2, -> (N, C, Hp, Wp).

    The adjoint of ``_logits``' distance computation, written by hand as the same kind of
    pipelined scan, instead of autodiff's stacked per-slice residuals and pad-and-add transposes.

    Args:
      p2: (N, C, Hp, Wp) from ``_prepare``.
      grad_rows: dy_index -> (S_dx, N, H, W), the cotangent of d^2 for one row of offsets.
    """
    dtype = p2.dtype
    s, k, w, height, width = g.s, g.k, g.w, g.height, g.width
    v = jnp.asarray(g.v, dtype)
    inv = jnp.asarray(1.0 - g.v, dtype)
    centre = g.centre(p2)
    n, c = p2.shape[:2]
    pad_y = ((0, 0), (0, 0), (k - 1, k - 1), (0, 0))
    pad_x = ((0, 0), (0, 0), (0, 0), (k - 1, k - 1))

    def y_box_t(gd2, dy):  # d2 = sum_i vy[i] T[y + i]  ->  dT[yc] = sum_i vy[i] dd2[yc - i]
        gp = jnp.pad(gd2, pad_y)
        return _add_all(v[dy, i] * gp[:, :, 2 * w - i : 2 * w - i + g.hc] for i in range(k))

    def x_box_t(dt):  # T = sum_j vx[j] D[x + j]  ->  dD[xc] = sum_j vx[j] dT[xc - j]
        tp = jnp.pad(dt, pad_x)
        return _add_all(v[:, j, None, None, None] * tp[..., 2 * w - j : 2 * w - j + g.wc] for j in range(k))

    def rows_at(dy):
        return jax.lax.dynamic_slice_in_dim(p2, jnp.clip(dy, 0, s - 1), g.hc, axis=2)

    def to_image(rows, dd):
        # D_o = sum_c (centre - shifted)^2: +2 diff dD to the centre, -2 diff dD to the shifted
        # rows (returned as a slab of P2 rows, added at its row offset by the next stage).
        q = [2.0 * (centre - rows[:, :, :, dx : dx + g.wc]) * dd[dx][:, None] for dx in range(s)]
        return _shifted_sum(q), _add_all(q)

    # Pipeline (see _logits): step i forms the cotangent of offset row i, its transposed y-box
    # (row i - 1), transposed x-box (row i - 2), the image-space terms (row i - 3) and adds the
    # slab of row i - 4 into d_p2. Rows outside [0, S) enter as zeros and contribute nothing.
    def step(carry, i):
        gd2, dt, dd, rows, slab, d_p2, d_centre, d_fx, g_rows = carry
        dy4 = jnp.clip(i - 4, 0, s - 1)
        old = jax.lax.dynamic_slice_in_dim(d_p2, dy4, g.hc, axis=2)
        d_p2 = jax.lax.dynamic_update_slice_in_dim(d_p2, old - slab, dy4, axis=2)
        slab, d_c = to_image(rows, dd)
        d_centre = d_centre + d_c
        rows = rows_at(i - 2)
        dd = x_box_t(dt)
        d_fx = d_fx + dt
        dt = y_box_t(gd2, jnp.clip(i - 1, 0, s - 1))
        g_rows = g_rows.at[jnp.clip(i - 1, 0, s - 1)].add(_add_all(gd2[dx] for dx in range(s)))
        gd2 = jnp.where(i < s, grad_rows(jnp.minimum(i, s - 1)), 0.0)
        return (gd2, dt, dd, rows, slab, d_p2, d_centre, d_fx, g_rows), None

    zeros_t = jnp.zeros((s, n, g.hc, width), dtype)
    init = (
        jnp.zeros((s, n, height, width), dtype),
        zeros_t,
        jnp.zeros((s, n, g.hc, g.wc), dtype),
        rows_at(0),
        jnp.zeros((n, c, g.hc, p2.shape[-1]), dtype),
        jnp.zeros_like(p2),
        jnp.zeros((n, c, g.hc, g.wc), dtype),
        zeros_t,
        jnp.zeros((s, n, height, width), dtype),
    )
    carry = jax.lax.scan(step, init, jnp.arange(s + 4))[0]
    d_p2, d_centre, d_fx, g_rows = carry[5:]

    # Complement terms: comp_rows[dy] = sum_i (1 - vy[i]) row_energy[y + i],
    # fx[dx] = sum_j (1 - vx[j]) E[x + j], row_energy = sum_j E[x + j].
    h_i = jnp.pad(jnp.einsum("si,snhw->inhw", inv, g_rows), pad_y)  # (K, N, H + 2K - 2, W)
    d_row_energy = _add_all(h_i[i, :, 2 * w - i : 2 * w - i + g.hc] for i in range(k))  # (N, Hc, W)
    f_j = jnp.einsum("sj,snhw->jnhw", inv, d_fx) + d_row_energy[None]  # (K, N, Hc, W)
    fp = jnp.pad(f_j, pad_x)
    d_energy = _add_all(fp[j, :, :, 2 * w - j : 2 * w - j + g.wc] for j in range(k))  # (N, Hc, Wc)
    d_centre = d_centre + 2.0 * centre * d_energy[:, None]
    return d_p2.at[:, :, g.r : g.r + g.hc, g.r : g.r + g.wc].add(d_centre)


def _log_graph(x: jax.Array, search_size: int, window_size: int, h) -> jax.Array:
    """log of the row-normalised SSG, (S, S, N, H, W), unclamped."""
    n, height, width, c = x.shape
    g = _Geometry(search_size, window_size, height, width)
    a, log_z = _logits(_prepare(x, search_size, window_size), 1.0 / (c * window_size**2 * h), g)
    return -a[1:] - log_z


@functools.partial(jax.jit, static_argnames=("search_size", "window_size"))
def _graph(x, search_size, window_size, h):
    log_s = _log_graph(jnp.asarray(x, _compute_dtype()), search_size, window_size, h)
    s = search_size * search_size
    return jnp.moveaxis(jnp.exp(log_s).reshape((s,) + log_s.shape[2:]), 0, -1)


def self_similarity_graph(
    x: jax.Array, *, search_size: int = 25, window_size: int = 9, h: float = 0.004
) -> jax.Array:
    """Dense row-normalised self-similarity graph of every pixel (semantics 1-3 of the module).

    Args:
      x: float images in [0, 1], (B, H, W, C) or (H, W, C), NHWC; H, W >= search_size//2 + 1.
      search_size, window_size: odd sizes of the search area and of the compared windows.
      h: the exp(-d^2 / h) bandwidth, a finite number > 0.

    Returns:
      S in float32 (float64 with x64), (B, H, W, search_size^2) (or (H, W, search_size^2)): the
      graph row of pixel (i, j) is ``S[..., i, j, :]``; entry ``(dy + R) * search_size + (dx + R)``
      is the similarity to pixel (i + dy, j + dx) of the reflect-padded image (row-major in
      (dy, dx), R = search_size // 2). Rows sum to 1 - O(1e-10). No 1e-10 clamp is applied.
      This materialises the whole graph (B * H * W * search_size^2 values); ``ssl_loss`` never
      does.

    Raises:
      TypeError: x is not a float array. ValueError: bad shapes or sizes, ``h`` not finite and
      > 0, or (outside jit) x clearly not in [0, 1].
    """
    single = jnp.ndim(x) == 3
    if single:
        x = x[None]
    if x.ndim != 4:
        raise ValueError(f"self_similarity_graph: x must be (B, H, W, C) or (H, W, C), got {x.shape}")
    _check_sizes("self_similarity_graph", x.shape[1], x.shape[2], search_size, window_size)
    _check_image("self_similarity_graph", "x", x)
    _check_scalar("self_similarity_graph", "h", h, positive=True)
    graph = _graph(x, search_size, window_size, h)
    return graph[0] if single else graph


def _offset_sum(x):
    # Sum over the leading (offset) axis as a matrix-vector product: XLA:CPU's reductions over a
    # major axis do not vectorise and cost several times more than the whole elementwise work.
    return jnp.ones((x.shape[0],), x.dtype) @ x


def _row_terms(a_sr, a_hr, w, alpha, scale, with_grad):
    """Loss terms of whole graph rows, and optionally their gradient w.r.t. the SR distances.

    Args:
      a_sr, a_hr: (S^2, M) logits a = d^2 / (C K^2 h) of M pixels, offset-major.
      w: (M,) row weights (the mask); rows with w == 0 count for nothing, even when not finite.

    Returns:
      (sum over rows of w * sum over offsets of KL + alpha * L1 entries,
       d that / d d^2_SR (S^2, M) or None).
    """
    eps = jnp.asarray(_EPS, a_sr.dtype)
    log_eps = jnp.log(eps)
    live = w != 0
    # One exp per entry and graph: S = exp(-a) / z and log S = -a - log z (a >= 0 and a == 0 at
    # o = 0, so z >= 1: no overflow, no log(0)).
    e_s, e_h = jnp.exp(-a_sr), jnp.exp(-a_hr)
    z_s, z_h = _offset_sum(e_s) + eps, _offset_sum(e_h) + eps
    log_s, log_h = -a_sr - jnp.log(z_s), -a_hr - jnp.log(z_h)
    s_s, s_h = e_s * (1.0 / z_s), e_h * (1.0 / z_h)
    c_h = jnp.maximum(s_h, eps)
    terms = c_h * (jnp.maximum(log_h, log_eps) - jnp.maximum(log_s, log_eps)) + alpha * jnp.abs(s_s - s_h)
    # where, not a multiplication by the mask: NaN * 0 would poison the whole sum.
    value = jnp.sum(jnp.where(live, w * _offset_sum(terms), 0.0))
    if not with_grad:
        return value, None
    # d value / d log S_SR; the clamp passes no gradient below 1e-10.
    gl = jnp.where(live, w * (alpha * jnp.sign(s_s - s_h) * s_s - jnp.where(log_s > log_eps, c_h, 0.0)), 0.0)
    # log S_o = -a_o - log(sum_o' exp(-a_o') + eps)  =>  d/da_o = -g_o + S_o sum_o' g_o'
    grad = jnp.where(live, scale * (s_s * _offset_sum(gl) - gl), 0.0)
    return value, grad


def _chunk_value_scan(p2, p2_hr, mask, h, alpha, search_size, window_size, with_grad):
    """Masked sum of KL + alpha * L1 entries for one chunk, and optionally d / d p2 ("scan").

    p2, p2_hr: (N, C, hs + 2R + 2w, Wp) padded row strips (``_prepare`` output rows); mask:
    (N, hs, W) for the strips' own rows. Returns (value, d value / d p2 or None).
    """
    n, height, width = mask.shape
    c = p2.shape[1]
    g = _Geometry(search_size, window_size, height, width)
    scale = 1.0 / (c * window_size**2 * h)
    a_sr, lz_sr = _logits(p2, scale, g)
    a_hr, lz_hr = _logits(p2_hr, scale, g)
    eps = jnp.asarray(_EPS, p2.dtype)
    log_eps = jnp.log(eps)
    live = mask != 0

    def entries(dy):
        # log S, S and the clamped forms of both graphs for one row of offsets; two exps per
        # entry (exp(max(log S, log eps)) is max(S, eps) up to rounding).
        log_s, log_h = -a_sr[dy + 1] - lz_sr, -a_hr[dy + 1] - lz_hr
        s_s, s_h = jnp.exp(log_s), jnp.exp(log_h)
        return log_s, s_s, jnp.maximum(log_h, log_eps), jnp.maximum(s_h, eps), s_h

    # Rows are masked with where, not a multiplication: NaN * 0 would poison the whole sum.
    def value_terms(log_s, s_s, c_log_h, c_h, s_h):
        terms = c_h * (c_log_h - jnp.maximum(log_s, log_eps)) + alpha * jnp.abs(s_s - s_h)
        return jnp.where(live, mask * terms, 0.0)

    def grad_log_s(log_s, s_s, c_log_h, c_h, s_h):  # d value / d log S_SR
        kl = -c_h * (log_s > log_eps)  # the clamp passes no gradient below 1e-10
        return jnp.where(live, mask * (kl + alpha * jnp.sign(s_s - s_h) * s_s), 0.0)

    def sum_rows(totals, dy):
        # Per-pixel sums over one row of offsets as explicit adds (XLA:CPU's reductions over
        # the offset axis are several times slower).
        row = entries(dy)
        terms = value_terms(*row)
        value = totals[0] + _add_all(terms[dx] for dx in range(search_size))
        if not with_grad:
            return (value,), None
        gl = grad_log_s(*row)
        return (value, totals[1] + _add_all(gl[dx] for dx in range(search_size))), None

    zeros = jnp.zeros_like(lz_sr)
    totals = jax.lax.scan(sum_rows, (zeros, zeros)[: 1 + with_grad], jnp.arange(search_size))[0]
    if not with_grad:
        return jnp.sum(totals[0]), None
    value, g_total = totals

    def grad_rows(dy):
        # log S_o = -a_o - log(sum_o' exp(-a_o') + eps)  =>  d/da_o = -g_o + S_o sum_o' g_o'
        row = entries(dy)
        return jnp.where(live, scale * (row[1] * g_total - grad_log_s(*row)), 0.0)

    return jnp.sum(value), _logits_transpose(p2, grad_rows, g)


def _chunk_value_fused(p2, p2_hr, mask, h, alpha, search_size, window_size, with_grad):
    """Same as ``_chunk_value_scan`` as a few large ops over all offsets at once ("fused")."""
    n, height, width = mask.shape
    c = p2.shape[1]
    g = _Geometry(search_size, window_size, height, width)
    scale = 1.0 / (c * window_size**2 * h)
    ss = search_size**2
    d2 = functools.partial(_dense_logits, scale=1.0, g=g)
    d2_sr, pull = jax.vjp(d2, p2)
    a_hr = scale * d2(p2_hr).reshape(ss, -1)
    value, grad = _row_terms(scale * d2_sr.reshape(ss, -1), a_hr, mask.reshape(-1), alpha, scale, with_grad)
    if not with_grad:
        return value, None
    # Autodiff of the distance stage only; the loss stage's adjoint is _row_terms'.
    return value, pull(grad.reshape(d2_sr.shape))[0]


_CHUNK_VALUE = {"scan": _chunk_value_scan, "fused": _chunk_value_fused}


def _strip_starts(height: int, strip_rows: int) -> tuple[int, list[int]]:
    """Strip height and the first image row of each strip (the last one may overlap)."""
    rows = min(height, strip_rows)
    return rows, [min(i * rows, height - rows) for i in range(-(-height // rows))]


def _loss_sum_kernel(sr, hr, mask, h, alpha, search_size, window_size, with_grad):
    """``_loss_sum`` through the compiled CPU kernel (``ssl_kernel``), an XLA FFI call."""
    p2_sr, pull = jax.vjp(lambda x: _prepare(x, search_size, window_size), sr)
    p2_hr = _prepare(hr, search_size, window_size)
    dtype = p2_sr.dtype
    target = ssl_kernel.ffi_target(np.dtype(dtype).name)
    # Several CPU devices run their shards' calls at the same time: each call then stays on one
    # core (the devices are the parallelism, and numba's default pool must not be entered twice
    # at once). The count is part of the traced program, so a cached executable matches it.
    workers = ssl_kernel.threads() if len(jax.local_devices()) == 1 else 1
    config = jnp.asarray(np.array([search_size, window_size, with_grad, workers], np.int32))
    scalars = jnp.stack([1.0 / (sr.shape[-1] * window_size**2 * h), alpha, jnp.asarray(_EPS, dtype)]).astype(dtype)
    shapes = [jax.ShapeDtypeStruct((), dtype)] + [jax.ShapeDtypeStruct(p2_sr.shape, dtype)] * with_grad
    call = jax.ffi.ffi_call(target, shapes, vmap_method="sequential")
    out = call(config, scalars, p2_sr, p2_hr, mask)
    if not with_grad:
        return out[0], None
    return out[0], pull(out[1])[0]


def _loss_sum(sr, hr, mask, h, alpha, search_size, window_size, impl, with_grad):
    """Masked sum of KL + alpha * L1 entries over the batch, and optionally d/d sr.

    The padded images are cut into row strips (each with the halo of search_size//2 +
    window_size//2 rows it reads), processed ``_CHUNK_PIXELS[impl]`` at a time with ``lax.map``.
    Rows a strip shares with the previous one (last strip only) are masked out. "kernel" hands
    the whole batch to the compiled kernel instead.
    """
    if impl == "kernel":
        return _loss_sum_kernel(sr, hr, mask, h, alpha, search_size, window_size, with_grad)
    b, height, width, _ = sr.shape
    r, w = search_size // 2, window_size // 2
    rows, starts = _strip_starts(height, _STRIP_ROWS[impl])
    halo = 2 * (r + w)
    p2_sr, pull = jax.vjp(lambda x: _prepare(x, search_size, window_size), sr)
    p2_hr = _prepare(hr, search_size, window_size)

    def cut(p2):  # (T * B, C, rows + halo, Wp), strip-major
        return jnp.concatenate([p2[:, :, st : st + rows + halo] for st in starts])

    own = [np.arange(st, st + rows) >= i * rows for i, st in enumerate(starts)]
    masks = jnp.concatenate([jnp.where(o[:, None], mask[:, st : st + rows], 0.0) for st, o in zip(starts, own)])
    items = [cut(p2_sr), cut(p2_hr), masks]
    total = len(starts) * b
    chunk = max(1, min(total, _CHUNK_PIXELS[impl] // (rows * width)))
    n_chunks = -(-total // chunk)
    if n_chunks * chunk > total:  # all-zero strips with empty masks contribute nothing
        extra = n_chunks * chunk - total
        items = [jnp.pad(a, ((0, extra),) + ((0, 0),) * (a.ndim - 1)) for a in items]
    items = [a.reshape((n_chunks, chunk) + a.shape[1:]) for a in items]

    def one(xs):
        return _CHUNK_VALUE[impl](*xs, h, alpha, search_size, window_size, with_grad)

    if not with_grad:
        return jnp.sum(jax.lax.map(lambda xs: one(xs)[0], items)), None
    values, d_strips = jax.lax.map(one, items)
    d_strips = d_strips.reshape((-1,) + d_strips.shape[2:])
    d_p2 = jnp.zeros_like(p2_sr)
    for i, st in enumerate(starts):
        d_p2 = d_p2.at[:, :, st : st + rows + halo].add(d_strips[i * b : (i + 1) * b])
    return jnp.sum(values), pull(d_p2)[0]


@functools.partial(jax.custom_vjp, nondiff_argnums=(5, 6, 7))
def _ssl_sum(sr, hr, mask, h, alpha, search_size, window_size, impl):
    return _loss_sum(sr, hr, mask, h, alpha, search_size, window_size, impl, False)[0]


def _ssl_sum_fwd(sr, hr, mask, h, alpha, search_size, window_size, impl):
    # The loss is a scalar, so its whole gradient is computed in the forward pass: the only
    # residual is one image-sized array instead of the dense graphs.
    value, grad = _loss_sum(sr, hr, mask, h, alpha, search_size, window_size, impl, True)
    return value, (grad, hr, mask, h, alpha)


def _ssl_sum_bwd(search_size, window_size, impl, res, ct):
    grad, hr, mask, h, alpha = res
    zeros = jax.tree.map(jnp.zeros_like, (hr, mask, h, alpha))
    return (ct * grad,) + zeros


_ssl_sum.defvjp(_ssl_sum_fwd, _ssl_sum_bwd)


def _resolve_impl(impl: str) -> str:
    if impl not in IMPLS:
        raise ValueError(f"ssl_loss: impl must be one of {IMPLS}, got {impl!r}")
    on_cpu = jax.default_backend() == "cpu"
    if impl == "auto":
        # CPUs run the compiled kernel best; accelerators want few large XLA kernels.
        return "kernel" if on_cpu else "fused"
    if impl == "kernel" and not on_cpu:
        raise ValueError(f"ssl_loss: impl='kernel' runs on CPU only (default backend: {jax.default_backend()})")
    return impl


@functools.partial(jax.jit, static_argnames=("search_size", "window_size", "impl"))
def _ssl_loss(sr, hr, mask, h, alpha, search_size, window_size, impl):
    dtype = _compute_dtype()
    # An image without masked pixels takes no part in the loss: zero it, so a NaN or inf in it
    # reaches neither the value nor any gradient (where, not a multiplication: NaN * 0 = NaN).
    keep = jnp.any(mask != 0, axis=(1, 2))[:, None, None, None]
    sr = jnp.where(keep, sr.astype(dtype), 0.0)
    hr = jax.lax.stop_gradient(jnp.where(keep, hr.astype(dtype), 0.0))
    mask = jax.lax.stop_gradient(mask.astype(dtype))
    value = _ssl_sum(
        sr, hr, mask, jnp.asarray(h, dtype), jnp.asarray(alpha, dtype), search_size, window_size, impl
    )
    count = jnp.sum(mask) * (search_size * search_size)
    return value / jnp.maximum(count, 1.0)


def ssl_loss(
    sr: jax.Array,
    hr: jax.Array,
    mask: jax.Array,
    *,
    search_size: int = 25,
    window_size: int = 9,
    h: float = 0.004,
    alpha: float = 1.0,
    impl: str = "auto",
) -> jax.Array:
    """Self-similarity loss KL(S_HR || S_SR) + alpha * L1(S_SR, S_HR) over the masked pixels.

    Implements semantics 1-5 of the module docstring exactly (dense offset-major formulation);
    the value is unweighted (the trainer multiplies it by beta = 1000).

    Args:
      sr: generator output, float (B, H, W, C) in [0, 1], NHWC, any float dtype (bf16 allowed).
      hr: ground truth, same shape; treated as a constant (no gradient flows into it).
      mask: (B, H, W) in {0, 1}, the HR edge mask (``edge_mask``), optionally multiplied by
        ``mask_stride_pattern`` (stride 3; the default stride 1 uses every edge pixel, which is
        what produced the paper's numbers).
      search_size, window_size, h: SSG parameters (paper: 25, 9, 0.004); h finite and > 0.
      alpha: weight of the L1 term, finite and >= 0.
      impl: "kernel" (the compiled CPU kernel, ``sslsr.losses.ssl_kernel``; CPU only), "scan"
        (the same pipeline in XLA), "fused" (all offsets of a few images at once: few large
        kernels, for GPUs and TPUs) or "auto" (kernel on CPU, fused elsewhere). Same values up
        to float rounding. With several CPU devices (e.g. a sharded batch), each device's
        kernel call stays on one core.

    Returns:
      Scalar in float32 (float64 with x64): sum of both terms over the masked rows divided by
      (number of masked pixels * search_size^2); exactly 0 with finite gradients when the mask
      is empty. An image whose mask is empty takes no part, even if it holds NaN or inf.
      Reverse-mode, first-order differentiable only: the gradient is computed in the forward
      rule of a ``custom_vjp`` (no jvp, no second derivatives).

    Cost: see ``benchmarks/ssl_speed.py`` and BENCHMARKS.md; memory is flat in the batch size.

    Raises:
      TypeError: sr or hr is not a float array (e.g. uint8: divide by 255).
      ValueError: shapes disagree, H, W < search_size // 2 + 1, h or alpha out of range, an
        unknown impl, or (concrete arrays only, i.e. outside jit) sr, hr or mask clearly outside
        [0, 1]. Under jit the value range cannot be checked: keep images in [0, 1].
    """
    if jnp.ndim(sr) != 4 or jnp.shape(sr) != jnp.shape(hr):
        raise ValueError(f"ssl_loss: sr and hr must be equal (B, H, W, C), got {jnp.shape(sr)}, {jnp.shape(hr)}")
    if jnp.shape(mask) != jnp.shape(sr)[:3]:
        raise ValueError(f"ssl_loss: mask must be (B, H, W) = {jnp.shape(sr)[:3]}, got {jnp.shape(mask)}")
    _check_sizes("ssl_loss", sr.shape[1], sr.shape[2], search_size, window_size)
    _check_image("ssl_loss", "sr", sr)
    _check_image("ssl_loss", "hr", hr)
    _check_scalar("ssl_loss", "h", h, positive=True)
    _check_scalar("ssl_loss", "alpha", alpha, positive=False)
    impl = _resolve_impl(impl)
    return _ssl_loss(sr, hr, mask, h, alpha, search_size, window_size, impl)
