"""How much better a checkpoint separates the sources it trained on than unseen ones.

Usage: python benchmarks/fit_gap.py [CHECKPOINT] [--per-class 2]

Draws benchmark-protocol mixtures (one interferer, 6 s, -24 dBFS, dry) from the training
split's sources and, with the same seeds, from the validation split's, prompts each with
its target's caption and separates it in torch at one step. A model that separates its own
sources much better overfits them; one that does about as well on both is short of
capacity or of training.
"""
from __future__ import annotations

import argparse
import time
import zlib
from collections import defaultdict
from dataclasses import replace

import numpy as np


def main() -> None:
    import torch

    from samstream.models.data.manifest import read_manifest
    from samstream.models.data.mixtures import PROTOCOL, MixtureSampler
    from samstream.models.text_encoder import TextEncoder
    from samstream.models.train import Teacher
    from samstream.plugin_host.bench_report import improvements

    parser = argparse.ArgumentParser()
    parser.add_argument("checkpoint", nargs="?", default="models/default")
    parser.add_argument("--data", default="data/corpus")
    parser.add_argument("--per-class", type=int, default=2)
    arguments = parser.parse_args()
    torch.set_num_threads(1)
    entries = read_manifest(f"{arguments.data}/manifest.jsonl")
    encoder, model = TextEncoder.load(), Teacher(arguments.checkpoint, steps=1)
    for split in ("train", "val"):
        sampler = MixtureSampler(entries, arguments.data, replace(PROTOCOL, split=split), seed=7)
        per_class, started = defaultdict(list), time.time()
        for name in sampler.classes:
            for number in range(arguments.per_class):
                mixture = sampler.sample(number * 1000 + zlib.crc32(name.encode()) % 997, target_class=name)
                with torch.no_grad():
                    estimate = model.separate(mixture.mixture, encoder.encode(mixture.caption), seed=number)
                per_class[name].append(improvements(estimate, mixture.target, mixture.mixture))
        rows = np.array([row for rows in per_class.values() for row in rows])
        print(f"{arguments.checkpoint} {split} sources, n={len(rows)}: extract {rows[:, 0].mean():+.2f} "
              f"remove {rows[:, 1].mean():+.2f} [{time.time() - started:.0f} s]", flush=True)


if __name__ == "__main__":
    main()
