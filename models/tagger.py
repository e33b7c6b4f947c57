"""The judge's tagger (training half, torch): which of the corpus's classes a window sounds like.

The judge's consistency features ask the separator about the separator's own output. Where the
separator takes one source for another (asked for "a gong" beside crackle, it returns the
crackle, and returns the gong when asked for something else), those features agree with it and
the judge is wrong with it: on that held-out window it judged the ideal mask -18 dB and the
interferer's +31. The tagger is a second opinion from a model trained for another task:
multi-label classification of the training split's sources, alone and mixed, from the ERB band
levels the judge computes anyway. The judge takes one number from it, the contrast: how much more
the estimate sounds like the prompt than what the estimate left behind.

Read top-down: ``tagger_input`` makes band levels level-free, ``Tagger`` is a dilated
convolution over frames pooled to class logits, and ``contrast`` reads the judge's own band
features (``judge.judge_features``), so the tagger runs inside the judge's ONNX graph and the
live path computes nothing new. ``tagger_examples`` and ``train_tagger`` fit it.
"""
from __future__ import annotations

import json
import os
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .config import JudgeConfig
from .judge import FEATURE_SCALE_DB, JudgeFolderError, band_powers, band_weights

TAGGER_FLOOR_DB = -60.0  # band powers are floored this far below the window's mixture mean power
TAGGER_RANGE_DB = (-60.0, 20.0)  # levels relative to the signal's own mean power
CONTRAST_SCALE = 10.0  # logits -> the fusion's units
# Leaky examples: a signal over what leaked into it, drawn uniformly in dB; a share are left clean.
LEAK_RATIO_DB = (-20.0, 30.0)
CLEAN_SHARE = 0.1
LEAK_BAND_SPREAD_DB = 4.0  # a separator leaks more in some bands than in others
TAGGER_FILES = ("tagger.json", "tagger.safetensors")
# tagger.json's keys for the JudgeConfig fields that give a tagger its shape
TAGGER_SHAPE = {"width": "tagger_width", "depth": "tagger_depth", "kernel": "tagger_kernel",
                "classes": "tagger_classes", "temperature": "tagger_temperature"}


def use_every_core() -> None:
    """Torch on every core: the tagger is one network fitted on many examples, unlike the judge's
    many small separations (``judge_train.use_one_thread``)."""
    torch.set_num_threads(os.cpu_count() or 1)


def tagger_input(levels_db: torch.Tensor, mixture_db: torch.Tensor) -> torch.Tensor:
    """(batch, frames, bands) band levels of a signal and of its window's mixture, in dB against any
    common reference -> the tagger's input: the signal's levels against its own mean power, floored
    under the mixture's, in units of 20 dB. Level-free, so an estimate is tagged as its source would be."""
    floor = torch.pow(10.0, mixture_db / 10.0).mean(dim=(1, 2), keepdim=True) * 10.0 ** (TAGGER_FLOOR_DB / 10.0)
    power = torch.pow(10.0, levels_db / 10.0) + floor
    relative = 10.0 * torch.log10(power) - 10.0 * torch.log10(power.mean(dim=(1, 2), keepdim=True))
    return torch.clamp(relative, *TAGGER_RANGE_DB) / FEATURE_SCALE_DB


def window_inputs(signals_db: torch.Tensor, mixture_db: torch.Tensor) -> torch.Tensor:
    """(batch, signals, frames, bands) band levels of signals of a window and (batch, frames, bands)
    of the window's mixture -> (batch * signals, frames, bands) ``tagger_input``s, a window's in a row."""
    mixture = mixture_db[:, None].expand_as(signals_db)
    return tagger_input(signals_db.flatten(0, 1), mixture.flatten(0, 1))


