"""What a separation model is, as frozen dataclasses; a checkpoint's config.json is this, serialised.

Representation (and why): 48 kHz, n_fft 1024, hop 256. The STFT's own latency is
n_fft - hop = 768 samples = 16 ms, under the 20 ms budget; one hop is 5.33 ms of audio,
which is the compute budget per model step on one CPU core. A 512/128 STFT would halve
the latency but also halve that budget and double the frames per second of context, and
its 94 Hz bins cannot tell 50 Hz hum harmonics from the speech around them; 1024 gives
47 Hz bins.

The model generates a target mask and a residual mask for every bin of every frame
together; a projection then makes them sum to one, so target + residual reconstructs the
mixture exactly.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

FORMAT_VERSION = 1
# Span anchors per frame, as SAM Audio marks them: none, the target sounds, it does not.
ANCHOR_NONE, ANCHOR_POSITIVE, ANCHOR_NEGATIVE = 0, 1, 2


@dataclass(frozen=True)
class StftConfig:
    sample_rate: int = 48000
    n_fft: int = 1024
    hop: int = 256

    @property
    def n_bins(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def frames_per_second(self) -> float:
        return self.sample_rate / self.hop


@dataclass(frozen=True)
class TransformerConfig:
    width: int = 192
    depth: int = 6
    heads: int = 4
    mlp_ratio: int = 3
    context_frames: int = 256  # causal attention span: 256 frames = 1.37 s at hop 256
    lookahead_frames: int = 0  # frames of future input each output may wait for
    compression: float = 0.3  # magnitude exponent of the mixture features
    rope_base: float = 10000.0
    # Spectral-detail head: per-bin masks from a 'width'-wide token alone lie in a 'width'-dim
    # subspace, too coarse to follow harmonics. These channels read the frame's own spectral
    # shape (a convolution across bins) and the token mixes them per bin. 0: no detail head.
    detail_channels: int = 0
    detail_kernel: int = 9  # bins the detail convolution sees: 9 bins = 422 Hz at n_fft 1024
    # Residual refinements of the detail channels, each a convolution across bins whose channels
    # the frame's token scales and shifts (FiLM), dilated 1, 2, 4, ... so that later ones see
    # a harmonic's neighbours; the token then chooses per bin, not only per channel. 0: none.
    detail_blocks: int = 0
    detail_hidden: int = 16  # channels inside a refinement
    detail_block_kernel: int = 3


@dataclass(frozen=True)
class PromptConfig:
    text_dim: int = 384  # the sentence encoder's embedding size
    visual_dim: int = 16  # per-frame visual features; zero-gated until a visual encoder trains it
    # True only for a model trained on visual features (models.visual): before that its visual
    # weights never saw a feature, and the serving path says the box does not steer it.
    visual_trained: bool = False
    example_dim: int = 128  # the pooled "sounds like this" embedding from a captured span


@dataclass(frozen=True)
class FlowConfig:
    teacher_steps: int = 16
    logit_normal_mean: float = -1.0  # leans to early times: a 1-2 step sampler lives there
    logit_normal_std: float = 1.0
    student_steps: int = 0  # 0: a multi-step teacher; 1 or 2: a distilled student


@dataclass(frozen=True)
class InputLevelConfig:
    """The slow causal gain in front of the model (``kernels.level``): the model hears every
    stream inside ``range_dbfs``; its masks apply to the input as it came, so the output keeps
    the input's level. Measured (benchmarks/eval_checkpoint.py --levels): without it the shipped
    model gained +2.67 / +3.38 dB at -44 dBFS against +5.46 / +5.05 at -24."""

    enabled: bool = True
    # Levels in this range are left alone: what the model was trained on, as it was trained on it
    # (a gain moving inside it changes the dynamics the model knows). Outside, the gain brings the
    # level to the nearer edge.
    range_dbfs: tuple[float, float] = (-28.0, -18.0)
    memory_seconds: float = 1.5  # time constant of the smoothed frame power
    gate_dbfs: float = -70.0  # quieter frames leave the smoothed power as it is
    max_cut_db: float = 20.0
    max_boost_db: float = 30.0


@dataclass(frozen=True)
class ModelConfig:
    stft: StftConfig = field(default_factory=StftConfig)
    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)
    input_level: InputLevelConfig = field(default_factory=InputLevelConfig)
    format_version: int = FORMAT_VERSION

    @property
    def latency_samples(self) -> int:
        return self.stft.n_fft - self.stft.hop + self.transformer.lookahead_frames * self.stft.hop

    def level_parameters(self):
        """The parameters of ``kernels.level`` for this model, or None when its input level is left alone."""
        from samstream.kernels.level import make_level_parameters
        from samstream.kernels.stft import analysis_window

        level = self.input_level
        if not level.enabled:
            return None
        return make_level_parameters(analysis_window(self.stft.n_fft), self.stft.hop, self.stft.sample_rate,
                                     level.range_dbfs, level.memory_seconds, level.gate_dbfs, level.max_cut_db,
                                     level.max_boost_db)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        if data.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"config format_version {data.get('format_version')!r} is not {FORMAT_VERSION}")
        parts = {}
        for part in fields(cls):
            if part.name == "format_version":
                continue
            known = {item.name for item in fields(part.default_factory)}
            values = data.get(part.name, {})
            unknown = set(values) - known
            if unknown:
                raise ValueError(f"config section '{part.name}' has unknown keys: {sorted(unknown)}")
            # JSON has no tuples: a pair such as a level range comes back as the tuple it was.
            parts[part.name] = part.default_factory(**{key: tuple(value) if isinstance(value, list) else value
                                                       for key, value in values.items()})
        return cls(**parts)

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> ModelConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))


@dataclass(frozen=True)
class JudgeConfig:
    """The reference-free judge: (mixture, estimate, prompt) -> predicted SI-SDR of the estimate, dB.

    It looks at ERB band levels of the mixture, the estimate and what the estimate left
    behind, frame by frame, at a coarser STFT than the separator's (it needs levels, not
    phase), and at the text prompt; it sees no reference.
    """

    sample_rate: int = 48000
    n_fft: int = 1024
    hop: int = 512
    n_bands: int = 32
    width: int = 64
    text_dim: int = 384
    text_bottleneck: int = 16  # the prompt reaches the judge through this few numbers: little data, little room
    dropout: float = 0.1
    kernel_frames: int = 5  # temporal context of the frame encoder: 5 frames = 53 ms
    window_seconds: float = 3.0  # what one judgement covers, live and in training
    score_floor_db: float = -30.0  # training targets are clipped to this range
    score_ceiling_db: float = 30.0
    # Scalars beside the band network: 6 from re-separating the estimate and its remainder with the
    # separation model (judge.consistency_features), 10 with its posterior of the mixture, 19 with the
    # estimate's mask features (judge.FEATURE_COUNTS); 0: a judge of band levels alone.
    consistency_features: int = 0
    fusion_width: int = 32
    # Fusion networks fitted from different seeds, their scores averaged: one judge's noise in how it
    # weighs the scalars partly cancels out (1: one network, as judges before it).
    fusion_members: int = 1
    # The tagger (models/tagger.py): a class tagger on the band levels whose contrast between what the
    # estimate kept and what it left, for the prompt, joins the fusion's scalars; 0: none.
    tagger_width: int = 0
    tagger_depth: int = 4  # dilated convolutions over frames, dilation 1, 2, 4, ...
    tagger_kernel: int = 5
    tagger_classes: int = 41
    tagger_temperature: float = 0.05  # how sharply a prompt is read as the classes its embedding is near
    # Taggers fitted from different seeds and draws, their contrasts averaged (1: one tagger, as judges
    # before it): one tagger's view of a class is noisy, and the judge's correlation moved by 0.02
    # between two taggers fitted alike.
    tagger_members: int = 1
    # The separation checkpoint those features were made with, a folder inside the judge's own
    # (exported there by set-up), so a new bundled separator leaves the judge as it was trained;
    # "": the bundled separation model.
    reseparator: str = ""
    format_version: int = FORMAT_VERSION

    @property
    def feature_dim(self) -> int:
        return 3 * self.n_bands

    @property
    def window_samples(self) -> int:
        return round(self.window_seconds * self.sample_rate)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> JudgeConfig:
        if data.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"judge config format_version {data.get('format_version')!r} is not {FORMAT_VERSION}")
        unknown = set(data) - {item.name for item in fields(cls)}
        if unknown:
            raise ValueError(f"judge config has unknown keys: {sorted(unknown)}")
        return cls(**data)


# What `samstream train --precision` accepts: bfloat16 runs the network under autocast.
PRECISIONS = ("float32", "bfloat16")

# Named sizes for `samstream train --preset`. "gpu-large" (59 M parameters, head size 64) is
# meant for a GPU: per stream its key/value cache is 12.6 MB per flow step, so 64 streams
# of one-step hops hold 0.8 GB, and its hop is about 40x the default model's arithmetic.
MODEL_PRESETS = {
    "default": ModelConfig(),
    "small": ModelConfig(transformer=TransformerConfig(width=128, depth=4, heads=4, context_frames=192)),
    "small-detail": ModelConfig(transformer=TransformerConfig(width=128, depth=4, heads=4, context_frames=192,
                                                              detail_channels=16)),
    # small-detail with two more blocks, grown from it (`samstream train --grow-from`).
    "small-deep": ModelConfig(transformer=TransformerConfig(width=128, depth=6, heads=4, context_frames=192,
                                                            detail_channels=16)),
    # small-deep with two more blocks again, grown from it; its one-step hop still stays under
    # the hop period at p99 on one CPU core (3.3-4.2 ms against 5.33 ms, MODEL_CARD.md).
    "small-deeper": ModelConfig(transformer=TransformerConfig(width=128, depth=8, heads=4, context_frames=192,
                                                              detail_channels=16)),
    # small-deeper with two more blocks again (10), grown from it; measured before training that
    # its one-step hop stays under the hop period at p99 on one CPU core (MODEL_CARD.md).
    "small-deepest": ModelConfig(transformer=TransformerConfig(width=128, depth=10, heads=4, context_frames=192,
                                                               detail_channels=16)),
    # small-detail whose detail channels are refined per bin under the token (grown from it).
    "small-refined": ModelConfig(transformer=TransformerConfig(width=128, depth=4, heads=4, context_frames=192,
                                                               detail_channels=16, detail_blocks=1)),
    # The largest the bundled model may be: 4.4 M parameters (17.5 MB of float32, under the 25 MB
    # a default model may take), trained from scratch on a GPU (scripts/device_train.sh).
    "medium-detail": ModelConfig(transformer=TransformerConfig(width=192, depth=6, heads=6, context_frames=192,
                                                               detail_channels=16)),
    "gpu-large": ModelConfig(transformer=TransformerConfig(width=512, depth=12, heads=8, mlp_ratio=4,
                                                           context_frames=256)),
}
