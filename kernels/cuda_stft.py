"""Streaming STFT and ISTFT on a CUDA device, one hop at a time, every channel in one launch.

The same transform as ``kernels.stft`` (periodic square-root Hann analysis window, the
synthesis window normalised for exact reconstruction, a real FFT of length n built from a
radix-2 complex FFT of length n/2), with the same plan arrays, so the two agree to float32
rounding and the CPU kernels' tests can hold these to the same answers.

One thread block per channel: its threads share the frame in shared memory and run the
butterflies together, a barrier between stages. The state lives on the device and is made
once; a hop moves nothing between host and device.

``numba.cuda`` imports without a GPU and compiles a kernel at its first launch, so this
module loads anywhere; under ``NUMBA_ENABLE_CUDASIM=1`` the launches run on numba's CUDA
simulator (threads as Python threads), which is what the tests use on a machine without one.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import complex64, cuda, float32

from .fft import make_real_fft_plan
from .stft import MAX_N_FFT, analysis_window, synthesis_window, validate_stft_shape

MAX_HALF = MAX_N_FFT // 2
# Threads per block: one butterfly each per stage at n_fft 512; larger frames loop.
MAX_THREADS = 256


class CudaStftState(NamedTuple):
    """Device arrays of one multichannel analysis or synthesis; ``history`` is the frames
    (analysis) or the overlap-add accumulator (synthesis), (channels, n_fft)."""

    window: object
    history: object
    half_twiddles: object
    split_twiddles: object
    bit_reverse: object
    threads: int


def _make_state(window: np.ndarray, n_fft: int, channels: int, stream=0) -> CudaStftState:
    if channels < 1:
        raise ValueError(f"channels must be at least 1, got {channels}")
    plan = make_real_fft_plan(n_fft, np.float32)
    return CudaStftState(
        window=cuda.to_device(window.astype(np.float32), stream=stream),
        history=cuda.to_device(np.zeros((channels, n_fft), np.float32), stream=stream),
        half_twiddles=cuda.to_device(plan.half_twiddles, stream=stream),
        split_twiddles=cuda.to_device(plan.split_twiddles, stream=stream),
        bit_reverse=cuda.to_device(plan.bit_reverse, stream=stream),
        threads=min(MAX_THREADS, n_fft // 2),
    )


def make_cuda_stft_state(n_fft: int, hop: int, channels: int, stream=0) -> CudaStftState:
    validate_stft_shape(n_fft, hop)
    return _make_state(analysis_window(n_fft), n_fft, channels, stream)


def make_cuda_istft_state(n_fft: int, hop: int, channels: int, stream=0) -> CudaStftState:
    validate_stft_shape(n_fft, hop)
    return _make_state(synthesis_window(n_fft, hop), n_fft, channels, stream)


@cuda.jit(device=True)
def _lane():
    """(this thread's index in its block, the block's thread count): a block strides over a frame."""
    return cuda.threadIdx.x, cuda.blockDim.x


@cuda.jit(device=True)
def _block_fft(work, size, twiddles, bit_reverse, inverse):
    """Radix-2 decimation-in-time FFT of ``work[:size]`` (shared), by all threads of the block; unscaled."""
    thread, threads = _lane()
    # Each index pairs with its bit reversal; the smaller one owns the swap, so no two threads meet.
    for index in range(thread, size, threads):
        partner = bit_reverse[index]
        if partner > index:
            held = work[index]
            work[index] = work[partner]
            work[partner] = held
    cuda.syncthreads()
    span = 1
    while span < size:
        stride = size // (2 * span)
        for butterfly in range(thread, size // 2, threads):
            offset = butterfly % span
            upper = (butterfly // span) * 2 * span + offset
            lower = upper + span
            twiddle = twiddles[offset * stride]
            if inverse:
                twiddle = complex(twiddle.real, -twiddle.imag)
            rotated = work[lower] * twiddle
            held = work[upper]
            work[lower] = held - rotated
            work[upper] = held + rotated
        cuda.syncthreads()
        span *= 2


@cuda.jit
def _analyze(hop_in, spectrum_out, frames, window, half_twiddles, split_twiddles, bit_reverse):
    row = cuda.blockIdx.x
    thread, threads = _lane()
    n_fft = frames.shape[1]
    kept = n_fft - hop_in.shape[1]
    half = n_fft // 2
    raw = cuda.shared.array(MAX_N_FFT, float32)
    work = cuda.shared.array(MAX_HALF, complex64)
    hop = n_fft - kept
    # Read the shifted frame whole before anyone writes it back: the shift is in place.
    for index in range(thread, n_fft, threads):
        raw[index] = frames[row, index + hop] if index < kept else hop_in[row, index - kept]
    cuda.syncthreads()
    for index in range(thread, n_fft, threads):
        frames[row, index] = raw[index]
    for pair in range(thread, half, threads):
        even = 2 * pair
        work[pair] = complex(raw[even] * window[even], raw[even + 1] * window[even + 1])
    cuda.syncthreads()
    _block_fft(work, half, half_twiddles, bit_reverse, False)
    for k in range(thread, half + 1, threads):
        upper = work[k % half]
        mirrored = work[(half - k) % half]
        mirror = complex(mirrored.real, -mirrored.imag)
        even = 0.5 * (upper + mirror)
        difference = upper - mirror
        odd = complex(0.5 * difference.imag, -0.5 * difference.real)  # -0.5j * difference
        spectrum_out[row, k] = even + split_twiddles[k] * odd


@cuda.jit
def _synthesize(spectrum_in, hop_out, overlap, window, half_twiddles, split_twiddles, bit_reverse):
    half = spectrum_in.shape[1] - 1
    row = cuda.blockIdx.x
    thread, threads = _lane()
    n_fft = overlap.shape[1]
    hop = hop_out.shape[1]
    raw = cuda.shared.array(MAX_N_FFT, float32)
    work = cuda.shared.array(MAX_HALF, complex64)
    for k in range(thread, half, threads):
        if k == 0:
            # Bins 0 and n/2 of a real signal's spectrum are real by definition.
            first = spectrum_in[row, 0].real
            last = spectrum_in[row, half].real
            work[0] = complex(0.5 * (first + last), 0.5 * (first - last))
        else:
            upper = spectrum_in[row, k]
            mirrored = spectrum_in[row, half - k]
            mirror = complex(mirrored.real, -mirrored.imag)
            twiddle = split_twiddles[k]
            even = 0.5 * (upper + mirror)
            odd = 0.5 * (upper - mirror) * complex(twiddle.real, -twiddle.imag)
            work[k] = complex(even.real - odd.imag, even.imag + odd.real)  # even + 1j * odd
    cuda.syncthreads()
    _block_fft(work, half, half_twiddles, bit_reverse, True)
    scale = float32(1.0) / half
    for pair in range(thread, half, threads):
        value = work[pair]
        even = 2 * pair
        raw[even] = overlap[row, even] + float32(value.real * scale) * window[even]
        raw[even + 1] = overlap[row, even + 1] + float32(value.imag * scale) * window[even + 1]
    cuda.syncthreads()
    for index in range(thread, n_fft, threads):
        if index < hop:
            hop_out[row, index] = raw[index]
        overlap[row, index] = raw[index + hop] if index < n_fft - hop else 0.0


def cuda_stft_analyze(hop_in, spectrum_out, state: CudaStftState, stream=0) -> None:
    """hop_in (channels, hop) float32 -> spectrum_out (channels, n_fft/2 + 1) complex64, on the device."""
    _analyze[hop_in.shape[0], state.threads, stream](hop_in, spectrum_out, state.history, state.window,
                                                     state.half_twiddles, state.split_twiddles, state.bit_reverse)


def cuda_istft_synthesize(spectrum_in, hop_out, state: CudaStftState, stream=0) -> None:
    """spectrum_in (channels, n_fft/2 + 1) complex64 -> hop_out (channels, hop) of finished samples."""
    _synthesize[hop_out.shape[0], state.threads, stream](spectrum_in, hop_out, state.history, state.window,
                                                         state.half_twiddles, state.split_twiddles,
                                                         state.bit_reverse)


def reset_cuda_stft_state(state: CudaStftState, stream=0) -> None:
    """Forget the signal history in place (the buffers, and anything bound to them, stay)."""
    cuda_fill_zero(state.history, stream)


@cuda.jit
def _fill_zero(flat):
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for index in range(start, flat.shape[0], stride):
        flat[index] = 0


def cuda_fill_zero(array, stream=0) -> None:
    """Zero a contiguous device array of any shape and type in place."""
    _fill_zero[max(1, min(1024, (array.size + 255) // 256)), 256, stream](array.reshape(array.size))
