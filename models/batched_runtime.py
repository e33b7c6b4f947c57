"""Many streams, one ONNX Runtime call per hop (serving half, no torch).

A 16-input broadcast rig, or sixteen independent streams, need not cost sixteen model
calls a hop: the hop graph takes a batch, and every stream is one row of it, with its own
prompt, its own noise, its own key/value cache rows and its own prompt crossfade. A row
gives the same numbers as that stream alone through ``OnnxSeparator`` (to float32
rounding: the batched matrix products sum in another order), which a test proves.

``BatchedSeparator`` is a ``SpectralModel`` for ``StftEngine`` whose channels are the
streams' channels, stream by stream (``channels_per_stream`` each). ``StreamBatchControl``
holds what does not depend on where the arrays live (prompts, fades, the cache clock), so
the device version (``models.gpu_runtime``) shares it.
"""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from samstream.kernels.level import make_level_state, normalise_streams
from samstream.kernels.masking import push_frame, slot_ages, store_keys_values
from samstream.kernels.streams import (
    advance_fades,
    advance_seen,
    apply_stream_gains,
    blend_stream_gains,
    downmix_streams,
)

from .runtime import (
    VARIANTS,
    ModelFolderError,
    Prompt,
    PromptConditioner,
    bind_buffers,
    conditioning_width,
    graph_input_names,
    load_serving_config,
    make_session,
)

BATCHED_GRAPHS = "batched_hop_graphs"  # serving.json key: hop graphs with a free batch axis


def hop_graph_path(model_dir: Path, steps: int | None, streams: int, variant: str = "fp32") -> tuple[Path, int]:
    """The hop graph for ``streams`` rows: the batch-1 graph for one, the batched graph for more."""
    _, serving = load_serving_config(model_dir)
    if variant not in VARIANTS:
        raise ModelFolderError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    key = VARIANTS[variant] if streams == 1 else BATCHED_GRAPHS
    if streams > 1 and variant != "fp32":
        raise ModelFolderError(f"batched hop graphs are float32 only, not {variant}")
    graphs = {int(count): name for count, name in serving.get(key, {}).items()}
    if not graphs:
        raise ModelFolderError(f"{model_dir}: no {key.replace('_', ' ')} for {streams} stream(s) "
                               "(re-export with `samstream export`)")
    steps = steps if steps is not None else min(graphs)
    if steps not in graphs:
        raise ModelFolderError(f"{model_dir}: no {key.replace('_', ' ')} for {steps} steps (has {sorted(graphs)})")
    return Path(model_dir) / graphs[steps], steps


class StreamBatchControl:
    """Prompts, prompt fades and the cache clock of a batch of streams, wherever the arrays live."""

    def __init__(self, model_dir: Path, streams: int, channels_per_stream: int, steps: int | None,
                 seed: int, crossfade_frames: int):
        if int(streams) != streams or streams < 1:
            raise ModelFolderError(f"streams must be a positive whole number, got {streams}")
        if int(channels_per_stream) != channels_per_stream or channels_per_stream < 1:
            raise ModelFolderError(f"channels_per_stream must be a positive whole number, got {channels_per_stream}")
        self.config, serving = load_serving_config(model_dir)
        self.graph_path, self.steps = hop_graph_path(model_dir, steps, streams)
        self.conditioner = PromptConditioner(model_dir, self.config, serving, self.steps)
        self.streams = int(streams)
        self.channels_per_stream = int(channels_per_stream)
        self.lookahead_frames = self.config.transformer.lookahead_frames
        self.context = self.config.transformer.context_frames
        self.seed = seed
        self.crossfade_frames = max(0, int(crossfade_frames))
        self.keep_target = True
        self._prompt_lock = threading.Lock()
        # Every stream starts with no prompt in force: it passes through until one arrives.
        # Each entry: (prompt, its conditioning rows (steps, M)), made by ``set_prompt``.
        no_prompt = (Prompt(), self.conditioner.rows(Prompt()))
        self._pending: list[tuple[Prompt, np.ndarray] | None] = [no_prompt] * self.streams
        self._applied: list[tuple[Prompt, np.ndarray]] = [no_prompt] * self.streams
        self.live_anchors = np.zeros(self.streams, np.int64)
        self.passing = np.ones(self.streams, np.bool_)
        self.shares = np.ones(self.streams, np.float32)
        self.fades_left = np.zeros(self.streams, np.int64)

    def stream_seeds(self) -> list[int]:
        """Stream s draws the noise a lone ``OnnxSeparator`` seeded ``seed + s`` would."""
        return [self.seed + stream for stream in range(self.streams)]

    def set_prompt(self, prompt: Prompt, stream: int | None = None) -> None:
        """From any thread; ``stream`` None sets every stream. Lands at the next hop boundary.
        Its conditioning is computed here, on the caller's thread."""
        prepared = (prompt, self.conditioner.rows(prompt))
        with self._prompt_lock:
            for index in range(self.streams) if stream is None else (stream,):
                self._pending[index] = prepared

    @property
    def prompt_pending(self) -> bool:
        return any(prompt is not None for prompt in self._pending)

    def check_rows(self, channels: int, n_bins: int) -> None:
        if n_bins != self.config.stft.n_bins:
            raise ModelFolderError(f"the model wants {self.config.stft.n_bins} bins, the engine gives {n_bins}")
        if channels != self.streams * self.channels_per_stream:
            raise ModelFolderError(f"{self.streams} stream(s) of {self.channels_per_stream} channel(s) are "
                                   f"{self.streams * self.channels_per_stream} channels, the engine gives {channels}")

    def restart_clock(self) -> None:
        self._frame = 0
        self._write_slot = 0
        self.fades_left[:] = 0
        self.shares[:] = 1.0
        with self._prompt_lock:
            self._pending = [pending or applied for pending, applied in zip(self._pending, self._applied, strict=True)]

    def take_prompts(self) -> None:
        """At a hop boundary: every stream with a new prompt writes its rows and starts its fade."""
        with self._prompt_lock:
            taken = [(stream, pending) for stream, pending in enumerate(self._pending) if pending is not None]
            self._pending = [None] * self.streams
        for stream, pending in taken:
            self._applied[stream] = pending
            self.passing[stream] = pending[0].is_empty
            if self.crossfade_frames:
                self.snapshot_gain(stream)
                self.fades_left[stream] = self.crossfade_frames
            self.write_prompt_row(stream, *pending)

    def next_frame(self) -> tuple[int, int]:
        """(this hop's frame number, the cache slot its keys and values go to); moves the clock on."""
        frame, slot = self._frame, self._write_slot
        self._frame += 1
        if frame >= self.lookahead_frames:
            self._write_slot = (slot + 1) % self.context
        return frame, slot

    def write_prompt_row(self, stream: int, prompt: Prompt, conditioning: np.ndarray) -> None:
        """Stream's prompt into its row of ``prompt_rows`` (the arrays the session reads, or their host side)."""
        rows = self.prompt_rows
        rows["conditioning"][:, stream] = conditioning
        rows["visual"][stream] = 0.0 if prompt.visual is None else prompt.visual
        self.prompts_changed = True

    def snapshot_gain(self, stream: int) -> None:
        """Keep stream's current gain row as the start of its prompt fade."""
        raise NotImplementedError


