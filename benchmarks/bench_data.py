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


class ExactImages:
    """The simulator's hot loop at the paper scale: 1,024 noisy 128 px images of the synthetic
    Gaussian mixture (exact slices, CTF, inverse FFT, noise; no disk).  x 49 = the paper
    scale's 50,100 images (the ``<= 60 s`` target of issue 16 is ~1.2 s here)."""

    timeout = 300

    def setup(self):
        import numpy as np
        from scipy.spatial.transform import Rotation

        from problems.catalog.synthetic import synthetic_spec
        from problems.data.phantoms import synthetic_mixture
        from problems.data.simulate import ctf_from_physical, random_ctf
        spec = synthetic_spec("paper")
        rng = np.random.default_rng(0)
        self.n = 1024
        self.mixture = synthetic_mixture(spec.box_size)
        self.rotations = Rotation.random(self.n, random_state=rng).as_matrix()
        self.ctf = ctf_from_physical(random_ctf(spec, rng, self.n), spec.pixel_size)
        self.box = spec.box_size
        self.time_exact_images_paper_1024()          # compiles the numba kernels outside the timing

    def time_exact_images_paper_1024(self):
        import numpy as np

        from problems.data.simulate import exact_images
        for _ in exact_images(self.mixture, self.rotations, np.zeros((self.n, 2)), self.ctf, self.box, 1.0,
                              np.random.default_rng(1)):
            pass


class Reports:
    timeout = 300

    def setup_cache(self):
        from bench.isolation.submit import run_protocol

        from .common import use_cache
        use_cache()
        results = tempfile.mkdtemp(prefix="cryoopt-asv-results-")
        for name in ("sgd", "momentum"):
            run_protocol("synthetic", "tiny", name, results_dir=results, budget="1epoch",
                         tuning_budget="0.5epoch", trials=2, seeds=2, isolated=False, n_jobs=1, submitted=False,
                         scoring_seed=0)     # a timing fixture: the published instance, no secret needed
        return results

    def time_leaderboard_markdown(self, results):
        from bench.score.leaderboard import rank, to_markdown
        to_markdown(rank(results, "synthetic-tiny"), "synthetic-tiny")


class RealisticPaperStack:
    """The realistic paper geometry written to disk: 2,048 noisy 128 px images of the 6ZU5
    pseudo-atom mixture (J = 3,369 Gaussians; exact slices, CTF, shifts, noise) through
    :func:`problems.data.simulate.simulate_stack` into STAR + MRCS.  x 22.5 = the paper scale's
    46,100 images.  Issue 21 measured the whole generation and load on 2 cores (``/usr/bin/time
    -v``): 384 s wall, 470 s CPU, 6.6 GB peak RSS before; 148-195 s wall, 147-157 s CPU, 1.4 GB after
    (a multi-threaded BLAS nested in the simulator's thread pool, pages written through the
    stack's memory map, and the truth diagnostics' (slices x band x J) complex arrays)."""

    timeout = 300

    def setup(self):
        import numpy as np
        from scipy.spatial.transform import Rotation

        from problems.catalog.realistic import realistic_spec
        from problems.data.atomic_models import model_mixture, model_path
        from problems.data.simulate import random_ctf, random_shifts

        from .common import use_cache
        use_cache()
        self.spec = realistic_spec("paper")
        rng = np.random.default_rng(0)
        self.n = 2048
        self.mixture = model_mixture(model_path(self.spec.model), self.spec.box_size, self.spec.pixel_size)
        self.rotations = Rotation.random(self.n, random_state=rng).as_matrix()
        self.shifts = random_shifts(rng, self.n, self.spec.shift_sigma, self.spec.shift_extent)
        self.phys = random_ctf(self.spec, rng, self.n)
        self.tmp = tempfile.mkdtemp(prefix="cryoopt-asv-realistic-")
        self._write(64)                              # compiles the numba kernels outside the timing

    def teardown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _write(self, n):
        from pathlib import Path

        import numpy as np

        from problems.data.simulate import simulate_stack
        out = Path(self.tmp) / f"d{len(os.listdir(self.tmp))}"
        simulate_stack(out, self.mixture, self.rotations[:n], self.shifts[:n],
                       {k: (v[:n] if isinstance(v, np.ndarray) else v) for k, v in self.phys.items()},
                       self.spec, np.random.default_rng(1), progress=False)
        shutil.rmtree(out, ignore_errors=True)

    def time_simulate_stack_realistic_paper_2048(self):
        self._write(self.n)

    def peakmem_simulate_stack_realistic_paper_2048(self):
        self._write(self.n)
