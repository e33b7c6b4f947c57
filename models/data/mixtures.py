"""The on-the-fly mixture sampler: a target plus 1-3 interferers from other classes.

``MixtureSampler(entries, root)[i]`` is a :class:`Mixture`, a pure function of
(sampler seed, i): every random choice comes from ``default_rng([seed, i])``, so
DataLoader workers can share one sampler and a run can be replayed exactly.

Per mixture: a target class is drawn (uniformly over classes), one of its files, a
segment of it (a long file: a random window; a short one: 1-4 copies at random
onsets); with ``partial_prob`` the target sounds only within a random span (the span
prompt's ground truth). 1-3 interferers come from other classes that the drawn caption
does not name: no shared caption, no kind of the target or class it blurs into, no
class the caption is broad enough to cover (``captions.may_interfere``). Each source
may be played faster or slower with ``speed_share`` (pitch and tempo together, as a tape
does, within ``speed_semitones``: a class of a dozen files gets engines at other revs and
bells at other pitches; ``speed_families`` limits it to sources of those families) and
may get a random EQ; with ``reverb_prob`` all sit in one synthetic room (each its own
response, one RT60) and the target reference keeps its reverberation. Interferers get
relative gains within ``interferer_spread_db``; their sum (the residual) is scaled so
that the target-to-interferer ratio over the whole clip, 10 log10(E_target /
E_residual), is drawn uniformly from ``tir_db``; then one gain sets the mixture RMS
within ``level_db`` and keeps its peak below 0 dBFS.
``mixture == target + residual`` (float32).

Activity: one flag per model hop (128 samples at 48 kHz; hop t covers samples
[128 t, 128 (t + 1)), the newest samples of the streaming STFT's frame t): the hop's
target RMS is within ``activity_db`` of the loudest hop and above ``activity_floor``;
silences inside the target shorter than ``activity_gap_s`` (100 ms) count as active.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from . import HOP, SAMPLE_RATE
from .audio import apply_eq, apply_rir, fade_edges, frame_rms, random_eq, read_segment, synthetic_rir
from .captions import may_interfere
from .manifest import Entry

SHORT_FILE = 4 * SAMPLE_RATE          # files up to this long are cached in memory, decoded
SPEED_DENOMINATOR = 64                # speed ratios as p/q with q <= 64: a short polyphase filter


@dataclass(frozen=True)
class MixtureConfig:
    seconds: float = 6.0
    tir_db: tuple[float, float] = (-5.0, 5.0)
    interferers: tuple[int, int] = (1, 3)
    interferer_spread_db: float = 6.0
    level_db: tuple[float, float] = (-32.0, -12.0)    # mixture RMS, dBFS
    eq_prob: float = 0.5
    speed_share: float = 0.0             # sources resampled; 0 draws nothing, so a set stays as it was
    speed_semitones: float = 3.0
    speed_families: tuple[str, ...] = ()  # families whose sources may change speed; () means every family
    reverb_prob: float = 0.3
    rt60_s: tuple[float, float] = (0.2, 0.9)
    partial_prob: float = 0.5
    min_span_s: float = 1.0
    activity_db: float = 40.0
    activity_floor: float = 1e-6
    activity_gap_s: float = 0.1          # shorter silences inside the target count as active
    split: str = "train"


# The benchmark protocol (DESIGN.md): two sources, 6 s, TIR uniform in [-5, 5] dB, dry.
PROTOCOL = MixtureConfig(interferers=(1, 1), eq_prob=0.0, reverb_prob=0.0, partial_prob=0.0,
                         level_db=(-24.0, -24.0), split="val")


@dataclass
class Mixture:
    mixture: np.ndarray
    target: np.ndarray
    residual: np.ndarray
    activity: np.ndarray
    target_class: str
    caption: str
    interferer_classes: list[str]
    tir_db: float
    index: int
    sources: list[dict] = field(default_factory=list)
    target_captions: tuple[str, ...] = ()   # every caption that fits the target's file


def activity_of(target: np.ndarray, activity_db: float = 40.0, floor: float = 1e-6,
                gap_hops: int = 0) -> np.ndarray:
    """Per-hop activity flags of a target track (see the module docstring); inactive
    runs of at most ``gap_hops`` between active hops are filled (a word's stop consonant
    is not a gap in a span)."""
    rms = frame_rms(target, HOP)
    if rms.size == 0 or rms.max() <= floor:
        return np.zeros(rms.size, dtype=bool)
    active = (rms > rms.max() * 10.0 ** (-activity_db / 20.0)) & (rms > floor)
    if gap_hops > 0 and active.any():
        on = np.flatnonzero(active)
        gaps = np.flatnonzero(np.diff(on) - 1 <= gap_hops)
        for k in gaps:
            active[on[k]:on[k + 1]] = True
    return active


def energy(x: np.ndarray) -> float:
    return float(np.sum(np.square(x, dtype=np.float64)))


class MixtureSampler:
    """Mixtures from manifest entries of one split; ``len`` is nominal (``length``)."""

    def __init__(self, entries: list[Entry], root: str, config: MixtureConfig | None = None,
                 seed: int = 0, length: int = 100_000):
        self.config = config or MixtureConfig()
        self.root, self.seed, self.length = root, seed, length
        self.by_class: dict[str, list[Entry]] = {}
        for entry in entries:
            if entry.split == self.config.split:
                self.by_class.setdefault(entry.cls, []).append(entry)
        for items in self.by_class.values():
            items.sort(key=lambda e: e.path)
        self.classes = sorted(self.by_class)
        if len(self.classes) < 2:
            raise ValueError(f"the {self.config.split} split needs sources of at least two classes, "
                             f"found {len(self.classes)}")
        self.captions = {c: {cap for e in self.by_class[c] for cap in e.captions} for c in self.classes}
        self.samples = round(self.config.seconds * SAMPLE_RATE)
        self.pair_difficulty = None  # a hard_pairs.PairDifficulty: interferers drawn by it

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Mixture:
        return self.sample(int(index))

    # -- sources -------------------------------------------------------------------------

    def _frames(self, entry: Entry) -> int:
        return entry.frames or sf.info(entry.resolve(self.root)).frames

    def _read(self, entry: Entry, start: int, count: int) -> np.ndarray:
        frames = self._frames(entry)
        if frames <= SHORT_FILE:
            whole = _load_whole(entry.resolve(self.root))
            out = np.zeros(count, dtype=np.float32)
            piece = whole[start:start + count]
            out[:piece.size] = piece
            return out
        return read_segment(entry.resolve(self.root), start, count)

    def _segment(self, entry: Entry, rng: np.random.Generator, count: int) -> np.ndarray:
        frames = self._frames(entry)
        for _ in range(4):                     # avoid a window that falls in a long silence
            if frames >= count:
                x = self._read(entry, int(rng.integers(0, frames - count + 1)), count)
            else:
                x = np.zeros(count, dtype=np.float32)
                clip = self._read(entry, 0, frames)
                for _ in range(int(rng.integers(1, min(4, max(1, count // frames)) + 1))):
                    at = int(rng.integers(0, count - frames + 1))
                    x[at:at + frames] += clip
            if np.max(np.abs(x), initial=0.0) > 1e-3:
                return x
        return x

    def _speed(self, entry: Entry, rng: np.random.Generator) -> Fraction:
        """Playback speed of one source: ``2 ** (s / 12)``, s semitones up (1: as recorded)."""
        families = self.config.speed_families
        if self.config.speed_share <= 0.0 or (families and entry.family not in families):
            return Fraction(1)       # nothing drawn, as when no speed change is asked for
        if rng.random() >= self.config.speed_share:
            return Fraction(1)
        semitones = float(rng.uniform(-self.config.speed_semitones, self.config.speed_semitones))
        return Fraction(2.0 ** (semitones / 12.0)).limit_denominator(SPEED_DENOMINATOR)

    def _played(self, entry: Entry, rng: np.random.Generator, count: int) -> np.ndarray:
        """``count`` samples of the file played at a drawn speed: a window ``speed`` times as
        long, resampled (pitch and tempo change together, as on tape)."""
        speed = self._speed(entry, rng)
        if speed == 1:
            return self._segment(entry, rng, count)
        read = self._segment(entry, rng, -(-count * speed.numerator // speed.denominator))
        played = resample_poly(read, speed.denominator, speed.numerator)[:count]
        out = np.zeros(count, dtype=np.float32)
        out[:played.size] = played
        return out

    def _pick(self, cls: str, rng: np.random.Generator) -> Entry:
        entries = self.by_class[cls]
        return entries[int(rng.integers(len(entries)))]

    def _source(self, entry: Entry, rng: np.random.Generator, partial: bool, room: float | None,
                info: list[dict]) -> np.ndarray:
        n = self.samples
        if partial:
            span = int(rng.integers(round(self.config.min_span_s * SAMPLE_RATE), n))
            start = int(rng.integers(0, n - span + 1))
            track = np.zeros(n, dtype=np.float32)
            track[start:start + span] = fade_edges(self._played(entry, rng, span), SAMPLE_RATE // 100)
        else:
            start, span = 0, n
            track = self._played(entry, rng, n)
        if rng.random() < self.config.eq_prob:
            track = apply_eq(track, random_eq(rng))
        if room is not None:
            track = apply_rir(track, synthetic_rir(rng, room, direct_to_reverb_db=rng.uniform(-3.0, 9.0))
                              .astype(np.float32))
        info.append({"class": entry.cls, "path": entry.path, "span": [start, start + span]})
        return track.astype(np.float32, copy=False)

    # -- mixtures ------------------------------------------------------------------------

    def sample(self, index: int, target_class: str | None = None) -> Mixture:
        cfg = self.config
        rng = np.random.default_rng([self.seed, index])
        cls = target_class or self.classes[int(rng.integers(len(self.classes)))]
        if cls not in self.by_class:
            raise ValueError(f"no {cfg.split} sources of class {cls!r}")
        target_entry = self._pick(cls, rng)
        caption = str(rng.choice(target_entry.captions))
        others = [c for c in self.classes if caption not in self.captions[c] and may_interfere(cls, caption, c)]
        count = min(int(rng.integers(cfg.interferers[0], cfg.interferers[1] + 1)), len(others))
        weights = None if self.pair_difficulty is None else self.pair_difficulty.interferer_probabilities(cls, others)
        chosen = [others[i] for i in rng.choice(len(others), size=count, replace=False, p=weights)]
        room = float(rng.uniform(*cfg.rt60_s)) if rng.random() < cfg.reverb_prob else None
        info: list[dict] = []
        target = self._source(target_entry, rng, bool(rng.random() < cfg.partial_prob), room, info)
        residual = np.zeros(self.samples, dtype=np.float32)
        for other in chosen:
            x = self._source(self._pick(other, rng), rng, False, room, info)
            gain = 10.0 ** (rng.uniform(-cfg.interferer_spread_db, cfg.interferer_spread_db) / 40.0)
            residual += x * np.float32(gain / np.sqrt(max(energy(x), 1e-12) / x.size))
        tir = float(rng.uniform(*cfg.tir_db))
        e_t, e_r = energy(target), energy(residual)
        if e_t > 0 and e_r > 0:
            residual *= np.float32(np.sqrt(e_t / e_r * 10.0 ** (-tir / 10.0)))
        mixture = target + residual
        rms = np.sqrt(max(energy(mixture), 1e-20) / mixture.size)
        gain = 10.0 ** (rng.uniform(*cfg.level_db) / 20.0) / rms
        gain = min(gain, 0.98 / max(float(np.max(np.abs(mixture))), 1e-9))
        target *= np.float32(gain)
        residual *= np.float32(gain)
        mixture = target + residual
        measured = 10.0 * np.log10(max(energy(target), 1e-20) / max(energy(residual), 1e-20))
        return Mixture(mixture=mixture, target=target, residual=residual,
                       activity=activity_of(target, cfg.activity_db, cfg.activity_floor,
                                            round(cfg.activity_gap_s * SAMPLE_RATE / HOP)),
                       target_class=cls, caption=caption, interferer_classes=chosen,
                       tir_db=float(measured), index=index, sources=info,
                       target_captions=tuple(target_entry.captions))


@functools.lru_cache(maxsize=2048)
def _load_whole(path: str) -> np.ndarray:
    data, _ = sf.read(path, dtype="float32", always_2d=True)
    return data[:, 0].copy()
