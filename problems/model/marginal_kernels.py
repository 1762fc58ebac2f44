"""Fused numba kernels of the conjugate-pair marginal likelihood (:mod:`.marginal`).

Layout shared by every kernel: the products of the image-variant rows with
the base slices come as arrays ``u`` and ``v`` of shape
``(n_shift * 2, B, n_base)``, row ``2 s + p`` for shift ``s`` and quarter turn
``p`` in {0, 1}, and ``q`` of shape ``(2, B, n_base)``, the shift-independent
``<c C^2, -|S|^2>`` term.  The logits of the four quarter turns of shift ``s`` are

.. math::

    L_{s,p} = \\kappa (u_{2s+p} + q_p + v_{2s+p}) + \\log w_{s,p},\\qquad
    L_{s,p+2} = \\kappa (u_{2s+p} + q_p - v_{2s+p}) + \\log w_{s,p+2}

(``kappa = 1 / (2 sigma^2)``): turning an image by 180 degrees conjugates its
half-plane coefficients, which flips the sign of the ``Im`` part ``v`` only,
and a shift is a phase ramp, which leaves ``|C S|^2`` alone.
"""
from __future__ import annotations

import numba
import numpy as np


@numba.njit(inline="always", fastmath=True)
def _exp2_poly(t):
    """``2^f`` for the fractional part ``f = t - floor(t)`` (degree-6 polynomial) and ``floor(t)``."""
    n = np.floor(t)
    f = t - n
    p = np.float32(1.0) + f * (np.float32(0.6931471805599453) + f * (
        np.float32(0.2402265069591007) + f * (np.float32(0.05550410866482158) + f * (
            np.float32(0.009618129107628477) + f * (np.float32(0.0013333558146428443)
                                                   + f * np.float32(0.00015403530393381606))))))
    return p, n


