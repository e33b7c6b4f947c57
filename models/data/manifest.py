"""The corpus manifest: one JSON object per line, one line per rendered file.

Fields: ``path`` (relative to the manifest's folder, or absolute), ``class``,
``captions`` (list of strings), ``package`` (the Debian package it came from, or
``procedural`` / ``user``), ``licence``, ``split`` (``train`` or ``val``), plus
``family`` (renderer), ``group`` (the unit a split is drawn by: a voice, a kit, a
source file, a MIDI program), ``frames`` (48 kHz samples) and ``source`` (what it was
rendered from). Readers accept lines without the optional fields.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

from . import SAMPLE_RATE

SPLITS = ("train", "val")


class ManifestError(ValueError):
    """A manifest line that cannot be used; the message names the file and line."""


@dataclass
class Entry:
    path: str
    cls: str
    captions: list[str]
    package: str
    licence: str
    split: str
    family: str = ""
    group: str = ""
    frames: int = 0
    source: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return self.frames / SAMPLE_RATE

    def to_json(self) -> dict:
        record = asdict(self)
        record["class"] = record.pop("cls")
        extra = record.pop("extra")
        if extra:
            record["extra"] = extra
        return record

    @classmethod
    def from_json(cls, record: dict) -> Entry:
        missing = [key for key in ("path", "class", "captions") if key not in record]
        if missing:
            raise ManifestError(f"missing field(s) {', '.join(missing)}")
        captions = record["captions"]
        if isinstance(captions, str):
            captions = [captions]
        if not captions or not all(isinstance(c, str) and c.strip() for c in captions):
            raise ManifestError("captions must be a non-empty list of non-empty strings")
        split = record.get("split", "train")
        if split not in SPLITS:
            raise ManifestError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        return cls(path=str(record["path"]), cls=str(record["class"]), captions=list(captions),
                   package=str(record.get("package", "")), licence=str(record.get("licence", "")),
                   split=split, family=str(record.get("family", "")), group=str(record.get("group", "")),
                   frames=int(record.get("frames", 0)), source=str(record.get("source", "")),
                   extra=dict(record.get("extra", {})))

    def resolve(self, root: str) -> str:
        return self.path if os.path.isabs(self.path) else os.path.join(root, self.path)


def write_manifest(path: str, entries: Iterable[Entry]) -> None:
    """Write atomically, sorted by path so the file is stable across runs."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    part = path + ".part"
    with open(part, "w", encoding="utf-8") as handle:
        for entry in sorted(entries, key=lambda e: e.path):
            handle.write(json.dumps(entry.to_json(), ensure_ascii=False, sort_keys=True) + "\n")
    os.replace(part, path)


def json_objects(path: str, error: type[Exception]):
    """Yield (line number, dict) of a JSONL file, skipping blank lines; a line that is not a
    JSON object raises ``error`` naming the file and the line."""
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as problem:
                raise error(f"{path}:{number}: not JSON ({problem.msg})") from None
            if not isinstance(record, dict):
                raise error(f"{path}:{number}: a line must be a JSON object")
            yield number, record


def read_manifest(path: str) -> list[Entry]:
    """Read a manifest; a bad line raises ManifestError naming the file and line."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"manifest not found: {path}")
    entries = []
    for number, record in json_objects(path, ManifestError):
        try:
            entries.append(Entry.from_json(record))
        except ManifestError as error:
            raise ManifestError(f"{path}:{number}: {error}") from None
    return entries


def read_corpus_manifest(data: str) -> list[Entry]:
    """The manifest of a corpus folder from `samstream data build`; a ValueError that says how to make
    one when the folder has none."""
    path = os.path.join(data, "manifest.jsonl")
    if not os.path.isfile(path):
        raise ValueError(f"{path}: missing; build the corpus first with `samstream data build`")
    return read_manifest(path)


def hours_per_class(entries: Iterable[Entry]) -> dict[str, dict[str, float]]:
    """{class: {split: hours}}."""
    table: dict[str, dict[str, float]] = {}
    for entry in entries:
        row = table.setdefault(entry.cls, {split: 0.0 for split in SPLITS})
        row[entry.split] = row.get(entry.split, 0.0) + entry.seconds / 3600.0
    return dict(sorted(table.items()))
