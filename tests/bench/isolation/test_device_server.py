"""A submission with --device: the oracle server evaluates on the device, the sandboxed optimizer sees numpy."""
import pytest

from bench.isolation.sandbox import sandbox_status

WHY = sandbox_status()
needs_sandbox = pytest.mark.skipif(WHY is not None, reason=f"bubblewrap sandbox unavailable: {WHY}")


@needs_sandbox
def test_isolated_run_on_the_array_module_device_matches_the_cpu_run(tiny, tmp_path, monkeypatch):
    """$CRYOOPT_DEVICE (what --device sets) goes to the server in the run spec: the isolated run on
    device numpy completes, is the in-process CPU run up to float32 rounding, and the sandboxed
    optimizer got numpy arrays (its assertion would end the run as an error)."""
    from bench.isolation.harness import run_isolated
    from bench.run.runner import run
    file = tmp_path / "numpy_only.py"
    file.write_text("from dataclasses import dataclass\n\nimport numpy as np\nfrom optimizers import SGD\n\n\n"
                    "@dataclass(frozen=True)\nclass Attack(SGD):\n    name = 'numpy-only'\n\n"
                    "    def step(self, x, state, oracle, rng):\n"
                    "        f, g = oracle.value_and_grad(x, oracle.next_batch(self.batch_size))\n"
                    "        assert type(g) is np.ndarray and g.dtype == np.float32\n"
                    "        return super().step(x, state, oracle, rng)\n")
    ref = run(tiny, f"{file}:Attack", budget=200, results_dir=tmp_path / "ref", progress=False, compare_truth=False)
    monkeypatch.setenv("CRYOOPT_DEVICE", "numpy")
    spec = {"problem": "synthetic", "scale": "tiny", "data_seed": 0, "optimizer": f"{file}:Attack", "hyper": {},
            "seed": 0, "budget": 200, "record_name": "sub-device", "compare_truth": False}
    res = run_isolated(spec, {"name": "attack", "defaults": {}, "search_space": {}},
                       results_dir=tmp_path / "results", timeout=120)
    assert res["status"] == ref.status == "finished", res
    assert res["final_test_nll"] == pytest.approx(ref.final_test_nll, rel=1e-4)
