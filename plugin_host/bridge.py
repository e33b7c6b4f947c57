"""The live bridge: the model behind a ``LiveProcessor``, driven by the control tree.

Backends (JACK, PortAudio, file) call ``process`` from their audio callback and nothing
else. Control surfaces call the ``LiveTarget`` methods through a ``Controller``. Text
prompts are encoded on a prompt thread (cached per text); spans and the capture button
turn the stream's own recent history into an example embedding; everything reaches the
model at a hop boundary, with a crossfade.
"""
from __future__ import annotations

import queue
import threading
import time
from pathlib import Path

import numpy as np

from samstream.kernels.live import record_history
from samstream.models.config import ANCHOR_NEGATIVE, ANCHOR_POSITIVE
from samstream.models.runtime import VARIANTS, OnnxSeparator, Prompt, compressed_frames, load_serving_config
from samstream.stream.engine import ConfigurationError, StftEngine
from samstream.stream.live import LiveProcessor

from .control import Controller, MixSettings
from .live_judge import LiveJudge
from .video_live import LiveVisual

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "models" / "default"
HISTORY_SECONDS = 30.0
WARMUP_FRAMES = 16


class StepSwitch:
    """A spectral model holding one separator per step count; switches at a hop boundary."""

    def __init__(self, separators: dict[int, OnnxSeparator], steps: int):
        self.separators = separators
        self.active = separators[steps]
        self.lookahead_frames = self.active.lookahead_frames
        self._next: OnnxSeparator | None = None

    def select(self, steps: int) -> None:
        self._next = self.separators[steps]

    def set_prompt(self, prompt: Prompt) -> None:
        for separator in self.separators.values():
            separator.set_prompt(prompt)

    def set_live_anchor(self, anchor: int) -> None:
        for separator in self.separators.values():
            separator.live_anchor = anchor

    def configure(self, channels: int, n_bins: int) -> None:
        # Every graph, not only the active one, runs before audio starts: a later /sam/steps
        # then costs no first-call planning on the audio path.
        silence_in = np.zeros((channels, n_bins), np.complex64)
        silence_out = np.zeros_like(silence_in)
        for separator in self.separators.values():
            separator.configure(channels, n_bins)
            for _ in range(WARMUP_FRAMES):
                separator.process(silence_in, silence_out)
            separator.reset()

    def reset(self) -> None:
        for separator in self.separators.values():
            separator.reset()

    def process(self, spectrum_in: np.ndarray, spectrum_out: np.ndarray) -> None:
        if self._next is not None:
            self.active, self._next = self._next, None
        self.active.process(spectrum_in, spectrum_out)


