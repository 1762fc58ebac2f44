"""Shared set-up for the asv benchmarks: problems in a private cache, built once."""
import os
import tempfile
from pathlib import Path

CACHE = Path(os.environ.get("CRYOOPT_ASV_CACHE", Path(tempfile.gettempdir()) / "cryoopt-asv-cache"))


def use_cache() -> None:
    os.environ["CRYOOPT_CACHE"] = str(CACHE)


def problem(scale: str):
    use_cache()
    from problems import load_problem
    return load_problem("synthetic", scale=scale, seed=0, progress=False)
