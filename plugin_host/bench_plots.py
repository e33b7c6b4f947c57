"""The separation report's plots (matplotlib, Agg: no display is needed)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    return pyplot


def save(figure, path: Path, write_whole) -> None:
    write_whole(path, lambda partial: figure.savefig(partial, format="png", dpi=110))
    pyplot().close(figure)


def per_class_bars(results: dict, path: Path, write_whole) -> None:
    """1-step SI-SDRi per class, extract and remove, with the oracle ceiling and the teacher marked."""
    plt = pyplot()
    classes = list(results["per_class"])
    positions = np.arange(len(classes))
    figure, axes = plt.subplots(2, 1, figsize=(max(8.0, 0.32 * len(classes) + 2), 7.5), sharex=True)
    for side, (axis, mode) in enumerate(zip(axes, ("extract", "remove"), strict=True)):
        def column(method, side=side):
            return [results["per_class"][name].get(method, {}).get("si_sdri", [np.nan, np.nan])[side]
                    for name in classes]

        model = column("offline_1")
        axis.bar(positions, model, color=["tab:blue" if value >= 0 else "tab:red" for value in model],
                 label="1 step")
        axis.scatter(positions, column("oracle_irm"), marker="_", s=160, color="black", label="oracle IRM (ceiling)")
        if "teacher" in results["mean"]:
            axis.scatter(positions, column("teacher"), marker=".", s=40, color="tab:orange",
                         label=f"teacher ({results['settings']['teacher_steps']} steps)")
        axis.axhline(0.0, color="grey", linewidth=0.8)
        mean = results["mean"]["offline_1"]["si_sdri"][side]
        axis.set_ylabel(f"SI-SDRi, {mode} (dB)")
        axis.set_title(f"{mode}: 1-step mean {mean:+.2f} dB, ceiling "
                       f"{results['mean']['oracle_irm']['si_sdri'][side]:+.2f} dB", fontsize=10)
        axis.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8, loc="upper right")
    axes[1].set_xticks(positions, classes, rotation=70, ha="right", fontsize=8)
    figure.tight_layout()
    save(figure, path, write_whole)


def hop_histogram(results: dict, hop_times: dict, path: Path, write_whole) -> None:
    """Per-hop compute of the live path; the hop's duration (the deadline) marked."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(7.5, 4.0))
    budget = 1e3 * results["settings"]["hop"] / results["settings"]["sample_rate"]
    top = max(budget * 1.1, *(float(np.max(times)) for times in hop_times.values()))
    bins = np.linspace(0.0, top, 80)
    for steps, times in hop_times.items():
        figures = results["hop_compute_ms"][steps]
        axis.hist(times, bins=bins, alpha=0.6, label=f"{steps} step(s): p50 {figures['p50']:.2f}, "
                                                     f"p99 {figures['p99']:.2f}, max {figures['max']:.2f} ms")
    axis.axvline(budget, color="black", linestyle="--", label=f"hop = {budget:.2f} ms")
    axis.set_yscale("log")
    axis.set_xlabel("compute per hop (ms): STFT, model, mask, ISTFT")
    axis.set_ylabel("hops")
    axis.legend(fontsize=8)
    figure.tight_layout()
    save(figure, path, write_whole)


def spectrogram_triptych(results: dict, example: dict, path: Path, write_whole) -> None:
    """Mixture, reference and 1-step estimate of one mixture, on the model's STFT."""
    from .bench_report import stft_frames

    plt = pyplot()
    settings = results["settings"]
    n_fft, hop, rate = settings["n_fft"], settings["hop"], settings["sample_rate"]
    figure, axes = plt.subplots(1, 3, figsize=(13.0, 4.0), sharey=True, layout="constrained")
    panels = (("mixture", example["mixture"]), (f"reference: {example['class']}", example["target"]),
              (f"1-step estimate ({example['si_sdri']:+.2f} dB SI-SDRi)", example["estimate"]))
    levels = [20 * np.log10(np.abs(stft_frames(signal, n_fft, hop)).T + 1e-6) for _, signal in panels]
    top = max(float(level.max()) for level in levels)
    for axis, (title, _), level in zip(axes, panels, levels, strict=True):
        extent = (0.0, level.shape[1] * hop / rate, 0.0, rate / 2000)
        image = axis.imshow(level, origin="lower", aspect="auto", extent=extent, vmin=top - 80, vmax=top,
                            cmap="magma")
        axis.set_title(title, fontsize=10)
        axis.set_xlabel("time (s)")
        axis.set_ylim(0, min(12.0, rate / 2000))
    axes[0].set_ylabel("frequency (kHz)")
    figure.suptitle(f'prompt "{example["caption"]}"', fontsize=10)
    figure.colorbar(image, ax=axes, label="dB")
    save(figure, path, write_whole)


def draw_plots(results: dict, example: dict, hop_times: dict, out: Path, write_whole) -> None:
    per_class_bars(results, out / "per_class_si_sdri.png", write_whole)
    hop_histogram(results, hop_times, out / "hop_compute.png", write_whole)
    spectrogram_triptych(results, example, out / "spectrograms.png", write_whole)
