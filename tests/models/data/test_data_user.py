"""Users' own data: CLASS/*.wav folders and JSONL manifests of (path, captions)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from samstream.models.data import user_data
from samstream.models.data.captions import CLASSES
from samstream.models.data.jobs import Context


def wav(path, seconds=0.5, rate=44100):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    sf.write(path, 0.2 * np.sin(2 * np.pi * 330 * t), rate)


def test_folder_classes_and_captions(tmp_path):
    wav(tmp_path / "dog_bark" / "a.wav")
    wav(tmp_path / "dog_bark" / "sub" / "b.flac")
    wav(tmp_path / "speech" / "c.wav")
    wav(tmp_path / "vocals" / "d.wav")
    (tmp_path / "vocals" / "captions.txt").write_text("lead vocal\nsinging\n\n")
    (tmp_path / "notes.txt").write_text("not a class")
    items = user_data.scan_folder(str(tmp_path))
    by_class = {}
    for item in items:
        by_class.setdefault(item["class"], []).append(item)
        assert item["split"] in ("train", "val")
    assert sorted(by_class) == ["dog_bark", "speech", "vocals"]
    assert len(by_class["dog_bark"]) == 2
    assert by_class["dog_bark"][0]["captions"] == ["dog bark"]
    assert by_class["speech"][0]["captions"] == list(CLASSES["speech"].captions)
    assert by_class["vocals"][0]["captions"] == ["lead vocal", "singing"]


def test_manifest_paths_captions_class_and_split(tmp_path):
    wav(tmp_path / "audio" / "x.wav")
    wav(tmp_path / "y.wav")
    lines = [{"path": "audio/x.wav", "captions": "a door slamming"},
             {"path": str(tmp_path / "y.wav"), "captions": ["violin", "a fiddle"], "class": "Violin", "split": "val"}]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    items = user_data.read_user_manifest(str(manifest))
    assert items[0]["path"] == str(tmp_path / "audio" / "x.wav")
    assert items[0]["captions"] == ["a door slamming"] and items[0]["class"] == "a_door_slamming"
    assert items[1]["class"] == "violin" and items[1]["split"] == "val"
    jobs = user_data.plan(Context(root=str(tmp_path / "c"), user_manifest=str(manifest)))
    assert [j.params["captions"] for j in jobs] == [["a door slamming"], ["violin", "a fiddle"]]


@pytest.mark.parametrize("text, message", [
    ("not json\n", "not JSON"),
    ('{"path": "x.wav"}\n', "needs \"path\" and \"captions\""),
    ('{"path": "x.wav", "captions": []}\n', "captions must be"),
    ('{"path": "x.wav", "captions": "c", "split": "test"}\n', "split must be"),
    ("\n", "lists no files"),
])
def test_manifest_errors_name_the_line(tmp_path, text, message):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(text)
    with pytest.raises(user_data.UserDataError, match=message):
        user_data.read_user_manifest(str(manifest))


def test_folder_errors(tmp_path):
    with pytest.raises(user_data.UserDataError, match="not found"):
        user_data.scan_folder(str(tmp_path / "missing"))
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(user_data.UserDataError, match="no audio files"):
        user_data.scan_folder(str(tmp_path))