@numba.njit(parallel=True, cache=True, fastmath=True)
def exp_pairs_fast(u, v, q, add_q, log_weights, scale, combine, lse, inv_total):
    """float32: unnormalised posteriors of both turns of every pair, in place.

    ``exp`` is ``2^n * p(f)`` with the degree-6 polynomial of :func:`_exp2_poly`
    (relative error about 2e-7, the size of float32 rounding) and ``2^n``
    built from its exponent bits; unlike libm's ``exp`` the loop vectorises.
    Posteriors below ``2^-64`` of the image's largest are set to zero: their
    total is below ``M 2^-64`` (about 1e-15 relative at M = 23,600, far
    under float32 rounding), and it keeps denormals out of everything
    downstream -- the differences ``e_+ - e_-``, the gradient's products and
    the adjoint slicing ran 4-20x slower on denormals at paper scale.

    On return ``u, v`` hold ``(e_+ + e_-, e_+ - e_-)`` when ``combine`` (what
    the gradient's products need) and ``(e_+, e_-)`` otherwise, with
    ``e = exp(L - max_b L)``; ``q[p]`` holds ``sum_s (e_+ + e_-)[2s + p]``;
    ``lse[b] = log sum e`` over all poses of image ``b`` and
    ``inv_total[b] = 1 / sum e``.  ``log_weights``: (n_shift, 4, n_base).
    Without ``add_q`` the ``q`` term is already inside ``u`` (one shift: the
    products are fused): pass zeros of shape (2, 1, n_base), which every image
    reads (row ``b % q.shape[1]``: no branch in the vectorised loops) and
    nobody writes.
    """
    n_row, n_img, n_pose = u.shape
    log2e = np.float32(1.4426950408889634)
    lo = np.float32(-64.0)
    for b in numba.prange(n_img):
        top = np.float32(-np.inf)
        for r in range(n_row):
            ur, vr, qr = u[r, b], v[r, b], q[r % 2, b % q.shape[1]]
            wp, wm = log_weights[r // 2, r % 2], log_weights[r // 2, r % 2 + 2]
            for m in range(n_pose):
                a = (ur[m] + qr[m]) * scale
                c = vr[m] * scale
                top = max(top, max(a + c + wp[m], a - c + wm[m]))
        total = 0.0
        bits_p = np.empty(n_pose, dtype=np.int32)
        bits_m = np.empty(n_pose, dtype=np.int32)
        acc = np.zeros((2, n_pose), dtype=np.float32)    # q is read until the last row
        for r in range(n_row):
            ur, vr, qr = u[r, b], v[r, b], q[r % 2, b % q.shape[1]]
            wp, wm = log_weights[r // 2, r % 2], log_weights[r // 2, r % 2 + 2]
            for m in range(n_pose):
                a = (ur[m] + qr[m]) * scale
                c = vr[m] * scale
                tp = (a + c + wp[m] - top) * log2e
                tm = (a - c + wm[m] - top) * log2e
                pp, np_ = _exp2_poly(max(tp, lo))
                pm, nm = _exp2_poly(max(tm, lo))
                ur[m] = pp if tp > lo else np.float32(0.0)
                vr[m] = pm if tm > lo else np.float32(0.0)
                bits_p[m] = (np.int32(np_) + np.int32(127)) * np.int32(8388608)
                bits_m[m] = (np.int32(nm) + np.int32(127)) * np.int32(8388608)
            pow_p = bits_p.view(np.float32)
            pow_m = bits_m.view(np.float32)
            acc_r = acc[r % 2]
            for m in range(n_pose):
                ep = ur[m] * pow_p[m]
                em = vr[m] * pow_m[m]
                total += ep + em
                acc_r[m] += ep + em
                if combine:
                    ur[m] = ep + em
                    vr[m] = ep - em
                else:
                    ur[m] = ep
                    vr[m] = em
        if add_q:
            q[:, b] = acc
        lse[b] = top + np.log(total)
        inv_total[b] = 1.0 / total


@numba.njit(parallel=True, cache=True)
def exp_pairs_exact(u, v, q, add_q, log_weights, scale, combine, lse, inv_total):
    """float64 (derivative checks): as :func:`exp_pairs_fast` with libm's exp."""
    n_row, n_img, n_pose = u.shape
    for b in numba.prange(n_img):
        top = -np.inf
        for r in range(n_row):
            wp, wm = log_weights[r // 2, r % 2], log_weights[r // 2, r % 2 + 2]
            for m in range(n_pose):
                a = (u[r, b, m] + q[r % 2, b % q.shape[1], m]) * scale
                c = v[r, b, m] * scale
                top = max(top, a + c + wp[m], a - c + wm[m])
        total = 0.0
        acc = np.zeros((2, n_pose))
        for r in range(n_row):
            wp, wm = log_weights[r // 2, r % 2], log_weights[r // 2, r % 2 + 2]
            for m in range(n_pose):
                a = (u[r, b, m] + q[r % 2, b % q.shape[1], m]) * scale
                c = v[r, b, m] * scale
                ep = np.exp(a + c + wp[m] - top)
                em = np.exp(a - c + wm[m] - top)
                total += ep + em
                acc[r % 2, m] += ep + em
                if combine:
                    u[r, b, m] = ep + em
                    v[r, b, m] = ep - em
                else:
                    u[r, b, m] = ep
                    v[r, b, m] = em
        if add_q:
            q[:, b] = acc
        lse[b] = top + np.log(total)
        inv_total[b] = 1.0 / total


@numba.njit(parallel=True, cache=True, fastmath=True)
def hvp_posterior_derivative(e_sum, e_diff, inv_total, du, dq, add_q, dv):
    """Posterior derivative of the pairs, in place.

    With normalised posteriors ``P_sum = e_sum / total_b = p_+ + p_-``,
    ``P_diff = e_diff / total_b = p_+ - p_-`` and logit derivatives
    ``dL_+- = du + dq_p +- dv``, ``dp = p (dL - mu_b)`` where
    ``mu_b = sum_poses p dL = sum (P_sum (du + dq) + P_diff dv)``, so

    ``dp_+ + dp_- = P_sum (du + dq - mu) + P_diff dv`` (into ``du``),
    ``dp_+ - dp_- = P_diff (du + dq - mu) + P_sum dv`` (into ``dv``),
    and ``dq[p] <- sum_s (dp_+ + dp_-)[2s + p]`` (without ``add_q``: ``dq`` is
    already inside ``du``; zeros of shape (2, 1, n_base), read, not written).
    """
    n_row, n_img, n_pose = du.shape
    for b in numba.prange(n_img):
        inv = inv_total[b]
        mu = 0.0
        for r in range(n_row):
            for m in range(n_pose):
                a = du[r, b, m] + dq[r % 2, b % dq.shape[1], m]
                mu += e_sum[r, b, m] * a + e_diff[r, b, m] * dv[r, b, m]
        mu *= inv
        for r in range(n_row):
            for m in range(n_pose):
                a = du[r, b, m] + dq[r % 2, b % dq.shape[1], m] - mu
                c = dv[r, b, m]
                du[r, b, m] = inv * (e_sum[r, b, m] * a + e_diff[r, b, m] * c)
                dv[r, b, m] = inv * (e_diff[r, b, m] * a + e_sum[r, b, m] * c)
        for p in range(2 if add_q else 0):
            for m in range(n_pose):
                acc = 0.0
                for r in range(p, n_row, 2):
                    acc += du[r, b, m]
                dq[p, b, m] = acc


@numba.njit(parallel=True, cache=True, fastmath=True)
def slice_gradient_t(zr_t, zi_t, zq_t, s, scale, out):
    """``out[j, t] = scale * (Zq[t, j] S[j, t] - (Zr[t, j] + i Zi[t, j]))`` from ``Z^T`` blocks (D, n_base).

    ``s`` and ``out`` are passed as real views (n_base, 2D) of the complex
    arrays (real arithmetic: no complex128 promotion).  In tiles of 64
    slices, so that both the ``Z^T`` rows and the tile of ``out`` stay in
    cache (a plain loop reads one of them with stride ``n_base``).
    """
    n_pose, d = zr_t.shape[1], zr_t.shape[0]
    for tile in numba.prange((n_pose + 63) // 64):
        lo, hi = tile * 64, min(n_pose, tile * 64 + 64)
        for t in range(d):
            for j in range(lo, hi):
                zq = zq_t[t, j]
                out[j, 2 * t] = scale * (zq * s[j, 2 * t] - zr_t[t, j])
                out[j, 2 * t + 1] = scale * (zq * s[j, 2 * t + 1] - zi_t[t, j])


@numba.njit(cache=True, fastmath=True)
def slice_rows(s, w, a_scale, q_scale, rq, ri):
    """The slice side of the products in one pass, for slices ``s`` and direction ``w``.

    ``rq[j] = [a Re w_j, q Re(conj(s_j) w_j)]`` (2D), ``ri[j] = a Im w_j``: with
    ``w = s, a = 2, q = -1`` the forward rows ``[2 Re S, -|S|^2]`` and
    ``2 Im S``; with the HVP's direction slices ``w = W``, ``a = 2 kappa``,
    ``q = -2 kappa`` their derivatives.  Serial: it is a fraction of a
    millisecond, less than a parallel region's barrier on a loaded machine.
    """
    n_pose, d = s.shape
    for j in range(n_pose):
        for t in range(d):
            sr, si = s[j, t].real, s[j, t].imag
            wr, wi = w[j, t].real, w[j, t].imag
            rq[j, t] = a_scale * wr
            rq[j, d + t] = q_scale * (sr * wr + si * wi)
            ri[j, t] = a_scale * wi
