"""The live bridge: the model behind a ``LiveProcessor``, driven by the control tree.

Backends (JACK, PortAudio, file) call ``process`` from their audio callback and nothing
else. Control surfaces call the ``LiveTarget`` methods through a ``Controller``; none of
them waits: prompt changes go to ``LivePrompts`` (latest wins, encoded on its own thread),
settings glide in at the next hop. Everything reaches the model at a hop boundary, with a
crossfade.
"""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from samstream.models.runtime import VARIANTS, OnnxSeparator, Prompt, load_serving_config
from samstream.stream.engine import ConfigurationError, StftEngine
from samstream.stream.live import LiveProcessor

from .control import Controller, MixSettings
from .live_judge import LiveJudge
from .live_prompts import LivePrompts
from .video_live import LiveVisual

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "models" / "default"
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
                 max_latency_ms: float | None = 30.0, threads: int = 1, text_encoder=None, device: str = "cpu",
                 variant: str = "fp32", judge_dir: Path | None = None, judge: bool = True,
                 worker_time_ms: float | None = None):
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
                                       worker_time_ms=worker_time_ms,
                                       hop_hook=self._before_hop)
        self.controller = Controller(self)
        self._text_encoder = text_encoder
        self._mix = MixSettings()
        self.prompts = LivePrompts(config, self.model, self._visual, self.processor.stream_samples,
                                   self._prompt_sent, self._note)
        self._lock = threading.Lock()
        self.xruns = 0
        self.last_xrun: tuple[float, float] | None = None  # (stream seconds, delay in microseconds)
        self.backend_name = ""
        self.device_latency_samples = 0  # set by a backend that buffers outside the live path
        self.notes: list[str] = []
        self.judge: LiveJudge | None = None
        if judge:
            try:
                self.judge = LiveJudge(judge_dir)
            except ValueError as error:  # no judge folder: the stream runs, the confidence reads None
                self._note(f"no confidence: {error}")

    # stream --------------------------------------------------------------------------

    @property
    def sample_rate(self) -> int:
        """The backend's rate: the model's until ``configure`` is given another (it is converted)."""
        return self.processor.host_rate or self.config.stft.sample_rate

    @property
    def latency_samples(self) -> int:
        """From the backend's input to its output: the live path, plus what the backend's own
        buffering adds outside it (``device_latency_samples``, PortAudio's stream latency)."""
        return self.processor.latency_samples + self.device_latency_samples

    @property
    def latency_ms(self) -> float:
        return 1000.0 * self.latency_samples / self.sample_rate

    def configure(self, channels: int, sample_rate: int | None = None) -> None:
        self.processor.configure(sample_rate or self.config.stft.sample_rate, channels)
        rate = self.processor.sample_rate  # the model's: prompts and the judge keep time in its samples
        self.prompts.configure(rate, channels)
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
        self.prompts.start(self._text_encoder)
        if self.judge is not None:
            self.judge.start()  # waits for the judging process to load, before the worker runs
        self.processor.start()

    def stop(self) -> None:
        if self.judge is not None:
            self.judge.close()
        self.processor.stop()
        self._visual.stop()
        self.prompts.stop()

    def settle(self) -> None:
        """Wait until every prompt change sent so far is encoded and handed to the model."""
        self.prompts.settle()

    def process(self, block_in: np.ndarray, block_out: np.ndarray, taps_out: np.ndarray | None = None) -> bool:
        """The backend's audio callback hands its (channels, n) float32 block here."""
        return self.processor.process(block_in, block_out, taps_out)

    def _before_hop(self, stream_sample: int) -> None:
        """Runs on the worker before each hop: scheduled changes, live anchors, history."""
        self.controller.run_due()
        self._visual.before_hop()
        self.prompts.before_hop(stream_sample, self.processor.current_hop)
        if self.judge is not None:
            self.judge.record(*self.processor.previous_aligned_hop)

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
        sent = self.prompts.sent
        empty = not sent.text and sent.example_span is None and not self._visual.prompting
        dry, target, residual = self._mix.weights(passing_through=empty)
        self.processor.set_weights(dry, target, residual, dry + target + residual)

    def set_text(self, text: str) -> None:
        self.prompts.set_text(text)

    def set_steps(self, steps: int) -> None:
        self.model.select(steps)

    def check_span(self, start: float, stop: float, positive: bool) -> None:
        self.prompts.check_span(start, stop, positive)

    def add_span(self, start: float, stop: float, positive: bool) -> None:
        self.prompts.add_span(start, stop, positive)

    def set_capture(self, holding: bool) -> tuple[float, float] | None:
        return self.prompts.set_capture(holding)

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
        self.prompts.visual_changed()

    def clear_prompts(self) -> None:
        self._visual.set_box(None)
        self.prompts.clear()

    def _prompt_sent(self, text_embedding: np.ndarray | None) -> None:
        """On the prompt thread, once a new prompt is handed to the model."""
        if self.judge is not None:
            self.judge.set_prompt(text_embedding)
        self._apply_weights()

    # reporting -----------------------------------------------------------------------

    def _note(self, text: str) -> None:
        with self._lock:
            self.notes = [*self.notes[-4:], text]

    def prompt_description(self) -> str:
        """The prompt the engine runs now, in words ("" when the audio passes through)."""
        return self.prompts.describe()

    def running_prompt(self) -> dict:
        """The engine's own account of its prompt, in the controller's terms (compare ``/sam/state``)."""
        running, rate = self.prompts.running, self.processor.sample_rate or self.sample_rate
        span = None if running.example_span is None else [value / rate for value in running.example_span]
        return {"text": running.text, "example_span": span, "pending": self.prompts.pending}

    def _prompt_switch(self) -> dict:
        """From a text prompt's arrival to the first hop that ran it: wall time and stream time."""
        requested, applied = self.prompts.requested_at, self.prompts.applied_at
        if requested is None or applied is None:
            return {"prompt_switch_ms": None, "prompt_switch_stream_ms": None}
        rate = self.processor.sample_rate or self.sample_rate
        return {"prompt_switch_ms": round(1000.0 * (applied[0] - requested[0]), 2),
                "prompt_switch_stream_ms": round(1000.0 * (applied[1] - requested[1]) / rate, 2)}

    def status(self) -> dict:
        stats = self.processor.stats()
        hop_ms = 1000.0 * self.processor.hop / self.processor.sample_rate if self.processor.sample_rate else 0.0
        prompt = self.prompt_description()
        return {
            "latency_ms": round(self.latency_ms, 3),
            "latency_samples": self.latency_samples,
            "safety_samples": self.processor.safety,
            "worker_realtime": self.processor.realtime_priority,
            "xruns": self.xruns,
            "last_xrun": list(self.last_xrun) if self.last_xrun else None,
            "misses": stats.misses,
            "misses_per_minute": round(stats.misses_per_minute, 2),
            "first_miss_seconds": round(stats.first_miss_sample / self.processor.sample_rate, 3)
            if stats.first_miss_sample >= 0 else None,
            "last_miss_seconds": round(stats.last_miss_sample / self.processor.sample_rate, 3)
            if stats.last_miss_sample >= 0 else None,
            "rtf": round(stats.hop_ms_p50 / hop_ms, 4) if hop_ms else 0.0,
            "hop_ms_p50": round(stats.hop_ms_p50, 3),
            "hop_ms_p99": round(stats.hop_ms_p99, 3),
            "hop_ms_p999": round(stats.hop_ms_p999, 3),
            "hop_ms_max": round(stats.hop_ms_max, 3),
            "hops": stats.hops,
            "non_finite_samples": stats.non_finite_samples,
            "clipped_samples": stats.clipped_samples,
            "prompt": prompt,
            "running_prompt": self.running_prompt(),
            "passing_through": not prompt,
            "note": "no prompt: audio passes through" if not prompt else "",
            "notes": list(self.notes),
            "confidence": self.judge.confidence if self.judge is not None else None,
            "confidence_db": None if self.judge is None or self.judge.score_db is None
            else round(self.judge.score_db, 2),
            "judgements": self.judge.judgements if self.judge is not None else 0,
            "judge_ms": round(self.judge.judge_ms, 2) if self.judge is not None else None,
            **self._prompt_switch(),
            "crossfade_ms": self.processor.crossfade_ms,
            "steps": self.model.active.steps,
            "device": self.model.active.device,
            "variant": self.model.active.variant,
            "mode": self._mix.mode,
            "backend": self.backend_name,
            "sample_rate": self.sample_rate,
            "channels": self.processor.channels,
            "stream_seconds": round(self.stream_seconds(), 3),
            "visual": self._visual.status(),
        }

    def meters(self) -> dict:
        return {**self.processor.meters_db(), "confidence": self.judge.confidence if self.judge is not None else None}
