"""Streaming STFT and ISTFT, one hop at a time.

Analysis keeps the last ``n_fft`` input samples per channel; each hop shifts them by
``hop``, windows and transforms. Synthesis inverse-transforms, windows and overlap-adds
into an accumulator whose first ``hop`` samples are then final. A signal that goes
through both comes back delayed by exactly ``n_fft - hop`` samples.

The analysis window is a periodic square-root Hann; the synthesis window is that window
divided by the overlap-added energy of analysis x synthesis at the chosen hop, which is
constant for hop n_fft/2 and n_fft/4, so reconstruction is exact (to rounding).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from .fft import irfft_with, make_real_fft_plan, rfft_with

MIN_N_FFT = 128
MAX_N_FFT = 2048


# The FFT plan's arrays sit flat in each state (not as a nested RealFftPlan): numba
# unboxes a NamedTuple field by field on every call, and nesting costs a microsecond.
class StftState(NamedTuple):
    window: np.ndarray  # analysis window, length n_fft
    frames: np.ndarray  # (channels, n_fft): the newest n_fft input samples per channel
    windowed: np.ndarray  # n_fft scratch: one channel's windowed frame
    half_twiddles: np.ndarray
    split_twiddles: np.ndarray
    bit_reverse: np.ndarray
    fft_work: np.ndarray


class IstftState(NamedTuple):
    window: np.ndarray  # synthesis window, length n_fft
    overlap: np.ndarray  # (channels, n_fft): overlap-add accumulator per channel
    inverse: np.ndarray  # n_fft scratch: one channel's inverse transform
    half_twiddles: np.ndarray
    split_twiddles: np.ndarray
    bit_reverse: np.ndarray
    fft_work: np.ndarray


def validate_stft_shape(n_fft: int, hop: int) -> None:
    if n_fft < MIN_N_FFT or n_fft > MAX_N_FFT or n_fft & (n_fft - 1):
        raise ValueError(f"n_fft must be a power of two from {MIN_N_FFT} to {MAX_N_FFT}, got {n_fft}")
    if hop not in (n_fft // 2, n_fft // 4):
        raise ValueError(f"hop must be n_fft/2 ({n_fft // 2}) or n_fft/4 ({n_fft // 4}), got {hop}")


def analysis_window(n_fft: int, dtype=np.float64) -> np.ndarray:
    """Periodic square-root Hann: its square overlap-adds to a constant at hop n/2 and n/4."""
    periodic_hann = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)
    return np.sqrt(periodic_hann).astype(dtype)


def synthesis_window(n_fft: int, hop: int, dtype=np.float64) -> np.ndarray:
    analysis = analysis_window(n_fft)
    energy = np.zeros(n_fft)
    for shift in range(0, n_fft, hop):
        energy += np.roll(analysis * analysis, shift)
    return (analysis / energy).astype(dtype)


def make_stft_state(n_fft: int, hop: int, channels: int, dtype=np.float32) -> StftState:
    validate_stft_shape(n_fft, hop)
    if channels < 1:
        raise ValueError(f"channels must be at least 1, got {channels}")
    return StftState(
        window=analysis_window(n_fft, dtype),
        frames=np.zeros((channels, n_fft), dtype=dtype),
        windowed=np.zeros(n_fft, dtype=dtype),
        **make_real_fft_plan(n_fft, dtype)._asdict(),
    )


def make_istft_state(n_fft: int, hop: int, channels: int, dtype=np.float32) -> IstftState:
    validate_stft_shape(n_fft, hop)
    if channels < 1:
        raise ValueError(f"channels must be at least 1, got {channels}")
    return IstftState(
        window=synthesis_window(n_fft, hop, dtype),
        overlap=np.zeros((channels, n_fft), dtype=dtype),
        inverse=np.zeros(n_fft, dtype=dtype),
        **make_real_fft_plan(n_fft, dtype)._asdict(),
    )


def reset_stft_state(state: StftState | IstftState) -> None:
    """Forget the signal history (the windows and the plan stay)."""
    if isinstance(state, StftState):
        state.frames[:] = 0
    else:
        state.overlap[:] = 0


@njit(cache=True)
def stft_analyze(hop_in, spectrum_out, state):
    """hop_in (channels, hop) -> spectrum_out (channels, n_fft/2 + 1), complex."""
    frames = state.frames
    n_fft = frames.shape[1]
    hop = hop_in.shape[1]
    for channel in range(frames.shape[0]):
        for index in range(n_fft - hop):
            frames[channel, index] = frames[channel, index + hop]
        for index in range(hop):
            frames[channel, n_fft - hop + index] = hop_in[channel, index]
        for index in range(n_fft):
            state.windowed[index] = frames[channel, index] * state.window[index]
        rfft_with(state.windowed, spectrum_out[channel], state.half_twiddles, state.split_twiddles,
                  state.bit_reverse, state.fft_work)


@njit(cache=True)
def istft_synthesize(spectrum_in, hop_out, state):
    """spectrum_in (channels, n_fft/2 + 1) -> hop_out (channels, hop) of finished samples."""
    overlap = state.overlap
    n_fft = overlap.shape[1]
    hop = hop_out.shape[1]
    for channel in range(overlap.shape[0]):
        irfft_with(spectrum_in[channel], state.inverse, state.half_twiddles, state.split_twiddles,
                   state.bit_reverse, state.fft_work)
        for index in range(n_fft):
            overlap[channel, index] += state.inverse[index] * state.window[index]
        for index in range(hop):
            hop_out[channel, index] = overlap[channel, index]
        for index in range(n_fft - hop):
            overlap[channel, index] = overlap[channel, index + hop]
        for index in range(n_fft - hop, n_fft):
            overlap[channel, index] = 0.0
