"""The live split: an audio callback that only copies, and a worker thread that runs the Engine.

    callback:  block -> input ring (+ dry delay line)      output ring -> block
    worker:              input ring -> Engine (one hop) -> mix -> output ring

The callback never waits for the worker. The output ring starts with ``prefill`` samples
of silence: the scheduler's buffer delay (the part of a hop not yet complete) plus a
safety buffer that gives the worker time to deliver. The safety buffer is sized once, at
configure time, from the measured cost of a hop (it adapts to the model and the
machine), capped by ``max_latency``, and then fixed: the reported latency,
engine latency + buffer delay + safety, never changes while the stream runs. A hop that
is late anyway is a counted miss, bridged by the dry signal (``kernels.live``).

``threaded=False`` runs the same path without the thread: ``process`` runs the due hops
itself (file rendering faster than real time; no safety buffer is needed then).

A host rate the engine does not run at is converted on the worker (``stream.rate_convert``):
the callback and the latency are the host's, and ``sample_rate``, ``stream_samples`` and the
hop hook's position are the model's, so whatever keeps time by the model's hops stays in one
unit.
"""
from __future__ import annotations

import os
import select
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from math import lcm

import numpy as np

from samstream.kernels.live import (
    FIRST_MISS,
    LAST_MISS,
    MISSES,
    PUSHED,
    callback_pull,
    callback_push,
    delay_hop,
    glide_to,
    make_callback_state,
    make_mix_state,
    mix_hop,
)
from samstream.kernels.rate_convert import deliver_hop, make_conversion_state, next_hop
from samstream.kernels.ring import CLIPPED, NON_FINITE, make_ring_state, ring_available, ring_read, ring_write

from . import debug
from .engine import ConfigurationError, Engine
from .rate_convert import RateConversion
from .scheduler import HostBlockTiming, buffer_delay

# Per-hop times kept for the percentiles: the last ~44 s at a 256-sample hop. Few enough
# that a status request sorts them in well under a hop.
TIMING_SLOTS = 1 << 13
WARMUP_HOPS = 96
WORKER_WARMUP_HOPS = 8
DEFAULT_INPUT_LIMIT = 4.0
# The worker's time for a hop before a miss: this many times the warm-up's p99, plus the floor.
WORKER_TIME_PER_WARMUP_P99 = 4.0
WORKER_TIME_FLOOR_MS = 2.0
WORKER_TIME_MIN_HOPS = 2.0  # and never less than this many hops


@dataclass(frozen=True)
class LiveStats:
    hops: int
    misses: int
    non_finite_samples: int
    clipped_samples: int
    stream_samples: int
    first_miss_sample: int  # -1: none yet
    last_miss_sample: int
    hop_ms_p50: float
    hop_ms_p99: float
    hop_ms_p999: float
    hop_ms_max: float
    misses_per_minute: float  # over the last minute of stream; 0 only when none were missed in it


class RecentRate:
    """Events a minute over the last ``window_s`` seconds, from a running total read now and then.

    A total since start hides whether the trouble is now or an hour ago; this keeps one
    reading a second and compares with the newest reading at least a window old. Before a
    whole window has streamed, the events so far count over a whole window (no extrapolation
    of a start-up burst). Safe to call from several threads.
    """

    def __init__(self, window_s: float = 60.0):
        self.window_s = window_s
        self._readings: deque[tuple[float, int]] = deque([(0.0, 0)])
        self._lock = threading.Lock()

    def per_minute(self, seconds: float, total: int) -> float:
        with self._lock:
            readings = self._readings
            if seconds - readings[-1][0] >= 1.0:
                readings.append((seconds, total))
            while len(readings) > 1 and readings[1][0] <= seconds - self.window_s:
                readings.popleft()  # the oldest kept reading is the newest at least a window old
            then, total_then = readings[0]
        return 60.0 * (total - total_then) / max(seconds - then, self.window_s)


# The lowest real-time priority: below JACK's threads (its clients' process threads run at
# FIFO 5 by default, the server at 10), which must preempt the worker, yet above everything
# at normal priority, a training run included.
WORKER_PRIORITY = 1


