"""Run any ``torch.optim`` optimizer through the oracle (optional: needs PyTorch)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

import numpy as np

from .base import Range


class TorchState(NamedTuple):
    parameter: Any      # torch.Tensor holding x
    optimizer: Any      # the torch.optim instance


@dataclass(frozen=True)
class TorchOptimizer:
    """``torch.optim.<optimizer>(lr=lr, **options)`` on the density, gradients from the oracle.

    torch optimizers keep their state inside the optimizer object, so this
    adapter's state is that object: ``step`` advances it in place (the one
    exception to the pure-``step`` rule, forced by torch's API).
    """

    name: ClassVar[str] = "torch"
    needs: ClassVar[frozenset] = frozenset({"value_and_grad", "next_batch"})
    requires: ClassVar[tuple] = ("torch",)
    search_space: ClassVar[dict] = {"lr": Range(1e-4, 1e0)}
    optimizer: str = "Adam"
    lr: float = 1e-3
    options: dict = field(default_factory=dict)
    batch_size: int = 100

    def init(self, x0, info, rng) -> TorchState:
        try:
            import torch
        except ImportError as exc:
            raise ImportError("the torch adapter needs PyTorch: pip install cryoopt[torch]") from exc
        torch.manual_seed(int(rng.integers(2**31)))
        parameter = torch.nn.Parameter(torch.from_numpy(np.array(x0, dtype=np.float32)))
        if not hasattr(torch.optim, self.optimizer):
            raise ValueError(f"torch.optim has no optimizer {self.optimizer!r}")
        return TorchState(parameter, getattr(torch.optim, self.optimizer)([parameter], lr=self.lr, **self.options))

    def step(self, x, state: TorchState, oracle, rng):
        import torch
        idx = oracle.next_batch(self.batch_size)
        with torch.no_grad():
            state.parameter.copy_(torch.from_numpy(np.asarray(x, dtype=np.float32)))
        _, g = oracle.value_and_grad(x, idx)
        state.optimizer.zero_grad()
        state.parameter.grad = torch.from_numpy(np.asarray(g, dtype=np.float32))
        state.optimizer.step()
        return state.parameter.detach().numpy().copy(), state
