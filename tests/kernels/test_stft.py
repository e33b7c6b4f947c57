"""The streaming STFT against one-shot framing, torch, and its own inverse."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from samstream.kernels.stft import (
    analysis_window,
    istft_synthesize,
    make_istft_state,
    make_stft_state,
    stft_analyze,
)

SHAPES = [(n_fft, n_fft // divisor) for n_fft in (128, 256, 512, 1024, 2048) for divisor in (2, 4)]


def stream_stft(signal, n_fft, hop, dtype):
    """(channels, n) -> frames (channels, bins, n // hop), one hop per call."""
    channels, length = signal.shape
    state = make_stft_state(n_fft, hop, channels, dtype)
    complex_dtype = state.fft_work.dtype
    frames = np.zeros((channels, n_fft // 2 + 1, length // hop), dtype=complex_dtype)
    spectrum = np.zeros((channels, n_fft // 2 + 1), dtype=complex_dtype)
    for index in range(length // hop):
        stft_analyze(np.ascontiguousarray(signal[:, index * hop:(index + 1) * hop]), spectrum, state)
        frames[:, :, index] = spectrum
    return frames


def stream_istft(frames, n_fft, hop, dtype):
    channels, _, count = frames.shape
    state = make_istft_state(n_fft, hop, channels, dtype)
    output = np.zeros((channels, count * hop), dtype=dtype)
    hop_out = np.zeros((channels, hop), dtype=dtype)
    for index in range(count):
        istft_synthesize(np.ascontiguousarray(frames[:, :, index]), hop_out, state)
        output[:, index * hop:(index + 1) * hop] = hop_out
    return output


def one_shot_frames(signal, n_fft, hop):
    """numpy reference: frame the zero-prefixed signal all at once."""
    channels, length = signal.shape
    padded = np.concatenate([np.zeros((channels, n_fft - hop)), signal.astype(np.float64)], axis=1)
    window = analysis_window(n_fft)
    starts = np.arange(length // hop) * hop
    segments = np.stack([padded[:, start:start + n_fft] for start in starts], axis=-1)
    return np.fft.rfft(segments * window[None, :, None], axis=1)


@pytest.mark.parametrize("n_fft, hop", SHAPES)
def test_streamed_frames_equal_one_shot_frames(n_fft, hop):
    signal = np.random.default_rng(n_fft + hop).standard_normal((2, 8 * n_fft))
    streamed = stream_stft(signal, n_fft, hop, np.float64)
    assert np.abs(streamed - one_shot_frames(signal, n_fft, hop)).max() < 1e-10


@pytest.mark.parametrize("n_fft, hop", SHAPES)
@pytest.mark.parametrize("dtype, tolerance", [(np.float64, 1e-6), (np.float32, 1e-4)])
def test_round_trip_reconstructs_exactly_after_the_delay(n_fft, hop, dtype, tolerance):
    signal = np.random.default_rng(7).uniform(-1, 1, (3, 10 * n_fft)).astype(dtype)
    output = stream_istft(stream_stft(signal, n_fft, hop, dtype), n_fft, hop, dtype)
    delay = n_fft - hop
    assert np.abs(output[:, delay:] - signal[:, :signal.shape[1] - delay]).max() < tolerance


@settings(max_examples=25, deadline=None)
@given(shape=st.sampled_from(SHAPES), seed=st.integers(0, 2**31 - 1),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_round_trip_of_random_signals_through_random_block_sizes(shape, seed, dtype):
    """Random host blocks are cut into hops by a plain buffer; reconstruction must not care."""
    n_fft, hop = shape
    rng = np.random.default_rng(seed)
    signal = (rng.standard_normal((1, 6 * n_fft)) * rng.uniform(0.01, 2.0)).astype(dtype)
    analysis = make_stft_state(n_fft, hop, 1, dtype)
    synthesis = make_istft_state(n_fft, hop, 1, dtype)
    spectrum = np.zeros((1, n_fft // 2 + 1), dtype=analysis.fft_work.dtype)
    hop_out = np.zeros((1, hop), dtype=dtype)
    pending = np.zeros((1, 0), dtype=dtype)
    produced = []
    start = 0
    while start < signal.shape[1]:
        size = int(rng.integers(1, 3 * hop))
        pending = np.concatenate([pending, signal[:, start:start + size]], axis=1)
        start += size
        while pending.shape[1] >= hop:
            stft_analyze(np.ascontiguousarray(pending[:, :hop]), spectrum, analysis)
            istft_synthesize(spectrum, hop_out, synthesis)
            produced.append(hop_out.copy())
            pending = pending[:, hop:]
    output = np.concatenate(produced, axis=1)
    delay = n_fft - hop
    scale = max(1.0, float(np.abs(signal).max()))
    tolerance = 1e-6 if dtype == np.float64 else 1e-4
    assert np.abs(output[:, delay:] - signal[:, :output.shape[1] - delay]).max() <= tolerance * scale


@pytest.mark.parametrize("n_fft, hop", [(512, 128), (1024, 512), (128, 32)])
def test_frames_match_torch_stft(n_fft, hop):
    torch = pytest.importorskip("torch")
    signal = np.random.default_rng(3).standard_normal((1, 6 * n_fft))
    streamed = stream_stft(signal, n_fft, hop, np.float64)
    padded = torch.from_numpy(np.concatenate([np.zeros((1, n_fft - hop)), signal], axis=1))
    window = torch.from_numpy(analysis_window(n_fft))
    reference = torch.stft(padded, n_fft, hop, window=window, center=False, return_complex=True).numpy()
    count = streamed.shape[2]
    assert np.abs(streamed - reference[:, :, :count]).max() < 1e-10


@pytest.mark.parametrize("n_fft, hop", [(512, 128), (1024, 512), (128, 32)])
def test_synthesis_matches_torch_istft_on_modified_spectra(n_fft, hop):
    """torch.istft normalises by the window envelope; away from the edges ours must agree."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    signal = torch.from_numpy(rng.standard_normal(12 * n_fft))
    window = torch.from_numpy(analysis_window(n_fft))
    frames = torch.stft(signal, n_fft, hop, window=window, center=True, return_complex=True)
    frames = frames * torch.from_numpy(rng.uniform(0.2, 1.0, frames.shape))  # not a consistent STFT
    reference = torch.istft(frames, n_fft, hop, window=window, center=True).numpy()
    ours = stream_istft(frames.numpy()[None], n_fft, hop, np.float64)[0]
    # torch's sample n is our stream's sample n + n_fft/2 (its centre padding).
    interior = slice(n_fft, len(reference) - n_fft)
    shifted = ours[n_fft // 2:n_fft // 2 + len(reference)]
    assert np.abs(shifted[interior] - reference[interior]).max() < 1e-10


@pytest.mark.parametrize("n_fft, hop", [(100, 50), (4096, 1024), (512, 100), (512, 512)])
def test_unsupported_shapes_are_refused_with_a_clear_error(n_fft, hop):
    with pytest.raises(ValueError, match=r"n_fft|hop"):
        make_stft_state(n_fft, hop, 1)
