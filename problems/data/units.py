"""The only place where Ångström meets pixels.

Inside cryoopt every length is in pixels and every spatial frequency in
cycles/pixel; the microscope's physical parameters (Å, kV, mm) are converted
here, once, at the file boundary.
"""
from __future__ import annotations

import numpy as np

from ..model.ctf import CTFParams


def electron_wavelength_angstrom(voltage_kv: float) -> float:
    """Relativistic electron wavelength.

    .. math:: \\lambda = h / \\sqrt{2 m_0 e V (1 + e V / (2 m_0 c^2))}
              = 12.2643247 / \\sqrt{V (1 + 0.978466\\times10^{-6} V)}\\ \\text{Å}

    with ``V`` in volts (300 kV gives 0.01969 Å).
    """
    volts = np.asarray(voltage_kv, dtype=np.float64) * 1e3
    out = 12.2643247 / np.sqrt(volts * (1.0 + 0.978466e-6 * volts))
    return float(out) if out.ndim == 0 else out


def angstrom_to_pixels(length_angstrom, pixel_size_angstrom: float):
    """Length in Å -> length in pixels."""
    return np.asarray(length_angstrom, dtype=np.float64) / float(pixel_size_angstrom)


def resolution_angstrom(radius_index: float, box_size: int, pixel_size_angstrom: float) -> float:
    """Resolution (Å) of the Fourier shell at integer-frequency radius ``radius_index``."""
    return box_size * pixel_size_angstrom / float(radius_index)


def ctf_from_microscope(*, pixel_size: float, defocus_u_angstrom, defocus_v_angstrom,
                        astigmatism_angle_deg, voltage_kv, cs_mm, amplitude_contrast,
                        bfactor_angstrom2=0.0, phase_shift_deg=0.0, scale=1.0) -> CTFParams:
    """Convert the microscope's units (Å, degrees, kV, mm, Å^2) to a pixel-unit :class:`CTFParams`.

    Voltage, Cs, amplitude contrast and scale may be one scalar for every
    image (kept scalar) or one value per image (optics groups that differ).
    """
    du = angstrom_to_pixels(defocus_u_angstrom, pixel_size)
    n = np.atleast_1d(du).shape
    bcast = lambda v: np.broadcast_to(np.asarray(v, dtype=np.float64), n).copy()  # noqa: E731
    shared = lambda v: float(v) if np.ndim(v) == 0 else bcast(v)                 # noqa: E731
    return CTFParams(
        defocus_u=np.atleast_1d(du),
        defocus_v=bcast(angstrom_to_pixels(defocus_v_angstrom, pixel_size)),
        astigmatism_angle=bcast(np.deg2rad(astigmatism_angle_deg)),
        wavelength=shared(np.asarray(electron_wavelength_angstrom(voltage_kv)) / pixel_size),
        spherical_aberration=shared(angstrom_to_pixels(np.asarray(cs_mm) * 1e7, pixel_size)),
        amplitude_contrast=shared(amplitude_contrast),
        bfactor=bcast(np.asarray(bfactor_angstrom2) / pixel_size**2),
        phase_shift=bcast(np.deg2rad(phase_shift_deg)),
        scale=shared(scale),
    )
