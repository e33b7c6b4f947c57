"""Prompts for training: which prompt each example carries, and how it is made (training half).

A user may prompt with text, with a span (anchors on frames, plus the example embedding
pooled from the audio inside a positive span), or both. Each training example draws one
of those regimes, so every combination is learned. With a ``visual_share``, that share
of examples also carries the visual features of the target's box in a clip drawn for the
mixture (``models.data.av_clips``), half of them with no other prompt.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from .config import ANCHOR_NEGATIVE, ANCHOR_NONE, ANCHOR_POSITIVE, ModelConfig
from .data.av_clips import mixture_visual_rows
from .flow import Conditioning
from .runtime import compressed_frames

# (text, anchors, example) switched on, and how often.
REGIMES = (
    ((True, False, False), 0.5),
    ((True, True, False), 0.15),
    ((True, False, True), 0.1),
    ((False, True, True), 0.15),
    ((False, False, True), 0.1),
)


class MixtureLike(Protocol):
    mixture: np.ndarray  # (n,) float32
    target: np.ndarray  # (n,) float32
    activity: np.ndarray  # (frames,) target activity in [0, 1] at the model's hop
    captions: tuple[str, ...]  # of the target's class


class MixtureSource(Protocol):
    def sample(self, rng: np.random.Generator, seconds: float) -> MixtureLike: ...


@dataclass
class TrainingExample:
    mixture: np.ndarray
    target: np.ndarray
    conditioning: dict  # numpy arrays of one example, see ``PromptSampler.stack``
    caption: str
    classes: tuple[str, tuple[str, ...]] | None = None  # (target, interferers) where the source knows them


class PromptSampler:
    """Wraps a mixture source; returns training examples with a random prompt regime."""

    def __init__(self, source: MixtureSource, config: ModelConfig, embed_text: Callable[[str], np.ndarray],
                 visual_share: float = 0.0):
        self.source = source
        self.config = config
        self.embed_text = embed_text
        # The share of examples that also see the target's box in a drawn clip; half of those
        # see no caption, so the visual prompt learns to work alone as well as beside text.
        self.visual_share = visual_share
        self._embeddings: dict[str, np.ndarray] = {}

    def text_embedding(self, caption: str) -> np.ndarray:
        if caption not in self._embeddings:
            self._embeddings[caption] = np.asarray(self.embed_text(caption), np.float32)
        return self._embeddings[caption]

    def embed_captions(self, captions: Iterable[str]) -> None:
        for caption in captions:
            self.text_embedding(caption)

    def example(self, rng: np.random.Generator, seconds: float, regime=None) -> TrainingExample:
        mixture = self.source.sample(rng, seconds)
        frames = -(-len(mixture.mixture) // self.config.stft.hop)
        activity = np.zeros(frames, np.float32)
        count = min(frames, len(mixture.activity))
        activity[:count] = mixture.activity[:count]
        if regime is None:
            choices, weights = zip(*REGIMES, strict=True)
            regime = choices[rng.choice(len(choices), p=np.array(weights) / sum(weights))]
        use_text, use_anchors, use_example = regime
        sounding = (activity > 0.5).any()
        if not sounding:
            use_text, use_anchors, use_example = True, False, False  # no span can show a silent target
        use_visual = bool(self.visual_share) and sounding and rng.random() < self.visual_share
        if use_visual and rng.random() < 0.5:
            use_text, use_anchors, use_example = False, False, False  # the box alone
        caption = str(rng.choice(mixture.captions))
        prompt = {
            "text": self.text_embedding(caption) if use_text else np.zeros(self.config.prompt.text_dim, np.float32),
            "anchors": self.anchors(activity, rng) if use_anchors else np.zeros(frames, np.int64),
            "example_features": np.zeros(self.config.stft.n_bins, np.float32),
            "has_example": np.float32(use_example),
            "visual": np.zeros((frames, self.config.prompt.visual_dim), np.float32),
        }
        if use_example:
            prompt["example_features"] = self.example_features(mixture.mixture, activity, rng)
        if use_visual:
            prompt["visual"] = mixture_visual_rows(mixture.target, mixture.mixture - mixture.target, rng,
                                                   self.config, frames)
        classes = getattr(mixture, "classes", None)
        return TrainingExample(mixture.mixture.astype(np.float32), mixture.target.astype(np.float32), prompt,
                               caption if use_text else "", classes)

    def fixed_example(self, mixture: np.ndarray, target: np.ndarray, caption: str) -> TrainingExample:
        """A text-prompted example of given audio: the validation protocol's prompt."""
        frames = -(-len(mixture) // self.config.stft.hop)
        prompt = {
            "text": self.text_embedding(caption),
            "anchors": np.zeros(frames, np.int64),
            "example_features": np.zeros(self.config.stft.n_bins, np.float32),
            "has_example": np.float32(0.0),
            "visual": np.zeros((frames, self.config.prompt.visual_dim), np.float32),
        }
        return TrainingExample(mixture.astype(np.float32), target.astype(np.float32), prompt, caption)

    def anchors(self, activity: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A random window of the clip marked + where the target sounds and - where it does not."""
        frames = len(activity)
        length = int(rng.integers(max(1, frames // 4), frames + 1))
        start = int(rng.integers(0, frames - length + 1))
        anchors = np.full(frames, ANCHOR_NONE, np.int64)
        window = slice(start, start + length)
        anchors[window] = np.where(activity[window] > 0.5, ANCHOR_POSITIVE, ANCHOR_NEGATIVE)
        if rng.random() < 0.5:  # users often mark only where it sounds
            anchors[anchors == ANCHOR_NEGATIVE] = ANCHOR_NONE
        return anchors

    def example_features(self, mixture: np.ndarray, activity: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Mean compressed spectrum over a positive span: what a live capture hands the model."""
        features = compressed_frames(mixture, self.config)[:len(activity)]
        active = np.flatnonzero(activity > 0.5)
        length = int(rng.integers(1, len(active) + 1))
        start = int(rng.integers(0, len(active) - length + 1))
        return features[active[start:start + length]].mean(axis=0).astype(np.float32)

    def batch(self, size: int, seconds: float, rng: np.random.Generator) -> list[TrainingExample]:
        return [self.example(rng, seconds) for _ in range(size)]

    @property
    def pair_difficulty(self):
        """The source's hard-pair miner (``models.data.hard_pairs``), if it has one."""
        return getattr(self.source, "pair_difficulty", None)

    def record(self, examples: list[TrainingExample], improvements: dict[int, float]) -> None:
        """Hands the one-step improvements measured in training (by batch row) to the hard-pair miner."""
        miner = self.pair_difficulty
        if miner is None:
            return
        for row, improvement in improvements.items():
            if examples[row].classes is not None:
                target_class, interferer_classes = examples[row].classes
                miner.record(target_class, interferer_classes, improvement)

    @staticmethod
    def tensors(examples: list[TrainingExample],
                config: ModelConfig) -> tuple[torch.Tensor, torch.Tensor, Conditioning]:
        """A batch of examples -> (mixture (B, n), target (B, n), conditioning), as the loss takes them."""
        mixture = torch.from_numpy(np.stack([example.mixture for example in examples]))
        target = torch.from_numpy(np.stack([example.target for example in examples]))
        return mixture, target, PromptSampler.stack([example.conditioning for example in examples], config)

    @staticmethod
    def stack(prompts: list[dict], config: ModelConfig) -> Conditioning:
        def stacked(key, dtype):
            return torch.from_numpy(np.stack([prompt[key] for prompt in prompts]).astype(dtype))

        frames = min(len(prompt["anchors"]) for prompt in prompts)
        conditioning = Conditioning(stacked("text", np.float32), stacked("example_features", np.float32),
                                    stacked("has_example", np.float32), stacked("anchors", np.int64),
                                    stacked("visual", np.float32))
        conditioning.anchors = conditioning.anchors[:, :frames]
        conditioning.visual = conditioning.visual[:, :frames]
        return conditioning


@dataclass
class CorpusMixture:
    mixture: np.ndarray
    target: np.ndarray
    activity: np.ndarray
    captions: tuple[str, ...]
    classes: tuple[str, tuple[str, ...]] | None = None


def pool_activity(activity: np.ndarray, data_hop: int, model_hop: int) -> np.ndarray:
    """Activity flags per ``data_hop`` samples -> per ``model_hop``: a frame is active if any part is."""
    factor = max(1, model_hop // data_hop)
    frames = -(-len(activity) // factor)
    padded = np.zeros(frames * factor, np.float32)
    padded[:len(activity)] = activity
    return padded.reshape(frames, factor).max(axis=1)


class CorpusSource:
    """Adapts the corpus's ``MixtureSampler`` to the ``MixtureSource`` that training draws from."""

    def __init__(self, sampler, config: ModelConfig, data_hop: int):
        self.sampler = sampler
        self.config = config
        self.data_hop = data_hop

    @property
    def pair_difficulty(self):
        return self.sampler.pair_difficulty

    def sample(self, rng: np.random.Generator, seconds: float) -> CorpusMixture:
        mixture = self.sampler.sample(int(rng.integers(0, 2**62)))
        length = min(len(mixture.mixture), round(seconds * self.config.stft.sample_rate))
        start = int(rng.integers(0, len(mixture.mixture) - length + 1))
        first, last = start // self.data_hop, -(-(start + length) // self.data_hop)
        activity = pool_activity(mixture.activity[first:last].astype(np.float32), self.data_hop,
                                 self.config.stft.hop)
        # the file's own captions: a class's union can name another sound than the file holds
        captions = tuple(sorted(mixture.target_captions or self.sampler.captions[mixture.target_class]))
        return CorpusMixture(mixture.mixture[start:start + length], mixture.target[start:start + length],
                             activity, captions, (mixture.target_class, tuple(mixture.interferer_classes)))