class BatchedSeparator(StreamBatchControl):
    """S streams through one batched hop graph per hop, on host buffers bound once (CPU or ORT's copies)."""

    def __init__(self, model_dir: Path, streams: int, channels_per_stream: int = 1, steps: int | None = None,
                 threads: int = 1, seed: int = 0, crossfade_frames: int = 0, device: str = "cpu"):
        super().__init__(model_dir, streams, channels_per_stream, steps, seed, crossfade_frames)
        self.session = make_session(self.graph_path, threads, device)
        self.uses_noise = "noise" in graph_input_names(self.session)

    def configure(self, channels: int, n_bins: int) -> None:
        self.check_rows(channels, n_bins)
        config, spec, streams = self.config, self.config.transformer, self.streams
        head_dim = spec.width // spec.heads
        cache_shape = (self.steps, streams, spec.depth, spec.heads, spec.context_frames, head_dim)
        self.buffers = {
            "spectrum": np.zeros((streams, 2, n_bins), np.float32),
            "noise": np.zeros((streams, 2 * n_bins), np.float32),
            "conditioning": np.zeros((self.steps, streams, conditioning_width(config)), np.float32),
            "anchor": np.zeros(streams, np.int64),
            "visual": np.zeros((streams, config.prompt.visual_dim), np.float32),
            "key_cache": np.zeros(cache_shape, np.float32),
            "value_cache": np.zeros(cache_shape, np.float32),
            "ages": np.zeros(spec.context_frames, np.int64),
            "seen": np.zeros(streams, np.int64),
        }
        new_shape = (self.steps, streams, spec.depth, spec.heads, head_dim)
        self.outputs = {
            "target_mask": np.zeros((streams, n_bins), np.float32),
            "new_keys": np.zeros(new_shape, np.float32),
            "new_values": np.zeros(new_shape, np.float32),
        }
        self.prompt_rows = self.buffers
        self.binding = bind_buffers(self.session, self.buffers, self.outputs)
        self._history = np.zeros((self.lookahead_frames + 1, channels, n_bins), np.complex64)
        self._gains = np.ones((streams, n_bins), np.float32)
        self._fade_from = np.ones((streams, n_bins), np.float32)
        self._noise_rows = [self.buffers["noise"][stream] for stream in range(streams)]
        self._level_parameters = config.level_parameters()
        self._level_states = make_level_state(streams)
        self.reset()

    def reset(self) -> None:
        for name in ("key_cache", "value_cache", "seen", "ages"):
            self.buffers[name][...] = 0
        self._history[...] = 0
        self._gains[...] = 1.0
        self._level_states[...] = 0
        self._randoms = [np.random.default_rng(seed) for seed in self.stream_seeds()]
        self.restart_clock()

    def snapshot_gain(self, stream: int) -> None:
        self._fade_from[stream] = self._gains[stream]

    def process(self, spectrum_in: np.ndarray, spectrum_out: np.ndarray) -> None:
        self.take_prompts()
        lookahead = self.lookahead_frames
        frame, slot = self.next_frame()
        push_frame(spectrum_in, self._history, frame % (lookahead + 1))
        if frame < lookahead:
            spectrum_out[:] = 0
            return
        buffers = self.buffers
        downmix_streams(spectrum_in, buffers["spectrum"])
        if self._level_parameters is not None:
            normalise_streams(buffers["spectrum"], self._level_states, self._level_parameters)
        if self.uses_noise:
            for random, row in zip(self._randoms, self._noise_rows, strict=True):
                random.standard_normal(out=row, dtype=np.float32)
        slot_ages(slot, buffers["ages"])
        np.copyto(buffers["anchor"], self.live_anchors)
        self.session.run_with_iobinding(self.binding)
        store_keys_values(self.outputs["new_keys"], self.outputs["new_values"], buffers["key_cache"],
                          buffers["value_cache"], slot)
        advance_seen(buffers["seen"], self.context)
        advance_fades(self.fades_left, self.crossfade_frames, self.shares)
        blend_stream_gains(self.outputs["target_mask"], self._fade_from, self.shares, self.passing,
                           self.keep_target, self._gains)
        apply_stream_gains(self._history[(frame - lookahead) % (lookahead + 1)], self._gains, spectrum_out)
