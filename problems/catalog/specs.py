"""Problem specifications: every fixed choice of a problem, versioned.

A spec is a definition, not a tuning knob: changing any field changes the
problem's content hash, and changing how a field is interpreted bumps
``version``.  Fields named in ``objective_fields`` shape only the objective
(band, prior), not the simulated bytes, so the data cache key leaves them out
(:func:`problems.data.cache.dataset_dir`).
"""
from __future__ import annotations

from dataclasses import asdict
from typing import ClassVar


class SpecGeometry:
    """Derived sizes shared by every problem spec (a dataclass with ``box_size``,
    ``r_max_fraction``, ``n_train`` and ``n_test`` fields)."""

    @property
    def r_max(self) -> float:
        return self.r_max_fraction * self.box_size / 2

    @property
    def n_images(self) -> int:
        # n_score: further held-out images for the harness's rankings (specs that have the field)
        return self.n_train + self.n_test + getattr(self, "n_score", 0)

    objective_fields: ClassVar[tuple[str, ...]] = ("r_max_fraction", "lambda_plus", "lambda_minus")

    def as_dict(self) -> dict:
        return asdict(self)

    def data_fields(self) -> dict:
        """The fields that change the simulated bytes (the data cache key)."""
        return {k: v for k, v in self.as_dict().items() if k not in self.objective_fields}


class BoxInAngstrom(SpecGeometry):
    """For specs that fix the box's physical size (``box_angstrom``) rather than the pixel size."""

    @property
    def pixel_size(self) -> float:
        return self.box_angstrom / self.box_size


