"""The streaming STFT in torch, for training on batches (training half: imports torch).

Frames follow the streaming kernels exactly: the signal is preceded by n_fft - hop
zeros, so frame t covers the same samples the live analysis sees at hop t, with the same
square-root Hann window; ``istft`` overlap-adds with the kernels' synthesis window and
removes the n_fft - hop delay, so ``istft(stft(x)) == x``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as functional

from samstream.kernels.stft import analysis_window, synthesis_window, validate_stft_shape


def stft(signal: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    """signal (..., n) -> spectrum (..., n_fft/2 + 1, frames).

    The frames are those the stream computes for the signal followed by silence, up to
    the first frame after which every signal sample is final: ceil((n + n_fft - hop) / hop).
    """
    validate_stft_shape(n_fft, hop)
    length = signal.shape[-1]
    frames = -(-(length + n_fft - hop) // hop)
    padded = functional.pad(signal, (n_fft - hop, frames * hop - length))
    window = torch.as_tensor(analysis_window(n_fft), dtype=signal.dtype, device=signal.device)
    flat = padded.reshape(-1, padded.shape[-1])
    spectrum = torch.stft(flat, n_fft, hop, window=window, center=False, return_complex=True)
    return spectrum.reshape(*signal.shape[:-1], *spectrum.shape[-2:])


def istft(spectrum: torch.Tensor, n_fft: int, hop: int, length: int) -> torch.Tensor:
    """spectrum (..., n_fft/2 + 1, frames) -> signal (..., length), aligned with stft's input."""
    validate_stft_shape(n_fft, hop)
    frames = spectrum.shape[-1]
    flat = spectrum.reshape(-1, *spectrum.shape[-2:])
    real_dtype = flat.real.dtype
    window = torch.as_tensor(synthesis_window(n_fft, hop), dtype=real_dtype, device=flat.device)
    pieces = torch.fft.irfft(flat, n=n_fft, dim=1) * window[:, None]
    total = (frames - 1) * hop + n_fft
    signal = functional.fold(pieces, output_size=(1, total), kernel_size=(1, n_fft), stride=(1, hop))
    signal = signal.reshape(flat.shape[0], total)[:, n_fft - hop:n_fft - hop + length]
    return signal.reshape(*spectrum.shape[:-2], length)


class HopRoundTrip:
    """STFT -> ISTFT one hop at a time in torch: the per-hop baseline that benchmarks time."""

    def __init__(self, n_fft: int, hop: int):
        self.hop = hop
        self.window = torch.as_tensor(analysis_window(n_fft), dtype=torch.float32)
        self.synthesis = torch.as_tensor(synthesis_window(n_fft, hop), dtype=torch.float32)
        self.frame = torch.zeros(n_fft)
        self.overlap = torch.zeros(n_fft)

    @torch.inference_mode()
    def process(self, hop_in: torch.Tensor, hop_out: torch.Tensor) -> None:
        hop = self.hop
        self.frame = torch.roll(self.frame, -hop)
        self.frame[-hop:] = hop_in
        spectrum = torch.fft.rfft(self.frame * self.window)
        self.overlap += torch.fft.irfft(spectrum) * self.synthesis
        hop_out.copy_(self.overlap[:hop])
        self.overlap = torch.roll(self.overlap, -hop)
        self.overlap[-hop:] = 0
