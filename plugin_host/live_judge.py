"""The live confidence: the judge run on the stream every second or so, in a process of its own.

The worker appends each hop's dry input and target, already lined up, to two mono rings
(no allocation, a compiled copy). The rings, their counts, the prompt's embedding and the
score live in one shared-memory file, so a judging process of its own reads the last
window from them and writes its score back. A process, not a thread: one judgement is
about half a second of numpy and ONNX Runtime work, and on a thread it held the
interpreter lock in stretches the worker had to wait through (``samstream bench --live
--soak 90``: 48.7 misses a minute with the judge on a thread, 3.3 with no judge). The
process runs at a lower priority (nice 10): under load the confidence lags, the audio
does not.

Windows reaching back before the latest prompt change are cut at the change, so a new
prompt is judged on its own output; until ``min_seconds`` of it have streamed the
confidence reads None ("not known yet"), as it does with no text prompt. It reads None on
a silent window too: with nothing to separate, the judge's score (about 0.4 on digital
silence) would only be a guess.
"""
from __future__ import annotations

import math
import multiprocessing
import os
import signal
import tempfile
import time
from pathlib import Path

import numpy as np

from samstream.kernels.live import record_history
from samstream.models.judge import Judge, confidence_of

DEFAULT_INTERVAL_S = 1.0  # one judgement re-separates its window three times (~0.35-0.5 s of a core)
DEFAULT_MIN_SECONDS = 1.0
SMOOTHING = 0.5  # weight of the newest judgement; windows overlap, so their scores need little smoothing
SILENCE_RMS = 1e-5  # -100 dBFS: below 16-bit dither, so only digital silence or a muted input
JUDGE_NICENESS = 10
STOP_POLL_S = 0.05
START_TIMEOUT_S = 30.0

# The shared header: int64 slots, then float64 slots, then the embedding, then the two rings.
DRY_COUNT, TARGET_COUNT, SINCE, PROMPT_VERSION, HAS_EMBEDDING, JUDGEMENTS, STOP, READY = range(8)
INT_SLOTS = 8
SCORE, JUDGE_MS = range(2)
FLOAT_SLOTS = 2


class SharedRings:
    """The arrays the worker, the prompt thread and the judging process share, mapped from one file."""

    def __init__(self, path: Path, ring_size: int, text_dim: int, create: bool):
        self.path, self.ring_size, self.text_dim = Path(path), ring_size, text_dim
        nbytes = 8 * (INT_SLOTS + FLOAT_SLOTS) + 4 * text_dim + 2 * 4 * ring_size
        self._map = np.memmap(self.path, np.uint8, mode="w+" if create else "r+", shape=(nbytes,))
        offset = 0

        def take(count: int, dtype) -> np.ndarray:
            nonlocal offset
            view = self._map[offset:offset + count * np.dtype(dtype).itemsize].view(dtype)
            offset += view.nbytes
            return view
        self.ints = take(INT_SLOTS, np.int64)
        self.floats = take(FLOAT_SLOTS, np.float64)
        self.embedding = take(text_dim, np.float32)
        self.dry = take(ring_size, np.float32)
        self.target = take(ring_size, np.float32)
        if create:
            self.floats[SCORE] = math.nan

    def count(self, slot: int) -> np.ndarray:
        """A one-element view of an int64 slot, as the compiled ring writer takes its count."""
        return self.ints[slot:slot + 1]


