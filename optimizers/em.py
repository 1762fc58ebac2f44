"""Batch baselines of paper Fig. 6: expectation-maximisation and iterative projection matching."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import numpy as np

from .base import Range


class BatchState(NamedTuple):
    iteration: int


@dataclass(frozen=True)
class EM:
    """Batch EM (RELION-style, Scheres 2012): one step = one full pass.

    E-step: posterior-weighted back-projection sums of every training image
    (``oracle.expectation``, charged 1 per image: an iteration costs one
    epoch).  M-step: ``oracle.m_step`` maximises the expected complete-data
    log posterior (a convex problem; no image is touched).
    """

    name: ClassVar[str] = "em"
    needs: ClassVar[frozenset] = frozenset({"expectation", "m_step"})
    search_space: ClassVar[dict] = {"m_step_iterations": Range(5, 100, "log")}
    hard: ClassVar[bool] = False
    batch_size: int = 500
    m_step_iterations: int = 30

    def init(self, x0, info, rng) -> BatchState:
        return BatchState(0)

    def step(self, x, state: BatchState, oracle, rng):
        stats = None
        for start in range(0, oracle.n_train, self.batch_size):
            idx = np.arange(start, min(start + self.batch_size, oracle.n_train))
            part = oracle.expectation(x, idx, hard=self.hard)
            stats = part if stats is None else stats + part
        return oracle.m_step(stats, x, max_iter=self.m_step_iterations), BatchState(state.iteration + 1)


@dataclass(frozen=True)
class ProjectionMatching(EM):
    """Iterative projection matching: each image takes its single best pose (global search over
    the quadrature, the likelihood-optimal CTF-weighted correlation), then the density is
    reconstructed from those poses (the same M-step with a one-hot posterior)."""

    name: ClassVar[str] = "projection-matching"
    hard: ClassVar[bool] = True
