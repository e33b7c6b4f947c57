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
