"""Flow matching on target and residual masks (training half).

Data: for every bin, the target's and the residual's magnitude over the mixture's,
clipped to [0, 1] and mapped to [-1, 1]; the pair is generated together from Gaussian
noise along straight paths x_t = (1 - t) x_0 + t x_1, the network predicting the velocity
x_1 - x_0. Generated masks are made consistent (they sum to one) before use, so target
+ residual is the mixture exactly.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from .config import ModelConfig
from .torch_dsp import stft
from .transformer import MIN_REMAINING_TIME, SeparationDiT, mixture_features


@dataclass
class Conditioning:
    """Prompts for a batch: text (B, text_dim), example span features (B, bins) with a 0/1 flag,
    per-frame anchors (B, T) and visual features (B, T, visual_dim)."""

    text: torch.Tensor
    example_features: torch.Tensor
    has_example: torch.Tensor
    anchors: torch.Tensor
    visual: torch.Tensor

    def fitted(self, frames: int) -> Conditioning:
        """Per-frame prompts cut or padded (no anchor, zero visual) to ``frames``."""
        def fit(values):
            if values.shape[1] >= frames:
                return values[:, :frames]
            padding = values.new_zeros((values.shape[0], frames - values.shape[1], *values.shape[2:]))
            return torch.cat((values, padding), dim=1)
        return Conditioning(self.text, self.example_features, self.has_example, fit(self.anchors), fit(self.visual))

    def mapped(self, function) -> Conditioning:
        """Every tensor passed through ``function``."""
        return Conditioning(*(function(getattr(self, field.name)) for field in fields(self)))

    def pin_memory(self) -> Conditioning:
        """Page-locked copies, which a DataLoader with ``pin_memory`` asks for."""
        return self.mapped(torch.Tensor.pin_memory)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Conditioning:
        return self.mapped(lambda values: values.to(device, non_blocking=non_blocking))

    @classmethod
    def empty(cls, config: ModelConfig, batch: int, frames: int) -> Conditioning:
        return cls(torch.zeros(batch, config.prompt.text_dim), torch.zeros(batch, config.stft.n_bins),
                   torch.zeros(batch), torch.zeros(batch, frames, dtype=torch.long),
                   torch.zeros(batch, frames, config.prompt.visual_dim))


def spectra(signal: torch.Tensor, config: ModelConfig) -> torch.Tensor:
    """(B, n) -> (B, frames, 2, bins) real/imag, framed exactly as the stream frames."""
    spectrum = stft(signal, config.stft.n_fft, config.stft.hop).transpose(-1, -2)
    return torch.stack((spectrum.real, spectrum.imag), dim=-2).to(torch.float32)


def magnitude(spectrum: torch.Tensor) -> torch.Tensor:
    return torch.sqrt(spectrum[..., 0, :] ** 2 + spectrum[..., 1, :] ** 2 + 1e-12)


def mask_targets(mixture: torch.Tensor, target: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    """Spectra (B, T, 2, bins) -> x_1 (B, T, 2*bins): clipped magnitude ratios in [-1, 1]."""
    mix = magnitude(mixture)
    ratios = [torch.clamp(magnitude(source) / (mix + 1e-8), 0.0, 1.0) for source in (target, residual)]
    return torch.cat(ratios, dim=-1) * 2.0 - 1.0


def consistent_target_mask(state: torch.Tensor) -> torch.Tensor:
    """Generated state (..., 2*bins) -> the target's mask in [0, 1]; the residual's is 1 minus it."""
    target, residual = ((state.clamp(-1.0, 1.0) + 1.0) / 2.0).chunk(2, dim=-1)
    return (target + 1.0 - residual) / 2.0


def lookahead_align(features: torch.Tensor, lookahead: int) -> torch.Tensor:
    """Token t sees mixture frame t + lookahead; frames past the end are silence."""
    if lookahead == 0:
        return features
    padding = torch.zeros_like(features[:, :lookahead])
    return torch.cat((features[:, lookahead:], padding), dim=1)


def sample_times(batch: int, config: ModelConfig, generator=None) -> torch.Tensor:
    device = generator.device if generator is not None else None
    normal = torch.randn(batch, generator=generator, device=device)
    return torch.sigmoid(config.flow.logit_normal_mean + config.flow.logit_normal_std * normal)


def sample_training_times(batch: int, config: ModelConfig, zero_time_share: float, generator=None) -> torch.Tensor:
    """Logit-normal times, with ``zero_time_share`` of the rows at exactly t = 0: the time a
    one-step sampler starts from, whose output is the network's clean estimate itself."""
    time = sample_times(batch, config, generator)
    if zero_time_share <= 0:
        return time
    drawn = torch.rand(batch, generator=generator, device=time.device)
    return torch.where(drawn < zero_time_share, torch.zeros_like(time), time)


