"""Optional accelerator backend for the pose phases of :class:`.marginal.MarginalLikelihood`.

The pose phases -- the products of the image rows with the slices, the
log-sum-exp over poses and the products back to slice gradients -- are
almost all of a step's arithmetic once there are shifts (DESIGN.md, "Fast
evaluation").  This module writes them once against an *array module*
``xp`` with NumPy's API: ``numpy`` itself (to test this code on any
machine) or ``cupy`` on an NVIDIA GPU.  The volume phases (partial DFT,
slicing and their adjoints) stay on the CPU; only the slices ``S``
(``n_base x D``) and the batch rows travel to the device and the slice
gradient comes back, a few MB per step.

The maths is the CPU path's (conjugate pairs, the shift-shared ``|C S|^2``
product), with the library ``exp``:

.. math::

    L^{\\pm}_{s,p} = \\kappa\\,(U_{s,p} + Q_p \\pm V_{s,p}) + \\log w_{s,p(+2)},\\quad
    \\mathrm{NLL}_b = \\kappa \\|I_b\\|^2 - \\log\\sum e^{L},

and the slice gradient ``(Z_q S - Z_a) / (sigma^2 B)`` with
``Re Z_a = P_sum^T Re X``, ``Im Z_a = P_diff^T Im X``,
``Z_q = (sum_s P_sum)^T X_q``.

``nll``, ``nll_and_grad`` and ``hvp`` use it; the E-step sums stay on the
CPU path.  The backend is never required: nothing imports CuPy unless
``device="cuda"`` is asked for.
"""
from __future__ import annotations

import numpy as np

DEVICES = ("cpu", "numpy", "cuda")


def array_module(device: str):
    """The array module of ``device``: ``"numpy"`` -> numpy, ``"cuda"`` -> cupy.

    Raises
    ------
    ValueError
        For an unknown device name.
    RuntimeError
        When ``"cuda"`` is asked for and CuPy or a GPU is missing.
    """
    if device == "numpy":
        return np
    if device == "cuda":
        try:
            import cupy
        except ImportError as exc:
            raise RuntimeError("device='cuda' needs CuPy (pip install cupy-cuda12x) and an NVIDIA GPU; "
                               "use device='cpu'") from exc
        try:
            cupy.cuda.runtime.getDeviceCount()
        except Exception as exc:  # CUDARuntimeError without a driver / device
            raise RuntimeError(f"device='cuda': no usable GPU ({exc}); use device='cpu'") from exc
        return cupy
    raise ValueError(f"unknown device {device!r}; choose from {DEVICES}")


def to_host(a) -> np.ndarray:
    """A NumPy copy of a device array (CuPy's ``.get()``), or the array itself."""
    return a.get() if hasattr(a, "get") and not isinstance(a, np.ndarray) else np.asarray(a)


