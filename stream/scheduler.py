"""The block scheduler: any host block size in, the engine's fixed hop inside.

Host callbacks hand over blocks of whatever size the host chose (32 to 4096 samples,
and it may change from one callback to the next); the engine wants exactly one hop.
Input goes into a ring, every complete hop runs through the engine into an output
ring, and the host's block is read back from the output ring.

The output ring starts with ``buffer_delay`` samples of silence so that a block can
always be answered. After any sequence of blocks totalling S samples, the input ring
holds S mod hop samples that no hop has consumed yet, at most hop - gcd(block, hop)
for a fixed block size and hop - 1 when sizes vary; that bound is the delay. So the
reported latency, engine latency plus buffer delay, is the same whatever the host does.
"""
from __future__ import annotations

from dataclasses import dataclass
from math import gcd

import numpy as np

from samstream.kernels.ring import (
    CLIPPED,
    NON_FINITE,
    make_ring_state,
    ring_available,
    ring_read,
    ring_write,
    ring_write_guarded,
    ring_write_zeros,
)

from .engine import ConfigurationError, Engine

MAX_BLOCK = 16384
# Full scale is 1.0; anything past +-4 (12 dB over) is a broken source, not music.
DEFAULT_INPUT_LIMIT = 4.0
# Tally slots after the ring's own NON_FINITE and CLIPPED.
OVERSIZED = 2
HOPS = 3


@dataclass(frozen=True)
class SchedulerStats:
    non_finite_samples: int  # NaN or Inf replaced by silence before the engine saw them
    clipped_samples: int  # samples beyond the input limit, clipped
    oversized_blocks: int  # blocks longer than max_block, processed in max_block pieces
    hops: int  # engine calls so far


def buffer_delay(hop: int, host_block: int | None) -> int:
    """Samples of input that may wait for a hop to complete: the latency blocks add to a hop."""
    if host_block is None:
        return hop - 1
    return hop - gcd(host_block, hop)


class HostBlockTiming:
    """The hop and buffer delay of whatever runs ``self.engine`` under host blocks of ``self.host_block``."""

    engine: Engine
    host_block: int | None

    @property
    def hop(self) -> int:
        return self.engine.hop

    @property
    def buffer_delay(self) -> int:
        return buffer_delay(self.hop, self.host_block)


class BlockScheduler(HostBlockTiming):
    """Runs an ``Engine`` under a host that calls back with blocks of any size.

    ``host_block``: the block size when the host promises to keep it fixed (JACK's
    period, say); the buffer delay then shrinks to hop - gcd(host_block, hop), which is
    zero when the block is a multiple of the hop. Left as None, any size is accepted.
    """

    def __init__(self, engine: Engine, *, host_block: int | None = None,
                 input_limit: float = DEFAULT_INPUT_LIMIT):
        if host_block is not None and host_block < 1:
            raise ConfigurationError(f"host_block must be a positive number of samples, got {host_block}")
        if not input_limit > 0:
            raise ConfigurationError(f"input_limit must be positive, got {input_limit}")
        self.engine = engine
        self.host_block = host_block
        self.input_limit = float(input_limit)
        self.channels = 0
        self.max_block = 0

    @property
    def latency_samples(self) -> int:
        return self.engine.latency_samples + self.buffer_delay

    def configure(self, sample_rate: int, max_block: int, channels: int) -> None:
        if int(max_block) != max_block or not 1 <= max_block <= MAX_BLOCK:
            raise ConfigurationError(f"max_block must be 1..{MAX_BLOCK} samples, got {max_block}")
        if self.host_block is not None and self.host_block > max_block:
            raise ConfigurationError(f"host_block {self.host_block} exceeds max_block {max_block}")
        self.engine.configure(sample_rate, max_block, channels)
        self.sample_rate = sample_rate
        self.channels = channels
        self.max_block = max_block
        hop = self.hop
        self._input = make_ring_state(channels, max_block + hop)
        self._output = make_ring_state(channels, max_block + hop + self.buffer_delay)
        self._hop_in = np.zeros((channels, hop), dtype=np.float32)
        self._hop_out = np.zeros((channels, hop), dtype=np.float32)
        self._tallies = np.zeros(4, dtype=np.int64)
        ring_write_zeros(self.buffer_delay, self._output)
        self._warm_up()

    def _warm_up(self) -> None:
        """Compile and touch every kernel now, so the first real callback does no JIT work."""
        self.engine.process(self._hop_in, self._hop_out)
        self.engine.configure(self.sample_rate, self.max_block, self.channels)
        scratch = make_ring_state(self.channels, 4)
        tallies = np.zeros(4, dtype=np.int64)
        wide = np.zeros((self.channels, 4), dtype=np.float32)
        # Hosts hand over C-ordered blocks, transposed (frames, channels) views and slices.
        for block in (np.zeros((self.channels, 2), dtype=np.float32),
                      np.zeros((2, self.channels), dtype=np.float32).T, wide[:, :2]):
            ring_write_guarded(block, scratch, self.input_limit, tallies)
            ring_read(block, scratch)
        ring_write(wide, scratch)
        ring_available(scratch)

    @property
    def stats(self) -> SchedulerStats:
        tallies = self._tallies
        return SchedulerStats(int(tallies[NON_FINITE]), int(tallies[CLIPPED]),
                              int(tallies[OVERSIZED]), int(tallies[HOPS]))

    def process(self, block_in: np.ndarray, block_out: np.ndarray) -> None:
        """block_in and block_out: float32 (channels, n), any n including 0.

        A block longer than ``max_block`` is processed in pieces and counted; NaN, Inf and
        out-of-range samples are sanitised on the way in and counted.
        """
        if block_in.shape != block_out.shape or block_in.ndim != 2 or block_in.shape[0] != self.channels:
            raise ValueError(f"blocks must both be (channels={self.channels}, n); "
                             f"got {block_in.shape} and {block_out.shape}")
        if block_in.dtype != np.float32 or block_out.dtype != np.float32:
            raise TypeError(f"blocks must be float32, got {block_in.dtype} and {block_out.dtype}")
        count = block_in.shape[1]
        if count <= self.max_block:
            self._process_piece(block_in, block_out)
            return
        self._tallies[OVERSIZED] += 1
        for start in range(0, count, self.max_block):
            stop = min(start + self.max_block, count)
            self._process_piece(block_in[:, start:stop], block_out[:, start:stop])

    def _process_piece(self, block_in: np.ndarray, block_out: np.ndarray) -> None:
        ring_write_guarded(block_in, self._input, self.input_limit, self._tallies)
        hop = self.hop
        while ring_available(self._input) >= hop:
            ring_read(self._hop_in, self._input)
            self.engine.process(self._hop_in, self._hop_out)
            ring_write(self._hop_out, self._output)
            self._tallies[HOPS] += 1
        ring_read(block_out, self._output)
