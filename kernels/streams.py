"""Per-frame glue for a batch of streams that share one model call per hop (CPU).

Rows of a spectrum are the channels of every stream, stream by stream: with S streams of
C channels each, rows s*C .. s*C + C - 1 belong to stream s. Each stream is downmixed to
its own model input row and gets its own gain row back. ``kernels.cuda_streams`` does the
same on a device, and its tests hold it to these.
"""
from __future__ import annotations

from numba import njit


def stream_mean(spectrum_in, stream, channels, column):
    """(real, imaginary) of one stream's channel mean at one bin; plain Python, compiled for the
    CPU here and for the device in ``kernels.cuda_streams``, so both do the same arithmetic."""
    real = 0.0
    imag = 0.0
    for channel in range(channels):
        value = spectrum_in[stream * channels + channel, column]
        real += value.real
        imag += value.imag
    scale = 1.0 / channels
    return real * scale, imag * scale


def stream_gain(target_masks, fade_from, shares, passing, keep_target, stream, column):
    """One stream's spectral gain at one bin this hop (see ``blend_stream_gains``); shared like ``stream_mean``."""
    if passing[stream]:
        gain = 1.0
    elif keep_target:
        gain = target_masks[stream, column]
    else:
        gain = 1.0 - target_masks[stream, column]
    share = shares[stream]
    if share < 1.0:
        gain = fade_from[stream, column] * (1.0 - share) + gain * share
    return gain


_stream_mean = njit(cache=True)(stream_mean)
_stream_gain = njit(cache=True)(stream_gain)


@njit(cache=True)
def downmix_streams(spectrum_in, real_imag_out):
    """(S*C, bins) complex -> (S, 2, bins) float: each stream's channel mean as real and imaginary rows."""
    streams, _, bins = real_imag_out.shape
    channels = spectrum_in.shape[0] // streams
    for stream in range(streams):
        for column in range(bins):
            real_imag_out[stream, 0, column], real_imag_out[stream, 1, column] = _stream_mean(
                spectrum_in, stream, channels, column)


@njit(cache=True)
def blend_stream_gains(target_masks, fade_from, shares, passing, keep_target, gains_out):
    """gains_out (S, bins): each stream's spectral gain this hop.

    A stream's own gain is 1 while it passes through (no prompt), else its target mask
    (extract) or one minus it (remove). ``shares[s]`` < 1 while a prompt change fades in:
    the gain is then ``fade_from`` (the gain before the change) moved that far towards it.
    """
    streams, bins = gains_out.shape
    for stream in range(streams):
        for column in range(bins):
            gains_out[stream, column] = _stream_gain(target_masks, fade_from, shares, passing, keep_target,
                                                     stream, column)


@njit(cache=True)
def apply_stream_gains(spectrum_in, gains, spectrum_out):
    """spectrum_out = spectrum_in * the gain row of the stream each row belongs to."""
    rows, bins = spectrum_in.shape
    channels = rows // gains.shape[0]
    for row in range(rows):
        stream = row // channels
        for index in range(bins):
            spectrum_out[row, index] = spectrum_in[row, index] * gains[stream, index]


@njit(cache=True)
def advance_seen(seen, context):
    """One more frame in every stream's cache, up to the cache's length."""
    for stream in range(seen.shape[0]):
        if seen[stream] < context:
            seen[stream] += 1


@njit(cache=True)
def advance_fades(fades_left, fade_frames, shares):
    """shares[s]: how far stream s's prompt change has faded in this hop (1: done); counts its fade down."""
    for stream in range(fades_left.shape[0]):
        left = fades_left[stream]
        if left > 0:
            shares[stream] = 1.0 - left / (fade_frames + 1)
            fades_left[stream] = left - 1
        else:
            shares[stream] = 1.0


@njit(cache=True)
def copy_if_changed(source, mirror):
    """mirror[:] = source; True when any element differed (so the device copy is due)."""
    changed = False
    for index in range(source.shape[0]):
        if mirror[index] != source[index]:
            mirror[index] = source[index]
            changed = True
    return changed
