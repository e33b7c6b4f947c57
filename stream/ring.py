"""The SPSC ring buffer that joins the audio callback to the engine."""
from __future__ import annotations

import numpy as np

from samstream.kernels.ring import (
    make_ring_state,
    ring_available,
    ring_read,
    ring_space,
    ring_write,
    ring_write_zeros,
)


class RingBuffer:
    """Preallocated (channels, capacity) float ring; one producer thread, one consumer thread.

    The producer calls only ``write``/``write_zeros``/``space``, the consumer only
    ``read``/``available``; each side then writes only its own counter.
    """

    def __init__(self, channels: int, min_capacity: int, dtype=np.float32):
        self.state = make_ring_state(channels, min_capacity, dtype)

    @property
    def channels(self) -> int:
        return self.state.buffer.shape[0]

    @property
    def capacity(self) -> int:
        return self.state.buffer.shape[1]

    def available(self) -> int:
        return ring_available(self.state)

    def space(self) -> int:
        return ring_space(self.state)

    def write(self, block: np.ndarray) -> bool:
        return ring_write(block, self.state)

    def write_zeros(self, count: int) -> bool:
        return ring_write_zeros(count, self.state)

    def read(self, block: np.ndarray) -> bool:
        return ring_read(block, self.state)
