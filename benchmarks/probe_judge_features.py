"""Probe: would more features of the estimate's mask help the judge, before any set is rebuilt?

A cached judge set (`samstream judge train` / `eval` write them under runs/judge) holds band
features and scalars, not audio, and re-separating every window again costs about an hour of
one core per 160 mixtures. The estimates themselves are cheap to make again: ``Separations``
with the set's seed draws the same prompts, seeds and spoiled masks in the same order, so this
script remakes them row for row (checked: every kind and true SI-SDR must come out as stored),
computes candidate features from the mixture and the estimate alone, and saves them beside the
set. The candidates here: the mask features by frequency region (below 500 Hz, 500 Hz to
4 kHz, above), each region's energy share, indecision, decided share, mean mask and time flux.

With ``--cross-validate`` (the held-out set; needs scikit-learn) it fits gradient-boosted
trees over the set's own scalars, with and without the candidates, by 5-fold
cross-validation grouped by mixture, and prints the Spearman of each with the true SI-SDR,
over every estimate and over the kinds of output the issue names.

    python benchmarks/probe_judge_features.py --held-out 2 --cross-validate
    python benchmarks/probe_judge_features.py --train 160 --seed 0
"""
from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import numpy as np

from samstream.models.config import JudgeConfig
from samstream.models.judge import bin_mask
from samstream.models.judge_train import JudgeSet, Separations, labelled_windows, use_one_thread, window_label
from samstream.models.metrics import spearman
from samstream.models.separate import DEFAULT_MODEL_DIR
from samstream.models.text_encoder import TextEncoder
from samstream.plugin_host.judge_cli import (
    CONSISTENCY_SEED_OFFSET,
    HELD_OUT_SEPARATION_SEED,
    consistency_set_name,
    judge_mixtures,
)

REGION_EDGES_HZ = (500.0, 4000.0)
ISSUE_KINDS = ("model_1", "model_2", "teacher_4", "teacher_16", "wrong_prompt", "interferer_prompt",
               "no_separation")


def region_features(mixture: np.ndarray, estimate: np.ndarray, config: JudgeConfig) -> list[float]:
    """Per frequency region: energy share (dB), indecision (dB), decided share, mean mask, time flux (dB)."""
    power, mask = bin_mask(mixture, estimate, config)
    total = max(float(power.sum()), 1e-12)
    frequencies = np.arange(power.shape[1]) * config.sample_rate / config.n_fft
    edges = (0.0, *REGION_EDGES_HZ, np.inf)
    row = []
    for low, high in itertools.pairwise(edges):
        inside = (frequencies >= low) & (frequencies < high)
        region, region_mask = power[:, inside], mask[:, inside]
        share = region / max(float(region.sum()), 1e-12)
        flux = (0.5 * (share[1:] + share[:-1]) * np.abs(np.diff(region_mask, axis=0))).sum()
        row += [10 * np.log10(region.sum() / total + 1e-9),
                10 * np.log10((share * region_mask * (1 - region_mask)).sum() + 1e-9),
                float((share * (region_mask > 0.9)).sum()), float((share * region_mask).sum()),
                10 * np.log10(flux + 1e-9)]
    return row


def remade_features(arguments, stored: JudgeSet, config: JudgeConfig) -> np.ndarray:
    from samstream.models.data.captions import CLASSES

    if arguments.train:
        seed = arguments.seed + CONSISTENCY_SEED_OFFSET
        mixtures = judge_mixtures(arguments.data, "train", arguments.train, seed)
    else:
        seed = HELD_OUT_SEPARATION_SEED
        mixtures = judge_mixtures(arguments.data, "validation", arguments.held_out, 0)
    separations = Separations(DEFAULT_MODEL_DIR, TextEncoder.load(), sorted(CLASSES), seed=seed)
    rows, kinds, scores, started = [], [], [], time.time()
    for number, item in enumerate(mixtures):
        estimates = separations.estimates(item, heavy=number % 2 == 0)
        for window in labelled_windows(item, config):
            for kind, estimate in estimates.items():
                rows.append(region_features(item.mixture[window], estimate[window], config))
                kinds.append(kind)
                scores.append(window_label(estimate[window], item.target[window], config))
        if (number + 1) % 10 == 0:
            print(f"{number + 1} mixtures, {len(rows)} rows, {time.time() - started:.0f} s", flush=True)
    if len(kinds) != len(stored.kind) or not (np.array(kinds) == stored.kind).all() \
            or np.abs(np.array(scores) - stored.score_db).max() > 1e-3:
        raise SystemExit("the remade estimates do not match the set row for row: another model or corpus?")
    return np.array(rows, np.float32)


def cross_validated(features: np.ndarray, data: JudgeSet, repeats: int = 3) -> tuple[float, float]:
    from sklearn.ensemble import HistGradientBoostingRegressor

    truth, mixtures = data.score_db, np.unique(data.mixture_id)
    issue = np.isin(data.kind, ISSUE_KINDS)
    every, named = [], []
    for repeat in range(repeats):
        predicted = np.zeros(len(truth))
        for fold in np.array_split(np.random.default_rng(repeat).permutation(mixtures), 5):
            test = np.isin(data.mixture_id, fold)
            trees = HistGradientBoostingRegressor(max_iter=200, learning_rate=0.05, max_leaf_nodes=15,
                                                  l2_regularization=1.0, random_state=0)
            trees.fit(features[~test], truth[~test])
            predicted[test] = trees.predict(features[test])
        every.append(spearman(predicted, truth))
        named.append(spearman(predicted[issue], truth[issue]))
    return float(np.mean(every)), float(np.mean(named))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/corpus")
    parser.add_argument("--sets", default="runs/judge")
    parser.add_argument("--held-out", type=int, default=2, help="the held-out set's mixtures per class")
    parser.add_argument("--train", type=int, default=0, help="a training set's mixture count instead")
    parser.add_argument("--seed", type=int, default=0, help="the training set's seed")
    parser.add_argument("--cross-validate", action="store_true")
    arguments = parser.parse_args()
    use_one_thread()
    name = consistency_set_name(arguments.train, arguments.seed) if arguments.train \
        else f"held_out_consistency_{arguments.held_out}"
    path = Path(arguments.sets) / f"{name}.npz"
    if not path.is_file():
        raise SystemExit(f"{path}: missing; build it first with `samstream judge train` or `judge eval`")
    stored = JudgeSet.load(path)
    out = path.with_name(f"{name}_regions.npy")
    features = np.load(out) if out.is_file() else remade_features(arguments, stored, JudgeConfig())
    np.save(out, features)
    print(f"{features.shape[1]} candidate features for {len(features)} rows: {out}")
    if arguments.cross_validate:
        for label, columns in (("the set's scalars", stored.consistency),
                               ("with the candidates", np.column_stack((stored.consistency, features)))):
            every, named = cross_validated(columns, stored)
            print(f"{label}: Spearman {every:+.3f} over every estimate, {named:+.3f} over the issue's kinds")


if __name__ == "__main__":
    main()
