"""The CUDA kernels against the CPU kernels they mirror.

On a machine without a GPU these run under numba's CUDA simulator (see tests/cuda_marks.py):
the simulator stands in for the device, so sizes are kept small.
"""
import numpy as np
import pytest

from samstream.kernels.crossfade import crossfade, make_crossfade_state, start_crossfade
from samstream.kernels.masking import slot_ages, store_keys_values
from samstream.kernels.stft import istft_synthesize, make_istft_state, make_stft_state, stft_analyze
from samstream.kernels.streams import advance_seen, apply_stream_gains, blend_stream_gains, downmix_streams

from ..cuda_marks import needs_cuda

pytestmark = needs_cuda

cuda = pytest.importorskip("numba.cuda")


def device(array):
    return cuda.to_device(np.ascontiguousarray(array))


@pytest.mark.parametrize("n_fft,hop", [(128, 32), (128, 64), (256, 64)])
def test_cuda_stft_and_istft_match_the_cpu_kernels_hop_by_hop(n_fft, hop):
    from samstream.kernels.cuda_stft import (
        cuda_istft_synthesize,
        cuda_stft_analyze,
        make_cuda_istft_state,
        make_cuda_stft_state,
        reset_cuda_stft_state,
    )
    channels, bins = 2, n_fft // 2 + 1
    rng = np.random.default_rng(n_fft + hop)
    analysis, synthesis = make_stft_state(n_fft, hop, channels), make_istft_state(n_fft, hop, channels)
    device_analysis = make_cuda_stft_state(n_fft, hop, channels)
    device_synthesis = make_cuda_istft_state(n_fft, hop, channels)
    spectrum = np.zeros((channels, bins), np.complex64)
    hop_out = np.zeros((channels, hop), np.float32)
    device_spectrum = device(spectrum)
    device_hop_in, device_hop_out = device(hop_out), device(hop_out)
    # Past one whole window, so the shift and the overlap-add have carried real history.
    for _ in range(n_fft // hop + 2):
        hop_in = rng.standard_normal((channels, hop)).astype(np.float32)
        stft_analyze(hop_in, spectrum, analysis)
        # A mask-like change to the spectrum, so synthesis sees something other than its inverse.
        spectrum *= np.linspace(0.2, 1.0, bins, dtype=np.float32)
        istft_synthesize(spectrum, hop_out, synthesis)
        device_hop_in.copy_to_device(hop_in)
        cuda_stft_analyze(device_hop_in, device_spectrum, device_analysis)
        scaled = device_spectrum.copy_to_host() * np.linspace(0.2, 1.0, bins, dtype=np.float32)
        device_spectrum.copy_to_device(scaled.astype(np.complex64))
        cuda_istft_synthesize(device_spectrum, device_hop_out, device_synthesis)
        assert np.abs(scaled - spectrum).max() <= 2e-5 * max(1.0, np.abs(spectrum).max())
        assert np.abs(device_hop_out.copy_to_host() - hop_out).max() <= 2e-5
    reset_cuda_stft_state(device_analysis)
    reset_cuda_stft_state(device_synthesis)
    assert not device_analysis.history.copy_to_host().any()
    assert not device_synthesis.history.copy_to_host().any()


def test_cuda_model_inputs_match_downmix_and_slot_ages():
    from samstream.kernels.cuda_streams import cuda_model_inputs
    streams, channels, bins, context = 3, 2, 33, 8
    rng = np.random.default_rng(1)
    spectrum = (rng.standard_normal((streams * channels, bins))
                + 1j * rng.standard_normal((streams * channels, bins))).astype(np.complex64)
    expected, expected_ages = np.zeros((streams, 2, bins), np.float32), np.zeros(context, np.int64)
    downmix_streams(spectrum, expected)
    slot_ages(5, expected_ages)
    real_imag, ages = device(np.zeros_like(expected)), device(np.zeros(context, np.int64))
    cuda_model_inputs(device(spectrum), real_imag, ages, 5)
    assert np.abs(real_imag.copy_to_host() - expected).max() <= 1e-6
    assert np.array_equal(ages.copy_to_host(), expected_ages)


def test_cuda_level_normaliser_matches_the_cpu_kernel_hop_after_hop():
    from samstream.kernels.cuda_streams import cuda_normalise_levels
    from samstream.kernels.level import make_level_parameters, make_level_state, normalise_streams
    streams, bins = 3, 33
    parameters = make_level_parameters(np.hanning(64), 16, 48000, (-28.0, -18.0), 0.01, -70.0, 20.0, 30.0)
    rng = np.random.default_rng(2)
    expected_states, states = make_level_state(streams), device(make_level_state(streams))
    device_parameters = device(parameters)
    for scale in (1e-4, 1e-4, 0.0, 3.0, 1e-3):  # quiet, silent (gated), loud, quiet again
        frame = (scale * rng.standard_normal((streams, 2, bins))).astype(np.float32)
        expected = frame.copy()
        normalise_streams(expected, expected_states, parameters)
        on_device = device(frame)
        cuda_normalise_levels(on_device, states, device_parameters)
        np.testing.assert_allclose(on_device.copy_to_host(), expected, rtol=1e-5, atol=1e-12)
        np.testing.assert_allclose(states.copy_to_host(), expected_states, rtol=1e-6)


def test_cuda_model_outputs_match_store_keys_values_and_advance_seen():
    from samstream.kernels.cuda_streams import cuda_model_outputs
    steps, batch, depth, heads, context, head_dim = 2, 3, 2, 2, 4, 5
    rng = np.random.default_rng(2)
    new_keys, new_values = (rng.standard_normal((steps, batch, depth, heads, head_dim)).astype(np.float32)
                            for _ in range(2))
    caches = [rng.standard_normal((steps, batch, depth, heads, context, head_dim)).astype(np.float32)
              for _ in range(2)]
    seen = np.array([0, 3, 4], np.int64)
    device_caches, device_seen = [device(cache) for cache in caches], device(seen)
    store_keys_values(new_keys, new_values, caches[0], caches[1], 2)
    advance_seen(seen, context)
    cuda_model_outputs(device(new_keys), device(new_values), *device_caches, 2, device_seen)
    for device_cache, cache in zip(device_caches, caches, strict=True):
        assert np.array_equal(device_cache.copy_to_host(), cache)
    assert np.array_equal(device_seen.copy_to_host(), seen)


@pytest.mark.parametrize("keep_target", [True, False])
def test_cuda_stream_gains_match_blend_and_apply(keep_target):
    from samstream.kernels.cuda_streams import cuda_apply_stream_gains, cuda_copy_row
    streams, channels, bins = 3, 2, 17
    rng = np.random.default_rng(3)
    spectrum = (rng.standard_normal((streams * channels, bins))
                + 1j * rng.standard_normal((streams * channels, bins))).astype(np.complex64)
    masks, fade_from = rng.random((2, streams, bins)).astype(np.float32)
    shares = np.array([1.0, 0.25, 0.75], np.float32)  # stream 0 resting, 1 and 2 mid-fade
    passing = np.array([False, True, False])
    gains, out = np.zeros((streams, bins), np.float32), np.zeros_like(spectrum)
    blend_stream_gains(masks, fade_from, shares, passing, keep_target, gains)
    apply_stream_gains(spectrum, gains, out)
    device_gains, device_out = device(np.zeros_like(gains)), device(np.zeros_like(spectrum))
    cuda_apply_stream_gains(device(spectrum), device(masks), device(fade_from), device(shares), device(passing),
                            keep_target, device_gains, device_out)
    assert np.abs(device_gains.copy_to_host() - gains).max() <= 1e-6
    assert np.abs(device_out.copy_to_host() - out).max() <= 1e-6
    copied = device(np.zeros_like(gains))
    cuda_copy_row(device_gains, copied, 1)
    assert np.array_equal(copied.copy_to_host()[1], device_gains.copy_to_host()[1])
    assert not copied.copy_to_host()[[0, 2]].any()


@pytest.mark.filterwarnings("ignore")  # the simulator's uint64 generator arithmetic overflows on purpose
def test_cuda_noise_is_standard_normal_and_new_every_hop():
    from samstream.kernels.cuda_streams import cuda_draw_noise, make_noise_states
    noise = device(np.zeros((2, 60), np.float32))  # few: the simulator seeds each generator slowly
    states = make_noise_states(noise.size, seed=4)
    cuda_draw_noise(states, noise)
    first = noise.copy_to_host()
    cuda_draw_noise(states, noise)
    second = noise.copy_to_host()
    assert abs(first.mean()) < 0.3 and 0.75 < first.std() < 1.25
    assert not np.array_equal(first, second)


def test_cuda_crossfade_matches_the_cpu_crossfade_across_blocks_and_a_reversal():
    from samstream.kernels.cuda_crossfade import cuda_crossfade, cuda_start_crossfade, to_device_crossfade
    rng = np.random.default_rng(5)
    state = make_crossfade_state(24)
    device_state = to_device_crossfade(make_crossfade_state(24))
    start_crossfade(state, 1)
    cuda_start_crossfade(device_state, 1)
    for index, count in enumerate((7, 5, 16, 9, 30)):
        if index == 2:  # reversed mid-fade: it retraces the curve from where it is
            start_crossfade(state, 0)
            cuda_start_crossfade(device_state, 0)
        source, target = rng.standard_normal((2, 2, count)).astype(np.float32)
        out = np.zeros_like(source)
        crossfade(source, target, out, state)
        device_out = device(np.zeros_like(source))
        cuda_crossfade(device(source), device(target), device_out, device_state)
        assert np.array_equal(device_out.copy_to_host(), out)
        assert np.array_equal(device_state.position.copy_to_host(), state.position)
