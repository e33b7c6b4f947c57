"""Worker-side kernels of a live path whose host runs at another rate than the model.

The audio callback stays as it is, at the host's rate. The worker takes what it pushed,
resamples it to the model's rate into a ring of hop-sized work (``next_hop``), and after
each hop resamples the target back and mixes it with the dry host-rate signal that lines
up with it, into the callback's output ring (``deliver_hop``). Mixing at the host's rate
keeps the dry signal, bypass included, bit-exact: only the target passes through the
resamplers. All memory is in a ``ConversionState`` made once.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from .live import mix_hop
from .resample import ResamplerState, make_resampler_state, max_output_for, resample
from .ring import RingState, make_ring_state, ring_available, ring_read, ring_write, ring_write_zeros


class ConversionState(NamedTuple):
    down: ResamplerState  # host -> model, the input
    up: ResamplerState  # model -> host, the target
    host_block: np.ndarray  # (channels, chunk) scratch: host input taken from the callback's ring
    model_block: np.ndarray  # (channels, max model samples per chunk) scratch
    model_ring: RingState  # model-rate input waiting for a whole hop
    dry_ring: RingState  # host-rate dry input, primed with the path's delay so it lines up
    host_target: np.ndarray  # (channels, max host samples per hop) scratch
    host_dry: np.ndarray  # (channels, same) scratch
    host_mixed: np.ndarray  # (3 * channels, same) scratch: output, target, residual


def make_conversion_state(host_rate: int, model_rate: int, channels: int, hop: int, chunk: int,
                          extra_delay_ticks: int, dry_delay: int) -> ConversionState:
    """``extra_delay_ticks`` lengthens the way back (see ``resample``); ``dry_delay`` in host samples."""
    down = make_resampler_state(host_rate, model_rate, channels)
    up = make_resampler_state(model_rate, host_rate, channels, extra_delay_ticks)
    model_chunk, host_hop = max_output_for(chunk, down), max_output_for(hop, up)
    state = ConversionState(
        down, up, np.zeros((channels, chunk), np.float32), np.zeros((channels, model_chunk), np.float32),
        make_ring_state(channels, model_chunk + hop), make_ring_state(channels, dry_delay + 2 * chunk + 4 * host_hop),
        np.zeros((channels, host_hop), np.float32), np.zeros((channels, host_hop), np.float32),
        np.zeros((3 * channels, host_hop), np.float32))
    ring_write_zeros(dry_delay, state.dry_ring)
    return state


@njit(cache=True)
def next_hop(input_ring, hop_in, state):
    """Fill ``hop_in`` (channels, hop) at the model's rate from the callback's host-rate ring.

    Returns False, having taken everything there was, when no whole hop is there yet."""
    hop = hop_in.shape[1]
    chunk = state.host_block.shape[1]
    while ring_available(state.model_ring) < hop:
        count = min(ring_available(input_ring), chunk)
        if count == 0:
            return False
        block = state.host_block[:, :count]
        ring_read(block, input_ring)
        ring_write(block, state.dry_ring)
        made = resample(block, state.model_block, state.down)
        ring_write(state.model_block[:, :made], state.model_ring)
    return ring_read(hop_in, state.model_ring)


@njit(cache=True)
def deliver_hop(target_hop, output_ring, mix, state):
    """The model-rate target hop back at the host's rate, mixed with its dry input, into
    ``output_ring`` (3 * channels rows); returns how many host samples that made."""
    made = resample(target_hop, state.host_target, state.up)
    dry = state.host_dry[:, :made]
    ring_read(dry, state.dry_ring)
    mixed = state.host_mixed[:, :made]
    mix_hop(dry, state.host_target[:, :made], mixed, mix)
    ring_write(mixed, output_ring)
    return made
