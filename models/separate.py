"""``separate()``: the one inference entry point (runtime half: numpy, numba, ONNX Runtime).

Two paths, the same numbers:
- ``stream=True`` runs the live path itself, hop by hop (block scheduler aside): the
  streaming STFT, the exported hop graph, the mask, the ISTFT; the reported latency is
  removed afterwards so the outputs line up with the input.
- ``stream=False`` (offline) runs the sequence graph over the whole file in chunks. The
  causal attention sees ``context_frames`` back per layer, so a chunk preceded by
  ``depth * context_frames`` frames of its past computes exactly what the stream does:
  the chunks have no seams. Noise is drawn in the stream's order, so both paths agree.
Audio at any other rate (16 to 192 kHz) is resampled to the model's 48 kHz by the project's
polyphase kernel and back, each stage's delay removed.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from samstream.kernels.level import level_normalised
from samstream.kernels.resample import make_resampler_state, max_output_for, resample
from samstream.stream.engine import StftEngine
from samstream.stream.offline import analyze_frames, render_offline, synthesize_frames

from .config import ANCHOR_NEGATIVE, ANCHOR_POSITIVE, ModelConfig
from .runtime import OnnxSeparator, Prompt, compressed_frames, make_session, prompt_feeds
from .visual import VisualFrames

CHUNK_FRAMES = 1024

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
    aligned = out[:, state.delay_out:written]
    if aligned.shape[1] < length:
        aligned = np.pad(aligned, ((0, 0), (0, length - aligned.shape[1])))
    return aligned[:, :length]


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
    heard = compressed_frames(mixture.mean(axis=0), config, level=True)
    return heard[:frames][positive].mean(axis=0).astype(np.float32)


def sequence_session(model_dir: Path, steps: int, threads: int = 2):
    """The ONNX Runtime session of a model's whole-sequence graph for ``steps`` steps."""
    graphs = json.loads((Path(model_dir) / "serving.json").read_text()).get("sequence_graphs", {})
    if str(steps) not in graphs:
        raise ValueError(f"{model_dir}: no sequence graph for {steps} steps; re-export the model")
    return make_session(Path(model_dir) / graphs[str(steps)], threads=threads)


def offline_target(config: ModelConfig, session, mixture: np.ndarray, prompt: Prompt, seed: int, *,
                   anchor_schedule: np.ndarray | None = None, visual_schedule: np.ndarray | None = None,
                   chunk_frames: int | None = None) -> np.ndarray:
    """The whole (channels, n) mixture at the model's rate -> target, aligned with the input.

    ``session``: the model's sequence graph (``sequence_session``), kept by a caller that runs
    many; the schedules are per-frame span anchors and visual rows, as the live path takes them."""
    stft, spec = config.stft, config.transformer
    length = mixture.shape[1]
    frames = -(-(length + stft.n_fft - stft.hop) // stft.hop)
    spectra = analyze_frames(mixture, stft.n_fft, stft.hop, frames)
    if prompt.is_empty:
        return mixture.copy()
    mid = spectra.mean(axis=0)
    spectrum = level_normalised(np.stack((mid.real, mid.imag), axis=1), config.level_parameters())[None]
    noise = np.random.default_rng(seed).standard_normal((1, frames, 2 * stft.n_bins), dtype=np.float32)
    anchors = np.zeros((1, frames), np.int64)
    if anchor_schedule is not None:
        count = min(frames, len(anchor_schedule))
        anchors[0, :count] = anchor_schedule[:count]
    feeds = prompt_feeds(prompt, config)
    visual = np.zeros((1, frames, config.prompt.visual_dim), np.float32)
    if visual_schedule is not None:
        count = min(frames, len(visual_schedule))
        visual[0, :count] = visual_schedule[:count]
    masks = np.zeros((frames, stft.n_bins), np.float32)
    prefix = spec.depth * spec.context_frames
    chunk_frames = chunk_frames or CHUNK_FRAMES
    for start in range(0, frames, chunk_frames):
        first, stop = max(0, start - prefix), min(frames, start + chunk_frames)
        window = slice(first, stop)
        chunk = session.run(None, {**feeds, "spectrum": spectrum[:, window], "noise": noise[:, window],
                                   "anchors": anchors[:, window],
                                   "visual": visual[:, window]})[0]
        masks[start:stop] = chunk[0, start - first:]
    target = synthesize_frames(spectra * masks[None], stft.n_fft, stft.hop)
    delay = stft.n_fft - stft.hop
    return target[:, delay:delay + length]


def separate(audio: np.ndarray, sample_rate: int, text_embedding: np.ndarray | None = None, *,
             spans: list[SpanPrompt] = (), steps: int | None = None, model_dir: Path = DEFAULT_MODEL_DIR,
             seed: int = 0, stream: bool = True, chunk_frames: int | None = None,
             variant: str = "fp32", visual: VisualFrames | None = None) -> Separation:
    """audio (channels, n) float32 -> target and residual, by the live path or offline.

    ``visual``: a video's features for the prompted region (``plugin_host.video``), aligned
    here to the model's frames by their timestamps; both paths feed the same rows.

    ``variant`` "int8" streams with the quantised hop graph (the offline path is float32 only).
    """
    if variant != "fp32" and not stream:
        raise ValueError(f"the {variant} variant exists for the live path only: use stream=True")
    separator = OnnxSeparator(model_dir, steps=steps, seed=seed, variant=variant)
    config = separator.config
    model_rate = config.stft.sample_rate
    original = audio.astype(np.float32)
    broken = ~np.isfinite(original)
    original = np.where(broken, np.float32(0.0), original)
    mixture = change_rate(original, sample_rate, model_rate)
    example = span_prompt(mixture, list(spans), separator)
    schedule = None
    if visual is not None:
        # Enough rows for the offline path's frames, which outnumber the stream's tokens.
        frames = -(-(mixture.shape[1] + config.stft.n_fft) // config.stft.hop) + separator.lookahead_frames
        schedule = separator.visual_schedule = visual.schedule(frames, config)
    prompt = Prompt(text_embedding=text_embedding, example_features=example,
                    visual=None if schedule is None else schedule[0])
    separator.set_prompt(prompt)
    engine = StftEngine(config.stft.n_fft, config.stft.hop, model=separator)
    if stream:
        target = render_offline(engine, mixture, model_rate)
    else:
        target = offline_target(config, sequence_session(model_dir, separator.steps), mixture, prompt, seed,
                                anchor_schedule=separator.anchor_schedule,
                                visual_schedule=separator.visual_schedule, chunk_frames=chunk_frames)
    target = change_rate(target, model_rate, sample_rate)
    return Separation(target, original - target, sample_rate, engine.latency_samples, separator.steps,
                      prompt.is_empty, int(broken.sum()))
