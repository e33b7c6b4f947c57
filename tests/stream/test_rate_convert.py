"""A live stream at a host rate the engine does not run at: exact whole-sample latency, clean audio."""
from __future__ import annotations

import numpy as np
import pytest

from samstream.stream.engine import StftEngine
from samstream.stream.live import LiveProcessor
from samstream.stream.rate_convert import RateConversion

MODEL_RATE = 48000
LIVE_RATES = (22050, 32000, 44100, 88200, 96000, 192000)


def processor_at(host_rate: int, host_block: int | None, threaded: bool = False) -> LiveProcessor:
    """The STFT engine with an identity model, which runs at the model's rate only, as the bridge's does."""
    engine = StftEngine(1024, 256, supported_sample_rates=(MODEL_RATE,))
    processor = LiveProcessor(engine, host_block=host_block, max_block=1024, threaded=threaded, crossfade_ms=0.0)
    processor.configure(host_rate, 1)
    processor.set_weights(0.0, 1.0, 0.0, 1.0)  # the target alone: what went through the resamplers
    return processor


def stream(processor: LiveProcessor, signal: np.ndarray, block: int) -> np.ndarray:
    output = np.zeros_like(signal)
    for start in range(0, signal.shape[1], block):
        window = slice(start, start + block)
        processor.process(signal[:, window], output[:, window])
    return output


@pytest.mark.parametrize("host_rate", LIVE_RATES)
@pytest.mark.parametrize("host_block", [128, None])
def test_an_impulse_comes_out_exactly_the_reported_latency_later(host_rate, host_block):
    processor = processor_at(host_rate, host_block)
    latency = processor.latency_samples
    assert processor.sample_rate == MODEL_RATE and processor.host_rate == host_rate
    signal = np.zeros((1, 8 * 2048), np.float32)
    clicks = [3000, 7001, 11002]
    signal[0, clicks] = 1.0
    output = stream(processor, signal, 128 if host_block else 97)[0]
    for click in clicks:
        window = output[click + latency - 40:click + latency + 41]
        # The click comes back band-limited to the lower rate: its peak at the latency, its
        # ringing symmetric about it (a filter delay of a fraction of a sample would tilt it).
        assert int(np.argmax(np.abs(window))) == 40, (click, np.argmax(np.abs(window)))
        np.testing.assert_allclose(window[:40], window[41:][::-1], atol=2e-3)


@pytest.mark.parametrize("host_rate", [44100, 96000])
def test_a_sine_in_the_passband_comes_back_at_its_level_and_phase(host_rate):
    processor = processor_at(host_rate, 128)
    latency = processor.latency_samples
    frequency = 5000.0
    t = np.arange(host_rate) / host_rate
    signal = (0.5 * np.sin(2 * np.pi * frequency * t)).astype(np.float32)[None]
    output = stream(processor, signal, 128)[0, latency + 4096:]
    expected = signal[0, 4096:signal.shape[1] - latency]
    error_db = 20 * np.log10(np.sqrt(np.mean((output - expected) ** 2)) / np.sqrt(np.mean(expected ** 2)))
    assert error_db < -60, error_db


def test_at_the_models_rate_nothing_is_converted_and_the_plan_is_unchanged():
    processor = processor_at(MODEL_RATE, 128)
    assert processor._conversion is None
    assert processor.latency_samples == 768 + 128  # STFT delay + the buffer delay of 128 blocks into 256 hops


@pytest.mark.parametrize("host_rate", [44100, 96000])
@pytest.mark.parametrize("block", [64, 128, 441])
def test_slack_planning_matches_a_simulation_of_the_worker(host_rate, block):
    """Each callback's block must be in the output ring by then: count it sample by sample."""
    conversion = RateConversion(host_rate, MODEL_RATE, 1, 256, 768, 1024)
    for prefill in (conversion.buffer_delay(block), conversion.buffer_delay(block) + 300):
        slack = conversion.worst_slack(prefill, block)
        made = [conversion.output_after(np.array([(c + 1) * block]))[0] for c in range(400)]
        simulated = min(j - next(c for c in range(400) if prefill + made[c] >= (j + 1) * block)
                        for j in range(50, 300))
        assert slack == simulated
    assert conversion.worst_slack(conversion.buffer_delay(block), block) == 0
    assert conversion.worst_slack(conversion.buffer_delay(block) - 1, block) < 0
