"""`samstream data build`: the corpus, resumption, bad input, missing tools, the CLI."""
from __future__ import annotations

import argparse
import json
import os

import numpy as np
import pytest
import soundfile as sf

from samstream.models.data import SAMPLE_RATE, system
from samstream.models.data.build import BuildError, build, read_journal
from samstream.models.data.manifest import read_manifest
from samstream.plugin_host import data_cli

from .conftest import HAVE_ESPEAK, build_tiny


def test_tiny_corpus_files_and_manifest(tiny_corpus):
    entries = read_manifest(os.path.join(tiny_corpus, "manifest.jsonl"))
    assert entries and {e.split for e in entries} == {"train", "val"}
    for entry in entries:
        info = sf.info(entry.resolve(tiny_corpus))
        assert (info.samplerate, info.channels, info.format) == (SAMPLE_RATE, 1, "FLAC")
        assert info.frames == entry.frames > 0
        assert 3 <= len(entry.captions) <= 8 and entry.licence and entry.package
    report = json.load(open(os.path.join(tiny_corpus, "build_report.json")))
    assert report["files"] == len(entries) and report["skipped"] == 0
    assert set(report["hours_per_class"]) == {e.cls for e in entries}


@pytest.mark.skipif(not HAVE_ESPEAK, reason="espeak-ng not installed (apt-get install espeak-ng)")
def test_speech_voices_are_held_out_whole(tiny_corpus):
    entries = [e for e in read_manifest(os.path.join(tiny_corpus, "manifest.jsonl")) if e.cls == "speech"]
    train = {e.group for e in entries if e.split == "train"}
    val = {e.group for e in entries if e.split == "val"}
    assert train and val and not train & val
    assert not {v.split("+")[1] for v in train} & {v.split("+")[1] for v in val}


def test_resume_after_interruption_gives_the_same_corpus(tmp_path):
    reference, root = str(tmp_path / "reference"), str(tmp_path / "resumed")
    build_tiny(reference, families=["noise"])
    with pytest.raises(KeyboardInterrupt):
        build_tiny(root, families=["noise"], stop_after=3)
    journal = os.path.join(root, ".build", "done.jsonl")
    assert len(read_journal(journal)) == 3
    with open(journal, "a") as handle:          # a crash in the middle of a journal line
        handle.write('{"key": "noise/hum/tr')
    report = build_tiny(root, families=["noise"])
    assert report["skipped"] == 0
    with open(os.path.join(root, "manifest.jsonl")) as a, open(os.path.join(reference, "manifest.jsonl")) as b:
        assert a.read() == b.read()
    for entry in read_manifest(os.path.join(root, "manifest.jsonl"))[:6]:
        x, _ = sf.read(entry.resolve(root), dtype="int16")
        y, _ = sf.read(entry.resolve(reference), dtype="int16")
        np.testing.assert_array_equal(x, y)
    assert not [f for _, _, files in os.walk(root) for f in files if f.endswith(".part")]


def write_bad_files(folder) -> None:
    good = folder / "beep"
    good.mkdir(parents=True)
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    sf.write(good / "tone.wav", 0.3 * np.sin(2 * np.pi * 440 * t), 44100)
    sf.write(good / "silent.wav", np.zeros(SAMPLE_RATE), 44100)
    sf.write(good / "empty.wav", np.zeros(0), 44100)
    (good / "broken.wav").write_bytes(b"RIFF\x00\x00not really a wave file")


def test_bad_files_are_skipped_logged_and_counted(tmp_path):
    write_bad_files(tmp_path / "user")
    logged = []
    report = build(str(tmp_path / "corpus"), families=["user"], jobs=1, allow_install=False, progress=False,
                   user_folder=str(tmp_path / "user"), log=logged.append)
    assert report["files"] == 1
    assert report["skipped_by_reason"] == {"empty": 1, "silent": 1, "unreadable": 1}
    skipped = [json.loads(line) for line in open(tmp_path / "corpus" / "skipped.jsonl")]
    assert sorted(os.path.basename(s["source"]) for s in skipped) == ["broken.wav", "empty.wav", "silent.wav"]
    assert sum(line.startswith("skipped ") for line in logged) == 3
    entry = read_manifest(str(tmp_path / "corpus" / "manifest.jsonl"))[0]
    assert entry.cls == "beep" and entry.package == "user"
    assert entry.frames == pytest.approx(SAMPLE_RATE * 48000 / 44100, rel=0.02)


def test_missing_tool_and_package_name_themselves(monkeypatch):
    monkeypatch.setattr(system.shutil, "which", lambda name: None)
    with pytest.raises(system.MissingDependency, match=r"fluidsynth not found.*apt-get install fluidsynth"):
        system.require_tool("fluidsynth")
    monkeypatch.undo()
    monkeypatch.setattr(system, "installed", lambda package: package != "hydrogen-drumkits")
    with pytest.raises(system.MissingDependency, match="hydrogen-drumkits"):
        system.ensure_packages(["espeak-ng", "hydrogen-drumkits"], allow_install=False)
    monkeypatch.setattr(system.os, "geteuid", lambda: 1000)
    with pytest.raises(system.MissingDependency, match=r"cannot install them here \(needs root"):
        system.ensure_packages(["hydrogen-drumkits"], allow_install=True, log=lambda m: None)
    with pytest.raises(OSError, match="hydrogen-drumkits"):
        build("/nonexistent/never", families=["drums"], allow_install=False, progress=False, log=lambda m: None)


def cli(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="samstream")
    data_cli.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


@pytest.mark.parametrize("argv, error, text", [
    (["data", "build", "--jobs", "0", "--only", "noise"], BuildError, "--jobs must be at least 1"),
    (["data", "build", "--only", "kazoo"], BuildError, "unknown family 'kazoo'"),
    (["data", "build", "--only", "noise", "--user-folder", "/no/such/folder"], ValueError, "user folder not found"),
    (["data", "build", "--validation-only", "--no-validation"], BuildError, "contradict"),
])
def test_cli_user_errors_are_one_line(tmp_path, argv, error, text):
    arguments = cli([*argv, "--root", str(tmp_path / "c"), "--no-install", "--no-progress"])
    with pytest.raises(error, match=text) as caught:
        data_cli.run(arguments)
    assert "\n" not in str(caught.value)


def test_cli_validation_only_needs_a_corpus(tmp_path):
    with pytest.raises(OSError, match="manifest not found"):
        data_cli.run(cli(["data", "build", "--validation-only", "--root", str(tmp_path)]))


def test_cli_builds_a_small_corpus(tmp_path, capsys):
    arguments = cli(["data", "build", "--only", "noise", "--scale", "0.03", "--jobs", "2", "--root",
                     str(tmp_path / "c"), "--no-install", "--no-progress"])
    assert data_cli.run(arguments) == 0
    out = capsys.readouterr().out
    assert "validation set:" in out and "sha256" in out
    assert os.path.isfile(tmp_path / "c" / "validation" / "index.jsonl")


def test_only_one_family_keeps_the_others_in_the_manifest(tmp_path):
    root = str(tmp_path / "corpus")
    quiet = {"jobs": 1, "allow_install": False, "progress": False, "log": lambda m: None}
    first = build(root, families=["noise"], scale=0.01, **quiet)
    write_bad_files(tmp_path / "user")
    second = build(root, families=["user"], user_folder=str(tmp_path / "user"), **quiet)
    assert second["files"] == first["files"] + 1 and second["skipped"] == 3
    classes = {e.cls for e in read_manifest(os.path.join(root, "manifest.jsonl"))}
    assert "beep" in classes and "hum" in classes
