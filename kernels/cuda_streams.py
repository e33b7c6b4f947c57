"""The per-hop glue of a batch of streams on a CUDA device: ``kernels.streams`` and the cache
kernels of ``kernels.masking``, fused where a hop would otherwise pay for an extra launch.

Rows are the channels of every stream, stream by stream, as on the CPU. Each kernel is one
launch over every element it writes (a thread per element, a grid stride when the grid is
short); the arrays are device arrays made once, so a hop copies nothing between host and
device. The tests hold each one to its CPU counterpart under numba's CUDA simulator.
"""
from __future__ import annotations

from numba import cuda
from numba.cuda.random import create_xoroshiro128p_states, xoroshiro128p_normal_float32

from .level import normalise_frame
from .streams import stream_gain, stream_mean

_stream_mean = cuda.jit(device=True)(stream_mean)
_stream_gain = cuda.jit(device=True)(stream_gain)
_normalise_frame = cuda.jit(device=True)(normalise_frame)

THREADS = 128


def _blocks(count: int) -> int:
    return max(1, min(1024, (count + THREADS - 1) // THREADS))


@cuda.jit
def _model_inputs(spectrum_in, real_imag_out, ages, write_slot):
    """Each stream's channel mean as real/imaginary rows, and the age of every cache slot."""
    streams, _, bins = real_imag_out.shape
    channels = spectrum_in.shape[0] // streams
    context = ages.shape[0]
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for index in range(start, streams * bins, stride):
        stream = index // bins
        column = index % bins
        real_imag_out[stream, 0, column], real_imag_out[stream, 1, column] = _stream_mean(
            spectrum_in, stream, channels, column)
    for slot in range(start, context, stride):
        ages[slot] = (write_slot - slot - 1) % context + 1


def cuda_model_inputs(spectrum_in, real_imag_out, ages, write_slot: int, stream=0) -> None:
    """downmix_streams + slot_ages of ``kernels.streams``/``kernels.masking``, in one launch."""
    count = max(real_imag_out.shape[0] * real_imag_out.shape[2], ages.shape[0])
    _model_inputs[_blocks(count), THREADS, stream](spectrum_in, real_imag_out, ages, write_slot)


@cuda.jit
def _normalise_levels(real_imag, states, parameters):
    # A thread per stream: a frame's power is a sum over its bins before any of them is scaled.
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for row in range(start, real_imag.shape[0], stride):
        _normalise_frame(real_imag[row], states[row], parameters)


def cuda_normalise_levels(real_imag, states, parameters, stream=0) -> None:
    """normalise_streams of ``kernels.level`` on the device: (streams, 2, bins) in place."""
    _normalise_levels[_blocks(real_imag.shape[0]), THREADS, stream](real_imag, states, parameters)


@cuda.jit
def _model_outputs(new_keys, new_values, key_cache, value_cache, write_slot, seen, context):
    """This frame's keys and values into cache slot ``write_slot``; one more frame seen per stream."""
    steps, batch, depth, heads, head_dim = new_keys.shape
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for flat in range(start, steps * batch * depth * heads * head_dim, stride):
        index = flat % head_dim
        rest = flat // head_dim
        head = rest % heads
        rest //= heads
        layer = rest % depth
        rest //= depth
        row = rest % batch
        step = rest // batch
        key_cache[step, row, layer, head, write_slot, index] = new_keys[step, row, layer, head, index]
        value_cache[step, row, layer, head, write_slot, index] = new_values[step, row, layer, head, index]
    for row in range(start, seen.shape[0], stride):
        if seen[row] < context:
            seen[row] += 1


def cuda_model_outputs(new_keys, new_values, key_cache, value_cache, write_slot: int, seen, stream=0) -> None:
    """store_keys_values + advance_seen of ``kernels.masking``/``kernels.streams``, in one launch."""
    _model_outputs[_blocks(new_keys.size), THREADS, stream](new_keys, new_values, key_cache, value_cache,
                                                            write_slot, seen, key_cache.shape[4])


@cuda.jit
def _apply_gains(spectrum_in, target_masks, fade_from, shares, passing, keep_target, gains_out, spectrum_out):
    streams, bins = gains_out.shape
    rows = spectrum_in.shape[0]
    channels = rows // streams
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for index in range(start, rows * bins, stride):
        row = index // bins
        column = index % bins
        stream = row // channels
        gain = _stream_gain(target_masks, fade_from, shares, passing, keep_target, stream, column)
        spectrum_out[row, column] = spectrum_in[row, column] * gain
        # Every channel of a stream computes the same gain; its first one keeps it for the next fade.
        if row % channels == 0:
            gains_out[stream, column] = gain


def cuda_apply_stream_gains(spectrum_in, target_masks, fade_from, shares, passing, keep_target: bool,
                            gains_out, spectrum_out, stream=0) -> None:
    """blend_stream_gains + apply_stream_gains of ``kernels.streams``, in one launch."""
    _apply_gains[_blocks(spectrum_in.size), THREADS, stream](spectrum_in, target_masks, fade_from, shares,
                                                             passing, keep_target, gains_out, spectrum_out)


@cuda.jit
def _copy_row(source, destination, row):
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for index in range(start, source.shape[1], stride):
        destination[row, index] = source[row, index]


def cuda_copy_row(source, destination, row: int, stream=0) -> None:
    """destination[row] = source[row], on the device (a stream's gain at the start of its prompt fade)."""
    _copy_row[_blocks(source.shape[1]), THREADS, stream](source, destination, row)


def make_noise_states(count: int, seed: int, stream=0):
    """One xoroshiro128+ generator per noise element: the device draws each hop's noise itself."""
    return create_xoroshiro128p_states(count, seed=seed, stream=stream)


@cuda.jit
def _draw_noise(states, noise):
    columns = noise.shape[1]
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for index in range(start, noise.size, stride):
        noise[index // columns, index % columns] = xoroshiro128p_normal_float32(states, index)


def cuda_draw_noise(states, noise, stream=0) -> None:
    """noise (streams, 2 * bins) <- standard normal draws, on the device."""
    _draw_noise[_blocks(noise.size), THREADS, stream](states, noise)
