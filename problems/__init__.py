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

from .catalog import FAMILIES, family
from .problem import Problem, problem_label
from .protocol import BudgetExhausted, NonFiniteInput, Oracle, OracleInputError, OptimizerInfo

__all__ = ["load_problem", "list_problems", "problem_label", "Problem", "Oracle", "OptimizerInfo",
           "BudgetExhausted", "OracleInputError", "NonFiniteInput"]


def list_problems() -> dict[str, dict]:
    """Problem name -> description and scales."""
    return {name: {"description": f.description, "scales": f.scale_names()} for name, f in FAMILIES.items()}


def load_problem(name: str, scale: str = "small", seed: int = 0, progress: bool = True, device: str | None = None,
                 **overrides):
    """Build a problem, generating its data into the cache on first use.

    Parameters
    ----------
    name : str
        A registered family (:data:`problems.catalog.FAMILIES`): ``"synthetic"``,
        ``"realistic"``, ``"star"`` (needs ``path=``) or ``"refine-known-poses"``.
    scale : {"tiny", "small", "paper"}
    seed : int
        Seeds the data (poses, CTFs, noise, split) and the batch order.
    progress : bool
        Show progress bars while generating / reading data.
    device : {"cpu", "numpy", "cuda"} or None
        Where the objective is evaluated (:meth:`Problem.use_device`): the
        numba CPU path, or the array-module path on NumPy or on a GPU through
        CuPy.  ``"cuda"`` without CuPy or a GPU raises ``RuntimeError`` before
        any data is read.  None: ``$CRYOOPT_DEVICE`` (what the commands'
        ``--device`` sets, so runs in worker processes follow it), else ``"cpu"``.
        Families that simulate on the device (``Family.simulates_on_device``:
        ``"realistic"``) also generate missing data there; those images equal
        the CPU's to float32 rounding (the dataset's manifest records where).
    **overrides
        Fields of the family's spec to change (a different problem: it gets a
        different hash), or for ``"star"`` the loader's keywords.
    """
    from .model.devices import array_module, check_device, default_device
    device = default_device() if device is None else device
    if check_device(device) != "cpu":
        if name == "refine-known-poses":
            raise ValueError("refine-known-poses runs on the CPU only (device='cpu')")
        array_module(device)                              # the clear error, before generating data
    fam = family(name)
    if fam.simulates_on_device and device != "cpu":
        overrides = {**overrides, "device": device}       # missing data are simulated there too
    problem = fam.load(scale=scale, seed=seed, progress=progress, **overrides)
    return problem if device == "cpu" else problem.use_device(device)
