"""Speech from espeak-ng: many voices and variants, sentences the project writes.

A synthetic engine has few voices, so every file varies speed, pitch, amplitude and
word gap at synthesis, then vocal-tract length (the resampling trick: the 22.05 kHz
output is read as if sampled at 22.05 kHz x f, which scales formants and pitch by f),
EQ (microphones, telephones) and rooms afterwards.

Split by voice: a file is ``val`` when its language voice or its variant is held out
(``VAL_LANGUAGES``, ``VAL_VARIANTS``); training files use neither, so validation voices
are never heard in training.
"""
from __future__ import annotations

import io
import subprocess

import numpy as np
import soundfile as sf

from .audio import SkipFile, apply_eq, apply_rir, biquad, random_eq, resample, synthetic_rir
from .jobs import Context, Job, count, finish, rng_for
from .system import require_tool

PACKAGE = "espeak-ng"
LICENCE = "GPL-3.0-or-later (espeak-ng); text written by samstream"

TRAIN_LANGUAGES = ("en-us", "en-gb-x-rp", "en-gb", "en-029", "en-gb-x-gbclan", "de", "fr-fr", "es",
                   "it", "pt-br", "pl", "sv", "hi", "cy")
VAL_LANGUAGES = ("en-gb-scotland", "en-us-nyc", "en-gb-x-gbcwmd", "nl")
TRAIN_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "f1", "f2", "f3", "f4", "klatt", "klatt2",
                  "klatt4", "adam", "alex", "alicia", "andrea", "andy", "annie", "antonio", "aunty",
                  "belinda", "benjamin", "boris", "caleb", "david", "ed", "edward", "gene", "gustave",
                  "henrique", "hugo", "iven", "jacky", "john", "linda", "marco", "mario", "max",
                  "michael", "mike", "norbert", "pablo", "paul", "pedro", "quincy", "rob", "robert",
                  "sandro", "shelby", "steph", "travis", "victor", "zac", "whisper", "grandma")
VAL_VARIANTS = ("m7", "m8", "f5", "klatt3", "edward2", "iven3", "steph2", "grandpa", "lee", "michel")

TRAIN_FILES, VAL_FILES = 560, 90          # at scale 1: about 2.5 h and 0.4 h

_SUBJECTS = ("the engineer", "my neighbour", "the band", "a small dog", "the driver", "our teacher",
             "the crowd", "my sister", "the old man", "a young woman", "the children", "the captain",
             "everyone here", "the singer", "the doctor", "nobody", "the farmer", "a stranger")
_VERBS = ("turned down", "picked up", "found", "forgot", "carried", "painted", "fixed", "opened",
          "brought back", "lost", "repaired", "moved", "watched", "sold", "borrowed", "tested")
_OBJECTS = ("the microphone", "a red bicycle", "the old radio", "seven boxes", "the kitchen door",
            "a cup of coffee", "the front window", "the blue guitar", "the morning paper",
            "a heavy suitcase", "the last train ticket", "the garden gate", "two lamps")
_TAILS = ("before the show started", "in the rain", "without a word", "late last night",
          "near the station", "after lunch", "for the third time", "on Monday morning",
          "at the back of the hall", "with a smile", "just in time", "by the river")
_LINES = (
    "Check one, two. Can you hear me at the back?", "There's a hum in the monitors tonight.",
    "Please turn off your phones before the concert begins.", "The next train leaves at half past six.",
    "Could you say that again a little more slowly?", "We will be right back after a short break.",
    "Thank you all for coming out this evening.", "The weather will stay cold and windy all week.",
    "I think the bass is too loud in the mix.", "Turn left at the lights and keep going straight.",
    "Has anyone seen my keys? They were on the table.", "Good morning, and welcome to the show.",
    "Ladies and gentlemen, the doors will open shortly.", "It was the best meal I've had in years.",
    "Let's try that chorus one more time from the top.", "How many people are waiting outside?",
    "The results are in, and they look very promising.", "Don't forget to bring a warm jacket.",
)
_NUMBERS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "twenty",
            "forty two", "a hundred", "sixteen")


