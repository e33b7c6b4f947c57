import numpy as np
import pytest

from samstream.kernels.bands import (
    DB_FLOOR,
    band_energies,
    interpolate_band_gains,
    make_band_state,
)

WARP = {
    "erb": lambda f: 21.4 * np.log10(1 + 0.00437 * f),
    "mel": lambda f: 2595 * np.log10(1 + f / 700),
}

CONFIGS = [
    (48000, 512, 32, "erb"),
    (48000, 512, 32, "mel"),
    (16000, 512, 64, "erb"),
    (44100, 1024, 40, "mel"),
    (48000, 2048, 48, "erb"),
    (16000, 16, 9, "erb"),  # one band per bin
    (48000, 256, 2, "mel"),
]


def dense_weights(state, scale):
    """Reference (n_bands, n_bins) matrix: hat functions on the warped axis."""
    n_bins = state.n_fft // 2 + 1
    bin_freqs = np.arange(n_bins) * state.sample_rate / state.n_fft
    warp = WARP[scale]
    eye = np.eye(len(state.centre_hz))
    return np.stack([np.interp(warp(bin_freqs), warp(state.centre_hz), row) for row in eye])


def random_spectrum(rng, channels, n_bins, dtype):
    spec = rng.standard_normal((channels, n_bins)) + 1j * rng.standard_normal((channels, n_bins))
    # Make the levels span a wide range, as real spectra do.
    spec *= 10 ** rng.uniform(-3, 1, (channels, n_bins))
    return spec.astype(dtype)


@pytest.mark.parametrize("sample_rate,n_fft,n_bands,scale", CONFIGS)
def test_layout_covers_every_bin_with_monotonic_edges(sample_rate, n_fft, n_bands, scale):
    state = make_band_state(sample_rate, n_fft, n_bands, scale)
    n_bins = n_fft // 2 + 1
    assert state.centre_bin[0] == 0 and state.centre_bin[-1] == n_bins - 1
    assert np.all(np.diff(state.centre_bin) >= 1)
    assert np.all(np.diff(state.centre_hz) > 0)
    w = dense_weights(state, scale)
    np.testing.assert_allclose(w.sum(axis=0), 1.0, rtol=0, atol=1e-12)  # every bin, fully
    assert np.all(w.max(axis=1) == 1.0)  # every band owns its centre bin
    # Each bin belongs to at most two neighbouring bands.
    assert np.all((w > 0).sum(axis=0) <= 2)


@pytest.mark.parametrize("sample_rate,n_fft,n_bands,scale", CONFIGS)
@pytest.mark.parametrize("dtype,tol", [(np.complex128, 1e-6), (np.complex64, 1e-4)])
def test_band_energies_match_dense_reference(sample_rate, n_fft, n_bands, scale, dtype, tol):
    rng = np.random.default_rng(n_fft + n_bands)
    state = make_band_state(sample_rate, n_fft, n_bands, scale)
    state_db = make_band_state(sample_rate, n_fft, n_bands, scale, db=True)
    spec = random_spectrum(rng, 2, n_fft // 2 + 1, dtype)
    real = np.float64 if dtype == np.complex128 else np.float32

    w = dense_weights(state, scale)
    power = np.abs(spec.astype(np.complex128)) ** 2
    expected = power @ w.T / w.sum(axis=1)

    out = np.zeros((2, n_bands), dtype=real)
    band_energies(spec, out, state)
    np.testing.assert_allclose(out, expected, rtol=tol, atol=0)

    out_db = np.zeros((2, n_bands), dtype=real)
    band_energies(spec, out_db, state_db)
    np.testing.assert_allclose(out_db, 10 * np.log10(expected + DB_FLOOR), rtol=0, atol=tol * 10)


@pytest.mark.parametrize("sample_rate,n_fft,n_bands,scale", CONFIGS)
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-6), (np.float32, 1e-4)])
def test_gain_interpolation_matches_dense_transpose(sample_rate, n_fft, n_bands, scale, dtype, tol):
    rng = np.random.default_rng(n_bands)
    state = make_band_state(sample_rate, n_fft, n_bands, scale)
    gains = rng.uniform(0, 1, (3, n_bands)).astype(dtype)
    out = np.zeros((3, n_fft // 2 + 1), dtype=dtype)
    interpolate_band_gains(gains, out, state)
    expected = gains.astype(np.float64) @ dense_weights(state, scale)
    np.testing.assert_allclose(out, expected, rtol=0, atol=tol)
    # Centre bins carry their band's gain unchanged.
    np.testing.assert_array_equal(out[:, state.centre_bin], gains)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("scale", ["erb", "mel"])
def test_constant_gain_is_exact_on_every_bin(dtype, scale):
    state = make_band_state(48000, 512, 32, scale)
    for value in (0.0, 1.0, 0.3, 1e-7, 2.5):
        gains = np.full((2, 32), value, dtype=dtype)
        out = np.full((2, 257), np.nan, dtype=dtype)
        interpolate_band_gains(gains, out, state)
        assert np.all(out == dtype(value))


def test_white_spectrum_reads_flat_in_every_band():
    state = make_band_state(48000, 512, 32, "erb")
    spec = np.ones((1, 257), dtype=np.complex128) * (0.6 + 0.8j)  # |X|^2 == 1
    out = np.zeros((1, 32))
    band_energies(spec, out, state)
    np.testing.assert_allclose(out, 1.0, rtol=1e-12)


def test_db_variant_floors_silence():
    state = make_band_state(48000, 512, 32, db=True)
    out = np.zeros((1, 32), dtype=np.float32)
    band_energies(np.zeros((1, 257), dtype=np.complex64), out, state)
    np.testing.assert_allclose(out, 10 * np.log10(DB_FLOOR), rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sample_rate": 0, "n_fft": 512, "n_bands": 32},
        {"sample_rate": 48000.0, "n_fft": 512, "n_bands": 32},
        {"sample_rate": 48000, "n_fft": 511, "n_bands": 32},
        {"sample_rate": 48000, "n_fft": 2, "n_bands": 2},
        {"sample_rate": 48000, "n_fft": 512, "n_bands": 1},
        {"sample_rate": 48000, "n_fft": 512, "n_bands": 258},
        {"sample_rate": 48000, "n_fft": 512, "n_bands": 32, "scale": "bark"},
        {"sample_rate": 48000, "n_fft": 512, "n_bands": 32, "db": "yes"},
    ],
)
def test_bad_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        make_band_state(**kwargs)


def test_kernels_reject_wrong_shapes():
    state = make_band_state(48000, 512, 32)
    with pytest.raises(ValueError):
        band_energies(np.zeros((1, 256), np.complex64), np.zeros((1, 32), np.float32), state)
    with pytest.raises(ValueError):
        band_energies(np.zeros((1, 257), np.complex64), np.zeros((2, 32), np.float32), state)
    with pytest.raises(ValueError):
        interpolate_band_gains(np.zeros((1, 31)), np.zeros((1, 257)), state)
    with pytest.raises(ValueError):
        interpolate_band_gains(np.zeros((1, 32)), np.zeros((1, 256)), state)
