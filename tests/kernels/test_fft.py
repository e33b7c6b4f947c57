import numpy as np
import pytest

from samstream.kernels.fft import irfft, make_real_fft_plan, rfft


@pytest.mark.parametrize("n", [4, 8, 64, 128, 512, 2048])
@pytest.mark.parametrize("dtype, tolerance", [(np.float64, 1e-12), (np.float32, 1e-4)])
def test_rfft_and_irfft_match_numpy(n, dtype, tolerance):
    rng = np.random.default_rng(n)
    plan = make_real_fft_plan(n, dtype)
    signal = rng.standard_normal(n).astype(dtype)
    spectrum = np.zeros(n // 2 + 1, dtype=plan.fft_work.dtype)
    rfft(signal, spectrum, plan)
    reference = np.fft.rfft(signal.astype(np.float64))
    assert np.abs(spectrum - reference).max() <= tolerance * np.sqrt(n)

    random_spectrum = (rng.standard_normal(n // 2 + 1) + 1j * rng.standard_normal(n // 2 + 1))
    random_spectrum = random_spectrum.astype(plan.fft_work.dtype)
    inverse = np.zeros(n, dtype=dtype)
    irfft(random_spectrum, inverse, plan)
    assert np.abs(inverse - np.fft.irfft(random_spectrum.astype(np.complex128), n)).max() <= tolerance


def test_plan_rejects_lengths_that_are_not_powers_of_two():
    with pytest.raises(ValueError, match="power of two"):
        make_real_fft_plan(384)