def raise_priority() -> bool:
    """Give the calling thread real-time (FIFO) scheduling where the system allows it."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(WORKER_PRIORITY))
    except (AttributeError, PermissionError, OSError):
        return False
    return True


def worst_slack(prefill: int, block: int, hop: int) -> int:
    """Fewest host periods the worker gets for a hop, with ``prefill`` samples primed in the output.

    Callback j reads stream samples [j*block, (j+1)*block), which are worker samples shifted by
    ``prefill``; the last hop it needs has its input complete in callback c, and the worker
    has the j - c periods between. The pattern repeats every lcm(block, hop) samples. Only
    the prefill's position against the block grid counts: samples beyond the last whole
    period add latency and no time, so the search below stops at the first prefill that
    gives enough periods.
    """
    pattern = lcm(block, hop) // block
    worst = None
    # From the first callback that reads past the primed samples, over two whole patterns.
    first = prefill // block + 1
    for callback in range(first, first + 2 * pattern):
        needed_end = (callback + 1) * block - prefill
        if needed_end <= 0:
            continue
        last_hop = -(-needed_end // hop) - 1
        completing = -(-((last_hop + 1) * hop) // block) - 1
        slack = callback - completing
        worst = slack if worst is None else min(worst, slack)
    return worst if worst is not None else 0


class LiveProcessor(HostBlockTiming):
    """Runs ``engine`` behind a real-time callback with a constant, reported latency.

    ``host_block``: the block size when the host keeps it fixed (a JACK period); None
    accepts any size up to ``max_block``. ``hop_hook(stream_sample)`` runs on the worker
    before every hop (prompt changes, scheduled control changes land there).
    """

    def __init__(self, engine: Engine, *, host_block: int | None = None, max_block: int = 4096,
                 threaded: bool = True, crossfade_ms: float = 20.0, max_latency_ms: float | None = None,
                 safety: int | None = None, worker_time_ms: float | None = None,
                 input_limit: float = DEFAULT_INPUT_LIMIT,
                 hop_hook: Callable[[int], None] | None = None):
        if host_block is not None and not 1 <= host_block <= max_block:
            raise ConfigurationError(f"host block must be 1..{max_block} samples, got {host_block}")
        if crossfade_ms < 0:
            raise ConfigurationError(f"crossfade must not be negative, got {crossfade_ms} ms")
        self.engine = engine
        self.host_block = host_block
        self.max_block = max_block
        self.threaded = threaded
        self.crossfade_ms = crossfade_ms
        self.max_latency_ms = max_latency_ms
        self.requested_safety = safety
        self.requested_worker_time_ms = worker_time_ms  # the time a hop may take; None: from the warm-up
        self.input_limit = input_limit
        self.hop_hook = hop_hook
        self.sample_rate = 0  # the engine's rate
        self.host_rate = 0  # the callback's rate
        self.channels = 0
        self._conversion: RateConversion | None = None
        self._buffer_delay = 0
        self.safety = 0
        self._thread: threading.Thread | None = None
        self.realtime_priority = False  # whether the worker got real-time scheduling
        self._running = False
        self._pending_weights: tuple[float, float, float, float] | None = None
        self._weights_lock = threading.Lock()

    # configuration ------------------------------------------------------------------

    @property
    def latency_samples(self) -> int:
        """In host samples: the engine (and any rate conversion), the buffer delay, the safety buffer."""
        return self._path_delay + self.buffer_delay + self.safety

    @property
    def _path_delay(self) -> int:
        return self.engine.latency_samples if self._conversion is None else self._conversion.delay

    @property
    def buffer_delay(self) -> int:
        return self._buffer_delay

    @property
    def latency_ms(self) -> float:
        return 1000.0 * self.latency_samples / self.host_rate if self.host_rate else 0.0

    def _model_rate_for(self, host_rate: int) -> int:
        supported = self.engine.supported_sample_rates
        return host_rate if supported is None or host_rate in supported else supported[0]

    def configure(self, sample_rate: int, channels: int) -> None:
        """Make every buffer, warm every shape up, size the safety buffer. Not while running."""
        if self._running:
            raise ConfigurationError("stop the stream before configuring it again")
        engine = self.engine
        model_rate = self._model_rate_for(sample_rate)
        engine.configure(model_rate, self.max_block, channels)
        self.sample_rate, self.host_rate, self.channels = model_rate, sample_rate, channels
        hop = self.hop
        self._conversion = None if model_rate == sample_rate else \
            RateConversion(sample_rate, model_rate, channels, hop, engine.latency_samples, self.max_block)
        self._buffer_delay = buffer_delay(hop, self.host_block) if self._conversion is None else \
            self._conversion.buffer_delay(self.host_block)
        host_hop = hop if self._conversion is None else self._conversion.host_hop
        self._hop_in = np.zeros((channels, hop), np.float32)
        self._target = np.zeros((channels, hop), np.float32)
        self._dry = np.zeros((channels, hop), np.float32)
        self._mixed = np.zeros((3 * channels, hop), np.float32)
        self._dry_line = np.zeros((channels, engine.latency_samples), np.float32)
        self._dry_position = np.zeros(1, np.int64)
        self._no_taps = np.zeros((0, self.max_block), np.float32)
        self._timings = np.zeros(TIMING_SLOTS, np.int64)
        self._hops = 0
        self._slowest = 0
        self._miss_rate = RecentRate()
        self.warmup_ms = self._warm_up()
        self.safety = self._choose_safety()
        self._callback = make_callback_state(channels, self.max_block, host_hop, self.latency_samples,
                                             self.buffer_delay + self.safety, self.input_limit)
        # The mix runs at the host's rate (after the way back when the rates differ).
        n_fade = max(1, round(self.crossfade_ms * sample_rate / 1000))
        self._mix = make_mix_state(n_fade, host_hop, sample_rate)
        self._touch_kernels()
        engine.reset()
        self._hops = 0
        self._slowest = 0

    def _warm_up(self) -> np.ndarray:
        """Run the engine on noise so every shape is planned and compiled; return hop times (ms)."""
        noise = np.random.default_rng(0).standard_normal(self._hop_in.shape).astype(np.float32) * 0.1
        times = np.zeros(WARMUP_HOPS)
        for index in range(WARMUP_HOPS):
            start = time.perf_counter_ns()
            self.engine.process(noise, self._target)
            times[index] = (time.perf_counter_ns() - start) / 1e6
        return times

    def _choose_safety(self) -> int:
        if not self.threaded:
            return 0
        if self.requested_safety is not None:
            return int(self.requested_safety)
        # What a hop may need once the stream runs. The warm-up runs its hops back to back; live,
        # each hop starts cold after the worker slept, beside the audio threads, and its tail is
        # longer: on a 2-core machine the soak bench measured hops of up to 6.5-9.5 ms against a
        # warm-up p99 of 1.2-2 ms. And the host may hand over two periods at once when it catches
        # up after an xrun (this machine's JACK dummy server has about five a minute). So the
        # worker gets several times the warm-up p99, and at least two hops: 8 ms of worker time
        # gave 0.2-1 misses a minute in soaks, 10.7 ms none.
        warm_p99 = float(np.percentile(self.warmup_ms[WARMUP_HOPS // 4:], 99))
        needed_ms = max(WORKER_TIME_PER_WARMUP_P99 * warm_p99 + WORKER_TIME_FLOOR_MS,
                        WORKER_TIME_MIN_HOPS * 1000.0 * self.hop / self.sample_rate)
        if self.requested_worker_time_ms is not None:
            needed_ms = self.requested_worker_time_ms
        if self.host_block is None:
            # Any block size may come: plan for the largest.
            return self.max_block + -(-int(needed_ms * self.host_rate / 1000) // 32) * 32
        block, hop, floor = self.host_block, self.hop, self._path_delay
        budget = None if self.max_latency_ms is None else int(self.max_latency_ms * self.host_rate / 1000)
        if budget is not None and self._conversion is not None:
            # The cap is on the model's own path: converting the rate adds its filters and the
            # hops' misalignment with the blocks on top (2-3 ms).
            own_path = (self.engine.latency_samples + hop - 1) * self.host_rate // self.sample_rate
            budget += max(0, floor + self.buffer_delay - own_path)
        first = self.buffer_delay + 1
        best, best_slack = None, 0
        last = first + hop + 8 * block if budget is None else budget - floor
        slack_of = (lambda prefill: worst_slack(prefill, block, hop)) if self._conversion is None \
            else (lambda prefill: self._conversion.worst_slack(prefill, block))
        for prefill in range(first, last + 1):
            slack = slack_of(prefill)
            if slack > best_slack:
                best, best_slack = prefill, slack
                if slack * block * 1000 / self.host_rate >= needed_ms:
                    break
        if best is None:
            shortest = next(prefill for prefill in range(first, first + 2 * hop + 2 * block) if slack_of(prefill) >= 1)
            raise ConfigurationError(
                f"a latency cap of {self.max_latency_ms:g} ms is below what this model and block "
                f"need ({1000 * (floor + shortest) / self.host_rate:.1f} ms)")
        return best - self.buffer_delay

    def _touch_kernels(self) -> None:
        channels = self.channels
        scratch = make_callback_state(channels, 8, self.hop, 4, 0, self.input_limit)
        block = np.zeros((channels, 4), np.float32)
        for view in (block, np.zeros((4, channels), np.float32).T, block[:, :2]):
            callback_push(view, scratch)
            callback_pull(block, self._no_taps[:, :4], scratch)
            callback_pull(block, np.zeros((2 * channels, 4), np.float32), scratch)
            callback_pull(np.zeros((4, channels), np.float32).T, self._no_taps[:, :4], scratch)
        ring_write(np.zeros((3 * channels, 4), np.float32), scratch.output_ring)
        ring_read(self._hop_in[:, :0], scratch.input_ring)
        ring_available(scratch.input_ring)
        glide_to(1.0, 0.0, 0.0, self._mix)
        mix_hop(self._dry, self._target, self._mixed, self._mix)
        delay_hop(self._hop_in, self._dry, self._dry_line, self._dry_position)
        if self._conversion is not None:
            # A scratch conversion of the same rates compiles the worker's kernels for the real one.
            conversion = self._conversion
            scratch_state = make_conversion_state(conversion.host_rate, conversion.model_rate, channels, self.hop, 8,
                                                  0, 4)
            next_hop(scratch.input_ring, self._hop_in, scratch_state)
            deliver_hop(self._target, make_ring_state(3 * channels, 2 * conversion.host_hop), self._mix,
                        scratch_state)
        self._mix.position[0] = self._mix.n_fade
        self._mix.meters[:] = 0.0
        self._dry_line[:] = 0.0

    # control side -------------------------------------------------------------------

    def set_weights(self, dry: float, target: float, residual: float, safe_gain: float) -> None:
        """From any thread: the mix glides to these weights from the next hop on."""
        with self._weights_lock:
            self._pending_weights = (dry, target, residual, safe_gain)

    # audio callback -----------------------------------------------------------------

    def process(self, block_in: np.ndarray, block_out: np.ndarray, taps_out: np.ndarray | None = None) -> bool:
        """The audio callback's whole job: (channels, n) float32 in and out. Returns True on a miss."""
        if debug.CHECKS:
            assert block_in.shape == block_out.shape and block_in.shape[0] == self.channels, block_in.shape
            assert block_in.shape[1] <= self.max_block, block_in.shape
        callback_push(block_in, self._callback)
        if self.threaded:
            try:
                os.write(self._wake_write, b"\0")
            except (BlockingIOError, OSError):
                pass  # the pipe is full: the worker is already awake with work queued
        else:
            self.pump()
        taps = self._no_taps[:, :block_in.shape[1]] if taps_out is None else taps_out
        return callback_pull(block_out, taps, self._callback)

    # worker -------------------------------------------------------------------------

    def pump(self) -> int:
        """Run every hop whose input is complete; returns how many ran."""
        ran = 0
        state = self._callback
        conversion = None if self._conversion is None else self._conversion.state
        while True:
            if conversion is None:
                if ring_available(state.input_ring) < self.hop:
                    break
                ring_read(self._hop_in, state.input_ring)
            elif not next_hop(state.input_ring, self._hop_in, conversion):
                break
            start = time.perf_counter_ns()
            if self.hop_hook is not None:
                self.hop_hook(self.stream_samples())
            if self._pending_weights is not None:
                with self._weights_lock:
                    dry, target, residual, safe = self._pending_weights
                    self._pending_weights = None
                glide_to(dry, target, residual, self._mix)
                state.settings[0] = safe
            self.engine.process(self._hop_in, self._target)
            delay_hop(self._hop_in, self._dry, self._dry_line, self._dry_position)
            # A full ring means the callback stopped reading: the hop is dropped rather than waited on.
            if conversion is None:
                mix_hop(self._dry, self._target, self._mixed, self._mix)
                ring_write(self._mixed, state.output_ring)
            else:
                deliver_hop(self._target, state.output_ring, self._mix, conversion)
            elapsed = time.perf_counter_ns() - start
            self._timings[self._hops % TIMING_SLOTS] = elapsed
            if elapsed > self._slowest:
                self._slowest = elapsed
            self._hops += 1
            ran += 1
        return ran

    def start(self) -> None:
        if not self.threaded or self._running:
            return
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_write, False)
        self._running = True
        ready = threading.Event()
        self._thread = threading.Thread(target=self._work, args=(ready,), name="samstream-worker", daemon=True)
        self._thread.start()
        ready.wait(timeout=30)

    def _work(self, ready: threading.Event) -> None:
        self.realtime_priority = raise_priority()
        # The first hops a new thread runs are slow (the runtime's per-thread set-up): run
        # them here, on silence, before the first callback can be waiting for them.
        for _ in range(WORKER_WARMUP_HOPS):
            self.engine.process(self._dry, self._target)
        self.engine.reset()
        self._dry[:] = 0.0
        self._target[:] = 0.0
        ready.set()
        while self._running:
            ready, _, _ = select.select([self._wake_read], [], [], 0.05)
            if ready:
                os.read(self._wake_read, 4096)
            self.pump()

    def stop(self) -> None:
        if not self._running:
            return
        self._running = False
        os.write(self._wake_write, b"\0")
        if self._thread is not None:
            self._thread.join(timeout=5)
        os.close(self._wake_read)
        os.close(self._wake_write)

    @property
    def callback_state(self):
        """The arrays the audio callback works on (for a compiled, native callback)."""
        return self._callback

    @property
    def wake_fd(self) -> int:
        """The pipe end a callback writes one byte to after each block (valid once started)."""
        return self._wake_write

    @property
    def running(self) -> bool:
        return self._running

    @property
    def current_hop(self) -> np.ndarray:
        """The hop the worker is running now (valid inside ``hop_hook``)."""
        return self._hop_in

    @property
    def previous_aligned_hop(self) -> tuple[np.ndarray, np.ndarray]:
        """The last hop's dry input and target, delayed to line up (valid inside ``hop_hook``)."""
        return self._dry, self._target

    # reporting ----------------------------------------------------------------------

    def stream_samples(self) -> int:
        """Samples into the stream at the model's rate (the host's, converted, when they differ)."""
        return self._in_model_samples(int(self._callback.counters[PUSHED])) if self.channels else 0

    def _in_model_samples(self, host_samples: int) -> int:
        return host_samples if host_samples < 0 else host_samples * self.sample_rate // self.host_rate

    def stats(self) -> LiveStats:
        count = min(self._hops, TIMING_SLOTS)
        times = self._timings[:count] / 1e6 if count else np.zeros(1)
        tallies = self._callback.tallies
        misses = int(self._callback.counters[MISSES])
        seconds = self.stream_samples() / self.sample_rate if self.sample_rate else 0.0
        return LiveStats(
            hops=self._hops, misses=misses, misses_per_minute=self._miss_rate.per_minute(seconds, misses),
            non_finite_samples=int(tallies[NON_FINITE]),
            clipped_samples=int(tallies[CLIPPED]),
            first_miss_sample=self._in_model_samples(int(self._callback.counters[FIRST_MISS])),
            last_miss_sample=self._in_model_samples(int(self._callback.counters[LAST_MISS])),
            stream_samples=self.stream_samples(),
            hop_ms_p50=float(np.percentile(times, 50)), hop_ms_p99=float(np.percentile(times, 99)),
            hop_ms_p999=float(np.percentile(times, 99.9)), hop_ms_max=self._slowest / 1e6)

    def meters_db(self) -> dict[str, float]:
        """Smoothed levels in dBFS (RMS): input, target, residual, output."""
        levels = 10.0 * np.log10(np.maximum(self._mix.meters, 1e-12))
        return {name: float(round(level, 2)) for name, level in zip(("input", "target", "residual", "output"),
                                                                    levels, strict=True)}
