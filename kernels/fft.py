"""Allocation-free real FFT for the streaming kernels.

numba cannot call ``np.fft`` and rocket-fft's ``np.fft.rfft`` allocates its result on
every call; the streaming path must not allocate once configured. So the transform is
written here: an iterative radix-2 complex FFT of length n/2 on a work buffer held in
the plan, wrapped into a real FFT of length n by the even/odd split.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

MIN_FFT = 4


class RealFftPlan(NamedTuple):
    """Everything a length-n real FFT needs, made once."""

    half_twiddles: np.ndarray  # exp(-2j*pi*k/(n/2)), k < n/4: the complex FFT's twiddles
    split_twiddles: np.ndarray  # exp(-2j*pi*k/n), k <= n/2: the even/odd recombination
    bit_reverse: np.ndarray  # int64 permutation of length n/2
    fft_work: np.ndarray  # complex scratch of length n/2


def make_real_fft_plan(n: int, dtype=np.float32) -> RealFftPlan:
    if n < MIN_FFT or n & (n - 1):
        raise ValueError(f"FFT length must be a power of two >= {MIN_FFT}, got {n}")
    complex_dtype = np.result_type(dtype, np.complex64)
    half = n // 2
    bits = half.bit_length() - 1
    indices = np.arange(half)
    reverse = np.zeros(half, dtype=np.int64)
    for bit in range(bits):
        reverse |= ((indices >> bit) & 1) << (bits - 1 - bit)
    return RealFftPlan(
        half_twiddles=np.exp(-2j * np.pi * np.arange(max(half // 2, 1)) / half).astype(complex_dtype),
        split_twiddles=np.exp(-2j * np.pi * np.arange(half + 1) / n).astype(complex_dtype),
        bit_reverse=reverse,
        fft_work=np.zeros(half, dtype=complex_dtype),
    )


@njit(cache=True)
def _complex_fft_in_place(work, twiddles, bit_reverse, inverse):
    """Radix-2 decimation-in-time FFT of ``work``; unscaled in both directions."""
    size = work.shape[0]
    for index in range(size):
        partner = bit_reverse[index]
        if partner > index:
            held = work[index]
            work[index] = work[partner]
            work[partner] = held
    span = 1
    while span < size:
        stride = size // (2 * span)
        for start in range(0, size, 2 * span):
            for offset in range(span):
                twiddle = twiddles[offset * stride]
                if inverse:
                    twiddle = twiddle.conjugate()
                upper = start + offset
                lower = upper + span
                rotated = work[lower] * twiddle
                work[lower] = work[upper] - rotated
                work[upper] = work[upper] + rotated
        span *= 2


@njit(cache=True)
def rfft(signal, spectrum, plan):
    """``spectrum[:n/2+1] = np.fft.rfft(signal)`` for a real ``signal`` of length n."""
    rfft_with(signal, spectrum, plan.half_twiddles, plan.split_twiddles, plan.bit_reverse, plan.fft_work)


@njit(cache=True)
def irfft(spectrum, signal, plan):
    """``signal[:] = np.fft.irfft(spectrum, n)``; the imaginary parts of bins 0 and n/2 are ignored."""
    irfft_with(spectrum, signal, plan.half_twiddles, plan.split_twiddles, plan.bit_reverse, plan.fft_work)


# The ``*_with`` forms take the plan's arrays one by one, so a caller can keep them as
# flat fields of its own state: numba unboxes a nested NamedTuple slowly on every call.
@njit(cache=True)
def rfft_with(signal, spectrum, half_twiddles, split_twiddles, bit_reverse, work):
    half = work.shape[0]
    for index in range(half):
        work[index] = complex(signal[2 * index], signal[2 * index + 1])
    _complex_fft_in_place(work, half_twiddles, bit_reverse, False)
    for k in range(half + 1):
        upper = work[k % half]
        mirror = work[(half - k) % half].conjugate()
        even = 0.5 * (upper + mirror)
        odd = -0.5j * (upper - mirror)
        spectrum[k] = even + split_twiddles[k] * odd


@njit(cache=True)
def irfft_with(spectrum, signal, half_twiddles, split_twiddles, bit_reverse, work):
    half = work.shape[0]
    for k in range(half):
        upper = spectrum[k]
        mirror = spectrum[half - k].conjugate()
        even = 0.5 * (upper + mirror)
        odd = 0.5 * (upper - mirror) * split_twiddles[k].conjugate()
        work[k] = even + 1j * odd
    if half > 0:
        # Bin 0 and bin n/2 of a real signal's spectrum are real by definition.
        work[0] = complex(0.5 * (spectrum[0].real + spectrum[half].real),
                          0.5 * (spectrum[0].real - spectrum[half].real))
    _complex_fft_in_place(work, half_twiddles, bit_reverse, True)
    scale = 1.0 / half
    for index in range(half):
        value = work[index]
        signal[2 * index] = value.real * scale
        signal[2 * index + 1] = value.imag * scale
