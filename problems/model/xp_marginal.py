"""The marginal likelihood written once against an array module: NumPy here, CuPy on a GPU.

The same objective as :mod:`.marginal` (paper Eqs. 2-6, DESIGN.md "Fast
evaluation"), every phase on the device of :mod:`.devices`:

1. partial DFT: ``cube = F_z F_y F_x x`` on the band's 2x oversampled cube
   (three complex products; the Hermitian half ``m_x >= 0`` only) and its
   adjoint ``Re F^H g``;
2. slicing ``S = T cube``: the trilinear interpolation as a fixed sparse
   matrix ``T`` (CSR, 8 entries a row, ``n_base D`` rows), applied to the
   cube's real and imaginary parts as one two-column product; the adjoint
   scatter-add is the product with ``T^T`` (also CSR, built once), so no
   atomics and the same code on both modules;
3. batch terms: the image-variant rows ``X = c C I`` of every shift and the
   quarter turns 0, 1 (turns 2, 3 are their conjugates), ``X_q = c C^2``;
4. pose products ``U = Re X (2 Re S)^T + X_q (-|S|^2)^T``, ``V = Im X (2 Im S)^T``,
   logits ``L_pm = kappa (U pm V) + log w`` with ``kappa = 1 / (2 sigma^2)``;
5. a stable log-sum-exp over all poses (float64 totals):
   ``NLL_b = kappa ||I_b||^2 - log sum_j exp L_bj``;
6. slice gradient ``(Z_q S - Z_a) / (sigma^2 B)`` with ``Re Z_a = P_sum^T Re X``,
   ``Im Z_a = P_diff^T Im X``, ``Z_q = (sum_s P_sum)^T X_q``, then the
   adjoint slicing and the adjoint DFT;
7. the prior ``rho`` (:mod:`.prior`) and its derivatives, elementwise.

Unlike the CPU path, mirrored poses' slices are interpolated, not derived
(on a GPU the products dominate, not the gather).  Training, test and
scoring images live on the device (:class:`.devices.DeviceRows`); per call
only ``x`` (and ``v``) go down and the values and gradient come back.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .devices import array_module, sparse_module, timed_phase, to_host
from .fourier import PartialDFT, cube_half_width
from .grids import Band, quarter_turn_maps
from .poses import PoseQuadrature
from .projector import slice_coordinates


@dataclass
class DeviceTerms:
    """Device batch terms: rows ``2 s + p`` of ``Re X``, ``Im X`` (2 n_shift B, D), ``X_q`` (2B, D),
    ``norm2 = sum_t c_t |I_t|^2`` (B,) float64."""

    xr: object
    xi: object
    xq: object
    norm2: object
    size: int


def _per_image(a, op: str):
    """Max or float64 sum of ``a`` (S, 2, B, n_base) per image (B,): the pose axis first (axes
    (0, 1, 3) at once left an H200 B-way parallel: 4.5 of 16 ms a step)."""
    if op == "max":
        return a.max(axis=3).max(axis=(0, 1))
    return a.sum(axis=3, dtype=np.float64).sum(axis=(0, 1))


def trilinear_matrix(xp, coords, m_max: int, dtype):
    """``T`` (rows, K^3) CSR with ``(T cube)[r]`` the trilinear value at ``coords[r] + m_max``.

    ``coords`` (rows, 3) are ``(x, y, z)`` cube coordinates about the centre;
    the cube is indexed ``[z, y, x]``.  Corner ``(dz, dy, dx)`` of cell ``i``
    has flat index ``((i_z + dz) K + i_y + dy) K + i_x + dx`` and weight
    ``prod (d f + (1 - d)(1 - f))``; the 8 corners are in increasing order.
    """
    k = 2 * m_max + 1
    p = xp.asarray(coords, dtype=dtype) + dtype(m_max)
    cell = xp.floor(p).astype(np.int32)
    frac = p - cell.astype(dtype)
    base = (cell[:, 2] * k + cell[:, 1]) * k + cell[:, 0]
    indices, weights = [], []
    for dz in (0, 1):
        for dy in (0, 1):
            for dx in (0, 1):
                indices.append(base + (dz * k + dy) * k + dx)
                w = [frac[:, a] if d else 1 - frac[:, a] for a, d in ((0, dx), (1, dy), (2, dz))]
                weights.append(w[0] * w[1] * w[2])
    rows = p.shape[0]
    indptr = xp.arange(0, 8 * rows + 1, 8, dtype=np.int32)
    sp = sparse_module(xp)
    return sp.csr_matrix((xp.stack(weights, 1).ravel(), xp.stack(indices, 1).ravel(), indptr),
                         shape=(rows, k**3))


class DeviceLikelihood:
    """The marginal NLL, its gradient, HVP and E-step sums on an array-module device.

    Same parameters and public methods as :class:`.marginal.MarginalLikelihood`
    (``prepare``, ``nll``, ``nll_and_grad``, ``hvp``, ``posterior``,
    ``expectation``, ``complete_data_objective``, ``slices``,
    ``slices_adjoint``, ``gemm_flops``), plus the prior fused into the same
    device pass (``*_with_prior``) and :meth:`nll_batches` for held-out sets.
    Inputs ``x``, ``v`` are host arrays; results come back as host arrays.
    """

    def __init__(self, box_size: int, band: Band, quadrature: PoseQuadrature, sigma: float,
                 dtype=np.float32, device: str = "numpy"):
        xp = self.xp = array_module(device)
        self.device = device
        self.n = n = int(box_size)
        self.band, self.quadrature, self.sigma = band, quadrature, float(sigma)
        self.dtype = np.dtype(dtype)
        self.cdtype = np.result_type(self.dtype, np.complex64)
        m = self.m_max = cube_half_width(band.r_max)
        self._dft = PartialDFT(n, m, self.dtype, xp=xp)
        coords = slice_coordinates(quadrature.base_matrices(), band.k, self.dtype)
        if np.abs(coords).max() > m - 1:
            raise ValueError("slice coordinates leave the cube; increase m_max")
        self._t = trilinear_matrix(xp, coords.reshape(-1, 3), m, self.dtype.type)
        self._t_adj = self._t.T.tocsr()
        index, conj = quarter_turn_maps(band)
        self._turn_index, self._turn_conj = xp.asarray(index[:2]), xp.asarray(conj[:2])
        self._shift_phase = xp.asarray(np.exp(2j * np.pi * (quadrature.shifts @ band.k.T) / n).astype(self.cdtype))
        lw = quadrature.log_weights().reshape(quadrature.n_shifts, 4, 1, -1)        # (S, 4, 1, n_base)
        if not np.array_equal(lw[:, :2], lw[:, 2:]):     # uniform in-plane weights: turns p, p + 2 alike
            raise ValueError("quarter turns p and p + 2 must share their quadrature weights")
        self._lw = xp.asarray(lw[:, :2].astype(self.dtype))
        self._mult = xp.asarray(band.multiplicity.astype(self.dtype))
        self.scale = 1.0 / (2.0 * self.sigma**2)
        self.kappa = self.dtype.type(self.scale)

    # ------------------------------------------------------------ transfers
    def put(self, a, dtype=None):
        """``a`` on the device (in ``dtype`` if given)."""
        return self.xp.asarray(a, dtype=dtype)

    def _x(self, x):
        return self.xp.asarray(np.ascontiguousarray(x, dtype=self.dtype))

    # ---------------------------------------------------------- volume phases
    def dft(self, x):
        """The oversampled cube ``[mz, my, mx]`` of a device volume (phase 1, :class:`.fourier.PartialDFT`)."""
        return self._dft.forward(x)

    def dft_adjoint(self, g):
        """``Re F^H g``: the gradient on ``x`` of ``Re <g, dft(x)>`` (device arrays)."""
        return self._dft.adjoint(g)

    def _slice(self, cube):
        """``T cube`` (phase 2): (n_base, D) complex."""
        flat = cube.reshape(-1).view(self.dtype).reshape(-1, 2)
        out = self.xp.ascontiguousarray(self._t @ flat)
        return out.view(self.cdtype).reshape(self.quadrature.n_base, self.band.size)

    def _slice_adjoint(self, g):
        """``T^T g``: a (K, K, K) complex cube."""
        k = 2 * self.m_max + 1
        flat = self.xp.ascontiguousarray(g, dtype=self.cdtype).reshape(-1).view(self.dtype).reshape(-1, 2)
        return self.xp.ascontiguousarray(self._t_adj @ flat).view(self.cdtype).reshape(k, k, k)

    def slices(self, x):
        """Base slices of a host volume, (n_base, D) host complex array."""
        return to_host(self._slice(self.dft(self._x(x))))

    def slices_adjoint(self, g):
        """Gradient on ``x`` (host) of ``Re <g, slices(x)>`` for host slice values ``g``."""
        return to_host(self.dft_adjoint(self._slice_adjoint(self.put(g))))

    # ------------------------------------------------------------ batch terms
    def prepare(self, images, ctf) -> DeviceTerms:
        """Batch terms (phase 3) of ``images`` (B, D) complex and ``ctf`` (B, D), host or device."""
        xp = self.xp
        images = xp.asarray(images, dtype=self.cdtype)
        ctf = xp.asarray(ctf, dtype=self.dtype)
        d = images.shape[1]
        shifted = images[None, :, :] * self._shift_phase[:, None, :]                  # (S, B, D)
        variants = xp.moveaxis(shifted[:, :, self._turn_index], 2, 1)                # (S, 2, B, D)
        variants = xp.where(self._turn_conj[None, :, None, :], variants.conj(), variants)
        ctf_q = xp.moveaxis(ctf[:, self._turn_index], 1, 0)[None]                    # (1, 2, B, D)
        x = self._mult * ctf_q * variants
        xi = xp.ascontiguousarray(x.imag)
        xi[..., 0] = 0                            # Im of the DC term: zero for a real image
        norm2 = (xp.abs(images.astype(np.complex128)) ** 2 * self._mult.astype(np.float64)).sum(axis=1)
        rows = (lambda a: xp.ascontiguousarray(a.reshape(-1, d), dtype=self.dtype))
        return DeviceTerms(rows(x.real), rows(xi), rows(self._mult * ctf_q**2), norm2, images.shape[0])

    # ------------------------------------------------------------ pose phases
    def _products(self, s, terms: DeviceTerms, timings=None):
        """Forward products (phase 4): ``u = kappa (U + Q) + log w``, ``v = kappa V``,
        each (S, 2, B, n_base), so that ``L_pm = u pm v``.

        ``kappa`` is applied to the (small) slice side, the weights and ``Q`` are
        added in place: on a GPU the passes over these arrays, not the
        products, set the pace."""
        with self._phase(timings, "forward GEMM"):
            b, n_shift, n_base = terms.size, self.quadrature.n_shifts, s.shape[0]
            k2 = self.dtype.type(2 * self.scale)
            u = (terms.xr @ (k2 * s.real).T).reshape(n_shift, 2, b, n_base)
            v = (terms.xi @ (k2 * s.imag).T).reshape(n_shift, 2, b, n_base)
            u += (terms.xq @ (-self.kappa * (s.real**2 + s.imag**2)).T).reshape(1, 2, b, n_base)
            u += self._lw
        return u, v

    def _posterior(self, s, terms: DeviceTerms, timings=None):
        """Unnormalised ``e+``, ``e-`` (S, 2, B, n_base; in the products' memory), ``1 / total``
        and ``lse`` (B,) float64 (phases 4, 5)."""
        xp = self.xp
        u, v = self._products(s, terms, timings)
        with self._phase(timings, "log-sum-exp"):
            lp = xp.add(u, v)
            lm = xp.subtract(u, v, out=u)
            top = xp.maximum(_per_image(lp, "max"), _per_image(lm, "max"))[:, None]         # (B, 1)
            for a in (lp, lm):
                xp.subtract(a, top, out=a)
                xp.exp(a, out=a)
            total = _per_image(lp, "sum") + _per_image(lm, "sum")
            lse = top[:, 0].astype(np.float64) + xp.log(total)
        return lp, lm, 1.0 / total, lse

    def _nll(self, terms, lse):
        return terms.norm2 * self.scale - lse

    def _rows(self, rows, inv):
        """Image rows times their image's ``inv`` (``e^T (rows inv) = P^T rows``, P normalised)."""
        return rows if inv is None else rows * self.xp.tile(inv, rows.shape[0] // inv.size)[:, None]

    def _z(self, p_sum, p_diff, terms, inv=None):
        """``(Re Z_a, Im Z_a, Z_q)``, each (n_base, D): ``P_sum^T Re X``, ``P_diff^T Im X``,
        ``(sum_s P_sum)^T X_q``, with ``P = e inv`` (``inv`` per image, folded into the rows)."""
        n_base = p_sum.shape[-1]
        zr = self._rows(terms.xr, inv).T @ p_sum.reshape(-1, n_base)
        zi = self._rows(terms.xi, inv).T @ p_diff.reshape(-1, n_base)
        zq = self._rows(terms.xq, inv).T @ p_sum.sum(axis=0).reshape(-1, n_base)
        return zr.T, zi.T, zq.T

    def _grad_device(self, x, terms: DeviceTerms, timings=None):
        """Per-image NLL (B,) and the gradient of their mean, both on the device."""
        xp = self.xp
        with self._phase(timings, "partial DFT"):
            cube = self.dft(x)
        with self._phase(timings, "slicing"):
            s = self._slice(cube)
        ep, em, inv_total, lse = self._posterior(s, terms, timings)
        with self._phase(timings, "backward GEMM"):
            p_sum = xp.add(ep, em)
            p_diff = xp.subtract(ep, em, out=ep)
            zr, zi, zq = self._z(p_sum, p_diff, terms, inv_total.astype(self.dtype))
            g = (zq * s - (zr + 1j * zi)) * self.dtype.type(1.0 / (self.sigma**2 * terms.size))
        with self._phase(timings, "adjoint slicing"):
            g_cube = self._slice_adjoint(g)
        with self._phase(timings, "adjoint DFT"):
            grad = self.dft_adjoint(g_cube)
        return self._nll(terms, lse), grad

    def _hvp_device(self, x, v, terms: DeviceTerms):
        """Hessian of the batch-mean NLL at ``x`` times ``v`` (device arrays).

        Logit derivatives ``dU + dQ pm dV`` with ``dU = Re X (2 kappa Re W)^T``,
        ``dQ = X_q (-2 kappa Re(conj(S) W))^T``, ``dV = Im X (2 kappa Im W)^T``
        (``W`` the slices of ``v``); ``dp = p (dL - mu)``, ``mu = sum_j p dL``,
        per pair:  ``dp_+ + dp_- = e_sum (a - mu) + e_diff dV`` and
        ``dp_+ - dp_- = e_diff (a - mu) + e_sum dV`` over the image's total
        (``a = dU + dQ``); then ``(Z_q W + dZ_q S - dZ_a) / (sigma^2 B)`` back
        through the adjoints.  In place where the arrays are pose-sized.
        """
        xp = self.xp
        s, w = self._slice(self.dft(x)), self._slice(self.dft(v))
        ep, em, inv_total, _ = self._posterior(s, terms)
        k2 = 2 * self.kappa
        a = (terms.xr @ (k2 * w.real).T).reshape(ep.shape)
        dv = (terms.xi @ (k2 * w.imag).T).reshape(ep.shape)
        a += (terms.xq @ (-k2 * (s.real * w.real + s.imag * w.imag)).T).reshape(1, *ep.shape[1:])
        e_sum = xp.add(ep, em)
        e_diff = xp.subtract(ep, em, out=em)
        tmp = xp.multiply(e_sum, a, out=ep)
        mu = _per_image(tmp, "sum")
        mu += _per_image(xp.multiply(e_diff, dv, out=tmp), "sum")
        a -= (mu * inv_total).astype(self.dtype)[:, None]
        dp_sum = xp.multiply(e_sum, a, out=tmp)
        dp_sum += xp.multiply(e_diff, dv)
        dp_diff = xp.multiply(e_diff, a, out=a)
        dp_diff += xp.multiply(e_sum, dv, out=dv)
        inv = inv_total.astype(self.dtype)
        _, _, zq = self._z(e_sum, e_diff, terms, inv)
        dzr, dzi, dzq = self._z(dp_sum, dp_diff, terms, inv)
        h = (zq * w + dzq * s - (dzr + 1j * dzi)) * self.dtype.type(1.0 / (self.sigma**2 * terms.size))
        return self.dft_adjoint(self._slice_adjoint(h))

    # ------------------------------------------------------------ public API
    def nll(self, x, terms: DeviceTerms) -> np.ndarray:
        """Per-image NLL (B,) float64 (host)."""
        s = self._slice(self.dft(self._x(x)))
        return to_host(self._nll(terms, self._posterior(s, terms)[3]))

    def nll_batches(self, x, images, ctf, batch: int = 100) -> np.ndarray:
        """Per-image NLL of a whole (device-resident) set, the slices computed once."""
        s = self._slice(self.dft(self._x(x)))
        out = [self._nll(t, self._posterior(s, t)[3])
               for t in (self.prepare(images[i:i + batch], ctf[i:i + batch]) for i in range(0, len(images), batch))]
        return to_host(self.xp.concatenate(out))

    def nll_and_grad(self, x, terms: DeviceTerms, timings: dict | None = None):
        """Per-image NLL (B,) and the gradient of their mean (host arrays)."""
        with self._phase(timings, "transfer x"):
            xd = self._x(x)
        nll, grad = self._grad_device(xd, terms, timings)
        with self._phase(timings, "transfer f, g"):
            out = to_host(nll), to_host(grad)
        return out

    def hvp(self, x, v, terms: DeviceTerms) -> np.ndarray:
        return to_host(self._hvp_device(self._x(x), self._x(v), terms))

    def posterior(self, x, terms: DeviceTerms):
        """Posterior over poses in pose order, (B, M) host, and per-image NLL."""
        s = self._slice(self.dft(self._x(x)))
        p, lse = self._normalised(s, terms)
        return to_host(self.xp.moveaxis(p, 2, 0).reshape(terms.size, -1)), to_host(self._nll(terms, lse))

    def _normalised(self, s, terms):
        ep, em, inv_total, lse = self._posterior(s, terms)
        n_shift, b = self.quadrature.n_shifts, terms.size
        p = self.xp.concatenate([ep, em], axis=1) * inv_total.astype(self.dtype)[:, None]
        return p.reshape(n_shift, 4, b, -1), lse

    def expectation(self, x, terms: DeviceTerms, hard: bool = False):
        """E-step sums ``za = P^T X`` (n_base, D) complex and ``zq`` (n_base, D), host (see
        :meth:`.marginal.MarginalLikelihood.expectation`); ``hard``: one-hot at each image's best pose."""
        xp = self.xp
        p, _ = self._normalised(self._slice(self.dft(self._x(x))), terms)
        if hard:
            flat = xp.moveaxis(p, 2, 0).reshape(terms.size, -1)
            one_hot = xp.zeros_like(flat)
            one_hot[xp.arange(terms.size), flat.argmax(axis=1)] = 1
            p = xp.moveaxis(one_hot.reshape(terms.size, *p.shape[:2], -1), 0, 2)
        zr, zi, zq = self._z(p[:, :2] + p[:, 2:], p[:, :2] - p[:, 2:], terms)
        return to_host((zr + 1j * zi).astype(self.cdtype)), to_host(xp.ascontiguousarray(zq))

    def complete_data_objective(self, x, za, zq, count: int):
        """The M-step objective ``Q(x)`` and its gradient (:meth:`.marginal.MarginalLikelihood.complete_data_objective`)."""
        s = self._slice(self.dft(self._x(x)))
        za, zq = self.put(za), self.put(zq)
        value = float((zq * (s.real**2 + s.imag**2) - 2 * (za.conj() * s).real).sum(dtype=np.float64))
        g = ((zq * s - za) / (self.sigma**2 * count)).astype(self.cdtype)
        return value / (2 * self.sigma**2 * count), to_host(self.dft_adjoint(self._slice_adjoint(g)))

    # ------------------------------------------- the prior in the same pass
    def _prior(self, x, prior, scale: float):
        """``rho(x)`` (float64 device scalar) and ``scale * grad rho`` (:mod:`.prior`)."""
        xp = self.xp
        neg = xp.minimum(x, 0)
        value = (prior.lambda_plus * xp.maximum(x, 0) - prior.lambda_minus * neg**3).sum(dtype=np.float64)
        grad = self.dtype.type(scale * prior.lambda_plus) * (x >= 0) - self.dtype.type(3 * scale * prior.lambda_minus) * neg**2
        return value, grad

    def value_with_prior(self, x, terms, prior):
        """Per-image NLL (host) and ``rho(x)``."""
        xd = self._x(x)
        s = self._slice(self.dft(xd))
        nll = self._nll(terms, self._posterior(s, terms)[3])
        return to_host(nll), float(self._prior(xd, prior, 0.0)[0])

    def grad_with_prior(self, x, terms, prior, scale: float):
        """Per-image NLL, ``rho(x)`` and ``grad (mean NLL + scale rho)`` (host), in one device pass."""
        xd = self._x(x)
        nll, grad = self._grad_device(xd, terms)
        value, g_prior = self._prior(xd, prior, scale)
        grad += g_prior
        return to_host(nll), float(value), to_host(grad)

    def hvp_with_prior(self, x, v, terms, prior, scale: float):
        """``(H_NLL + scale diag rho'') v`` (host); ``rho'' = 6 lambda_- |x|`` for ``x < 0``."""
        xd, vd = self._x(x), self._x(v)
        h = self._hvp_device(xd, vd, terms)
        h += self.dtype.type(-6 * scale * prior.lambda_minus) * self.xp.minimum(xd, 0) * vd
        return to_host(h)

    def gemm_flops(self, batch_size: int) -> float:
        """Flops of the forward + backward pose products (as :meth:`.marginal.MarginalLikelihood.gemm_flops`)."""
        return 2.0 * 2.0 * 2 * batch_size * (2 * self.quadrature.n_shifts + 1) * self.band.size * self.quadrature.n_base

    def _phase(self, timings, name):  # noqa: D102 (devices.timed_phase)
        return timed_phase(self.xp, timings, name)