class LiveBridge:
    """Everything between a backend's callback and the control surfaces."""

    def __init__(self, model_dir: Path | None = None, *, steps: int | None = None, host_block: int | None = None,
                 max_block: int = 4096, threaded: bool = True, crossfade_ms: float = 20.0,
                 max_latency_ms: float | None = 25.0, threads: int = 1, text_encoder=None, device: str = "cpu",
                 variant: str = "fp32", judge_dir: Path | None = None, judge: bool = True):
        self.model_dir = Path(model_dir) if model_dir is not None else DEFAULT_MODEL_DIR
        config, serving = load_serving_config(self.model_dir)
        self.config = config
        available = sorted(int(key) for key in serving.get(VARIANTS.get(variant, "hop_graphs"), {}))
        if not available:
            raise ConfigurationError(f"{self.model_dir}: no {variant} hop graphs (re-export with `samstream export`)")
        self.max_steps = max(available)
        steps = steps if steps is not None else min(available)
        if steps not in available:
            raise ConfigurationError(f"{self.model_dir}: no {variant} hop graph for {steps} steps (has {available})")
        fade_frames = max(1, round(crossfade_ms * config.stft.sample_rate / 1000 / config.stft.hop))
        separators = {count: OnnxSeparator(self.model_dir, steps=count, threads=threads,
                                           crossfade_frames=fade_frames, device=device, variant=variant)
                      for count in available}
        self.model = StepSwitch(separators, steps)
        self._visual = LiveVisual(config, list(separators.values()), fade_frames, self._visual_changed)
        engine = StftEngine(config.stft.n_fft, config.stft.hop, model=self.model,
                            supported_sample_rates=(config.stft.sample_rate,))
        self.processor = LiveProcessor(engine, host_block=host_block, max_block=max_block, threaded=threaded,
                                       crossfade_ms=crossfade_ms, max_latency_ms=max_latency_ms,
                                       hop_hook=self._before_hop)
        self.controller = Controller(self)
        self._text_encoder = text_encoder
        self._mix = MixSettings()
        self._text = ""
        self._text_embedding: np.ndarray | None = None
        self._example: np.ndarray | None = None
        self._example_seconds = 0.0
        self._anchor_spans: list[tuple[int, int, int]] = []  # (first sample, stop sample, anchor)
        self._capture_start: int | None = None
        self._prompt_jobs: queue.Queue = queue.Queue(maxsize=64)
        self._prompt_thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.xruns = 0
        self.last_xrun: tuple[float, float] | None = None  # (stream seconds, delay in microseconds)
        self.backend_name = ""
        self.notes: list[str] = []
        self._prompt_requested_at: float | None = None
        self._prompt_sent_at: float | None = None
        # From a text prompt's arrival to the first hop that runs with it (encoding included).
        self.prompt_switch_ms: float | None = None
        self.judge: LiveJudge | None = None
        if judge:
            try:
                self.judge = LiveJudge(judge_dir)
            except ValueError as error:  # no judge folder: the stream runs, the confidence reads None
                self._note(f"no confidence: {error}")

    # stream --------------------------------------------------------------------------

    @property
    def sample_rate(self) -> int:
        return self.config.stft.sample_rate

    @property
    def latency_samples(self) -> int:
        return self.processor.latency_samples

    def configure(self, channels: int, sample_rate: int | None = None) -> None:
        rate = sample_rate or self.sample_rate
        self.processor.configure(rate, channels)
        self._history = np.zeros(1 << int(HISTORY_SECONDS * rate).bit_length(), np.float32)
        self._history_count = np.zeros(1, np.int64)
        record_history(np.zeros((channels, 4), np.float32), self._history, self._history_count)
        self._history_count[0] = 0
        self._visual.restart()
        if self.judge is not None:
            try:
                self.judge.configure(rate, round(self.processor.crossfade_ms * rate / 1000))
            except ValueError as error:
                self.judge = None
                self._note(f"no confidence: {error}")
        self._apply_weights()

    def start(self) -> None:
        if self._text_encoder is None:
            from samstream.models.text_encoder import TextEncoder
            self._text_encoder = TextEncoder.load()
        self._text_encoder.encode("warm up")  # loads and plans the encoder before the first prompt
        self._prompt_thread = threading.Thread(target=self._prompt_work, name="samstream-prompts", daemon=True)
        self._prompt_thread.start()
        self.processor.start()
        if self.judge is not None:
            self.judge.start()

    def stop(self) -> None:
        if self.judge is not None:
            self.judge.stop()
        self.processor.stop()
        self._visual.stop()
        if self._prompt_thread is not None:
            self._prompt_jobs.put(None)
            self._prompt_thread.join(timeout=5)
            # The sentinel was taken but never marked done.
            self._prompt_jobs.task_done()
            self._prompt_thread = None

    def settle(self) -> None:
        """Wait until every prompt change sent so far is encoded and handed to the model."""
        if self._prompt_thread is not None:
            self._prompt_jobs.join()

    def process(self, block_in: np.ndarray, block_out: np.ndarray, taps_out: np.ndarray | None = None) -> bool:
        """The backend's audio callback hands its (channels, n) float32 block here."""
        return self.processor.process(block_in, block_out, taps_out)

    def _before_hop(self, stream_sample: int) -> None:
        """Runs on the worker before each hop: scheduled changes, live anchors, history."""
        self.controller.run_due()
        self._visual.before_hop()
        anchor = 0
        if self._capture_start is not None:
            anchor = ANCHOR_POSITIVE
        else:
            for first, stop, sign in self._anchor_spans:
                if first <= stream_sample < stop:
                    anchor = sign
        self.model.set_live_anchor(anchor)
        record_history(self.processor.current_hop, self._history, self._history_count)
        if self.judge is not None:
            self.judge.record(*self.processor.previous_aligned_hop)
        if self._prompt_sent_at is not None and not self.model.active.prompt_pending:
            if self._prompt_requested_at is not None:
                self.prompt_switch_ms = 1000.0 * (time.perf_counter() - self._prompt_requested_at)
                self._prompt_requested_at = None
            self._prompt_sent_at = None

    def count_xrun(self, delay_us: float) -> None:
        """From the backend's xrun callback: counted with the stream time it happened at."""
        self.xruns += 1
        self.last_xrun = (round(self.stream_seconds(), 3), round(float(delay_us), 1))

    def stream_seconds(self) -> float:
        return self.processor.stream_samples() / self.processor.sample_rate if self.processor.sample_rate else 0.0

    # LiveTarget ----------------------------------------------------------------------

    def set_mix(self, settings: MixSettings) -> None:
        self._mix = settings
        self._apply_weights()

    def _apply_weights(self) -> None:
        empty = self._text_embedding is None and self._example is None and not self._text and \
            not self._visual.prompting
        dry, target, residual = self._mix.weights(passing_through=empty)
        self.processor.set_weights(dry, target, residual, dry + target + residual)

    def set_text(self, text: str) -> None:
        self._prompt_requested_at = time.perf_counter()
        self._prompt_jobs.put(("text", text))

    def set_steps(self, steps: int) -> None:
        self.model.select(steps)

    def add_span(self, start: float, stop: float, positive: bool) -> None:
        rate = self.processor.sample_rate
        first, last = int(start * rate), int(stop * rate)
        if positive:
            self._prompt_jobs.put(("example", first, last))
        else:
            self._add_anchor_span(first, last, ANCHOR_NEGATIVE)

    def set_capture(self, holding: bool) -> None:
        now = self.processor.stream_samples()
        if holding:
            if self._capture_start is None:
                self._capture_start = now
        elif self._capture_start is not None:
            first, self._capture_start = self._capture_start, None
            self._add_anchor_span(first, now, ANCHOR_POSITIVE)
            self._prompt_jobs.put(("example", first, now))

    def _add_anchor_span(self, first: int, stop: int, anchor: int) -> None:
        # The worker scans these every hop: spans the stream has passed are dropped here, and the
        # list is replaced whole, so the worker never sees one half-changed.
        now = self.processor.stream_samples()
        self._anchor_spans = [span for span in self._anchor_spans if span[1] > now] + [(first, stop, anchor)]

    def set_visual_box(self, box: tuple[float, float, float, float] | None) -> None:
        self._visual.set_box(box)
        if self._visual.feed is None:
            self._note("visual box stored; no video source is attached (serve --video), so it does not steer")
        self._visual_changed(None)

    def attach_video(self, path: str, threaded: bool | None = None, image_encoder: Path | None = None) -> None:
        """A video source (a file played in step with the stream, or /dev/videoN) for the visual box."""
        from samstream.models.visual import MOTION_FEATURES, ImageEncoder

        from .video_live import VideoFeed
        encoder = None if image_encoder is None else \
            ImageEncoder(Path(image_encoder), self.config.prompt.visual_dim - MOTION_FEATURES)
        feed = VideoFeed(path, self.config, self.stream_seconds, self.processor.threaded if threaded is None
                         else threaded, encoder)
        self._visual.attach(feed)

    def video_picture(self) -> bytes | None:
        """The video source's latest frame as a JPEG, for drawing the box on the control page."""
        return self._visual.feed.picture_jpeg() if self._visual.feed is not None else None

    def _visual_changed(self, reason: str | None) -> None:
        if reason:
            self._note(reason)
        try:  # from the worker too: never wait on a full queue there
            self._prompt_jobs.put_nowait(("visual",))
        except queue.Full:
            pass

    def clear_prompts(self) -> None:
        self._anchor_spans.clear()
        self._capture_start = None
        self._visual.set_box(None)
        self._prompt_jobs.put(("clear",))

    # prompt thread -------------------------------------------------------------------

    def _prompt_work(self) -> None:
        while True:
            job = self._prompt_jobs.get()
            if job is None:
                return
            try:
                self._run_prompt_job(job)
            except Exception as error:  # a prompt that fails must not take the stream down
                self._note(f"prompt refused: {error}")
            finally:
                self._prompt_jobs.task_done()

    def _run_prompt_job(self, job: tuple) -> None:
        kind = job[0]
        if kind == "text":
            self._text = job[1]
            self._text_embedding = self._text_encoder.encode(job[1]) if job[1].strip() else None
        elif kind == "example":
            self._example = self._example_from_history(job[1], job[2])
        elif kind == "clear":
            self._text, self._text_embedding, self._example = "", None, None
        elif kind == "visual" and (self._text_embedding is not None or self._example is not None):
            return  # its row is fed every hop; the other prompts keep the model running: nothing to redo
        self._prompt_sent_at = time.perf_counter()
        self.model.set_prompt(Prompt(text_embedding=self._text_embedding, example_features=self._example,
                                     visual=self._visual.row if self._visual.prompting else None))
        if self.judge is not None:
            self.judge.set_prompt(self._text_embedding)
        self._apply_weights()

    def _example_from_history(self, first: int, stop: int) -> np.ndarray | None:
        # A span reaching into the future is taken when the stream has passed its end.
        while int(self._history_count[0]) < stop and self.processor.running:
            time.sleep(0.01)
        oldest = int(self._history_count[0]) - self._history.shape[0]
        first, stop = max(first, oldest, 0), min(stop, int(self._history_count[0]))
        if stop - first < self.config.stft.n_fft:
            self._note("span too short or too old to take an example from (kept the previous example)")
            return self._example
        mask = self._history.shape[0] - 1
        audio = self._history[np.arange(first, stop) & mask]
        self._example_seconds = (stop - first) / self.processor.sample_rate
        return compressed_frames(audio, self.config, level=True).mean(axis=0).astype(np.float32)

    # reporting -----------------------------------------------------------------------

    def _note(self, text: str) -> None:
        with self._lock:
            self.notes = [*self.notes[-4:], text]

    def prompt_description(self) -> str:
        parts = []
        if self._text:
            parts.append(f"text {self._text!r}")
        if self._example is not None:
            parts.append(f"example of {self._example_seconds:.1f} s")
        if self._capture_start is not None:
            parts.append("capturing")
        if self._visual.prompting:
            parts.append(self._visual.describe())
        return ", ".join(parts)

    def status(self) -> dict:
        stats = self.processor.stats()
        hop_ms = 1000.0 * self.processor.hop / self.processor.sample_rate if self.processor.sample_rate else 0.0
        prompt = self.prompt_description()
        return {
            "latency_ms": round(self.processor.latency_ms, 3),
            "latency_samples": self.latency_samples,
            "safety_samples": self.processor.safety,
            "worker_realtime": self.processor.realtime_priority,
            "xruns": self.xruns,
            "last_xrun": list(self.last_xrun) if self.last_xrun else None,
            "misses": stats.misses,
            "first_miss_seconds": round(stats.first_miss_sample / self.processor.sample_rate, 3)
            if stats.first_miss_sample >= 0 else None,
            "last_miss_seconds": round(stats.last_miss_sample / self.processor.sample_rate, 3)
            if stats.last_miss_sample >= 0 else None,
            "rtf": round(stats.hop_ms_p50 / hop_ms, 4) if hop_ms else 0.0,
            "hop_ms_p50": round(stats.hop_ms_p50, 3),
            "hop_ms_p99": round(stats.hop_ms_p99, 3),
            "hop_ms_max": round(stats.hop_ms_max, 3),
            "hops": stats.hops,
            "non_finite_samples": stats.non_finite_samples,
            "clipped_samples": stats.clipped_samples,
            "prompt": prompt,
            "passing_through": not prompt,
            "note": "no prompt: audio passes through" if not prompt else "",
            "notes": list(self.notes),
            "confidence": self.judge.confidence if self.judge is not None else None,
            "confidence_db": None if self.judge is None or self.judge.score_db is None
            else round(self.judge.score_db, 2),
            "judgements": self.judge.judgements if self.judge is not None else 0,
            "judge_ms": round(self.judge.judge_ms, 2) if self.judge is not None else None,
            "prompt_switch_ms": None if self.prompt_switch_ms is None else round(self.prompt_switch_ms, 2),
            "crossfade_ms": self.processor.crossfade_ms,
            "steps": self.model.active.steps,
            "device": self.model.active.device,
            "variant": self.model.active.variant,
            "mode": self._mix.mode,
            "backend": self.backend_name,
            "sample_rate": self.processor.sample_rate,
            "channels": self.processor.channels,
            "stream_seconds": round(self.stream_seconds(), 3),
            "visual": self._visual.status(),
        }

    def meters(self) -> dict:
        return {**self.processor.meters_db(), "confidence": self.judge.confidence if self.judge is not None else None}
