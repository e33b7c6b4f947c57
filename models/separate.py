"""``separate()``: the one inference entry point (runtime half: numpy, numba, ONNX Runtime).

It runs the live path itself, hop by hop (block scheduler aside): the streaming STFT,
the exported hop graph, the mask, the ISTFT; then removes the reported latency so the
outputs line up with the input. Audio at 44.1 or 16 kHz is resampled to the model's
48 kHz by the project's polyphase kernel and back, each stage's delay removed.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from samstream.kernels.resample import make_resampler_state, max_output_for, resample
from samstream.stream.engine import StftEngine
from samstream.stream.offline import render_offline

from .config import ANCHOR_NEGATIVE, ANCHOR_POSITIVE
from .runtime import OnnxSeparator, Prompt, compressed_frames

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default"


@dataclass(frozen=True)
class Separation:
    target: np.ndarray  # (channels, n) at the input's sample rate
    residual: np.ndarray  # (channels, n); target + residual == the input
    sample_rate: int
    latency_samples: int  # of the live path at the model's rate
    steps: int
    passed_through: bool  # no prompt was given: the target is the input unchanged
    sanitised_samples: int  # NaN or Inf input samples replaced by silence before the model


@dataclass(frozen=True)
class SpanPrompt:
    start: float  # seconds
    stop: float
    positive: bool = True


def change_rate(signal: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """(channels, n) -> (channels, round(n * to / from)), the resampler's delay removed."""
    if from_rate == to_rate:
        return signal
    state = make_resampler_state(from_rate, to_rate, signal.shape[0])
    padding = np.zeros((signal.shape[0], -(-state.delay_out * from_rate // to_rate) + 1), np.float32)
    source = np.concatenate([signal, padding], axis=1).astype(np.float32)
    out = np.zeros((signal.shape[0], max_output_for(source.shape[1], state)), np.float32)
    written = resample(source, out, state)
    length = round(signal.shape[1] * to_rate / from_rate)
    return out[:, state.delay_out:state.delay_out + length] if written >= state.delay_out + length else \
        np.pad(out[:, state.delay_out:written], ((0, 0), (0, length - (written - state.delay_out))))


def span_prompt(mixture: np.ndarray, spans: list[SpanPrompt], separator: OnnxSeparator) -> np.ndarray | None:
    """Anchors per frame, and the example features of the positive spans."""
    config = separator.config
    hop, rate = config.stft.hop, config.stft.sample_rate
    frames = -(-mixture.shape[1] // hop)
    anchors = np.zeros(frames, np.int64)
    positive = np.zeros(frames, bool)
    for span in spans:
        first, last = max(0, int(span.start * rate) // hop), min(frames, -(-int(span.stop * rate) // hop))
        anchors[first:last] = ANCHOR_POSITIVE if span.positive else ANCHOR_NEGATIVE
        positive[first:last] |= span.positive
    separator.anchor_schedule = anchors
    if not positive.any():
        return None
    return compressed_frames(mixture.mean(axis=0), config)[:frames][positive].mean(axis=0).astype(np.float32)


def separate(audio: np.ndarray, sample_rate: int, text_embedding: np.ndarray | None = None, *,
             spans: list[SpanPrompt] = (), steps: int | None = None, model_dir: Path = DEFAULT_MODEL_DIR,
             seed: int = 0) -> Separation:
    """audio (channels, n) float32 -> target and residual, by the live path."""
    separator = OnnxSeparator(model_dir, steps=steps, seed=seed)
    config = separator.config
    model_rate = config.stft.sample_rate
    original = audio.astype(np.float32)
    broken = ~np.isfinite(original)
    original = np.where(broken, np.float32(0.0), original)
    mixture = change_rate(original, sample_rate, model_rate)
    example = span_prompt(mixture, list(spans), separator)
    separator.set_prompt(Prompt(text_embedding=text_embedding, example_features=example))
    engine = StftEngine(config.stft.n_fft, config.stft.hop, model=separator)
    target = render_offline(engine, mixture, model_rate)
    target = change_rate(target, model_rate, sample_rate)
    return Separation(target, original - target, sample_rate, engine.latency_samples, separator.steps,
                      separator.passing_through, int(broken.sum()))
