"""cryoopt problems: the fixed cryo-EM objective, its data and the counting oracle.

>>> from problems import load_problem
>>> p = load_problem("synthetic", scale="tiny", seed=0, progress=False)
>>> oracle = p.oracle(budget=1000)
>>> x = p.initial_density(seed=0)
>>> f, g = oracle.value_and_grad(x, oracle.next_batch(100))
>>> oracle.evals
100.0
"""
from __future__ import annotations

import numpy as np

from .datasets import ensure_synthetic, load_band_data, load_ground_truth
from .problem import Problem
from .protocol import BudgetExhausted, Oracle, OracleInputError
from .registry import SYNTHETIC_SCALES, synthetic_spec

__all__ = ["load_problem", "list_problems", "Problem", "Oracle", "BudgetExhausted", "OracleInputError"]

PROBLEMS = {"synthetic": "the paper's synthetic ab-initio problem (cylindrical-core phantom, zero shifts)"}
PROBLEMS["star"] = "any particle stack: RELION STAR / cryoSPARC .cs + MRC (load_problem('star', path=...))"
PROBLEMS["realistic"] = "paper's Thermus settings on images simulated from the 6ZU5 ribosome (shifts, CTF)"
PROBLEMS["refine-known-poses"] = "high-resolution refinement at known poses: linear least squares (Toader et al.)"


def list_problems() -> dict[str, dict]:
    """Problem name -> description and scales."""
    listing = {"synthetic": {"description": PROBLEMS["synthetic"], "scales": list(SYNTHETIC_SCALES)}}
    from .realistic import REALISTIC_SCALES, STAR_SCALES
    listing["star"] = {"description": PROBLEMS["star"], "scales": list(STAR_SCALES)}
    listing["realistic"] = {"description": PROBLEMS["realistic"], "scales": list(REALISTIC_SCALES)}
    from .refine import REFINE_SCALES
    listing["refine-known-poses"] = {"description": PROBLEMS["refine-known-poses"], "scales": list(REFINE_SCALES)}
    return listing


def load_problem(name: str, scale: str = "small", seed: int = 0, progress: bool = True,
                 **overrides) -> Problem:
    """Build a problem, generating its data into the cache on first use.

    Parameters
    ----------
    name : {"synthetic"}
    scale : {"tiny", "small", "paper"}
    seed : int
        Seeds the data (poses, CTFs, noise, split) and the batch order.
    progress : bool
        Show progress bars while generating / reading data.
    **overrides
        Fields of :class:`problems.registry.SyntheticSpec` to change (a
        different problem: it gets a different hash and cache folder).
    """
    if name == "star":      # overrides: path= (required), r_max=, box=, n_images=, ... (realistic.py)
        from .realistic import load_star_problem
        return load_star_problem(scale=scale, seed=seed, progress=progress, **overrides)
    if name == "realistic":  # overrides: fields of problems.realistic.RealisticSpec
        from .realistic import load_realistic_problem
        return load_realistic_problem(scale=scale, seed=seed, progress=progress, **overrides)
    if name == "refine-known-poses":  # overrides: fields of problems.refine.RefineSpec (r_max_fraction=...)
        from .refine import load_refine
        return load_refine(scale=scale, seed=seed, **overrides)
    if name != "synthetic":
        raise ValueError(f"unknown problem {name!r}; available: {sorted(PROBLEMS)}")
    spec = synthetic_spec(scale, **overrides)
    directory = ensure_synthetic(spec, seed, progress=progress)
    data = load_band_data(directory / "particles.star", _band_for(spec.r_max), progress=progress)
    fixed = {k: v for k, v in spec.as_dict().items() if k not in ("name", "version")}
    fixed["seed"] = seed
    return Problem(name=spec.name, version=spec.version, fixed=fixed, data=data,
                   test_indices=np.load(directory / "test_indices.npy"), r_max=spec.r_max,
                   sigma=spec.sigma, lambda_plus=spec.lambda_plus, lambda_minus=spec.lambda_minus,
                   shift_extent=spec.shift_extent, shift_sigma=spec.shift_sigma, order_seed=seed,
                   ground_truth=load_ground_truth(directory))


def _band_for(r_max: float):
    from .grids import make_band
    return make_band(r_max)
