import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.signal import firwin, lfilter, resample_poly

from samstream.kernels.resample import (
    make_resampler_state,
    max_output_for,
    output_count,
    resample,
    reset_resampler,
)

FILE_RATES = (16000, 44100, 48000)
PAIRS = [(a, b) for a in FILE_RATES for b in FILE_RATES if a != b]
# The rates live rigs and files run at, to and from the model's 48 kHz.
LIVE_PAIRS = [pair for rate in (22050, 32000, 88200, 96000, 192000) for pair in ((rate, 48000), (48000, rate))]


def run_blocks(state, x, block_sizes):
    """Feed x through the resampler in the given block sizes; concatenate outputs."""
    buf = np.zeros((x.shape[0], max_output_for(max(block_sizes), state)), dtype=x.dtype)
    pieces, start = [], 0
    for size in block_sizes:
        block = x[:, start:start + size]
        expected = output_count(block.shape[1], state)
        n = resample(block, buf, state)
        assert n == expected <= buf.shape[1]
        pieces.append(buf[:, :n].copy())
        start += size
    assert start == x.shape[1]
    return np.concatenate(pieces, axis=1)


def one_call(in_rate, out_rate, x):
    state = make_resampler_state(in_rate, out_rate, x.shape[0])
    return run_blocks(state, x, [x.shape[1]]), state


def random_partition(rng, n, max_block):
    sizes = []
    while sum(sizes) < n:
        sizes.append(int(min(rng.integers(0, max_block + 1), n - sum(sizes))))
    return sizes


def sine(freq, rate, n, phase=0.3):
    return np.sin(2 * np.pi * freq * np.arange(n) / rate + phase)


def steady(y, state, margin=200):
    """Drop the warm-up (twice the delay) and the signal's own onset/offset."""
    return y[..., 2 * state.delay_out + margin: y.shape[-1] - margin]


@pytest.mark.parametrize("in_rate,out_rate", [*PAIRS, (48000, 48000)])
def test_block_size_invariance_is_exact(in_rate, out_rate):
    rng = np.random.default_rng(in_rate + 7 * out_rate)
    x = rng.standard_normal((2, 6000)).astype(np.float32)
    whole, _ = one_call(in_rate, out_rate, x)
    state = make_resampler_state(in_rate, out_rate, 2)
    pieces = run_blocks(state, x, random_partition(rng, x.shape[1], 700))
    np.testing.assert_array_equal(pieces, whole)
    # Total output count is exactly ceil(n_in * up / down).
    assert whole.shape[1] == -(-x.shape[1] * state.up // state.down)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 300), min_size=1, max_size=25))
def test_block_size_invariance_hypothesis(sizes):
    x = np.random.default_rng(5).standard_normal((1, sum(sizes)))
    whole, _ = one_call(44100, 48000, x)
    state = make_resampler_state(44100, 48000, 1)
    np.testing.assert_array_equal(run_blocks(state, x, sizes), whole)


def test_reset_restores_fresh_state():
    x = np.random.default_rng(2).standard_normal((1, 3000))
    state = make_resampler_state(48000, 16000, 1)
    first = run_blocks(state, x, [1000, 2000])
    reset_resampler(state)
    np.testing.assert_array_equal(run_blocks(state, x, [3000]), first)


@pytest.mark.parametrize("in_rate,out_rate", PAIRS + LIVE_PAIRS)
def test_passband_amplitude_and_frequency(in_rate, out_rate):
    nyquist = min(in_rate, out_rate) / 2
    n = in_rate // 4
    for freq in (100.0, 0.31 * nyquist, 0.6 * nyquist, 0.88 * nyquist):
        y, state = one_call(in_rate, out_rate, sine(freq, in_rate, n)[None])
        t = (np.arange(y.shape[1]) - state.delay_out) / out_rate
        basis = np.stack([np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t)], axis=1)
        b, seg = steady(basis.T, state).T, steady(y[0], state)
        coef, *_ = np.linalg.lstsq(b, seg, rcond=None)
        gain_db = 20 * np.log10(np.hypot(*coef))
        assert abs(gain_db) < 0.1, (freq, gain_db)
        # A sine at the expected frequency explains everything: right pitch, no distortion.
        residual_db = 20 * np.log10(np.linalg.norm(seg - b @ coef) / np.linalg.norm(seg))
        assert residual_db < -70, (freq, residual_db)
        # The phase says the advertised delay is the true delay.
        assert abs(np.arctan2(coef[1], coef[0]) - 0.3) < 1e-3


