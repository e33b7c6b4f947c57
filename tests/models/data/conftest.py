"""Small fixtures the data tests render themselves, in seconds.

``tiny_corpus``: procedural noise (and espeak-ng speech when installed) rendered by the
real ``build`` at a small scale. ``tone_corpus``: hand-written sine and noise files with
a manifest, for exact checks of the mixture sampler.
"""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from samstream.models.data import SAMPLE_RATE
from samstream.models.data.audio import write_flac
from samstream.models.data.build import build
from samstream.models.data.manifest import Entry, write_manifest

HAVE_ESPEAK = shutil.which("espeak-ng") is not None
TINY_SCALE = 0.03


def tiny_families() -> list[str]:
    return ["noise", "speech"] if HAVE_ESPEAK else ["noise"]


def build_tiny(root: str, **kwargs) -> dict:
    options = {"families": tiny_families(), "jobs": 1, "scale": TINY_SCALE, "allow_install": False,
               "progress": False, "log": lambda message: None}
    options.update(kwargs)
    return build(root, **options)


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp("tiny_corpus"))
    build_tiny(root)
    return root


def tone(freq: float, seconds: float, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture(scope="session")
def tone_corpus(tmp_path_factory) -> tuple[str, list[Entry]]:
    """Three classes x two splits of steady sounds: a sine, a higher sine, white noise."""
    root = str(tmp_path_factory.mktemp("tone_corpus"))
    rng = np.random.default_rng(5)
    makers = {
        "sine_low": lambda s: tone(220.0, s),
        "sine_high": lambda s: tone(1760.0, s, 0.2),
        "white": lambda s: (0.1 * rng.standard_normal(int(s * SAMPLE_RATE))).astype(np.float32),
    }
    entries = []
    for cls, make in makers.items():
        for split in ("train", "val"):
            for k, seconds in enumerate((8.0, 1.5)):
                path = f"{split}/{cls}_{k}.flac"
                x = make(seconds)
                write_flac(os.path.join(root, path), x)
                entries.append(Entry(path=path, cls=cls, captions=[cls.replace("_", " "), f"{cls} sound"],
                                     package="test", licence="CC0", split=split, family="test",
                                     group=path, frames=x.size))
    write_manifest(os.path.join(root, "manifest.jsonl"), entries)
    return root, entries
