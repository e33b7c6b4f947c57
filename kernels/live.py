"""Kernels of the live path: the audio callback's two halves and the worker's output mix.

The callback pushes its block into the input ring (sanitised) and into a delay line of
the dry signal, then pulls its block from the output ring. When the worker has not
delivered in time the block is a miss: the dry signal under the current mix law goes
out instead, with a continuity correction that fades the last output sample's offset
away (no step at the switch), and the late samples are skipped when they arrive so the
stream never slips. Coming back, the model's output is faded in over one block.

The worker mixes (dry, target, residual) with weights that glide linearly from the old
setting to the new one, so mode, mix, gain and bypass changes never click. Linear, not
equal-power: the outputs before and after share the same sources (they are correlated),
and an equal-power curve would lift a mix change by up to 3 dB halfway.
"""
from __future__ import annotations

from math import cos, pi, sin
from typing import NamedTuple

import numpy as np
from numba import njit

from .ring import RingState, make_ring_state, ring_available, ring_read, ring_write_guarded

# callback counters
MISSES = 0  # blocks answered with the safe output
OWED = 1  # late samples still to skip when they arrive
MISSING = 2  # 1 while the safe output is playing
PUSHED = 3  # samples that entered the stream
DRY_WRITE = 4  # delay-line write position
NON_FINITE_IN = 5
FIRST_MISS = 6  # stream sample of the first miss, -1 before any
LAST_MISS = 7  # stream sample of the latest miss


class CallbackState(NamedTuple):
    input_ring: RingState  # (channels, ...): callback -> worker
    output_ring: RingState  # (3 * channels, ...): worker -> callback: output, target, residual
    dry_line: np.ndarray  # (channels, capacity) delay line of the sanitised input
    dry_block: np.ndarray  # (channels, max_block) scratch: the dry input, delayed by the latency
    wet_block: np.ndarray  # (3 * channels, max_block) scratch
    last_output: np.ndarray  # (channels,) last sample sent, per channel
    counters: np.ndarray  # int64[8]
    tallies: np.ndarray  # int64[4] guarded-write tallies of the input ring
    settings: np.ndarray  # float64[2]: [safe gain, input limit]; written by the worker's owner
    latency: int  # samples between a sample entering and its answer leaving


def make_callback_state(channels: int, max_block: int, hop: int, latency: int, prefill: int,
                        input_limit: float) -> CallbackState:
    line = 1 << int(latency + max_block).bit_length()
    state = CallbackState(
        input_ring=make_ring_state(channels, 2 * max_block + 4 * hop),
        output_ring=make_ring_state(3 * channels, prefill + 2 * max_block + 4 * hop),
        dry_line=np.zeros((channels, line), np.float32),
        dry_block=np.zeros((channels, max_block), np.float32),
        wet_block=np.zeros((3 * channels, max_block), np.float32),
        last_output=np.zeros(channels, np.float32),
        counters=np.array([0, 0, 0, 0, 0, 0, -1, -1], np.int64),
        tallies=np.zeros(4, np.int64),
        settings=np.array([1.0, input_limit]),
        latency=latency,
    )
    # The output ring starts with the silence that the prefill part of the latency is.
    state.output_ring.counters[0] = prefill
    return state


@njit(cache=True)
def callback_push(block_in, state):
    """Sanitise ``block_in`` (channels, n) into the input ring and the dry delay line.

    Returns False when the input ring is full (the worker has stalled): the block then
    still enters the delay line, so the safe output keeps playing.
    """
    accepted = ring_write_guarded(block_in, state.input_ring, state.settings[1], state.tallies)
    line = state.dry_line
    mask = line.shape[1] - 1
    position = state.counters[DRY_WRITE]
    limit = state.settings[1]
    channels, count = block_in.shape
    for channel in range(channels):
        for index in range(count):
            sample = block_in[channel, index]
            if not np.isfinite(sample):
                sample = 0.0
            elif sample > limit:
                sample = limit
            elif sample < -limit:
                sample = -limit
            line[channel, (position + index) & mask] = sample
    state.counters[DRY_WRITE] = position + count
    state.counters[PUSHED] += count
    return accepted


@njit(cache=True)
def _delayed_dry(count, state):
    line = state.dry_line
    mask = line.shape[1] - 1
    start = state.counters[DRY_WRITE] - count - state.latency
    gain = state.settings[0]
    for channel in range(line.shape[0]):
        for index in range(count):
            state.dry_block[channel, index] = line[channel, (start + index) & mask] * gain


