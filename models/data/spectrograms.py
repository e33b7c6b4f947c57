"""A PNG grid of spectrograms of a few corpus classes, plus one training mixture, for a person.

    python -m samstream.models.data.spectrograms [--root data/corpus] [--out docs/corpus_spectrograms.png]

Needs matplotlib (the ``dev`` extra). Each panel: 4 s of the first training file of a
class (a window from its middle), 2048-point STFT, dB, log-frequency axis. The last
panel shows a sampled mixture with the target's per-hop activity drawn over it.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from . import HOP, SAMPLE_RATE
from .audio import read_segment
from .manifest import read_manifest
from .mixtures import MixtureConfig, MixtureSampler

CLASSES = ("speech", "piano", "violin", "electric_guitar", "choir", "drums", "music", "birds", "engine",
           "water", "hum", "crackle")
SECONDS = 4.0


def spectrogram_db(x: np.ndarray, n_fft: int = 2048, hop: int = 512) -> np.ndarray:
    window = np.hanning(n_fft)
    frames = 1 + max(0, (x.size - n_fft) // hop)
    index = np.arange(n_fft)[None, :] + hop * np.arange(frames)[:, None]
    power = np.abs(np.fft.rfft(x[index] * window, axis=1)) ** 2
    return 10 * np.log10(power.T + 1e-10)


def _panel(axis, x: np.ndarray, title: str) -> None:
    spec = spectrogram_db(x)
    freqs = np.fft.rfftfreq(2048, 1 / SAMPLE_RATE)
    times = np.arange(spec.shape[1]) * 512 / SAMPLE_RATE
    top = spec.max()
    axis.pcolormesh(times, freqs[1:], spec[1:], vmin=top - 80, vmax=top, shading="auto", cmap="magma")
    axis.set_yscale("log")
    axis.set_ylim(40, 20000)
    axis.set_title(title, fontsize=9)
    axis.tick_params(labelsize=7)


def plot_grid(root: str, out: str, classes=CLASSES) -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    entries = read_manifest(os.path.join(root, "manifest.jsonl"))
    chosen = []
    for cls in classes:
        items = sorted((e for e in entries if e.cls == cls and e.split == "train"), key=lambda e: e.path)
        if items:
            chosen.append(items[len(items) // 2])
    columns = 4
    rows = -(-(len(chosen) + 1) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 2.6 * rows), constrained_layout=True)
    axes = np.atleast_1d(axes).ravel()
    count = int(SECONDS * SAMPLE_RATE)
    for axis, entry in zip(axes, chosen, strict=False):
        start = max(0, (entry.frames - count) // 2)
        _panel(axis, read_segment(entry.resolve(root), start, count), f"{entry.cls} ({entry.package})")
    mix = MixtureSampler(entries, root, MixtureConfig(partial_prob=1.0), seed=4).sample(0, target_class="speech"
                                                                                          if "speech" in classes
                                                                                          else None)
    axis = axes[len(chosen)]
    _panel(axis, mix.mixture, f"mixture: target '{mix.caption}' + {', '.join(mix.interferer_classes)}")
    hops = np.arange(mix.activity.size) * HOP / SAMPLE_RATE
    axis.plot(hops, np.where(mix.activity, 15000.0, 50.0), color="cyan", linewidth=1.0)
    for axis in axes[len(chosen) + 1:]:
        axis.axis("off")
    for axis in axes[::columns]:
        axis.set_ylabel("Hz", fontsize=8)
    figure.suptitle("samstream corpus: 4 s per class (log frequency, 80 dB range); "
                    "last panel: a training mixture, cyan = target activity", fontsize=10)
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    figure.savefig(out, dpi=72)
    plt.close(figure)
    from PIL import Image  # a matplotlib dependency: shrink to a 256-colour PNG
    with Image.open(out) as image:
        small = image.convert("RGB").quantize(256)
    small.save(out, optimize=True)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Spectrogram grid of corpus classes.")
    parser.add_argument("--root", default=os.path.join("data", "corpus"))
    parser.add_argument("--out", default=os.path.join("docs", "corpus_spectrograms.png"))
    args = parser.parse_args(argv)
    try:
        print(plot_grid(args.root, args.out))
    except (OSError, ValueError, ImportError) as error:
        print(f"spectrograms: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
