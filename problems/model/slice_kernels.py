"""numba kernels of the free Fourier volume's slices: gather, adjoint scatter, Hessian diagonal.

The operator (Toader, Brubaker & Lederman's model, :mod:`problems.model.fourier_volume`):
image ``i``'s sample ``t`` is the value of the complex volume ``v`` (``n^3``,
centred index ``q + n//2``, flat ``v[(z n + y) n + x]``) at

.. math:: p_{it} = A_i^T [k_t, 0] + n/2 ,

by trilinear interpolation (``nn = False``: 8 corners, weights
``prod_a (1 - |p_a - c_a|)``) or by its nearest grid point (``nn = True``:
one corner, weight 1).  ``S_i`` is real (the weights), so ``S_i^H = S_i^T``
and the scatter uses the same weights.

One sweep over a batch computes, per sample, the slice value ``s``
(gather) and, depending on ``mode``, a value to scatter back:

* ``0``: ``NLL_i = 1/(2 sigma^2) sum_t |c s - y|^2`` only (no scatter);
* ``1``: the NLL and ``g = w c (c s - y)`` scattered (``w = 1/(sigma^2 B)``):
  the gradient of the batch mean;
* ``2``: ``g = w c^2 s`` scattered: the Hessian times the gathered vector;
* ``3``: ``w c^2 W_corner^2`` scattered at each corner: the exact diagonal of
  the batch Hessian (no gather).

Gather and scatter of a sample share the corner indices and weights, so a
gradient costs one pass over the samples, not two.

**Races.**  Images are split into one contiguous chunk per thread, each
scattering into its own accumulator volume (``partial[ch]``), summed at the
end: no atomics, no sort.  At 128 px the accumulators are 2 x 16.8 MB
(complex64); zeroing and summing them takes 4-9 ms against a 0.6-1.1 s
gradient of 1000 images (~1%, load ~4).  A race-free partition of the
volume (slabs in two colouring phases) would need one accumulator but a
pass over every sample per phase; it was not built or measured.

Coordinates: ``|q| <= r_max <= n/2 - 1`` keeps ``p`` in ``[1, n - 1]`` up
to rounding, so the lower trilinear corner is ``min(floor p, n - 2)``
(truncation is the floor for positive ``p``) and every corner lies on the grid.
"""
from __future__ import annotations

import os

import numba
import numpy as np

if "NUMBA_THREADING_LAYER" not in os.environ:        # as in projector.py: workqueue does not spin
    numba.config.THREADING_LAYER = "workqueue"


@numba.njit(inline="always", fastmath=True)
def _lower_corner(px, py, pz, n, real):
    """Flat index of the trilinear cell's lower corner and the fractions in ``real`` (module docstring:
    coordinates); a float64 fraction would turn the complex64 products into complex128."""
    ix, iy, iz = min(np.int32(px), n - 2), min(np.int32(py), n - 2), min(np.int32(pz), n - 2)
    return (iz * n + iy) * n + ix, px - real(ix), py - real(iy), pz - real(iz)


@numba.njit(inline="always", fastmath=True)
def _nearest(px, py, pz, n, half):
    """Flat index of the grid point nearest to ``p`` (coordinates are positive: truncation is the floor)."""
    return (np.int32(pz + half) * n + np.int32(py + half)) * n + np.int32(px + half)


