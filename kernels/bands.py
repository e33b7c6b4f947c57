"""Perceptual band features and band-to-bin gain interpolation.

Layout: ``n_bands`` centre bins run from the DC bin to the Nyquist bin, evenly
spaced on the ERB-rate scale (Glasberg & Moore, ``21.4 log10(1 + 0.00437 f)``)
or on the mel scale (HTK, ``2595 log10(1 + f / 700)``). Centres are whole bins,
at least one bin apart: where the scale would space bands closer than the FFT
resolution (the lowest ERB bands at 48 kHz, n_fft 512), they fall back to one
bin each, and the rest of the scale is spread evenly over what remains, so no
band is ever empty.

Weights are triangular and overlapping: bin ``k`` between centres ``b`` and
``b + 1`` belongs to both, with weight ``frac[k]`` to ``b + 1`` and
``1 - frac[k]`` to ``b``, where ``frac`` is linear in the warped (ERB or mel)
frequency. Each centre bin belongs to its band alone. The weights of every
bin sum to one (a partition of unity), which is what makes gain interpolation
exact for constant gains.

``band_energies`` gives each band's weighted mean power per bin,
``sum_k w[b, k] |X[k]|^2 / sum_k w[b, k]``, so white noise reads the same in
narrow and wide bands; a state made with ``db=True`` gives
``10 log10(mean power + DB_FLOOR)`` instead, a smooth log compression that
bottoms out at -100 dB.

``interpolate_band_gains`` is the transpose: every bin takes the weighted
sum of its (at most two) bands' gains, i.e. linear interpolation between
centres on the warped axis, written as ``g[b] + frac * (g[b + 1] - g[b])`` so
that equal gains come out bit-for-bit unchanged.
"""

from typing import NamedTuple

import numpy as np
from numba import njit

DB_FLOOR = 1e-10  # power floor of the dB variant, -100 dB

_SCALES = {
    "erb": (
        lambda f: 21.4 * np.log10(1.0 + 0.00437 * f),
        lambda e: (10.0 ** (e / 21.4) - 1.0) / 0.00437,
    ),
    "mel": (
        lambda f: 2595.0 * np.log10(1.0 + f / 700.0),
        lambda m: 700.0 * (10.0 ** (m / 2595.0) - 1.0),
    ),
}


class BandState(NamedTuple):
    # (n_bins,) int64: the band b with centre_bin[b] <= k < centre_bin[b + 1];
    # n_bands - 1 for the Nyquist bin, so every centre bin has frac 0
    lower_band: np.ndarray
    frac: np.ndarray  # (n_bins,) float64: weight of band lower_band + 1 at bin k
    inv_weight_sum: np.ndarray  # (n_bands,) float64: 1 / sum of each band's weights
    centre_bin: np.ndarray  # (n_bands,) int64, strictly increasing, 0 .. n_bins - 1
    centre_hz: np.ndarray  # (n_bands,) float64
    sample_rate: int
    n_fft: int
    db: bool


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _place_centres(warp, unwarp, n_bins, n_bands, bin_hz):
    top = n_bins - 1
    top_warped = warp(top * bin_hz)
    centres = np.zeros(n_bands, dtype=np.int64)
    for b in range(1, n_bands):
        # Re-spread the scale over what is left after each band, so one-bin
        # bands forced at the bottom do not push the top band past Nyquist.
        prev_warped = warp(centres[b - 1] * bin_hz)
        step = (top_warped - prev_warped) / (n_bands - b)
        ideal = round(float(unwarp(prev_warped + step) / bin_hz))
        centres[b] = min(max(ideal, centres[b - 1] + 1), top - (n_bands - 1 - b))
    return centres


