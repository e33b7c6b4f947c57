"""Captions, manifests, conditioning, and each source family's rules and renderers."""
from __future__ import annotations

import os
import shutil
from collections import Counter

import numpy as np
import pytest
import soundfile as sf

from samstream.models.data import (
    SAMPLE_RATE,
    audio,
    midi,
    render_drums,
    render_effects,
    render_instruments,
    render_noise,
    render_speech,
)
from samstream.models.data.captions import CLASSES, captions_for, classes_of
from samstream.models.data.jobs import Context
from samstream.models.data.licences import licence_for
from samstream.models.data.manifest import Entry, ManifestError, hours_per_class, read_manifest, write_manifest
from samstream.models.data.system import SOUNDFONT

HAVE_FLUIDSYNTH = shutil.which("fluidsynth") is not None and os.path.isfile(SOUNDFONT)
HAVE_KITS = bool(render_drums.kit_names())


def test_every_class_has_3_to_8_distinct_captions():
    for name, info in CLASSES.items():
        assert 3 <= len(info.captions) <= 8, name
        assert len(set(info.captions)) == len(info.captions), name
    shared = [c for c, n in Counter(c for i in CLASSES.values() for c in i.captions).items() if n > 1]
    assert shared == []
    assert len(classes_of("instrument")) >= 16
    assert set(render_instruments.PROGRAMS) == set(classes_of("instrument"))
    assert set(render_noise.GENERATORS) == set(classes_of("noise"))
    assert captions_for("dog_bark") == ("dog bark",)


def test_manifest_round_trip_and_errors(tmp_path):
    entries = [Entry(path="train/b.flac", cls="hum", captions=["hum", "buzz"], package="procedural",
                     licence="CC0", split="train", family="noise", group="g", frames=48000, source="s",
                     extra={"mains_hz": 50.0}),
               Entry(path="/abs/a.flac", cls="speech", captions=["speech"], package="espeak-ng",
                     licence="GPL-3+", split="val", frames=96000)]
    path = str(tmp_path / "m.jsonl")
    write_manifest(path, entries)
    back = read_manifest(path)
    assert sorted(back, key=lambda e: e.path) == sorted(entries, key=lambda e: e.path)
    assert back[0].resolve("/root") == "/abs/a.flac" and back[1].resolve("/root") == "/root/train/b.flac"
    assert hours_per_class(back) == {"hum": {"train": 1 / 3600, "val": 0.0}, "speech": {"train": 0.0, "val": 2 / 3600}}
    with open(path, "a") as handle:
        handle.write('{"path": "x.flac", "class": "hum", "captions": "hum", "split": "test"}\n')
    with pytest.raises(ManifestError, match=r"m.jsonl:3: split must be"):
        read_manifest(path)


def test_condition_trims_normalises_and_rejects_silence():
    rate = 22050
    x = np.concatenate([np.zeros(rate), 0.01 * np.sin(np.arange(rate) * 0.2), np.zeros(rate)])
    y = audio.condition(x, rate)
    assert y.dtype == np.float32
    assert abs(y.size / SAMPLE_RATE - 1.0) < 0.05
    assert abs(audio.db(audio.active_rms(y)) - audio.TARGET_ACTIVE_RMS_DB) < 0.5
    assert np.max(np.abs(y)) <= 10 ** (audio.PEAK_CEILING_DB / 20) + 1e-6
    with pytest.raises(audio.SkipFile, match="silent"):
        audio.condition(np.full(1000, 1e-6), rate)
    with pytest.raises(audio.SkipFile, match="empty"):
        audio.condition(np.zeros(0), rate)


def test_load_audio_reasons(tmp_path):
    (tmp_path / "bad.ogg").write_bytes(b"OggS garbage")
    with pytest.raises(audio.SkipFile, match="unreadable"):
        audio.load_audio(str(tmp_path / "bad.ogg"))
    sf.write(tmp_path / "st.wav", np.ones((100, 2)) * [0.5, -0.5], 8000)
    mono, rate = audio.load_audio(str(tmp_path / "st.wav"))
    assert rate == 8000 and np.allclose(mono, 0.0)


def test_midi_writer_and_composer():
    rng = np.random.default_rng(0)
    notes, tempo, style = midi.compose(rng, 10.0, 40, 80, polyphonic=True)
    assert notes and 60 <= tempo <= 160 and style in ("melody", "chords", "arpeggio", "mixed")
    assert all(40 <= n.pitch <= 80 and 1 <= n.velocity <= 127 for n in notes)
    data = midi.midi_bytes(notes, tempo, program=5)
    assert data[:4] == b"MThd" and data[14:18] == b"MTrk"
    assert int.from_bytes(data[18:22], "big") == len(data) - 22
    assert data.endswith(b"\xff\x2f\x00")
    assert midi._varlen(0x0FFFFFFF) == b"\xff\xff\xff\x7f" and midi._varlen(0) == b"\x00"


