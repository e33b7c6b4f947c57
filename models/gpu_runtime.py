"""The separation model on a CUDA device: caches, prompts and masks stay there (serving half, no torch).

``DeviceSeparator`` does what ``BatchedSeparator`` does, on device arrays made once: the
lookahead history of spectra, every stream's prompt rows, the key/value cache rings, the
noise (drawn on the device) and the gains. ONNX Runtime's CUDA execution provider reads
and writes those very arrays: each one is bound by its device pointer with IO binding, and
the session runs on the same CUDA stream as the kernels (``user_compute_stream``), so a hop
is a row of launches on one stream with no copy between host and device. With
``cuda_graph`` ONNX Runtime captures its part of the hop once and replays it (the bound
addresses never change, which is what capture needs).

Where the session cannot read device memory (ONNX Runtime without its CUDA provider, as
under numba's CUDA simulator in the tests), the model's inputs and outputs are staged
through host arrays bound on the CPU: the same numbers, with copies around the call. That
mode exists to test the device path without a device, and says so in ``binds_device_memory``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime
from numba import config as numba_config
from numba import cuda

from samstream.kernels.cuda_stft import cuda_fill_zero
from samstream.kernels.cuda_streams import (
    cuda_apply_stream_gains,
    cuda_copy_row,
    cuda_draw_noise,
    cuda_model_inputs,
    cuda_model_outputs,
    cuda_normalise_levels,
    make_noise_states,
)
from samstream.kernels.level import make_level_state
from samstream.kernels.streams import advance_fades, copy_if_changed

from .batched_runtime import StreamBatchControl
from .runtime import ModelFolderError, conditioning_width, graph_input_names, make_session

NOISE_SOURCES = ("device", "host")
# Inputs written only when a prompt or an anchor changes, not every hop.
PROMPT_INPUTS = ("conditioning", "visual", "anchor")


def onnxruntime_has_cuda() -> bool:
    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def device_pointer(array) -> int:
    return array.__cuda_array_interface__["data"][0]


def stream_handle(stream) -> int:
    """The CUstream address of a numba stream, for ONNX Runtime's ``user_compute_stream``."""
    if hasattr(stream, "__cuda_stream__"):  # numba-cuda's stream protocol: (version, address)
        return int(stream.__cuda_stream__()[1])
    handle = stream.handle  # ctypes c_void_p (numba's own bindings) or a cuda-python CUstream
    return int(getattr(handle, "value", None) or int(handle))


def make_cuda_session(path: Path, stream, cuda_graph: bool) -> onnxruntime.InferenceSession:
    if hasattr(onnxruntime, "preload_dlls"):
        # CUDA and cuDNN from the nvidia-* wheels, where no system toolkit is on the library path.
        onnxruntime.preload_dlls()
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    # TF32 off: float32 products as on the CPU, so a stream's output does not depend on where it ran.
    provider = {"device_id": str(cuda.get_current_device().id), "user_compute_stream": str(stream_handle(stream)),
                "enable_cuda_graph": "1" if cuda_graph else "0", "use_tf32": "0"}
    try:
        return onnxruntime.InferenceSession(str(path), options,
                                            providers=[("CUDAExecutionProvider", provider), "CPUExecutionProvider"])
    except Exception as error:  # ORT raises its own untyped errors
        first_line = str(error).splitlines()[0]
        raise ModelFolderError(f"{path}: ONNX Runtime could not load it on CUDA ({first_line})") from None


