"""The fixed validation set, by the benchmark protocol (DESIGN.md).

Two-source mixtures, 48 kHz mono, 6 s, target and interferer from different classes,
target-to-interferer ratio uniform in [-5, 5] dB, dry, fixed seed, drawn only from the
``val`` split (held-out voices, kits, MIDI programs, pieces and files):
``PER_CLASS`` mixtures for every class that has validation sources, in class order.

Target and interferer are quantised to 16 bits first and the mixture is their integer
sum, so the stored files are exact. The set's identity is one SHA-256 over, per
mixture in order, a canonical JSON line of its metadata and the 16-bit samples of
target and interferer: a rebuild from the same corpus gives the same hash, and
``validation.sha256`` (next to this file, committed) records the hash of the corpus
rendered by ``samstream data build`` with its default options.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil

import numpy as np

from . import SAMPLE_RATE
from .audio import write_flac
from .manifest import Entry, read_manifest
from .mixtures import PROTOCOL, MixtureSampler

SEED = 20261201
PER_CLASS = 6
HASH_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "validation.sha256")
FOLDER = "validation"


def quantise(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x.astype(np.float64) * 32768.0), -32768, 32767).astype(np.int16)


def items(entries: list[Entry], root: str, per_class: int = PER_CLASS, seed: int = SEED):
    """Yield (metadata, target int16, interferer int16) in the set's fixed order."""
    sampler = MixtureSampler(entries, root, PROTOCOL, seed=seed)
    index = 0
    for cls in sampler.classes:
        for _ in range(per_class):
            mix = sampler.sample(index, target_class=cls)
            target, interferer = quantise(mix.target), quantise(mix.residual)
            t64, i64 = target.astype(np.float64), interferer.astype(np.float64)
            meta = {
                "index": index,
                "target_class": cls,
                "caption": mix.caption,
                "interferer_class": mix.interferer_classes[0],
                "tir_db": round(float(10 * np.log10(max(np.sum(t64 ** 2), 1e-9) / max(np.sum(i64 ** 2), 1e-9))), 4),
                "sources": mix.sources,
            }
            yield meta, target, interferer
            index += 1


def float_items(entries: list[Entry], root: str, per_class: int = PER_CLASS, seed: int = SEED):
    """Yield (metadata, mixture, target) as float32 in [-1, 1): the set as a model is given it."""
    for meta, target, interferer in items(entries, root, per_class, seed):
        target = target.astype(np.float32) / 32768.0
        yield meta, target + interferer.astype(np.float32) / 32768.0, target


def digest_update(digest, meta: dict, target: np.ndarray, interferer: np.ndarray) -> None:
    digest.update(json.dumps(meta, sort_keys=True, separators=(",", ":")).encode())
    digest.update(target.astype("<i2").tobytes())
    digest.update(interferer.astype("<i2").tobytes())


def build_validation(root: str, per_class: int = PER_CLASS, seed: int = SEED, write: bool = True,
                     progress: bool = False) -> dict:
    """Write ROOT/validation/ (mixture, target, interferer FLAC + index.jsonl); return its hash."""
    entries = read_manifest(os.path.join(root, "manifest.jsonl"))
    out = os.path.join(root, FOLDER)
    stage = out + ".part"
    if write:
        shutil.rmtree(stage, ignore_errors=True)
        os.makedirs(stage)
    digest = hashlib.sha256()
    count = 0
    lines = []
    stream = items(entries, root, per_class, seed)
    if progress:
        from tqdm import tqdm
        stream = tqdm(stream, desc="validation", unit="mix")
    for meta, target, interferer in stream:
        digest_update(digest, meta, target, interferer)
        if write:
            name = f"{meta['index']:04d}_{meta['target_class']}"
            mixture = target.astype(np.int32) + interferer.astype(np.int32)
            if np.max(np.abs(mixture)) > 32767:
                raise ValueError(f"internal error: validation mixture {name} clips")
            for kind, data in (("mixture", mixture.astype(np.int16)), ("target", target),
                               ("interferer", interferer)):
                write_flac(os.path.join(stage, f"{name}.{kind}.flac"), data, SAMPLE_RATE)
            lines.append(json.dumps({**meta, "mixture": f"{name}.mixture.flac", "target": f"{name}.target.flac",
                                     "interferer": f"{name}.interferer.flac"}, sort_keys=True))
        count += 1
    sha = digest.hexdigest()
    if write:
        with open(os.path.join(stage, "index.jsonl"), "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
        with open(os.path.join(stage, "sha256"), "w", encoding="utf-8") as handle:
            handle.write(sha + "\n")
        shutil.rmtree(out, ignore_errors=True)
        os.replace(stage, out)
    return {"mixtures": count, "sha256": sha, "folder": out}


def committed_hash(path: str = HASH_FILE) -> str | None:
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip() and not line.startswith("#"):
                return line.split()[0]
    return None


def write_committed_hash(sha: str, path: str = HASH_FILE) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("# SHA-256 of the validation set built by `samstream data build` (default options);\n"
                     "# see models/data/validation.py for what it covers.\n")
        handle.write(f"{sha}  validation\n")