@njit(cache=True)
def callback_pull(block_out, taps_out, state):
    """Fill ``block_out`` (channels, n) with the output due now; ``taps_out`` (2 * channels, n)
    gets target and residual (pass a (0, n) array to skip them). Returns True on a miss."""
    channels, count = block_out.shape
    counters = state.counters
    ring = state.output_ring
    available = ring_available(ring)
    owed = counters[OWED]
    if owed > 0 and available > 0:
        skip = min(owed, available)
        ring.counters[1] += skip
        counters[OWED] = owed - skip
        available -= skip
    _delayed_dry(count, state)
    dry = state.dry_block
    if counters[OWED] == 0 and available >= count:
        wet = state.wet_block[:, :count]
        ring_read(wet, ring)
        recovering = counters[MISSING] == 1
        for channel in range(channels):
            for index in range(count):
                sample = wet[channel, index]
                if recovering:
                    angle = 0.5 * pi * (index + 1) / count
                    sample = dry[channel, index] * cos(angle) + sample * sin(angle)
                block_out[channel, index] = sample
        for row in range(taps_out.shape[0]):
            for index in range(count):
                taps_out[row, index] = wet[channels + row, index]
        counters[MISSING] = 0
        missed = False
    else:
        entering = counters[MISSING] == 0
        for channel in range(channels):
            offset = state.last_output[channel] - dry[channel, 0] if entering else 0.0
            for index in range(count):
                fade = 0.5 * (1.0 + cos(pi * min(1.0, (index + 1) / count)))
                block_out[channel, index] = dry[channel, index] + offset * fade
        for row in range(taps_out.shape[0]):
            for index in range(count):
                # Safe taps: everything is residual, nothing is target.
                taps_out[row, index] = 0.0 if row < channels else dry[row - channels, index]
        counters[OWED] += count
        counters[MISSES] += 1
        counters[MISSING] = 1
        if counters[FIRST_MISS] < 0:
            counters[FIRST_MISS] = counters[PUSHED]
        counters[LAST_MISS] = counters[PUSHED]
        missed = True
    if count > 0:
        for channel in range(channels):
            state.last_output[channel] = block_out[channel, count - 1]
    return missed


class MixState(NamedTuple):
    weights: np.ndarray  # float64[2, 3]: [current, next] (dry, target, residual)
    position: np.ndarray  # int64[1]: samples into the glide; == n_fade when resting
    meters: np.ndarray  # float64[4]: smoothed mean squares of input, target, residual, output
    n_fade: int
    smoothing: float  # per-hop factor of the meters' exponential average


def make_mix_state(n_fade: int, hop: int, sample_rate: int, meter_seconds: float = 0.3) -> MixState:
    weights = np.zeros((2, 3))
    weights[:, 0] = 1.0
    return MixState(weights, np.array([n_fade], np.int64), np.zeros(4), max(1, n_fade),
                    float(np.exp(-hop / (meter_seconds * sample_rate))))


@njit(cache=True)
def glide_to(dry, target, residual, state):
    """Start gliding from where the mix is now towards new weights."""
    weights = state.weights
    if state.position[0] < state.n_fade:
        share = state.position[0] / state.n_fade
        for k in range(3):
            weights[0, k] = weights[0, k] * (1.0 - share) + weights[1, k] * share
    else:
        for k in range(3):
            weights[0, k] = weights[1, k]
    weights[1, 0] = dry
    weights[1, 1] = target
    weights[1, 2] = residual
    state.position[0] = 0


@njit(cache=True)
def mix_hop(dry_hop, target_hop, out_hop, state):
    """out_hop (3 * channels, hop): output, target, residual rows from dry and target hops."""
    channels, hop = dry_hop.shape
    weights = state.weights
    start = state.position[0]
    n_fade = state.n_fade
    e_in = e_target = e_residual = e_out = 0.0
    for index in range(hop):
        position = min(start + index + 1, n_fade)
        if position >= n_fade:
            w_dry, w_target, w_residual = weights[1, 0], weights[1, 1], weights[1, 2]
        else:
            share = position / n_fade
            w_dry = weights[0, 0] * (1.0 - share) + weights[1, 0] * share
            w_target = weights[0, 1] * (1.0 - share) + weights[1, 1] * share
            w_residual = weights[0, 2] * (1.0 - share) + weights[1, 2] * share
        for channel in range(channels):
            dry = dry_hop[channel, index]
            target = target_hop[channel, index]
            residual = dry - target
            output = w_dry * dry + w_target * target + w_residual * residual
            out_hop[channel, index] = output
            out_hop[channels + channel, index] = target
            out_hop[2 * channels + channel, index] = residual
            e_in += dry * dry
            e_target += target * target
            e_residual += residual * residual
            e_out += output * output
    state.position[0] = min(start + hop, n_fade)
    scale = 1.0 / (channels * hop)
    keep = state.smoothing
    meters = state.meters
    meters[0] = keep * meters[0] + (1.0 - keep) * e_in * scale
    meters[1] = keep * meters[1] + (1.0 - keep) * e_target * scale
    meters[2] = keep * meters[2] + (1.0 - keep) * e_residual * scale
    meters[3] = keep * meters[3] + (1.0 - keep) * e_out * scale


@njit(cache=True)
def delay_hop(hop_in, hop_out, line, position):
    """hop_out = hop_in delayed by the line's length; ``line`` (channels, delay) holds the tail."""
    channels, hop = hop_in.shape
    delay = line.shape[1]
    if delay == 0:
        hop_out[:, :] = hop_in
        return
    start = position[0]
    for channel in range(channels):
        for index in range(hop):
            slot = (start + index) % delay
            hop_out[channel, index] = line[channel, slot]
            line[channel, slot] = hop_in[channel, index]
    position[0] = (start + hop) % delay


@njit(cache=True)
def record_history(hop_in, history, written):
    """Append the channels' mean of ``hop_in`` to the mono ring ``history`` (power-of-two size)."""
    channels, hop = hop_in.shape
    mask = history.shape[0] - 1
    start = written[0]
    scale = 1.0 / channels
    for index in range(hop):
        total = 0.0
        for channel in range(channels):
            total += hop_in[channel, index]
        history[(start + index) & mask] = total * scale
    written[0] = start + hop
