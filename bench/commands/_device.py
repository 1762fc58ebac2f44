"""``--device`` of the commands that evaluate the objective (run, sweep, reproduce, reference, bench,
leaderboard --build, submit): one argument, one effect."""
from __future__ import annotations

import os

DEVICES = ("cpu", "numpy", "cuda")          # problems.model.devices.DEVICES (not imported: --help stays light)

HELP = ("where the objective is evaluated: cpu (numba), cuda (CuPy on an NVIDIA GPU; training, test and "
        "scoring images stay on it) or numpy (the GPU code on the CPU); default $CRYOOPT_DEVICE or cpu")


def add_device_arg(p) -> None:
    p.add_argument("--device", choices=DEVICES, default=None, help=HELP)


def apply_device(args) -> None:
    """Check ``--device`` now (``cuda`` without CuPy or a GPU is one clear error) and export it as
    ``$CRYOOPT_DEVICE``, the default of ``load_problem`` here and in worker and server processes."""
    device = getattr(args, "device", None)
    if device:
        from problems.model.devices import array_module
        if device != "cpu":
            try:
                array_module(device)
            except RuntimeError as exc:
                raise SystemExit(f"--device {device}: {exc}") from None
        os.environ["CRYOOPT_DEVICE"] = device
