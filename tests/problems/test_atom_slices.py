"""Exact atom slices by NUFFT (problems/data/atom_slices.py) against the direct sums of gaussians.py."""
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

pytest.importorskip("finufft")

from problems.data.atom_slices import AtomSlicer, BinnedAtoms, atom_model  # noqa: E402
from problems.model.fourier import images_from_spectrum  # noqa: E402
from problems.model.grids import disc_frequencies  # noqa: E402


def _random_atoms(rng, n_atoms=300, extent=9.0):
    return BinnedAtoms(rng.uniform(-extent, extent, (n_atoms, 3)), rng.uniform(0.5, 2.0, n_atoms),
                       rng.integers(0, 3, n_atoms), np.array([0.4, 0.7, 1.2]))


def test_nufft_slices_equal_the_direct_sum():
    """Relative error <= 1e-5 of the largest coefficient (measured 7.7e-7 at eps 1e-5, float32)."""
    rng = np.random.default_rng(1)
    atoms, n = _random_atoms(rng), 32
    rot = Rotation.random(4, random_state=2).as_matrix()
    shifts = rng.normal(0, 2, (4, 2))
    k = disc_frequencies(n, n / 2 - 1)
    exact = atoms.mixture().slices(rot, k.astype(float), n, shifts)
    got = AtomSlicer(atoms, n, threads=2).slices(rot, k, shifts)
    assert got.dtype == np.complex64 and got.shape == (4, k.shape[0])
    assert np.abs(got - exact).max() <= 1e-5 * np.abs(exact).max()
    # the shift enters with its sign: the unshifted slices differ by far more than the tolerance
    unshifted = AtomSlicer(atoms, n).slices(rot, k)
    assert np.abs(unshifted - exact).max() > 0.1 * np.abs(exact).max()


def test_one_off_centre_gaussian_is_its_projection_in_real_space():
    """Sign and normalisation: the image of one Gaussian of mass w at c, shift t, is the 2D Gaussian
    ``w / (2 pi s^2) exp(-|p - (c_xy + t)|^2 / (2 s^2))`` on the pixels (centre pixel N/2)."""
    n, s, w = 32, 2.0, 3.0
    centre, shift = np.array([[5.0, -3.0, 2.0]]), np.array([[1.0, 2.0]])
    atoms = BinnedAtoms(centre, np.array([w]), np.array([0]), np.array([s]))
    spec = AtomSlicer(atoms, n).spectra(np.eye(3)[None], shift)
    image = images_from_spectrum(spec.astype(np.complex128))[0]            # [y + N/2, x + N/2]
    p = np.arange(n) - n // 2
    py, px = np.meshgrid(p, p, indexing="ij")
    expected = w / (2 * np.pi * s**2) * np.exp(-((px - 6.0) ** 2 + (py + 1.0) ** 2) / (2 * s**2))
    assert np.abs(image - expected).max() <= 1e-5 * expected.max()
    # a quarter turn about z moves it: (x, y) -> (-y, x) with A = Rz(90 deg) applied to the point
    rz = Rotation.from_euler("z", 90, degrees=True).as_matrix()
    turned = images_from_spectrum(AtomSlicer(atoms, n).spectra(rz[None]).astype(np.complex128))[0]
    peak = np.unravel_index(np.argmax(turned), turned.shape)
    assert (peak[1] - n // 2, peak[0] - n // 2) == (3, 5)


def test_volume_equals_the_mixture_transform():
    rng = np.random.default_rng(3)
    atoms, n = _random_atoms(rng, 200, 6.0), 16
    v = AtomSlicer(atoms, n).volume()
    q = np.arange(n) - n // 2
    qz, qy, qx = np.meshgrid(q, q, q, indexing="ij")
    exact = atoms.mixture().fourier(np.stack([qx, qy, qz], -1).reshape(-1, 3).astype(float), n)
    assert v.shape == (n, n, n)
    assert np.abs(v.reshape(-1) - exact).max() <= 1e-5 * np.abs(exact).max()


def test_atom_model_reads_b_factors_into_bins(tmp_path):
    """Four atoms, four bins: each bin's sigma is sqrt((B + b_e) / (8 pi^2)) / pixel size, centred on the
    f(0)-weighted centroid."""
    gemmi = pytest.importorskip("gemmi")
    from problems.data.atom_slices import form_bfactors
    lines, atoms_in = [], [("C", 0.0, 0.0, 0.0, 20.0), ("N", 10.0, 0.0, 0.0, 40.0),
                           ("O", 0.0, 10.0, 0.0, 60.0), ("S", 0.0, 0.0, 10.0, 80.0)]
    for i, (el, x, y, z, b) in enumerate(atoms_in, 1):
        lines.append(f"ATOM  {i:5d}  {el:<3s} ALA A   1    {x:8.3f}{y:8.3f}{z:8.3f}  1.00{b:6.2f}          {el:>2s}")
    path = tmp_path / "four.pdb"
    path.write_text("\n".join(lines) + "\nEND\n")
    apix = 2.0
    atoms, info = atom_model(path, 32, apix, n_bins=4)
    fits = form_bfactors([a[0] for a in atoms_in], 1 / (2 * apix))
    for bin_, (el, *_rest, b) in enumerate(atoms_in):
        assert atoms.sigmas[bin_] == pytest.approx(np.sqrt((b + fits[el][1]) / (8 * np.pi**2)) / apix)
    assert np.allclose((atoms.weights[:, None] * atoms.centres).sum(0), 0, atol=1e-9)
    assert fits["C"][2] < 0.01 and 10 < fits["C"][1] < 25 and info["atoms"] == 4
    assert gemmi is not None
