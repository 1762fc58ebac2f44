"""Run any ``optax.GradientTransformation`` through the oracle (optional: needs optax and jax).

optax's extension point is the pair of pure functions ``init(params)`` and
``update(updates, state, params) -> (updates, state)`` (``optax/_src/base.py``);
it fits this project's pure ``init`` / ``step`` exactly, so unlike the torch
adapter nothing is mutated: the optax state is this adapter's state.  One step
on a minibatch ``B`` of ``batch_size`` images:

.. math:: g = \\nabla f_B(x),\\quad (u, s') = \\mathrm{update}(g, s, x),\\quad x' = x + u

By name: ``--optimizer optax --set optimizer=adam --set lr=1e-3`` builds
``optax.adam(learning_rate=lr, **options)`` (any alias in the ``optax``
namespace that takes ``learning_rate``).  Any other transformation (a
``chain``, a schedule, ``optax.contrib``): subclass and override
:meth:`OptaxOptimizer.transformation` in a plug-in file::

    @dataclass(frozen=True)
    class ClippedAdam(OptaxOptimizer):
        name = "clipped-adam"
        def transformation(self):
            import optax
            return optax.chain(optax.clip_by_global_norm(1.0), optax.adam(self.lr))

``lr`` is absolute, as in optax (Adam-type updates are scale-free anyway);
jax computes in float32, like the oracle's density.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

import numpy as np

from .base import Range


class OptaxState(NamedTuple):
    inner: Any           # the transformation's own state (a pytree of jax arrays)


@dataclass(frozen=True)
class OptaxOptimizer:
    """``optax.<optimizer>(learning_rate=lr, **options)`` on the density, gradients from the oracle."""

    name: ClassVar[str] = "optax"
    needs: ClassVar[frozenset] = frozenset({"value_and_grad", "next_batch"})
    requires: ClassVar[tuple] = ("optax", "jax")
    search_space: ClassVar[dict] = {"lr": Range(1e-4, 1e0)}
    optimizer: str = "adam"
    lr: float = 1e-3
    options: dict = field(default_factory=dict)
    batch_size: int = 100

    def transformation(self):
        """The ``optax.GradientTransformation`` to run (override for chains and schedules)."""
        import optax
        make = getattr(optax, self.optimizer, None)
        if not callable(make):
            raise ValueError(f"optax has no optimizer {self.optimizer!r}")
        return make(learning_rate=self.lr, **self.options)

    def init(self, x0, info, rng) -> OptaxState:
        import jax.numpy as jnp
        return OptaxState(self.transformation().init(jnp.asarray(x0, dtype=jnp.float32)))

    def step(self, x, state: OptaxState, oracle, rng):
        import jax.numpy as jnp
        import optax
        _, g = oracle.value_and_grad(x, oracle.next_batch(self.batch_size))
        params = jnp.asarray(x, dtype=jnp.float32)
        updates, inner = self.transformation().update(jnp.asarray(g, dtype=jnp.float32), state.inner, params)
        return np.asarray(optax.apply_updates(params, updates), dtype=np.float32), OptaxState(inner)
