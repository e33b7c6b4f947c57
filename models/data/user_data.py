"""Users' own data: a folder of ``CLASS/*.wav`` or a JSONL manifest of (path, captions).

Folder layout (AudioSet-, FSD50K- or MUSDB18-style exports fit it): every sub-folder
is a class; its audio files (wav, flac, ogg, aiff, mp3 where libsndfile reads them) are
sources of that class. A class known to samstream keeps its captions; another class
gets its folder name ("dog_bark" -> "dog bark") as caption. An optional
``CLASS/captions.txt`` (one caption per line) overrides them.

Manifest: one JSON object per line with ``path`` (relative to the manifest's folder,
or absolute) and ``captions`` (a string or a list); optional ``class`` (default: the
first caption) and ``split`` (``train``/``val``; default: by a stable hash of the path,
10 % validation). Both go through the same pipeline as the corpus (48 kHz mono,
trimmed, normalised, FLAC; unreadable, empty and silent files skipped and counted).
"""
from __future__ import annotations

import os
import re

from .audio import load_audio
from .captions import captions_for
from .jobs import Context, Job, finish, hash_fraction
from .manifest import json_objects

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".aif", ".aiff", ".mp3")
VAL_FRACTION = 0.10
PACKAGE = "user"
LICENCE = "user-supplied"


class UserDataError(ValueError):
    """A user folder or manifest that cannot be used; one clear line."""


def _split_for(path: str) -> str:
    return "val" if hash_fraction("user-split", os.path.basename(path)) < VAL_FRACTION else "train"


def _class_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text.strip()).strip("_").lower() or "user"


def scan_folder(folder: str) -> list[dict]:
    """[{path, class, captions, split}] for every audio file in CLASS sub-folders."""
    if not os.path.isdir(folder):
        raise UserDataError(f"user folder not found: {folder}")
    items = []
    for cls_dir in sorted(os.listdir(folder)):
        directory = os.path.join(folder, cls_dir)
        if not os.path.isdir(directory):
            continue
        cls = _class_name(cls_dir)
        captions = list(captions_for(cls))
        caption_file = os.path.join(directory, "captions.txt")
        if os.path.isfile(caption_file):
            with open(caption_file, encoding="utf-8") as handle:
                captions = [line.strip() for line in handle if line.strip()] or captions
        for current, _, files in os.walk(directory):
            for filename in sorted(files):
                if filename.lower().endswith(AUDIO_EXTENSIONS):
                    path = os.path.join(current, filename)
                    items.append({"path": os.path.abspath(path), "class": cls, "captions": captions,
                                  "split": _split_for(path)})
    if not items:
        raise UserDataError(f"no audio files in CLASS sub-folders of {folder} "
                            f"(expected e.g. {folder}/dog_bark/*.wav)")
    return items


def read_user_manifest(path: str) -> list[dict]:
    """[{path, class, captions, split}] from a JSONL manifest of (path, captions)."""
    if not os.path.isfile(path):
        raise UserDataError(f"user manifest not found: {path}")
    base = os.path.dirname(os.path.abspath(path))
    items = []
    for number, record in json_objects(path, UserDataError):
        if "path" not in record or "captions" not in record:
            raise UserDataError(f"{path}:{number}: each line needs \"path\" and \"captions\"")
        captions = record["captions"]
        captions = [captions] if isinstance(captions, str) else captions
        if not isinstance(captions, list) or not captions or not all(
                isinstance(c, str) and c.strip() for c in captions):
            raise UserDataError(f"{path}:{number}: captions must be a non-empty string or list of strings")
        audio = record["path"] if os.path.isabs(record["path"]) else os.path.join(base, record["path"])
        split = record.get("split", _split_for(audio))
        if split not in ("train", "val"):
            raise UserDataError(f"{path}:{number}: split must be train or val, got {split!r}")
        items.append({"path": audio, "class": _class_name(str(record.get("class", captions[0]))),
                      "captions": [c.strip() for c in captions], "split": split})
    if not items:
        raise UserDataError(f"user manifest {path} lists no files")
    return items


def plan(ctx: Context) -> list[Job]:
    items = []
    if ctx.user_folder:
        items += scan_folder(ctx.user_folder)
    if ctx.user_manifest:
        items += read_user_manifest(ctx.user_manifest)
    jobs = []
    for index, item in enumerate(items):
        stem = os.path.splitext(os.path.basename(item["path"]))[0]
        jobs.append(Job(key=f"user/{item['class']}/{index:05d}_{stem}", family="user", cls=item["class"],
                        split=item["split"], params={"path": item["path"], "captions": item["captions"]}))
    return jobs


def render(job: Job, ctx: Context):
    audio, rate = load_audio(job.params["path"])
    return finish(job, ctx, audio, rate, PACKAGE, LICENCE, group=job.params["path"], source=job.params["path"])
