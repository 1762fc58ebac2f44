"""Exact central slices of an atomic model (every atom an isotropic Gaussian), by non-uniform FFTs.

Why: the paper-scale known-pose problem (Toader, Brubaker & Lederman) needs
images that carry signal up to the band edge (5.6 Å at 128 px x 2.8 Å) and
are not the objective's own forward model.  The ~3,400 pseudo-atoms of
:func:`problems.data.atomic_models.model_mixture` are blurred to ~7 Å; the
atoms themselves are not, but the direct sum of :mod:`problems.data.gaussians`
costs ``J x N^2`` per image (165,175 atoms: ~170 TFLOP for 31,000 images).

The mixture (pixel units, positions ``c_j`` relative to the box centre).
Atom ``j`` of element ``e`` with isotropic B-factor ``B_j`` scatters with
``f_e(s) exp(-B_j s^2 / 4)`` (``s`` in 1/Å).  ``f_e`` is replaced by the one
Gaussian ``f_e(0) exp(-b_e s^2 / 4)`` closest to gemmi's 5-Gaussian
electron form factor (``c4322`` table) over the band (least squares of
``log f_e`` against ``s^2`` for ``s <= s_max``; :func:`form_bfactors`), so
the atom is a 3D Gaussian of mass ``w_j = f_e(0) occ_j`` and variance

.. math:: \\sigma_j^2 = \\frac{B_j + b_e}{8\\pi^2}\\ \\text{Å}^2 .

The total ``B_j + b_e`` is quantised into ``n_bins`` bins of equal atom
count, each atom taking its bin's mass-weighted mean: the *binned* mixture
is the ground truth (its slices below are exact, not an approximation of
the unbinned one).  Per bin ``b`` (width ``s_b`` in pixels), in the
normalisation of :mod:`problems.data.gaussians` (a central slice is the
unitary DFT of the projection), an image at rotation ``A`` and shift ``t``
is

.. math::

    I(\\mathbf k) = \\sum_b \\frac{1}{N}\\, e^{-2\\pi^2 s_b^2 |\\mathbf k|^2 / N^2}
        \\sum_{j \\in b} w_j\\, e^{-2\\pi i\\, \\mathbf k\\cdot(\\mathbf p_j + \\mathbf t) / N},
    \\qquad \\mathbf p_j = (A\\mathbf c_j)_{xy},

and the inner sum over ``j`` at every integer ``k`` in ``[-N/2, N/2)^2`` is
one 2D type-1 NUFFT (finufft, ``isign = -1``, points ``2 pi (p_j + t) / N``),
accurate to finufft's ``eps`` relative to ``sum_j |w_j|``.  The ground-truth
Fourier volume ``Vhat(q)`` at integer ``q`` is the same with a 3D type-1
NUFFT of ``c_j`` (:meth:`AtomSlicer.volume`).

finufft is an optional dependency (``pip install cryoopt[atoms]`` or
``pip install finufft``); only this module needs it, and it says so when missing.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from .gaussians import GaussianMixture


def _finufft():
    try:
        import finufft
    except ImportError as exc:          # the paper-scale refine data only
        raise ImportError("the exact atom slices of the paper-scale known-pose problem need finufft: "
                          "pip install finufft (or pip install -e .[atoms])") from exc
    return finufft


def form_bfactors(elements, s_max: float) -> dict[str, tuple[float, float, float]]:
    """``{element: (f_e(0), b_e, max relative error)}``: one Gaussian per electron form factor.

    ``f_e(s) = sum_i a_i exp(-b_i s^2 / 4)`` (gemmi's ``c4322``, ``s = 2 sin(theta) / lambda``
    in 1/Å) is fitted by ``f_e(0) exp(-b_e s^2 / 4)``: least squares of
    ``log(f_e / f_e(0))`` against ``s^2 / 4`` on 64 points of ``[0, s_max]``;
    the error is the largest of ``|fit / f_e - 1|`` there.
    """
    import gemmi
    s2 = np.linspace(0.0, s_max, 64) ** 2
    out = {}
    for name in sorted(set(elements)):
        coefs = np.asarray(gemmi.Element(name).c4322.get_coefs(), dtype=np.float64)
        a, b = coefs[:5], coefs[5:]
        f = (a[None, :] * np.exp(-b[None, :] * s2[:, None] / 4)).sum(1)
        u = s2 / 4
        b_e = float(-np.dot(u, np.log(f / f[0])) / np.dot(u, u))
        out[name] = (float(f[0]), b_e, float(np.max(np.abs(f[0] * np.exp(-b_e * u) / f - 1))))
    return out


@dataclass(frozen=True)
class BinnedAtoms:
    """Atoms as isotropic Gaussians with binned widths (module docstring), pixel units.

    Attributes
    ----------
    centres : ndarray, shape (J, 3)
        ``(x, y, z)`` in pixels relative to voxel ``N // 2``.
    weights : ndarray, shape (J,)
        Masses ``w_j`` (the integral of each Gaussian; arbitrary units, rescaled to an SNR).
    bins : ndarray, shape (J,), int
        Bin of each atom.
    sigmas : ndarray, shape (n_bins,)
        Standard deviation of each bin, pixels.
    """

    centres: np.ndarray
    weights: np.ndarray
    bins: np.ndarray
    sigmas: np.ndarray

    @property
    def size(self) -> int:
        return int(self.weights.shape[0])

    def scaled(self, factor: float) -> "BinnedAtoms":
        return BinnedAtoms(self.centres, self.weights * float(factor), self.bins, self.sigmas)

    def mixture(self) -> GaussianMixture:
        """The same density as a :class:`GaussianMixture` (peak ``a_j = w_j / ((2 pi)^{3/2} s^3)``)."""
        s = self.sigmas[self.bins]
        return GaussianMixture(self.centres, s, self.weights / ((2 * np.pi) ** 1.5 * s**3))

    def describe(self, pixel_size: float) -> dict:
        b = 8 * np.pi**2 * (self.sigmas * pixel_size) ** 2
        return {"atoms": self.size, "bins": int(self.sigmas.size),
                "bin_bfactor_angstrom2": [round(float(v), 2) for v in b],
                "bin_atoms": np.bincount(self.bins, minlength=self.sigmas.size).tolist()}


def atom_model(path, box: int, pixel_size: float, n_bins: int = 8,
               s_max: float | None = None) -> tuple[BinnedAtoms, dict]:
    """Every non-hydrogen atom of a model file as a binned Gaussian (module docstring).

    Centred on the ``f_e(0)``-weighted centroid (voxel ``box // 2``).
    ``s_max`` (1/Å) is the band of the form-factor fit, by default Nyquist
    ``1 / (2 pixel_size)``.  Returns the atoms and a description (form-factor
    fits, B-factor range, bins) for the problem's metadata.
    """
    import gemmi
    st = gemmi.read_structure(str(path))
    st.remove_hydrogens()
    rows = [(a.atom.pos.x, a.atom.pos.y, a.atom.pos.z, a.atom.b_iso, a.atom.occ, a.atom.element.name)
            for a in st[0].all()]
    pos = np.array([r[:3] for r in rows], dtype=np.float64)
    b_iso = np.array([r[3] for r in rows])
    occ = np.array([r[4] for r in rows])
    elements = [r[5] for r in rows]
    fits = form_bfactors(elements, 1 / (2 * pixel_size) if s_max is None else s_max)
    f0 = np.array([fits[e][0] for e in elements])
    b_total = b_iso + np.array([fits[e][1] for e in elements])
    weights = f0 * occ
    pos -= (weights[:, None] * pos).sum(0) / weights.sum()
    # bins of equal atom count in B (sorted, stable), each at its mass-weighted mean B
    order = np.argsort(b_total, kind="stable")
    bins = np.empty(len(rows), dtype=np.int64)
    for i, part in enumerate(np.array_split(order, n_bins)):
        bins[part] = i
    b_bin = np.bincount(bins, weights * b_total) / np.bincount(bins, weights)
    sigmas = np.sqrt(b_bin / (8 * np.pi**2)) / pixel_size
    centres = pos / pixel_size
    if np.linalg.norm(centres, axis=1).max() + 3 * sigmas.max() > box / 2:
        raise ValueError(f"model does not fit a {box} px box at {pixel_size} Å/px")
    info = {"form_factor_fit": {e: {"f0": round(v[0], 4), "b_angstrom2": round(v[1], 3),
                                    "max_relative_error": float(f"{v[2]:.2g}")} for e, v in fits.items()},
            "atom_bfactor_range_angstrom2": [float(b_iso.min()), float(b_iso.max())],
            "max_radius_px": float(np.linalg.norm(centres, axis=1).max())}
    atoms = BinnedAtoms(centres, weights, bins, sigmas)
    return atoms, {**atoms.describe(pixel_size), **info}


class AtomSlicer:
    """Exact slices and Fourier volume of :class:`BinnedAtoms` on an ``n``-pixel grid (module docstring).

    ``eps`` is finufft's tolerance (relative to ``sum_j |w_j|`` per bin);
    images run on ``threads`` threads, one single-threaded finufft plan each
    (finufft releases the GIL; one plan per image beat one two-threaded plan
    on the 2-core machine).  Every call is deterministic: no randomness here.
    """

    def __init__(self, atoms: BinnedAtoms, n: int, eps: float = 1e-5, threads: int | None = None):
        self.atoms, self.n, self.eps = atoms, int(n), float(eps)
        self.threads = max(1, threads or min(2, os.cpu_count() or 1))
        k = np.arange(self.n) - self.n // 2
        k2 = k[:, None] ** 2 + k[None, :] ** 2                               # [ky, kx], centred
        self._env2 = np.exp(-2 * np.pi**2 * atoms.sigmas[:, None, None] ** 2 * k2 / self.n**2).astype(np.float32)
        # atoms sorted by bin, so each bin is a contiguous run of the projected points
        order = np.argsort(atoms.bins, kind="stable")
        self._bounds = np.searchsorted(atoms.bins[order], np.arange(atoms.sigmas.size + 1))
        self._points = np.ascontiguousarray((atoms.centres[order] * (2 * np.pi / self.n)).T, dtype=np.float32)
        self._strengths = (atoms.weights[order] / self.n).astype(np.complex64)

    def spectra(self, rotations: np.ndarray, shifts: np.ndarray | None = None) -> np.ndarray:
        """``exp(-2 pi i k.t / N) Vhat(A^T [k, 0])`` on the centred grid, complex64 (B, N, N).

        Entry ``[b, ky + N/2, kx + N/2]``, ``k`` in ``[-N/2, N/2)^2``.
        """
        rotations = np.asarray(rotations, dtype=np.float64)
        shifts = np.zeros((rotations.shape[0], 2)) if shifts is None else np.asarray(shifts, np.float64)
        out = np.empty((rotations.shape[0], self.n, self.n), dtype=np.complex64)
        finufft = _finufft()
        scale = np.float32(2 * np.pi / self.n)

        def work(rows: range) -> None:
            # upsampfac 1.25: a 160^2 fine grid instead of 256^2 (the 8 per-bin FFTs were 2/3 of the
            # time at 2.0; finufft widens the kernel to keep eps)
            plan = finufft.Plan(1, (self.n, self.n), eps=self.eps, isign=-1, dtype="complex64", nthreads=1,
                                upsampfac=1.25, showwarn=0)
            for i in rows:
                # p = (A c)_xy + t, as three scaled adds per axis on contiguous columns (a (J, 3) @ (3, 2)
                # product was slower than the NUFFT's own point sort here)
                a, t = rotations[i].astype(np.float32), shifts[i].astype(np.float32) * scale
                x = a[0, 0] * self._points[0] + a[0, 1] * self._points[1] + a[0, 2] * self._points[2] + t[0]
                y = a[1, 0] * self._points[0] + a[1, 1] * self._points[1] + a[1, 2] * self._points[2] + t[1]
                acc = np.zeros((self.n, self.n), dtype=np.complex64)
                for b in range(self._env2.shape[0]):
                    lo, hi = self._bounds[b], self._bounds[b + 1]
                    # first mode axis <- first point array: y first gives the [ky, kx] layout
                    plan.setpts(y[lo:hi], x[lo:hi])
                    acc += self._env2[b] * plan.execute(self._strengths[lo:hi])
                out[i] = acc

        parts = [range(s, rotations.shape[0], self.threads) for s in range(self.threads)]
        with ThreadPoolExecutor(self.threads) as pool:
            list(pool.map(work, parts))
        return out

    def slices(self, rotations: np.ndarray, k: np.ndarray, shifts: np.ndarray | None = None) -> np.ndarray:
        """:meth:`spectra` at integer frequencies ``k`` (T, 2) ``(kx, ky)`` in ``[-N/2, N/2)``; (B, T)."""
        k = np.asarray(k)
        return self.spectra(rotations, shifts)[:, k[:, 1] + self.n // 2, k[:, 0] + self.n // 2]

    def volume(self) -> np.ndarray:
        """``Vhat(q)`` at every integer ``q`` in ``[-N/2, N/2)^3``, complex64 indexed ``[z, y, x]`` at ``q + N//2``.

        One 3D type-1 NUFFT per bin (points ``(z, y, x)`` order gives the
        ``[z, y, x]`` layout) times the bin's envelope ``exp(-2 pi^2 s_b^2 |q|^2 / N^2)``.
        """
        finufft = _finufft()
        n = self.n
        q = np.arange(n) - n // 2
        q2 = q[:, None, None] ** 2 + q[None, :, None] ** 2 + q[None, None, :] ** 2
        out = np.zeros((n, n, n), dtype=np.complex64)
        for b in range(self._env2.shape[0]):
            lo, hi = self._bounds[b], self._bounds[b + 1]
            pts = [np.ascontiguousarray(self._points[axis, lo:hi]) for axis in (2, 1, 0)]
            f = finufft.nufft3d1(*pts, self._strengths[lo:hi], (n, n, n), eps=self.eps, isign=-1,
                                 nthreads=self.threads)
            out += (np.exp(-2 * np.pi**2 * self.atoms.sigmas[b] ** 2 * q2 / n**2) * f).astype(np.complex64)
        return out