class DeviceSeparator(StreamBatchControl):
    """S streams through one hop graph per hop, every buffer on the device.

    ``noise`` "device" draws each hop's noise on the device; "host" draws it from the same
    per-stream generators as ``BatchedSeparator`` and copies it in (a few KB per stream),
    so that the device path can be held to the CPU path's numbers.
    """

    def __init__(self, model_dir: Path, streams: int = 1, channels_per_stream: int = 1, steps: int | None = None,
                 seed: int = 0, crossfade_frames: int = 0, noise: str = "device", cuda_graph: bool = False,
                 stream=None):
        super().__init__(model_dir, streams, channels_per_stream, steps, seed, crossfade_frames)
        if noise not in NOISE_SOURCES:
            raise ModelFolderError(f"noise must be one of {', '.join(NOISE_SOURCES)}, got {noise!r}")
        self.noise_source = noise
        self.stream = stream if stream is not None else cuda.stream()
        self.binds_device_memory = onnxruntime_has_cuda() and not numba_config.ENABLE_CUDASIM
        if self.binds_device_memory:
            self.session = make_cuda_session(self.graph_path, self.stream, cuda_graph)
        else:
            self.session = make_session(self.graph_path, 1, "cpu")
        self.cuda_graph = cuda_graph and self.binds_device_memory
        self.uses_noise = "noise" in graph_input_names(self.session)

    def _shapes(self, n_bins: int) -> tuple[dict, dict]:
        config, spec, streams = self.config, self.config.transformer, self.streams
        head_dim = spec.width // spec.heads
        cache = (self.steps, streams, spec.depth, spec.heads, spec.context_frames, head_dim)
        new = (self.steps, streams, spec.depth, spec.heads, head_dim)
        inputs = {"spectrum": ((streams, 2, n_bins), np.float32), "noise": ((streams, 2 * n_bins), np.float32),
                  "conditioning": ((self.steps, streams, conditioning_width(config)), np.float32),
                  "anchor": ((streams,), np.int64), "visual": ((streams, config.prompt.visual_dim), np.float32),
                  "key_cache": (cache, np.float32), "value_cache": (cache, np.float32),
                  "ages": ((spec.context_frames,), np.int64), "seen": ((streams,), np.int64)}
        outputs = {"target_mask": ((streams, n_bins), np.float32), "new_keys": (new, np.float32),
                   "new_values": (new, np.float32)}
        return inputs, outputs

    def configure(self, channels: int, n_bins: int) -> None:
        self.check_rows(channels, n_bins)
        inputs, outputs = self._shapes(n_bins)
        stream = self.stream
        self.inputs, self.outputs = ({name: cuda.to_device(np.zeros(shape, dtype), stream=stream)
                                      for name, (shape, dtype) in part.items()} for part in (inputs, outputs))
        # Host sides: prompt rows are written here and copied in when they change; the staging
        # arrays stand in for device memory where the session cannot read it.
        self.host = {name: cuda.pinned_array(shape, dtype) for name, (shape, dtype) in {**inputs, **outputs}.items()}
        for array in self.host.values():
            array[...] = 0
        self.prompt_rows = self.host
        self.binding = self.session.io_binding()
        wanted = graph_input_names(self.session) | set(self.outputs)
        for name, array in {**self.inputs, **self.outputs}.items():
            if name not in wanted:  # a one-step graph's noise
                continue
            bind = self.binding.bind_input if name in self.inputs else self.binding.bind_output
            if self.binds_device_memory:
                bind(name, "cuda", 0, array.dtype, list(array.shape), device_pointer(array))
            else:
                bind(name, "cpu", 0, array.dtype, list(array.shape), self.host[name].ctypes.data)
        lookahead = self.lookahead_frames
        self.history = cuda.to_device(np.zeros((lookahead + 1, channels, n_bins), np.complex64), stream=stream)
        self._slots = [self.history[slot] for slot in range(lookahead + 1)]  # views made once
        self.gains = cuda.to_device(np.ones((self.streams, n_bins), np.float32), stream=stream)
        self.fade_from = cuda.to_device(np.ones((self.streams, n_bins), np.float32), stream=stream)
        self.shares_host = cuda.pinned_array(self.streams, np.float32)
        self.passing_host = cuda.pinned_array(self.streams, np.bool_)
        self.shares_host[...], self.passing_host[...] = self.shares, self.passing
        self.device_shares = cuda.to_device(self.shares, stream=stream)
        self.device_passing = cuda.to_device(self.passing, stream=stream)
        if self.noise_source == "device":
            self._noise_states = make_noise_states(self.inputs["noise"].size, self.seed, stream=stream)
        parameters = self.config.level_parameters()
        self.level_parameters = None if parameters is None else cuda.to_device(parameters, stream=stream)
        self.level_states = cuda.to_device(make_level_state(self.streams), stream=stream)
        self.prompts_changed = True
        self.reset()

    def reset(self) -> None:
        stream = self.stream
        for array in (self.inputs["key_cache"], self.inputs["value_cache"], self.inputs["seen"], self.history,
                      self.level_states):
            cuda_fill_zero(array, stream)
        self._randoms = [np.random.default_rng(seed) for seed in self.stream_seeds()]
        self.restart_clock()
        stream.synchronize()

    def snapshot_gain(self, stream: int) -> None:
        cuda_copy_row(self.gains, self.fade_from, stream, self.stream)

    def input_slot(self):
        """The device array (channels, bins) that this hop's analysis writes into."""
        return self._slots[self._frame % (self.lookahead_frames + 1)]

    def _copy_small_inputs(self) -> None:
        """Prompt rows, anchors, fade shares: host -> device only when they changed (a few bytes a stream)."""
        stream = self.stream
        if copy_if_changed(self.live_anchors, self.host["anchor"]) or self.prompts_changed:
            for name in PROMPT_INPUTS:
                self.inputs[name].copy_to_device(self.host[name], stream=stream)
            self.prompts_changed = False
        if copy_if_changed(self.shares, self.shares_host) | copy_if_changed(self.passing, self.passing_host):
            self.device_shares.copy_to_device(self.shares_host, stream=stream)
            self.device_passing.copy_to_device(self.passing_host, stream=stream)

    def _draw_noise(self) -> None:
        if not self.uses_noise:
            return
        if self.noise_source == "device":
            cuda_draw_noise(self._noise_states, self.inputs["noise"], self.stream)
            return
        noise = self.host["noise"]
        for stream, random in enumerate(self._randoms):
            random.standard_normal(out=noise[stream], dtype=np.float32)
        self.inputs["noise"].copy_to_device(noise, stream=self.stream)

    def _run_session(self) -> None:
        if self.binds_device_memory:
            self.session.run_with_iobinding(self.binding)
            return
        stream = self.stream
        for name, array in self.inputs.items():
            array.copy_to_host(self.host[name], stream=stream)
        stream.synchronize()
        self.session.run_with_iobinding(self.binding)
        for name, array in self.outputs.items():
            array.copy_to_device(self.host[name], stream=stream)

    def process(self, spectrum_in, spectrum_out) -> None:
        """spectrum_in: ``input_slot()`` after this hop's analysis; spectrum_out (channels, bins), on the device."""
        self.take_prompts()
        lookahead = self.lookahead_frames
        frame, slot = self.next_frame()
        stream = self.stream
        if frame < lookahead:
            cuda_fill_zero(spectrum_out, stream)
            return
        inputs, outputs = self.inputs, self.outputs
        cuda_model_inputs(spectrum_in, inputs["spectrum"], inputs["ages"], slot, stream)
        if self.level_parameters is not None:
            cuda_normalise_levels(inputs["spectrum"], self.level_states, self.level_parameters, stream)
        self._draw_noise()
        advance_fades(self.fades_left, self.crossfade_frames, self.shares)
        self._copy_small_inputs()
        self._run_session()
        cuda_model_outputs(outputs["new_keys"], outputs["new_values"], inputs["key_cache"], inputs["value_cache"],
                           slot, inputs["seen"], stream)
        cuda_apply_stream_gains(self._slots[(frame - lookahead) % (lookahead + 1)], outputs["target_mask"],
                                self.fade_from, self.device_shares, self.device_passing, self.keep_target,
                                self.gains, spectrum_out, stream)
