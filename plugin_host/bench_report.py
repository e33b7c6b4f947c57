"""`samstream bench`: the separation report, on the corpus's validation set or on a folder of mixtures.

A folder of mixtures (``--folder F``) holds ``F/index.jsonl``, one JSON object a line:
``mixture``, ``target`` and ``interferer`` (audio files, paths relative to F; without
``interferer`` it is taken as mixture - target), ``target_class``, ``interferer_class`` and
``caption`` (the text prompt). The corpus's validation set, ``data/corpus/validation``
(``samstream data build``), is such a folder. Audio at another rate is resampled to the
model's and channels are averaged: the protocol is mono at the model's rate.

Each mixture is prompted with its caption. Scored, as SI-SDR and SDR improvement of the
target (extract) and of the residual (remove): the ideal ratio mask at the model's STFT
(the ceiling), the multi-step teacher (the torch network, ``flow.teacher_steps`` Euler
steps), the 1- and 2-step students offline and, on the first ``--streamed`` mixtures,
through the live path; and two classic baselines where they apply: spectral gating when
one source is a stationary noise, HPSS when a percussive source meets a harmonic one.
Nothing is written until everything is measured, and each file appears whole.
"""
from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from samstream.models.metrics import istft_frames, oracle_ratio_mask, sdr, si_sdr, spearman, stft_frames
from samstream.stream.hop_clock import HopTimes, time_hops

SCHEMA = "samstream-bench/1"
MODEL_METHODS = ("teacher", "offline_1", "offline_2", "streamed_1", "streamed_2")
METHODS = ("oracle_irm", "teacher", "offline_1", "offline_2", "streamed_1", "streamed_2", "spectral_gating", "hpss")
LABELS = {"oracle_irm": "oracle IRM", "teacher": "teacher", "offline_1": "1 step", "offline_2": "2 steps",
          "streamed_1": "1 step live", "streamed_2": "2 steps live", "spectral_gating": "spectral gating",
          "hpss": "HPSS"}
# Class names are matched word by word ("brown_noise" -> brown, noise), so "hum" never matches "human".
NOISE_WORDS = {"hum", "hiss", "noise", "wind", "rain", "static", "buzz", "hvac", "fan", "drone"}
PERCUSSIVE_WORDS = {"drum", "drums", "percussion", "percussive", "drumkit"}
HARMONIC_WORDS = {"guitar", "bass", "cello", "choir", "clarinet", "piano", "organ", "saxophone", "string", "strings",
                  "synth", "trombone", "trumpet", "violin", "flute", "speech", "vocal", "vocals", "voice",
                  "vocalization", "pad", "lead", "ensemble", "singing"}
WARM_UP_HOPS = 20  # the first ONNX Runtime calls plan memory: not what a running stream pays


def class_words(name: str) -> set[str]:
    return set(name.lower().replace("-", "_").replace(" ", "_").split("_"))


def is_noise(name: str) -> bool:
    return bool(class_words(name) & NOISE_WORDS)


def is_percussive(name: str) -> bool:
    return bool(class_words(name) & PERCUSSIVE_WORDS)


def is_harmonic(name: str) -> bool:
    return bool(class_words(name) & HARMONIC_WORDS) and not is_percussive(name)


# -- signals and metrics ---------------------------------------------------------------

def improvements(estimate: np.ndarray, target: np.ndarray, mixture: np.ndarray, metric=si_sdr) -> tuple[float, float]:
    """(extract, remove): the metric's gain over the mixture, of the target and of the residual."""
    residual = mixture - target
    extract = metric(estimate, target) - metric(mixture, target)
    remove = metric(mixture - estimate, residual) - metric(mixture, residual)
    return extract, remove


