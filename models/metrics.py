"""Separation metrics (numpy only, so the serving path and the benchmarks can use them)."""
from __future__ import annotations

import numpy as np


def si_sdr(estimate: np.ndarray, reference: np.ndarray) -> float:
    """Scale-invariant signal-to-distortion ratio in dB, of two 1-D signals."""
    reference = reference.astype(np.float64) - reference.mean()
    estimate = estimate.astype(np.float64) - estimate.mean()
    scale = np.dot(estimate, reference) / (np.dot(reference, reference) + 1e-12)
    projection = scale * reference
    noise = estimate - projection
    return float(10 * np.log10((np.dot(projection, projection) + 1e-12) / (np.dot(noise, noise) + 1e-12)))


def sdr(estimate: np.ndarray, reference: np.ndarray) -> float:
    """Plain signal-to-distortion ratio in dB, of two 1-D signals: a wrong gain counts as distortion.

    Unlike ``si_sdr`` it punishes an estimate at the wrong level, which a listener hears
    when a separated stem replaces the original in a mix.
    """
    reference = reference.astype(np.float64)
    error = estimate.astype(np.float64) - reference
    return float(10 * np.log10((np.dot(reference, reference) + 1e-12) / (np.dot(error, error) + 1e-12)))


def mean_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks from 0, tied values sharing the mean of their ranks."""
    values = np.asarray(values)
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts_group = np.r_[True, ordered[1:] != ordered[:-1]]
    group = np.cumsum(starts_group) - 1
    starts = np.flatnonzero(starts_group)
    sizes = np.diff(np.r_[starts, len(values)])
    ranks = np.empty(len(values), np.float64)
    ranks[order] = (starts + (sizes - 1) / 2.0)[group]
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two equally long sequences (nan for fewer than two)."""
    if len(a) != len(b):
        raise ValueError(f"spearman needs equal lengths, got {len(a)} and {len(b)}")
    if len(a) < 2:
        return float("nan")
    return float(np.corrcoef(mean_ranks(a), mean_ranks(b))[0, 1])


def spearman_interval(a: np.ndarray, b: np.ndarray, groups: np.ndarray, level: float = 0.95,
                      resamples: int = 1000, seed: int = 0) -> tuple[float, float]:
    """The ``level`` interval of ``spearman(a, b)`` from a bootstrap over ``groups`` (examples of one
    group, such as the windows of one mixture, are drawn together: they are not independent)."""
    names, group_of = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(group_of == index) for index in range(len(names))]
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        chosen = np.concatenate([members[index] for index in rng.integers(0, len(members), len(members))])
        values.append(spearman(a[chosen], b[chosen]))
    low, high = np.nanpercentile(values, [50 * (1 - level), 50 * (1 + level)])
    return float(low), float(high)


# -- whole-signal STFT at the stream's framing, and the oracle mask ----------------------

def stft_frames(signal: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """(n,) -> (frames, bins): the stream's own frames, up to the last one that holds a sample."""
    from samstream.stream.offline import analyze_frames

    frames = -(-(len(signal) + n_fft - hop) // hop)
    return analyze_frames(np.asarray(signal, np.float32)[None], n_fft, hop, frames)[0]


def istft_frames(spectrum: np.ndarray, n_fft: int, hop: int, length: int) -> np.ndarray:
    """(frames, bins) -> (length,), aligned with ``stft_frames``'s input (the stream's delay removed)."""
    from samstream.stream.offline import synthesize_frames

    return synthesize_frames(spectrum[None], n_fft, hop)[0, n_fft - hop:n_fft - hop + length]


def ideal_ratio_mask(target: np.ndarray, interferer: np.ndarray, n_fft: int, hop: int) -> tuple[np.ndarray, np.ndarray]:
    """The ideal ratio mask of the target at this STFT, and the mixture's spectrum it applies to."""
    target_spectrum = stft_frames(target, n_fft, hop)
    interferer_spectrum = stft_frames(interferer, n_fft, hop)
    power = np.abs(target_spectrum) ** 2
    mask = power / (power + np.abs(interferer_spectrum) ** 2 + 1e-12)
    return mask.astype(np.float32), target_spectrum + interferer_spectrum


def oracle_ratio_mask(target: np.ndarray, interferer: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """The target estimated by the ideal ratio mask at this STFT: what a perfect mask model reaches."""
    mask, mixture_spectrum = ideal_ratio_mask(target, interferer, n_fft, hop)
    return istft_frames(mixture_spectrum * mask, n_fft, hop, len(target))
