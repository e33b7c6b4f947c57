"""The engine on a CUDA device, and the choice between it and the CPU engine.

``CudaStftEngine`` is ``StftEngine`` with everything between the hop in and the hop out on
the device: the STFT and ISTFT state of every channel, the lookahead history, the model's
caches and prompt rows (``models.gpu_runtime.DeviceSeparator``). A hop copies the new
input in (through a pinned host buffer) and the finished output out, and in between runs a
fixed row of launches on one CUDA stream. The host rings of the live path stay where the
audio callback can reach them; the engine's own state never leaves the device.

Channels are streams' channels, stream by stream, as in ``BatchedSeparator``: a 16-input
rig with ``streams=16`` separates every input on its own, all in one model call per hop.

``make_engine`` picks the device: "cuda" refuses with one clear reason when CUDA is absent,
"auto" falls back to the CPU engine and says so once, "cpu" never looks.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from samstream.kernels.stft import validate_stft_shape

from . import debug
from .engine import ConfigurationError, Engine, StftEngine, check_stream_parameters

DEVICES = ("cpu", "cuda", "auto")


def cuda_unavailable_reason() -> str | None:
    """None when the device path can run here; otherwise why not, in one line."""
    try:
        from numba import config as numba_config
        from numba import cuda
    except ImportError as error:  # numba is a dependency; a broken install still gets one line
        return f"numba.cuda does not import ({error})"
    if numba_config.ENABLE_CUDASIM:
        return "numba runs its CUDA simulator (NUMBA_ENABLE_CUDASIM=1), not a GPU"
    if not cuda.is_available():
        return "no CUDA GPU or driver found (numba.cuda.is_available() is False)"
    from samstream.models.gpu_runtime import onnxruntime_has_cuda
    if not onnxruntime_has_cuda():
        return ("this ONNX Runtime has no CUDA execution provider "
                "(pip install samstream[gpu], which replaces onnxruntime with onnxruntime-gpu)")
    return None


class CudaStftEngine(Engine):
    """STFT -> model -> ISTFT for every channel of every stream, on a CUDA device.

    ``separator`` is a ``DeviceSeparator``; None passes the spectra through (the STFT round
    trip alone, exact to float32 rounding).
    """

    def __init__(self, n_fft: int, hop: int, separator=None, supported_sample_rates: tuple[int, ...] | None = None):
        validate_stft_shape(n_fft, hop)
        self.n_fft, self.hop = n_fft, hop
        self.separator = separator
        self.supported_sample_rates = supported_sample_rates
        self.channels = 0
        self.device = "cuda"

    @property
    def n_bins(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def latency_samples(self) -> int:
        lookahead = self.separator.lookahead_frames if self.separator is not None else 0
        return self.n_fft - self.hop + lookahead * self.hop

    def configure(self, sample_rate: int, max_block: int, channels: int) -> None:
        from numba import cuda

        from samstream.kernels.cuda_stft import make_cuda_istft_state, make_cuda_stft_state
        check_stream_parameters(sample_rate, max_block, channels, self.supported_sample_rates)
        self.sample_rate, self.max_block, self.channels = sample_rate, max_block, channels
        separator = self.separator
        self.stream = separator.stream if separator is not None else cuda.stream()
        self._analysis = make_cuda_stft_state(self.n_fft, self.hop, channels, self.stream)
        self._synthesis = make_cuda_istft_state(self.n_fft, self.hop, channels, self.stream)
        self._staged_in = cuda.pinned_array((channels, self.hop), np.float32)
        self._staged_out = cuda.pinned_array((channels, self.hop), np.float32)
        self._hop_in = cuda.to_device(np.zeros((channels, self.hop), np.float32), stream=self.stream)
        self._hop_out = cuda.to_device(np.zeros((channels, self.hop), np.float32), stream=self.stream)
        self._spectrum_out = cuda.to_device(np.zeros((channels, self.n_bins), np.complex64), stream=self.stream)
        self._spectrum_in = None if separator is not None else self._spectrum_out
        if separator is not None:
            separator.configure(channels, self.n_bins)
        self.stream.synchronize()

    def reset(self) -> None:
        from samstream.kernels.cuda_stft import reset_cuda_stft_state
        reset_cuda_stft_state(self._analysis, self.stream)
        reset_cuda_stft_state(self._synthesis, self.stream)
        if self.separator is not None:
            self.separator.reset()
        self.stream.synchronize()

    def process(self, hop_in: np.ndarray, hop_out: np.ndarray) -> None:
        from samstream.kernels.cuda_stft import cuda_istft_synthesize, cuda_stft_analyze
        if debug.CHECKS:
            self._check_hop(hop_in, hop_out)
        stream, separator = self.stream, self.separator
        np.copyto(self._staged_in, hop_in)
        self._hop_in.copy_to_device(self._staged_in, stream=stream)
        spectrum_in = separator.input_slot() if separator is not None else self._spectrum_in
        cuda_stft_analyze(self._hop_in, spectrum_in, self._analysis, stream)
        if separator is not None:
            separator.process(spectrum_in, self._spectrum_out)
        cuda_istft_synthesize(self._spectrum_out, self._hop_out, self._synthesis, stream)
        self._hop_out.copy_to_host(self._staged_out, stream=stream)
        stream.synchronize()
        np.copyto(hop_out, self._staged_out)


def make_engine(model_dir: Path, device: str = "auto", streams: int = 1, channels_per_stream: int = 1,
                steps: int | None = None, seed: int = 0, crossfade_frames: int = 0, threads: int = 1,
                cuda_graph: bool = False, say=None) -> Engine:
    """The separation engine for ``streams`` streams on ``device``; ``engine.device`` says which ran.

    "cuda" without CUDA raises ``ConfigurationError`` with the reason; "auto" then runs on the
    CPU and reports the reason once through ``say`` (default: one line on stderr).
    """
    if device not in DEVICES:
        raise ConfigurationError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    from samstream.models.batched_runtime import BatchedSeparator
    from samstream.models.runtime import load_serving_config
    config, _ = load_serving_config(model_dir)
    n_fft, hop = config.stft.n_fft, config.stft.hop
    rates = (config.stft.sample_rate,)
    reason = cuda_unavailable_reason() if device != "cpu" else None
    if device == "cuda" and reason:
        raise ConfigurationError(f"device cuda: {reason}")
    if device == "auto" and reason:
        (say or (lambda line: print(line, file=sys.stderr)))(f"samstream: CUDA is not available ({reason}); "
                                                             "running on the CPU")
    if device == "cpu" or reason:
        separator = BatchedSeparator(model_dir, streams, channels_per_stream, steps=steps, threads=threads, seed=seed,
                                     crossfade_frames=crossfade_frames)
        engine = StftEngine(n_fft, hop, model=separator, supported_sample_rates=rates)
        engine.device, engine.separator = "cpu", separator  # one name for the separator on either device
        return engine
    from samstream.models.gpu_runtime import DeviceSeparator
    separator = DeviceSeparator(model_dir, streams, channels_per_stream, steps=steps, seed=seed,
                                crossfade_frames=crossfade_frames, cuda_graph=cuda_graph)
    return CudaStftEngine(n_fft, hop, separator, supported_sample_rates=rates)
