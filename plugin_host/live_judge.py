"""The live confidence: the judge run on the stream a few times a second, off the audio thread.

The worker appends each hop's dry input and target, already lined up, to two mono rings
(no allocation, a compiled copy). A thread of its own wakes every ``interval_s``, copies
the last window out of the rings, and asks the judge how good that window's separation
is. Windows reaching back before the latest prompt change are cut at the change, so a
new prompt is judged on its own output; until ``min_seconds`` of it have streamed the
confidence reads None ("not known yet"), as it does with no text prompt. It reads None on
a silent window too: with nothing to separate, the judge's score (about 0.4 on digital
silence) would only be a guess.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from samstream.kernels.live import record_history
from samstream.models.judge import Judge, confidence_of

DEFAULT_INTERVAL_S = 1.0  # one judgement re-separates its window three times (~0.35-0.5 s of a core)
DEFAULT_MIN_SECONDS = 1.0
SMOOTHING = 0.5  # weight of the newest judgement; windows overlap, so their scores need little smoothing
SILENCE_RMS = 1e-5  # -100 dBFS: below 16-bit dither, so only digital silence or a muted input


class LiveJudge:
    def __init__(self, judge_dir: Path | None = None, interval_s: float = DEFAULT_INTERVAL_S,
                 min_seconds: float = DEFAULT_MIN_SECONDS):
        self.judge = Judge(judge_dir)
        self.interval_s = interval_s
        self.min_seconds = min_seconds
        self.score_db: float | None = None
        self.judgements = 0
        self.judge_ms = 0.0  # the last judgement's compute time
        self.last_error: str | None = None
        self._embedding: np.ndarray | None = None
        self._since = 0  # stream sample from which the current prompt's output is in the rings
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._running = False

    @property
    def confidence(self) -> float | None:
        score = self.score_db
        return None if score is None else round(confidence_of(score), 4)

    def configure(self, sample_rate: int, crossfade_samples: int) -> None:
        if sample_rate != self.judge.config.sample_rate:
            raise ValueError(f"the judge runs at {self.judge.config.sample_rate} Hz, the stream at {sample_rate} Hz")
        size = 1 << int(self.judge.config.window_samples + 2 * sample_rate).bit_length()
        self._dry = np.zeros(size, np.float32)
        self._target = np.zeros(size, np.float32)
        self._dry_count = np.zeros(1, np.int64)
        self._target_count = np.zeros(1, np.int64)
        self._crossfade = crossfade_samples
        record_history(np.zeros((1, 4), np.float32), self._dry, self._dry_count)  # compiled before audio
        self._dry_count[0] = 0

    # worker side (every hop) -------------------------------------------------------

    def record(self, dry_hop: np.ndarray, target_hop: np.ndarray) -> None:
        record_history(dry_hop, self._dry, self._dry_count)
        record_history(target_hop, self._target, self._target_count)

    # prompt side -------------------------------------------------------------------

    def set_prompt(self, text_embedding: np.ndarray | None) -> None:
        """A new prompt reaches the model from the next hop: judge only what it produced."""
        self._embedding = None if text_embedding is None else np.asarray(text_embedding, np.float32)
        self._since = int(self._dry_count[0]) + self._crossfade
        self.score_db = None

    # judging -----------------------------------------------------------------------

    def judge_once(self) -> float | None:
        """Judge the newest window now; returns the smoothed score in dB (None: nothing to judge)."""
        embedding, since = self._embedding, self._since
        if embedding is None:
            return None
        end = int(min(self._dry_count[0], self._target_count[0]))
        rate = self.judge.config.sample_rate
        start = max(end - self.judge.config.window_samples, since)
        if end - start < self.min_seconds * rate:
            return self.score_db
        positions = np.arange(start, end) & (self._dry.shape[0] - 1)
        dry, target = self._dry[positions], self._target[positions]
        if float(np.sqrt(np.mean(np.square(dry, dtype=np.float64)))) < SILENCE_RMS:
            self.score_db = None  # and the next sound is judged afresh, not smoothed into a stale score
            return None
        started = time.perf_counter()
        judgement = self.judge.judge(dry, target, embedding)
        self.judge_ms = 1000.0 * (time.perf_counter() - started)
        if embedding is not self._embedding:
            return self.score_db  # the prompt changed while this window was judged: drop it
        previous = self.score_db
        self.score_db = judgement.score_db if previous is None else (
            SMOOTHING * judgement.score_db + (1.0 - SMOOTHING) * previous)
        self.judgements += 1
        return self.score_db

    def start(self) -> None:
        if self._running:
            return
        self._running = True
        self._wake.clear()
        self._thread = threading.Thread(target=self._work, name="samstream-judge", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if not self._running:
            return
        self._running = False
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _work(self) -> None:
        while not self._wake.wait(self.interval_s):
            try:
                self.judge_once()
            except Exception as error:  # a failed judgement reads "not known"; the stream goes on
                self.score_db = None
                self.last_error = f"{type(error).__name__}: {error}"
