"""The model's input level: every frame the model hears is brought inside one range of levels first.

The separator hears compressed magnitudes, so what it makes of a mixture depends on how loud
the mixture is (benchmarks/bench_level.py: at -44 dBFS the shipped model gained 2.8 dB less
than at -24). A slow, causal gain in front of it keeps the level it hears inside the range
it separates best, and leaves a level already there alone. Only the model's input is scaled:
its masks still apply to the frames as they came in, so the output keeps the input's level and
nothing about the audio path changes.

Per stream the state is (smoothed frame power, weight of that average). The weight is the
average's own bias correction: the first frames of a stream are judged on what has been heard
so far rather than on a silence before it, and frames under the gate (silence) leave the state
as it is, so a pause does not pull the gain up. The gain is clamped to a range.

``normalise_frame`` is plain Python, compiled for the CPU here and for the device in
``kernels.cuda_streams``, so the live path, the batched path, the GPU path and the offline
path (``normalise_sequence``) do the same arithmetic.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

STATE_SIZE = 2  # smoothed power, weight
PARAMETER_SIZE = 6  # lowest and highest power left alone, decay, gate power, smallest gain, largest gain


def make_level_parameters(window: np.ndarray, hop: int, sample_rate: int, range_dbfs: tuple[float, float],
                          memory_seconds: float, gate_dbfs: float, max_cut_db: float,
                          max_boost_db: float) -> np.ndarray:
    """(PARAMETER_SIZE,) float64 for the kernels.

    A frame's power is the mean over its one-sided bins of |X|^2; by Parseval that is about
    the signal's mean square times the sum of the analysis window's squares, whatever the
    signal, so a level in dBFS (RMS re full scale) maps to a frame power through that sum."""
    window_energy = float(np.sum(np.asarray(window, np.float64) ** 2))

    def power_of(dbfs: float) -> float:
        return 10.0 ** (dbfs / 10.0) * window_energy

    decay = math.exp(-hop / (memory_seconds * sample_rate)) if memory_seconds > 0 else 0.0
    return np.array([power_of(range_dbfs[0]), power_of(range_dbfs[1]), decay, power_of(gate_dbfs),
                     10.0 ** (-max_cut_db / 20.0), 10.0 ** (max_boost_db / 20.0)], np.float64)


def make_level_state(streams: int = 1) -> np.ndarray:
    return np.zeros((streams, STATE_SIZE), np.float64)


def normalise_frame(real_imag, state, parameters):
    """real_imag (2, bins) scaled in place by this frame's gain; state (STATE_SIZE,) updated; returns the gain."""
    bins = real_imag.shape[1]
    power = 0.0
    for column in range(bins):
        real = real_imag[0, column]
        imag = real_imag[1, column]
        power += real * real + imag * imag
    power /= bins
    decay = parameters[2]
    # A frame under the gate, or one that is not finite (NaN fails both tests), leaves the state alone.
    if parameters[3] < power < 1e30:
        state[0] = decay * state[0] + (1.0 - decay) * power
        state[1] = decay * state[1] + (1.0 - decay)
    gain = 1.0
    if state[1] > 0.0:
        level = max(state[0] / state[1], 1e-30)
        if level < parameters[0]:
            gain = min(math.sqrt(parameters[0] / level), parameters[5])
        elif level > parameters[1]:
            gain = max(math.sqrt(parameters[1] / level), parameters[4])
    for column in range(bins):
        real_imag[0, column] *= gain
        real_imag[1, column] *= gain
    return gain


_normalise_frame = njit(cache=True)(normalise_frame)


@njit(cache=True)
def normalise_streams(real_imag, states, parameters):
    """real_imag (streams, 2, bins), the model's input rows of one hop, each scaled by its stream's gain."""
    for stream in range(real_imag.shape[0]):
        _normalise_frame(real_imag[stream], states[stream], parameters)


@njit(cache=True)
def normalise_sequence(real_imag, state, parameters, gains_out):
    """real_imag (frames, 2, bins) of one stream, frame after frame as the hops would; gains_out (frames,)."""
    for frame in range(real_imag.shape[0]):
        gains_out[frame] = _normalise_frame(real_imag[frame], state, parameters)


def level_normalised(real_imag: np.ndarray, parameters: np.ndarray | None) -> np.ndarray:
    """Offline convenience: (frames, 2, bins) of one stream -> a normalised float32 copy (as is when
    ``parameters`` is None), computed frame by frame from a fresh state as a new stream would be."""
    out = np.array(real_imag, np.float32, copy=True)
    if parameters is not None:
        normalise_sequence(out, make_level_state(1)[0], parameters, np.zeros(len(out), np.float64))
    return out
