"""A training checkpoint's separation on the validation set, in torch, without exporting it.

Usage: python benchmarks/eval_checkpoint.py CHECKPOINT [CHECKPOINT ...] [--per-class 2] [--steps 1 2]
                                            [--prompt caption|none|interferer] [--per-class-table]
                                            [--loudness] [--levels -44 -24] [--oracle]

Each mixture is separated as the ONNX offline path separates it (the same noise per
mixture), so the figures agree with ``benchmarks/bench_separation.py`` on an exported
copy to about 0.01 dB; this is the quick check along a training run. ``--prompt``
none or interferer measures whether the caption steers the model; ``--loudness`` reports
how well the model's own output tells how loud the target is in the mixture: the Spearman
between the energy ratio of its target and residual and the mixture's true
target-to-interferer ratio, the ceiling of a reference-free judge built on it. ``--levels``
scales every mixture (and its references) to each mixture RMS in turn, dBFS: the protocol's
level is -24. ``--oracle`` puts the ideal ratio mask at the checkpoint's STFT (the ceiling)
beside each class and the mean.
"""
from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path

import numpy as np


def at_level(mixture, level_db: float):
    """The mixture and its references scaled together so that the mixture's RMS is ``level_db``."""
    from dataclasses import replace

    gain = np.float32(10.0 ** (level_db / 20.0) / max(float(np.sqrt(np.mean(mixture.mixture ** 2))), 1e-9))
    return replace(mixture, mixture=mixture.mixture * gain, target=mixture.target * gain,
                   interferer=mixture.interferer * gain)


def main() -> None:
    import torch
    from scipy.stats import spearmanr

    from samstream.models.checkpoint import load_config
    from samstream.models.text_encoder import TextEncoder
    from samstream.models.train import Teacher
    from samstream.plugin_host.bench_report import improvements, index_path, load_mixture, oracle_ratio_mask, read_index

    parser = argparse.ArgumentParser()
    parser.add_argument("checkpoints", nargs="+", help="folders of config.json + model.safetensors")
    parser.add_argument("--data", default="data/corpus")
    parser.add_argument("--per-class", type=int, default=2)
    parser.add_argument("--steps", type=int, nargs="+", default=[1])
    parser.add_argument("--prompt", choices=("caption", "none", "interferer"), default="caption")
    parser.add_argument("--per-class-table", action="store_true")
    parser.add_argument("--classes", nargs="+", help="only these target classes")
    parser.add_argument("--per-item", action="store_true",
                        help="one line per mixture: class, caption, target file, interferer, extract / remove")
    parser.add_argument("--loudness", action="store_true")
    parser.add_argument("--levels", type=float, nargs="+", default=[None],
                        help="mixture RMS levels to scale to, dBFS (default: as the set has them)")
    parser.add_argument("--oracle", action="store_true",
                        help="the ideal ratio mask at the same STFT beside each class and the mean")
    arguments = parser.parse_args()
    torch.set_num_threads(1)
    index = index_path(arguments.data, None)
    items = [item for item in read_index(index, arguments.per_class)
             if not arguments.classes or item["target_class"] in arguments.classes]
    encoder = TextEncoder.load()
    caption_of_class = {}
    for item in read_index(index, 0):
        caption_of_class.setdefault(item["target_class"], item["caption"])

    def embedding(item: dict) -> np.ndarray | None:
        if arguments.prompt == "none":
            return None
        return encoder.encode(item["caption"] if arguments.prompt == "caption"
                              else caption_of_class.get(item["interferer_class"], item["interferer_class"]))

    for path in arguments.checkpoints:
        config = load_config(Path(path))
        mixtures = [load_mixture(index.parent, item, config.stft.sample_rate) for item in items]
        oracle = defaultdict(list)
        if arguments.oracle:
            for item, mixture in zip(items, mixtures, strict=True):
                ceiling = oracle_ratio_mask(mixture.target, mixture.interferer, config.stft.n_fft, config.stft.hop)
                oracle[item["target_class"]].append(improvements(ceiling, mixture.target, mixture.mixture))
            everything = np.mean([row for rows in oracle.values() for row in rows], axis=0)
            print(f"   oracle IRM (n_fft {config.stft.n_fft}, hop {config.stft.hop}): extract {everything[0]:+.2f} "
                  f"remove {everything[1]:+.2f}")
        for steps, level in ((steps, level) for steps in arguments.steps for level in arguments.levels):
            model = Teacher(Path(path), steps=steps)  # the torch path, at this many steps
            started, per_class, loudness = time.time(), defaultdict(list), []
            for number, (item, mixture) in enumerate(zip(items, mixtures, strict=True)):
                if level is not None:
                    mixture = at_level(mixture, level)
                with torch.no_grad():
                    estimate = model.separate(mixture.mixture, embedding(item), seed=number)
                per_class[item["target_class"]].append(improvements(estimate, mixture.target, mixture.mixture))
                if arguments.per_item:
                    target_file = Path(item["sources"][0]["path"]).name.split(".")[0]
                    print(f"   {item['index']:4d} {item['target_class']:16s} {item['caption']!r:28s} "
                          f"{target_file:24s} {item['interferer_class']:16s} "
                          "{:+6.1f} / {:+6.1f}".format(*per_class[item["target_class"]][-1]))
                residual = mixture.mixture - estimate
                loudness.append((10 * np.log10(np.sum(estimate ** 2) / max(np.sum(residual ** 2), 1e-12)),
                                 10 * np.log10(np.sum(mixture.target ** 2) / np.sum(mixture.interferer ** 2))))
            mean = np.mean([row for rows in per_class.values() for row in rows], axis=0)
            at = "" if level is None else f" level={level:+.0f} dBFS"
            print(f"{path} steps={steps}{at} prompt={arguments.prompt} n={len(items)}: extract {mean[0]:+.2f} "
                  f"remove {mean[1]:+.2f} [{time.time() - started:.0f} s]", flush=True)
            if arguments.loudness:
                estimated, true = zip(*loudness, strict=True)
                print(f"   loudness: Spearman of the model's target/residual energy ratio with the true "
                      f"ratio {spearmanr(estimated, true)[0]:+.3f} over {len(loudness)} mixtures")
            if arguments.per_class_table:
                for name, rows in sorted(per_class.items()):
                    extract, remove = np.mean(rows, axis=0)
                    ceiling = "   oracle {:+.1f} / {:+.1f}".format(*np.mean(oracle[name], axis=0)) if oracle else ""
                    print(f"   {name:18s} {extract:+.1f} / {remove:+.1f}{ceiling}")


if __name__ == "__main__":
    main()
