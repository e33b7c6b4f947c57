"""The fixed validation set: protocol, exactness, and a hash stable across rebuilds."""
from __future__ import annotations

import json
import os
import re

import numpy as np
import soundfile as sf

from samstream.models.data import SAMPLE_RATE, validation
from samstream.models.data.build import build

from .conftest import build_tiny


def test_validation_set_follows_the_protocol(tone_corpus):
    root, _ = tone_corpus
    result = validation.build_validation(root, per_class=3)
    assert result["mixtures"] == 9
    lines = [json.loads(line) for line in open(os.path.join(root, "validation", "index.jsonl"))]
    assert [m["index"] for m in lines] == list(range(9))
    for meta in lines:
        assert meta["target_class"] != meta["interferer_class"]
        assert -5.01 <= meta["tir_db"] <= 5.01
        assert all(s["path"].startswith("val/") for s in meta["sources"])
        folder = os.path.join(root, "validation")
        mixture, rate = sf.read(os.path.join(folder, meta["mixture"]), dtype="int16")
        target, _ = sf.read(os.path.join(folder, meta["target"]), dtype="int16")
        interferer, _ = sf.read(os.path.join(folder, meta["interferer"]), dtype="int16")
        assert rate == SAMPLE_RATE and mixture.size == 6 * SAMPLE_RATE
        np.testing.assert_array_equal(mixture.astype(np.int32), target.astype(np.int32) + interferer)
    assert open(os.path.join(root, "validation", "sha256")).read().strip() == result["sha256"]


def test_hash_is_stable_when_rebuilt(tone_corpus):
    root, _ = tone_corpus
    first = validation.build_validation(root, per_class=2)
    again = validation.build_validation(root, per_class=2)
    dry = validation.build_validation(root, per_class=2, write=False)
    assert first["sha256"] == again["sha256"] == dry["sha256"]
    assert validation.build_validation(root, per_class=2, seed=1, write=False)["sha256"] != first["sha256"]


def test_hash_is_stable_when_the_corpus_is_rendered_again(tmp_path, tiny_corpus):
    """From scratch: render the sources again in another folder, rebuild, same hash."""
    again = str(tmp_path / "again")
    build_tiny(again)
    a = validation.build_validation(tiny_corpus, per_class=2, write=False)
    b = validation.build_validation(again, per_class=2, write=False)
    assert a["mixtures"] > 0 and a["sha256"] == b["sha256"]


def test_committed_hash_round_trip(tmp_path):
    path = str(tmp_path / "validation.sha256")
    assert validation.committed_hash(path) is None
    validation.write_committed_hash("ab" * 32, path)
    assert validation.committed_hash(path) == "ab" * 32


def test_repository_hash_file_is_well_formed():
    sha = validation.committed_hash()
    assert sha is not None and re.fullmatch("[0-9a-f]{64}", sha), sha  # a SHA-256 in lowercase hex, nothing else


def test_seed_changes_the_corpus(tmp_path):
    a = build(str(tmp_path / "a"), families=["noise"], scale=0.01, jobs=1, allow_install=False, progress=False,
              log=lambda m: None)
    b = build(str(tmp_path / "b"), families=["noise"], scale=0.01, jobs=1, allow_install=False, progress=False,
              seed=99, log=lambda m: None)
    assert a["files"] == b["files"] and a["hours_total"] != b["hours_total"]
