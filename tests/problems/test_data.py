"""Generated data written as RELION STAR + MRC and read back through the loader."""
import mrcfile
import numpy as np
import starfile

from problems.data.cache import dataset_dir
from problems.data.io import read_particle_star
from problems.catalog.synthetic import synthetic_spec
from problems.data.simulate import exact_images, load_mixture


def test_star_and_stack_round_trip(tiny):
    folder = dataset_dir(synthetic_spec("tiny"), 0)
    star = starfile.read(folder / "particles.star", always_dict=True)
    assert set(star) == {"optics", "particles"}
    n = 620                                      # 400 train + 20 test + 200 scoring images
    assert len(star["particles"]) == n == synthetic_spec("tiny").n_images
    assert star["optics"]["rlnImagePixelSize"][0] == 16.0
    with mrcfile.open(folder / "particles.mrcs") as mrc:
        assert mrc.data.shape == (n, 24, 24) and mrc.is_image_stack()
    stack = read_particle_star(folder / "particles.star")
    assert stack.box_size == 24 and len(stack) == n
    assert stack.rotations.shape == (n, 3, 3)


def test_star_poses_reproduce_the_images(tiny):
    """Images regenerated at the STAR file's poses correlate with the stored noisy images,
    and images at the wrong poses do not: angles and their convention survive the round trip."""
    folder = dataset_dir(synthetic_spec("tiny"), 0)
    stack = read_particle_star(folder / "particles.star")
    noisy = next(stack.iter_chunks(40))[1].reshape(40, -1)
    mixture = load_mixture(folder / "ground_truth_mixture.npz")
    ctf = stack.ctf.subset(slice(0, 40))
    clean = lambda rot: next(exact_images(mixture, rot, stack.shifts[:40], ctf, 24, 1.0, None))  # noqa: E731
    right = clean(stack.rotations[:40]).reshape(40, -1)
    wrong = clean(stack.rotations[40:80]).reshape(40, -1)
    corr = lambda a, b: np.mean([np.corrcoef(u, v)[0, 1] for u, v in zip(a, b)])  # noqa: E731
    assert corr(noisy, right) > 0.2
    assert corr(noisy, right) > corr(noisy, wrong) + 0.1


def test_noise_level_matches_sigma(tiny):
    """Outside the particle's band-limited signal the images are white noise of sigma = 1."""
    folder = dataset_dir(synthetic_spec("tiny"), 0)
    noisy = next(read_particle_star(folder / "particles.star").iter_chunks(400))[1]
    spec = np.abs(np.fft.fft2(noisy)) ** 2 / 24**2
    k = np.fft.fftfreq(24) * 24
    high = np.hypot(*np.meshgrid(k, k)) > 11
    assert abs(spec[:, high].mean() - 1.0) < 0.05


def test_concurrent_generation_of_one_dataset(tmp_path):
    """Two processes generating the same dataset at once both end with the complete folder."""
    import multiprocessing as mp

    from problems.data.cache import ensure_dataset

    target = tmp_path / "shared"
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_generate_into, args=(target, i)) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert [p.exitcode for p in procs] == [0, 0]
    assert (target / "manifest.json").exists() and (target / "data.bin").stat().st_size == 1 << 16
    assert not list(tmp_path.glob("shared.partial*"))
    assert ensure_dataset(target, lambda tmp: 1 / 0) == target          # complete: never regenerated


def _generate_into(target, i):
    import time

    from problems.data.cache import ensure_dataset

    def generate(tmp):
        (tmp / "data.bin").write_bytes(bytes(1 << 16))
        time.sleep(0.3)                    # both processes are inside generate at the same time
        return {"writer": i}

    ensure_dataset(target, generate)


def test_interrupted_generation_leaves_nothing(tmp_path):
    """A generation that is interrupted (Ctrl-C) or fails removes its private copy: neither a
    half-written dataset nor a stray .partial folder remains, and the next call regenerates."""
    import pytest

    from problems.data.cache import ensure_dataset

    target = tmp_path / "data"

    def interrupted(tmp):
        (tmp / "particles.mrcs").write_bytes(bytes(1 << 12))
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ensure_dataset(target, interrupted)
    assert not target.exists() and not list(tmp_path.iterdir())
    assert ensure_dataset(target, lambda tmp: {"ok": 1}) == target and (target / "manifest.json").exists()
