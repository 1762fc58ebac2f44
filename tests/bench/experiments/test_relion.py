"""Agreement with RELION, the field's reference implementation (Debian's ``relion`` 3.1).

``relion_project`` projects a density at the angles, origins and CTFs of a
STAR file we write; our forward model (:func:`problems.data.simulate.clean_images`:
trilinear central slice of the 2x oversampled spectrum, CTF, shift phase
ramp) must agree with it within the band.  Measured here: correlation of the
band coefficients (|k| <= 0.8 Nyquist) 0.9998 per image with astigmatic CTFs
and sub-pixel shifts; RELION's projections are ~3.4% brighter (its
interpolation correction at ``--pad 2``), which correlation ignores.  A
deliberately wrong convention (shift sign flipped) drops it well below 0.99.
"""
import re
import shutil
import subprocess

import mrcfile
import numpy as np
import pytest

from problems.model.fourier import image_band_coefficients, oversampled_spectrum
from problems.model.grids import make_band
from problems.data.io import read_particle_star, write_mrc, write_particles
from problems.data.simulate import clean_images

pytestmark = pytest.mark.skipif(shutil.which("relion_project") is None,
                                reason="RELION not installed (apt-get install relion)")


def _blobs(n: int, rng: np.random.Generator) -> np.ndarray:
    """An asymmetric smooth density: 12 Gaussian blobs."""
    z, y, x = np.meshgrid(*(np.arange(n) - n // 2,) * 3, indexing="ij")
    vol = np.zeros((n, n, n))
    for _ in range(12):
        c, w, a = rng.uniform(-12, 12, 3), rng.uniform(2, 4), rng.uniform(0.5, 1.5)
        vol += a * np.exp(-((x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2) / (2 * w * w))
    return vol.astype(np.float32)


def _band_correlation(a: np.ndarray, b: np.ndarray, r_max: float) -> np.ndarray:
    """Per-image normalised correlation of the band coefficients (full disc via multiplicity)."""
    band = make_band(r_max)
    fa, fb = image_band_coefficients(a, band.k), image_band_coefficients(b, band.k)
    w = band.multiplicity
    num = np.real(np.sum(w * fa * fb.conj(), axis=1))
    return num / np.sqrt(np.sum(w * np.abs(fa) ** 2, axis=1) * np.sum(w * np.abs(fb) ** 2, axis=1))


def test_relion_project_agrees_with_forward_model(tmp_path):
    rng = np.random.default_rng(2015)
    n, apix, m = 64, 3.0, 8
    vol = _blobs(n, rng)
    write_mrc(tmp_path / "map.mrc", vol, apix)
    euler = np.column_stack([rng.uniform(-180, 180, m), rng.uniform(0, 180, m), rng.uniform(-180, 180, m)])
    shifts = rng.uniform(-3, 3, (m, 2))                                  # pixels, sub-pixel
    du = rng.uniform(8000, 15000, m)
    phys = {"defocus_u": du, "defocus_v": du - rng.uniform(0, 1500, m),
            "defocus_angle": rng.uniform(0, 180, m), "bfactor": rng.uniform(0, 100, m),
            "voltage_kv": 300.0, "cs_mm": 2.7, "amplitude_contrast": 0.1}
    write_particles(tmp_path, iter([np.zeros((m, n, n), np.float32)]), m, n, apix, phys, euler, shifts,
                    stack_name="dummy.mrcs", star_name="in.star")
    proc = subprocess.run(["relion_project", "--i", str(tmp_path / "map.mrc"), "--o",
                           str(tmp_path / "proj"), "--ang", str(tmp_path / "in.star"), "--ctf"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    relion = mrcfile.read(tmp_path / "proj.mrcs").astype(np.float64)
    stack = read_particle_star(tmp_path / "in.star")                     # our reading of our file
    spectrum = oversampled_spectrum(vol)
    ours = next(clean_images(spectrum, stack.rotations, stack.shifts, stack.ctf)).astype(np.float64)
    corr = _band_correlation(relion, ours, 0.8 * n / 2)
    print(f"RELION agreement: band correlation min {corr.min():.5f}, mean {corr.mean():.5f}")
    assert corr.min() > 0.99
    gain = np.sqrt((relion**2).sum() / (ours**2).sum())
    assert 0.97 < gain < 1.06                       # same normalisation (RELION ~3% brighter)
    wrong = next(clean_images(spectrum, stack.rotations, -stack.shifts, stack.ctf)).astype(np.float64)
    assert _band_correlation(relion, wrong, 0.8 * n / 2).mean() < 0.9


def test_relion_reads_our_stack(tmp_path):
    """relion_image_handler --stats reports the statistics of the images we wrote."""
    rng = np.random.default_rng(7)
    m, n = 5, 16
    images = (rng.standard_normal((m, n, n)) * 3 + 10).astype(np.float32)
    phys = {"defocus_u": np.full(m, 1e4), "defocus_v": np.full(m, 1e4), "defocus_angle": np.zeros(m),
            "bfactor": np.zeros(m), "voltage_kv": 300.0, "cs_mm": 2.7, "amplitude_contrast": 0.1}
    write_particles(tmp_path, iter([images]), m, n, 2.5, phys, np.zeros((m, 3)), np.zeros((m, 2)))
    proc = subprocess.run(["relion_image_handler", "--i", str(tmp_path / "particles.mrcs"), "--stats"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = re.findall(r"(\d+)@\S+ : \(x,y,z,n\)= (\d+) x (\d+) x 1 x 1 ; avg= (\S+) stddev= (\S+) "
                      r"minval= (\S+) maxval= (\S+); angpix = (\S+)", proc.stdout)
    assert len(rows) == m
    for i, (idx, nx, ny, avg, std, lo, hi, angpix) in enumerate(rows):
        img = images[int(idx) - 1].astype(np.float64)
        assert (int(nx), int(ny)) == (n, n) and float(angpix) == pytest.approx(2.5)
        assert float(avg) == pytest.approx(img.mean(), rel=1e-4)
        assert float(std) == pytest.approx(img.std(), rel=1e-3)
        assert (float(lo), float(hi)) == pytest.approx((img.min(), img.max()), rel=1e-4)