def make_band_state(sample_rate, n_fft, n_bands, scale="erb", db=False):
    """Band layout for a ``sample_rate`` STFT of size ``n_fft`` (see module doc)."""
    if not _is_int(sample_rate) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}.")
    if not _is_int(n_fft) or n_fft < 4 or n_fft % 2:
        raise ValueError(f"n_fft must be an even integer of at least 4, got {n_fft!r}.")
    n_bins = n_fft // 2 + 1
    if not _is_int(n_bands) or not 2 <= n_bands <= n_bins:
        raise ValueError(f"n_bands must be an integer from 2 to n_fft // 2 + 1 = {n_bins}, got {n_bands!r}.")
    if scale not in _SCALES:
        raise ValueError(f"scale must be one of {sorted(_SCALES)}, got {scale!r}.")
    if db not in (True, False):
        raise ValueError(f"db must be True or False, got {db!r}.")
    warp, unwarp = _SCALES[scale]
    bin_hz = sample_rate / n_fft
    centres = _place_centres(warp, unwarp, n_bins, n_bands, bin_hz)

    bins = np.arange(n_bins)
    lower = np.searchsorted(centres, bins, side="right") - 1
    inner = lower < n_bands - 1  # every bin but the Nyquist bin, the last centre
    warped_bins = warp(bins * bin_hz)
    warped_centres = warp(centres * bin_hz)
    lo, hi = warped_centres[lower[inner]], warped_centres[lower[inner] + 1]
    frac = np.zeros(n_bins)
    frac[inner] = np.clip((warped_bins[inner] - lo) / (hi - lo), 0.0, 1.0)

    weight_sum = np.zeros(n_bands)
    np.add.at(weight_sum, lower, 1.0 - frac)
    np.add.at(weight_sum, lower[inner] + 1, frac[inner])
    return BandState(
        lower_band=lower.astype(np.int64),
        frac=frac,
        inv_weight_sum=1.0 / weight_sum,
        centre_bin=centres,
        centre_hz=centres * bin_hz,
        sample_rate=int(sample_rate),
        n_fft=int(n_fft),
        db=bool(db),
    )


@njit(cache=True)
def band_energies(spec_in, bands_out, state):
    """Per-channel band energies of ``spec_in`` (channels, n_bins) into (channels, n_bands)."""
    lower = state.lower_band
    frac = state.frac
    centres = state.centre_bin
    n_bands = centres.shape[0]
    n_ch = spec_in.shape[0]
    if spec_in.shape[1] != lower.shape[0]:
        raise ValueError("band_energies: spec_in has the wrong number of bins")
    if bands_out.shape[0] != n_ch or bands_out.shape[1] != n_bands:
        raise ValueError("band_energies: bands_out must be (channels, n_bands)")
    for c in range(n_ch):
        for b in range(n_bands):
            # Band b is non-zero only between its neighbours' centres.
            first = centres[max(b - 1, 0)]
            last = centres[min(b + 1, n_bands - 1)]
            acc = 0.0
            for k in range(first, last + 1):
                if lower[k] == b:
                    weight = 1.0 - frac[k]
                elif lower[k] == b - 1:
                    weight = frac[k]
                else:
                    continue
                z = spec_in[c, k]
                acc += weight * (z.real * z.real + z.imag * z.imag)
            acc *= state.inv_weight_sum[b]
            if state.db:
                acc = 10.0 * np.log10(acc + DB_FLOOR)
            bands_out[c, b] = acc


@njit(cache=True)
def interpolate_band_gains(gains_in, gains_out, state):
    """Expand per-band gains (channels, n_bands) to per-bin gains (channels, n_bins)."""
    lower = state.lower_band
    frac = state.frac
    n_ch = gains_in.shape[0]
    last = state.centre_bin.shape[0] - 1
    if gains_in.shape[1] != state.centre_bin.shape[0]:
        raise ValueError("interpolate_band_gains: gains_in has the wrong number of bands")
    if gains_out.shape[0] != n_ch or gains_out.shape[1] != lower.shape[0]:
        raise ValueError("interpolate_band_gains: gains_out must be (channels, n_bins)")
    for c in range(n_ch):
        for k in range(lower.shape[0]):
            b = lower[k]
            g0 = gains_in[c, b]
            # frac is 0 at the Nyquist bin; min() keeps its unused neighbour in range.
            gains_out[c, k] = g0 + frac[k] * (gains_in[c, min(b + 1, last)] - g0)
