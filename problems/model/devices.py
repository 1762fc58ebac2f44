"""Where the objective runs: device names, their array modules and precision settings.

``"cpu"`` is the default numba/NumPy path (:mod:`.marginal`).  Every other
device runs the array-module path (:mod:`.xp_marginal`), written once
against NumPy's API:

* ``"numpy"``: the array-module code on the CPU (tests run it on any machine);
* ``"cuda"``: the same code on an NVIDIA GPU through CuPy.

Precision on the GPU: float32 / complex64 with full float32 matrix
arithmetic.  TF32 (10-bit mantissa products, relative error ~3e-4) and the
other reduced-precision modes are refused in two places before any cuBLAS
handle exists: ``NVIDIA_TF32_OVERRIDE=0`` (cuBLAS' own process-wide switch)
and CuPy's compute type for float32 and complex64 set to
``COMPUTE_TYPE_FP32`` (``CUBLAS_COMPUTE_32F``); ``CUPY_TF32=1`` in the
environment is an error.  ``cryoopt bench device`` measures the result: a
float32 product's error against float64 on the device.
"""
from __future__ import annotations

import os
import time
from contextlib import contextmanager

import numpy as np

DEVICES = ("cpu", "numpy", "cuda")


def default_device() -> str:
    """``$CRYOOPT_DEVICE`` (set by the commands' ``--device``), else ``"cpu"``."""
    return check_device(os.environ.get("CRYOOPT_DEVICE") or "cpu")


def check_device(device: str) -> str:
    """``device`` if it is known, else ``ValueError`` naming the choices."""
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; choose from {DEVICES}")
    return device


def _full_float32(cupy) -> str:
    """Turn TF32 and reduced-precision products off; returns how (module docstring)."""
    if os.environ.get("CUPY_TF32", "0") not in ("", "0"):
        raise RuntimeError("CUPY_TF32 is set: TF32 products are not allowed (the objective is float32); "
                           "unset it")
    how = ["NVIDIA_TF32_OVERRIDE=0"]
    try:
        from cupy._core import _routines_linalg as linalg
        for dtype in (np.float32, np.complex64):
            linalg.set_compute_type(dtype, linalg.COMPUTE_TYPE_FP32)
        how.append("cupy compute type FP32 (CUBLAS_COMPUTE_32F) for float32 and complex64")
    except Exception as exc:       # private API moved or changed: the env switch still holds (measured in reports)
        how.append(f"cupy compute type not set ({exc.__class__.__name__}); CUPY_TF32 unset")
    return "; ".join(how)


PRECISION: dict[str, str] = {}
"""How reduced precision was turned off, per device (filled on first use; for reports)."""


def array_module(device: str):
    """The array module of ``device``: ``"numpy"`` -> numpy, ``"cuda"`` -> cupy.

    Raises
    ------
    ValueError
        For an unknown device name (``"cpu"`` has no array-module path).
    RuntimeError
        When ``"cuda"`` is asked for and CuPy or a GPU is missing: one clear message.
    """
    if check_device(device) == "numpy":
        PRECISION.setdefault("numpy", "numpy: float32 BLAS")
        return np
    if device == "cuda":
        os.environ["NVIDIA_TF32_OVERRIDE"] = "0"       # read when cuBLAS starts
        try:
            import cupy
        except ImportError as exc:
            raise RuntimeError("device='cuda' needs CuPy (pip install cupy-cuda12x or cupy-cuda13x) and an "
                               "NVIDIA GPU; use device='cpu'") from exc
        try:
            if cupy.cuda.runtime.getDeviceCount() < 1:
                raise RuntimeError("no GPU found")
        except Exception as exc:  # CUDARuntimeError without a driver / device
            raise RuntimeError(f"device='cuda': CuPy is installed but no usable NVIDIA GPU ({exc}); "
                               "use device='cpu'") from exc
        PRECISION.setdefault("cuda", _full_float32(cupy))
        return cupy
    raise ValueError("device='cpu' is the numba path, it has no array module; use 'numpy' or 'cuda'")


def sparse_module(xp):
    """``scipy.sparse`` for NumPy, ``cupyx.scipy.sparse`` for CuPy (the same CSR API)."""
    if xp is np:
        import scipy.sparse
        return scipy.sparse
    import cupyx.scipy.sparse
    return cupyx.scipy.sparse


def to_host(a) -> np.ndarray:
    """A NumPy array of a device array (CuPy's ``.get()``), or the array itself."""
    return a.get() if hasattr(a, "get") and not isinstance(a, np.ndarray) else np.asarray(a)


def synchronize(xp) -> None:
    """Wait for queued device work (timings); nothing on NumPy."""
    if xp is not np:
        xp.cuda.get_current_stream().synchronize()


@contextmanager
def timed_phase(xp, timings: dict | None, name: str):
    """Accumulate a phase's wall time into ``timings`` (no-op when None), the device
    synchronised at both ends so that queued work is charged to its own phase."""
    if timings is None:
        yield
        return
    synchronize(xp)
    start = time.perf_counter()
    yield
    synchronize(xp)
    timings[name] = timings.get(name, 0.0) + time.perf_counter() - start


class DeviceRows:
    """Rows of an array kept on a device; ``rows[idx]`` gathers there (``idx`` a host index array)."""

    def __init__(self, xp, array):
        self.xp, self.array = xp, xp.asarray(array)
        self.shape, self.dtype = self.array.shape, self.array.dtype

    def __len__(self) -> int:
        return int(self.shape[0])

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            return self.array[idx]
        return self.array[self.xp.asarray(np.asarray(idx))]
