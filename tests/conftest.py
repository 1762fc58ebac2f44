import os

import numpy as np
import pytest

# The attack plug-ins are submissions, not test modules: they run only inside the sandbox
# (tests/bench/isolation/). Importing one in the test process (e.g. for --doctest-modules)
# would run its attack here, outside the sandbox.
collect_ignore_glob = ["attacks/*.py"]


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Generated data goes to a per-session temporary cache unless CRYOOPT_CACHE is set."""
    if "CRYOOPT_CACHE" not in os.environ:
        os.environ["CRYOOPT_CACHE"] = str(tmp_path_factory.mktemp("cryoopt-cache"))
    # The test suite's own scoring key (leaderboard tests); the real one is never in the repository.
    os.environ.setdefault("CRYOOPT_SECRET_KEY", "5f0c9e2a71b34d86a1e07c3b9d2f4e58")
    yield


@pytest.fixture(scope="session")
def tiny(_isolated_cache):
    from problems import load_problem
    return load_problem("synthetic", scale="tiny", seed=0, progress=False)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
