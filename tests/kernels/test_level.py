"""The model's input level (kernels.level) against a plain numpy reference, and what it does to
steady signals of known level, framed by the project's own STFT kernels."""
import numpy as np
import pytest

from samstream.kernels.level import (
    level_normalised,
    make_level_parameters,
    make_level_state,
    normalise_sequence,
    normalise_streams,
)
from samstream.kernels.stft import analysis_window
from samstream.stream.offline import analyze_frames

N_FFT, HOP, RATE = 1024, 256, 48000
PARAMETERS = make_level_parameters(analysis_window(N_FFT), HOP, RATE, (-28.0, -18.0), 1.5, -70.0, 20.0, 30.0)


def reference(frames: np.ndarray, range_dbfs=(-28.0, -18.0), memory=1.5, gate=-70.0, cut=20.0, boost=30.0):
    """The gains, written out plainly: a bias-corrected exponential mean of gated frame powers."""
    energy = np.sum(analysis_window(N_FFT) ** 2)
    low, high, floor = (10 ** (value / 10) * energy for value in (*range_dbfs, gate))
    decay = np.exp(-HOP / (memory * RATE))
    total = weight = 0.0
    gains = []
    for frame in frames.astype(np.float64):
        power = np.mean(frame[0] ** 2 + frame[1] ** 2)
        if power > floor:
            total, weight = decay * total + (1 - decay) * power, decay * weight + (1 - decay)
        level = total / weight if weight else None
        if level is None or low <= level <= high:
            gains.append(1.0)
        elif level < low:
            gains.append(min(np.sqrt(low / level), 10 ** (boost / 20)))
        else:
            gains.append(max(np.sqrt(high / level), 10 ** (-cut / 20)))
    return np.array(gains)


def frames_of(signal: np.ndarray) -> np.ndarray:
    spectrum = analyze_frames(signal[None].astype(np.float32), N_FFT, HOP, -(-len(signal) // HOP))[0]
    return np.stack((spectrum.real, spectrum.imag), axis=1).astype(np.float32)


def noise_at(dbfs: float, seconds: float, seed: int = 0) -> np.ndarray:
    signal = np.random.default_rng(seed).standard_normal(int(seconds * RATE))
    return signal / np.sqrt(np.mean(signal ** 2)) * 10 ** (dbfs / 20)


def heard_dbfs(frames: np.ndarray, gains: np.ndarray) -> float:
    """The level the model hears over the last second, by the same Parseval mapping."""
    tail = slice(-RATE // HOP, None)
    power = np.mean(np.sum(frames[tail] ** 2, axis=1), axis=1) * gains[tail] ** 2
    return 10 * np.log10(np.mean(power) / np.sum(analysis_window(N_FFT) ** 2))


@pytest.mark.parametrize("dbfs, heard", [(-44.0, -28.0), (-60.0, -30.0), (-24.0, -24.0), (-6.0, -18.0)])
def test_a_steady_signal_is_heard_at_the_nearer_edge_of_the_range_or_as_it_is(dbfs, heard):
    frames = frames_of(noise_at(dbfs, 4.0))
    gains = np.zeros(len(frames))
    normalise_sequence(frames.copy(), make_level_state(1)[0], PARAMETERS, gains)
    np.testing.assert_allclose(gains, reference(frames), rtol=1e-6)
    assert heard_dbfs(frames, gains) == pytest.approx(heard, abs=0.3)  # -60 dBFS: the +30 dB limit


def test_the_first_frames_are_judged_on_what_was_heard_and_silence_leaves_the_gain_alone():
    quiet = frames_of(np.concatenate([noise_at(-50.0, 0.5), np.zeros(RATE), noise_at(-50.0, 0.5, seed=1)]))
    gains = np.zeros(len(quiet))
    normalise_sequence(quiet.copy(), make_level_state(1)[0], PARAMETERS, gains)
    np.testing.assert_allclose(gains, reference(quiet), rtol=1e-6)
    early = gains[5]  # frame 5 already boosts by about the full 22 dB, not by a fraction of it
    assert 20 * np.log10(early) == pytest.approx(22.0, abs=1.5)
    silent = slice(int(0.7 * RATE) // HOP, int(1.4 * RATE) // HOP)
    assert np.ptp(gains[silent]) < 1e-9


def test_streams_are_normalised_independently_and_as_the_offline_sequence_is():
    signals = [noise_at(level, 1.0, seed) for seed, level in enumerate((-50.0, -24.0, -10.0))]
    sequences = [frames_of(signal) for signal in signals]
    states = make_level_state(3)
    hop_by_hop = np.zeros((len(sequences[0]), 3, 2, N_FFT // 2 + 1), np.float32)
    for index in range(len(sequences[0])):
        rows = np.stack([sequence[index] for sequence in sequences])
        normalise_streams(rows, states, PARAMETERS)
        hop_by_hop[index] = rows
    for stream, sequence in enumerate(sequences):
        np.testing.assert_array_equal(hop_by_hop[:, stream], level_normalised(sequence, PARAMETERS))
    np.testing.assert_array_equal(level_normalised(sequences[0], None), sequences[0])


def test_parameters_map_dbfs_to_frame_power_through_the_window():
    frames = frames_of(noise_at(-24.0, 2.0))
    power = np.mean(np.sum(frames ** 2, axis=1))
    low, high = PARAMETERS[0], PARAMETERS[1]
    assert 10 * np.log10(power / low) == pytest.approx(4.0, abs=0.2)
    assert 10 * np.log10(high / power) == pytest.approx(6.0, abs=0.2)


def test_a_non_finite_frame_leaves_the_state_as_it_was():
    frames = frames_of(noise_at(-44.0, 0.5))
    state = make_level_state(1)[0]
    gains = np.zeros(len(frames))
    normalise_sequence(frames.copy(), state, PARAMETERS, gains)
    before = state.copy()
    broken = np.full((3, 2, frames.shape[2]), np.nan, np.float32)
    broken[1] = np.inf
    normalise_sequence(broken, state, PARAMETERS, np.zeros(3))
    np.testing.assert_array_equal(state, before)
