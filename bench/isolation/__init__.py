"""Isolated runs of submitted optimizers: oracle server, sandboxed optimizer, trusted evaluator.

* :mod:`.server` -- the oracle server process (training images, counter, budget);
* :mod:`.sandbox` -- the bubblewrap sandbox of the optimizer process;
* :mod:`.child`, :mod:`.client`, :mod:`.wire` -- what runs inside the sandbox
  (numpy and ``problems.protocol`` only);
* :mod:`.harness` -- the trusted side: starts both, evaluates the densities
  the server forwards at step boundaries and writes the records.
"""
