"""Pieces of the model with known closed-form answers."""
import numpy as np
import pytest

from problems.model.ctf import CTFParams, evaluate_ctf
from problems.data.units import ctf_from_microscope
from problems.model.grids import disc_frequencies, make_band
from problems.model.poses import euler_to_matrix, make_quadrature
from problems.data.units import electron_wavelength_angstrom


def test_band_counts_and_multiplicity():
    band = make_band(6.4)
    full = sum(1 for a in range(-6, 7) for b in range(-6, 7) if a * a + b * b <= 6.4**2)
    assert band.size == (full + 1) // 2 == 65
    assert band.multiplicity.sum() == full
    assert tuple(band.k[0]) == (0, 0)


def test_quadrature_rule_paper_settings():
    quad = make_quadrature(0.10 * 128 / 2)
    assert (quad.n_dir, quad.n_psi, quad.size) == (590, 40, 23600)
    quad16 = make_quadrature(0.16 * 128 / 2)
    assert quad16.size == 1454 * 64                      # "approximately 95,000" (paper)
    shifted = make_quadrature(3.0, shift_extent=2.0, shift_sigma=1.0)
    w = np.exp(shifted.log_weights()).sum() * shifted.n_psi / 4 / shifted.n_psi * 4
    assert w == pytest.approx(1.0)
    assert shifted.n_shifts == 13 and shifted.shift_weights.sum() == pytest.approx(1.0)
    assert shifted.shift_weights.argmax() == np.flatnonzero((shifted.shifts == 0).all(1))[0]


def test_pose_order_angles_and_weights():
    quad = make_quadrature(3.0, shift_extent=1.0)
    eul = quad.euler_angles()
    assert eul.shape == (quad.size, 3)
    # pose j of quarter turn q has in-plane angle psi_base + q * 90 degrees
    n_base = quad.n_base
    np.testing.assert_allclose(eul[n_base:2 * n_base, 2] - eul[:n_base, 2], np.pi / 2)
    assert np.exp(quad.log_weights()).sum() == pytest.approx(1.0)


def test_euler_matrix_is_rotation_with_relion_beam_direction():
    rng = np.random.default_rng(0)
    rot, tilt, psi = rng.uniform(-np.pi, np.pi, (3, 50))
    a = euler_to_matrix(rot, tilt, psi)
    np.testing.assert_allclose(a @ np.transpose(a, (0, 2, 1)), np.broadcast_to(np.eye(3), a.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(a), 1.0)
    np.testing.assert_allclose(a[:, 2], np.stack([np.sin(tilt) * np.cos(rot), np.sin(tilt) * np.sin(rot),
                                                  np.cos(tilt)], 1), atol=1e-12)


def test_wavelength_300kv():
    assert electron_wavelength_angstrom(300) == pytest.approx(0.019687, rel=1e-4)


def test_ctf_first_zero_and_astigmatism():
    apix, df = 1.5, 20000.0
    p = ctf_from_microscope(pixel_size=apix, defocus_u_angstrom=[df], defocus_v_angstrom=[df],
                                astigmatism_angle_deg=[0.0], voltage_kv=300, cs_mm=0.0,
                                amplitude_contrast=0.1, bfactor_angstrom2=0.0)
    lam = electron_wavelength_angstrom(300)
    k_zero = np.sqrt((np.pi - np.arcsin(0.1)) / (np.pi * lam * df)) * apix     # cycles/pixel
    vals = evaluate_ctf(p, np.array([[k_zero, 0.0], [0.0, 0.0], [0, k_zero]]))
    np.testing.assert_allclose(vals[0], [0.0, 0.1, 0.0], atol=1e-9)
    astig = ctf_from_microscope(pixel_size=apix, defocus_u_angstrom=[df], defocus_v_angstrom=[df / 2],
                                    astigmatism_angle_deg=[90.0], voltage_kv=300, cs_mm=2.7,
                                    amplitude_contrast=0.1, bfactor_angstrom2=100.0)
    v = evaluate_ctf(astig, np.array([[0.05, 0.0], [0.0, 0.05], [-0.05, 0.0]]))
    assert v[0, 0] == pytest.approx(v[0, 2])       # even in k
    assert v[0, 0] != pytest.approx(v[0, 1])       # astigmatic
    b = ctf_from_microscope(pixel_size=apix, defocus_u_angstrom=[df], defocus_v_angstrom=[df],
                                astigmatism_angle_deg=[0.0], voltage_kv=300, cs_mm=2.7,
                                amplitude_contrast=0.1, bfactor_angstrom2=[0.0])
    ratio = evaluate_ctf(astig.__class__(**{**b.__dict__, "bfactor": np.array([100.0 / apix**2])}),
                         np.array([[0.1, 0.0]])) / evaluate_ctf(b, np.array([[0.1, 0.0]]))
    assert ratio[0, 0] == pytest.approx(np.exp(-100.0 / apix**2 * 0.01 / 4))


def test_quadrature_weights_positive_and_nll_finite_for_every_r_max():
    """scipy's Lebedev orders 13, 25 and 27 have negative weights (log w = NaN): every r_max
    must pick a rule with positive weights, and the NLL must then be finite.  r_max in
    (1.99, 2.43] used to pick order 13 and (3.93, 4.6] orders 25/27."""
    from scipy.integrate import lebedev_rule

    from problems.model.marginal import MarginalLikelihood
    from problems.model.poses import LEBEDEV_ORDERS

    assert all(lebedev_rule(order)[1].min() > 0 for order in LEBEDEV_ORDERS)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 16, 16)).astype(np.float32)
    for r_max in np.arange(0.75, 7.01, 0.25):
        quad = make_quadrature(r_max)
        assert quad.direction_weights.min() > 0 and np.isfinite(quad.log_weights()).all()
        if 1.9 < r_max < 4.8:                    # the ranges that hit the bad rules, and around them
            band = make_band(r_max)
            lik = MarginalLikelihood(16, band, quad, 1.0, dtype=np.float64)
            images = rng.standard_normal((3, band.size)) + 1j * rng.standard_normal((3, band.size))
            nll = lik.nll(x.astype(np.float64), lik.prepare(images, np.ones((3, band.size))))
            assert np.isfinite(nll).all(), r_max


def test_disc_frequencies_is_the_half_plane_band_and_its_mirror():
    k = disc_frequencies(16, 6.4)
    band = make_band(6.4)
    assert k[0].tolist() == [0, 0]
    assert len(k) == 2 * band.size - 1 == len({tuple(v) for v in k})
    assert {tuple(v) for v in k} == {tuple(v) for v in band.k} | {tuple(-v) for v in band.k}
    r2 = (k**2).sum(1)
    assert (np.diff(r2) >= 0).all() and r2.max() <= 6.4**2
    with pytest.raises(ValueError, match="r_max < n/2"):
        disc_frequencies(16, 8)
