"""Engines: one hop of input in, one hop of output out.

An engine owns everything between the rings: the STFT state and the model. It is
configured once (all memory made then) and afterwards only ``process`` runs, with
preallocated ``hop_in``/``hop_out`` arrays of shape (channels, hop).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Protocol

import numpy as np

from samstream.kernels.stft import (
    istft_synthesize,
    make_istft_state,
    make_stft_state,
    stft_analyze,
    validate_stft_shape,
)

from . import debug

MIN_SAMPLE_RATE = 8000
MAX_SAMPLE_RATE = 192000
MAX_CHANNELS = 64


class ConfigurationError(ValueError):
    """A stream parameter the engine cannot run with; the message says which and why."""


def check_stream_parameters(sample_rate, max_block: int, channels: int, supported_rates=None) -> None:
    if supported_rates is not None and sample_rate not in supported_rates:
        rates = ", ".join(f"{rate} Hz" for rate in supported_rates)
        raise ConfigurationError(f"sample rate {sample_rate} Hz is not supported (supported: {rates})")
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise ConfigurationError(
            f"sample rate {sample_rate} Hz is outside {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz")
    if int(max_block) != max_block or max_block < 1:
        raise ConfigurationError(f"max_block must be a positive whole number of samples, got {max_block}")
    if int(channels) != channels or not 1 <= channels <= MAX_CHANNELS:
        raise ConfigurationError(f"channels must be 1..{MAX_CHANNELS}, got {channels}")


class Engine(ABC):
    """The contract between the block scheduler and whatever turns audio into audio."""

    hop: int
    supported_sample_rates: tuple[int, ...] | None = None

    @property
    @abstractmethod
    def latency_samples(self) -> int:
        """Delay of ``process`` itself: output sample t answers input sample t - latency."""

    @abstractmethod
    def configure(self, sample_rate: int, max_block: int, channels: int) -> None:
        """Make every buffer for this stream; the history starts silent."""

    @abstractmethod
    def process(self, hop_in: np.ndarray, hop_out: np.ndarray) -> None:
        """Turn hop_in (channels, hop) into hop_out (channels, hop); never allocates."""

    def reset(self) -> None:
        """Silence the history in place, keeping every buffer (and what a runtime planned on them)."""
        self.configure(self.sample_rate, self.max_block, self.channels)

    def _check_hop(self, hop_in: np.ndarray, hop_out: np.ndarray) -> None:
        assert hop_in.shape == hop_out.shape == (self.channels, self.hop), (hop_in.shape, hop_out.shape)
        assert hop_in.dtype == hop_out.dtype == np.float32, (hop_in.dtype, hop_out.dtype)


class PassThroughEngine(Engine):
    """Copies input to output: the reference for everything around an engine."""

    def __init__(self, hop: int = 128):
        if hop < 1:
            raise ConfigurationError(f"hop must be at least one sample, got {hop}")
        self.hop = hop
        self.channels = 0

    @property
    def latency_samples(self) -> int:
        return 0

    def configure(self, sample_rate: int, max_block: int, channels: int) -> None:
        check_stream_parameters(sample_rate, max_block, channels, self.supported_sample_rates)
        self.sample_rate, self.max_block, self.channels = sample_rate, max_block, channels

    def process(self, hop_in: np.ndarray, hop_out: np.ndarray) -> None:
        if debug.CHECKS:
            self._check_hop(hop_in, hop_out)
        np.copyto(hop_out, hop_in)


class SpectralModel(Protocol):
    """What runs on each STFT frame inside ``StftEngine``."""

    lookahead_frames: int

    def configure(self, channels: int, n_bins: int) -> None: ...

    def reset(self) -> None: ...

    def process(self, spectrum_in: np.ndarray, spectrum_out: np.ndarray) -> None: ...


class PassThroughModel:
    """The identity on spectra: the STFT engine then round-trips its input exactly."""

    lookahead_frames = 0

    def configure(self, channels: int, n_bins: int) -> None:
        pass

    def reset(self) -> None:
        pass

    def process(self, spectrum_in: np.ndarray, spectrum_out: np.ndarray) -> None:
        np.copyto(spectrum_out, spectrum_in)


class StftEngine(Engine):
    """STFT -> spectral model -> ISTFT, hop by hop, every channel with its own state.

    Latency is the analysis window minus the hop plus the model's lookahead in hops.
    """

    def __init__(self, n_fft: int = 512, hop: int = 128, model: SpectralModel | None = None,
                 supported_sample_rates: tuple[int, ...] | None = None):
        validate_stft_shape(n_fft, hop)
        self.n_fft = n_fft
        self.hop = hop
        self.model = model if model is not None else PassThroughModel()
        self.supported_sample_rates = supported_sample_rates
        self.channels = 0

    @property
    def n_bins(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def latency_samples(self) -> int:
        return self.n_fft - self.hop + self.model.lookahead_frames * self.hop

    def configure(self, sample_rate: int, max_block: int, channels: int) -> None:
        check_stream_parameters(sample_rate, max_block, channels, self.supported_sample_rates)
        self.sample_rate, self.max_block, self.channels = sample_rate, max_block, channels
        self._analysis = make_stft_state(self.n_fft, self.hop, channels)
        self._synthesis = make_istft_state(self.n_fft, self.hop, channels)
        self._spectrum_in = np.zeros((channels, self.n_bins), dtype=np.complex64)
        self._spectrum_out = np.zeros((channels, self.n_bins), dtype=np.complex64)
        self.model.configure(channels, self.n_bins)

    def reset(self) -> None:
        channels = self.channels
        self._analysis = make_stft_state(self.n_fft, self.hop, channels)
        self._synthesis = make_istft_state(self.n_fft, self.hop, channels)
        self.model.reset()

    def process(self, hop_in: np.ndarray, hop_out: np.ndarray) -> None:
        if debug.CHECKS:
            self._check_hop(hop_in, hop_out)
        stft_analyze(hop_in, self._spectrum_in, self._analysis)
        self.model.process(self._spectrum_in, self._spectrum_out)
        istft_synthesize(self._spectrum_out, hop_out, self._synthesis)
