"""The equal-power crossfade of ``kernels.crossfade`` on a CUDA device.

Same curves, same position and direction, same restart rule; the state's arrays live on
the device. On the CPU a fade steps sample by sample; here every sample is its own thread,
so each computes where the walk stands at its index (the walk only ever moves one way
within a block and stops at the ends, so that is the start plus the steps, clamped), and a
second one-thread launch moves the position on once every sample has read it.
"""
from __future__ import annotations

from typing import NamedTuple

from numba import cuda

from .crossfade import CrossfadeState

THREADS = 128


class CudaCrossfadeState(NamedTuple):
    cos_curve: object  # device copies of the CPU state's arrays
    sin_curve: object
    position: object  # int64[2] on the device: [position 0..n_fade + 1, direction +1 or -1]
    n_fade: int


def to_device_crossfade(state: CrossfadeState, stream=0) -> CudaCrossfadeState:
    """The CPU state (``make_crossfade_state``) moved to the device, where it then stays."""
    return CudaCrossfadeState(cuda.to_device(state.cos_curve, stream=stream),
                              cuda.to_device(state.sin_curve, stream=stream),
                              cuda.to_device(state.position, stream=stream), state.n_fade)


@cuda.jit
def _crossfade(from_block, to_block, out_block, cos_curve, sin_curve, position, end):
    channels, count = out_block.shape
    start = position[0]
    step = position[1]
    first, stride = cuda.grid(1), cuda.gridsize(1)
    for flat in range(first, channels * count, stride):
        channel = flat // count
        index = flat % count
        place = min(max(start + step * (index + 1), 0), end)
        if place == end:
            out_block[channel, index] = to_block[channel, index]
        elif place == 0:
            out_block[channel, index] = from_block[channel, index]
        else:
            out_block[channel, index] = (from_block[channel, index] * cos_curve[place]
                                         + to_block[channel, index] * sin_curve[place])


@cuda.jit
def _advance(position, count, end):
    if cuda.grid(1) == 0:
        position[0] = min(max(position[0] + position[1] * count, 0), end)


@cuda.jit
def _head(position, direction):
    if cuda.grid(1) == 0:
        position[1] = direction


def cuda_start_crossfade(state: CudaCrossfadeState, target: int = 1, stream=0) -> None:
    """Head towards ``to`` (target 1) or back towards ``from`` (target 0) from where the mix is."""
    _head[1, 1, stream](state.position, 1 if target else -1)


def cuda_crossfade(from_block, to_block, out_block, state: CudaCrossfadeState, stream=0) -> None:
    """Write the crossfade of two (channels, n) device blocks into ``out_block``."""
    if from_block.shape != to_block.shape or from_block.shape != out_block.shape:
        raise ValueError("crossfade: from_block, to_block and out_block must have one shape")
    end = state.n_fade + 1
    blocks = max(1, min(1024, (out_block.size + THREADS - 1) // THREADS))
    _crossfade[blocks, THREADS, stream](from_block, to_block, out_block, state.cos_curve, state.sin_curve,
                                        state.position, end)
    _advance[1, 1, stream](state.position, out_block.shape[1], end)
