"""Comparing a density with the ground truth: alignment and Fourier shell correlation.

An ab-initio solution is determined only up to a rotation, a translation and
the hand (mirror), so every comparison aligns first (the held-out NLL needs
no alignment: it marginalises over poses).

Alignment: both volumes are low-passed and Fourier-cropped to a small box;
a coarse search over rotations (a Lebedev direction set x uniform in-plane
angles, for both hands) with the translation from an FFT cross-correlation
at each rotation; then a local Nelder-Mead refinement of the three Euler
angles; the best rotation is applied at full size (trilinear) and the
translation found there by cross-correlation.
"""
from __future__ import annotations

import numpy as np
import scipy.fft
from scipy.integrate import lebedev_rule
from scipy.ndimage import affine_transform
from scipy.optimize import minimize

from problems.model.poses import direction_to_euler, euler_to_matrix


def fourier_crop(x: np.ndarray, size: int) -> np.ndarray:
    """Downsample a cubic volume to ``size`` by cropping its centred spectrum."""
    n = x.shape[0]
    if size >= n:
        return x.astype(np.float64)
    spec = np.fft.fftshift(scipy.fft.fftn(x))
    lo = n // 2 - size // 2
    crop = spec[lo:lo + size, lo:lo + size, lo:lo + size]
    return np.real(scipy.fft.ifftn(np.fft.ifftshift(crop))) * (size / n) ** 3


def lowpass(x: np.ndarray, radius: float) -> np.ndarray:
    """Keep spatial frequencies with ``|k| <= radius`` (frequency-index units)."""
    n = x.shape[0]
    k = np.fft.fftfreq(n) * n
    kk = k[:, None, None] ** 2 + k[None, :, None] ** 2 + k[None, None, :] ** 2
    return np.real(scipy.fft.ifftn(scipy.fft.fftn(x) * (kk <= radius**2)))


