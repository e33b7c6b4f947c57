"""Streaming polyphase FIR resampling between any two whole sample rates (8 kHz to 384 kHz).

The rate ratio is reduced by its gcd to ``up / down`` (48000 -> 44100 is
147/160). One Kaiser-windowed sinc prototype is designed at ``in_rate * up``
with its passband edge at 0.9 and its stopband edge at 1.0 of the lower
Nyquist frequency and 85 dB of design attenuation (the realised stopband is
at least 84 dB, the passband ripple under 0.001 dB), so nothing above the
output's Nyquist frequency aliases back audibly. It is then split into ``up``
phases of ``taps`` coefficients each (about 100 multiply-adds per output sample
and channel, times the ratio of the input rate to the lower of the two). A
ratio that reduces to large numbers (44101/48000) would need millions of
coefficients and is refused.

Streaming: the state keeps the last ``taps - 1`` input samples of every
channel and the position of the next output on the input's time axis, so
feeding a signal in blocks of any size, zero included, produces bit-for-bit
the same output as feeding it in one call. The number of outputs a call
writes varies with the call; ``resample`` returns it, ``output_count`` tells
it in advance and ``max_output_for`` sizes a buffer once.

Delay: the half-length of the prototype is made a multiple of ``down``, so the
group delay is a whole number of output samples, ``state.delay_out``: output
sample ``m`` carries the input signal at output time ``m - delay_out``. The
first ``delay_out`` outputs are the filter's warm-up on zero history.
``extra_delay_ticks`` lengthens the half (``delay_ticks``, in ticks of
``1 / (in_rate * up)`` s) beyond that: a pair of resamplers through a fixed
delay between them can so make their total delay a whole number of samples at
either end, though each one alone then delays by a fraction of a sample.

Equal input and output rates are accepted and give an exact copy with no
delay, so callers need no special case.
"""

from math import ceil, gcd, pi
from typing import NamedTuple

import numpy as np
from numba import njit

MIN_RATE, MAX_RATE = 8000, 384000
# Coefficients of one prototype; 44.1 <-> 48 kHz needs about 17 000, 192 -> 44.1 kHz 69 000.
MAX_PROTOTYPE = 1 << 20

# 85 dB rather than 80: Kaiser's length formula is an estimate that lands a
# fraction of a dB short of its target, and 80 dB is the promised minimum.
_ATTENUATION_DB = 85.0
_PASS_EDGE = 0.9  # of the lower Nyquist frequency
_STOP_EDGE = 1.0  # of the lower Nyquist frequency


class ResamplerState(NamedTuple):
    phases: np.ndarray  # (up, taps) float64: phases[p, j] = up * prototype[p + j * up]
    history: np.ndarray  # (channels, taps - 1) float64, oldest input first
    # int64[2]: input index (relative to the next block) of the newest sample
    # under the next output, and that output's phase in [0, up)
    position: np.ndarray
    prototype: np.ndarray  # the unsplit low-pass filter, for inspection and tests
    in_rate: int
    out_rate: int
    up: int
    down: int
    delay_out: int  # group delay in whole output samples (exact unless extra_delay_ticks was given)
    delay_ticks: int  # group delay in ticks of 1 / (in_rate * up) s: the prototype's half-length


def _prototype_half(in_rate, out_rate, up, down):
    """Half-length of the prototype (a multiple of ``down``), its cutoff and Kaiser beta."""
    rate_up = in_rate * up
    nyquist = min(in_rate, out_rate) / 2.0
    f_pass = _PASS_EDGE * nyquist
    f_stop = _STOP_EDGE * nyquist
    cutoff = 0.5 * (f_pass + f_stop) / rate_up  # cycles per upsampled sample
    beta = 0.1102 * (_ATTENUATION_DB - 8.7)
    transition = 2.0 * pi * (f_stop - f_pass) / rate_up
    length = ceil((_ATTENUATION_DB - 7.95) / (2.285 * transition)) + 1
    # Rounding the half-length up to a multiple of `down` puts the group
    # delay on the output grid, so latency is an integer number of samples.
    return ceil((length - 1) / 2 / down) * down, cutoff, beta


def _design_prototype(half, cutoff, beta):
    k = np.arange(-half, half + 1, dtype=np.float64)
    h = 2.0 * cutoff * np.sinc(2.0 * cutoff * k) * np.kaiser(2 * half + 1, beta)
    return h / h.sum()


def _check_whole(name, value, low, high):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
        raise ValueError(f"{name} must be a whole number in {low}..{high}, got {value!r}.")


