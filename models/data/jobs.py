"""Render jobs: the unit of work, resumption and progress of ``samstream data build``.

A :class:`Job` is plain data (picklable, JSON-able); its ``key`` is unique and stable,
its output path derives from the key, and everything random in it derives from the key
through :func:`seed_for`, so a resumed or repeated build renders the same audio.
Each family module exposes ``plan(ctx) -> list[Job]`` and ``render(job, ctx) -> Entry``
(raising :class:`~samstream.models.data.audio.SkipFile` for an unusable source).
"""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field

import numpy as np

from .audio import condition, write_flac
from .captions import CLASSES, captions_for
from .manifest import Entry


@dataclass(frozen=True)
class Job:
    key: str
    family: str
    cls: str
    split: str
    params: dict = field(default_factory=dict)

    @property
    def relpath(self) -> str:
        safe = re.sub(r"[^A-Za-z0-9._/+-]+", "_", self.key)
        return f"{self.split}/{safe}.flac"


@dataclass
class Context:
    root: str
    scale: float = 1.0          # multiplies the rendered hours of generated families
    seed: int = 20261130
    user_folder: str | None = None
    user_manifest: str | None = None


def seed_for(*parts) -> int:
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def rng_for(*parts) -> np.random.Generator:
    return np.random.default_rng(seed_for(*parts))


def hash_fraction(*parts) -> float:
    """A stable number in [0, 1) from a string: split decisions by file, not by segment."""
    return seed_for(*parts) / 2.0 ** 64


def count(base: float, scale: float, minimum: int = 1) -> int:
    return max(minimum, round(base * scale))


def job_captions(job: Job) -> list[str]:
    """The captions a job's file gets: its own where the plan gave some, else its class's."""
    return list(job.params.get("captions") or captions_for(job.cls))


def finish(job: Job, ctx: Context, audio: np.ndarray, rate: int, package: str, licence: str,
           group: str, source: str, extra: dict | None = None) -> Entry:
    """Condition the rendered audio, write it as FLAC, and describe it."""
    y = condition(audio, rate)
    write_flac(os.path.join(ctx.root, job.relpath), y)
    family = CLASSES[job.cls].family if job.cls in CLASSES else job.family
    return Entry(path=job.relpath, cls=job.cls, captions=job_captions(job), package=package,
                 licence=licence, split=job.split, family=family, group=group, frames=int(y.size),
                 source=source, extra=extra or {})
