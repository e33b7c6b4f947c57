"""Whole-signal helpers around engines: the offline reference, the streamed run, delay measurement.

These run outside any audio callback, so they may allocate freely.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from .engine import Engine
from .scheduler import BlockScheduler


def render_offline(engine: Engine, signal: np.ndarray, sample_rate: int = 48000) -> np.ndarray:
    """Run ``engine`` hop by hop over the whole (channels, n) signal; latency removed."""
    channels, length = signal.shape
    hop = engine.hop
    engine.configure(sample_rate, hop, channels)
    latency = engine.latency_samples
    hops = -(-(length + latency) // hop)
    padded = np.zeros((channels, hops * hop), dtype=np.float32)
    padded[:, :length] = signal
    output = np.zeros_like(padded)
    for index in range(hops):
        window = slice(index * hop, (index + 1) * hop)
        engine.process(padded[:, window], output[:, window])
    return output[:, latency:latency + length]


def fixed_blocks(size: int) -> Callable[[], Iterator[int]]:
    def sizes() -> Iterator[int]:
        while True:
            yield size
    return sizes


def random_blocks(low: int, high: int, seed: int = 0) -> Callable[[], Iterator[int]]:
    def sizes() -> Iterator[int]:
        generator = np.random.default_rng(seed)
        while True:
            yield int(generator.integers(low, high + 1))
    return sizes


def render_streamed(scheduler: BlockScheduler, signal: np.ndarray,
                    block_sizes: Callable[[], Iterator[int]]) -> np.ndarray:
    """Feed the (channels, n) signal through a configured scheduler in host-sized blocks.

    Returns the raw stream (channels, n): still delayed by ``scheduler.latency_samples``.
    """
    channels, length = signal.shape
    source = np.ascontiguousarray(signal, dtype=np.float32)
    output = np.zeros((channels, length), dtype=np.float32)
    start = 0
    for size in block_sizes():
        if start >= length:
            break
        stop = min(start + size, length)
        block_out = np.zeros((channels, stop - start), dtype=np.float32)
        scheduler.process(np.ascontiguousarray(source[:, start:stop]), block_out)
        output[:, start:stop] = block_out
        start = stop
    return output


def measure_delay(reference: np.ndarray, delayed: np.ndarray, max_delay: int | None = None) -> int:
    """Delay in samples of ``delayed`` against ``reference`` (1-D), by cross-correlation peak."""
    length = len(reference) + len(delayed)
    size = 1 << (length - 1).bit_length()
    correlation = np.fft.irfft(np.fft.rfft(delayed, size) * np.conj(np.fft.rfft(reference, size)), size)
    limit = len(delayed) if max_delay is None else max_delay + 1
    return int(np.argmax(correlation[:limit]))


def analyze_frames(signal: np.ndarray, n_fft: int, hop: int, frames: int) -> np.ndarray:
    """(channels, n) -> (channels, frames, n_fft/2 + 1): the stream's STFT frames, zero-padded past the end."""
    from samstream.kernels.stft import make_stft_state, stft_analyze

    channels = signal.shape[0]
    padded = np.zeros((channels, frames * hop), np.float32)
    length = min(signal.shape[1], frames * hop)
    padded[:, :length] = signal[:, :length]
    state = make_stft_state(n_fft, hop, channels)
    out = np.zeros((channels, frames, n_fft // 2 + 1), np.complex64)
    spectrum = np.zeros((channels, n_fft // 2 + 1), np.complex64)
    for index in range(frames):
        stft_analyze(padded[:, index * hop:(index + 1) * hop], spectrum, state)
        out[:, index] = spectrum
    return out


def synthesize_frames(spectra: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """(channels, frames, bins) -> (channels, frames * hop): the stream's output, still delayed by n_fft - hop."""
    from samstream.kernels.stft import istft_synthesize, make_istft_state

    channels, frames, _ = spectra.shape
    state = make_istft_state(n_fft, hop, channels)
    out = np.zeros((channels, frames * hop), np.float32)
    hop_out = np.zeros((channels, hop), np.float32)
    for index in range(frames):
        istft_synthesize(np.ascontiguousarray(spectra[:, index]), hop_out, state)
        out[:, index * hop:(index + 1) * hop] = hop_out
    return out