def spectral_gate(mixture: np.ndarray, n_fft: int, hop: int, quiet_fraction: float = 0.1,
                  over_subtraction: float = 2.0) -> np.ndarray:
    """The mixture with its stationary noise floor gated out (soft mask); the noise is what is left.

    The floor is the mean power of the quietest frames: where the other source pauses,
    only the stationary noise sounds. Frames that overlap the zero padding at either end
    are left out of that choice, or silence would pass for the floor. A noise bin's power
    scatters about the floor's mean, so the floor is subtracted twice over (3 dB): once
    over lets a third of a white noise's level through where nothing else sounds.
    """
    from scipy.ndimage import uniform_filter

    spectrum = stft_frames(mixture, n_fft, hop)
    power = np.abs(spectrum).astype(np.float64) ** 2
    edge = n_fft // hop
    inner = power[edge:-edge] if len(power) > 4 * edge else power
    quiet = np.argsort(inner.sum(axis=1))[:max(1, int(len(inner) * quiet_fraction))]
    floor = inner[quiet].mean(axis=0)
    gain = np.clip(1.0 - over_subtraction * floor / (power + 1e-12), 0.0, 1.0)
    # A gain smoothed over neighbouring frames and bins flickers less (less "musical noise").
    gain = uniform_filter(gain, size=(3, 3), mode="nearest")
    return istft_frames(spectrum * gain, n_fft, hop, len(mixture))


def hpss(mixture: np.ndarray, n_fft: int, hop: int, time_frames: int = 135, bins: int = 7) -> tuple[np.ndarray,
                                                                                                     np.ndarray]:
    """(harmonic, percussive) by median filtering (Fitzgerald 2010) with soft (Wiener) masks.

    A harmonic partial is steady along time, a hit is flat along frequency: the median
    across time keeps the first, the median across frequency the second. The two parts
    sum to the mixture exactly. The kernels are librosa's defaults (31 x 31 at 22.05 kHz,
    hop 512, n_fft 2048) in seconds and hertz: 0.72 s and 335 Hz, at 48 kHz, 1024/256.
    """
    from scipy.ndimage import median_filter

    spectrum = stft_frames(mixture, n_fft, hop)
    magnitude = np.abs(spectrum)
    harmonic = median_filter(magnitude, size=(time_frames, 1), mode="nearest").astype(np.float64) ** 2
    percussive = median_filter(magnitude, size=(1, bins), mode="nearest").astype(np.float64) ** 2
    mask = percussive / (harmonic + percussive + 1e-12)
    percussive_part = istft_frames(spectrum * mask, n_fft, hop, len(mixture))
    return mixture - percussive_part, percussive_part


def baseline_estimates(mixture: Mixture, n_fft: int, hop: int) -> dict[str, np.ndarray]:
    """The classic baselines' target estimates, for the mixtures each one is meant for."""
    estimates = {}
    target, interferer = mixture.target_class, mixture.interferer_class
    if is_noise(target) != is_noise(interferer):
        gated = spectral_gate(mixture.mixture, n_fft, hop)
        estimates["spectral_gating"] = mixture.mixture - gated if is_noise(target) else gated
    if (is_percussive(target) and is_harmonic(interferer)) or (is_harmonic(target) and is_percussive(interferer)):
        harmonic, percussive = hpss(mixture.mixture, n_fft, hop)
        estimates["hpss"] = percussive if is_percussive(target) else harmonic
    return estimates


# -- the set of mixtures ---------------------------------------------------------------

@dataclass
class Mixture:
    name: str
    target_class: str
    interferer_class: str
    caption: str
    mixture: np.ndarray  # (n,) float32 at the model's rate
    target: np.ndarray
    interferer: np.ndarray


def index_path(data: str, folder: str | None) -> Path:
    path = Path(folder) / "index.jsonl" if folder else Path(data) / "validation" / "index.jsonl"
    if not path.is_file():
        where = f"--folder {folder}" if folder else f"corpus {data}"
        raise ValueError(f"{where}: no {path} (run `samstream data build` for the validation set, or give "
                         f"--folder F with F/index.jsonl; or choose --kernels or --live)")
    return path


def read_index(path: Path, per_class: int) -> list[dict]:
    """The first ``per_class`` rows of each target class (0: all), in index order."""
    chosen, taken = [], defaultdict(int)
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            missing = [key for key in ("mixture", "target", "target_class", "caption") if key not in item]
        except (json.JSONDecodeError, TypeError):
            item, missing = None, ["a JSON object"]
        if not isinstance(item, dict) or missing:
            raise ValueError(f"{path}:{number}: not a mixture row (needs {', '.join(missing or ['an object'])})")
        if not per_class or taken[item["target_class"]] < per_class:
            taken[item["target_class"]] += 1
            chosen.append(item)
    if not chosen:
        raise ValueError(f"{path}: no mixtures listed")
    return chosen