@pytest.mark.parametrize(
    "in_rate,out_rate,freq",
    [(48000, 16000, 20000.0), (48000, 16000, 8300.0), (44100, 16000, 12000.0),
     (48000, 44100, 23000.0), (16000, 48000, 5000.0), (16000, 44100, 7000.0)],
)
def test_aliasing_and_imaging_rejected(in_rate, out_rate, freq):
    y, state = one_call(in_rate, out_rate, sine(freq, in_rate, in_rate // 4)[None])
    if out_rate < in_rate:
        # Everything that comes out is an alias.
        unwanted = steady(y[0], state)
    else:
        # Only the sine belongs in the output; images are what the fit leaves over.
        t = (np.arange(y.shape[1]) - state.delay_out) / out_rate
        b = np.stack([np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t)], axis=1)
        b, seg = steady(b.T, state).T, steady(y[0], state)
        unwanted = seg - b @ np.linalg.lstsq(b, seg, rcond=None)[0]
    assert 20 * np.log10(np.abs(unwanted).max()) < -70


@pytest.mark.parametrize("in_rate,out_rate", PAIRS)
def test_prototype_stopband_at_least_80_db(in_rate, out_rate):
    state = make_resampler_state(in_rate, out_rate, 1)
    rate_up = in_rate * state.up
    nyquist = min(in_rate, out_rate) / 2
    # A zero-padded FFT samples the response every few Hz: no sidelobe slips between.
    response = np.abs(np.fft.rfft(state.prototype, 1 << 21))
    freqs = np.fft.rfftfreq(1 << 21, 1 / rate_up)
    assert 20 * np.log10(response[freqs >= nyquist].max()) < -80
    assert (state.prototype.size - 1) // 2 == state.delay_out * state.down
    # Multiply-adds per output second and channel stay modest.
    assert state.phases.shape[1] * out_rate < 6e6


@pytest.mark.parametrize("in_rate,out_rate", PAIRS)
def test_matches_scipy_resample_poly(in_rate, out_rate):
    rng = np.random.default_rng(11)
    nyquist = min(in_rate, out_rate) / 2
    x = lfilter(firwin(801, 0.6 * nyquist, fs=in_rate), 1, rng.standard_normal(12000))[None]
    y, state = one_call(in_rate, out_rate, x)
    d = state.delay_out
    n = y.shape[1] - d

    # Same prototype: identical up to rounding once our delay is removed.
    same = resample_poly(x, state.up, state.down, axis=1, window=state.prototype)
    np.testing.assert_allclose(y[:, d:], same[:, :n], rtol=0, atol=1e-12)

    # scipy's own filter: the band-limited signal agrees closely.
    ref = resample_poly(x, state.up, state.down, axis=1)[0, :n]
    ours = y[0, d:]
    inner = slice(600, n - 600)
    rel = np.linalg.norm(ours[inner] - ref[inner]) / np.linalg.norm(ref[inner])
    assert rel < 3e-3
    assert np.corrcoef(ours[inner], ref[inner])[0, 1] > 0.99999


@pytest.mark.parametrize("in_rate,out_rate", [(48000, 16000), (48000, 44100), (44100, 16000)])
def test_aliasing_no_worse_than_scipy(in_rate, out_rate):
    # A sine a quarter of the way from the output's Nyquist to the input's.
    freq = out_rate / 2 + 0.25 * (in_rate - out_rate) / 2
    x = sine(freq, in_rate, in_rate // 4)[None]
    y, state = one_call(in_rate, out_rate, x)
    ours_db = 20 * np.log10(np.abs(steady(y[0], state)).max())
    ref = resample_poly(x, state.up, state.down, axis=1)[0]
    scipy_db = 20 * np.log10(np.abs(ref[1000:-1000]).max())
    assert ours_db < -80
    assert ours_db <= scipy_db + 3.0


@pytest.mark.parametrize("in_rate,out_rate", [(44100, 48000), (48000, 16000)])
def test_float32_and_float64(in_rate, out_rate):
    x64 = np.random.default_rng(3).standard_normal((2, 4000))
    x32 = x64.astype(np.float32)
    y64, _ = one_call(in_rate, out_rate, x64)
    y32, _ = one_call(in_rate, out_rate, x32)
    assert y64.dtype == np.float64 and y32.dtype == np.float32
    ref32, _ = one_call(in_rate, out_rate, x32.astype(np.float64))
    np.testing.assert_allclose(y32, ref32, rtol=0, atol=1e-5 * np.abs(ref32).max())


def test_equal_rates_copy_exactly():
    x = np.random.default_rng(4).standard_normal((3, 500)).astype(np.float32)
    y, state = one_call(44100, 44100, x)
    assert state.delay_out == 0
    np.testing.assert_array_equal(y, x)


@pytest.mark.parametrize(
    "in_rate,out_rate,channels",
    [(4000, 48000, 1), (48000, 400000, 1), (44101, 48000, 1), (48000.0, 16000, 1), ("48000", 16000, 1),
     (48000, 16000, 0), (48000, 16000, 1.5), (True, 16000, 1)],
)
def test_bad_arguments_raise(in_rate, out_rate, channels):
    with pytest.raises(ValueError):
        make_resampler_state(in_rate, out_rate, channels)


def test_kernel_rejects_mismatched_buffers():
    state = make_resampler_state(48000, 16000, 2)
    with pytest.raises(ValueError):
        resample(np.zeros((1, 30)), np.zeros((1, 10)), state)
    with pytest.raises(ValueError):
        resample(np.zeros((2, 30)), np.zeros((2, 9)), state)
    with pytest.raises(ValueError):
        max_output_for(-1, state)


@pytest.mark.parametrize("in_rate,out_rate,extra", [(48000, 44100, 1), (48000, 44100, 146), (48000, 96000, 1),
                                                    (96000, 48000, 3)])
def test_extra_delay_ticks_delay_by_exactly_that_fraction_of_a_sample(in_rate, out_rate, extra):
    """The live path lengthens its way back by a few ticks to make its total delay whole: the
    output's phase must move by exactly those ticks, and the passband stay flat."""
    plain = make_resampler_state(in_rate, out_rate, 1)
    state = make_resampler_state(in_rate, out_rate, 1, extra_delay_ticks=extra)
    assert state.delay_ticks == plain.delay_ticks + extra
    freq = 3000.0
    y, _ = one_call(in_rate, out_rate, sine(freq, in_rate, in_rate // 4)[None])
    shifted = run_blocks(state, sine(freq, in_rate, in_rate // 4)[None], [in_rate // 8, in_rate // 8])
    delay_seconds = state.delay_ticks / (in_rate * state.up)
    t = np.arange(shifted.shape[1]) / out_rate - delay_seconds
    basis = np.stack([np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t)], axis=1)
    b, seg = steady(basis.T, state).T, steady(shifted[0], state)
    coef, *_ = np.linalg.lstsq(b, seg, rcond=None)
    assert abs(20 * np.log10(np.hypot(*coef))) < 0.01
    assert abs(np.arctan2(coef[1], coef[0]) - 0.3) < 1e-4
    assert y.shape == shifted.shape
