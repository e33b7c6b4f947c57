"""Training the judge (torch): separations of known quality, made here, and a regression on them.

The judge must rank what the model actually produces, and what it will produce as it
gets better, so each mixture is separated many ways and the true SI-SDR of each is
computed against the reference the judge never sees:

- the model at 1 and 2 steps (the ONNX students) and the torch teacher at more steps;
- earlier checkpoints, which are worse;
- wrong prompts: another class's caption, and the interferer's own caption;
- no separation at all (the mixture as the estimate) and the residual given as the target;
- the ideal ratio mask, the same mask spoiled by noise, and blends of the oracle with the
  model, which fill the range between what the model does today and the ceiling.

Every 6 s mixture gives two 3 s windows, each with its own label; training mixtures come
from the corpus's training split and the held-out ones from the validation set (other
voices, kits and sources), so the reported correlation is on material the judge never saw.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .config import JudgeConfig
from .judge import (
    WITH_MASK,
    Reseparator,
    band_weights,
    judge_features,
    judged_scalars,
    mixture_posterior,
)
from .judge_net import JudgeNet
from .metrics import ideal_ratio_mask, istft_frames, si_sdr, spearman, spearman_interval

WINDOWS_PER_MIXTURE = 1000  # window ids are mixture id * this + the window's number
SILENT_TARGET_DB = -50.0  # a window whose target is this far below the mixture has no label worth learning


def use_one_thread() -> None:
    """Torch on one thread: the set's many small separations and the small network gain
    little from more, and the machine is usually shared with a training run."""
    torch.set_num_threads(1)


@dataclass
class JudgeMixture:
    mixture: np.ndarray  # (n,) float32 at 48 kHz
    target: np.ndarray
    caption: str
    target_class: str
    interferer_class: str


@dataclass
class JudgeSet:
    features: np.ndarray  # (examples, frames, feature_dim) float16
    text: np.ndarray  # (examples, text_dim) float32
    score_db: np.ndarray  # (examples,) true SI-SDR of the estimate, dB
    kind: np.ndarray  # (examples,) str: how the estimate was made
    mixture_id: np.ndarray  # (examples,) int: windows of one mixture share it
    window_id: np.ndarray  # (examples,) int: the estimates of one window share it
    # (examples, len(WITH_MASK)) float32; len(WITH_POSTERIOR) or len(CONSISTENCY_NAMES) columns in older
    # sets; or (examples, 0). A judge takes the first ``consistency_features`` columns.
    consistency: np.ndarray | None = None

    def __post_init__(self):
        if self.consistency is None:
            self.consistency = np.zeros((len(self.score_db), 0), np.float32)

    def save(self, path: Path) -> None:
        np.savez_compressed(path, **{name: getattr(self, name) for name in FIELDS})

    @classmethod
    def load(cls, path: Path) -> JudgeSet:
        data = np.load(path)
        return cls(**{name: data[name] for name in FIELDS if name in data})

    @classmethod
    def join(cls, parts: list[JudgeSet]) -> JudgeSet:
        return cls(**{name: np.concatenate([getattr(part, name) for part in parts]) for name in FIELDS})


FIELDS = ("features", "text", "score_db", "kind", "mixture_id", "window_id", "consistency")


class Separations:
    """Every way one mixture gets separated for the judge's set."""

    def __init__(self, model_dir: Path, encoder, classes: list[str], early_checkpoints: list[Path] = (),
                 teacher_steps: tuple[int, ...] = (4, 16), seed: int = 0, consistency: bool = False):
        from samstream.models.data.captions import captions_for

        from .checkpoint import load_config
        from .train import Teacher

        self.model_dir = Path(model_dir)
        self.encoder = encoder
        self.classes = classes
        self.captions_for = captions_for
        self.teachers = {steps: Teacher(self.model_dir, steps=steps) for steps in teacher_steps}
        self.stft = load_config(self.model_dir).stft
        self.early = {Path(folder).name: Teacher(Path(folder), steps=1) for folder in early_checkpoints}
        self.rng = np.random.default_rng(seed)
        self.reseparator = Reseparator(self.model_dir) if consistency else None

    def caption_of(self, name: str) -> str:
        captions = self.captions_for(name)
        return captions[int(self.rng.integers(len(captions)))]

    def estimates(self, item: JudgeMixture, heavy: bool, with_model: bool = True) -> dict[str, np.ndarray]:
        """kind -> (n,) estimate of the target. ``heavy``: also the slow torch runs; without
        ``with_model``, only the estimates made from the oracle mask (cheap: no network runs)."""
        out = self.mask_estimates(item)
        if with_model:
            out |= self.model_estimates(item, heavy)
            share = float(self.rng.uniform(0.0, 1.0))
            out["oracle_blend"] = share * out["oracle"] + (1.0 - share) * out["model_1"]
            out["residual_as_target"] = item.mixture - out["model_1"]
        return out

    def model_estimates(self, item: JudgeMixture, heavy: bool) -> dict[str, np.ndarray]:
        from samstream.models.separate import separate

        rate = self.stft.sample_rate
        rng = self.rng
        embedding = self.encoder.encode(item.caption)
        seed = int(rng.integers(1 << 30))

        def model(steps: int, text: np.ndarray) -> np.ndarray:
            return separate(item.mixture[None], rate, text, steps=steps, model_dir=self.model_dir, seed=seed,
                            stream=False).target[0]

        out = {"model_1": model(1, embedding), "model_2": model(2, embedding)}
        wrong = [name for name in self.classes if name not in (item.target_class, item.interferer_class)]
        out["wrong_prompt"] = model(1, self.encoder.encode(self.caption_of(wrong[int(rng.integers(len(wrong)))])))
        out["interferer_prompt"] = model(1, self.encoder.encode(self.caption_of(item.interferer_class)))
        if heavy:
            for steps, teacher in self.teachers.items():
                out[f"teacher_{steps}"] = teacher.separate(item.mixture, embedding, seed=seed)
            for name, teacher in self.early.items():
                out[f"early_{name}"] = teacher.separate(item.mixture, embedding, seed=seed)
        return out

    def mask_estimates(self, item: JudgeMixture) -> dict[str, np.ndarray]:
        """The ideal ratio mask, and masks made from it that are worse in the ways models are worse:
        noisy, timid (pulled towards passing everything), blurred in time and frequency, inverted."""
        n_fft, hop, rng = self.stft.n_fft, self.stft.hop, self.rng
        mask, spectrum = ideal_ratio_mask(item.target, item.mixture - item.target, n_fft, hop)

        def through(gains: np.ndarray) -> np.ndarray:
            return istft_frames(spectrum * gains, n_fft, hop, len(item.mixture))

        spoil = float(rng.uniform(0.1, 0.8))
        frames, bins = int(rng.integers(2, 24)), int(rng.integers(2, 32))
        return {"oracle": through(mask), "no_separation": item.mixture.copy(),
                "oracle_spoiled": through(np.clip(mask + spoil * rng.standard_normal(mask.shape).astype(np.float32),
                                                  0.0, 1.0)),
                "oracle_timid": through(mask ** float(rng.uniform(0.05, 0.6))),
                "oracle_blurred": through(box_blur(mask, frames, bins)),
                "interferer_oracle": through(1.0 - mask)}