def load_mixture(folder: Path, item: dict, rate: int) -> Mixture:
    from samstream.models.separate import change_rate
    from samstream.plugin_host.audio_files import read_audio

    def mono(name: str) -> np.ndarray:
        signal, source_rate = read_audio(folder / name)
        return change_rate(signal.mean(axis=0, keepdims=True), source_rate, rate)[0]

    mixture = mono(item["mixture"])
    references = {key: mono(item[key]) for key in ("target", "interferer") if item.get(key)}
    for key, signal in references.items():
        if len(signal) != len(mixture):
            raise ValueError(f"{folder / item[key]}: {len(signal)} samples, the mixture has {len(mixture)}")
    target = references["target"]
    interferer = references.get("interferer", mixture - target)
    return Mixture(Path(item["mixture"]).name.split(".")[0], item["target_class"],
                   item.get("interferer_class", "unknown"), item["caption"], mixture, target, interferer)


# -- the model's runs ------------------------------------------------------------------

def hop_times_ms(model_dir: Path, steps: int, embedding: np.ndarray | None, signal: np.ndarray) -> tuple[HopTimes, int]:
    """Per-hop compute of the live path (STFT -> hop graph -> mask -> ISTFT) over one mixture,
    timed on a thread scheduled and paced as the live worker is (``stream.hop_clock``)."""
    from samstream.models.runtime import OnnxSeparator, Prompt
    from samstream.stream.engine import StftEngine

    separator = OnnxSeparator(model_dir, steps=steps)
    separator.set_prompt(Prompt(text_embedding=embedding))
    hop = separator.config.stft.hop
    engine = StftEngine(separator.config.stft.n_fft, hop, model=separator)
    engine.configure(separator.config.stft.sample_rate, hop, 1)
    source = np.ascontiguousarray(signal[None], np.float32)
    out = np.zeros((1, hop), np.float32)
    count = (source.shape[1] - hop) // hop + 1
    warm_up = WARM_UP_HOPS if count > 2 * WARM_UP_HOPS else 0
    times = time_hops(lambda index: engine.process(source[:, index * hop:(index + 1) * hop], out),
                      count - warm_up, warm_up=warm_up, pace_ms=1e3 * hop / separator.config.stft.sample_rate)
    return times, engine.latency_samples


def scores(estimate: np.ndarray, mixture: Mixture) -> dict[str, list[float]]:
    return {key: [round(value, 3) for value in improvements(estimate, mixture.target, mixture.mixture, metric)]
            for key, metric in (("si_sdri", si_sdr), ("sdri", sdr))}


