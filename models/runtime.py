"""The serving half of a model: one ONNX Runtime call per hop, no torch.

``OnnxSeparator`` is a ``SpectralModel`` for ``StftEngine``: each hop it downmixes the
frame, runs the exported hop graph (flow steps unrolled inside) on buffers bound once
by IO binding, stores this frame's keys and values in the cache rings in place, and
applies the mask to every channel of the frame the mask belongs to. A prompt becomes
the hop graph's conditioning rows when it is set (``PromptConditioner``), on the thread
that sets it: the hop only copies them in at its boundary.
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime

from samstream.kernels.level import level_normalised, make_level_state, normalise_streams
from samstream.kernels.masking import (
    apply_gain,
    blend_masks,
    downmix_real_imag,
    mask_gain,
    push_frame,
    slot_ages,
    store_keys_values,
)
from samstream.stream.offline import analyze_frames

from .config import ModelConfig


class ModelFolderError(ValueError):
    """A serving folder that cannot be used; the message names the file."""


@dataclass(frozen=True)
class Prompt:
    """What the model is asked for. All None: no prompt, and the audio passes through."""

    text_embedding: np.ndarray | None = None  # (text_dim,)
    example_features: np.ndarray | None = None  # (bins,) mean compressed magnitude of a captured span
    visual: np.ndarray | None = None  # (visual_dim,) features of the current video frame
    # Whatever the caller knows this prompt by (the live bridge's request); the model ignores it.
    request: object = None

    @property
    def is_empty(self) -> bool:
        return self.text_embedding is None and self.example_features is None and self.visual is None


def compressed_frames(signal: np.ndarray, config: ModelConfig, level: bool = False) -> np.ndarray:
    """(n,) mono -> (frames, bins): |X|^compression, framed by the streaming kernels themselves.

    The mean of these over a span is the example embedding's input, in training and live.
    ``level``: the frames as the serving path's model hears them (``kernels.level``), so that a
    span captured from a quiet stream matches the level the model hears that stream at; training
    draws its mixtures at the model's own levels and leaves them as they are.
    """
    stft = config.stft
    frames = analyze_frames(np.asarray(signal, np.float32)[None], stft.n_fft, stft.hop, -(-len(signal) // stft.hop))
    if level:
        real_imag = level_normalised(np.stack((frames[0].real, frames[0].imag), axis=1), config.level_parameters())
        magnitude = np.sqrt(real_imag[:, 0] ** 2 + real_imag[:, 1] ** 2)
    else:
        magnitude = np.abs(frames[0])
    return (magnitude ** config.transformer.compression).astype(np.float32)


# The hop graphs' contract (inputs, outputs, companion graphs); serving.json records the one it was
# exported with. 2: the prompt enters as precomputed ``conditioning`` from ``condition.onnx``.
SERVING_FORMAT = 2


def load_serving_config(model_dir: Path) -> tuple[ModelConfig, dict]:
    model_dir = Path(model_dir)
    for name in ("config.json", "serving.json"):
        if not (model_dir / name).exists():
            raise ModelFolderError(f"{model_dir / name}: missing (export the model with `samstream export`)")
    try:
        config = ModelConfig.load(model_dir / "config.json")
        serving = json.loads((model_dir / "serving.json").read_text())
    except (ValueError, TypeError, KeyError) as error:
        raise ModelFolderError(f"{model_dir}: unreadable model description ({error})") from None
    found = serving.get("format", 1)
    if found != SERVING_FORMAT:
        raise ModelFolderError(f"{model_dir / 'serving.json'}: graphs of format {found}, this samstream serves "
                               f"format {SERVING_FORMAT} (re-export with `samstream export`)")
    return config, serving


DEVICES = ("cpu", "cuda", "auto")
VARIANTS = {"fp32": "hop_graphs", "int8": "int8_hop_graphs"}  # serving.json key of each variant's graphs
CONDITION_GRAPH = "condition_graph"  # serving.json key: the prompt -> conditioning graph, any step count


def execution_providers(device: str) -> list[str]:
    """ONNX Runtime providers for ``device``: cuda needs onnxruntime-gpu (``samstream[gpu]``) and a GPU."""
    if device not in DEVICES:
        raise ModelFolderError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    has_cuda = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    if device == "cuda" and not has_cuda:
        raise ModelFolderError("device cuda: this ONNX Runtime has no CUDA provider "
                               "(pip install samstream[gpu] on a machine with an NVIDIA GPU)")
    if device in ("cuda", "auto") and has_cuda:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def make_session(path: Path, threads: int = 1, device: str = "cpu") -> onnxruntime.InferenceSession:
    providers = execution_providers(device)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Subnormal floats (a fading tail, near-silence) cost a CPU many times a normal one: a hop's time
    # must not depend on how quiet the input is.
    options.add_session_config_entry("session.set_denormal_as_zero", "1")
    try:
        return onnxruntime.InferenceSession(str(path), options, providers=providers)
    except Exception as error:  # ORT raises its own untyped errors for corrupt files
        raise ModelFolderError(f"{path}: not a loadable ONNX model ({str(error).splitlines()[0]})") from None


def conditioning_width(config: ModelConfig) -> int:
    """Per flow step and stream, the hop graph's ``conditioning``: six modulation rows of ``width``
    for every block, two for the head."""
    spec = config.transformer
    return (6 * spec.depth + 2) * spec.width


def graph_input_names(session: onnxruntime.InferenceSession) -> frozenset[str]:
    """The inputs a graph takes: the exporter drops those a graph does without (a one-step graph's noise)."""
    return frozenset(node.name for node in session.get_inputs())


def prompt_feeds(prompt: Prompt, config: ModelConfig) -> dict[str, np.ndarray]:
    """A prompt's per-stream inputs as a batch of one: text, example features and their flag (zeros where absent)."""
    bins, text_dim = config.stft.n_bins, config.prompt.text_dim
    text, example = prompt.text_embedding, prompt.example_features
    return {"text": np.zeros((1, text_dim), np.float32) if text is None else
            np.asarray(text, np.float32).reshape(1, text_dim),
            "example_features": np.zeros((1, bins), np.float32) if example is None else
            np.asarray(example, np.float32).reshape(1, bins),
            "has_example": np.array([float(example is not None)], np.float32)}


class PromptConditioner:
    """A prompt -> the hop graph's ``conditioning`` rows (steps, M): every block's adaLN
    modulations at each flow step's time. They change only with the prompt, so they are made
    when a prompt is set, off the audio path, and no hop computes them."""

    def __init__(self, model_dir: Path, config: ModelConfig, serving: dict, steps: int):
        name = serving.get(CONDITION_GRAPH)
        if name is None:
            raise ModelFolderError(f"{model_dir}: no condition graph (re-export with `samstream export`)")
        self.session = make_session(Path(model_dir) / name, 1, "cpu")
        self.config = config
        # The times the hop graph's Euler steps start from, as the exporter wrote them.
        self.times = np.array([index / steps for index in range(steps)], np.float32)

    def rows(self, prompt: Prompt) -> np.ndarray:
        return self.session.run(None, prompt_feeds(prompt, self.config) | {"times": self.times})[0][:, 0]


def bind_buffers(session: onnxruntime.InferenceSession, inputs: dict, outputs: dict):
    """IO binding of host arrays, once; inputs the graph does without (a one-step graph's noise) are left out."""
    binding = session.io_binding()
    wanted = graph_input_names(session)
    for name, array in inputs.items():
        if name in wanted:
            binding.bind_input(name, "cpu", 0, array.dtype, list(array.shape), array.ctypes.data)
    for name, array in outputs.items():
        binding.bind_output(name, "cpu", 0, array.dtype, list(array.shape), array.ctypes.data)
    return binding


class OnnxSeparator:
    """Streams one separation model; configure once, then ``process`` every hop."""

    def __init__(self, model_dir: Path, steps: int | None = None, threads: int = 1, seed: int = 0,
                 crossfade_frames: int = 0, device: str = "cpu", variant: str = "fp32"):
        self.config, serving = load_serving_config(model_dir)
        if variant not in VARIANTS:
            raise ModelFolderError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
        graphs = {int(key): value for key, value in serving[VARIANTS[variant]].items()} \
            if VARIANTS[variant] in serving else {}
        self.variant = variant
        if not graphs:
            raise ModelFolderError(f"{model_dir}: no {variant} hop graphs (re-export with `samstream export`)")
        self.steps = steps if steps is not None else min(graphs)
        if self.steps not in graphs:
            raise ModelFolderError(f"{model_dir}: no {variant} hop graph for {self.steps} steps "
                                   f"(has {sorted(graphs)})")
        # With CUDA the buffers stay bound in host memory: ONNX Runtime copies the hop in and the
        # mask out around each call. Device-resident rings and caches are the GPU path's work.
        self.session = make_session(Path(model_dir) / graphs[self.steps], threads, device)
        self.conditioner = PromptConditioner(model_dir, self.config, serving, self.steps)
        self.uses_noise = "noise" in graph_input_names(self.session)
        self.device = "cuda" if "CUDAExecutionProvider" in self.session.get_providers() else "cpu"
        self.lookahead_frames = self.config.transformer.lookahead_frames
        self.keep_target = True
        self.seed = seed
        self._random = np.random.default_rng(seed)
        # (prompt, its conditioning rows), made by ``set_prompt`` and taken at a hop boundary.
        self._pending: tuple[Prompt, np.ndarray] | None = (Prompt(), self.conditioner.rows(Prompt()))
        self._applied = self._pending
        # Per-frame span anchors known in advance (offline spans); None leaves them at "none".
        self.anchor_schedule: np.ndarray | None = None
        # The anchor of frames past the schedule: the live "target sounds now" button.
        self.live_anchor = 0
        # Per-frame visual features known in advance (a video file): (frames, visual_dim), zeros past its end.
        self.visual_schedule: np.ndarray | None = None
        # Live video: a (visual_dim,) row the bridge rewrites before every hop; None leaves the prompt's row.
        self.live_visual: np.ndarray | None = None
        # A new prompt's mask takes over from the last one along a ramp this many hops long.
        self.crossfade_frames = max(0, int(crossfade_frames))
        self._prompt_lock = threading.Lock()
        self.passing_through = True

    @property
    def prompt_pending(self) -> bool:
        """A prompt was set and no hop has taken it yet."""
        return self._pending is not None

    @property
    def running_prompt(self) -> Prompt:
        """The prompt the last hop ran with (a new one set since then is still pending)."""
        return self._applied[0]

    def set_prompt(self, prompt: Prompt) -> None:
        """From any thread; takes effect at the next hop boundary. Its conditioning is computed here."""
        prepared = (prompt, self.conditioner.rows(prompt))
        with self._prompt_lock:
            self._pending = prepared

    def configure(self, channels: int, n_bins: int) -> None:
        config = self.config
        if n_bins != config.stft.n_bins:
            raise ModelFolderError(f"the model wants {config.stft.n_bins} bins, the engine gives {n_bins}")
        spec = config.transformer
        head_dim = spec.width // spec.heads
        cache_shape = (self.steps, 1, spec.depth, spec.heads, spec.context_frames, head_dim)
        self.buffers = {
            "spectrum": np.zeros((1, 2, n_bins), np.float32),
            "noise": np.zeros((1, 2 * n_bins), np.float32),
            "conditioning": np.zeros((self.steps, 1, conditioning_width(config)), np.float32),
            "anchor": np.zeros(1, np.int64),
            "visual": np.zeros((1, config.prompt.visual_dim), np.float32),
            "key_cache": np.zeros(cache_shape, np.float32),
            "value_cache": np.zeros(cache_shape, np.float32),
            "ages": np.zeros(spec.context_frames, np.int64),
            "seen": np.zeros(1, np.int64),
        }
        self.outputs = {
            "target_mask": np.zeros((1, n_bins), np.float32),
            "new_keys": np.zeros((self.steps, 1, spec.depth, spec.heads, head_dim), np.float32),
            "new_values": np.zeros((self.steps, 1, spec.depth, spec.heads, head_dim), np.float32),
        }
        self.binding = bind_buffers(self.session, self.buffers, self.outputs)
        self._history = np.zeros((self.lookahead_frames + 1, channels, n_bins), np.complex64)
        self._level_parameters = config.level_parameters()
        self._level_state = make_level_state(1)
        # Fades run on gains, not masks: passing through is a gain of one in either mode,
        # while a mask of one would remove everything in remove mode.
        self._pass_gain = np.ones((1, n_bins), np.float32)
        self._gain = np.ones((1, n_bins), np.float32)
        self._last_gain = np.ones((1, n_bins), np.float32)
        self._fade_from = np.ones((1, n_bins), np.float32)
        self._blended = np.ones((1, n_bins), np.float32)
        self._fade_left = 0
        self._frame = 0
        self._write_slot = 0
        self._random = np.random.default_rng(self.seed)  # a new stream draws the same noise
        # A new stream starts from the prompt in force, whether or not a hop has applied it yet.
        with self._prompt_lock:
            self._pending = self._pending or self._applied

    def reset(self) -> None:
        """A silent history and empty caches, on the buffers already bound (nothing re-planned)."""
        for name in ("key_cache", "value_cache", "seen", "ages"):
            self.buffers[name][...] = 0
        for gain in (self._last_gain, self._fade_from, self._blended):
            gain[...] = 1.0
        self._history[...] = 0
        self._level_state[...] = 0
        self._frame = 0
        self._write_slot = 0
        self._fade_left = 0
        self._random = np.random.default_rng(self.seed)

    def _take_prompt(self) -> None:
        with self._prompt_lock:
            pending, self._pending = self._pending, None
        if pending is None:
            return
        self._applied = pending
        prompt, rows = pending
        self.passing_through = prompt.is_empty
        if self.crossfade_frames:
            np.copyto(self._fade_from, self._last_gain)
            self._fade_left = self.crossfade_frames
        buffers = self.buffers
        buffers["conditioning"][:, 0] = rows
        buffers["visual"][0] = 0.0 if prompt.visual is None else prompt.visual

    def process(self, spectrum_in: np.ndarray, spectrum_out: np.ndarray) -> None:
        if self._pending is not None:
            self._take_prompt()
        lookahead = self.lookahead_frames
        frame = self._frame
        self._frame += 1
        push_frame(spectrum_in, self._history, frame % (lookahead + 1))
        # The mask of this hop belongs to the frame ``lookahead`` hops back; before the first
        # such frame exists there is no token to compute, and that slot of history is silence.
        delayed = self._history[(frame - lookahead) % (lookahead + 1)]
        if frame < lookahead:
            spectrum_out[:] = 0
            return
        buffers = self.buffers
        context = self.config.transformer.context_frames
        downmix_real_imag(spectrum_in, buffers["spectrum"])
        if self._level_parameters is not None:
            normalise_streams(buffers["spectrum"], self._level_state, self._level_parameters)
        if self.uses_noise:
            self._random.standard_normal(out=buffers["noise"], dtype=np.float32)
        slot_ages(self._write_slot, buffers["ages"])
        token = frame - lookahead
        buffers["seen"][0] = min(token, context)
        schedule = self.anchor_schedule
        buffers["anchor"][0] = schedule[token] if schedule is not None and token < len(schedule) else self.live_anchor
        if self.visual_schedule is not None:
            buffers["visual"][0] = self.visual_schedule[token] if token < len(self.visual_schedule) else 0.0
        elif self.live_visual is not None:
            buffers["visual"][0] = self.live_visual
        self.session.run_with_iobinding(self.binding)
        store_keys_values(self.outputs["new_keys"], self.outputs["new_values"], buffers["key_cache"],
                          buffers["value_cache"], self._write_slot)
        self._write_slot = (self._write_slot + 1) % context
        gain = self._pass_gain
        if not self.passing_through:
            mask_gain(self.outputs["target_mask"], self.keep_target, self._gain)
            gain = self._gain
        if self._fade_left:
            share = 1.0 - self._fade_left / (self.crossfade_frames + 1)
            blend_masks(self._fade_from, gain, share, self._blended)
            gain = self._blended
            self._fade_left -= 1
        np.copyto(self._last_gain, gain)
        if gain is self._pass_gain:
            np.copyto(spectrum_out, delayed)
        else:
            apply_gain(delayed, gain, spectrum_out)
