"""The visual prompt's held-out figures: ``python -m samstream.plugin_host.bench_visual [--out DIR]``.

For each validation mixture of the benchmark protocol (a target and an interferer with
their references), a synthetic clip is drawn (``models.data.av_clips``: one object per
source, shaking with it, plus distractors) and the mixture is separated offline five ways:

- ``text``: the caption alone (the baseline);
- ``visual``: the box on the target's object alone;
- ``wrong box``: the box on the interferer's object alone;
- ``text+visual``: both;
- ``text+wrong box``: the caption with the box on the interferer's object.

It reports the target's SI-SDR improvement for each, the gain of text + visual over text,
and right box against wrong box, with and without the caption (a model that uses the
picture must do worse with the wrong box), per class and on average, in ``DIR/report.md`` and ``DIR/results.json``.
These are issue 8's held-out figures once a model is trained with visual prompts; on a
model that was not (``prompt.visual_trained`` false), they show that the box does nothing.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

CONDITIONS = ("text", "visual", "wrong box", "text+visual", "text+wrong box")


def separate_conditions(mixture, model_dir: Path, embedding: np.ndarray, steps: int | None, seed: int,
                        clip_seed: int) -> dict[str, np.ndarray]:
    """The five separations of one mixture: condition -> target estimate (n,)."""
    from samstream.models.data.av_clips import clip_visual_frames, render_av_clip
    from samstream.models.runtime import load_serving_config
    from samstream.models.separate import separate

    config, _ = load_serving_config(model_dir)
    rate = config.stft.sample_rate
    clip = render_av_clip([mixture.target, mixture.interferer], rate, np.random.default_rng(clip_seed))
    right, wrong = clip_visual_frames(clip, 0, config), clip_visual_frames(clip, 1, config)
    prompts = {"text": (embedding, None), "visual": (None, right), "wrong box": (None, wrong),
               "text+visual": (embedding, right), "text+wrong box": (embedding, wrong)}
    audio = mixture.mixture[None].astype(np.float32)
    return {name: separate(audio, rate, text, visual=visual, steps=steps, model_dir=model_dir, seed=seed,
                           stream=False).target[0]
            for name, (text, visual) in prompts.items()}


def run_visual_bench(model_dir: Path, index: Path, per_class: int = 2, steps: int | None = None,
                     seed: int = 0) -> dict:
    from samstream.models.metrics import si_sdr
    from samstream.models.runtime import load_serving_config
    from samstream.models.text_encoder import TextEncoder

    from .bench_report import load_mixture, read_index

    config, _ = load_serving_config(model_dir)
    encoder = TextEncoder.load()
    rows = []
    for number, item in enumerate(read_index(index, per_class)):
        mixture = load_mixture(index.parent, item, config.stft.sample_rate)
        estimates = separate_conditions(mixture, model_dir, encoder.encode(item["caption"]), steps, seed,
                                        clip_seed=number)
        reference = mixture.target.astype(np.float64)
        baseline = si_sdr(mixture.mixture.astype(np.float64), reference)
        rows.append({"name": mixture.name, "target_class": mixture.target_class, "caption": item["caption"],
                     **{name: si_sdr(estimate.astype(np.float64), reference) - baseline
                        for name, estimate in estimates.items()}})
    return summarise(rows, config.prompt.visual_trained, str(model_dir))


def summarise(rows: list[dict], visual_trained: bool, model: str) -> dict:
    classes = defaultdict(list)
    for row in rows:
        classes[row["target_class"]].append(row)

    def means(group: list[dict]) -> dict:
        values = {name: float(np.mean([row[name] for row in group])) for name in CONDITIONS}
        values["text+visual - text"] = values["text+visual"] - values["text"]
        values["right box - wrong box"] = values["text+visual"] - values["text+wrong box"]
        values["visual: right - wrong box"] = values["visual"] - values["wrong box"]
        return values

    return {"model": model, "visual_trained": visual_trained, "mixtures": len(rows), "mean": means(rows),
            "per_class": {name: means(group) for name, group in sorted(classes.items())}, "rows": rows}


def report_lines(results: dict) -> list[str]:
    columns = [*CONDITIONS, "text+visual - text", "right box - wrong box", "visual: right - wrong box"]
    lines = ["# Visual prompt: held-out SI-SDR improvement of the target (dB)", "",
             f"Model `{results['model']}`, {results['mixtures']} validation mixtures, a synthetic clip each "
             "(one object per source and two distractors), offline separation.", ""]
    if not results["visual_trained"]:
        lines += ["**This model was not trained with visual prompts** (`prompt.visual_trained` is false): "
                  "these figures show only that the box does not steer it.", ""]
    lines += ["| class | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, values in [*results["per_class"].items(), ("**mean**", results["mean"])]:
        lines.append(f"| {name} | " + " | ".join(f"{values[column]:+.2f}" for column in columns) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    from .bench_report import index_path

    parser = argparse.ArgumentParser(prog="python -m samstream.plugin_host.bench_visual",
                                     description="held-out figures of the visual prompt")
    parser.add_argument("--data", default="data/corpus", help="corpus folder with validation/index.jsonl")
    parser.add_argument("--folder", help="a folder of mixtures with references instead (F/index.jsonl)")
    parser.add_argument("--model", help="serving folder (default: the bundled model)")
    parser.add_argument("--per-class", type=int, default=2, help="mixtures per target class (0: all)")
    parser.add_argument("--steps", type=int, help="flow steps (default: the fewest the model has)")
    parser.add_argument("--out", default="bench_out/visual", help="folder for report.md and results.json")
    arguments = parser.parse_args(argv)
    try:
        from samstream.models.separate import DEFAULT_MODEL_DIR

        model_dir = Path(arguments.model) if arguments.model else DEFAULT_MODEL_DIR
        results = run_visual_bench(model_dir, index_path(arguments.data, arguments.folder), arguments.per_class,
                                   arguments.steps)
    except (ValueError, OSError) as error:
        print(f"bench_visual: {error}", file=sys.stderr)
        return 1
    out = Path(arguments.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = report_lines(results)
    (out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
