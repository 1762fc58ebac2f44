"""Comparing a density with the ground truth: alignment and Fourier shell correlation.

An ab-initio solution is determined only up to a rotation, a translation and
the hand (mirror), so every comparison aligns first (the held-out NLL needs
no alignment: it marginalises over poses).  Everything is judged inside the
band ``|k| <= r_max`` (frequency index, cycles per box) the data constrain.

Conventions.  Volumes are arrays ``[z, y, x]``; ``c = N // 2`` is the centre;
the centred DFT is ``V(k) = sum_r x(r) exp(-2 pi i k.(r - c) / N)``.  An
alignment ``(M, mirrored, t)`` maps the estimate to
``out(r) = y(A^T (r - c) + c - ...)`` shifted by ``t``, i.e. in Fourier space

    out^(k) = Y(A^T k) exp(-2 pi i k.t / N),   y = x[::-1] if mirrored else x,

with ``A`` the rotation acting on ``[z, y, x]`` indices (``M`` stored in
``(x, y, z)`` order, ``A = M[::-1, ::-1]``) and ``t`` a sub-voxel shift (pixels).

Search (all in the band, on Fourier-cropped volumes):

1. Off-grid values ``Y(k)`` come from the DFT of the cropped volume
   zero-padded 4x (band-limited interpolation at spacing 1/4), sampled
   trilinearly.
2. Coarse rotations, both hands: near-uniform SO(3) grid (Fibonacci
   directions x uniform in-plane angles) with angular step
   ``delta = 1 / r_max`` rad, so every rotation is within about ``delta / 2`` of
   a grid point and the outer band shell moves by at most ~0.5 voxel.  The
   score is translation-invariant: the per-shell correlation of Fourier
   amplitudes ``|Y(A^T k)|`` with ``|X_ref(k)|``, computed in one parallel
   pass over the grid (:mod:`bench.score.coarse`).
3. The ``n_candidates`` best distinct rotations per hand get a translation
   from the FFT cross-correlation of the band, then a continuous 6-DOF
   refinement (rotation vector + sub-voxel shift, Nelder-Mead) of the mean
   in-band FSC.  The best candidate over both hands wins.
4. The alignment is applied at full size (cubic-spline rotation, Fourier
   shift) and the FSC is computed per shell; resolutions at 0.5 and 0.143 are
   reported only where the curve crosses inside the band, ``"beyond band"``
   when it stays above the threshold up to ``r_max``.

Devices: every step is written once against an array module ``xp`` with its
FFT and ndimage modules (scipy's for numpy, cupyx's for cupy), chosen by
``device`` (:func:`problems.model.devices.array_module`; ``"cpu"`` and
``"numpy"`` are numpy), so a GPU run aligns its snapshots on the GPU; only
the coarse search has a second form, the numba pass on ``"cpu"``
(:func:`bench.score.coarse.coarse_scores`) and blocked array operations on
the array-module devices (:func:`bench.score.coarse.coarse_scores_xp`, also
on ``"numpy"``, where the tests hold it to the numba pass).  The
Nelder-Mead driver runs on the host, one scalar per step.
"""
from __future__ import annotations

import numpy as np
import scipy.fft
from scipy.optimize import minimize
from scipy.spatial.transform import Rotation

from problems.model.devices import array_module, to_host

from .coarse import coarse_scores, coarse_scores_xp

BEYOND_BAND = "beyond band"
OVERSAMPLING = 4


def _modules(device: str | None):
    """``(xp, fft, ndimage)`` of ``device`` (module docstring)."""
    if device in (None, "cpu", "numpy"):
        import scipy.ndimage
        return np, scipy.fft, scipy.ndimage
    xp = array_module(device)
    import cupyx.scipy.fft
    import cupyx.scipy.ndimage
    return xp, cupyx.scipy.fft, cupyx.scipy.ndimage


def _xp_of(a):
    """The modules of an array: cupy's for a cupy array, else numpy's."""
    return _modules("cuda" if type(a).__module__.split(".")[0] == "cupy" else None)


def fourier_crop(x, size: int):
    """Downsample a cubic volume to ``size`` by cropping its centred spectrum (numpy or device array)."""
    xp, fft, _ = _xp_of(x)
    n = x.shape[0]
    if size >= n:
        return x.astype(np.float64)
    spec = xp.fft.fftshift(fft.fftn(x))
    lo = n // 2 - size // 2
    crop = spec[lo:lo + size, lo:lo + size, lo:lo + size]
    return xp.real(fft.ifftn(xp.fft.ifftshift(crop))) * (size / n) ** 3


