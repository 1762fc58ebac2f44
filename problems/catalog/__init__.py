"""The problem families, one per module, and the one registry that
:func:`problems.load_problem` and ``cryoopt problems`` read.

Each family's module holds its spec, its scales and its loader; the loaders
are imported lazily so listing problems loads no data code it does not need.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    """A registered problem family: ``module:loader`` builds it, ``module:scales`` lists its scales;
    ``simulates_on_device``: its loader takes ``device`` and simulates missing data there."""

    name: str
    description: str
    module: str
    loader: str
    scales: str
    simulates_on_device: bool = False

    def load(self, **kwargs):
        return getattr(importlib.import_module(self.module, __name__), self.loader)(**kwargs)

    def scale_names(self) -> list[str]:
        return list(getattr(importlib.import_module(self.module, __name__), self.scales))


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("synthetic", "the paper's synthetic ab-initio problem (cylindrical-core phantom, zero shifts)",
           ".synthetic", "load_synthetic", "SYNTHETIC_SCALES"),
    Family("realistic", "paper's Thermus settings on images simulated from the 6ZU5 ribosome (shifts, CTF)",
           ".realistic", "load_realistic_problem", "REALISTIC_SCALES", simulates_on_device=True),
    Family("star", "any particle stack: RELION STAR / cryoSPARC .cs + MRC (load_problem('star', path=...))",
           ".star", "load_star_problem", "STAR_SCALES"),
    Family("refine-known-poses", "high-resolution refinement at known poses: linear least squares (Toader et al.)",
           ".refine", "load_refine", "REFINE_SCALES"),
)}


def family(name: str) -> Family:
    if name not in FAMILIES:
        raise ValueError(f"unknown problem {name!r}; available: {sorted(FAMILIES)}")
    return FAMILIES[name]
