"""Untrusted code: the submission protocol and isolated runs (imports :mod:`bench.score`, :mod:`bench.run`).

* :mod:`.submit` -- submitting an optimizer: describe, tune, score on the secret instance, write the entry;
* :mod:`.server` -- the oracle server process (training images, counter, budget);
* :mod:`.sandbox` -- the bubblewrap sandbox of the optimizer process;
* :mod:`.child`, :mod:`.client`, :mod:`.wire` -- what runs inside the sandbox
  (numpy and ``problems.protocol`` only);
* :mod:`.harness` -- the trusted side: starts both, evaluates the densities
  the server forwards at step boundaries and writes the records.
"""
