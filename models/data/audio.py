"""Audio helpers shared by the renderers, the mixture sampler and the validation set.

Conditioning rule for every corpus file (``condition``): mono, 48 kHz, leading and
trailing silence trimmed (10 ms frames more than 50 dB below the loudest frame, 10 ms
kept either side), loudness-normalised so the RMS over *active* frames (within 40 dB of
the loudest frame) is -20 dBFS, then scaled down if needed so the peak stays at or
below -1 dBFS; stored as 16-bit FLAC. A file that cannot be decoded, holds no samples,
or never rises above -80 dBFS raises :class:`SkipFile` with the reason.
"""
from __future__ import annotations

import os
from fractions import Fraction

import numpy as np
import soundfile as sf
from scipy.signal import oaconvolve, resample_poly, sosfilt

from . import SAMPLE_RATE

TARGET_ACTIVE_RMS_DB = -20.0
PEAK_CEILING_DB = -1.0
SILENT_PEAK = 1e-4            # -80 dBFS: below this the whole file counts as silent
TRIM_BELOW_DB = 50.0
ACTIVE_WITHIN_DB = 40.0
MIN_ACTIVE_S = 0.03


class SkipFile(Exception):
    """A source file that is skipped (unreadable, empty or silent); str() is the reason."""


def load_audio(path: str) -> tuple[np.ndarray, int]:
    """Decode any libsndfile format to mono float64; SkipFile if unreadable or empty."""
    try:
        data, rate = sf.read(path, dtype="float64", always_2d=True)
    except (RuntimeError, sf.LibsndfileError, OSError, ValueError) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise SkipFile(f"unreadable: {message}") from None
    if data.size == 0:
        raise SkipFile("empty: no samples")
    mono = data.mean(axis=1)
    if not np.all(np.isfinite(mono)):
        raise SkipFile("unreadable: non-finite samples")
    return mono, int(rate)


def resample(x: np.ndarray, rate: int, target: int = SAMPLE_RATE) -> np.ndarray:
    """Offline polyphase resampling between arbitrary rates (scipy's resample_poly)."""
    if rate == target:
        return np.asarray(x, dtype=np.float64)
    ratio = Fraction(target, rate).limit_denominator(2000)
    return resample_poly(x, ratio.numerator, ratio.denominator)


