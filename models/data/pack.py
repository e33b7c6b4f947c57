"""A corpus packed small enough to travel: part of the training split, every class alike, as Ogg Opus.

A machine that cannot reach Debian's mirrors (a rented GPU, say) cannot render the corpus,
and the rendered one (about 2 GB of FLAC) is too big to send along. ``pack_corpus`` takes
the training split's sources round-robin over the classes, so each class gets its share
of the budget, cuts each to at most ``seconds_per_file`` so that one long recording does not
spend a class's share, and writes them as Opus (about 30 kb/s at the default compression,
against about 700 kb/s for the FLAC). The packed folder is a corpus: its ``manifest.jsonl``
feeds ``samstream train --data`` as the rendered one does. Opus is lossy, and a model
trained on a packed corpus has not yet been compared with one trained on the FLAC.
"""
from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import replace

import numpy as np
import soundfile as sf

from . import SAMPLE_RATE
from .manifest import Entry, read_manifest, write_manifest

OPUS_COMPRESSION = 0.9  # libsndfile's 0..1 scale: 0.9 gives about 30 kb/s on music


def pack_corpus(root: str, out: str, max_megabytes: float, seconds_per_file: float = 60.0,
                compression: float = OPUS_COMPRESSION, seed: int = 0, log=print) -> dict:
    """Write the packed corpus under ``out``; returns its files, hours, megabytes and classes."""
    if max_megabytes <= 0 or seconds_per_file <= 0:
        raise ValueError(f"--max-mb and --seconds-per-file must be positive, got {max_megabytes} and "
                         f"{seconds_per_file}")
    if os.path.abspath(out) == os.path.abspath(root):
        raise ValueError(f"--out {out} is the corpus itself; pack into another folder")
    by_class: dict[str, list[Entry]] = defaultdict(list)
    for entry in read_manifest(os.path.join(root, "manifest.jsonl")):
        if entry.split == "train":
            by_class[entry.cls].append(entry)
    if not by_class:
        raise ValueError(f"{os.path.join(root, 'manifest.jsonl')}: no training sources to pack")
    rng = np.random.default_rng(seed)
    queues = {name: [entries[i] for i in rng.permutation(len(entries))] for name, entries in sorted(by_class.items())}
    budget, written, packed = max_megabytes * 1e6, 0, []
    while written < budget and any(queues.values()):
        for name, queue in queues.items():
            if not queue or written >= budget:
                continue
            entry = queue.pop()
            path = os.path.join("train", name, f"{len(packed):05d}.ogg")
            frames = write_opus(entry.resolve(root), os.path.join(out, path), int(seconds_per_file * SAMPLE_RATE),
                                compression)
            written += os.path.getsize(os.path.join(out, path))
            packed.append(replace(entry, path=path, frames=frames))
    write_manifest(os.path.join(out, "manifest.jsonl"), packed)
    summary = {"files": len(packed), "hours": sum(entry.seconds for entry in packed) / 3600,
               "megabytes": written / 1e6, "classes": len({entry.cls for entry in packed})}
    log(f"packed {summary['files']} files, {summary['hours']:.2f} h of {summary['classes']} classes, "
        f"{summary['megabytes']:.1f} MB, into {out}")
    return summary


def write_opus(source: str, destination: str, max_frames: int, compression: float) -> int:
    """The first ``max_frames`` of ``source`` (mono) as Ogg Opus; returns the frames written."""
    audio, rate = sf.read(source, frames=max_frames, dtype="float32", always_2d=True)
    if rate != SAMPLE_RATE:
        raise ValueError(f"{source}: {rate} Hz; the corpus is {SAMPLE_RATE} Hz")
    os.makedirs(os.path.dirname(destination), exist_ok=True)
    sf.write(destination, audio[:, 0], SAMPLE_RATE, format="OGG", subtype="OPUS", compression_level=compression)
    return sf.info(destination).frames
