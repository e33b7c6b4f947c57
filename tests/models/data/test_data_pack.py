"""``samstream data pack``: the real command on a real corpus, read back by the real mixture sampler."""
import json
import os
import subprocess
import sys

import numpy as np
import soundfile as sf

from samstream.models.data.manifest import read_manifest
from samstream.models.data.mixtures import MixtureConfig, MixtureSampler


def samstream(*arguments):
    return subprocess.run([sys.executable, "-m", "samstream.plugin_host.cli", *arguments],
                          capture_output=True, text=True)


def test_a_packed_corpus_keeps_every_class_within_its_budget_and_trains_like_the_rendered_one(tone_corpus, tmp_path):
    root, entries = tone_corpus
    out = tmp_path / "packed"
    done = samstream("data", "pack", "--root", root, "--out", str(out), "--max-mb", "0.02",
                     "--seconds-per-file", "4")
    assert done.returncode == 0, done.stderr
    packed = read_manifest(str(out / "manifest.jsonl"))
    assert {entry.cls for entry in packed} == {entry.cls for entry in entries}  # round-robin: every class
    assert all(entry.split == "train" and entry.path.endswith(".ogg") for entry in packed)
    sizes = [os.path.getsize(out / entry.path) for entry in packed]
    assert sum(sizes) - max(sizes) < 0.02e6  # stops once the budget is spent
    originals = {entry.cls: entry for entry in entries if entry.split == "train" and entry.frames > 4 * 48000}
    for entry in packed:
        info = sf.info(str(out / entry.path))
        assert (info.format, info.subtype, info.samplerate) == ("OGG", "OPUS", 48000)
        assert entry.frames == info.frames <= 4 * 48000
        if entry.cls in originals and entry.frames == 4 * 48000:  # a cut of the long source, not a copy of silence
            audio, _ = sf.read(str(out / entry.path), dtype="float32")
            source, _ = sf.read(os.path.join(root, originals[entry.cls].path), frames=entry.frames, dtype="float32")
            assert abs(np.sqrt(np.mean(audio ** 2)) / np.sqrt(np.mean(source ** 2)) - 1) < 0.1
    mixture = MixtureSampler(packed, str(out), MixtureConfig(seconds=2.0), seed=1).sample(0)
    assert mixture.mixture.shape == (96000,) and np.isfinite(mixture.mixture).all() and mixture.target.any()


def test_packing_without_training_sources_or_into_the_corpus_says_why(tone_corpus, tmp_path):
    root, entries = tone_corpus
    refused = samstream("data", "pack", "--root", root, "--out", root)
    assert refused.returncode != 0 and "pack into another folder" in refused.stderr
    assert "Traceback" not in refused.stderr
    (tmp_path / "val_only").mkdir()
    with open(tmp_path / "val_only" / "manifest.jsonl", "w") as handle:
        for entry in entries:
            if entry.split == "val":
                handle.write(json.dumps(entry.to_json()) + "\n")
    refused = samstream("data", "pack", "--root", str(tmp_path / "val_only"), "--out", str(tmp_path / "out"))
    assert refused.returncode != 0 and "no training sources to pack" in refused.stderr
    assert "Traceback" not in refused.stderr
