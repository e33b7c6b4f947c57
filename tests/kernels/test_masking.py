"""The per-hop masking kernels against numpy references written out here."""
import numpy as np
import pytest

from samstream.kernels.masking import apply_gain, blend_masks, downmix_real_imag, mask_gain


@pytest.fixture
def spectrum():
    rng = np.random.default_rng(3)
    return (rng.standard_normal((2, 513)) + 1j * rng.standard_normal((2, 513))).astype(np.complex64)


@pytest.mark.parametrize("keep_target", [True, False])
def test_mask_gain_follows_the_mode_and_apply_gain_applies_it(spectrum, keep_target):
    mask = np.random.default_rng(4).uniform(0, 1, (1, 513)).astype(np.float32)
    gain = np.empty_like(mask)
    mask_gain(mask, keep_target, gain)
    expected = mask if keep_target else 1.0 - mask
    np.testing.assert_allclose(gain, expected, atol=1e-7)
    out = np.empty_like(spectrum)
    apply_gain(spectrum, gain, out)
    np.testing.assert_allclose(out, spectrum * expected, atol=1e-6)


def test_blend_masks_ramps_from_one_to_the_other():
    rng = np.random.default_rng(5)
    start, end = rng.uniform(0, 1, (2, 1, 513)).astype(np.float32)
    out = np.empty_like(start)
    for share in (0.0, 0.25, 1.0):
        blend_masks(start, end, share, out)
        np.testing.assert_allclose(out, start * (1 - share) + end * share, atol=1e-6)


def test_downmix_is_the_channel_mean_as_real_and_imaginary_rows(spectrum):
    out = np.empty((1, 2, 513), np.float32)
    downmix_real_imag(spectrum, out)
    mean = spectrum.mean(axis=0)
    np.testing.assert_allclose(out[0], np.stack([mean.real, mean.imag]), atol=1e-6)