def evaluate(arguments) -> dict:
    from samstream.models.runtime import load_serving_config
    from samstream.models.separate import DEFAULT_MODEL_DIR, separate
    from samstream.models.text_encoder import TextEncoder

    index = index_path(arguments.data, arguments.folder)
    items = read_index(index, arguments.per_class)
    model_dir = Path(arguments.model) if arguments.model else DEFAULT_MODEL_DIR
    config, _ = load_serving_config(model_dir)
    rate, n_fft, hop = config.stft.sample_rate, config.stft.n_fft, config.stft.hop
    encoder = TextEncoder.load()
    try:
        # The teacher is the torch network: the training half of models, imported only here.
        from samstream.models.train import Teacher
        teacher = Teacher(Path(arguments.teacher) if arguments.teacher else model_dir)
    except ImportError:  # a serving-only install has no torch: the report goes on without the teacher
        teacher = None
    judge = load_judge(arguments)
    rows, seconds, audio_seconds, examples = [], defaultdict(float), defaultdict(float), {}
    started = time.time()
    for position, item in enumerate(items):
        mixture = load_mixture(index.parent, item, rate)
        duration = len(mixture.mixture) / rate
        embedding = encoder.encode(mixture.caption)
        row = {"name": mixture.name, "class": mixture.target_class, "interferer": mixture.interferer_class,
               "caption": mixture.caption, "seconds": round(duration, 3), "scores": {}}
        estimates = {"oracle_irm": oracle_ratio_mask(mixture.target, mixture.interferer, n_fft, hop)}
        if teacher is not None:
            clock = time.perf_counter()
            estimates["teacher"] = teacher.separate(mixture.mixture, embedding)
            seconds["teacher"] += time.perf_counter() - clock
            audio_seconds["teacher"] += duration
        for steps in (1, 2):
            modes = ("offline", "streamed") if position < arguments.streamed else ("offline",)
            for mode in modes:
                clock = time.perf_counter()
                separation = separate(mixture.mixture[None], rate, embedding, steps=steps, model_dir=model_dir,
                                      stream=mode == "streamed")
                seconds[f"{mode}_{steps}"] += time.perf_counter() - clock
                audio_seconds[f"{mode}_{steps}"] += duration
                estimates[f"{mode}_{steps}"] = separation.target[0]
        estimates.update(baseline_estimates(mixture, n_fft, hop))
        row["scores"] = {method: scores(estimates[method], mixture) for method in METHODS if method in estimates}
        if judge is not None:
            posteriors = judge.posteriors(mixture.mixture, embedding)
            row["judge"] = {method: [round(judge.judge(mixture.mixture, estimates[method], embedding,
                                                       posteriors).score_db, 3),
                                     round(si_sdr(estimates[method], mixture.target), 3)]
                            for method in METHODS if method in estimates}
        rows.append(row)
        if not examples or (mixture.target_class == "speech" and examples["class"] != "speech"):
            examples = {"class": mixture.target_class, "caption": mixture.caption, "mixture": mixture.mixture,
                        "target": mixture.target, "estimate": estimates["offline_1"],
                        "si_sdri": row["scores"]["offline_1"]["si_sdri"][0]}
        print(f"[{position + 1}/{len(items)}] {mixture.name}: 1 step "
              f"{row['scores']['offline_1']['si_sdri'][0]:+.2f} / {row['scores']['offline_1']['si_sdri'][1]:+.2f} dB",
              flush=True)
    first = load_mixture(index.parent, items[0], rate)
    hops, latency = {}, 0
    for steps in (1, 2):
        times, latency = hop_times_ms(model_dir, steps, encoder.encode(first.caption), first.mixture)
        hops[str(steps)] = times
    settings = {"index": str(index), "model": str(model_dir), "teacher": str(arguments.teacher or model_dir),
                "judge": str(judge.folder) if judge is not None else None,
                "teacher_steps": teacher and teacher.steps, "per_class": arguments.per_class,
                "streamed": arguments.streamed, "sample_rate": rate, "n_fft": n_fft, "hop": hop}
    return summarise(rows, settings, latency, hops, {key: seconds[key] / audio_seconds[key] for key in seconds},
                     time.time() - started) | {"_examples": examples,
                                               "_hop_times": {steps: times.wall_ms for steps, times in hops.items()}}


def load_judge(arguments):
    from samstream.models.judge import Judge, JudgeFolderError

    try:
        return Judge(Path(arguments.judge) if getattr(arguments, "judge", None) else None)
    except JudgeFolderError as error:
        print(f"no judge in the report: {error}")
        return None


# -- summaries ---------------------------------------------------------------------------

def judge_summary(rows: list[dict]) -> dict | None:
    """How well the judge's predicted SI-SDR ranks the true SI-SDR of every estimate in the report."""
    pairs = [(method, *values) for row in rows for method, values in row.get("judge", {}).items()]
    if len(pairs) < 2:
        return None
    methods = np.array([method for method, _, _ in pairs])
    predicted = np.array([value for _, value, _ in pairs])
    truth = np.array([value for _, _, value in pairs])
    models = np.isin(methods, MODEL_METHODS)
    return {"estimates": len(pairs), "spearman": round(spearman(predicted, truth), 4),
            "spearman_model_outputs": round(spearman(predicted[models], truth[models]), 4),
            "mean_abs_error_db": round(float(np.mean(np.abs(predicted - truth))), 3),
            "per_method": {method: {"count": int((methods == method).sum()),
                                    "predicted_db": round(float(predicted[methods == method].mean()), 2),
                                    "true_db": round(float(truth[methods == method].mean()), 2)}
                           for method in METHODS if method in methods}}


def mean_scores(rows: list[dict]) -> dict:
    summary = {}
    for method in METHODS:
        having = [row["scores"][method] for row in rows if method in row["scores"]]
        if having:
            summary[method] = {key: np.mean([value[key] for value in having], axis=0).round(3).tolist()
                               for key in ("si_sdri", "sdri")} | {"count": len(having)}
    return summary