def test_noise_generators_are_deterministic_and_distinct():
    ctx = Context(root="/unused", scale=0.01)
    jobs = render_noise.plan(ctx)
    assert {j.split for j in jobs} == {"train", "val"} and len({j.key for j in jobs}) == len(jobs)
    for cls, generate in render_noise.GENERATORS.items():
        a, _ = generate(np.random.default_rng(1), SAMPLE_RATE)
        b, _ = generate(np.random.default_rng(1), SAMPLE_RATE)
        np.testing.assert_array_equal(a, b)
        assert np.std(a) > 0, cls
    hum, info = render_noise.hum(np.random.default_rng(3), 4 * SAMPLE_RATE)
    spectrum = np.abs(np.fft.rfft(hum))
    peak_hz = np.argmax(spectrum) * SAMPLE_RATE / hum.size
    assert min(abs(peak_hz / info["mains_hz"] - k) for k in range(1, 6)) < 0.01


def test_speech_plan_holds_voices_out():
    jobs = render_speech.plan(Context(root="/unused"))
    train = {j.params["voice"] for j in jobs if j.split == "train"}
    val = {j.params["voice"] for j in jobs if j.split == "val"}
    assert not train & val
    assert all(v.split("+")[1] in render_speech.VAL_VARIANTS for v in val)
    assert not any(v.split("+")[1] in render_speech.VAL_VARIANTS or v.split("+")[0] in render_speech.VAL_LANGUAGES
                   for v in train)


@pytest.mark.parametrize("name, cls", [
    ("wesnoth-1.16-data:wolf-growl-1.ogg", "animal"),
    ("wesnoth-1.16-data:hiss-big.wav", "animal"),
    ("wesnoth-1.16-data:sword-1.ogg", "impact"),
    ("wesnoth-1.16-data:spear-miss.ogg", "whoosh"),
    ("wesnoth-1.16-data:human-female-die-2.ogg", "vocalization"),
    ("wesnoth-1.16-data:ambient/campfire.ogg", "fire"),
    ("lmms-common:misc/raving_crowd01.ogg", "crowd"),
    ("sonic-pi-samples:misc_crow.flac", "birds"),
    ("supertuxkart-data:sfx/rain.ogg", "water"),
    ("supertuxkart-data:music/celtic.ogg", "music"),
    ("wesnoth-1.16-music:battle.ogg", "music"),
    ("lmms-common:instruments/piano01.ogg", "piano"),
    ("sonic-pi-samples:bd_808.flac", "drums"),
    ("lmms-common:waveforms/10saw.wav", None),
])
def test_effect_rules(name, cls):
    assert render_effects.classify(name) == cls
    assert cls is None or cls in CLASSES


def test_effect_splits_are_by_file_and_stable():
    named = [(f"pkg:file{i}.ogg", "impact") for i in range(20)] + [("pkg:a.ogg", "fire"), ("pkg:b.ogg", "fire")]
    splits = render_effects.assign_splits(named)
    assert splits == render_effects.assign_splits(list(reversed(named)))
    assert sum(s == "val" for n, s in splits.items() if "file" in n) == 3
    assert splits["pkg:a.ogg"] == splits["pkg:b.ogg"] == "train"


@pytest.mark.skipif(not os.path.isfile("/usr/share/doc/supertuxkart-data/copyright"),
                    reason="supertuxkart-data not installed")
def test_per_file_licences():
    base = "/usr/share/games/supertuxkart/data/"
    assert licence_for("supertuxkart-data", base + "sfx/airplane_jetEngine.ogg") == "CC-BY-SA-3.0"
    assert licence_for("supertuxkart-data", base + "sfx/anvil.ogg") == "GPL-2+"


def test_instrument_programs_hold_sounds_out():
    for cls, (train, val, low, high, _) in render_instruments.PROGRAMS.items():
        assert 0 <= low < high <= 127 and train and val
        if len(train) > 1 or train != val:
            assert not set(train) & set(val), cls


@pytest.mark.skipif(not HAVE_FLUIDSYNTH, reason="needs fluidsynth and fluid-soundfont-gm (apt-get install "
                                                 "fluidsynth fluid-soundfont-gm)")
def test_instrument_render(tmp_path):
    ctx = Context(root=str(tmp_path))
    job = next(j for j in render_instruments.plan(ctx) if j.cls == "violin" and j.split == "val")
    entry = render_instruments.render(job, ctx)
    x, rate = sf.read(entry.resolve(str(tmp_path)))
    assert rate == SAMPLE_RATE and x.ndim == 1 and x.size > 5 * SAMPLE_RATE
    assert entry.group == "gm110" and entry.package == "fluid-soundfont-gm"


@pytest.mark.skipif(not HAVE_KITS, reason="needs hydrogen-drumkits (apt-get install hydrogen-drumkits)")
def test_drum_kits_held_out_whole(tmp_path):
    ctx = Context(root=str(tmp_path), scale=0.1)
    jobs = render_drums.plan(ctx)
    assert {j.params["kit"] for j in jobs if j.split == "val"} == set(render_drums.VAL_KITS)
    assert not {j.params["kit"] for j in jobs if j.split == "train"} & set(render_drums.VAL_KITS)
    entry = render_drums.render(jobs[0], ctx)
    assert entry.frames > 10 * SAMPLE_RATE and entry.licence