class LiveJudge:
    """``judge_once`` judges in the calling process (tests); ``start`` runs it every ``interval_s``
    in a judging process of its own. Either way the state is the shared rings'."""

    def __init__(self, judge_dir: Path | None = None, interval_s: float = DEFAULT_INTERVAL_S,
                 min_seconds: float = DEFAULT_MIN_SECONDS):
        self.judge_dir = judge_dir
        self.judge = Judge(judge_dir)
        self.interval_s = interval_s
        self.min_seconds = min_seconds
        self.last_error: str | None = None
        self.shared: SharedRings | None = None
        self._owner = False
        self._process: multiprocessing.process.BaseProcess | None = None
        self._crossfade = 0

    @property
    def score_db(self) -> float | None:
        score = float(self.shared.floats[SCORE]) if self.shared is not None else math.nan
        return None if math.isnan(score) else score

    @property
    def judgements(self) -> int:
        return int(self.shared.ints[JUDGEMENTS]) if self.shared is not None else 0

    @property
    def judge_ms(self) -> float:
        """The last judgement's compute time."""
        return float(self.shared.floats[JUDGE_MS]) if self.shared is not None else 0.0

    @property
    def confidence(self) -> float | None:
        score = self.score_db
        return None if score is None else round(confidence_of(score), 4)

    def configure(self, sample_rate: int, crossfade_samples: int) -> None:
        if sample_rate != self.judge.config.sample_rate:
            raise ValueError(f"the judge runs at {self.judge.config.sample_rate} Hz, the stream at {sample_rate} Hz")
        self.stop()
        self._release()
        size = 1 << int(self.judge.config.window_samples + 2 * sample_rate).bit_length()
        folder = "/dev/shm" if os.path.isdir("/dev/shm") else None
        handle, path = tempfile.mkstemp(prefix="samstream-judge-", dir=folder)
        os.close(handle)
        text_dim = next(int(node.shape[-1]) for node in self.judge.session.get_inputs() if node.name == "text")
        self.shared = SharedRings(Path(path), size, text_dim, create=True)
        self._owner = True
        self._crossfade = crossfade_samples
        record_history(np.zeros((1, 4), np.float32), self.shared.dry, self.shared.count(DRY_COUNT))  # compiled now
        self.shared.ints[DRY_COUNT] = 0

    # worker side (every hop) -------------------------------------------------------

    def record(self, dry_hop: np.ndarray, target_hop: np.ndarray) -> None:
        shared = self.shared
        record_history(dry_hop, shared.dry, shared.count(DRY_COUNT))
        record_history(target_hop, shared.target, shared.count(TARGET_COUNT))

    # prompt side -------------------------------------------------------------------

    def set_prompt(self, text_embedding: np.ndarray | None) -> None:
        """A new prompt reaches the model from the next hop: judge only what it produced."""
        shared = self.shared
        shared.ints[HAS_EMBEDDING] = 0
        if text_embedding is not None:
            shared.embedding[:] = np.asarray(text_embedding, np.float32).reshape(-1)
        shared.ints[SINCE] = int(shared.ints[DRY_COUNT]) + self._crossfade
        shared.floats[SCORE] = math.nan
        shared.ints[HAS_EMBEDDING] = int(text_embedding is not None)
        # Bumped last: a judgement that started before this change sees it and is dropped.
        shared.ints[PROMPT_VERSION] += 1

    # judging -----------------------------------------------------------------------

    def judge_once(self) -> float | None:
        """Judge the newest window now; returns the smoothed score in dB (None: nothing to judge)."""
        shared = self.shared
        version = int(shared.ints[PROMPT_VERSION])
        if not shared.ints[HAS_EMBEDDING]:
            return None
        embedding, since = shared.embedding.copy(), int(shared.ints[SINCE])
        end = int(min(shared.ints[DRY_COUNT], shared.ints[TARGET_COUNT]))
        rate = self.judge.config.sample_rate
        start = max(end - self.judge.config.window_samples, since)
        if end - start < self.min_seconds * rate or int(shared.ints[PROMPT_VERSION]) != version:
            return self.score_db
        positions = np.arange(start, end) & (shared.ring_size - 1)
        dry, target = shared.dry[positions], shared.target[positions]
        if float(np.sqrt(np.mean(np.square(dry, dtype=np.float64)))) < SILENCE_RMS:
            shared.floats[SCORE] = math.nan  # and the next sound is judged afresh, not smoothed into a stale score
            return None
        started = time.perf_counter()
        judgement = self.judge.judge(dry, target, embedding)
        shared.floats[JUDGE_MS] = 1000.0 * (time.perf_counter() - started)
        if int(shared.ints[PROMPT_VERSION]) != version:
            return self.score_db  # the prompt changed while this window was judged: drop it
        previous = self.score_db
        shared.floats[SCORE] = judgement.score_db if previous is None else (
            SMOOTHING * judgement.score_db + (1.0 - SMOOTHING) * previous)
        shared.ints[JUDGEMENTS] += 1
        return self.score_db

    def start(self, ready_timeout_s: float = START_TIMEOUT_S) -> None:
        """The judging process, from now until ``stop``. It loads its own judge (a few seconds of
        imports and graph planning): this waits until it has, so none of that competes with the
        first seconds of audio. A process that is not ready in time judges once it is."""
        if self._process is not None or self.shared is None:
            return
        self.shared.ints[STOP] = 0
        self.shared.ints[READY] = 0
        context = multiprocessing.get_context("spawn")  # a fork would copy the worker's threads' locks
        self._process = context.Process(
            target=judge_forever, name="samstream-judge", daemon=True,
            args=(str(self.shared.path), self.shared.ring_size, self.shared.text_dim, self.judge_dir,
                  self.interval_s, self.min_seconds, os.getpid()))
        self._process.start()
        deadline = time.monotonic() + ready_timeout_s
        while not self.shared.ints[READY] and self._process.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)

    def stop(self) -> None:
        if self._process is None:
            return
        self.shared.ints[STOP] = 1
        # Mid-judgement it would finish the window first (about half a second): a stopping
        # stream does not wait for a confidence nobody will read.
        self._process.join(timeout=0.3)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(timeout=1.0)
        self.last_error = None if self._process.exitcode in (0, -signal.SIGTERM) else \
            f"the judging process ended with code {self._process.exitcode}"
        self._process = None

    @property
    def running(self) -> bool:
        """The judging process has loaded its judge and judges every ``interval_s``."""
        return self._process is not None and self._process.is_alive() and bool(self.shared.ints[READY])

    def close(self) -> None:
        """Stop judging and remove the shared file (``configure`` makes a new one)."""
        self.stop()
        self._release()

    def _release(self) -> None:
        if self.shared is not None and self._owner:
            self.shared.path.unlink(missing_ok=True)
        self.shared = None

    def __del__(self) -> None:
        try:
            self._release()
        except Exception:  # at interpreter exit the modules may be gone already
            pass


def judge_forever(path: str, ring_size: int, text_dim: int, judge_dir: Path | None, interval_s: float,
                  min_seconds: float, parent: int) -> None:
    """The judging process: judge the shared rings every ``interval_s`` until told to stop or orphaned."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent stops us
    os.nice(JUDGE_NICENESS)
    live = LiveJudge(judge_dir, interval_s, min_seconds)
    live.shared = SharedRings(Path(path), ring_size, text_dim, create=False)
    shared = live.shared
    shared.ints[READY] = 1
    next_at = time.monotonic() + interval_s
    while not shared.ints[STOP] and os.getppid() == parent:
        if time.monotonic() < next_at:
            time.sleep(min(STOP_POLL_S, next_at - time.monotonic()))
            continue
        next_at += interval_s
        try:
            live.judge_once()
        except Exception:  # a failed judgement reads "not known"; the stream goes on
            shared.floats[SCORE] = math.nan