def summarise(rows: list[dict], settings: dict, latency: int, hops: dict, real_time: dict, seconds: float) -> dict:
    by_class = defaultdict(list)
    for row in rows:
        by_class[row["class"]].append(row)
    gaps = {}
    for steps in ("1", "2"):
        differences = [abs(row["scores"][f"streamed_{steps}"]["si_sdri"][0] - row["scores"][f"offline_{steps}"]
                           ["si_sdri"][0]) for row in rows if f"streamed_{steps}" in row["scores"]]
        gaps[steps] = {"mean_abs_db": round(float(np.mean(differences)), 4) if differences else None,
                       "max_abs_db": round(float(np.max(differences)), 4) if differences else None,
                       "count": len(differences)}
    baselines = {}
    for method in ("spectral_gating", "hpss"):
        having = [row for row in rows if method in row["scores"]]
        same = mean_scores([{"scores": {"offline_1": row["scores"]["offline_1"]}} for row in having])
        baselines[method] = {"classes": sorted({row["class"] for row in having}), "count": len(having),
                             "offline_1_same_mixtures": same.get("offline_1")}
    budget = 1e3 * settings["hop"] / settings["sample_rate"]
    hop_ms = {steps: times.figures(budget) for steps, times in hops.items()}
    return {"schema": SCHEMA, "settings": settings, "mixtures": len(rows),
            "mean": mean_scores(rows),
            "per_class": {name: mean_scores(group) for name, group in sorted(by_class.items())},
            "streamed_vs_offline": gaps, "baselines": baselines,
            "latency": {"samples": latency, "ms": round(1e3 * latency / settings["sample_rate"], 3)},
            "real_time_factor": {key: round(value, 4) for key, value in sorted(real_time.items())},
            "hop_compute_ms": hop_ms, "judge": judge_summary(rows), "seconds": round(seconds, 1), "rows": rows}


def pair(values: list[float] | None, signed: bool = True) -> str:
    if not values:
        return "–"
    form = "{:+.2f}" if signed else "{:.2f}"
    return " / ".join(form.format(value) for value in values)


def plural(steps: str) -> str:
    return f"{steps} step" + ("" if steps == "1" else "s")