class ArrayModulePoses:
    """The pose phases of one likelihood on the array module of ``device``.

    Parameters
    ----------
    likelihood : MarginalLikelihood
        Supplies the quadrature log-weights, ``sigma``, the dtype and shapes.
    device : {"numpy", "cuda"}
    """

    def __init__(self, likelihood, device: str):
        self.xp = array_module(device)
        self.device = device
        self.dtype = likelihood.dtype
        self.kappa = likelihood.dtype.type(likelihood.scale)
        self.sigma2 = likelihood.sigma**2
        self.n_shift = likelihood.quadrature.n_shifts
        self.log_weights = self.xp.asarray(likelihood.log_weights)          # (S, 4, n_base)

    def _logits(self, s, terms):
        """``(L+, L-)`` of shape (S, 2, B, n_base), the device slices and rows."""
        xp, b = self.xp, terms.size
        sd = xp.asarray(s)
        xr, xi, xq = xp.asarray(terms.xr), xp.asarray(terms.xi), xp.asarray(terms.xq)
        n_base = sd.shape[0]
        u = (xr @ (2 * sd.real).T).reshape(self.n_shift, 2, b, n_base)
        v = (xi @ (2 * sd.imag).T).reshape(self.n_shift, 2, b, n_base)
        q = (xq @ -(sd.real**2 + sd.imag**2).T).reshape(1, 2, b, n_base)
        a = (u + q) * self.kappa
        v *= self.kappa
        lw = self.log_weights[:, :, None, :]
        return a + v + lw[:, :2], a - v + lw[:, 2:], sd, (xr, xi, xq)

    def _posterior(self, s, terms):
        """Unnormalised ``e+``, ``e-`` (in place of the logits), ``1 / total`` and ``lse`` (B,)."""
        xp = self.xp
        lp, lm, sd, rows = self._logits(s, terms)
        top = xp.maximum(lp.max(axis=(0, 1, 3)), lm.max(axis=(0, 1, 3)))[:, None]   # (B, 1)
        ep = xp.exp(lp - top, out=lp)
        em = xp.exp(lm - top, out=lm)
        total = ep.sum(axis=(0, 1, 3), dtype=np.float64) + em.sum(axis=(0, 1, 3), dtype=np.float64)
        lse = top[:, 0].astype(np.float64) + xp.log(total)
        return ep, em, 1.0 / total, lse, sd, rows

    def nll(self, s: np.ndarray, terms) -> np.ndarray:
        """Per-image NLL (B,) float64 for slices ``s`` (host array)."""
        lse = self._posterior(s, terms)[3]
        return terms.norm2 * float(self.kappa) - to_host(lse)

    def nll_and_slice_grad(self, s: np.ndarray, terms) -> tuple[np.ndarray, np.ndarray]:
        """Per-image NLL (B,) and the gradient of the batch mean with respect to the slices."""
        ep, em, inv_total, lse, sd, (xr, xi, xq) = self._posterior(s, terms)
        n_base = sd.shape[0]
        inv = inv_total.astype(self.dtype)[:, None]
        p_sum = (ep + em) * inv
        p_diff = (ep - em) * inv
        zr = xr.T @ p_sum.reshape(-1, n_base)
        zi = xi.T @ p_diff.reshape(-1, n_base)
        zq = xq.T @ p_sum.sum(axis=0).reshape(-1, n_base)
        g = (zq.T * sd - (zr.T + 1j * zi.T)) / self.dtype.type(self.sigma2 * terms.size)
        nll = terms.norm2 * float(self.kappa) - to_host(lse)
        return nll, np.ascontiguousarray(to_host(g), dtype=sd.dtype)

    def hvp_slices(self, s: np.ndarray, w: np.ndarray, terms) -> np.ndarray:
        """Slice-space Hessian-vector product for slices ``s`` and direction slices ``w``.

        As :meth:`MarginalLikelihood.hvp`: logit derivatives ``dU + dQ +- dV``,
        ``dp = p (dL - sum p dL)`` per pair, then
        ``(Z_q W + dZ_q S - dZ_a) / (sigma^2 B)``.
        """
        xp = self.xp
        ep, em, inv_total, _, sd, (xr, xi, xq) = self._posterior(s, terms)
        wd = xp.asarray(w)
        n_base, k2 = sd.shape[0], 2 * self.kappa
        du = (xr @ (k2 * wd.real).T).reshape(ep.shape)
        dv = (xi @ (k2 * wd.imag).T).reshape(ep.shape)
        dq = (xq @ (-k2 * (sd.real * wd.real + sd.imag * wd.imag)).T).reshape(1, *ep.shape[1:])
        inv = inv_total.astype(self.dtype)[:, None]
        p_sum, p_diff = (ep + em) * inv, (ep - em) * inv
        a = du + dq
        a -= (p_sum * a + p_diff * dv).sum(axis=(0, 1, 3), dtype=np.float64).astype(self.dtype)[:, None]
        dp_sum, dp_diff = p_sum * a + p_diff * dv, p_diff * a + p_sum * dv
        zq = xq.T @ p_sum.sum(axis=0).reshape(-1, n_base)
        dzr = xr.T @ dp_sum.reshape(-1, n_base)
        dzi = xi.T @ dp_diff.reshape(-1, n_base)
        dzq = xq.T @ dp_sum.sum(axis=0).reshape(-1, n_base)
        h = (zq.T * wd + dzq.T * sd - (dzr.T + 1j * dzi.T)) / self.dtype.type(self.sigma2 * terms.size)
        return np.ascontiguousarray(to_host(h), dtype=sd.dtype)
