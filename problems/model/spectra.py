"""Exact spectra of the objective's Hessian, diagonal preconditioners and Hutchinson's estimator.

**The space.**  The oracle's variable is a real volume ``x`` (N^3 voxels),
but the data only see its Fourier coefficients near the band: ``H_x`` has a
huge null space (everything outside the band) and tiny eigenvalues from the
oversampled interpolation's leakage, so its condition number on its range
says nothing about resolution.  We therefore restrict the Hessian to the
*band-limited real volumes*

.. math:: V_r = \\{x \\text{ real} : \\hat x(\\xi) = 0 \\text{ for integer } |\\xi| > r\\},

with ``\\hat x`` the centred unitary 3D DFT, in the orthonormal real basis
:class:`BandBasis`: one coordinate for DC (``\\hat x(0)``) and two for every
other integer frequency ``xi`` of the half space (``\\hat x(\\xi) = (a_{re} +
i a_{im}) / \\sqrt 2``, ``\\hat x(-\\xi)`` its conjugate).  With ``U`` the map
coordinates -> volume (``U^T U = I``) the operator is ``H_r = U^T H_x U``, the
Hessian of ``a -> f(U a)``: SGD on a band-limited density is gradient
descent on exactly this quadratic.  For ``r < N/2`` no ``xi`` has a Nyquist
component (``\\xi \\equiv -\\xi``), so the DC coordinate is the only self-paired
one.  This is the Fourier-voxel setting of Toader, Brubaker & Lederman
(their unknown is the DFT inside a ball), with our trilinear oversampled
slicing instead of nearest neighbour.

**Spectra.**  ``lambda_max`` and ``lambda_min`` of ``H_r`` (and of
``D^{-1/2} H_r D^{-1/2}``) by ``scipy.sparse.linalg.eigsh`` (implicitly
restarted Lanczos, ``which="LA"`` / ``which="SA"``, no shift-invert);
``kappa = lambda_max / lambda_min``.  :func:`dense_hessian` forms the matrix
column by column for validation on tiny problems.

**Exact diagonal (known poses).**  ``diag(H_r)`` in the basis above, analytically:
with ``e_xi`` the unit complex exponential, ``b_xi = F e_xi`` its oversampled
cube (separable: ``b_xi(m) = E[xi_z, m_z] E[xi_y, m_y] E[xi_x, m_x]``) and
``M = (1/(K sigma^2)) sum_it (c_t / 2) C_it^2 (w_q w_q^T + w_{-q} w_{-q}^T)``
the cube-space matrix of the trilinear weights ``w`` (symmetrised over
``+-q`` because the half-plane band stands for the full disc),

.. math:: d(\\xi) = b_\\xi^H M b_\\xi,\\quad x(\\xi) = b_\\xi^H M b_{-\\xi},\\qquad
          H_{re,re} = d + \\mathrm{Re}\\,x,\\quad H_{im,im} = d - \\mathrm{Re}\\,x,\\quad
          H_{dc} = d(0),

plus ``lambda / K`` from the Gaussian prior.  ``M`` couples only cube
points one step apart (27 offsets ``delta``), so each term is
``sum_delta sum_m M_delta(m) G^z_delta[xi_z, m_z] G^y_delta[xi_y, m_y] G^x_delta[xi_x, m_x]``:
three small matrix products per offset instead of one Hessian-vector
product per coordinate.

**Hutchinson.**  ``diag(H) ~ (1/k) sum_j z_j * H_{B_j} z_j`` with Rademacher
``z_j`` in the band coordinates and a fresh minibatch ``B_j`` per probe,
every product through ``oracle.hvp`` (charged 2 per image).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numba
import numpy as np
import scipy.fft
from scipy.sparse.linalg import LinearOperator, cg, eigsh
from tqdm.auto import tqdm

from ..protocol import hutchinson_diagonal as hutchinson_estimates
from .fourier import PartialDFT
from .projector import Slicer


# ------------------------------------------------------------------------ the basis
class BandBasis:
    """Orthonormal real coordinates of the band-limited real volumes ``V_r`` (see module docstring).

    Coordinates are ordered ``[dc, re_1..re_P, im_1..im_P]`` with the half-space
    frequencies ``xi_p`` (``xi_z > 0``, or ``xi_z = 0, xi_y > 0``, or
    ``xi_z = xi_y = 0, xi_x > 0``) sorted by radius.

    Parameters
    ----------
    n : int
        Box size ``N``.
    r_max : float
        Radius (frequency index); must be ``< N/2`` so no Nyquist frequency enters.
    """

    def __init__(self, n: int, r_max: float):
        if not 0 < r_max < n / 2:
            raise ValueError(f"BandBasis: need 0 < r_max < N/2 = {n / 2:g}, got {r_max:g}")
        self.n, self.r_max = int(n), float(r_max)
        rad = int(np.floor(r_max))
        g = np.arange(-rad, rad + 1)
        xz, xy, xx = np.meshgrid(g, g, g, indexing="ij")
        xi = np.stack([xx.ravel(), xy.ravel(), xz.ravel()], axis=1)                      # (x, y, z)
        inside = (xi**2).sum(1) <= r_max**2
        half = (xi[:, 2] > 0) | ((xi[:, 2] == 0) & ((xi[:, 1] > 0) | ((xi[:, 1] == 0) & (xi[:, 0] > 0))))
        xi = xi[inside & half]
        xi = xi[np.lexsort((xi[:, 0], xi[:, 1], xi[:, 2], (xi**2).sum(1)))]
        self.xi = xi                                                                     # (P, 3)
        c = self.n // 2
        self._pos = (xi[:, 2] + c, xi[:, 1] + c, xi[:, 0] + c)
        self._neg = (-xi[:, 2] + c, -xi[:, 1] + c, -xi[:, 0] + c)
        self._norm = self.n ** 1.5

    @property
    def n_pairs(self) -> int:
        return int(self.xi.shape[0])

    @property
    def size(self) -> int:
        return 1 + 2 * self.n_pairs

    @property
    def radius(self) -> np.ndarray:
        """``|xi|`` of every coordinate (frequency index)."""
        r = np.sqrt((self.xi**2).sum(1))
        return np.concatenate([[0.0], r, r])

    def _unpack(self, a: np.ndarray) -> tuple[float, np.ndarray]:
        p = self.n_pairs
        return a[0], (a[1:1 + p] + 1j * a[1 + p:]) / np.sqrt(2.0)

    def to_volume(self, a: np.ndarray, dtype=np.float64) -> np.ndarray:
        """``x = U a`` (real (N, N, N)); ``x[r] = N^-3/2 sum_xi xhat(xi) exp(2 pi i xi.(r - c) / N)``."""
        a = np.asarray(a, dtype=np.float64)
        dc, z = self._unpack(a)
        c = self.n // 2
        spec = np.zeros((self.n,) * 3, dtype=np.complex128)
        spec[self._pos] = z
        spec[self._neg] = z.conj()
        spec[c, c, c] = dc
        x = np.fft.fftshift(scipy.fft.ifftn(np.fft.ifftshift(spec), workers=-1)).real * self._norm
        return x.astype(dtype, copy=False)

    def from_volume(self, x: np.ndarray) -> np.ndarray:
        """``a = U^T x``: ``dc = xhat(0)``, ``(re, im) = sqrt(2) (Re, Im) xhat(xi)``."""
        spec = np.fft.fftshift(scipy.fft.fftn(np.fft.ifftshift(np.asarray(x, dtype=np.float64)), workers=-1))
        spec /= self._norm
        c = self.n // 2
        z = spec[self._pos] * np.sqrt(2.0)
        return np.concatenate([[spec[c, c, c].real], z.real, z.imag])


def volume_operator(apply_x: Callable[[np.ndarray], np.ndarray], basis: BandBasis) -> LinearOperator:
    """``U^T A U`` as a LinearOperator for a symmetric volume operator ``apply_x``."""
    return LinearOperator((basis.size, basis.size), dtype=np.float64,
                          matvec=lambda a: basis.from_volume(apply_x(basis.to_volume(np.ravel(a)))))


def scaled_operator(op: LinearOperator, diagonal: np.ndarray) -> LinearOperator:
    """The symmetrically preconditioned operator ``D^-1/2 H D^-1/2``."""
    s = 1.0 / np.sqrt(np.asarray(diagonal, dtype=np.float64))
    return LinearOperator(op.shape, dtype=np.float64, matvec=lambda a: s * op.matvec(s * np.ravel(a)))


def dense_hessian(op: LinearOperator, progress: bool = False) -> np.ndarray:
    """The matrix of ``op`` by applying it to every unit vector (validation; small problems only)."""
    n = op.shape[0]
    out = np.empty((n, n))
    e = np.zeros(n)
    for j in tqdm(range(n), desc="dense Hessian", disable=not progress, leave=False):
        e[j] = 1.0
        out[:, j] = op.matvec(e)
        e[j] = 0.0
    return 0.5 * (out + out.T)


def probe_diagonal(op: LinearOperator, progress: bool = False) -> np.ndarray:
    """Exact diagonal by unit-vector probing (one product per coordinate)."""
    n = op.shape[0]
    out = np.empty(n)
    e = np.zeros(n)
    for j in tqdm(range(n), desc="diagonal by unit probes", disable=not progress, leave=False):
        e[j] = 1.0
        out[j] = op.matvec(e)[j]
        e[j] = 0.0
    return out


@dataclass(frozen=True)
class Spectrum:
    lambda_max: float
    lambda_min: float
    matvecs: int
    seconds: float

    @property
    def kappa(self) -> float:
        return self.lambda_max / self.lambda_min if self.lambda_min > 0 else np.inf


def extreme_eigenvalues(op: LinearOperator, tol: float = 1e-8, ncv: int | None = None,
                        seed: int = 0) -> Spectrum:
    """``lambda_max`` (``which="LA"``) and ``lambda_min`` (``which="SA"``) by Lanczos (eigsh).

    ARPACK's tolerance is relative to each Ritz value, so ``lambda_min`` gets
    its own relative accuracy (unlike ``lambda_max - eig(lambda_max I - H)``).
    A negative ``lambda_min`` (indefinite Hessian) is returned as is.
    """
    n = op.shape[0]
    count = [0]

    def mv(a):
        count[0] += 1
        return op.matvec(a)

    counted = LinearOperator(op.shape, dtype=np.float64, matvec=mv)
    ncv = min(n - 1, ncv or max(40, min(120, n // 10)))
    v0 = np.random.default_rng(seed).standard_normal(n)
    start = time.perf_counter()
    if n <= 2:
        w = np.linalg.eigvalsh(dense_hessian(op))
        return Spectrum(float(w[-1]), float(w[0]), n, time.perf_counter() - start)
    hi = eigsh(counted, k=1, which="LA", tol=tol, ncv=ncv, v0=v0, maxiter=20 * n, return_eigenvectors=False)
    lo = eigsh(counted, k=1, which="SA", tol=tol, ncv=ncv, v0=v0, maxiter=20 * n, return_eigenvectors=False)
    return Spectrum(float(hi[0]), float(lo[0]), count[0], time.perf_counter() - start)


# ------------------------------------------------------------- known-pose Hessian
class KnownPoseHessian:
    """The full-data Hessian of the known-pose objective (constant), exact and uncharged.

    ``H_x v = F^T T^T (w * T F v) + (lambda / K) v`` with
    ``w_it = c_t C_it^2 / (K sigma^2)`` over all ``K`` training images of
    ``problem`` (a :class:`problems.problem.Problem` with the known-pose
    likelihood part), in float64.
    This is the harness's analysis tool (like ``Problem.test_nll``): it reads
    the problem directly and charges nothing.
    """

    def __init__(self, problem, basis_radius: float | None = None):
        lik = problem.likelihood(np.float64)
        self.problem = problem
        self.n = lik.n
        self.m_max = lik.m_max
        self.dft: PartialDFT = lik.dft
        self.terms = lik.prepare(*problem.split_arrays("train"))                       # every training image
        self.coords = self.terms.coords
        self.n_images = self.terms.size
        self.slicer = Slicer(self.coords, self.m_max, use_symmetry=False)
        k = self.n_images
        self.weights = lik.mult * self.terms.ctf**2 / (k * lik.sigma**2)                # (K, D)
        self.prior = problem.prior.lam / k
        self.lik = lik
        self.basis = BandBasis(self.n, problem.band.r_max if basis_radius is None else basis_radius)

    def apply_x(self, v: np.ndarray) -> np.ndarray:
        u = self.slicer.forward(self.dft.forward(v))
        out = self.dft.adjoint(self.slicer.adjoint(self.weights * u))
        return out + self.prior * v if self.prior else out

    def operator(self) -> LinearOperator:
        return volume_operator(self.apply_x, self.basis)

    def gradient_at_zero(self) -> np.ndarray:
        """``-b`` in band coordinates: the full-data gradient at ``x = 0`` (``grad f(a) = H a - b``)."""
        _, g = self.lik.nll_and_grad(np.zeros((self.n,) * 3), self.terms)
        return self.basis.from_volume(g)

    def exact_diagonal(self) -> np.ndarray:
        """``diag(U^T H_x U)`` analytically (module docstring), in :class:`BandBasis` order."""
        k_cube = 2 * self.m_max + 1
        m = np.zeros((3, 3, 3, k_cube, k_cube, k_cube))
        w = np.ascontiguousarray(0.5 * self.weights, dtype=np.float64)
        coords = np.ascontiguousarray(self.coords, dtype=np.float64)
        _accumulate_pairs(coords, w, float(self.m_max), m)
        _accumulate_pairs(-coords, w, float(self.m_max), m)
        basis = self.basis
        rad = int(np.floor(basis.r_max))
        f = self.dft.f.astype(np.complex128)                                              # (K_cube, N), has N^-1/3
        r = np.arange(self.n) - self.n // 2
        xis = np.arange(-rad, rad + 1)
        e = (np.exp(2j * np.pi * np.outer(xis, r) / self.n) @ f.T) / np.sqrt(self.n)     # E[xi, m]
        e_neg = e[::-1]                                                                    # E[-xi, m]
        d = np.zeros((2 * rad + 1,) * 3, dtype=np.complex128)
        x = np.zeros_like(d)
        for dz in (-1, 0, 1):
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    block = m[dz + 1, dy + 1, dx + 1]
                    if not block.any():
                        continue
                    gd = [_pair_kernel(e, e, s) for s in (dz, dy, dx)]
                    gx = [_pair_kernel(e, e_neg, s) for s in (dz, dy, dx)]
                    d += np.einsum("zyx,az,by,cx->abc", block, *gd, optimize=True)
                    x += np.einsum("zyx,az,by,cx->abc", block, *gx, optimize=True)
        iz, iy, ix = basis.xi[:, 2] + rad, basis.xi[:, 1] + rad, basis.xi[:, 0] + rad
        dp, xp = d[iz, iy, ix].real, x[iz, iy, ix].real
        diag = np.concatenate([[d[rad, rad, rad].real], dp + xp, dp - xp])
        return diag + self.prior


def _pair_kernel(e_left: np.ndarray, e_right: np.ndarray, shift: int) -> np.ndarray:
    """``G[xi, m] = conj(E_left[xi, m]) E_right[xi, m + shift]`` (zero past the cube's edge)."""
    out = np.zeros_like(e_left)
    k = e_left.shape[1]
    if shift >= 0:
        out[:, :k - shift] = e_left[:, :k - shift].conj() * e_right[:, shift:]
    else:
        out[:, -shift:] = e_left[:, -shift:].conj() * e_right[:, :k + shift]
    return out


@numba.njit(cache=True)
def _accumulate_pairs(coords, weights, offset, m):
    """``m[dz+1, dy+1, dx+1, corner a] += w * W_a * W_b`` for every pair of trilinear corners ``b = a + delta``."""
    n_img, n_coef = weights.shape
    wz = np.empty(2)
    wy = np.empty(2)
    wx = np.empty(2)
    for i in range(n_img):
        for t in range(n_coef):
            px = coords[i, t, 0] + offset
            py = coords[i, t, 1] + offset
            pz = coords[i, t, 2] + offset
            ix, iy, iz = int(np.floor(px)), int(np.floor(py)), int(np.floor(pz))
            fx, fy, fz = px - ix, py - iy, pz - iz
            wx[0], wx[1] = 1.0 - fx, fx
            wy[0], wy[1] = 1.0 - fy, fy
            wz[0], wz[1] = 1.0 - fz, fz
            w = weights[i, t]
            for az in range(2):
                for ay in range(2):
                    for ax in range(2):
                        wa = w * wz[az] * wy[ay] * wx[ax]
                        for bz in range(2):
                            for by in range(2):
                                for bx in range(2):
                                    m[bz - az + 1, by - ay + 1, bx - ax + 1, iz + az, iy + ay, ix + ax] += \
                                        wa * wz[bz] * wy[by] * wx[bx]


# ---------------------------------------------------------------------- Hutchinson
@dataclass(frozen=True)
class HutchinsonResult:
    probes: np.ndarray          # (n_checkpoints,) probe counts
    estimates: np.ndarray       # (n_checkpoints, size) running means
    cost: float                 # oracle evaluations charged for all probes


def hutchinson_diagonal(oracle, basis: BandBasis, n_probes: int, batch_size: int,
                        rng: np.random.Generator, x: np.ndarray | None = None,
                        checkpoints=None, progress: bool = False) -> HutchinsonResult:
    """Hutchinson's estimate of ``diag(U^T H U)`` through ``oracle.hvp`` (cost charged).

    :func:`problems.protocol.hutchinson_diagonal` (the one estimator) run in band coordinates:

    ``D_k = (1/k) sum_{j <= k} z_j * U^T H_{B_j}(x) U z_j`` with ``z_j``
    Rademacher (+-1) in band coordinates and ``B_j = oracle.next_batch(batch_size)``.
    ``E[D_k] = diag(H)`` (each ``H_B`` is unbiased for ``H`` over the shuffled
    order, and ``E[z z^T] = I``).  Returns ``D_k`` at each ``k`` in ``checkpoints``.
    """
    checkpoints = sorted(set(int(c) for c in (checkpoints or [n_probes]) if 1 <= c <= n_probes))
    x = np.zeros(oracle.shape, dtype=oracle.dtype) if x is None else x
    before = oracle.evals

    def hvp(z: np.ndarray) -> np.ndarray:
        hz = oracle.hvp(x, basis.to_volume(z, dtype=oracle.dtype), oracle.next_batch(batch_size))
        return basis.from_volume(hz)

    running = hutchinson_estimates(hvp, (basis.size,), n_probes, rng)
    out = [mean for k, mean in enumerate(tqdm(running, total=n_probes, desc="Hutchinson probes",
                                               disable=not progress, leave=False), 1) if k in checkpoints]
    return HutchinsonResult(np.array(checkpoints), np.array(out), oracle.evals - before)


def safe_diagonal(diagonal: np.ndarray, floor: float = 1e-3) -> np.ndarray:
    """``max(|D|, floor * max|D|)``: a noisy estimate can be tiny or negative (Algorithm 1's threshold)."""
    d = np.abs(diagonal)
    return np.maximum(d, floor * d.max())


def relative_error(estimate: np.ndarray, exact: np.ndarray) -> float:
    """``||D_hat - D|| / ||D||``."""
    return float(np.linalg.norm(estimate - exact) / np.linalg.norm(exact))


# ------------------------------------------------------------------ SGD to tolerance
def least_squares_solution(op: LinearOperator, b: np.ndarray, diagonal: np.ndarray,
                           rtol: float = 1e-10) -> np.ndarray:
    """``a* = H^-1 b`` by diagonally preconditioned conjugate gradients."""
    inv = 1.0 / diagonal
    m = LinearOperator(op.shape, dtype=np.float64, matvec=lambda a: inv * np.ravel(a))
    a, info = cg(op, b, rtol=rtol, atol=0.0, maxiter=20 * op.shape[0], M=m)
    if info != 0:
        raise RuntimeError(f"CG did not converge (info={info})")
    return a