@numba.njit(parallel=True, cache=True, fastmath=True)
def sweep(vol, n, rot, kxy, order, data, ctf, weight, mode, nn, partial, nll):
    """One pass over a batch (module docstring); ``partial`` (chunks, n^3) complex, ``nll`` (B,) float64.

    Samples are visited in ``order`` (raster order of the disc: consecutive
    samples are neighbours on the slice, so their corners share cache lines;
    at 128 px this took the gather from 0.28 s to 0.18 s per 1000 images
    against the data's radial order).
    """
    n_img, n_t = rot.shape[0], kxy.shape[0]
    n_chunk = partial.shape[0]
    real = rot.dtype.type
    one, half, c0 = real(1.0), real(0.5), real(n // 2)
    w = real(weight)
    nn_ = n * n
    for ch in numba.prange(n_chunk):
        acc = partial[ch]
        for i in range(ch * n_img // n_chunk, (ch + 1) * n_img // n_chunk):
            a00, a01, a02 = rot[i, 0, 0], rot[i, 0, 1], rot[i, 0, 2]
            a10, a11, a12 = rot[i, 1, 0], rot[i, 1, 1], rot[i, 1, 2]
            loss = 0.0
            for j in range(n_t):
                t = order[j]
                kx, ky = kxy[t, 0], kxy[t, 1]
                px = kx * a00 + ky * a10 + c0
                py = kx * a01 + ky * a11 + c0
                pz = kx * a02 + ky * a12 + c0
                c = ctf[i, t]
                if nn:
                    idx = _nearest(px, py, pz, n, half)
                    if mode == 3:
                        acc[idx] += w * c * c
                        continue
                    s = vol[idx]
                    if mode == 2:
                        acc[idx] += (w * c * c) * s
                        continue
                    r = c * s - data[i, t]
                    loss += r.real * r.real + r.imag * r.imag
                    if mode == 1:
                        acc[idx] += (w * c) * r
                    continue
                b, fx, fy, fz = _lower_corner(px, py, pz, n, real)
                gx, gy, gz = one - fx, one - fy, one - fz
                w00, w01, w10, w11 = gz * gy, gz * fy, fz * gy, fz * fy
                if mode == 3:
                    h = w * c * c
                    gx2, fx2 = gx * gx, fx * fx
                    h00, h01, h10, h11 = h * w00 * w00, h * w01 * w01, h * w10 * w10, h * w11 * w11
                    acc[b] += h00 * gx2
                    acc[b + 1] += h00 * fx2
                    acc[b + n] += h01 * gx2
                    acc[b + n + 1] += h01 * fx2
                    acc[b + nn_] += h10 * gx2
                    acc[b + nn_ + 1] += h10 * fx2
                    acc[b + nn_ + n] += h11 * gx2
                    acc[b + nn_ + n + 1] += h11 * fx2
                    continue
                s = (w00 * (gx * vol[b] + fx * vol[b + 1])
                     + w01 * (gx * vol[b + n] + fx * vol[b + n + 1])
                     + w10 * (gx * vol[b + nn_] + fx * vol[b + nn_ + 1])
                     + w11 * (gx * vol[b + nn_ + n] + fx * vol[b + nn_ + n + 1]))
                if mode == 2:
                    g = (w * c * c) * s
                else:
                    r = c * s - data[i, t]
                    loss += r.real * r.real + r.imag * r.imag
                    if mode == 0:
                        continue
                    g = (w * c) * r
                g00, g01, g10, g11 = w00 * g, w01 * g, w10 * g, w11 * g
                acc[b] += gx * g00
                acc[b + 1] += fx * g00
                acc[b + n] += gx * g01
                acc[b + n + 1] += fx * g01
                acc[b + nn_] += gx * g10
                acc[b + nn_ + 1] += fx * g10
                acc[b + nn_ + n] += gx * g11
                acc[b + nn_ + n + 1] += fx * g11
            nll[i] = loss


@numba.njit(parallel=True, cache=True)
def demodulate(images, kxy, shifts, n, out):
    """``out[i, t] = images[i, t] exp(+2 pi i k_t . s_i / n)``: the shift phase moved onto the data.

    ``|y - c e^{-i phi} S v| = |e^{+i phi} y - c S v|`` (``|e^{i phi}| = 1``), so a
    batch with shifts is the batch without them on demodulated images.
    """
    two_pi = 2.0 * np.pi / n
    for i in numba.prange(images.shape[0]):
        sx, sy = shifts[i, 0], shifts[i, 1]
        for t in range(kxy.shape[0]):
            phi = two_pi * (kxy[t, 0] * sx + kxy[t, 1] * sy)
            out[i, t] = images[i, t] * complex(np.cos(phi), np.sin(phi))


@numba.njit(parallel=True, cache=True, fastmath=True)
def assemble(n, rot, kxy, ctf, use_ctf, weight, nn, partial):
    """Add the batch Hessian ``w sum_i S_i^T diag(C_i^2) S_i`` into ``partial`` (chunks, n^3, 27).

    ``partial[ch, j, o]`` is the entry between voxel ``j`` and its neighbour
    at offset ``o = (dz + 1) 9 + (dy + 1) 3 + (dx + 1)``; a sample with
    trilinear corner weights ``W_a`` adds ``w C^2 W_a W_b`` to every pair of
    its 8 corners (nearest neighbour: ``w C^2`` to the centre entry).
    ``use_ctf = False``: ``C = 1``.
    """
    n_img, n_t = rot.shape[0], kxy.shape[0]
    n_chunk = partial.shape[0]
    real = rot.dtype.type
    one, half, c0 = real(1.0), real(0.5), real(n // 2)
    w = real(weight)
    nn_ = n * n
    for ch in numba.prange(n_chunk):
        acc = partial[ch]
        wt = np.empty(8, dtype=rot.dtype)
        for i in range(ch * n_img // n_chunk, (ch + 1) * n_img // n_chunk):
            a00, a01, a02 = rot[i, 0, 0], rot[i, 0, 1], rot[i, 0, 2]
            a10, a11, a12 = rot[i, 1, 0], rot[i, 1, 1], rot[i, 1, 2]
            for t in range(n_t):
                kx, ky = kxy[t, 0], kxy[t, 1]
                px = kx * a00 + ky * a10 + c0
                py = kx * a01 + ky * a11 + c0
                pz = kx * a02 + ky * a12 + c0
                h = w * ctf[i, t] * ctf[i, t] if use_ctf else w
                if nn:
                    acc[_nearest(px, py, pz, n, half), 13] += h
                    continue
                b, fx, fy, fz = _lower_corner(px, py, pz, n, real)
                for a in range(8):
                    wt[a] = (((fx if a & 1 else one - fx) * (fy if a & 2 else one - fy))
                             * (fz if a & 4 else one - fz))
                for a in range(8):
                    ax, ay, az = a & 1, (a >> 1) & 1, a >> 2
                    row = b + az * nn_ + ay * n + ax
                    ha = h * wt[a]
                    for c in range(8):
                        o = ((c >> 2) - az + 1) * 9 + (((c >> 1) & 1) - ay + 1) * 3 + ((c & 1) - ax + 1)
                        acc[row, o] += ha * wt[c]


@numba.njit(parallel=True, cache=True)
def stencil_matvec(h, u, n, out):
    """``out = H u`` for the 27-point ``h`` (n^3, 27) of :func:`assemble` (a zero entry skips its neighbour,
    so an offset that leaves the grid is never read)."""
    nn_ = n * n
    for z in numba.prange(n):
        for j in range(z * nn_, (z + 1) * nn_):
            s = u[j] * 0
            for o in range(27):
                hv = h[j, o]
                if hv != 0:
                    s += hv * u[j + ((o // 9 - 1) * n + (o // 3) % 3 - 1) * n + o % 3 - 1]
            out[j] = s