def _kgrid(n: int, xp=np):
    k = xp.fft.fftfreq(n) * n
    return xp.sqrt(k[:, None, None] ** 2 + k[None, :, None] ** 2 + k[None, None, :] ** 2)


def lowpass(x, radius: float):
    """Keep spatial frequencies with ``|k| <= radius`` (frequency-index units)."""
    xp, fft, _ = _xp_of(x)
    return xp.real(fft.ifftn(fft.fftn(x) * (_kgrid(x.shape[0], xp) <= radius)))


def fourier_shift(x, shift):
    """``out(r) = x(r - t)`` for a (fractional) shift ``t`` in pixels ``[z, y, x]``, periodic."""
    xp, fft, _ = _xp_of(x)
    n = x.shape[0]
    k = xp.fft.fftfreq(n)
    shift = [float(s) for s in shift]
    phase = xp.exp(-2j * np.pi * (k[:, None, None] * shift[0] + k[None, :, None] * shift[1]
                                  + k[None, None, :] * shift[2]))
    return xp.real(fft.ifftn(fft.fftn(x) * phase))


def _rotate(x, matrix: np.ndarray, order: int = 3):
    """``out(r) = x(A^T (r - c) + c)``: the volume rotated by ``matrix`` (x, y, z order) about ``c = N // 2``."""
    xp, _, ndimage = _xp_of(x)
    n = x.shape[0]
    c = np.full(3, n // 2, dtype=float)
    inv = np.asarray(matrix)[::-1, ::-1].T              # A^T, acting on [z, y, x] indices
    return ndimage.affine_transform(x, xp.asarray(inv), offset=tuple(c - inv @ c), order=order, mode="constant")


def rotation_grid(step: float) -> np.ndarray:
    """Near-uniform rotations (matrices acting on ``[z, y, x]``) with angular spacing about ``step`` rad.

    Fibonacci directions (``ceil(4 pi / step^2)`` points on the sphere) x
    ``ceil(2 pi / step)`` in-plane angles.
    """
    n_dir = int(np.ceil(4 * np.pi / step**2))
    n_psi = int(np.ceil(2 * np.pi / step))
    i = np.arange(n_dir) + 0.5
    tilt = np.arccos(1 - 2 * i / n_dir)
    rot = np.pi * (1 + 5**0.5) * i
    psi = 2 * np.pi * np.arange(n_psi) / n_psi
    euler = np.stack([np.repeat(rot, n_psi), np.repeat(tilt, n_psi), np.tile(psi, n_dir)], axis=1)
    return Rotation.from_euler("ZYZ", euler).as_matrix()


class _BandSampler:
    """Off-grid values of a volume's centred DFT inside the band (oversampled, trilinear)."""

    def __init__(self, x, size: int):
        xp, fft, self._ndimage = _xp_of(x)
        self.xp = xp
        n = x.shape[0]
        y = fourier_crop(x, size) * (n / size) ** 3 if size < n else x.astype(np.float64)
        m = OVERSAMPLING * size
        pad = xp.zeros((m, m, m))
        pad[:size, :size, :size] = y
        pad = xp.roll(pad, -(size // 2), axis=(0, 1, 2))     # phase reference at the centre voxel
        self.spec = xp.fft.fftshift(fft.fftn(pad))
        self.centre = m // 2
        self._parts = (xp.ascontiguousarray(self.spec.real), xp.ascontiguousarray(self.spec.imag))
        self._amp = xp.abs(self.spec)

    def __call__(self, k):
        """Values at frequencies ``k`` (..., 3), host or device; a device array."""
        c = (self.xp.asarray(k) * OVERSAMPLING + self.centre).reshape(-1, 3).T
        re, im = (self._ndimage.map_coordinates(p, c, order=1, mode="nearest") for p in self._parts)
        return (re + 1j * im).reshape(k.shape[:-1])



def _band_points(radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Integer frequencies of one half-space with ``1 <= |k| <= radius`` and their shell index."""
    r = int(np.floor(radius))
    g = np.arange(-r, r + 1)
    k = np.stack(np.meshgrid(g, g, g, indexing="ij"), axis=-1).reshape(-1, 3).astype(float)
    norm = np.linalg.norm(k, axis=1)
    half = (k[:, 0] > 0) | ((k[:, 0] == 0) & (k[:, 1] > 0)) | ((k[:, 0] == 0) & (k[:, 1] == 0) & (k[:, 2] > 0))
    keep = half & (norm <= radius)
    return k[keep], np.rint(norm[keep]).astype(int)


def _distinct_best(scores: np.ndarray, grid: np.ndarray, count: int, min_angle: float) -> list[np.ndarray]:
    """The ``count`` best rotations at least ``min_angle`` apart (greedy)."""
    chosen: list[np.ndarray] = []
    min_trace = 1 + 2 * np.cos(min_angle)        # angle(A, B) > min_angle  <=>  trace(A B^T) < this
    for i in np.argsort(-scores):
        if not chosen or np.max(np.einsum("ij,cij->c", grid[i], np.asarray(chosen))) < min_trace:
            chosen.append(grid[i])
            if len(chosen) == count:
                break
    return chosen


def align(estimate, reference, band_radius: float | None = None,
          n_candidates: int = 8, n_screen: int = 40, step: float | None = None, device: str | None = None) -> dict:
    """Rotate, translate (sub-voxel) and, if it fits better, mirror ``estimate`` onto ``reference``.

    Parameters
    ----------
    band_radius : float
        ``r_max`` in frequency-index units; alignment and scores use ``1 <= |k| <= r_max``.
    n_screen, n_candidates : int
        Distinct best coarse rotations (by amplitude) re-scored with phase per
        hand, and how many of those are refined.
    step : float
        Coarse angular step (rad); default ``1 / r_max`` (see the module docstring).
    device : str
        Where to compute (module docstring); ``aligned`` is an array of its module.

    Returns
    -------
    dict
        ``aligned`` (full size), ``rotation`` (3x3, x-y-z order), ``mirrored``,
        ``shift`` (pixels, ``[z, y, x]``), ``band_fsc`` (mean in-band FSC of the
        winning candidate on the search grid) and ``hands`` (best score per hand).
    """
    xp, _, ndimage = _modules(device)
    estimate = xp.asarray(estimate, dtype=np.float64)
    reference = xp.asarray(reference, dtype=np.float64)
    if estimate.shape != reference.shape or estimate.ndim != 3 or len(set(estimate.shape)) != 1:
        raise ValueError(f"align: need two cubic volumes of one shape, got {estimate.shape} and {reference.shape}")
    if not bool(xp.isfinite(estimate).all() and xp.isfinite(reference).all()):
        raise ValueError("align: volumes must be finite")
    n = reference.shape[0]
    radius = float(band_radius) if band_radius is not None else n / 4
    size = min(n, 2 * int(np.ceil(radius)) + 4)
    step = 1.0 / radius if step is None else float(step)
    k, shells = _band_points(radius)
    n_shells = int(shells.max())
    ref = _BandSampler(reference, size)
    ref_k = ref(k)
    ref_amp = to_host(xp.abs(ref_k))
    grid = rotation_grid(step)
    ref_centred = ref_amp - _shell_means(ref_amp, shells, n_shells)
    best = None
    hands = {}
    for mirrored in (False, True):
        sampler = _BandSampler(estimate[::-1] if mirrored else estimate, size)
        if device in (None, "cpu"):
            coarse = coarse_scores(sampler._amp, grid, k, shells, n_shells, ref_centred, OVERSAMPLING, sampler.centre)
        else:
            coarse = to_host(coarse_scores_xp(xp, ndimage, sampler._amp, grid, k, shells, n_shells, ref_centred,
                                              OVERSAMPLING, sampler.centre))
        # Amplitudes cannot see translations but also miss phase: rank the best distinct
        # grid rotations again with the phase (translation from the cross-correlation).
        screened = []
        for a0 in _distinct_best(coarse, grid, n_screen, 2 * step):
            t0, cc = _translation(sampler(k @ a0), ref_k, k, n, 2 * size)
            screened.append((cc, a0, t0))
        screened.sort(key=lambda item: -item[0])
        # Short refinement of every screened candidate, then the best one of this hand to convergence.
        quick = [_refine(sampler, ref_k, k, shells, n_shells, a0, t0, radius, n, maxiter=150)
                 for _, a0, t0 in screened[:n_candidates]]
        _, a1, t1 = min(quick, key=lambda item: item[0])
        res = _refine(sampler, ref_k, k, shells, n_shells, a1, t1, radius, n)
        hands[mirrored] = -res[0]
        if best is None or res[0] < best[0]:
            best = (res[0], res[1], res[2], mirrored)
    score, a, t, mirrored = best
    matrix = a[::-1, ::-1]
    aligned = apply_alignment(estimate, matrix, mirrored, t)
    return {"aligned": aligned, "rotation": matrix, "mirrored": bool(mirrored), "shift": t,
            "band_fsc": float(-score), "hands": {"original": hands[False], "mirrored": hands[True]}}


def _shell_means(values: np.ndarray, shells: np.ndarray, n_shells: int) -> np.ndarray:
    out = np.empty_like(values)
    for s in range(1, n_shells + 1):
        sel = shells == s
        out[..., sel] = values[..., sel].mean(axis=-1, keepdims=True)
    return out


def _translation(rotated: np.ndarray, ref_k: np.ndarray, k: np.ndarray, n: int,
                 length: int) -> tuple[np.ndarray, float]:
    """Shift ``t`` on a grid of spacing ``n / L`` maximising ``Re sum conj(ref) rotated e^{-2 pi i k.t/n}``,
    and that maximum normalised by the norms (a correlation)."""
    xp, fft, _ = _xp_of(rotated)
    grid = xp.zeros((length,) * 3, dtype=complex)
    idx = tuple(xp.asarray(k.astype(int) % length).T)
    prod = xp.conj(ref_k) * rotated
    grid[idx] = prod
    grid[tuple(xp.asarray(-k.astype(int) % length).T)] = xp.conj(prod)    # the other half-space
    cc = xp.real(fft.fftn(grid))
    best = int(cc.argmax())
    j = np.array(np.unravel_index(best, cc.shape), dtype=float)
    j[j >= length / 2] -= length
    norm = 2 * np.sqrt(float(xp.sum(xp.abs(ref_k) ** 2)) * float(xp.sum(xp.abs(rotated) ** 2))) + 1e-300
    return j * n / length, float(cc.ravel()[best]) / norm


def _rodrigues(v: np.ndarray) -> np.ndarray:
    """Rotation matrix of the rotation vector ``v`` (angle ``|v|`` about ``v / |v|``)."""
    theta = float(np.linalg.norm(v))
    if theta < 1e-12:
        return np.eye(3)
    kx, ky, kz = v / theta
    cross = np.array([[0, -kz, ky], [kz, 0, -kx], [-ky, kx, 0]])
    return np.eye(3) + np.sin(theta) * cross + (1 - np.cos(theta)) * cross @ cross


def _refine(sampler: _BandSampler, ref_k, k, shells, n_shells, a0, t0, radius, n, maxiter=1500):
    """Nelder-Mead over (rotation vector x r_max, shift) of minus the mean in-band FSC.

    Rotation-vector units are scaled by ``r_max`` so that one unit moves the
    outer shell by about one voxel, like one unit of shift.
    """
    xp = sampler.xp
    shells = xp.asarray(shells)
    ref_power = xp.bincount(shells, xp.abs(ref_k) ** 2, minlength=n_shells + 1)[1:]
    conj_ref = xp.conj(ref_k)

    def unpack(p):
        return _rodrigues(p[:3] / radius) @ a0, p[3:]

    def loss(p):
        a, t = unpack(p)
        vals = sampler(k @ a) * xp.exp(xp.asarray(-2j * np.pi * (k @ t) / n))
        num = xp.bincount(shells, xp.real(vals * conj_ref), minlength=n_shells + 1)[1:]
        power = xp.bincount(shells, xp.abs(vals) ** 2, minlength=n_shells + 1)[1:]
        return -float(xp.mean(num / xp.sqrt(ref_power * power + 1e-300)))

    p0 = np.concatenate([np.zeros(3), t0])
    simplex = np.vstack([p0, p0 + 0.7 * np.eye(6)])
    res = minimize(loss, p0, method="Nelder-Mead",
                   options={"initial_simplex": simplex, "xatol": 1e-3, "fatol": 1e-7, "maxiter": maxiter})
    a, t = unpack(res.x)
    return float(res.fun), a, np.asarray(t, dtype=float)


def fsc(a, b) -> tuple[np.ndarray, np.ndarray]:
    """Fourier shell correlation; returns (shell frequency in cycles/pixel, FSC) for shells 1..N/2-1
    (host arrays; ``a`` and ``b`` numpy or both of one device)."""
    xp, fft, _ = _xp_of(a)
    n = a.shape[0]
    fa, fb = fft.fftn(a), fft.fftn(b)
    shell = xp.rint(_kgrid(n, xp)).astype(int).ravel()
    nshell = n // 2
    num = xp.bincount(shell, xp.real(fa * xp.conj(fb)).ravel(), minlength=nshell + 1)[1:nshell]
    pa = xp.bincount(shell, (xp.abs(fa) ** 2).ravel(), minlength=nshell + 1)[1:nshell]
    pb = xp.bincount(shell, (xp.abs(fb) ** 2).ravel(), minlength=nshell + 1)[1:nshell]
    return np.arange(1, nshell) / n, to_host(num / xp.sqrt(pa * pb + 1e-300))


def resolution_at(freq: np.ndarray, curve: np.ndarray, threshold: float, pixel_size: float,
                  band_limit: float | None = None) -> float | str:
    """Resolution (Å) where the FSC first drops below ``threshold`` (linear interpolation).

    Only shells with ``freq <= band_limit`` (cycles/pixel) are looked at; if
    the curve stays above the threshold through the band the answer is
    :data:`BEYOND_BAND` (the data cannot tell), and ``inf`` if it starts below.
    """
    if band_limit is not None:
        inside = freq <= band_limit + 1e-12
        freq, curve = freq[inside], curve[inside]
    below = np.flatnonzero(curve < threshold)
    if below.size == 0:
        return BEYOND_BAND if band_limit is not None else float(2 * pixel_size)
    i = int(below[0])
    if i == 0:
        return float("inf")
    f0, f1, c0, c1 = freq[i - 1], freq[i], curve[i - 1], curve[i]
    f = f0 + (c0 - threshold) / (c0 - c1) * (f1 - f0)
    return float(pixel_size / f)


def compare_to_truth(estimate: np.ndarray, truth: np.ndarray, pixel_size: float,
                     band_radius: float | None = None, device: str | None = None) -> dict:
    """Align, then FSC at full size, on ``device`` (module docstring); host results.

    Returns the FSC curve (every shell) with ``in_band`` flags, the mean
    in-band FSC weighted by shell size (``fsc_band_mean``), resolutions at 0.5
    and 0.143 inside the band (or ``"beyond band"``), the aligned real-space
    correlation of the band-limited volumes, and the alignment.
    """
    n = truth.shape[0]
    radius = float(band_radius) if band_radius is not None else n / 4
    xp = _modules(device)[0]
    truth = xp.asarray(truth)                  # its own precision: float32 truths get a complex64 FSC
    result = align(estimate, truth, radius, device=device)
    freq, curve = fsc(result["aligned"], truth)
    in_band = freq * n <= radius + 1e-9
    counts = np.bincount(np.rint(_kgrid(n)).astype(int).ravel(), minlength=n // 2 + 1)[1:n // 2]
    band_mean = float(np.sum(curve[in_band] * counts[in_band]) / np.sum(counts[in_band]))
    a, b = to_host(lowpass(result["aligned"], radius)).ravel(), to_host(lowpass(truth.astype(np.float64), radius)).ravel()
    return {"frequency": freq.tolist(), "fsc": curve.tolist(), "in_band": in_band.tolist(),
            "band_limit_cycles_per_pixel": radius / n, "fsc_band_mean": band_mean,
            "resolution_0.5": resolution_at(freq, curve, 0.5, pixel_size, radius / n),
            "resolution_0.143": resolution_at(freq, curve, 0.143, pixel_size, radius / n),
            "correlation": float(np.corrcoef(a, b)[0, 1]), "mirrored": result["mirrored"],
            "hand_scores": result["hands"], "rotation": np.asarray(result["rotation"]).tolist(),
            "shift": [float(s) for s in result["shift"]], "aligned": to_host(result["aligned"])}


def apply_alignment(volume, rotation, mirrored: bool, shift):
    """Apply an alignment found by :func:`align` (e.g. stored in a run record) to a volume:
    mirror (``[::-1]``), rotate about ``N // 2`` (cubic spline), shift (Fourier, sub-voxel).
    float32, an array of the volume's module."""
    full = _xp_of(volume)[0].asarray(volume, dtype=np.float64)
    full = full[::-1] if mirrored else full
    rotated = _rotate(full, np.asarray(rotation))
    return fourier_shift(rotated, np.asarray(shift, dtype=float)).astype(np.float32)
