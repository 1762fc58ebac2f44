"""A deliberately simple reference implementation of the objective.

Direct sums and per-pose loops, written from the documented definitions only
(DESIGN.md and the module docstrings of problems/): it shares no code with
the fast path.  Rotations come from scipy's Rotation (RELION's matrix is the
transpose of the intrinsic ZYZ rotation), the trilinear interpolation from
scipy.ndimage.map_coordinates, the Fourier transforms are explicit sums.
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import map_coordinates
from scipy.special import logsumexp
from scipy.spatial.transform import Rotation


def disc_frequencies(r_max):
    r = int(np.floor(r_max))
    return np.array([(kx, ky) for ky in range(-r, r + 1) for kx in range(-r, r + 1)
                     if kx * kx + ky * ky <= r_max**2], dtype=float)


def volume_ft_oversampled(x, m_max):
    """Vhat(m/2) = N^-1 sum_r x[r] exp(-2 pi i (m/2).(r - c)/N), as [mz, my, mx]."""
    n = x.shape[0]
    m = np.arange(-m_max, m_max + 1) / 2.0
    r = np.arange(n) - n // 2
    e = np.exp(-2j * np.pi * np.outer(m, r) / n)           # (K, N)
    out = np.zeros((len(m),) * 3, dtype=complex)
    for a in range(len(m)):
        for b in range(len(m)):
            # sum over z, y, x of x[z,y,x] e[a,z] e[b,y] e[c,x]
            out[a, b, :] = np.einsum("zyx,z,y,cx->c", x, e[a], e[b], e)
    return out / n


def image_ft(img, k):
    n = img.shape[0]
    p = np.arange(n) - n // 2
    ex = np.exp(-2j * np.pi * np.outer(k[:, 0], p) / n)    # (T, X)
    ey = np.exp(-2j * np.pi * np.outer(k[:, 1], p) / n)    # (T, Y)
    return np.einsum("yx,ty,tx->t", img, ey, ex) / n


def ctf_value(k_cpp, du, dv, ang, lam, cs, q0, bfac, phase):
    k2 = (k_cpp**2).sum(1)
    alpha = np.arctan2(k_cpp[:, 1], k_cpp[:, 0])
    df = 0.5 * (du + dv) + 0.5 * (du - dv) * np.cos(2 * (alpha - ang))
    chi = np.pi * lam * df * k2 - 0.5 * np.pi * cs * lam**3 * k2**2
    return np.exp(-bfac * k2 / 4) * np.sin(chi + np.arcsin(q0) + phase)


def reference_log_joint(x, images, ctf_params, quadrature, sigma, r_max):
    """``log w_j - E_ij / (2 sigma^2)`` by brute force, shape (B, M).

    Poses are enumerated as (direction d, in-plane index l, shift s), index
    ``(d * n_psi + l) * n_shift + s``, with ``psi = 2 pi l / n_psi``.
    """
    n = x.shape[0]
    k = disc_frequencies(r_max)
    m_max = int(np.ceil(2 * r_max)) + 1
    vhat = volume_ft_oversampled(np.asarray(x, float), m_max)
    poses, logw = [], []
    for d in range(len(quadrature.rot)):
        for l in range(quadrature.n_psi):
            psi = 2 * np.pi * l / quadrature.n_psi
            a = Rotation.from_euler("ZYZ", [quadrature.rot[d], quadrature.tilt[d], psi]).as_matrix().T
            q = k[:, 0:1] * a[0][None, :] + k[:, 1:2] * a[1][None, :]   # (T, 3) x,y,z
            coords = np.stack([2 * q[:, 2], 2 * q[:, 1], 2 * q[:, 0]]) + m_max
            sl = (map_coordinates(vhat.real, coords, order=1)
                  + 1j * map_coordinates(vhat.imag, coords, order=1))
            for s, ws in zip(quadrature.shifts, quadrature.shift_weights):
                ramp = np.exp(-2j * np.pi * (k @ s) / n)
                poses.append(ramp * sl)
                logw.append(np.log(quadrature.direction_weights[d] / quadrature.n_psi * ws))
    poses, logw = np.array(poses), np.array(logw)
    out = []
    for i in range(images.shape[0]):
        c = ctf_value(k / n, ctf_params.defocus_u[i], ctf_params.defocus_v[i],
                      ctf_params.astigmatism_angle[i], ctf_params.wavelength,
                      ctf_params.spherical_aberration, ctf_params.amplitude_contrast,
                      ctf_params.bfactor[i], ctf_params.phase_shift[i])
        obs = image_ft(images[i], k)
        energy = np.array([np.sum(np.abs(obs - c * p) ** 2) for p in poses])
        out.append(logw - energy / (2 * sigma**2))
    return np.array(out)


def reference_nll(x, images, ctf_params, quadrature, sigma, r_max):
    """Per-image NLL by brute force.  ``ctf_params`` is a problems.model.ctf.CTFParams."""
    return -logsumexp(reference_log_joint(x, images, ctf_params, quadrature, sigma, r_max), axis=1)
