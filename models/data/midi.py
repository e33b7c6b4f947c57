"""A tiny Standard MIDI File writer and the project's piece generator.

``compose`` writes melodies, chord progressions, arpeggios and bass lines in a random
key, scale and tempo with varied velocities and rests; ``write_midi`` stores them as a
format-0 file for fluidsynth. No dependency beyond numpy.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

TICKS_PER_BEAT = 480
SCALES = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "pentatonic": (0, 2, 4, 7, 9),
}
PROGRESSIONS = ((0, 4, 5, 3), (0, 3, 4, 4), (5, 3, 0, 4), (0, 5, 3, 4), (1, 4, 0, 0), (0, 2, 3, 4))


@dataclass(frozen=True)
class Note:
    start: float      # beats
    length: float     # beats
    pitch: int
    velocity: int


def _varlen(value: int) -> bytes:
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    return bytes(reversed(out))


def midi_bytes(notes: list[Note], tempo_bpm: float, program: int, channel: int = 0,
               controllers: dict[int, int] | None = None) -> bytes:
    events: list[tuple[int, int, bytes]] = []       # (tick, order, data): note-offs before note-ons
    for note in notes:
        on = round(note.start * TICKS_PER_BEAT)
        off = max(on + 1, round((note.start + note.length) * TICKS_PER_BEAT))
        pitch, velocity = int(np.clip(note.pitch, 0, 127)), int(np.clip(note.velocity, 1, 127))
        events.append((on, 1, bytes((0x90 | channel, pitch, velocity))))
        events.append((off, 0, bytes((0x80 | channel, pitch, 0))))
    events.sort(key=lambda e: (e[0], e[1]))
    tempo = round(60_000_000 / tempo_bpm)
    track = bytearray(b"\x00\xff\x51\x03" + tempo.to_bytes(3, "big"))
    track += b"\x00" + bytes((0xC0 | channel, program & 0x7F))
    for number, value in (controllers or {}).items():
        track += b"\x00" + bytes((0xB0 | channel, number & 0x7F, value & 0x7F))
    last = 0
    for tick, _, data in events:
        track += _varlen(tick - last) + data
        last = tick
    track += _varlen(TICKS_PER_BEAT) + b"\xff\x2f\x00"
    header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, TICKS_PER_BEAT)
    return header + b"MTrk" + struct.pack(">I", len(track)) + bytes(track)


def write_midi(path: str, notes: list[Note], tempo_bpm: float, program: int, **kwargs) -> None:
    with open(path, "wb") as handle:
        handle.write(midi_bytes(notes, tempo_bpm, program, **kwargs))


def _scale_pitches(root: int, scale: tuple[int, ...], low: int, high: int) -> np.ndarray:
    return np.array([p for p in range(low, high + 1) if (p - root) % 12 in scale])


def _chord(root: int, scale: tuple[int, ...], degree: int, size: int) -> list[int]:
    """Pitch classes (as semitones above root's octave) of a diatonic chord."""
    steps = [scale[(degree + 2 * k) % len(scale)] + 12 * ((degree + 2 * k) // len(scale)) for k in range(size)]
    return [root + s for s in steps]


def _voice(chord: list[int], low: int, high: int, rng) -> list[int]:
    centre = rng.integers(low + 6, max(low + 7, high - 6))
    out = []
    for pitch in chord:
        p = pitch + 12 * round((centre - pitch) / 12)
        while p < low:
            p += 12
        while p > high:
            p -= 12
        out.append(p)
    return sorted(set(out))


def compose(rng: np.random.Generator, seconds: float, low: int, high: int, polyphonic: bool,
            style: str | None = None) -> tuple[list[Note], float, str]:
    """A piece of about ``seconds``: (notes, tempo in bpm, style)."""
    tempo = float(rng.uniform(60, 160))
    beats = seconds * tempo / 60.0
    root = int(rng.integers(0, 12)) + 48
    scale = SCALES[str(rng.choice(list(SCALES)))]
    styles = ["melody", "chords", "arpeggio", "mixed"] if polyphonic else ["melody", "arpeggio", "bassline"]
    style = style or str(rng.choice(styles))
    pitches = _scale_pitches(root, scale, low, high)
    base_velocity = int(rng.integers(50, 116))
    progression = PROGRESSIONS[rng.integers(len(PROGRESSIONS))]
    bar = 4.0
    notes: list[Note] = []

    def vel() -> int:
        return int(np.clip(base_velocity + rng.normal(0, 10), 20, 127))

    def melody(start: float, stop: float) -> None:
        index = int(rng.integers(len(pitches)))
        t = start
        while t < stop:
            length = float(rng.choice([0.25, 0.5, 0.5, 1.0, 1.0, 1.5, 2.0]))
            if rng.random() < 0.15:
                t += length
                continue
            index = int(np.clip(index + rng.choice([-3, -2, -1, -1, 0, 1, 1, 2, 3]), 0, len(pitches) - 1))
            notes.append(Note(t, length * rng.uniform(0.6, 1.0), int(pitches[index]), vel()))
            t += length
            if rng.random() < 0.08:
                t += float(rng.choice([1.0, 2.0]))          # phrase break

    def chords(start: float, stop: float, arpeggio: bool) -> None:
        t, k = start, 0
        pattern = float(rng.choice([0.25, 0.5, 1 / 3]))
        hold = float(rng.choice([1.0, 2.0, 4.0]))
        while t < stop:
            degree = progression[k % len(progression)]
            voiced = _voice(_chord(root, scale, degree, int(rng.choice([3, 3, 4]))), low, high, rng)
            if arpeggio:
                order = voiced + voiced[-2:0:-1] if rng.random() < 0.5 else voiced
                for step in range(round(bar / pattern)):
                    notes.append(Note(t + step * pattern, pattern * 0.9, order[step % len(order)], vel()))
            else:
                for onset in np.arange(0.0, bar, hold):
                    for pitch in voiced:
                        notes.append(Note(t + onset, hold * rng.uniform(0.7, 1.0), pitch, vel()))
            t += bar
            k += 1

    def bassline(start: float, stop: float) -> None:
        t, k = start, 0
        while t < stop:
            degree = progression[k % len(progression)]
            tonic = _voice([_chord(root, scale, degree, 1)[0]], low, min(high, low + 14), rng)[0]
            for onset in np.arange(0.0, bar, float(rng.choice([0.5, 1.0, 2.0]))):
                pitch = tonic + (7 if rng.random() < 0.2 else 0) + (12 if rng.random() < 0.1 else 0)
                notes.append(Note(t + onset, rng.uniform(0.3, 0.95), min(pitch, high), vel()))
            t += bar
            k += 1

    if style == "melody":
        melody(0.0, beats)
    elif style == "chords":
        chords(0.0, beats, arpeggio=False)
    elif style == "arpeggio":
        chords(0.0, beats, arpeggio=True)
    elif style == "bassline":
        bassline(0.0, beats)
    else:                                   # mixed: chords with a melody on top, or a break
        chords(0.0, beats / 2, arpeggio=bool(rng.random() < 0.5))
        melody(beats / 2 + float(rng.choice([0.0, 2.0])), beats)
    return notes, tempo, style