def box_blur(values: np.ndarray, frames: int, bins: int) -> np.ndarray:
    """Mean over a (frames x bins) box around each cell, edges shrinking the box."""
    blurred = values.astype(np.float64)
    for axis, size in ((0, frames), (1, bins)):
        total = np.cumsum(np.pad(blurred, [(1, 0) if a == axis else (0, 0) for a in range(2)]), axis=axis)
        length = blurred.shape[axis]
        low = np.clip(np.arange(length) - size // 2, 0, length)
        high = np.clip(np.arange(length) + size - size // 2, 0, length)
        if axis == 0:
            blurred = (total[high] - total[low]) / (high - low)[:, None]
        else:
            blurred = (total[:, high] - total[:, low]) / (high - low)[None, :]
    return blurred.astype(np.float32)


def labelled_windows(item: JudgeMixture, config: JudgeConfig) -> list[slice]:
    """The whole judge windows of a mixture that are labelled: those whose target is not silent."""
    size = config.window_samples
    windows = [slice(start, start + size) for start in range(0, len(item.mixture) - size + 1, size)]

    def target_db(window: slice) -> float:
        return 10 * np.log10((np.sum(item.target[window] ** 2) + 1e-12) / (np.sum(item.mixture[window] ** 2) + 1e-12))
    return [window for window in windows if target_db(window) >= SILENT_TARGET_DB]


def window_label(estimate: np.ndarray, target: np.ndarray, config: JudgeConfig) -> float:
    """The true SI-SDR of one window's estimate, clipped to the judge's score range."""
    return np.clip(si_sdr(estimate, target), config.score_floor_db, config.score_ceiling_db)


def windows_of(item: JudgeMixture, estimates: dict[str, np.ndarray], config: JudgeConfig, weights: np.ndarray,
               mixture_id: int, embedding: np.ndarray, reseparator: Reseparator | None = None) -> JudgeSet:
    """Each estimate cut into whole judge windows, each window labelled with its true SI-SDR;
    with a ``reseparator``, each window's scalar features too (``judged_scalars``: re-separated
    on its own, as the live judge does; the mixture once per window)."""
    size = config.window_samples
    features, scores, kinds, windows, consistency = [], [], [], [], []
    for window in labelled_windows(item, config):
        start, target, mixture = window.start, item.target[window], item.mixture[window]
        posterior = None if reseparator is None else mixture_posterior(mixture, embedding, reseparator, config)
        for kind, estimate in estimates.items():
            score = window_label(estimate[window], target, config)
            features.append(judge_features(mixture, estimate[window], config, weights).astype(np.float16))
            if reseparator is not None:
                consistency.append(judged_scalars(mixture, estimate[window], embedding, reseparator, posterior,
                                                  weights))
            scores.append(score)
            kinds.append(kind)
            windows.append(mixture_id * WINDOWS_PER_MIXTURE + start // size)
    count = len(scores)
    frames = -(-size // config.hop)
    return JudgeSet(np.array(features, np.float16).reshape(count, frames, config.feature_dim),
                    np.repeat(embedding[None].astype(np.float32), count, axis=0), np.array(scores, np.float32),
                    np.array(kinds), np.full(count, mixture_id, np.int64), np.array(windows, np.int64),
                    None if reseparator is None else
                    np.array(consistency, np.float32).reshape(count, len(WITH_MASK)))


def build_judge_set(mixtures, separations: Separations, config: JudgeConfig, heavy_every: int = 2,
                    first_id: int = 0, with_model: bool = True, log=print) -> JudgeSet:
    weights = band_weights(config)
    parts, started = [], time.time()
    for number, item in enumerate(mixtures):
        estimates = separations.estimates(item, heavy=number % heavy_every == 0, with_model=with_model)
        embedding = separations.encoder.encode(item.caption)
        parts.append(windows_of(item, estimates, config, weights, first_id + number, embedding,
                                separations.reseparator))
        if (number + 1) % 10 == 0:
            log(f"  {number + 1} mixtures, {sum(len(part.score_db) for part in parts)} windows, "
                f"{time.time() - started:.0f} s")
    return JudgeSet.join(parts)


def pairwise_logistic_loss(predicted: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    """Mean logistic loss over the (i, j) with ``pairs[i, j]``, where estimate i should score above j."""
    if not bool(pairs.any()):
        return predicted.sum() * 0.0
    return torch.nn.functional.softplus(-(predicted[:, None] - predicted[None, :]))[pairs].mean()


def ranking_loss(predicted: torch.Tensor, truth: torch.Tensor, windows: torch.Tensor,
                 margin_db: float = 1.0) -> torch.Tensor:
    """Logistic loss on every pair of estimates of one window whose true scores differ by more
    than ``margin_db``: the order within a window is what re-ranking candidates needs, and it
    is free of the mixture's own difficulty, which dominates the absolute scores."""
    same = windows[:, None] == windows[None, :]
    return pairwise_logistic_loss(predicted, same & (truth[:, None] - truth[None, :] > margin_db / 10.0))


def global_ranking_loss(predicted: torch.Tensor, truth: torch.Tensor, margin_db: float = 1.0) -> torch.Tensor:
    """Logistic loss on every pair of the batch, of any windows, whose true scores differ by more
    than ``margin_db``: Spearman over held-out windows ranks estimates of different mixtures too."""
    return pairwise_logistic_loss(predicted, truth[:, None] - truth[None, :] > margin_db / 10.0)


def frozen_scores(model: JudgeNet, train: JudgeSet, batch_size: int = 256) -> torch.Tensor:
    """The band network's score of every example, and the tagger's contrast if the judge has one,
    once (``JudgeNet.frozen_scores``): while they are frozen, the fusion's epochs need nothing else
    from the band features. In eval mode: a judge fresh from ``with_fusion`` is in training mode, and
    its band network's dropout made these scores noisy before. The model's mode is put back after."""
    training = model.training
    model.eval()
    batches = [slice(start, start + batch_size) for start in range(0, len(train.score_db), batch_size)]
    try:
        with torch.no_grad():
            return torch.cat([model.frozen_scores(torch.from_numpy(train.features[batch].astype(np.float32)),
                                                  torch.from_numpy(train.text[batch])) for batch in batches])
    finally:
        model.train(training)


def train_judge(train: JudgeSet, config: JudgeConfig, epochs: int = 40, windows_per_batch: int = 8,
                learning_rate: float = 2e-3, ranking_weight: float = 0.5, seed: int = 0, log=print,
                model: JudgeNet | None = None, whole: bool = False, global_ranking_weight: float = 0.0,
                frozen: torch.Tensor | None = None) -> JudgeNet:
    """Huber regression on the true SI-SDR (in units of 10 dB) plus the within-window ranking loss;
    each batch holds every estimate of a few windows, so the ranking loss has pairs to compare, and
    ``global_ranking_weight`` weighs a ranking loss over every pair of the batch.
    ``model``: a judge with consistency features (``judge_net.with_fusion``) whose band network
    is trained already; only its fusion network learns, from ``train``'s consistency features,
    unless ``whole``: then the band network is fine-tuned with it (its dropout stays off).
    ``frozen``: ``frozen_scores(model, train)`` when the caller has it already (several fusions of
    one set: the taggers' convolutions over every window cost more than a fusion's epochs)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = model if model is not None else JudgeNet(config)
    fusing = bool(model.config.consistency_features)
    check_consistency_columns(train, model.config.consistency_features)
    for parameter in model.band_parameters():
        parameter.requires_grad_(not fusing or whole)
    for parameter in model.tagger_parameters():  # fitted on its own task (tagger.train_tagger)
        parameter.requires_grad_(False)
    trained = [parameter for parameter in model.parameters() if parameter.requires_grad]
    optimiser = torch.optim.AdamW(trained, lr=learning_rate, weight_decay=1e-4)
    members = {window: np.flatnonzero(train.window_id == window) for window in np.unique(train.window_id)}
    window_ids = np.array(sorted(members))
    steps_per_epoch = max(1, len(window_ids) // windows_per_batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, learning_rate, total_steps=epochs * steps_per_epoch)
    consistency = torch.from_numpy(train.consistency[:, :model.config.consistency_features].copy()) if fusing else None
    target = torch.from_numpy(train.score_db / 10.0)
    windows = torch.from_numpy(train.window_id)
    band_scores = None if not fusing or whole else frozen if frozen is not None else frozen_scores(model, train)
    if band_scores is None:  # the band features in float32 are needed only while the band network learns
        features, text = torch.from_numpy(train.features.astype(np.float32)), torch.from_numpy(train.text)
    for epoch in range(epochs):
        order = rng.permutation(window_ids)
        total = 0.0
        model.eval() if fusing else model.train()  # a frozen band network keeps its dropout off
        for step in range(steps_per_epoch):
            batch = order[step * windows_per_batch:(step + 1) * windows_per_batch]
            chosen = torch.from_numpy(np.concatenate([members[window] for window in batch]))
            if band_scores is not None:
                predicted = model.fused_score(band_scores[chosen], consistency[chosen])
            else:
                predicted = model(features[chosen], text[chosen], None if consistency is None else consistency[chosen])
            predicted = predicted / 10.0
            loss = torch.nn.functional.huber_loss(predicted, target[chosen], delta=3.0)
            loss = loss + ranking_weight * ranking_loss(predicted, target[chosen], windows[chosen])
            if global_ranking_weight:
                loss = loss + global_ranking_weight * global_ranking_loss(predicted, target[chosen])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total += loss.item()
        if (epoch + 1) % 5 == 0 or epoch == 0:
            log(f"  epoch {epoch + 1}/{epochs}: loss {total / steps_per_epoch:.4f}")
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    return model.eval()


def check_consistency_columns(data: JudgeSet, wanted: int) -> None:
    if wanted and data.consistency.shape[1] < wanted:
        raise ValueError(f"the set has {data.consistency.shape[1]} consistency features, the judge takes {wanted}")


def predict(model: JudgeNet, data: JudgeSet, batch_size: int = 256) -> np.ndarray:
    wanted = model.config.consistency_features
    check_consistency_columns(data, wanted)
    out = []
    with torch.no_grad():
        for start in range(0, len(data.score_db), batch_size):
            batch = slice(start, start + batch_size)
            consistency = torch.from_numpy(data.consistency[batch, :wanted].copy()) if wanted else None
            out.append(model(torch.from_numpy(data.features[batch].astype(np.float32)),
                             torch.from_numpy(data.text[batch]), consistency).numpy())
    return np.concatenate(out) if out else np.zeros(0, np.float32)


MODEL_KINDS = ("model_1", "model_2", "teacher_4", "teacher_16")


def evaluate_judge(predicted: np.ndarray, data: JudgeSet, interval: bool = True) -> dict:
    """Spearman with the true SI-SDR: over everything (with its 95 % interval from a bootstrap over
    the mixtures, unless not ``interval``: a judge's own training set needs none, and for 600 mixtures
    it takes seconds), over the model's own outputs, and how often the judge picks the better of two
    model outputs of one window."""
    truth = data.score_db
    own = np.isin(data.kind, MODEL_KINDS) | np.char.startswith(data.kind.astype(str), "early_")
    figures = {"examples": len(truth), "spearman": round(spearman(predicted, truth), 4)}
    if interval:
        low, high = spearman_interval(predicted, truth, data.mixture_id)
        figures["spearman_95_over_mixtures"] = [round(low, 4), round(high, 4)]
    figures |= {"spearman_model_outputs": round(spearman(predicted[own], truth[own]), 4),
                "mean_abs_error_db": round(float(np.mean(np.abs(predicted - truth))), 3),
                "per_kind": {}}
    for kind in sorted(set(data.kind.tolist())):
        chosen = data.kind == kind
        figures["per_kind"][kind] = {"examples": int(chosen.sum()), "true_db": round(float(truth[chosen].mean()), 2),
                                     "predicted_db": round(float(predicted[chosen].mean()), 2)}
    figures["model_pair_agreement"] = round(pair_agreement(predicted, data, own), 4)
    return figures


def pair_agreement(predicted: np.ndarray, data: JudgeSet, chosen: np.ndarray, margin_db: float = 1.0) -> float:
    """Of pairs of the model's outputs for the same window whose true scores differ by more than
    ``margin_db``, the share the judge orders right: what re-ranking candidates needs."""
    right = total = 0
    for window in np.unique(data.window_id[chosen]):
        members = np.flatnonzero(chosen & (data.window_id == window))
        for a_index, a in enumerate(members):
            for b in members[a_index + 1:]:
                gap = data.score_db[a] - data.score_db[b]
                if abs(gap) > margin_db:
                    total += 1
                    right += int(np.sign(predicted[a] - predicted[b]) == np.sign(gap))
    return right / total if total else float("nan")
