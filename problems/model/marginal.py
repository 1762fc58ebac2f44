"""Marginal negative log-likelihood of images, its gradient and Hessian-vector product.

For image ``i`` with band coefficients ``I_i(k_t)``, CTF ``C_i(k_t)`` and the
quadrature ``{(R_j, s_j, w_j)}`` of :mod:`problems.model.poses` (paper Eqs. 2-4):

.. math::

    E_{ij} = \\sum_{t \\in \\text{disc}} |I_i(k_t) - C_i(k_t) e^{-2\\pi i k_t\\cdot s_j/N}
             \\hat V(R_j^T [k_t, 0])|^2,
    \\qquad
    \\mathrm{NLL}_i = -\\log \\sum_j w_j \\exp\\big(-E_{ij} / (2\\sigma^2)\\big).

The Gaussian normalising constant is dropped (it does not depend on the
density).  The disc sum is a half-plane sum with multiplicities ``c_t``
(:mod:`problems.model.grids`).

Fast evaluation (DESIGN.md, "Fast evaluation"):

* ``E_ij = |I_i|^2 - (2 Re<c C_i I_i, S_j> - <c C_i^2, |S_j|^2>)``, so the
  pose-dependent part for a whole batch is one real matrix product
  ``A3 @ [2 Re S, 2 Im S, -|S|^2]^T`` with ``A3 = [Re(cCI), Im(cCI), cC^2]``.
* Shifts multiply images by phase ramps ``exp(+2 pi i k.s/N)``; quarter
  turns of the in-plane angle permute the band (:func:`grids.quarter_turn_maps`).
  Both act on the ``B x D`` image rows, so only ``n_dir * n_psi / 4`` slices
  are ever extracted and the ``4 * n_shift`` image variants share them.
* The posterior ``P_ij = softmax_j(log w_j - E_ij / 2 sigma^2)`` is formed in
  place by a fused, parallel log-sum-exp; the gradient with respect to the
  slices is ``(Z_q * S - Z_a) / sigma^2`` with ``Z = P^T A3`` (one more product).

Hot loop in float32/complex64 (or float64/complex128 for tests); per-image
values are accumulated and returned in float64.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass

import numba
import numpy as np

from .fourier import PartialDFT, cube_half_width
from .grids import Band, quarter_turn_maps
from .poses import PoseQuadrature
from .projector import Slicer, slice_coordinates


@numba.njit(parallel=True, cache=True, fastmath=True)
def _exp_logits_fast(logits, log_weights, scale, lse, inv_total):
    """float32: ``logits <- exp(scale * logits + log_weights - max)`` per image, in place.

    ``exp`` is ``2^n * p(f)`` with a degree-6 polynomial for ``2^f`` on [0, 1)
    (relative error about 2e-7, the size of float32 rounding) and ``2^n`` built
    from its exponent bits; unlike libm's ``exp`` the loop vectorises, which
    makes this phase 3-4x faster.  Values below ``2^-126`` flush to 2^-126 * p.
    """
    n_var, n_img, n_pose = logits.shape
    for b in numba.prange(n_img):
        top = np.float32(-np.inf)
        for v in range(n_var):
            row = logits[v, b]
            w = log_weights[v]
            for m in range(n_pose):
                z = row[m] * scale + w[m]
                row[m] = z
                top = max(top, z)
        total = 0.0
        bits = np.empty(n_pose, dtype=np.int32)
        for v in range(n_var):
            row = logits[v, b]
            for m in range(n_pose):
                t = max((row[m] - top) * np.float32(1.4426950408889634), np.float32(-126.0))
                n = np.floor(t)
                f = t - n
                row[m] = np.float32(1.0) + f * (np.float32(0.6931471805599453) + f * (
                    np.float32(0.2402265069591007) + f * (np.float32(0.05550410866482158) + f * (
                        np.float32(0.009618129107628477) + f * (np.float32(0.0013333558146428443)
                                                               + f * np.float32(0.00015403530393381606))))))
                bits[m] = (np.int32(n) + np.int32(127)) * np.int32(8388608)
            powers = bits.view(np.float32)
            for m in range(n_pose):
                e = row[m] * powers[m]
                row[m] = e
                total += e
        lse[b] = top + np.log(total)
        inv_total[b] = 1.0 / total


@numba.njit(parallel=True, cache=True)
def _exp_logits_exact(logits, log_weights, scale, lse, inv_total):
    """float64 (derivative checks): as :func:`_exp_logits_fast` with libm's exp."""
    n_var, n_img, n_pose = logits.shape
    for b in numba.prange(n_img):
        top = -np.inf
        for v in range(n_var):
            for m in range(n_pose):
                z = logits[v, b, m] * scale + log_weights[v, m]
                logits[v, b, m] = z
                if z > top:
                    top = z
        total = 0.0
        for v in range(n_var):
            for m in range(n_pose):
                e = np.exp(logits[v, b, m] - top)
                logits[v, b, m] = e
                total += e
        lse[b] = top + np.log(total)
        inv_total[b] = 1.0 / total


