"""The band of 2D Fourier coefficients an image contributes to the objective.

An image's centred DFT is evaluated at integer frequencies ``k = (kx, ky)``
with ``|k| <= r_max``.  A real image has Hermitian coefficients,
``I(-k) = conj(I(k))``, so only the half-plane

    H = {k : |k| <= r_max and (ky > 0 or (ky == 0 and kx >= 0))}

is stored; a sum over the full disc is the sum over ``H`` with multiplicity
``c_t = 2`` for ``k != 0`` and ``c_0 = 1`` for the DC term.

The disc is invariant under the quarter turn ``rot(kx, ky) = (-ky, kx)``:
:func:`quarter_turn_maps` gives, for each ``q`` in 0..3, where
``rot^-q k_t`` lands in ``H`` and whether it had to be conjugated to get there.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Band:
    """Half-plane integer frequencies within ``r_max`` (pixels of frequency index).

    Attributes
    ----------
    r_max : float
        Band limit as a frequency index (``fraction_of_nyquist * N / 2``).
    k : ndarray, shape (D, 2), int
        ``(kx, ky)`` of each stored coefficient; ``k[0]`` is the DC term.
    multiplicity : ndarray, shape (D,)
        ``c_t``: 1 for DC, 2 otherwise (each stands for itself and ``-k``).
    """

    r_max: float
    k: np.ndarray
    multiplicity: np.ndarray

    @property
    def size(self) -> int:
        return int(self.k.shape[0])


def make_band(r_max: float) -> Band:
    """Enumerate the half-plane band (see module docstring) in a fixed order."""
    if not r_max > 0:
        raise ValueError(f"r_max must be positive, got {r_max}")
    radius = int(np.floor(r_max))
    ky, kx = np.meshgrid(np.arange(-radius, radius + 1), np.arange(-radius, radius + 1), indexing="ij")
    kx, ky = kx.ravel(), ky.ravel()
    keep = (kx**2 + ky**2 <= r_max**2) & ((ky > 0) | ((ky == 0) & (kx >= 0)))
    k = np.stack([kx[keep], ky[keep]], axis=1)
    order = np.lexsort((k[:, 0], k[:, 1], k[:, 0] ** 2 + k[:, 1] ** 2))
    k = k[order]
    mult = np.where((k[:, 0] == 0) & (k[:, 1] == 0), 1.0, 2.0)
    return Band(r_max=float(r_max), k=k.astype(np.int64), multiplicity=mult)


def disc_frequencies(n: int, r_max: float) -> np.ndarray:
    """Every integer frequency of an ``n``-pixel image within ``r_max``: the full disc, (T, 2) int.

    The paper-scale known-pose problem (Toader, Brubaker & Lederman) keeps a
    free complex Fourier volume, so both ``k`` and ``-k`` are data and the
    half-plane of :func:`make_band` does not apply.  Order: by ``|k|^2``, then
    ``ky``, then ``kx`` (``k[0]`` is DC); entries ``(kx, ky)`` lie in
    ``[-n/2, n/2)``, so ``r_max < n/2`` keeps every one inside the centred grid
    and off the Nyquist row and column.
    """
    if not 0 < r_max < n / 2:
        raise ValueError(f"disc_frequencies: need 0 < r_max < n/2 = {n / 2}, got r_max={r_max}")
    radius = int(np.floor(r_max))
    ky, kx = np.meshgrid(np.arange(-radius, radius + 1), np.arange(-radius, radius + 1), indexing="ij")
    kx, ky = kx.ravel(), ky.ravel()
    keep = kx**2 + ky**2 <= r_max**2
    kx, ky = kx[keep], ky[keep]
    order = np.lexsort((kx, ky, kx**2 + ky**2))
    return np.stack([kx[order], ky[order]], axis=1).astype(np.int64)


def quarter_turn_maps(band: Band) -> tuple[np.ndarray, np.ndarray]:
    """Index and conjugation maps of the quarter turns of the band.

    Returns
    -------
    index : ndarray, shape (4, D), int
        ``index[q, t]`` is the stored coefficient equal (up to conjugation) to
        frequency ``rot^-q k_t``, with ``rot(kx, ky) = (-ky, kx)``.
    conjugate : ndarray, shape (4, D), bool
        True where ``rot^-q k_t`` lies in the other half-plane, so the value is
        ``conj`` of the stored coefficient ``-rot^-q k_t``.
    """
    lookup = {(int(a), int(b)): t for t, (a, b) in enumerate(band.k)}
    index = np.empty((4, band.size), dtype=np.int64)
    conjugate = np.zeros((4, band.size), dtype=bool)
    for q in range(4):
        for t, (kx, ky) in enumerate(band.k):
            px, py = int(kx), int(ky)
            for _ in range(q):  # rot^-1 (kx, ky) = (ky, -kx)
                px, py = py, -px
            if (px, py) in lookup:
                index[q, t] = lookup[(px, py)]
            else:
                index[q, t] = lookup[(-px, -py)]
                conjugate[q, t] = True
    return index, conjugate
