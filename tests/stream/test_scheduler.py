"""The block scheduler: constant, reported latency under any host blocks; streamed = offline."""
import numpy as np
import pytest

from samstream.stream.engine import ConfigurationError, PassThroughEngine, StftEngine
from samstream.stream.offline import fixed_blocks, random_blocks, render_offline, render_streamed
from samstream.stream.scheduler import BlockScheduler

HOST_BLOCKS = [32, 64, 128, 441, 512, 1024]


class FrameDependentGain:
    """A nonlinear per-frame model: each bin is scaled by its own magnitude, squashed.

    Unlike the identity, its output depends on how the signal is framed, so streaming and
    offline agree only if every frame sees exactly the same samples in both.
    """

    lookahead_frames = 0

    def configure(self, channels, n_bins):
        self.scratch = np.zeros((channels, n_bins), np.float32)

    def process(self, spectrum_in, spectrum_out):
        np.abs(spectrum_in, out=self.scratch)
        np.tanh(self.scratch, out=self.scratch)
        np.multiply(spectrum_in, self.scratch, out=spectrum_out)


class DelayingModel(FrameDependentGain):
    """The same gain, one frame late: a model with one frame of lookahead."""

    lookahead_frames = 1

    def configure(self, channels, n_bins):
        super().configure(channels, n_bins)
        self.previous = np.zeros((channels, n_bins), np.complex64)
        self.held = np.zeros((channels, n_bins), np.complex64)

    def process(self, spectrum_in, spectrum_out):
        super().process(spectrum_in, self.held)
        np.copyto(spectrum_out, self.previous)
        np.copyto(self.previous, self.held)


ENGINES = {
    "pass-through": lambda: PassThroughEngine(hop=128),
    "stft 512/128": lambda: StftEngine(512, 128),
    "stft 1024/256 + model": lambda: StftEngine(1024, 256, model=FrameDependentGain()),
    "stft 256/128 + lookahead": lambda: StftEngine(256, 128, model=DelayingModel()),
}


def impulse_response(scheduler, length, at, blocks):
    probe = np.zeros((scheduler.channels, length), np.float32)
    probe[:, at] = 1.0
    return render_streamed(scheduler, probe, blocks)


def make(engine_name, channels=1, host_block=None, max_block=4096):
    scheduler = BlockScheduler(ENGINES[engine_name](), host_block=host_block)
    scheduler.configure(48000, max_block, channels)
    return scheduler


@pytest.mark.parametrize("engine_name", list(ENGINES))
@pytest.mark.parametrize("block", [*HOST_BLOCKS, "random"])
def test_an_impulse_comes_out_exactly_the_reported_latency_later(engine_name, block):
    blocks = random_blocks(1, 4096, seed=11) if block == "random" else fixed_blocks(block)
    for host_block in ([None] if block == "random" else [None, block]):
        scheduler = make(engine_name, host_block=host_block)
        response = impulse_response(scheduler, 12000, 3001, blocks)
        peak = int(np.argmax(np.abs(response[0])))
        assert peak - 3001 == scheduler.latency_samples, (host_block, scheduler.latency_samples)
        if engine_name in ("pass-through", "stft 512/128"):
            assert response[0, peak] == pytest.approx(1.0, abs=1e-6)
            response[0, peak] = 0
            assert np.abs(response).max() < 1e-6, "a transparent path must output nothing but the impulse"


@pytest.mark.parametrize("engine_name", list(ENGINES))
@pytest.mark.parametrize("block", [*HOST_BLOCKS, "random"])
def test_streamed_output_equals_offline_output_shifted_by_the_latency(engine_name, block):
    signal = np.random.default_rng(1).uniform(-0.8, 0.8, (2, 24000)).astype(np.float32)
    blocks = random_blocks(1, 2048, seed=3) if block == "random" else fixed_blocks(block)
    scheduler = make(engine_name, channels=2)
    streamed = render_streamed(scheduler, signal, blocks)
    offline = render_offline(ENGINES[engine_name](), signal)
    latency = scheduler.latency_samples
    assert np.abs(streamed[:, latency:] - offline[:, :signal.shape[1] - latency]).max() < 1e-5
    if engine_name in ("pass-through", "stft 512/128"):
        # A model may spread the first frame before time zero; a transparent path may not.
        assert np.abs(streamed[:, :latency]).max() < 1e-6, "nothing may come out before the latency"


def test_block_size_changing_every_callback_keeps_the_latency():
    sizes = iter([32, 4096, 1, 127, 129, 441, 64, 1000, 3, 2048] * 10)
    scheduler = make("stft 512/128")
    response = impulse_response(scheduler, 40000, 25000, lambda: sizes)
    assert int(np.argmax(np.abs(response[0]))) - 25000 == scheduler.latency_samples


