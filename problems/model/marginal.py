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

* ``E_ij = |I_i|^2 - (2 Re<c C_i I_i, S_j> - <c C_i^2, |S_j|^2>)``: with the
  image rows ``X = c C I`` and ``X_q = c C^2`` the pose-dependent part is a
  real matrix product against ``[2 Re S, 2 Im S, -|S|^2]``.
* Shifts multiply images by phase ramps ``exp(+2 pi i k.s/N)``; quarter
  turns of the in-plane angle permute the band (:func:`grids.quarter_turn_maps`).
  Both act on the ``B x D`` image rows, so only ``n_dir * n_psi / 4`` slices
  are ever extracted and the image variants share them.
* Conjugate pairs: the turns by ``psi`` and ``psi + pi`` give conjugate image
  rows, so with ``U = [Re X, X_q] @ [2 Re S, -|S|^2]^T`` and
  ``V = Im X @ (2 Im S)^T`` their logits are ``U + V`` and ``U - V``: only turns
  0 and 1 enter the products, half the work of multiplying all four
  (:mod:`.marginal_kernels`).
* Shifts leave ``|C S|^2`` unchanged, so the ``X_q`` third of ``U`` is one
  product for all shifts: ``2 n_shift + 1`` instead of ``3 n_shift`` blocks of
  ``D`` columns per direction of the products.
* The posterior is formed in place by a fused, parallel log-sum-exp that
  leaves ``e_+ + e_-`` and ``e_+ - e_-`` behind (and their sum over shifts);
  the gradient with respect to the slices is ``(Z_q * S - Z_a) / sigma^2``
  with ``Re Z_a = P_sum^T Re X``, ``Im Z_a = P_diff^T Im X`` and
  ``Z_q = (sum_s P_sum)^T X_q``.

Hot loop in float32/complex64 (or float64/complex128 for tests); per-image
values are accumulated and returned in float64.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from .fourier import PartialDFT, cube_half_width
from .grids import Band, quarter_turn_maps
from .marginal_kernels import (exp_pairs_exact, exp_pairs_fast, hvp_posterior_derivative, slice_gradient_t,
                               slice_rows)
