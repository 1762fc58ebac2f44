"""Untrusted code: the submission protocol and isolated runs (imports :mod:`bench.score`, :mod:`bench.run`).

* :mod:`.submit` -- submitting an optimizer: describe, tune, score on the secret instance, write the entry;
* :mod:`.describe` -- the class's description, asked of the sandbox and checked field by field;
* :mod:`.server` -- the oracle server process (training images, counter, budget, the run's verdict);
* :mod:`.sandbox` -- the bubblewrap sandbox of the optimizer process; :mod:`.cgroup` -- its per-run cgroup;
* :mod:`.child`, :mod:`.client`, :mod:`.wire` -- what runs inside the sandbox
  (numpy and ``problems.protocol`` only);
* :mod:`.harness` -- the trusted side: starts both, evaluates the densities
  the server forwards at step boundaries and writes the records
  (:mod:`.record`: the typed run record).
"""
