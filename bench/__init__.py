"""The harness: composes ``problems`` and ``optimizers``, writes ``results/`` and ``reports/``.

Rooms, lowest first; a room imports only rooms before it in this list
(``tests/test_layering.py`` enforces the order):

* :mod:`bench.score` -- verdicts and the measurements they rest on: alignment
  and FSC, the reference optimum and full-objective passes, the curvature
  scale, paired statistics, leaderboard ranking;
* :mod:`bench.run` -- running optimizers, one run and many: the runner, run
  specs and records, sweeps, the leaderboard's tuning protocol, the guard;
* :mod:`bench.isolation` -- untrusted code: the submission protocol, the
  sandbox, the oracle server and the wire format;
* :mod:`bench.report` -- presentation: read records, write figures, tables, HTML;
* :mod:`bench.experiments` -- measurements and peers: oracle benchmarks,
  conditioning, the RELION legs and the paper reproductions;
* :mod:`bench.commands` and :mod:`bench.cli` -- the ``cryoopt`` command line.
"""