from .poses import PoseQuadrature
from .projector import Slicer, slice_coordinates


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

    Rows ``2 s + p`` (shift ``s``, quarter turn ``p`` in {0, 1}) of every image:
    ``xr``, ``xi``: (2 * n_shift * B, D) ``Re X``, ``Im X`` with ``X = c C I``
    of the shifted, turned image; ``xq``: (2 * B, D) ``X_q = c C^2`` of the
    turned CTF (rows ``p``); ``norm2``: (B,) float64 ``sum_t c_t |I_t|^2``.
    ``xrq``: with one shift, ``[xr, xq]`` (2B, 2D), so that ``U`` is one product
    with twice the inner dimension (faster than two: their outputs dominate
    the memory traffic); None otherwise.
    """

    xr: np.ndarray
    xi: np.ndarray
    xq: np.ndarray
    norm2: np.ndarray
    size: int
    xrq: np.ndarray | None = None


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

    This is the CPU path (``device="cpu"``); :func:`make_likelihood` builds
    the array-module path of the other devices (:mod:`.xp_marginal`).
    """

    device = "cpu"

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
        index, conj = quarter_turn_maps(band)
        # turns 2 and 3 are the conjugates of turns 0 and 1 (rot^-2 k = -k); the
        # pairing below relies on it (the DC term is real for a real image)
        if not ((index[2] == index[0]).all() and (index[3] == index[1]).all()
                and (conj[2, 1:] != conj[0, 1:]).all() and (conj[3, 1:] != conj[1, 1:]).all()):
            raise AssertionError("quarter turns 2, 3 are not the conjugates of turns 0, 1")
        self.turn_index, self.turn_conj = index[:2], conj[:2]
        k = band.k.astype(np.float64)
        self.shift_phase = np.exp(2j * np.pi * (quadrature.shifts @ k.T) / self.n).astype(self.cdtype)
        self.log_weights = np.ascontiguousarray(
            quadrature.log_weights().reshape(quadrature.n_shifts, 4, quadrature.n_base), dtype=self.dtype)
        self.mult = band.multiplicity.astype(self.dtype)
        self.scale = 1.0 / (2.0 * self.sigma**2)
        self._buffers: dict[str, np.ndarray] = {}

    # ----------------------------------------------------------------- batch
    def prepare(self, images: np.ndarray, ctf: np.ndarray) -> BatchTerms:
        """Image-variant rows for a batch: ``images`` (B, D) complex, ``ctf`` (B, D) real.

        The imaginary part of the DC coefficient is dropped: it is zero for a
        real image, and it meets ``Im S(0) = 0`` of a real density anyway.
        """
        images = np.asarray(images, dtype=self.cdtype)
        ctf = np.asarray(ctf, dtype=self.dtype)
        b, d = images.shape
        shifted = images[None, :, :] * self.shift_phase[:, None, :]             # (S, B, D)
        variants = np.moveaxis(shifted[:, :, self.turn_index], 2, 1)             # (S, 2, B, D)
        variants = np.where(self.turn_conj[None, :, None, :], variants.conj(), variants)
        ctf_q = np.moveaxis(ctf[:, self.turn_index], 1, 0)[None]                 # (1, 2, B, D)
        x = self.mult * ctf_q * variants
        x.imag[..., 0] = 0
        norm2 = (np.abs(images.astype(np.complex128)) ** 2 * self.band.multiplicity).sum(axis=1)
        rows = (lambda a: np.ascontiguousarray(a.reshape(-1, d), dtype=self.dtype))
        xr, xq = rows(x.real), rows(self.mult * ctf_q**2)
        xrq = np.concatenate([xr, xq], axis=1) if self.quadrature.n_shifts == 1 else None
        return BatchTerms(xr=xr, xi=rows(x.imag), xq=xq, norm2=norm2, size=b, xrq=xrq)

    # --------------------------------------------------------------- slicing
    def slices(self, x: np.ndarray) -> np.ndarray:
        """Base slices ``S = T(F x)``, shape (n_base, D) complex."""
        return self.slicer.forward(self.dft.forward(x.astype(self.dtype, copy=False)))

    def slices_adjoint(self, g: np.ndarray) -> np.ndarray:
        """Gradient on ``x`` of ``Re <g, slices(x)>`` (g: d f / d Re S + i d f / d Im S)."""
        return self.dft.adjoint(self.slicer.adjoint(g))

    def _exp_logits(self, s: np.ndarray, terms: BatchTerms, combine: bool = True,
                    timings: dict | None = None):
        """Pair posteriors ``(u, v)`` (2 n_shift, B, n_base) unnormalised and their
        shift sum ``q`` (2, B, n_base) (see :func:`.marginal_kernels.exp_pairs_fast`),
        per-image NLL (B,) and ``1 / sum e``."""
        with _phase(timings, "forward GEMM"):
            u, v, q = self._row_products(terms, *self._slice_rows(s, s, 2.0, -1.0), "")
            if terms.xrq is not None:
                q = np.zeros((2, 1, s.shape[0]), dtype=self.dtype)
        with _phase(timings, "log-sum-exp"):
            lse = np.empty(terms.size, dtype=np.float64)
            inv_total = np.empty(terms.size, dtype=np.float64)
            kernel = exp_pairs_fast if self.dtype == np.float32 else exp_pairs_exact
            kernel(u, v, q, terms.xrq is None, self.log_weights, self.dtype.type(self.scale), combine,
                   lse, inv_total)
        if terms.xrq is not None:
            q = u                                          # one shift: the shift sum is u itself
        return u, v, q, terms.norm2 * self.scale - lse, inv_total

    def _posterior(self, s: np.ndarray, terms: BatchTerms) -> tuple[np.ndarray, np.ndarray]:
        """Posterior ``P`` (n_shift, 4, B, n_base) over poses and per-image NLL (B,) float64."""
        e_p, e_m, _, nll, inv_total = self._exp_logits(s, terms, combine=False)
        n_shift = self.quadrature.n_shifts
        p = np.concatenate([e_p.reshape(n_shift, 2, terms.size, -1),
                            e_m.reshape(n_shift, 2, terms.size, -1)], axis=1)
        p *= inv_total.astype(self.dtype)[:, None]
        return p, nll

    def _slice_rows(self, s: np.ndarray, w: np.ndarray, a_scale: float, q_scale: float, prefix: str = ""):
        """``([a Re w, q Re(conj(s) w)], a Im w)``: (n_base, 2D), (n_base, D) (:func:`slice_rows`)."""
        n_base, d = s.shape
        rq = self._buffer(prefix + "rq", (n_base, 2 * d))
        ri = self._buffer(prefix + "ri", (n_base, d))
        slice_rows(s, w, self.dtype.type(a_scale), self.dtype.type(q_scale), rq, ri)
        return rq, ri

    def _buffer(self, name: str, shape: tuple, dtype=None) -> np.ndarray:
        """A reused work array: fresh MB-sized arrays cost page faults every
        step, which are as slow as the products that fill them on this VM
        (the likelihood is therefore not thread-safe)."""
        dtype = self.dtype if dtype is None else np.dtype(dtype)
        buf = self._buffers.get(name)
        if buf is None or buf.shape != shape or buf.dtype != dtype:
            buf = self._buffers[name] = np.empty(shape, dtype=dtype)
        return buf

    def _row_products(self, terms: BatchTerms, rq: np.ndarray, ri: np.ndarray, prefix: str):
        """``u`` (2 n_shift, B, n_base), ``v`` (same) and ``q`` (2, B, n_base), or
        ``q = u`` with ``q`` fused into ``u`` when there is one shift (into the
        work arrays ``prefix + "u"`` etc.)."""
        n_base, d = ri.shape
        rows = terms.xi.shape[0]
        v = np.matmul(terms.xi, ri.T, out=self._buffer(prefix + "v", (rows, n_base)))
        u = self._buffer(prefix + "u", (rows, n_base))
        if terms.xrq is not None:
            np.matmul(terms.xrq, rq.T, out=u)
            u = u.reshape(2, terms.size, n_base)
            return u, v.reshape(u.shape), u
        np.matmul(terms.xr, rq[:, :d].T, out=u)
        q = np.matmul(terms.xq, rq[:, d:].T, out=self._buffer(prefix + "q", (2 * terms.size, n_base)))
        shape = (-1, terms.size, n_base)
        return u.reshape(shape), v.reshape(shape), q.reshape(shape)

    def _rows_over_total(self, rows: np.ndarray, inv_total: np.ndarray) -> np.ndarray:
        """Image rows scaled by each image's ``1 / sum e``: ``e^T (rows / total) = P^T rows``."""
        n_var = rows.shape[0] // inv_total.size
        return rows * np.tile(inv_total.astype(self.dtype), n_var)[:, None]

    def _pair_products(self, p_sum, p_diff, p_q, terms: BatchTerms, inv_total=None, prefix: str = "z"):
        """``Z^T`` blocks ``(Re Z_a, Im Z_a, Z_q)``, each (D, n_base): ``xr^T P_sum``,
        ``xi^T P_diff`` and ``xq^T sum_s P_sum`` (rows optionally ``/ total``), in
        work arrays named ``prefix + ...``."""
        n_base, d = p_sum.shape[-1], terms.xi.shape[1]
        scaled = ((lambda a: a) if inv_total is None else (lambda a: self._rows_over_total(a, inv_total)))
        # Z^T = (x / total)^T e: this orientation runs ~1.5x faster than e^T (x / total)
        zi = np.matmul(scaled(terms.xi).T, p_diff.reshape(-1, n_base), out=self._buffer(prefix + "i", (d, n_base)))
        zrq = self._buffer(prefix + "rq", (2 * d, n_base))
        if terms.xrq is not None:                          # one shift: P_sum is its own shift sum
            np.matmul(scaled(terms.xrq).T, p_sum.reshape(-1, n_base), out=zrq)
        else:
            np.matmul(scaled(terms.xr).T, p_sum.reshape(-1, n_base), out=zrq[:d])
            np.matmul(scaled(terms.xq).T, p_q.reshape(-1, n_base), out=zrq[d:])
        return zrq[:d], zi, zrq[d:]

    # ------------------------------------------------------------ public API
    def nll(self, x: np.ndarray, terms: BatchTerms) -> np.ndarray:
        """Per-image NLL (B,) float64."""
        return self._exp_logits(self.slices(x), terms)[3]

    def posterior(self, x: np.ndarray, terms: BatchTerms) -> tuple[np.ndarray, np.ndarray]:
        """Posterior over poses in pose order, shape (B, M), and per-image NLL."""
        p, nll = self._posterior(self.slices(x), terms)
        return np.moveaxis(p, 2, 0).reshape(terms.size, -1), nll

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
        e_sum, e_diff, e_q, nll, inv_total = self._exp_logits(s, terms, True, timings)
        with _phase(timings, "backward GEMM"):
            zr_t, zi_t, zq_t = self._pair_products(e_sum, e_diff, e_q, terms, inv_total)
            g = self._buffer("g", s.shape, s.dtype)
            slice_gradient_t(zr_t, zi_t, zq_t, s.view(self.dtype), self.dtype.type(1.0 / (self.sigma**2 * terms.size)),
                             g.view(self.dtype))
        with _phase(timings, "adjoint slicing"):
            g_cube = self.slicer.adjoint(g)
        with _phase(timings, "adjoint DFT"):
            grad = self.dft.adjoint(g_cube)
        return nll, grad

    def gemm_flops(self, batch_size: int) -> float:
        """Floating-point operations of the forward + backward products for one batch.

        Each direction multiplies ``2 n_shift B`` rows of ``2D`` columns
        (``xr``, ``xi``) and ``2B`` rows of ``D`` columns (``xq``) by the
        ``n_base`` slices (one shift: ``2B`` rows of ``3D``).
        """
        n_shift = self.quadrature.n_shifts
        blocks = 3 if n_shift == 1 else 2 * n_shift + 1
        return 2.0 * 2.0 * 2 * batch_size * blocks * self.band.size * self.quadrature.n_base

    def hvp(self, x: np.ndarray, v: np.ndarray, terms: BatchTerms) -> np.ndarray:
        """Hessian of the batch-mean NLL at ``x`` applied to ``v``.

        With ``W = T F v`` the slices of the direction, the logit derivatives of
        a pair are ``dU + dQ +- dV`` with ``dU = xr @ (2 Re W)^T``,
        ``dQ = xq @ (-2 Re(conj(S) W))^T`` and ``dV = xi @ (2 Im W)^T`` (times
        ``1 / (2 sigma^2)``); the posterior derivative ``dp = p (dL - sum_j p dL)``
        is formed per pair (:func:`.marginal_kernels.hvp_posterior_derivative`),
        and the slice-space product ``(Z_q W + dZ_q S - dZ_a) / sigma^2`` with
        ``Z = P^T X`` and ``dZ = dP^T X`` is mapped back by the adjoint slicing.
        """
        s = self.slices(x)
        w = self.slices(v)
        e_sum, e_diff, e_q, _, inv_total = self._exp_logits(s, terms, combine=True)
        du, dv, dq = self._row_products(terms, *self._slice_rows(s, w, 2 * self.scale, -2 * self.scale, "d"), "d")
        if terms.xrq is not None:
            dq = np.zeros((2, 1, s.shape[0]), dtype=self.dtype)
        hvp_posterior_derivative(e_sum, e_diff, inv_total, du, dq, terms.xrq is None, dv)
        if terms.xrq is not None:
            dq = du
        zq = self._rows_over_total(terms.xq, inv_total).T @ e_q.reshape(-1, s.shape[0])
        dzr, dzi, dzq = self._pair_products(du, dv, dq, terms, prefix="dz")
        h = (zq.T * w + dzq.T * s - (dzr.T + 1j * dzi.T)) / (self.sigma**2 * terms.size)
        return self.slices_adjoint(h.astype(self.cdtype, copy=False))

    def expectation(self, x: np.ndarray, terms: BatchTerms, hard: bool = False):
        """Posterior-weighted sums per base slice over the batch (the E-step).

        ``za[j] = sum_i P_ij c C_i I_i`` and ``zq[j] = sum_i P_ij c C_i^2``
        (images moved into each pose's frame by the variant rows), i.e.
        ``Z = P^T X`` -- the same products as the gradient.  With ``hard``
        the posterior is replaced by a one-hot at each image's most probable
        pose (projection matching's global search).
        Returns ``(za complex (n_base, D), zq real (n_base, D))``.
        """
        s = self.slices(x)
        p, _ = self._posterior(s, terms)                                    # (S, 4, B, n_base)
        if hard:
            flat = np.moveaxis(p, 2, 0).reshape(terms.size, -1)
            best = flat.argmax(axis=1)
            one_hot = np.zeros_like(flat)
            one_hot[np.arange(terms.size), best] = 1
            p = np.moveaxis(one_hot.reshape(terms.size, *p.shape[:2], -1), 0, 2)
        p_sum = p[:, :2] + p[:, 2:]
        zr_t, zi_t, zq_t = self._pair_products(p_sum, p[:, :2] - p[:, 2:], p_sum.sum(axis=0), terms)
        return (zr_t.T + 1j * zi_t.T).astype(self.cdtype), np.array(zq_t.T, order="C")

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


def make_likelihood(box_size: int, band: Band, quadrature: PoseQuadrature, sigma: float,
                    dtype=np.float32, device: str = "cpu"):
    """The likelihood of ``device``: this module's CPU path for ``"cpu"``, else the
    array-module path :class:`.xp_marginal.DeviceLikelihood` (``"numpy"``, ``"cuda"``;
    ``RuntimeError`` when CuPy or a GPU is missing)."""
    if device == "cpu":
        return MarginalLikelihood(box_size, band, quadrature, sigma, dtype=dtype)
    from .xp_marginal import DeviceLikelihood
    return DeviceLikelihood(box_size, band, quadrature, sigma, dtype=dtype, device=device)
