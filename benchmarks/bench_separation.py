"""Separation quality on the fixed validation set, per class, beside the oracle-mask ceiling.

Usage: python benchmarks/bench_separation.py [--root data/corpus] [--model models/default]
                                             [--per-class 2] [--streamed 6] [--out bench_out/separation]

Every mixture is prompted with its target's caption. For 1 and 2 flow steps it reports the
SI-SDR improvement of the target (extract) and of the residual (remove) by the offline
path, the ideal-ratio-mask ceiling at the model's STFT, and, on the first ``--streamed``
mixtures, the difference between the live path and the offline path. `samstream bench` is the
full report (teacher, SDR, baselines, compute, plots); this script stays for the int8 comparison.
"""
from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from samstream.plugin_host.bench_report import improvements, oracle_ratio_mask


def main() -> None:
    from samstream.models.runtime import load_serving_config
    from samstream.models.separate import separate
    from samstream.models.text_encoder import TextEncoder
    from samstream.plugin_host.audio_files import read_audio

    parser = argparse.ArgumentParser()
    parser.add_argument("--root", default="data/corpus")
    parser.add_argument("--model", default="models/default")
    parser.add_argument("--per-class", type=int, default=2)
    parser.add_argument("--streamed", type=int, default=6)
    parser.add_argument("--out", default="bench_out/separation")
    parser.add_argument("--variant", choices=("fp32", "int8"), default="fp32",
                        help="int8: also stream every mixture with the quantised hop graph and compare")
    arguments = parser.parse_args()
    folder = Path(arguments.root) / "validation"
    items = [json.loads(line) for line in (folder / "index.jsonl").read_text().splitlines() if line.strip()]
    taken: dict[str, int] = defaultdict(int)
    chosen = []
    for item in items:
        if taken[item["target_class"]] < arguments.per_class:
            taken[item["target_class"]] += 1
            chosen.append(item)
    config, _ = load_serving_config(Path(arguments.model))
    encoder = TextEncoder.load()
    rows = []
    started = time.time()
    for position, item in enumerate(chosen):
        mixture = read_audio(folder / item["mixture"])[0][0]
        target = read_audio(folder / item["target"])[0][0]
        interferer = read_audio(folder / item["interferer"])[0][0]
        row = {"class": item["target_class"], "caption": item["caption"], "interferer": item["interferer_class"]}
        row["oracle_irm"] = improvements(oracle_ratio_mask(target, interferer, config.stft.n_fft, config.stft.hop),
                                         target, mixture)
        embedding = encoder.encode(item["caption"])
        for steps in (1, 2):
            offline = separate(mixture[None], 48000, embedding, steps=steps, model_dir=Path(arguments.model),
                               stream=False)
            row[f"offline_{steps}"] = improvements(offline.target[0], target, mixture)
            if position < arguments.streamed or arguments.variant == "int8":
                live = separate(mixture[None], 48000, embedding, steps=steps, model_dir=Path(arguments.model))
                row[f"streamed_{steps}"] = improvements(live.target[0], target, mixture)
            if arguments.variant == "int8":
                quantised = separate(mixture[None], 48000, embedding, steps=steps, model_dir=Path(arguments.model),
                                     variant="int8")
                row[f"int8_{steps}"] = improvements(quantised.target[0], target, mixture)
        rows.append(row)
    write_report(rows, Path(arguments.out), time.time() - started, arguments)


def write_report(rows: list[dict], out: Path, seconds: float, arguments) -> None:
    out.mkdir(parents=True, exist_ok=True)
    columns = ["offline_1", "offline_2", "oracle_irm"]
    by_class: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_class[row["class"]].append(row)
    summary = {name: {column: np.mean([row[column] for row in group], axis=0).round(2).tolist()
                      for column in columns} for name, group in sorted(by_class.items())}
    means = {column: np.mean([row[column] for row in rows], axis=0).round(2).tolist() for column in columns}
    int8 = {steps: {"int8": np.mean([row[f"int8_{steps}"] for row in rows], axis=0).round(2).tolist(),
                    "fp32": np.mean([row[f"streamed_{steps}"] for row in rows], axis=0).round(2).tolist()}
            for steps in (1, 2) if f"int8_{steps}" in rows[0]}
    gaps = {steps: float(np.mean([abs(row[f"streamed_{steps}"][0] - row[f"offline_{steps}"][0])
                                  for row in rows if f"streamed_{steps}" in row] or [np.nan]))
            for steps in (1, 2)}
    (out / "results.json").write_text(json.dumps({"mean": means, "per_class": summary, "rows": rows,
                                                  "streamed_vs_offline_db": gaps, "int8_vs_fp32": int8,
                                                  "seconds": seconds,
                                                  "model": arguments.model}, indent=1) + "\n")
    lines = [f"# Separation on the validation set ({len(rows)} mixtures, {arguments.per_class} per class)", "",
             "SI-SDR improvement in dB, extract / remove. Prompt: the target's caption.", "",
             "| class | 1 step | 2 steps | oracle IRM |", "|---|---|---|---|"]
    for name, figures in summary.items():
        lines.append(f"| {name} | " + " | ".join(f"{a:+.1f} / {b:+.1f}" for a, b in
                                                 (figures[column] for column in columns)) + " |")
    lines.append("| **mean** | " + " | ".join(f"{a:+.2f} / {b:+.2f}" for a, b in (means[c] for c in columns)) + " |")
    lines += ["", f"Live path against offline path, mean |difference| of extract SI-SDRi: "
              f"1 step {gaps[1]:.3f} dB, 2 steps {gaps[2]:.3f} dB."]
    for steps, figures in int8.items():
        quantised, reference = figures["int8"], figures["fp32"]
        lines.append(f"int8 hop graph, {steps} step(s), streamed: {quantised[0]:+.2f} / {quantised[1]:+.2f} "
                     f"against float32 {reference[0]:+.2f} / {reference[1]:+.2f}.")
    lines.append(f"Took {seconds:.0f} s.")
    (out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
