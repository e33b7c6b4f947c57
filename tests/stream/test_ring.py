"""The SPSC ring: semantics, sanitising, and two real threads hammering it."""
import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from samstream.kernels.ring import CLIPPED, NON_FINITE, make_ring_state, ring_write_guarded
from samstream.stream.ring import RingBuffer


def test_capacity_rounds_up_to_a_power_of_two_and_refuses_overflow():
    ring = RingBuffer(2, 100)
    assert ring.capacity == 128
    assert ring.write(np.ones((2, 100), np.float32))
    assert not ring.write(np.ones((2, 29), np.float32)), "a write that does not fit must be refused whole"
    assert ring.available() == 100 and ring.space() == 28
    out = np.zeros((2, 101), np.float32)
    assert not ring.read(out), "a read beyond what is there must be refused whole"
    assert ring.read(out[:, :100]) and ring.available() == 0


def test_data_wraps_around_in_order():
    ring = RingBuffer(1, 8)
    sequence = np.arange(1000, dtype=np.float32)
    out = np.zeros((1, 5), np.float32)
    received = []
    for start in range(0, 1000, 5):
        assert ring.write(sequence[None, start:start + 5])
        assert ring.read(out)
        received.append(out[0].copy())
    assert np.array_equal(np.concatenate(received), sequence)


def test_guarded_write_replaces_non_finite_samples_and_clips_the_rest():
    state = make_ring_state(1, 8)
    tallies = np.zeros(4, np.int64)
    block = np.array([[np.nan, np.inf, -np.inf, 9.0, -9.0, 0.5]], np.float32)
    assert ring_write_guarded(block, state, 4.0, tallies)
    assert np.array_equal(state.buffer[0, :6], [0, 0, 0, 4, -4, 0.5])
    assert tallies[NON_FINITE] == 3 and tallies[CLIPPED] == 2


def run_two_threads(chunks_in, chunks_out, channels, capacity, total):
    """Producer pushes a counting sequence in ``chunks_in`` sizes; consumer pops ``chunks_out`` sizes.

    Writes and reads are all or nothing, so the capacity must hold the largest write plus
    the largest read, or both sides could wait on each other for ever.
    """
    assert capacity >= max(chunks_in) + max(chunks_out)
    ring = RingBuffer(channels, capacity)
    source = np.arange(total, dtype=np.float64)
    received = np.full(total, -1.0)
    errors = []

    def produce():
        position, turn = 0, 0
        while position < total:
            size = min(chunks_in[turn % len(chunks_in)], total - position)
            block = np.repeat(source[None, position:position + size], channels, axis=0).astype(np.float32)
            if ring.write(block):
                position += size
                turn += 1
            else:
                time.sleep(0)  # full: let the consumer have the interpreter

    def consume():
        position, turn = 0, 0
        while position < total:
            size = min(chunks_out[turn % len(chunks_out)], total - position)
            block = np.zeros((channels, size), np.float32)
            if ring.read(block):
                if not np.all(block == block[0]):
                    errors.append(f"channels disagree at {position}")
                received[position:position + size] = block[0]
                position += size
                turn += 1
            else:
                time.sleep(0)  # empty: let the producer have the interpreter

    threads = [threading.Thread(target=produce), threading.Thread(target=consume)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a thread hung"
    assert not errors, errors
    return source, received


@settings(max_examples=30, deadline=None)
@given(chunks_in=st.lists(st.integers(1, 300), min_size=1, max_size=8),
       chunks_out=st.lists(st.integers(1, 300), min_size=1, max_size=8),
       channels=st.integers(1, 3))
def test_every_sample_arrives_once_and_in_order_across_two_threads(chunks_in, chunks_out, channels):
    # float32 holds every integer below 2**24 exactly, so the counting sequence is lossless.
    source, received = run_two_threads(chunks_in, chunks_out, channels, 600, 20000)
    assert np.array_equal(received, source)


def test_long_two_thread_run_with_a_small_ring():
    source, received = run_two_threads([1, 7, 100, 33], [64, 5, 120, 1], 2, 256, 300000)
    assert np.array_equal(received, source)


@pytest.mark.parametrize("channels, capacity", [(0, 8), (1, 0)])
def test_invalid_rings_are_refused(channels, capacity):
    with pytest.raises(ValueError):
        RingBuffer(channels, capacity)
