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