def sentence(rng: np.random.Generator) -> str:
    kind = rng.integers(0, 4)
    if kind == 0:
        return str(rng.choice(_LINES))
    if kind == 1:
        count_words = rng.integers(3, 7)
        return ", ".join(str(w) for w in rng.choice(_NUMBERS, count_words)) + "."
    words = [rng.choice(_SUBJECTS), rng.choice(_VERBS), rng.choice(_OBJECTS)]
    if rng.random() < 0.7:
        words.append(rng.choice(_TAILS))
    text = " ".join(str(w) for w in words)
    text = text[0].upper() + text[1:]
    return text + ("?" if rng.random() < 0.2 else ".")


def plan(ctx: Context) -> list[Job]:
    jobs = []
    for split, languages, variants, base in (
            ("train", TRAIN_LANGUAGES, TRAIN_VARIANTS, TRAIN_FILES),
            ("val", VAL_LANGUAGES + TRAIN_LANGUAGES[:3], VAL_VARIANTS, VAL_FILES)):
        rng = rng_for(ctx.seed, "speech-plan", split)
        for index in range(count(base, ctx.scale)):
            language = str(rng.choice(languages))
            variant = str(rng.choice(variants))
            if split == "val" and rng.random() < 0.3:
                language = str(rng.choice(VAL_LANGUAGES))
            jobs.append(Job(key=f"speech/{language}+{variant}/{split}{index:04d}", family="speech", cls="speech",
                            split=split, params={"voice": f"{language}+{variant}"}))
    return jobs


def synthesize(espeak: str, voice: str, text: str, speed: int, pitch: int, amplitude: int,
               gap: int) -> tuple[np.ndarray, int]:
    command = [espeak, "--stdout", "-v", voice, "-s", str(speed), "-p", str(pitch), "-a", str(amplitude),
               "-g", str(gap), text]
    result = subprocess.run(command, capture_output=True, check=False)
    if result.returncode != 0 or len(result.stdout) < 100:
        message = result.stderr.decode(errors="replace").strip().splitlines()
        raise SkipFile(f"espeak-ng failed for voice {voice}: {message[-1] if message else result.returncode}")
    data, rate = sf.read(io.BytesIO(result.stdout), dtype="float64", always_2d=True)
    return data[:, 0], rate


def render_voice_file(job: Job, ctx: Context) -> tuple[np.ndarray, dict]:
    """A few utterances of one voice with pauses, coloured; 48 kHz float64."""
    espeak = require_tool("espeak-ng")
    rng = rng_for(ctx.seed, job.key)
    voice = job.params["voice"]
    base_speed, base_pitch = rng.integers(120, 220), rng.integers(20, 80)
    vtl = float(np.exp(rng.uniform(np.log(0.86), np.log(1.17))))
    pieces, texts = [], []
    for _ in range(rng.integers(3, 7)):
        text = sentence(rng)
        x, rate = synthesize(espeak, voice, text, int(np.clip(base_speed + rng.integers(-25, 26), 90, 280)),
                             int(np.clip(base_pitch + rng.integers(-12, 13), 0, 99)),
                             int(rng.integers(60, 181)), int(rng.integers(0, 9)))
        y = resample(x, round(rate * vtl))           # vocal-tract length / pitch shift
        pieces.append(y * 10.0 ** (rng.uniform(-4, 4) / 20.0))
        pieces.append(np.zeros(int(rng.uniform(0.15, 1.2) * 48_000)))
        texts.append(text)
    audio = np.concatenate(pieces[:-1])
    if rng.random() < 0.8:
        audio = apply_eq(audio, random_eq(rng, strength_db=10.0))
    if rng.random() < 0.1:                              # telephone / radio band
        audio = apply_eq(audio, np.concatenate([biquad("highpass", 300, q=0.9), biquad("lowpass", 3400, q=0.9)]))
    room = None
    if rng.random() < 0.5:
        room = float(rng.uniform(0.15, 0.8))
        audio = apply_rir(np.concatenate([audio, np.zeros(int(room * 48_000))]),
                          synthetic_rir(rng, room, direct_to_reverb_db=rng.uniform(0.0, 12.0)))
    return audio, {"voice": voice, "vtl": round(vtl, 4), "rt60": room, "text": " ".join(texts)}


def render(job: Job, ctx: Context):
    audio, extra = render_voice_file(job, ctx)
    return finish(job, ctx, audio, 48_000, PACKAGE, LICENCE, group=job.params["voice"],
                  source=f"espeak-ng -v {job.params['voice']}", extra=extra)