class Tagger(nn.Module):
    def __init__(self, config: JudgeConfig):
        super().__init__()
        self.config = config
        width, kernel = config.tagger_width, config.tagger_kernel
        layers, channels = [], config.n_bands
        for level in range(config.tagger_depth):
            dilation = 2 ** level
            layers += [nn.Conv1d(channels, width, kernel, padding=dilation * (kernel // 2), dilation=dilation),
                       nn.GELU()]
            channels = width
        self.frames = nn.Sequential(*layers)
        self.head = nn.Linear(2 * width, config.tagger_classes)
        # One mean caption embedding per class, unit length: a prompt is read as the classes it is near.
        self.register_buffer("class_embeddings", torch.zeros(config.tagger_classes, config.text_dim))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """(batch, frames, bands) from ``tagger_input`` -> (batch, classes) logits."""
        frames = self.frames(inputs.transpose(1, 2))
        return self.head(torch.cat((frames.mean(dim=-1), frames.amax(dim=-1)), dim=-1))

    def prompt_classes(self, text: torch.Tensor) -> torch.Tensor:
        """(batch, text_dim) prompt embeddings -> (batch, classes) weights summing to one."""
        text = text / torch.clamp(text.norm(dim=-1, keepdim=True), min=1e-6)
        return torch.softmax(text @ self.class_embeddings.T / self.config.tagger_temperature, dim=-1)

    def contrast(self, features: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """The judge's band features (batch, frames, 3 * bands) and prompt -> (batch,): the prompt's
        logit for what the estimate kept minus its logit for what the estimate left, over
        ``CONTRAST_SCALE``."""
        levels = features * FEATURE_SCALE_DB
        bands = self.config.n_bands
        mixture = levels[..., :bands]  # against the mixture's mean power; kept and left against the mixture
        kept = self(tagger_input(mixture + levels[..., bands:2 * bands], mixture))
        left = self(tagger_input(mixture + levels[..., 2 * bands:], mixture))
        return ((kept - left) * self.prompt_classes(text)).sum(dim=-1) / CONTRAST_SCALE


def corpus_classes(data: str) -> list[str]:
    """The classes of a corpus's training split, sorted: what a tagger fitted on it tells apart."""
    from .data.manifest import read_corpus_manifest

    return sorted({entry.cls for entry in read_corpus_manifest(data) if entry.split == "train"})


def class_embeddings(encoder, classes: list[str]) -> np.ndarray:
    """(classes, text_dim): each class's captions embedded and averaged, unit length."""
    from .data.captions import captions_for

    means = np.stack([np.mean([encoder.encode(caption) for caption in captions_for(name)], axis=0)
                      for name in classes])
    return (means / np.linalg.norm(means, axis=1, keepdims=True)).astype(np.float32)


@dataclass(frozen=True)
class TaggerExamples:
    """Band levels of windows of mixtures: (mixtures, 3, frames, bands) dB of the target, the
    interferers and the mixture; labels (mixtures, 3, classes) 0/1, the classes each one holds."""

    levels: np.ndarray
    labels: np.ndarray

    def inputs(self, chunk: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
        """(3 * mixtures, frames, bands) tagger inputs, made a chunk of mixtures at a time: the whole set
        converted at once held several float32 copies of it (12 GB at 20,000 mixtures)."""
        count, _, frames, bands = self.levels.shape
        inputs = torch.empty(3 * count, frames, bands)
        for start in range(0, count, chunk):
            levels = torch.from_numpy(self.levels[start:start + chunk].astype(np.float32))
            inputs[3 * start:3 * start + 3 * len(levels)] = window_inputs(levels, levels[:, 2])
        return inputs, torch.from_numpy(self.labels.reshape(-1, self.labels.shape[-1]).astype(np.float32))


def leaky_inputs(levels: torch.Tensor, labels: torch.Tensor,
                 ratio_db: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of ``TaggerExamples`` (levels (batch, 3, frames, bands) dB, labels (batch, 3, classes))
    -> (2 * batch, frames, bands) tagger inputs and soft labels: the target with some of the
    interferers leaked in and the interferers with some of the target, as the judge's estimate and
    remainder are, each class labelled with its share of the power. So a logit learns how much of
    its class a signal holds, which is what ``contrast`` compares, not only whether it is there.
    ``ratio_db`` (batch, 2): each signal over its leak, instead of drawn (and none left clean)."""
    batch, bands = len(levels), levels.shape[-1]
    power = torch.pow(10.0, levels[:, :2] / 10.0)
    own, other = power, power.flip(1)
    own_mean, other_mean = own.mean(dim=(2, 3), keepdim=True), other.mean(dim=(2, 3), keepdim=True) + 1e-12
    if ratio_db is None:
        ratio_db = torch.empty(batch, 2).uniform_(*LEAK_RATIO_DB)
        ratio_db[torch.rand(batch, 2) < CLEAN_SHARE] = torch.inf
    gain = own_mean / other_mean * torch.pow(10.0, -ratio_db[..., None, None] / 10.0)
    spread = torch.pow(10.0, LEAK_BAND_SPREAD_DB / 10.0 * torch.randn(batch, 2, 1, bands))
    leak = other * gain * spread / spread.mean(dim=-1, keepdim=True)
    share = own.sum(dim=(2, 3)) / ((own + leak).sum(dim=(2, 3)) + 1e-12)
    soft = torch.clamp(share[..., None] * labels[:, :2] + (1.0 - share[..., None]) * labels[:, :2].flip(1), max=1.0)
    inputs = window_inputs(10.0 * torch.log10(own + leak + 1e-12), levels[:, 2])
    return inputs, soft.reshape(-1, labels.shape[-1])


def tagger_examples(data: str, split: str, count: int, seed: int, classes: list[str],
                    config: JudgeConfig, log=print, workers: int = 1, chunk: int = 250) -> TaggerExamples:
    """``count`` windows of the judge's length from mixtures of ``split``'s sources (one or two
    interferers, EQ, rooms, the target throughout): each window's target, interferers and mixture.
    Mixture ``i`` depends on (seed, i) alone, so ``workers`` processes, ``chunk`` mixtures per task,
    draw the same set as one."""
    import multiprocessing

    from .data.manifest import read_corpus_manifest

    entries = read_corpus_manifest(data)
    levels, labels = empty_examples(count, config, len(classes))
    starts = range(0, count, chunk)
    setup = (entries, data, split, seed, classes, config, count, chunk)
    started, logged = time.time(), 0
    # spawn, not fork: the parent has torch's thread pools running.
    with (multiprocessing.get_context("spawn").Pool(workers, _start_drawing, setup) if workers > 1
          else _InProcess(setup)) as pool:
        for start, chunk_levels, chunk_labels in pool.imap_unordered(_draw_examples, starts):
            levels[start:start + len(chunk_levels)], labels[start:start + len(chunk_labels)] = chunk_levels, \
                chunk_labels
            logged += len(chunk_levels)
            if logged // 2000 != (logged - len(chunk_levels)) // 2000:
                log(f"  {logged} mixtures, {time.time() - started:.0f} s")
    return TaggerExamples(levels, labels)


def cached_examples(path: Path, classes: list[str], draw) -> TaggerExamples:
    """The examples saved at ``path`` if they were drawn for ``classes``; else ``draw()``'s, saved there
    (drawing 20,000 mixtures takes a quarter of an hour; fitting several taggers needs one draw)."""
    path = Path(path)
    try:
        with np.load(path) as saved:
            if list(saved["classes"]) == classes:
                return TaggerExamples(saved["levels"], saved["labels"])
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        pass  # missing, or not a whole set of examples (a draw cut short): drawn again
    examples = draw()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial.npz")
    np.savez(partial, levels=examples.levels, labels=examples.labels, classes=np.array(classes))
    partial.replace(path)
    return examples


def empty_examples(count: int, config: JudgeConfig, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Zeroed ``TaggerExamples`` arrays for ``count`` mixtures: levels and labels."""
    frames = -(-config.window_samples // config.hop)
    return (np.zeros((count, 3, frames, config.n_bands), np.float16), np.zeros((count, 3, classes), np.uint8))


_drawing: dict = {}  # a drawing worker's sampler and settings, made once by _start_drawing


def _start_drawing(entries, data, split, seed, classes, config, count, chunk) -> None:
    from .data.mixtures import MixtureConfig, MixtureSampler

    _drawing.update(sampler=MixtureSampler(entries, data, MixtureConfig(
        seconds=config.window_seconds, interferers=(1, 2), partial_prob=0.0, split=split), seed=seed),
        index={name: number for number, name in enumerate(classes)}, config=config,
        weights=band_weights(config), count=count, chunk=chunk)


def _draw_examples(start: int) -> tuple[int, np.ndarray, np.ndarray]:
    """Mixtures ``start`` .. ``start + chunk`` of the set ``_start_drawing`` set up."""
    sampler, index, config = _drawing["sampler"], _drawing["index"], _drawing["config"]
    numbers = range(start, min(start + _drawing["chunk"], _drawing["count"]))
    levels, labels = empty_examples(len(numbers), config, len(index))
    for row, number in enumerate(numbers):
        mixture = sampler.sample(number)
        powers = band_powers(np.stack((mixture.target, mixture.residual, mixture.mixture)).astype(np.float32),
                             config, _drawing["weights"])
        levels[row] = 10.0 * np.log10(powers + 1e-12)
        labels[row, 0, index[mixture.target_class]] = 1
        for name in mixture.interferer_classes:
            labels[row, 1, index[name]] = 1
        labels[row, 2] = labels[row, 0] | labels[row, 1]
    return start, levels, labels


class _InProcess:
    """The pool's two calls, in this process: one worker needs no second process."""

    def __init__(self, setup):
        _start_drawing(*setup)

    def __enter__(self):
        return self

    def __exit__(self, *_):
        _drawing.clear()

    def imap_unordered(self, function, items):
        return map(function, items)


def train_tagger(train: TaggerExamples, config: JudgeConfig, embeddings: np.ndarray, epochs: int = 6,
                 learning_rate: float = 2e-3, batch_size: int = 64, seed: int = 0,
                 validation: TaggerExamples | None = None, leaky: bool = True, log=print) -> Tagger:
    """Binary cross-entropy per class, with a random spectral tilt on each example (an estimate's
    colouring); logs the validation's top-1 accuracy on its targets after each epoch. ``leaky``:
    fitted on ``leaky_inputs`` drawn afresh for each batch; else on the clean target, interferers
    and mixture of each example (the judge's held-out figure in single fusions: +0.790 at each of three
    seeds with two leaky taggers, +0.782 and +0.772 with two clean ones)."""
    torch.manual_seed(seed)
    model = Tagger(config)
    model.class_embeddings.copy_(torch.from_numpy(embeddings))
    if leaky:  # rows are mixtures, each giving two inputs
        levels, mixture_labels = torch.from_numpy(train.levels), torch.from_numpy(train.labels)
        examples, batch_size = len(levels), max(1, batch_size // 2)

        def batch_of(rows):
            return leaky_inputs(levels[rows].float(), mixture_labels[rows].float())
    else:  # rows are inputs
        inputs, labels = train.inputs()
        examples = len(inputs)

        def batch_of(rows):
            return inputs[rows], labels[rows]
    steps = max(1, examples // batch_size)
    optimiser = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=1e-2)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, learning_rate, total_steps=epochs * steps)
    tilt = torch.linspace(-1.0, 1.0, config.n_bands)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(examples)
        total = 0.0
        for step in range(steps):
            batch_inputs, batch_labels = batch_of(order[step * batch_size:(step + 1) * batch_size])
            tilted = batch_inputs + 0.1 * torch.randn(len(batch_inputs), 1, 1) * tilt
            loss = nn.functional.binary_cross_entropy_with_logits(model(tilted), batch_labels)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total += loss.item()
        line = f"  epoch {epoch + 1}/{epochs}: loss {total / steps:.4f}"
        if validation is not None:
            line += f", validation targets tagged right {target_accuracy(model, validation):.1%}"
        log(line)
    return model.eval()


def target_accuracy(model: Tagger, examples: TaggerExamples) -> float:
    """Share of the examples' target windows whose top class is the target's."""
    inputs, labels = examples.inputs()
    targets, truth = inputs[0::3], labels[0::3]
    with torch.no_grad():
        logits = torch.cat([model(targets[start:start + 256]) for start in range(0, len(targets), 256)])
    return float(truth[torch.arange(len(truth)), logits.argmax(dim=1)].mean())


def save_tagger(model: Tagger, folder: Path, figures: dict | None = None) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = model.config
    record = {key: getattr(config, field) for key, field in TAGGER_SHAPE.items()} | (figures or {})
    (folder / TAGGER_FILES[0]).write_text(json.dumps(record, indent=2) + "\n")
    save_file({name: value.detach().contiguous() for name, value in model.state_dict().items()},
              str(folder / TAGGER_FILES[1]))


def load_tagger(folder: Path, config: JudgeConfig) -> Tagger:
    """A tagger written by ``save_tagger``, for a judge of ``config``'s bands and prompt size; its
    tagger.json as ``record``."""
    from dataclasses import replace

    folder = Path(folder)
    try:
        record = json.loads((folder / TAGGER_FILES[0]).read_text())
        config = replace(config, **{field: record[key] for key, field in TAGGER_SHAPE.items()})
        model = Tagger(config)
        model.load_state_dict(load_file(str(folder / TAGGER_FILES[1])))
    except FileNotFoundError as error:
        raise JudgeFolderError(f"{error.filename}: missing") from None
    except (ValueError, RuntimeError, TypeError, KeyError) as error:
        raise JudgeFolderError(f"{folder}: not a tagger ({str(error).splitlines()[0]})") from None
    model.record = record
    return model.eval()