def _rotate(x: np.ndarray, matrix: np.ndarray, order: int = 1) -> np.ndarray:
    """``out(r) = x(A^T (r - c) + c)``: the volume rotated by ``A`` about its centre (arrays [z, y, x])."""
    n = x.shape[0]
    c = np.full(3, n // 2, dtype=float)
    perm = matrix[::-1, ::-1]                        # (x, y, z) matrix acting on [z, y, x] indices
    inv = perm.T
    return affine_transform(x, inv, offset=c - inv @ c, order=order, mode="constant")


def _best_shift(ref_ft: np.ndarray, x: np.ndarray) -> tuple[float, tuple[int, int, int]]:
    """Max of the cross-correlation of ``x`` with the reference (given as its FFT)."""
    cc = np.real(scipy.fft.ifftn(ref_ft * np.conj(scipy.fft.fftn(x))))
    flat = int(cc.argmax())
    shift = np.unravel_index(flat, cc.shape)
    n = x.shape[0]
    return float(cc.flat[flat]), tuple(int(s if s <= n // 2 else s - n) for s in shift)


def align(estimate: np.ndarray, reference: np.ndarray, band_radius: float | None = None,
          search_size: int = 24, lebedev_order: int = 11, n_inplane: int = 12) -> dict:
    """Rotate, translate and (if needed) mirror ``estimate`` onto ``reference``.

    Returns ``{"aligned", "rotation", "mirrored", "shift", "correlation"}``
    where ``correlation`` is the normalised real-space correlation after
    alignment (of the low-passed volumes).
    """
    n = reference.shape[0]
    radius = band_radius if band_radius is not None else n / 2
    ref_lp, est_lp = lowpass(reference, radius), lowpass(estimate, radius)
    size = min(search_size, n)
    ref_s, est_s = fourier_crop(ref_lp, size), fourier_crop(est_lp, size)
    ref_s = (ref_s - ref_s.mean()) / (ref_s.std() + 1e-30)
    ref_ft = scipy.fft.fftn(ref_s)
    points, _ = lebedev_rule(lebedev_order)
    rot, tilt = direction_to_euler(points)
    psi = 2 * np.pi * np.arange(n_inplane) / n_inplane
    grid = euler_to_matrix(np.repeat(rot, n_inplane), np.repeat(tilt, n_inplane), np.tile(psi, len(rot)))

    def score(vol_s, matrix):
        moved = _rotate(vol_s, matrix)
        moved = (moved - moved.mean()) / (moved.std() + 1e-30)
        return _best_shift(ref_ft, moved)[0] / moved.size

    best = (-np.inf, None, None)
    for mirrored in (False, True):
        vol_s = est_s[::-1] if mirrored else est_s
        for matrix in grid:
            s = score(vol_s, matrix)
            if s > best[0]:
                best = (s, matrix, mirrored)
    _, matrix0, mirrored = best
    vol_s = est_s[::-1] if mirrored else est_s
    from scipy.spatial.transform import Rotation
    base = Rotation.from_matrix(matrix0)

    def loss(v):
        return -score(vol_s, (Rotation.from_rotvec(v) * base).as_matrix())

    res = minimize(loss, np.zeros(3), method="Nelder-Mead",
                   options={"xatol": 1e-3, "fatol": 1e-6, "maxiter": 200, "initial_simplex":
                            np.vstack([np.zeros(3), 0.1 * np.eye(3)])})
    matrix = (Rotation.from_rotvec(res.x) * base).as_matrix()
    full = estimate[::-1] if mirrored else estimate
    rotated = _rotate(np.asarray(full, dtype=np.float64), matrix)
    _, shift = _best_shift(scipy.fft.fftn(ref_lp), lowpass(rotated, radius))
    aligned = np.roll(rotated, shift, axis=(0, 1, 2))
    a, b = lowpass(aligned, radius).ravel(), ref_lp.ravel()
    corr = float(np.corrcoef(a, b)[0, 1])
    return {"aligned": aligned.astype(np.float32), "rotation": matrix, "mirrored": bool(mirrored),
            "shift": shift, "correlation": corr}


def fsc(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fourier shell correlation; returns (shell frequency in cycles/pixel, FSC) for shells 1..N/2-1."""
    n = a.shape[0]
    fa, fb = scipy.fft.fftn(a), scipy.fft.fftn(b)
    k = np.fft.fftfreq(n) * n
    shell = np.rint(np.sqrt(k[:, None, None] ** 2 + k[None, :, None] ** 2 + k[None, None, :] ** 2)).astype(int)
    nshell = n // 2
    num = np.bincount(shell.ravel(), np.real(fa * np.conj(fb)).ravel(), minlength=nshell + 1)[1:nshell]
    pa = np.bincount(shell.ravel(), (np.abs(fa) ** 2).ravel(), minlength=nshell + 1)[1:nshell]
    pb = np.bincount(shell.ravel(), (np.abs(fb) ** 2).ravel(), minlength=nshell + 1)[1:nshell]
    return np.arange(1, nshell) / n, num / np.sqrt(pa * pb + 1e-300)


def resolution_at(freq: np.ndarray, curve: np.ndarray, threshold: float, pixel_size: float) -> float:
    """Resolution (Å) where the FSC first drops below ``threshold`` (linear interpolation)."""
    below = np.flatnonzero(curve < threshold)
    if below.size == 0:
        return 2 * pixel_size
    i = int(below[0])
    if i == 0:
        return float("inf")
    f0, f1, c0, c1 = freq[i - 1], freq[i], curve[i - 1], curve[i]
    f = f0 + (c0 - threshold) / (c0 - c1) * (f1 - f0)
    return float(pixel_size / f)


def compare_to_truth(estimate: np.ndarray, truth: np.ndarray, pixel_size: float,
                     band_radius: float | None = None) -> dict:
    """Align, then FSC: returns curve, resolutions at 0.5 and 0.143, alignment summary."""
    result = align(estimate, truth, band_radius)
    freq, curve = fsc(result["aligned"], truth)
    return {"frequency": freq.tolist(), "fsc": curve.tolist(),
            "resolution_0.5": resolution_at(freq, curve, 0.5, pixel_size),
            "resolution_0.143": resolution_at(freq, curve, 0.143, pixel_size),
            "correlation": result["correlation"], "mirrored": result["mirrored"],
            "rotation": np.asarray(result["rotation"]).tolist(), "shift": list(result["shift"]),
            "aligned": result["aligned"]}


def apply_alignment(volume: np.ndarray, rotation, mirrored: bool, shift) -> np.ndarray:
    """Apply an alignment found by :func:`align` (e.g. stored in a run record) to a volume."""
    full = volume[::-1] if mirrored else volume
    rotated = _rotate(np.asarray(full, dtype=np.float64), np.asarray(rotation))
    return np.roll(rotated, tuple(shift), axis=(0, 1, 2)).astype(np.float32)
