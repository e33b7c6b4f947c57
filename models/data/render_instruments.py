"""Instruments: MIDI written by the project, rendered by fluidsynth with FluidR3_GM.

Each class lists General MIDI programs for training and other programs held out for
validation (where the class has more than one sound); single-program classes are split
by piece (validation pieces come from their own seeds). Tempo, key, scale, style,
velocity, fluidsynth's reverb/chorus and an EQ vary per piece.
"""
from __future__ import annotations

import os
import subprocess
import tempfile

import numpy as np

from .audio import SkipFile, apply_eq, load_audio, random_eq
from .jobs import Context, Job, count, finish, rng_for
from .midi import compose, write_midi
from .system import SOUNDFONT, require_file, require_tool

PACKAGE = "fluid-soundfont-gm"
LICENCE = "MIT (FluidR3_GM soundfont); MIDI written by samstream"

# class -> (train programs, val programs, lowest note, highest note, polyphonic)
PROGRAMS = {
    "piano": ((0, 3), (1,), 33, 96, True),
    "electric_piano": ((4,), (5,), 40, 88, True),
    "organ": ((16, 18, 19), (17,), 36, 90, True),
    "acoustic_guitar": ((24,), (25,), 40, 81, True),
    "electric_guitar": ((26, 29, 30), (27, 28), 40, 86, True),
    "bass": ((33, 34, 38), (32, 35, 39), 28, 55, False),
    "violin": ((40,), (110,), 55, 100, False),
    "cello": ((42,), (42,), 36, 76, False),
    "string_ensemble": ((48, 50), (49, 44), 36, 91, True),
    "trumpet": ((56,), (59,), 55, 84, False),
    "trombone": ((57,), (57,), 40, 72, False),
    "saxophone": ((65, 66), (64, 67), 49, 81, False),
    "flute": ((73, 72), (75,), 60, 96, False),
    "clarinet": ((71,), (71,), 50, 89, False),
    "synth_lead": ((80, 81, 84, 87), (82, 85), 48, 90, False),
    "synth_pad": ((88, 89, 90, 91, 94), (92, 95), 40, 84, True),
    "choir": ((52, 54), (53,), 48, 79, True),
    "mallets": ((11, 12, 8), (13, 9), 48, 96, True),
}
TRAIN_PIECES, VAL_PIECES = 36, 6        # per class at scale 1, 15-35 s each: ~15 min and ~2.5 min


def plan(ctx: Context) -> list[Job]:
    jobs = []
    for cls, (train, val, _, _, _) in PROGRAMS.items():
        for split, programs, base in (("train", train, TRAIN_PIECES), ("val", val, VAL_PIECES)):
            for index in range(count(base, ctx.scale)):
                program = programs[index % len(programs)]
                jobs.append(Job(key=f"instrument/{cls}/gm{program:03d}/{split}{index:04d}", family="instrument",
                                cls=cls, split=split, params={"program": program}))
    return jobs


def fluidsynth_render(midi_path: str, wav_path: str, reverb: bool, chorus: bool, gain: float = 0.7) -> None:
    fluidsynth = require_tool("fluidsynth")
    soundfont = require_file(SOUNDFONT, "fluid-soundfont-gm")
    command = [fluidsynth, "-ni", "-q", "-F", wav_path, "-r", "48000", "-g", f"{gain:.3f}",
               "-R", "1" if reverb else "0", "-C", "1" if chorus else "0", soundfont, midi_path]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not os.path.isfile(wav_path):
        lines = (result.stderr or result.stdout).strip().splitlines()
        raise SkipFile(f"fluidsynth failed: {lines[-1] if lines else result.returncode}")


def render(job: Job, ctx: Context):
    rng = rng_for(ctx.seed, job.key)
    _, _, low, high, poly = PROGRAMS[job.cls]
    program = job.params["program"]
    seconds = float(rng.uniform(15, 35))
    notes, tempo, style = compose(rng, seconds, low, high, poly)
    reverb, chorus = bool(rng.random() < 0.5), bool(rng.random() < 0.3)
    controllers = {7: int(rng.integers(70, 128)), 11: int(rng.integers(80, 128)), 10: 64}
    with tempfile.TemporaryDirectory(prefix="samstream_midi_") as tmp:
        midi_path, wav_path = os.path.join(tmp, "piece.mid"), os.path.join(tmp, "piece.wav")
        write_midi(midi_path, notes, tempo, program, controllers=controllers)
        fluidsynth_render(midi_path, wav_path, reverb, chorus)
        audio, rate = load_audio(wav_path)
    if rng.random() < 0.5:
        audio = apply_eq(audio, random_eq(rng, strength_db=6.0))
    extra = {"program": program, "tempo": round(tempo, 2), "style": style, "notes": len(notes),
             "fluidsynth_reverb": reverb, "fluidsynth_chorus": chorus}
    return finish(job, ctx, np.asarray(audio), rate, PACKAGE, LICENCE, group=f"gm{program:03d}",
                  source=f"MIDI by samstream, GM program {program}", extra=extra)
