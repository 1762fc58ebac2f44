"""Data generation and report building."""
import os
import shutil
import tempfile


class DataGeneration:
    timeout = 300

    def setup(self):
        self.tmp = tempfile.mkdtemp(prefix="cryoopt-asv-gen-")

    def teardown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def time_generate_tiny(self):
        from problems.catalog.synthetic import generate_synthetic
        from problems.catalog.synthetic import synthetic_spec
        out = os.path.join(self.tmp, f"d{len(os.listdir(self.tmp))}")
        from pathlib import Path
        generate_synthetic(synthetic_spec("tiny"), 0, Path(out), progress=False)


class Reports:
    timeout = 300

    def setup_cache(self):
        from bench.submit import run_protocol

        from .common import use_cache
        use_cache()
        results = tempfile.mkdtemp(prefix="cryoopt-asv-results-")
        for name in ("sgd", "momentum"):
            run_protocol("synthetic", "tiny", name, results_dir=results, budget="1epoch",
                         tuning_budget="0.5epoch", trials=2, seeds=2, isolated=False, n_jobs=1, submitted=False)
        return results

    def time_leaderboard_markdown(self, results):
        from bench.leaderboard import rank, to_markdown
        to_markdown(rank(results, "synthetic-tiny"), "synthetic-tiny")
