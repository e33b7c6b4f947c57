"""Probe: what limits the judge? Its figures on cached sets, against what it would reach if it
knew how loud the prompted source is in each window.

A window's true SI-SDR is, to first order, the target's share of the mixture in that window (the
input SNR, which the set holds for every window: the SI-SDR of its ``no_separation`` row) plus
what the estimate gains over the mixture. This script fits gradient-boosted trees (needs
scikit-learn) on the training sets' band score and scalars, and scores the held-out set:

- with the judge's own inputs alone;
- with the true input SNR added (a ceiling no reference-free judge reaches);
- with the true input SNR blurred by Gaussian noise of a few dB per window, independent of the
  judge's inputs: the value of a second, independent estimate of it.

It also prints how well the judge's inputs estimate the input SNR, and how well the separator's
posterior alone does.

    python benchmarks/probe_judge_ceiling.py --train runs/judge/consistency_160_0.npz \\
        --train runs/judge/consistency_120_1.npz --held-out runs/judge/held_out_consistency_2.npz
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from samstream.models.judge import DEFAULT_JUDGE_DIR, POSTERIOR_NAMES, WITH_POSTERIOR
from samstream.models.judge_net import load_judge
from samstream.models.judge_train import JudgeSet, frozen_scores, predict
from samstream.models.metrics import spearman

EXPECTED_TARGET = len(WITH_POSTERIOR) - len(POSTERIOR_NAMES) + POSTERIOR_NAMES.index("expected_target")


def input_snr(data: JudgeSet) -> np.ndarray:
    """Each row's window input SNR: the true SI-SDR of that window's mixture as its estimate."""
    rows = {window: row for row, (window, kind) in enumerate(zip(data.window_id, data.kind, strict=True))
            if kind == "no_separation"}
    missing = set(data.window_id.tolist()) - set(rows)
    if missing:
        raise ValueError(f"{len(missing)} windows have no no_separation row: not a judge set")
    return data.score_db[[rows[window] for window in data.window_id]]


def trees(inputs: np.ndarray, labels: np.ndarray):
    from sklearn.ensemble import HistGradientBoostingRegressor

    return HistGradientBoostingRegressor(learning_rate=0.03, max_iter=800, min_samples_leaf=60,
                                         loss="absolute_error", random_state=0).fit(inputs, labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", action="append", required=True, help="a cached consistency set (repeatable)")
    parser.add_argument("--held-out", required=True, help="the cached held-out set")
    parser.add_argument("--judge", default=str(DEFAULT_JUDGE_DIR))
    parser.add_argument("--noise-db", type=float, nargs="*", default=[2.0, 4.0, 6.0])
    arguments = parser.parse_args()
    model = load_judge(Path(arguments.judge))
    wanted = model.config.consistency_features

    def inputs(data: JudgeSet) -> np.ndarray:
        return np.column_stack([frozen_scores(model, data).numpy(), data.consistency[:, :wanted]])

    train = JudgeSet.join([JudgeSet.load(Path(path)) for path in arguments.train])
    held = JudgeSet.load(Path(arguments.held_out))
    train_inputs, held_inputs = inputs(train), inputs(held)
    train_snr, held_snr = input_snr(train), input_snr(held)
    truth, windows = held.score_db, held.kind == "no_separation"

    def with_snr(train_extra: np.ndarray | None, held_extra: np.ndarray | None) -> float:
        """Held-out Spearman of trees fitted on the judge's inputs, and an input SNR column if given."""
        if train_extra is None:
            return spearman(trees(train_inputs, train.score_db).predict(held_inputs), truth)
        fitted = trees(np.column_stack([train_inputs, train_extra]), train.score_db)
        return spearman(fitted.predict(np.column_stack([held_inputs, held_extra])), truth)

    print(f"{len(train.score_db)} training rows; {len(truth)} held-out rows of {int(windows.sum())} windows")
    print(f"the judge itself:                     {spearman(predict(model, held), truth):+.3f}")
    print(f"trees on its inputs:                  {with_snr(None, None):+.3f}")
    print(f"trees on its inputs + true input SNR: {with_snr(train_snr, held_snr):+.3f}")
    rng = np.random.default_rng(0)

    def blurred(snr: np.ndarray, window_ids: np.ndarray, noise_db: float) -> np.ndarray:
        unique, inverse = np.unique(window_ids, return_inverse=True)
        return snr + rng.normal(0.0, noise_db, len(unique))[inverse]
    for noise in arguments.noise_db:
        train_blur, held_blur = blurred(train_snr, train.window_id, noise), blurred(held_snr, held.window_id, noise)
        alone = spearman(held_blur[windows], held_snr[windows])
        print(f"  + the input SNR blurred by {noise:.0f} dB (alone {alone:+.3f}): "
              f"{with_snr(train_blur, held_blur):+.3f}")
    estimated = trees(train_inputs, train_snr).predict(held_inputs)
    print(f"input SNR from the judge's inputs:    {spearman(estimated[windows], held_snr[windows]):+.3f}")
    if wanted >= len(WITH_POSTERIOR):
        posterior = held.consistency[windows, EXPECTED_TARGET]
        print(f"input SNR from the posterior alone:   {spearman(posterior, held_snr[windows]):+.3f}")

if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
