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