def markdown(results: dict) -> str:
    settings, mean = results["settings"], results["mean"]
    shown = [method for method in METHODS if method in mean]
    lines = [f"# Separation report ({results['mixtures']} mixtures, {settings['index']})", "",
             f"Model `{settings['model']}`; "
             + (f"teacher `{settings['teacher']}` at {settings['teacher_steps']} steps (torch). "
                if settings["teacher_steps"] else "no teacher (torch is not installed). ") +
             "Each mixture is prompted with its caption. Improvements in dB over the mixture, "
             "extract / remove (target / residual).", "",
             "## Mean", "", "| method | mixtures | SI-SDRi | SDRi |", "|---|---|---|---|"]
    lines += [f"| {LABELS[method]} | {mean[method]['count']} | {pair(mean[method]['si_sdri'])} | "
              f"{pair(mean[method]['sdri'])} |" for method in shown]
    for key, title in (("si_sdri", "SI-SDRi"), ("sdri", "SDRi")):
        lines += ["", f"## Per class, {title} (extract / remove)", "",
                  "| class | " + " | ".join(LABELS[method] for method in shown) + " |", "|---" * (len(shown) + 1) + "|"]
        lines += [f"| {name} | " + " | ".join(pair(figures.get(method, {}).get(key)) for method in shown) + " |"
                  for name, figures in results["per_class"].items()]
    lines += ["", "## Live path", ""]
    for steps, gap in results["streamed_vs_offline"].items():
        if gap["count"]:
            lines.append(f"- {plural(steps)}, streamed against offline on {gap['count']} mixture(s): extract SI-SDRi "
                         f"differs by {gap['mean_abs_db']:.4f} dB on average, {gap['max_abs_db']:.4f} dB at most.")
    latency = results["latency"]
    lines.append(f"- Latency: {latency['samples']} samples ({latency['ms']:.2f} ms) of the engine, plus the block "
                 "scheduler's buffer delay (none for a host block that is a multiple of the hop).")
    lines.append("- Real-time factor (compute / audio time; offline unless live): " + ", ".join(
        f"{LABELS.get(key, key)} {value:.3f}" for key, value in results["real_time_factor"].items()) + ".")
    for steps, figures in results["hop_compute_ms"].items():
        lines.append(f"- Per-hop compute, {plural(steps)}, {figures['hops']} hops: p50 {figures['p50']:.2f} ms, "
                     f"p99 {figures['p99']:.2f} ms, max {figures['max']:.2f} ms against a hop of "
                     f"{figures['budget_ms']:.2f} ms ({figures['over_budget']} over); CPU time p50 "
                     f"{figures['cpu_p50']:.2f} ms, p99 {figures['cpu_p99']:.2f} ms; "
                     + ("real-time scheduling, as the live worker." if figures.get("realtime")
                        else "normal scheduling (real-time refused): other load shows in the wall times."))
    lines += ["", "## Classic baselines", ""]
    for method, figures in results["baselines"].items():
        if figures["count"]:
            lines.append(f"- {LABELS[method]} on {figures['count']} mixture(s) ({', '.join(figures['classes'])}): "
                         f"SI-SDRi {pair(mean[method]['si_sdri'])}; the 1-step model on the same mixtures "
                         f"{pair(figures['offline_1_same_mixtures']['si_sdri'])}.")
        else:
            lines.append(f"- {LABELS[method]}: no mixture it applies to in this set.")
    lines += ["", "Spectral gating runs where one source is a stationary noise class, HPSS where a percussive "
              "class meets a harmonic one; the model's students run on every mixture.", ""]
    lines += judge_lines(results.get("judge"), settings.get("judge"))
    lines += ["",
              f"Took {results['seconds']:.0f} s. Plots: per_class_si_sdri.png, hop_compute.png, spectrograms.png.", ""]
    return "\n".join(lines)


def judge_lines(judge: dict | None, folder: str | None) -> list[str]:
    if judge is None:
        return ["## Judge", "", "No judge was available, so no estimate was judged.", ""]
    lines = ["## Judge", "",
             f"The reference-free judge (`{folder}`) predicted the SI-SDR of every estimate above without "
             f"the reference. Spearman rank correlation with the true SI-SDR: **{judge['spearman']:+.3f}** over "
             f"all {judge['estimates']} estimates, {judge['spearman_model_outputs']:+.3f} over the model's own "
             f"(teacher and students); mean absolute error {judge['mean_abs_error_db']:.2f} dB.", "",
             "| method | estimates | true SI-SDR | judged |", "|---|---|---|---|"]
    lines += [f"| {LABELS[method]} | {figures['count']} | {figures['true_db']:+.2f} | {figures['predicted_db']:+.2f} |"
              for method, figures in judge["per_method"].items()]
    return [*lines, ""]


# -- files -------------------------------------------------------------------------------

def write_whole(path: Path, write) -> None:
    """Writes through a temporary name, so a reader never sees half a file."""
    partial = path.with_name(f".{path.name}.partial")
    write(partial)
    os.replace(partial, path)


def run_report(arguments) -> int:
    for name in ("per_class", "streamed"):
        if getattr(arguments, name) < 0:
            raise ValueError(f"--{name.replace('_', '-')} must be 0 or more, got {getattr(arguments, name)}")
    try:
        import matplotlib  # noqa: F401
        import scipy  # noqa: F401
    except ImportError as error:
        raise ValueError(f"the separation report needs {error.name}: pip install 'samstream[dev,train]'") from None
    from .bench_plots import draw_plots

    results = evaluate(arguments)
    examples, hop_times = results.pop("_examples"), results.pop("_hop_times")
    out = Path(arguments.out or "bench_out/report")
    out.mkdir(parents=True, exist_ok=True)
    report = markdown(results)
    draw_plots(results, examples, hop_times, out, write_whole)
    write_whole(out / "results.json", lambda path: path.write_text(json.dumps(results, indent=1) + "\n"))
    write_whole(out / "report.md", lambda path: path.write_text(report))
    print(report)
    print(f"wrote {out / 'report.md'}, {out / 'results.json'} and three plots")
    return 0