@pytest.mark.parametrize("channels", [1, 2, 6])
def test_every_channel_count_has_the_same_latency_and_channels_stay_apart(channels):
    scheduler = make("stft 512/128", channels=channels)
    assert scheduler.latency_samples == make("stft 512/128").latency_samples
    signal = np.zeros((channels, 6000), np.float32)
    for channel in range(channels):
        signal[channel, 1000 + 100 * channel] = 1.0
    output = render_streamed(scheduler, signal, random_blocks(16, 700, seed=channels))
    for channel in range(channels):
        assert int(np.argmax(output[channel])) == 1000 + 100 * channel + scheduler.latency_samples


def test_fixed_host_block_shrinks_the_buffer_delay_to_what_the_block_needs():
    assert BlockScheduler(PassThroughEngine(128), host_block=128).buffer_delay == 0
    assert BlockScheduler(PassThroughEngine(128), host_block=256).buffer_delay == 0
    assert BlockScheduler(PassThroughEngine(128), host_block=64).buffer_delay == 64
    assert BlockScheduler(PassThroughEngine(128), host_block=441).buffer_delay == 127
    assert BlockScheduler(PassThroughEngine(128)).buffer_delay == 127


def test_non_finite_and_out_of_range_input_is_sanitised_counted_and_the_stream_goes_on():
    scheduler = make("stft 512/128", channels=2)
    signal = np.random.default_rng(2).uniform(-0.5, 0.5, (2, 9600)).astype(np.float32)
    broken = signal.copy()
    broken[0, 2000:2010] = np.nan
    broken[1, 3000] = np.inf
    broken[1, 3001] = -np.inf
    broken[0, 5000] = 1e30
    output = render_streamed(scheduler, broken, fixed_blocks(256))
    assert np.isfinite(output).all()
    stats = scheduler.stats
    assert stats.non_finite_samples == 12 and stats.clipped_samples == 1
    # Away from the damage, the output is the clean signal, delayed.
    latency = scheduler.latency_samples
    assert np.abs(output[:, 7000 + latency:] - signal[:, 7000:signal.shape[1] - latency]).max() < 1e-5


def test_zero_length_blocks_do_nothing_and_oversized_blocks_are_split_and_counted():
    scheduler = make("pass-through", max_block=256)
    empty = np.zeros((1, 0), np.float32)
    scheduler.process(empty, empty.copy())
    assert scheduler.stats.hops == 0
    signal = np.arange(1, 2001, dtype=np.float32)[None] / 2000
    output = render_streamed(scheduler, signal, fixed_blocks(1000))
    assert scheduler.stats.oversized_blocks == 2
    latency = scheduler.latency_samples
    assert np.array_equal(output[:, latency:], signal[:, :2000 - latency])


@pytest.mark.parametrize("block_in, block_out, error", [
    (np.zeros((2, 64), np.float32), np.zeros((2, 64), np.float32), ValueError),  # wrong channel count
    (np.zeros((1, 64), np.float32), np.zeros((1, 32), np.float32), ValueError),  # shapes differ
    (np.zeros(64, np.float32), np.zeros(64, np.float32), ValueError),  # not (channels, n)
    (np.zeros((1, 64), np.float64), np.zeros((1, 64), np.float64), TypeError),  # not float32
])
def test_malformed_blocks_are_refused_with_a_clear_error_and_the_stream_goes_on(block_in, block_out, error):
    scheduler = make("stft 512/128")
    with pytest.raises(error, match=r"channels|float32"):
        scheduler.process(block_in, block_out)
    output = render_streamed(scheduler, np.ones((1, 2048), np.float32), fixed_blocks(128))
    assert output[0, -1] == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("sample_rate, max_block, channels", [
    (22050, 512, 1), (4000, 512, 1), (48000, 0, 1), (48000, 100000, 1), (48000, 512, 0), (48000, 512, 65)])
def test_impossible_stream_parameters_are_refused_with_a_clear_error(sample_rate, max_block, channels):
    engine = StftEngine(supported_sample_rates=(48000,))
    with pytest.raises(ConfigurationError, match=r"sample rate|max_block|channels"):
        BlockScheduler(engine).configure(sample_rate, max_block, channels)


def test_host_block_larger_than_max_block_is_refused():
    with pytest.raises(ConfigurationError, match="host_block"):
        BlockScheduler(PassThroughEngine(), host_block=1024).configure(48000, 512, 1)
