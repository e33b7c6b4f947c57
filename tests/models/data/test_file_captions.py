"""Captions per file: a file is never paired with a caption that names another sound."""
from __future__ import annotations

import json
import os
from dataclasses import replace

import numpy as np
import pytest

from samstream.models.config import ModelConfig
from samstream.models.data import HOP
from samstream.models.data.build import read_journal
from samstream.models.data.captions import CLASSES, captions_for
from samstream.models.data.file_captions import RULES, captions_for_file
from samstream.models.data.manifest import read_manifest
from samstream.models.data.mixtures import MixtureSampler
from samstream.models.data.render_effects import classify, source_files
from samstream.models.prompts import CorpusSource

from .conftest import build_tiny

# (class, source name, a caption it must get, a class caption it must not get): the pairings
# that the validation set's worst mixtures had before captions were given per file.
CASES = [
    ("engine", "supertuxkart-data:sfx/horn.ogg", "a car horn", "a train"),
    ("engine", "supertuxkart-data:sfx/horn.ogg", "a horn honking", "a vehicle"),
    ("engine", "supertuxkart-data:models/steamlocomotive.ogg", "a train", "a car engine"),
    ("animal", "wesnoth-1.16-data:hiss.ogg", "a snake hissing", "wolf growling"),
    ("animal", "wesnoth-1.16-data:bite.ogg", "an animal biting", "a horse"),
    ("animal", "wesnoth-1.16-data:wolf-growl-3.ogg", "wolf growling", "farm animals"),
    ("drums", "sonic-pi-samples:tabla_na.flac", "a tabla", "kick and snare"),
    ("drums", "lmms-common:drums/hihat_closed01.ogg", "a hi-hat", "drum loop"),
    ("drums", "sonic-pi-samples:loop_amen.flac", "kick and snare", "a tabla"),
    ("scifi", "supertuxkart-data:sfx/spaceship.ogg", "spaceship", "magic spell"),
    ("scifi", "wesnoth-1.16-data:magic-holy-1.ogg", "magic spell", "spaceship"),
    ("birds", "sonic-pi-samples:misc_crow.flac", "a crow", "birdsong"),
    ("beeps", "sonic-pi-samples:mehackit_phone1.flac", "a phone ringing", "user interface sounds"),
]


@pytest.mark.parametrize("cls, name, fits, wrong", CASES)
def test_a_file_gets_the_captions_that_fit_it(cls, name, fits, wrong):
    captions = captions_for_file(cls, name)
    assert fits in captions and wrong not in captions
    assert len(set(captions)) == len(captions)


def test_classes_without_rules_keep_their_class_captions():
    assert captions_for_file("speech", "anything") is None
    assert captions_for_file("hum", "anything") is None


def test_no_file_caption_belongs_to_another_class():
    owners: dict[str, set[str]] = {}
    for name, info in CLASSES.items():
        for caption in info.captions:
            owners.setdefault(caption, set()).add(name)
    for name, rules in RULES.items():
        assert name in CLASSES, name
        for caption in (*rules.generic, *(c for _, captions in rules.specific for c in captions)):
            owners.setdefault(caption, set()).add(name)
    assert not {caption: names for caption, names in owners.items() if len(names) > 1}


def test_every_installed_effect_file_gets_three_to_eight_captions():
    named = [(f"{package}:{relative}") for package, relative, _ in source_files()]
    classified = [(name, classify(name)) for name in named]
    ruled = [(name, cls) for name, cls in classified if cls in RULES]
    if not ruled:
        pytest.skip("no effect packages installed (samstream data build installs them)")
    for name, cls in ruled:
        captions = captions_for_file(cls, name)
        assert 3 <= len(captions) <= 8, (name, captions)


def test_a_rebuild_gives_rendered_files_their_new_captions_without_rendering_them_again(tmp_path):
    root = str(tmp_path / "corpus")
    build_tiny(root)
    journal = os.path.join(root, ".build", "done.jsonl")
    records = read_journal(journal)
    key = next(k for k, r in records.items() if "entry" in r)
    stale = {**records[key], "entry": {**records[key]["entry"], "captions": ["a caption from an old rule"]}}
    with open(journal, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(stale) + "\n")
    audio = os.path.join(root, records[key]["entry"]["path"])
    before = os.stat(audio).st_mtime_ns
    messages: list[str] = []
    build_tiny(root, log=messages.append)
    entry = next(e for e in read_manifest(os.path.join(root, "manifest.jsonl"))
                 if e.path == records[key]["entry"]["path"])
    assert entry.captions == list(captions_for(entry.cls))
    assert os.stat(audio).st_mtime_ns == before
    assert any("new captions for 1 files" in m for m in messages), messages
    assert read_journal(journal)[key]["entry"]["captions"] == list(captions_for(entry.cls))


def test_training_draws_captions_from_the_target_file_not_its_class(tone_corpus):
    root, entries = tone_corpus
    own = {entry.path: [f"{entry.cls} take {index}", f"{entry.cls} file {index}", f"{entry.cls} copy {index}"]
           for index, entry in enumerate(entries)}
    relabelled = [replace(entry, captions=own[entry.path]) for entry in entries]
    sampler = MixtureSampler(relabelled, root, seed=3)
    for index in range(12):
        mixture = sampler.sample(index)
        target_path = mixture.sources[0]["path"]
        assert mixture.caption in own[target_path]
        assert mixture.target_captions == tuple(own[target_path])
    source = CorpusSource(sampler, ModelConfig(), HOP)
    rng = np.random.default_rng(0)
    for _ in range(12):
        drawn = source.sample(rng, 1.0)
        assert sorted(drawn.captions) in [sorted(captions) for captions in own.values()]
        assert drawn.classes[0] == drawn.captions[0].split()[0]
