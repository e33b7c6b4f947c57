"""Per-frame glue between the STFT and the separation model: downmix, masks, cache rings.

All of these run once per hop on preallocated arrays and allocate nothing.
"""
from __future__ import annotations

from numba import njit


@njit(cache=True)
def downmix_real_imag(spectrum_in, real_imag_out):
    """(channels, bins) complex -> (1, 2, bins) float: the channels' mean, as real and imaginary rows.

    The model hears one mid signal and its mask is applied to every channel, which keeps a
    stereo image intact and costs one model call whatever the channel count.
    """
    channels, bins = spectrum_in.shape
    scale = 1.0 / channels
    for index in range(bins):
        real = 0.0
        imag = 0.0
        for channel in range(channels):
            real += spectrum_in[channel, index].real
            imag += spectrum_in[channel, index].imag
        real_imag_out[0, 0, index] = real * scale
        real_imag_out[0, 1, index] = imag * scale


@njit(cache=True)
def apply_gain(spectrum_in, gain, spectrum_out):
    """spectrum_out = spectrum_in * gain, the gain (1, bins) shared by every channel (see ``mask_gain``)."""
    channels, bins = spectrum_in.shape
    for index in range(bins):
        for channel in range(channels):
            spectrum_out[channel, index] = spectrum_in[channel, index] * gain[0, index]


@njit(cache=True)
def push_frame(frame, history, slot):
    """Write ``frame`` (channels, bins) into ring ``history`` (frames, channels, bins) at ``slot``."""
    for channel in range(frame.shape[0]):
        for index in range(frame.shape[1]):
            history[slot, channel, index] = frame[channel, index]


@njit(cache=True)
def store_keys_values(new_keys, new_values, key_cache, value_cache, slot):
    """new_* (steps, batch, depth, heads, head_dim) -> caches (steps, batch, depth, heads, context, head_dim)."""
    steps, batch, depth, heads, head_dim = new_keys.shape
    for step in range(steps):
        for row in range(batch):
            for layer in range(depth):
                for head in range(heads):
                    for index in range(head_dim):
                        key_cache[step, row, layer, head, slot, index] = new_keys[step, row, layer, head, index]
                        value_cache[step, row, layer, head, slot, index] = new_values[step, row, layer, head, index]


@njit(cache=True)
def slot_ages(write_slot, ages_out):
    """Age in frames (1..context) of every cache slot when the next frame goes to ``write_slot``."""
    context = ages_out.shape[0]
    for slot in range(context):
        ages_out[slot] = (write_slot - slot - 1) % context + 1


@njit(cache=True)
def mask_gain(mask, keep_target, gain_out):
    """gain_out = mask (keep_target) or 1 - mask, all (1, bins): the spectral gain of a mode."""
    for index in range(gain_out.shape[1]):
        gain_out[0, index] = mask[0, index] if keep_target else 1.0 - mask[0, index]


@njit(cache=True)
def blend_masks(from_mask, to_mask, share, out):
    """out = from_mask * (1 - share) + to_mask * share, all (1, bins): a prompt change's ramp."""
    for index in range(out.shape[1]):
        out[0, index] = from_mask[0, index] * (1.0 - share) + to_mask[0, index] * share
