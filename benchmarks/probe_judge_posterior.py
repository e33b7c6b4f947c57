"""Probe: does the separator's own uncertainty tell the judge how hard a window is?

The one-step output is trained towards the conditional mean of the mask. Where the true
mask is close to 0 or 1, a calibrated mean m leaves an expected squared error of m(1 - m)
per bin, so sum |X|^2 m(1 - m) estimates the error of the model's own estimate without the
reference, and for any estimate E the expected error is |E - mX|^2 summed, plus that.
This script computes those quantities on the held-out validation windows beside the
shipped judge's score and the true SI-SDR, and writes them to an npz for analysis.

    python benchmarks/probe_judge_posterior.py --per-class 2 --out runs/probe.npz
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from samstream.models.config import JudgeConfig
from samstream.models.judge import (
    FEATURE_SCALE_DB,
    Judge,
    Reseparator,
    mixture_posterior,
    posterior_features,
    reseparation_gain,
    window_starts,
)
from samstream.models.judge_train import Separations, use_one_thread
from samstream.models.metrics import si_sdr
from samstream.models.text_encoder import TextEncoder
from samstream.plugin_host.judge_cli import judge_mixtures


def posterior_figures(mixture: np.ndarray, estimates: dict[str, np.ndarray], embedding: np.ndarray,
                      reseparator: Reseparator, config: JudgeConfig) -> dict[str, np.ndarray]:
    """kind -> the judge's ``POSTERIOR_NAMES`` of that estimate, in dB."""
    posterior = mixture_posterior(mixture, embedding, reseparator, config)
    gain = reseparation_gain(mixture)
    return {kind: FEATURE_SCALE_DB * posterior_features(posterior, estimate * gain)
            for kind, estimate in estimates.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=2)
    parser.add_argument("--data", default="data/corpus")
    parser.add_argument("--heavy-every", type=int, default=2)
    parser.add_argument("--out", default="runs/probe_judge_posterior.npz")
    arguments = parser.parse_args()
    use_one_thread()
    encoder = TextEncoder.load()
    judge = Judge()
    reseparator = judge.reseparator
    from samstream.models.data.captions import CLASSES
    from samstream.models.separate import DEFAULT_MODEL_DIR
    separations = Separations(DEFAULT_MODEL_DIR, encoder, sorted(CLASSES), seed=1)
    config = JudgeConfig()
    rows = {"truth": [], "judge": [], "posterior": [], "kind": [], "window": [], "mixture": []}
    started = time.time()
    for number, item in enumerate(judge_mixtures(arguments.data, "validation", arguments.per_class, 0)):
        estimates = separations.estimates(item, heavy=number % arguments.heavy_every == 0)
        embedding = encoder.encode(item.caption)
        for start in window_starts(len(item.mixture), config):
            window = slice(start, start + config.window_samples)
            target, mixture = item.target[window], item.mixture[window]
            if len(mixture) < config.window_samples or np.sum(target ** 2) < 1e-5 * np.sum(mixture ** 2):
                continue
            cut = {kind: estimate[window] for kind, estimate in estimates.items()}
            posterior = posterior_figures(mixture, cut, embedding, reseparator, config)
            for kind, estimate in cut.items():
                rows["truth"].append(np.clip(si_sdr(estimate, target), -30, 30))
                rows["judge"].append(judge.judge(mixture, estimate, embedding).score_db)
                rows["posterior"].append(posterior[kind])
                rows["kind"].append(kind)
                rows["window"].append(number * 100 + start // config.hop)
                rows["mixture"].append(number)
        if (number + 1) % 10 == 0:
            print(f"{number + 1} mixtures, {len(rows['truth'])} estimates, {time.time() - started:.0f} s", flush=True)
    Path(arguments.out).parent.mkdir(parents=True, exist_ok=True)
    np.savez(arguments.out, **{key: np.array(value) for key, value in rows.items()})
    print(f"wrote {arguments.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