def frame_rms(x: np.ndarray, frame: int) -> np.ndarray:
    """RMS of consecutive frames of ``frame`` samples (the last one zero-padded)."""
    count = -(-x.size // frame)
    padded = np.zeros(count * frame, dtype=np.float64)
    padded[:x.size] = x
    return np.sqrt(np.mean(padded.reshape(count, frame) ** 2, axis=1))


def db(value: float) -> float:
    return float(20.0 * np.log10(max(value, 1e-12)))


def trim_silence(x: np.ndarray, rate: int = SAMPLE_RATE, below_db: float = TRIM_BELOW_DB) -> np.ndarray:
    frame = max(rate // 100, 1)
    rms = frame_rms(x, frame)
    keep = np.flatnonzero(rms > rms.max() * 10.0 ** (-below_db / 20.0))
    if keep.size == 0:
        return x[:0]
    start = max((keep[0] - 1) * frame, 0)
    stop = min((keep[-1] + 2) * frame, x.size)
    return x[start:stop]


def active_rms(x: np.ndarray, rate: int = SAMPLE_RATE, within_db: float = ACTIVE_WITHIN_DB) -> float:
    rms = frame_rms(x, max(rate // 100, 1))
    active = rms[rms > rms.max() * 10.0 ** (-within_db / 20.0)]
    return float(np.sqrt(np.mean(active ** 2))) if active.size else 0.0


def condition(x: np.ndarray, rate: int) -> np.ndarray:
    """Resample to 48 kHz, trim, loudness-normalise and peak-limit; float32 out."""
    if x.size == 0:
        raise SkipFile("empty: no samples")
    if np.max(np.abs(x)) < SILENT_PEAK:
        raise SkipFile(f"silent: peak below {db(SILENT_PEAK):.0f} dBFS")
    y = trim_silence(resample(x - np.mean(x), rate))
    if y.size < MIN_ACTIVE_S * SAMPLE_RATE:
        raise SkipFile(f"silent: under {MIN_ACTIVE_S * 1000:.0f} ms of sound after trimming")
    y = y * (10.0 ** (TARGET_ACTIVE_RMS_DB / 20.0) / active_rms(y))
    peak = np.max(np.abs(y))
    ceiling = 10.0 ** (PEAK_CEILING_DB / 20.0)
    if peak > ceiling:
        y *= ceiling / peak
    return y.astype(np.float32)


def write_flac(path: str, x: np.ndarray, rate: int = SAMPLE_RATE, subtype: str = "PCM_16") -> None:
    """Write atomically: a half-written file never carries the final name."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    part = path + ".part"
    sf.write(part, x, rate, format="FLAC", subtype=subtype)
    os.replace(part, path)


def read_segment(path: str, start: int, count: int) -> np.ndarray:
    """``count`` samples from ``start`` (float32, mono); zero-padded past the end."""
    data, _ = sf.read(path, start=start, frames=count, dtype="float32", always_2d=True)
    out = np.zeros(count, dtype=np.float32)
    out[:data.shape[0]] = data[:, 0]
    return out


# ---- colouration: EQ, microphones and rooms --------------------------------------------

def biquad(kind: str, freq: float, gain_db: float = 0.0, q: float = 0.707,
           rate: int = SAMPLE_RATE) -> np.ndarray:
    """One RBJ-cookbook biquad as a (1, 6) second-order section."""
    a_gain = 10.0 ** (gain_db / 40.0)
    w0 = 2.0 * np.pi * min(freq, 0.45 * rate) / rate
    cos_w, alpha = np.cos(w0), np.sin(w0) / (2.0 * q)
    if kind == "peak":
        b = [1 + alpha * a_gain, -2 * cos_w, 1 - alpha * a_gain]
        a = [1 + alpha / a_gain, -2 * cos_w, 1 - alpha / a_gain]
    elif kind in ("lowshelf", "highshelf"):
        sign = 1.0 if kind == "lowshelf" else -1.0
        root = 2.0 * np.sqrt(a_gain) * alpha
        b = [a_gain * ((a_gain + 1) - sign * (a_gain - 1) * cos_w + root),
             sign * 2 * a_gain * ((a_gain - 1) - sign * (a_gain + 1) * cos_w),
             a_gain * ((a_gain + 1) - sign * (a_gain - 1) * cos_w - root)]
        a = [(a_gain + 1) + sign * (a_gain - 1) * cos_w + root,
             -sign * 2 * ((a_gain - 1) + sign * (a_gain + 1) * cos_w),
             (a_gain + 1) + sign * (a_gain - 1) * cos_w - root]
    elif kind == "highpass":
        b = [(1 + cos_w) / 2, -(1 + cos_w), (1 + cos_w) / 2]
        a = [1 + alpha, -2 * cos_w, 1 - alpha]
    elif kind == "lowpass":
        b = [(1 - cos_w) / 2, 1 - cos_w, (1 - cos_w) / 2]
        a = [1 + alpha, -2 * cos_w, 1 - alpha]
    else:
        raise ValueError(f"unknown biquad kind {kind!r}")
    return np.concatenate([np.array(b) / a[0], np.array(a) / a[0]])[None, :]


def random_eq(rng: np.random.Generator, strength_db: float = 9.0) -> np.ndarray:
    """A random tilt + one or two bells + band limits: microphones, speakers, consoles."""
    sections = [biquad("lowshelf", rng.uniform(80, 400), rng.uniform(-strength_db, strength_db)),
                biquad("highshelf", rng.uniform(2500, 9000), rng.uniform(-strength_db, strength_db))]
    for _ in range(rng.integers(1, 3)):
        sections.append(biquad("peak", np.exp(rng.uniform(np.log(200), np.log(6000))),
                               rng.uniform(-strength_db, strength_db), rng.uniform(0.5, 3.0)))
    if rng.random() < 0.5:
        sections.append(biquad("highpass", rng.uniform(40, 250)))
    if rng.random() < 0.3:
        sections.append(biquad("lowpass", rng.uniform(3500, 16000)))
    return np.concatenate(sections, axis=0)


def apply_eq(x: np.ndarray, sos: np.ndarray) -> np.ndarray:
    return sosfilt(sos, x).astype(x.dtype, copy=False)


def synthetic_rir(rng: np.random.Generator, rt60: float, rate: int = SAMPLE_RATE,
                  direct_to_reverb_db: float = 3.0) -> np.ndarray:
    """A room impulse response: a direct path, a few early reflections and an
    exponentially decaying, progressively darker noise tail with the given RT60."""
    length = int(min(rt60, 1.2) * rate)
    t = np.arange(length) / rate
    tail = rng.standard_normal(length) * np.exp(-6.9078 * t / rt60)
    # Darken the tail: a one-pole low-pass whose cutoff falls with time, approximated
    # by mixing a low-passed copy in progressively.
    dark = sosfilt(biquad("lowpass", rng.uniform(2500, 7000)), tail)
    mix = np.clip(t / max(rt60, 1e-3), 0.0, 1.0)
    tail = (1.0 - mix) * tail + mix * dark
    onset = int(rng.uniform(0.002, 0.012) * rate)
    tail[:onset] = 0.0
    for _ in range(rng.integers(3, 8)):
        delay = int(rng.uniform(0.001, 0.03) * rate)
        if delay < length:
            tail[delay] += rng.uniform(-0.6, 0.6)
    energy = np.sqrt(np.sum(tail ** 2))
    rir = tail * (10.0 ** (-direct_to_reverb_db / 20.0) / max(energy, 1e-12))
    rir[0] = 1.0
    return rir


def apply_rir(x: np.ndarray, rir: np.ndarray) -> np.ndarray:
    return oaconvolve(x, rir)[:x.size].astype(x.dtype, copy=False)


def fade_edges(x: np.ndarray, samples: int) -> np.ndarray:
    """Raised-cosine fade-in and fade-out of ``samples`` each (in place; returns x)."""
    samples = min(samples, x.size // 2)
    if samples > 0:
        ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(samples) / samples)
        x[:samples] *= ramp
        x[x.size - samples:] *= ramp[::-1]
    return x
