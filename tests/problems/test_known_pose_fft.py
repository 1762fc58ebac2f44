"""The FFT route of the oversampled cube (known-pose likelihood near Nyquist) is the same map as the dense one."""
import numpy as np
import pytest

from problems.model.fourier import PartialDFT
from problems.model.known_pose import CubeFFT, cube_dft


@pytest.mark.parametrize("n, m_max", [(16, 13), (15, 9), (12, 11)])
def test_cube_fft_equals_partial_dft(n, m_max):
    rng = np.random.default_rng(n)
    fft, dense = CubeFFT(n, m_max, np.float64), PartialDFT(n, m_max, np.float64)
    x = rng.standard_normal((n,) * 3)
    assert np.allclose(fft.forward(x), dense.forward(x), rtol=0, atol=1e-12 * np.abs(dense.forward(x)).max())
    g = rng.standard_normal((fft.k,) * 3) + 1j * rng.standard_normal((fft.k,) * 3)
    assert np.allclose(fft.adjoint(g), dense.adjoint(g), rtol=0, atol=1e-12 * np.abs(dense.adjoint(g)).max())
    # adjoint identity <F x, g> = <x, F^H g> (real part), independent of the dense reference
    assert np.real(np.vdot(g, fft.forward(x))) == pytest.approx(np.vdot(fft.adjoint(g), x), rel=1e-10)
    assert np.array_equal(fft.f, dense.f)


def test_cube_dft_chooses_by_cube_size():
    assert isinstance(cube_dft(128, 127), CubeFFT) and isinstance(cube_dft(128, 30), PartialDFT)
    with pytest.raises(ValueError):
        CubeFFT(16, 16)
