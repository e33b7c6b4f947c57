"""Benchmark: does re-ranking noise seeds (`samstream separate --candidates K`) keep a better separation?

Each held-out validation mixture is separated with K seeds at S steps. For each candidate
the true SI-SDR (against the reference) is set beside two reference-free rankings: the judge's
score, and the separator's posterior alone (``Judgement.posterior_sdr_db``: the candidate's
distance from the one-step conditional mean, plus the model's own uncertainty). Reported: the
mean true SI-SDR of the candidate each ranking keeps, beside the first seed (no re-ranking),
the best and the worst candidate; and how often each ranking keeps the best.

    python benchmarks/bench_candidates.py --per-class 1 --candidates 3 --steps 2
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from samstream.models.judge import Judge
from samstream.models.judge_train import use_one_thread
from samstream.models.metrics import si_sdr
from samstream.models.separate import separate
from samstream.models.text_encoder import TextEncoder
from samstream.plugin_host.judge_cli import judge_mixtures

RANKINGS = ("judge", "posterior")


def summary(truth: np.ndarray, rankings: dict[str, np.ndarray]) -> dict:
    """(mixtures, K) true SI-SDR and each ranking's scores -> the figures of the kept candidates."""
    rows = np.arange(len(truth))
    best = truth.max(axis=1)
    figures = {"mixtures": len(truth), "first_seed_db": float(truth[:, 0].mean()), "best_db": float(best.mean()),
               "worst_db": float(truth.min(axis=1).mean())}
    for name, scores in rankings.items():
        kept = truth[rows, np.argmax(scores, axis=1)]
        figures[f"{name}_kept_db"] = float(kept.mean())
        figures[f"{name}_kept_best_share"] = float(np.mean(kept == best))
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/corpus")
    parser.add_argument("--per-class", type=int, default=1)
    parser.add_argument("--candidates", type=int, default=3)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--judge", help="judge folder (default: the bundled one)")
    parser.add_argument("--out", default="runs/bench_candidates.json")
    arguments = parser.parse_args()
    use_one_thread()
    encoder = TextEncoder.load()
    judge = Judge(Path(arguments.judge) if arguments.judge else None)
    if not judge.uses_posterior:
        raise SystemExit(f"{judge.folder}: this judge has no posterior features to rank by")
    truth, scores = [], {name: [] for name in RANKINGS}
    started = time.time()
    for number, item in enumerate(judge_mixtures(arguments.data, "validation", arguments.per_class, 0)):
        embedding = encoder.encode(item.caption)
        row, row_scores = [], {name: [] for name in RANKINGS}
        posteriors = judge.posteriors(item.mixture, embedding)
        for seed in range(arguments.candidates):
            target = separate(item.mixture[None], 48000, embedding, steps=arguments.steps, seed=seed,
                              stream=False).target[0]
            judgement = judge.judge(item.mixture, target, embedding, posteriors)
            row.append(si_sdr(target, item.target))
            row_scores["judge"].append(judgement.score_db)
            row_scores["posterior"].append(judgement.posterior_sdr_db)
        truth.append(row)
        for name in RANKINGS:
            scores[name].append(row_scores[name])
        if (number + 1) % 10 == 0:
            print(f"{number + 1} mixtures, {time.time() - started:.0f} s", flush=True)
    figures = summary(np.array(truth), {name: np.array(value) for name, value in scores.items()})
    figures |= {"candidates": arguments.candidates, "steps": arguments.steps}
    Path(arguments.out).parent.mkdir(parents=True, exist_ok=True)
    Path(arguments.out).write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
