"""Reading and writing audio files with one clear error per failure and no half-written files."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import soundfile


class AudioFileError(Exception):
    """A file that cannot be used as audio; the message names the file and the reason."""


def read_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Returns (signal as float32 (channels, n), sample_rate)."""
    path = Path(path)
    if not path.exists():
        raise AudioFileError(f"{path}: no such file")
    if path.is_dir():
        raise AudioFileError(f"{path}: is a folder, not an audio file")
    try:
        frames, sample_rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as error:
        raise AudioFileError(f"{path}: not a readable audio file ({error})") from None
    if frames.shape[0] == 0:
        raise AudioFileError(f"{path}: contains no audio samples")
    return np.ascontiguousarray(frames.T), int(sample_rate)


def write_audio(path: str | os.PathLike, signal: np.ndarray, sample_rate: int) -> None:
    """Writes (channels, n) float audio; the file appears only once complete."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(handle)
    try:
        soundfile.write(partial, np.ascontiguousarray(signal.T), sample_rate, subtype="FLOAT"
                        if path.suffix.lower() == ".wav" else None)
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
