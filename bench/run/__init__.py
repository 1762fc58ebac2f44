"""Running optimizers, one run and many (imports :mod:`bench.score`, no later room).

* :mod:`.runner` -- one run: budget, checkpoints, snapshots, the record;
* :mod:`.spec` -- :class:`RunSpec` and :class:`RunSummary`, the typed inputs and outputs of a run;
* :mod:`.records` -- the record format on disk (:class:`RunMeta`, parquet rows, run keys);
* :mod:`.sweep` -- many runs (joblib locally, Dask on a cluster), resumable;
* :mod:`.tuning` -- the leaderboard's tuning protocol (Sobol trials on the
  validation split, then seeds); the paper's own per-figure protocol is
  :mod:`bench.experiments.reproduce.paper_protocol`;
* :mod:`.guard` -- the in-process ledger that catches an optimizer tampering with its oracle.
"""
