"""Single-producer single-consumer ring buffer kernels.

The state holds two running counters: ``counters[WRITTEN]`` is written only by the
producer, ``counters[READ]`` only by the consumer. Each side reads the other's counter,
copies, then publishes its own, so neither ever sees a half-copied region. Between Python
threads the interpreter lock orders the data stores before the counter store. The native
JACK callback (``plugin_host.jack_native``) runs these kernels without that lock: there the
order rests on x86-64 keeping stores in program order (and loads likewise), and on the
counter being stored after the copy loop; a weaker-ordered CPU would need fences here.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

WRITTEN = 0
READ = 1

# Guarded-write tallies, owned by the producer.
NON_FINITE = 0
CLIPPED = 1


class RingState(NamedTuple):
    buffer: np.ndarray  # (channels, capacity), capacity a power of two
    counters: np.ndarray  # int64[2]: samples ever written, samples ever read


def make_ring_state(channels: int, min_capacity: int, dtype=np.float32) -> RingState:
    if channels < 1:
        raise ValueError(f"a ring needs at least one channel, got {channels}")
    if min_capacity < 1:
        raise ValueError(f"a ring needs a capacity of at least one sample, got {min_capacity}")
    capacity = 1 << int(min_capacity - 1).bit_length()
    return RingState(np.zeros((channels, capacity), dtype=dtype), np.zeros(2, dtype=np.int64))


@njit(cache=True)
def ring_available(state):
    """Samples the consumer can read now."""
    return state.counters[WRITTEN] - state.counters[READ]


@njit(cache=True)
def ring_space(state):
    """Samples the producer can write now."""
    return state.buffer.shape[1] - (state.counters[WRITTEN] - state.counters[READ])


@njit(cache=True)
def ring_write(block, state):
    """Append ``block`` (channels, n); all or nothing. Returns False when it does not fit."""
    buffer = state.buffer
    count = block.shape[1]
    if ring_space(state) < count:
        return False
    written = state.counters[WRITTEN]
    mask = buffer.shape[1] - 1
    for channel in range(buffer.shape[0]):
        for index in range(count):
            buffer[channel, (written + index) & mask] = block[channel, index]
    state.counters[WRITTEN] = written + count
    return True


@njit(cache=True)
def ring_write_guarded(block, state, limit, tallies):
    """``ring_write`` that never lets NaN, Inf or samples beyond +-``limit`` through.

    NaN and Inf become 0 (a hole is safer than a spike), larger magnitudes are clipped
    to ``limit``; ``tallies[NON_FINITE]`` and ``tallies[CLIPPED]`` count what was changed.
    """
    buffer = state.buffer
    count = block.shape[1]
    if ring_space(state) < count:
        return False
    written = state.counters[WRITTEN]
    mask = buffer.shape[1] - 1
    for channel in range(buffer.shape[0]):
        for index in range(count):
            sample = block[channel, index]
            if not np.isfinite(sample):
                sample = 0.0
                tallies[NON_FINITE] += 1
            elif sample > limit:
                sample = limit
                tallies[CLIPPED] += 1
            elif sample < -limit:
                sample = -limit
                tallies[CLIPPED] += 1
            buffer[channel, (written + index) & mask] = sample
    state.counters[WRITTEN] = written + count
    return True


@njit(cache=True)
def ring_write_zeros(count, state):
    """Append ``count`` samples of silence; all or nothing."""
    buffer = state.buffer
    if ring_space(state) < count:
        return False
    written = state.counters[WRITTEN]
    mask = buffer.shape[1] - 1
    for channel in range(buffer.shape[0]):
        for index in range(count):
            buffer[channel, (written + index) & mask] = 0.0
    state.counters[WRITTEN] = written + count
    return True


@njit(cache=True)
def ring_read(block, state):
    """Fill ``block`` (channels, n) from the ring; all or nothing. Returns False when short."""
    buffer = state.buffer
    count = block.shape[1]
    if ring_available(state) < count:
        return False
    read = state.counters[READ]
    mask = buffer.shape[1] - 1
    for channel in range(buffer.shape[0]):
        for index in range(count):
            block[channel, index] = buffer[channel, (read + index) & mask]
    state.counters[READ] = read + count
    return True
