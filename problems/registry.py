"""Problem specifications: every fixed choice of a problem, versioned.

A spec is a definition, not a tuning knob: changing any field changes the
problem's content hash, and changing how a field is interpreted bumps
``version``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

SYNTHETIC_VERSION = 1


class SpecGeometry:
    """Derived sizes shared by every problem spec (a dataclass with ``box_size``,
    ``r_max_fraction``, ``n_train`` and ``n_test`` fields)."""

    @property
    def r_max(self) -> float:
        return self.r_max_fraction * self.box_size / 2

    @property
    def n_images(self) -> int:
        return self.n_train + self.n_test

    def as_dict(self) -> dict:
        return asdict(self)


class BoxInAngstrom(SpecGeometry):
    """For specs that fix the box's physical size (``box_angstrom``) rather than the pixel size."""

    @property
    def pixel_size(self) -> float:
        return self.box_angstrom / self.box_size


@dataclass(frozen=True)
class SyntheticSpec(BoxInAngstrom):
    """The paper's synthetic ab-initio setting at one scale.

    Lengths in pixels except ``box_angstrom`` and the CTF ranges (microscope
    units, converted at the file boundary).
    """

    name: str
    scale: str
    box_size: int
    r_max_fraction: float          # band limit as a fraction of Nyquist (N/2)
    n_train: int
    n_test: int
    snr: float                     # mean clean pixel power / sigma^2 over the whole image
    sigma: float = 1.0
    lambda_plus: float = 1e-4
    lambda_minus: float = 1e-4
    shift_extent: float = 0.0      # pixels; 0 = the paper's zero shifts
    shift_sigma: float = 1.0
    box_angstrom: float = 384.0
    voltage_kv: float = 300.0
    cs_mm: float = 2.7
    amplitude_contrast: float = 0.07
    defocus_min_angstrom: float = 15000.0
    defocus_max_angstrom: float = 40000.0
    astigmatism_max_angstrom: float = 1000.0
    bfactor_min: float = 50.0
    bfactor_max: float = 150.0
    version: int = SYNTHETIC_VERSION



SYNTHETIC_SCALES: dict[str, SyntheticSpec] = {
    "tiny": SyntheticSpec("synthetic", "tiny", box_size=24, r_max_fraction=0.25,
                          n_train=400, n_test=20, snr=0.1),
    "small": SyntheticSpec("synthetic", "small", box_size=64, r_max_fraction=0.16,
                           n_train=5000, n_test=100, snr=0.05),
    "paper": SyntheticSpec("synthetic", "paper", box_size=128, r_max_fraction=0.10,
                           n_train=50000, n_test=100, snr=0.05),
}


def synthetic_spec(scale: str, **overrides) -> SyntheticSpec:
    if scale not in SYNTHETIC_SCALES:
        raise ValueError(f"synthetic: unknown scale {scale!r}; choose from {sorted(SYNTHETIC_SCALES)}")
    return replace(SYNTHETIC_SCALES[scale], **overrides) if overrides else SYNTHETIC_SCALES[scale]
