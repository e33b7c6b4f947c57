"""Separation quality against the input level: the same validation mixtures, each scaled to
a set of RMS levels before the model hears it.

Usage: python benchmarks/bench_level.py [--data data/corpus] [--model models/default]
                                        [--per-class 1] [--levels -54,-44,-34,-24,-14]

The model's masks depend on the level of what it hears (its features are compressed
magnitudes, and training drew mixture levels from -32 to -12 dBFS), so a quiet input is
separated less. This prints the mean SI-SDR improvement, extract / remove, per level, by
the offline path at one step (SI-SDR is blind to the scale, so only the model's view
changes). The serving path's input level (``kernels.level``) stands in front of the model;
to measure without it, point ``--model`` at a copy of the serving folder whose config.json
sets ``input_level.enabled`` to false.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main() -> None:
    from samstream.models.separate import separate
    from samstream.models.text_encoder import TextEncoder
    from samstream.plugin_host.bench_report import improvements
    from samstream.plugin_host.judge_cli import judge_mixtures

    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="data/corpus")
    parser.add_argument("--model", default="models/default")
    parser.add_argument("--per-class", type=int, default=1)
    parser.add_argument("--levels", default="-54,-44,-34,-24,-14", help="mixture RMS levels, dBFS")
    arguments = parser.parse_args()
    encoder = TextEncoder.load()
    items = list(judge_mixtures(arguments.data, "validation", arguments.per_class, 0))
    print(f"{len(items)} validation mixtures, 1 step, offline; SI-SDRi extract / remove")
    for level in (float(value) for value in arguments.levels.split(",")):
        figures = []
        for item in items:
            gain = 10.0 ** (level / 20.0) / max(float(np.sqrt(np.mean(item.mixture ** 2))), 1e-9)
            mixture, target = item.mixture * np.float32(gain), item.target * np.float32(gain)
            estimate = separate(mixture[None], 48000, encoder.encode(item.caption), steps=1, stream=False,
                                model_dir=Path(arguments.model)).target[0]
            figures.append(improvements(estimate, target, mixture))
        extract, remove = np.mean(figures, axis=0)
        print(f"{level:+6.1f} dBFS: {extract:+6.2f} / {remove:+6.2f} dB", flush=True)


if __name__ == "__main__":
    main()