def make_resampler_state(in_rate, out_rate, channels, extra_delay_ticks=0):
    """Design the filter and allocate history for ``channels`` channels."""
    _check_whole("in_rate (Hz)", in_rate, MIN_RATE, MAX_RATE)
    _check_whole("out_rate (Hz)", out_rate, MIN_RATE, MAX_RATE)
    if isinstance(channels, bool) or not isinstance(channels, (int, np.integer)) or channels < 1:
        raise ValueError(f"channels must be a positive integer, got {channels!r}.")
    in_rate, out_rate, channels = int(in_rate), int(out_rate), int(channels)
    g = gcd(in_rate, out_rate)
    up, down = out_rate // g, in_rate // g
    _check_whole("extra_delay_ticks", extra_delay_ticks, 0, MAX_PROTOTYPE // 2)
    if up == down and not extra_delay_ticks:
        prototype, half = np.ones(1), 0
    else:
        half, cutoff, beta = (0, 0.5, 0.0) if up == down else _prototype_half(in_rate, out_rate, up, down)
        half += int(extra_delay_ticks)
        if 2 * half + 1 > MAX_PROTOTYPE:
            raise ValueError(f"{in_rate} Hz -> {out_rate} Hz reduces to {up}/{down}, which needs a filter of "
                             f"{2 * half + 1} coefficients (at most {MAX_PROTOTYPE}): use a common rate.")
        prototype = _design_prototype(half, cutoff, beta)
    taps = -(-prototype.size // up)
    padded = np.zeros(taps * up)
    padded[: prototype.size] = prototype
    # The zeros stuffed between input samples cost 1/up of the energy; the
    # factor up restores unit passband gain on every phase.
    phases = np.ascontiguousarray(up * padded.reshape(taps, up).T)
    return ResamplerState(
        phases=phases,
        history=np.zeros((channels, taps - 1)),
        position=np.zeros(2, dtype=np.int64),
        prototype=prototype,
        in_rate=in_rate,
        out_rate=out_rate,
        up=up,
        down=down,
        delay_out=half // down,
        delay_ticks=half,
    )


def max_output_for(n_in, state):
    """Most output samples one call with ``n_in`` inputs can write, whatever the state."""
    if n_in < 0:
        raise ValueError(f"n_in must be non-negative, got {n_in!r}.")
    return -(-int(n_in) * state.up // state.down)


@njit(cache=True)
def output_count(n_in, state):
    """Exact number of samples the next ``resample`` call with ``n_in`` inputs writes."""
    start = state.position[0] * state.up + state.position[1]
    span = n_in * state.up - start
    if span <= 0:
        return 0
    return (span + state.down - 1) // state.down


@njit(cache=True)
def reset_resampler(state):
    """Forget all history, as if the state had just been made."""
    state.history[:, :] = 0.0
    state.position[0] = 0
    state.position[1] = 0


@njit(cache=True)
def resample(x_in, y_out, state):
    """Resample ``x_in`` (channels, n_in) into ``y_out``; return the count written.

    ``y_out`` needs at least ``output_count(n_in, state)`` columns (or
    ``max_output_for``); columns past the returned count are left untouched.
    """
    phases = state.phases
    history = state.history
    up = state.up
    down = state.down
    taps = phases.shape[1]
    n_hist = taps - 1
    n_ch = x_in.shape[0]
    n_in = x_in.shape[1]
    if n_ch != history.shape[0] or y_out.shape[0] != n_ch:
        raise ValueError("resample: channel count differs from the state's")
    n_out = output_count(n_in, state)
    if y_out.shape[1] < n_out:
        raise ValueError("resample: y_out has fewer columns than output_count")
    q_start = state.position[0]
    p_start = state.position[1]

    for c in range(n_ch):
        q = q_start
        p = p_start
        for m in range(n_out):
            acc = 0.0
            # Taps that reach before this block read the saved history; both
            # loops run j upwards so the sum order never depends on blocking.
            j_block = min(q, n_hist)
            for j in range(j_block + 1):
                acc += phases[p, j] * x_in[c, q - j]
            for j in range(j_block + 1, taps):
                acc += phases[p, j] * history[c, n_hist + q - j]
            y_out[c, m] = acc
            p += down
            q += p // up
            p %= up

    t_next = q_start * up + p_start + n_out * down
    state.position[0] = t_next // up - n_in
    state.position[1] = t_next % up

    if n_in >= n_hist:
        for c in range(n_ch):
            for i in range(n_hist):
                history[c, i] = x_in[c, n_in - n_hist + i]
    else:
        keep = n_hist - n_in
        for c in range(n_ch):
            for i in range(keep):
                history[c, i] = history[c, i + n_in]
            for i in range(n_in):
                history[c, keep + i] = x_in[c, i]
    return n_out