@numba.njit(cache=True, fastmath=True)
def _slice_gradient_t(zt, s, scale, out):
    """``out[j, t] = scale * (Zq[t, j] S[j, t] - Za[t, j])`` from ``Z^T`` rows [Re Za; Im Za; Zq]."""
    n_pose, d = s.shape
    for j in range(n_pose):
        for t in range(d):
            zq = zt[2 * d + t, j]
            out[j, t] = scale * (zq * s[j, t] - (zt[t, j] + 1j * zt[d + t, j]))


@contextmanager
def _phase(timings: dict | None, name: str):
    """Accumulate wall time of a phase into ``timings`` (no-op when None)."""
    if timings is None:
        yield
        return
    start = time.perf_counter()
    yield
    timings[name] = timings.get(name, 0.0) + time.perf_counter() - start


@dataclass
class BatchTerms:
    """Pose-independent image terms of a batch (built once per batch).

    ``a3``: (4 * n_shift * B, 3D) rows ``[Re(cCI), Im(cCI), cC^2]`` of every
    image variant; ``norm2``: (B,) float64 ``sum_t c_t |I_t|^2``.
    """

    a3: np.ndarray
    norm2: np.ndarray
    size: int


class MarginalLikelihood:
    """Per-image marginal NLL over the pose quadrature, with exact derivatives.

    Parameters
    ----------
    box_size : int
        ``N``; the density has shape (N, N, N).
    band : Band
        Half-plane band coefficients (defines ``r_max``).
    quadrature : PoseQuadrature
        Rotations and shifts with weights.
    sigma : float
        Noise standard deviation per Fourier coefficient (= per pixel).
    dtype : numpy dtype
        ``float32`` (default, the benchmark's hot loop) or ``float64``.
    """

    def __init__(self, box_size: int, band: Band, quadrature: PoseQuadrature, sigma: float,
                 dtype=np.float32):
        self.n = int(box_size)
        self.band, self.quadrature, self.sigma = band, quadrature, float(sigma)
        self.dtype = np.dtype(dtype)
        self.cdtype = np.result_type(self.dtype, np.complex64)
        self.m_max = cube_half_width(band.r_max)
        self.dft = PartialDFT(self.n, self.m_max, self.dtype)
        self.slicer = Slicer(slice_coordinates(quadrature.base_matrices(), band.k, self.dtype),
                             self.m_max)
        self.turn_index, self.turn_conj = quarter_turn_maps(band)
        k = band.k.astype(np.float64)
        self.shift_phase = np.exp(2j * np.pi * (quadrature.shifts @ k.T) / self.n).astype(self.cdtype)
        self.log_weights = np.ascontiguousarray(quadrature.log_weights(), dtype=self.dtype)
        self.mult = band.multiplicity.astype(self.dtype)
        self.scale = 1.0 / (2.0 * self.sigma**2)

    # ----------------------------------------------------------------- batch
    def prepare(self, images: np.ndarray, ctf: np.ndarray) -> BatchTerms:
        """Image-variant rows for a batch: ``images`` (B, D) complex, ``ctf`` (B, D) real."""
        images = np.asarray(images, dtype=self.cdtype)
        ctf = np.asarray(ctf, dtype=self.dtype)
        b, d = images.shape
        shifted = images[None, :, :] * self.shift_phase[:, None, :]             # (S, B, D)
        variants = np.moveaxis(shifted[:, :, self.turn_index], 2, 1)             # (S, 4, B, D)
        variants = np.where(self.turn_conj[None, :, None, :], variants.conj(), variants)
        ctf_q = np.moveaxis(ctf[:, self.turn_index], 1, 0)[None]                 # (1, 4, B, D)
        a = self.mult * ctf_q * variants
        q = np.broadcast_to(self.mult * ctf_q**2, a.shape)
        a3 = np.concatenate([a.real, a.imag, q], axis=-1).reshape(-1, 3 * d)
        norm2 = (np.abs(images.astype(np.complex128)) ** 2 * self.band.multiplicity).sum(axis=1)
        return BatchTerms(a3=np.ascontiguousarray(a3, dtype=self.dtype), norm2=norm2, size=b)

    # --------------------------------------------------------------- slicing
    def slices(self, x: np.ndarray) -> np.ndarray:
        """Base slices ``S = T(F x)``, shape (n_base, D) complex."""
        return self.slicer.forward(self.dft.forward(x.astype(self.dtype, copy=False)))

    def slices_adjoint(self, g: np.ndarray) -> np.ndarray:
        """Gradient on ``x`` of ``Re <g, slices(x)>`` (g: d f / d Re S + i d f / d Im S)."""
        return self.dft.adjoint(self.slicer.adjoint(g))

    @staticmethod
    def _slice_rows(s: np.ndarray) -> np.ndarray:
        return np.concatenate([2 * s.real, 2 * s.imag, -(s.real**2 + s.imag**2)], axis=1)

    def _exp_logits(self, s: np.ndarray, terms: BatchTerms, timings: dict | None = None):
        """Unnormalised posterior ``e`` (V, B, n_base), per-image NLL (B,) and ``1 / sum e``."""
        with _phase(timings, "forward GEMM"):
            logits = (terms.a3 @ self._slice_rows(s).T).reshape(-1, terms.size, s.shape[0])
        with _phase(timings, "log-sum-exp"):
            lse = np.empty(terms.size, dtype=np.float64)
            inv_total = np.empty(terms.size, dtype=np.float64)
            kernel = _exp_logits_fast if self.dtype == np.float32 else _exp_logits_exact
            kernel(logits, self.log_weights, self.dtype.type(self.scale), lse, inv_total)
        return logits, terms.norm2 * self.scale - lse, inv_total

    def _posterior(self, s: np.ndarray, terms: BatchTerms) -> tuple[np.ndarray, np.ndarray]:
        """Posterior ``P`` (V, B, n_base) over poses and per-image NLL (B,) float64."""
        e, nll, inv_total = self._exp_logits(s, terms)
        e *= inv_total.astype(self.dtype)[None, :, None]
        return e, nll

    def _weighted_rows(self, a3: np.ndarray, inv_total: np.ndarray) -> np.ndarray:
        """``a3`` rows scaled by each image's ``1 / sum e``: ``e^T (a3 / total) = P^T a3``."""
        n_var = a3.shape[0] // inv_total.size
        return a3 * np.tile(inv_total.astype(self.dtype), n_var)[:, None]

    def _slice_gradient(self, z: np.ndarray, s: np.ndarray) -> np.ndarray:
        d = s.shape[1]
        za = z[:, :d] + 1j * z[:, d:2 * d]
        return (z[:, 2 * d:] * s - za) / self.sigma**2

    # ------------------------------------------------------------ public API
    def nll(self, x: np.ndarray, terms: BatchTerms) -> np.ndarray:
        """Per-image NLL (B,) float64."""
        return self._posterior(self.slices(x), terms)[1]

    def posterior(self, x: np.ndarray, terms: BatchTerms) -> tuple[np.ndarray, np.ndarray]:
        """Posterior over poses in pose order, shape (B, M), and per-image NLL."""
        p, nll = self._posterior(self.slices(x), terms)
        return np.moveaxis(p, 1, 0).reshape(terms.size, -1), nll

    def nll_and_grad(self, x: np.ndarray, terms: BatchTerms,
                     timings: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Per-image NLL (B,) and the gradient of their mean with respect to ``x``.

        ``timings``, when given, accumulates seconds per phase (the benchmark's
        breakdown): partial DFT, slicing, GEMMs, log-sum-exp and the adjoints.
        """
        with _phase(timings, "partial DFT"):
            cube = self.dft.forward(x.astype(self.dtype, copy=False))
        with _phase(timings, "slicing"):
            s = self.slicer.forward(cube)
        logits, nll, inv_total = self._exp_logits(s, terms, timings)
        with _phase(timings, "backward GEMM"):
            # Z^T = (a3 / total)^T e: this orientation runs ~1.5x faster than e^T (a3 / total).
            zt = self._weighted_rows(terms.a3, inv_total).T @ logits.reshape(-1, s.shape[0])
            g = np.empty_like(s)
            _slice_gradient_t(zt, s, self.dtype.type(1.0 / (self.sigma**2 * terms.size)), g)
        with _phase(timings, "adjoint slicing"):
            g_cube = self.slicer.adjoint(g)
        with _phase(timings, "adjoint DFT"):
            grad = self.dft.adjoint(g_cube)
        return nll, grad

    def gemm_flops(self, batch_size: int) -> float:
        """Floating-point operations of the forward + backward products for one batch."""
        rows = 4 * self.quadrature.n_shifts * batch_size
        return 2.0 * 2.0 * rows * 3 * self.band.size * self.quadrature.n_base

    def hvp(self, x: np.ndarray, v: np.ndarray, terms: BatchTerms) -> np.ndarray:
        """Hessian of the batch-mean NLL at ``x`` applied to ``v``.

        With ``U = T F v`` the slices of the direction, the logit derivative is
        ``dL = A3 @ [2 Re U, 2 Im U, -2 Re(conj(S) U)]^T / (2 sigma^2)``, the
        posterior derivative ``dP = P (dL - sum_j P dL)``, and the slice-space
        product ``(Z_q U + dZ_q S - dZ_a) / sigma^2`` with ``Z = P^T A3`` and
        ``dZ = dP^T A3``; it is mapped back by the adjoint slicing.
        """
        s = self.slices(x)
        u = self.slices(v)
        p, _ = self._posterior(s, terms)
        du_rows = np.concatenate([2 * u.real, 2 * u.imag, -2 * (s.conj() * u).real], axis=1)
        dl = (terms.a3 @ du_rows.T).reshape(p.shape) * self.dtype.type(self.scale)
        mean_dl = (p * dl).sum(axis=(0, 2), keepdims=True)
        dp = p * (dl - mean_dl)
        n_base, d = s.shape
        z = p.reshape(-1, n_base).T @ terms.a3[:, 2 * d:]
        dz = dp.reshape(-1, n_base).T @ terms.a3
        dza = dz[:, :d] + 1j * dz[:, d:2 * d]
        h = (z * u + dz[:, 2 * d:] * s - dza) / (self.sigma**2 * terms.size)
        return self.slices_adjoint(h.astype(self.cdtype, copy=False))

    def expectation(self, x: np.ndarray, terms: BatchTerms, hard: bool = False):
        """Posterior-weighted sums per base slice over the batch (the E-step).

        ``za[j] = sum_i P_ij c C_i I_i`` and ``zq[j] = sum_i P_ij c C_i^2``
        (images moved into each pose's frame by the variant rows), i.e.
        ``Z = P^T A3`` -- the same product as the gradient.  With ``hard``
        the posterior is replaced by a one-hot at each image's most probable
        pose (projection matching's global search).
        Returns ``(za complex (n_base, D), zq real (n_base, D))``.
        """
        s = self.slices(x)
        p, _ = self._posterior(s, terms)
        if hard:
            flat = np.moveaxis(p, 1, 0).reshape(terms.size, -1)
            best = flat.argmax(axis=1)
            p = np.zeros_like(flat)
            p[np.arange(terms.size), best] = 1
            p = np.moveaxis(p.reshape(terms.size, -1, s.shape[0]), 0, 1)
        z = p.reshape(-1, s.shape[0]).T @ terms.a3
        d = s.shape[1]
        return (z[:, :d] + 1j * z[:, d:2 * d]).astype(self.cdtype), np.ascontiguousarray(z[:, 2 * d:])

    def complete_data_objective(self, x: np.ndarray, za: np.ndarray, zq: np.ndarray,
                                count: int) -> tuple[float, np.ndarray]:
        r"""The M-step objective and its gradient, for fixed E-step sums over ``count`` images.

        .. math:: Q(x) = \frac{1}{2\sigma^2 n}\sum_j \big(\langle z_q, |S_j|^2\rangle
                  - 2\,\mathrm{Re}\langle z_a, S_j\rangle\big) + \text{const}

        (``sum_ij P_ij E_ij / (2 sigma^2 n)`` up to the ``|I|^2`` term); it is a
        convex quadratic in ``x``.
        """
        s = self.slices(x)
        value = float(np.sum(zq * (s.real**2 + s.imag**2) - 2 * (za.conj() * s).real, dtype=np.float64))
        grad = self.slices_adjoint(((zq * s - za) / (self.sigma**2 * count)).astype(self.cdtype))
        return value / (2 * self.sigma**2 * count), grad