def bin_weights(features: torch.Tensor, compression: float, weight_exponent: float | None) -> torch.Tensor:
    """Per-bin loss weights, mean one per example, from the mixture's features |X|^compression.

    ``weight_exponent`` None weighs bins by the features themselves; 2 weighs them by the
    mixture's power, which is how a mask error enters the SI-SDR of the separated signal."""
    if weight_exponent is not None:
        features = features ** (weight_exponent / compression)
    return features / (features.mean(dim=(1, 2), keepdim=True) + 1e-8)


# The distortion floor of ``distortion_db``: 30 dB under the mixture, so a silent target (whose
# SDR is undefined) or a near-perfect estimate cannot take the log to minus infinity.
DISTORTION_FLOOR = 1e-3


def distortion_db(mask: torch.Tensor, mixture: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per example, the energy of the masked mixture's error against the target, in dB over the
    mixture's energy: masks (B, T, bins), spectra (B, T, 2, bins) -> (B,).

    Extract and remove share this error (the residual's estimate is the mixture minus the
    target's), so lowering it raises both SDRs by as much, in dB: each example counts by its
    dB, as the benchmark's mean does, not by its error's energy, which quiet targets lack."""
    error = mask[..., None, :] * mixture - target
    energy = (error ** 2).sum(dim=(1, 2, 3))
    reference = (mixture ** 2).sum(dim=(1, 2, 3))
    return 10.0 * torch.log10((energy + DISTORTION_FLOOR * reference + 1e-10) / (reference + 1e-10))


def flow_matching_loss(model: torch.nn.Module, mixture: torch.Tensor, target: torch.Tensor,
                       conditioning: Conditioning, generator=None, *, weight_exponent: float | None = None,
                       zero_time_share: float = 0.0, distortion_weight: float = 0.0,
                       improvements: dict | None = None) -> torch.Tensor:
    """mixture, target: (B, n) waveforms; the residual is mixture - target.

    ``model`` may be wrapped (DistributedDataParallel): it is called, and its config read
    from the module inside. ``weight_exponent`` and ``zero_time_share``: see ``bin_weights``
    and ``sample_training_times``. ``distortion_weight`` adds, for the rows at t = 0, the
    ``distortion_db`` of the one-step estimate (what the one-step sampler outputs).
    ``improvements``, a dict, receives for each row at t = 0 how many dB that estimate's
    error lies under the mixture's (what hard-pair mining learns from)."""
    config = getattr(model, "module", model).config
    mix_spec, target_spec = spectra(mixture, config), spectra(target, config)
    data = mask_targets(mix_spec, target_spec, mix_spec - target_spec)
    features = mixture_features(mix_spec, config.transformer.compression)
    conditioning = conditioning.fitted(data.shape[1])
    noise = torch.randn(data.shape, generator=generator, device=data.device)
    time = sample_training_times(data.shape[0], config, zero_time_share, generator)
    noisy = (1 - time[:, None, None]) * noise + time[:, None, None] * data
    velocity = model(lookahead_align(features, config.transformer.lookahead_frames), noisy, time,
                     conditioning.text, conditioning.example_features, conditioning.has_example,
                     conditioning.anchors, conditioning.visual).float()  # bfloat16 under autocast
    # The velocity error times the time left is the denoiser's error: the loss stays finite
    # near t = 1 and weighs every time alike. Bins are weighted by the mixture's level:
    # silent bins matter little to the ear.
    remaining = torch.clamp(1 - time, min=MIN_REMAINING_TIME)[:, None, None]
    weight = bin_weights(features, config.transformer.compression, weight_exponent)
    error = ((velocity - (data - noise)) * remaining) ** 2
    loss = (error * weight.repeat(1, 1, 2)).mean()
    at_zero = time == 0
    if (distortion_weight or improvements is not None) and bool(at_zero.any()):
        mask = consistent_target_mask(noise[at_zero] + velocity[at_zero])
        distortion = distortion_db(mask, mix_spec[at_zero], target_spec[at_zero])
        loss = loss + distortion_weight * distortion.mean()
        if improvements is not None:
            passed = distortion_db(torch.ones_like(mask), mix_spec[at_zero], target_spec[at_zero])
            rows = torch.nonzero(at_zero).flatten().tolist()
            improvements.update(zip(rows, (passed - distortion).detach().tolist(), strict=True))
    return loss


@torch.no_grad()
def generate_masks(model: SeparationDiT, mixture_spectrum: torch.Tensor, conditioning: Conditioning,
                   steps: int, noise: torch.Tensor | None = None) -> torch.Tensor:
    """Euler integration over whole sequences -> target masks (B, T, bins)."""
    config = model.config
    features = lookahead_align(mixture_features(mixture_spectrum, config.transformer.compression),
                               config.transformer.lookahead_frames)
    batch, frames, bins = features.shape
    conditioning = conditioning.fitted(frames)
    device = features.device
    state = torch.randn(batch, frames, 2 * bins, device=device) if noise is None else noise.to(device)
    for index in range(steps):
        time = torch.full((batch,), index / steps, device=device)
        state = state + model(features, state, time, conditioning.text, conditioning.example_features,
                              conditioning.has_example, conditioning.anchors, conditioning.visual) / steps
    return consistent_target_mask(state)
