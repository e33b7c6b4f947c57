"""Effects, ambience, music beds and recorded instruments from game and music packages.

The rule (documented, deterministic): each audio file of ``SOURCES`` is named
``package:relative/path`` (lower case); the first pattern of ``RULES`` that matches
(``re.search``) gives its class. A file no rule matches is skipped and logged as
"no class rule" (e.g. single-cycle waveforms, DrumSynth presets, UI jingles that fit no
class). Files are split by file: within each class, the files whose stable hash ranks
lowest go to validation (15 %, at least one when a class has 3 or more files), so a
recording is never cut into training and validation segments. Licences are per file
(Debian copyright files, see ``licences``).
"""
from __future__ import annotations

import os
import re

from .audio import load_audio
from .file_captions import captions_for_file
from .jobs import Context, Job, finish, seed_for
from .licences import licence_for

# package -> (folder, extensions)
SOURCES = {
    "sonic-pi-samples": ("/usr/share/sonic-pi/samples", (".flac", ".wav")),
    "lmms-common": ("/usr/share/lmms/samples", (".ogg", ".wav", ".flac")),
    "wesnoth-1.16-data": ("/usr/share/games/wesnoth/1.16/data/core/sounds", (".ogg", ".wav")),
    "wesnoth-1.16-music": ("/usr/share/games/wesnoth/1.16/data/core/music", (".ogg",)),
    "supertuxkart-data": ("/usr/share/games/supertuxkart/data", (".ogg", ".wav")),
}
VAL_FRACTION = 0.15

RULES = (
    # music beds
    (r"^wesnoth-1\.16-music:", "music"),
    (r"^supertuxkart-data:music/", "music"),
    (r"^supertuxkart-data:tracks/.*(theme|remix|rabbit_hole|intro2)", "music"),
    (r"^supertuxkart-data:sfx/(last_lap_fanfare|gp_end|race_finish_victory|track_intro)", "music"),
    (r"^supertuxkart-data:sfx/gnu_flute", "flute"),
    # recorded instruments (lmms-common, sonic-pi-samples)
    (r"lmms-common:instruments/piano|sonic-pi-samples:ambi_piano", "piano"),
    (r"lmms-common:instruments/e_piano", "electric_piano"),
    (r"lmms-common:instruments/(church_organ|e_organ)", "organ"),
    (r"lmms-common:instruments/steel_guitar_.*distorted|sonic-pi-samples:guit_", "electric_guitar"),
    (r"lmms-common:(instruments/steel_guitar|latin/latin_guitar)", "acoustic_guitar"),
    (r"lmms-common:instruments/cello", "cello"),
    (r"lmms-common:instruments/violin", "violin"),
    (r"lmms-common:instruments/flute", "flute"),
    (r"lmms-common:instruments/trumpet", "trumpet"),
    (r"lmms-common:bassloops/techno_synth", "synth_lead"),
    (r"lmms-common:(instruments/bassslap|basses/|bassloops/)|sonic-pi-samples:bass_", "bass"),
    (r"lmms-common:stringsnpads/(bell_choir)", "bells"),
    (r"lmms-common:stringsnpads/(chorus|rave_choir)|sonic-pi-samples:ambi_choir", "choir"),
    (r"lmms-common:stringsnpads/.*string", "string_ensemble"),
    (r"lmms-common:stringsnpads/", "synth_pad"),
    # drums and percussion recordings
    (r"lmms-common:(beats|drums)/|sonic-pi-samples:(bd_|sn_|drum_|tabla_|loop_(amen|breakbeat|compus|"
     r"mika|perc|safari|tabla|mehackit))|sonic-pi-samples:elec_(.*kick|.*snare|fuzz_tom|cymbal|wood)|"
     r"wesnoth-1\.16-data:ambient/wardrums", "drums"),
    # vocal sounds, animals, birds
    (r"wesnoth-1\.16-data:(bat-|bite|hiss|wolf|horse|gryphon|drake|tusker)|supertuxkart-data:.*/(cow|sheep)\.",
     "animal"),
    (r"birds|_crow\.|wesnoth-1\.16-data:ambient/morning", "birds"),
    (r"wesnoth-1\.16-data:.*horn-signals/", "trumpet"),
    (r"wesnoth-1\.16-data:.*(-miss|miss-|bow|sling|throw-|dart|swish)|swoosh|woosh|swash", "whoosh"),
    (r"wesnoth-1\.16-data:(human|dwarf|elf-|orc|goblin|troll|ogre|lich|zombie|groan|ugg|wail|witches|"
     r"yeti|mermaid|mermen|naga|wose|ghoul)|wilhelmscream|sfx/ugh|misc_burp|breath", "vocalization"),
    # effects
    (r"explo|cineboom|cave-in|rumble|gunshot|thunder|fireworks|sfx/shoot|detonate|blast\.", "explosion"),
    (r"wesnoth-1\.16-data:(fire|flame|torch|melee-fire|fuse|ambient/campfire)", "fire"),
    (r"water|rain\.|river|splash", "water"),
    (r"engine|car_|skid|machine|locomotive|3d_printer|sfx/horn|airplane", "engine"),
    (r"wesnoth-1\.16-data:(sword|axe|mace|club|flail|hatchet|staff|spear|knife|dagger|fist|claws|"
     r"pincers|tail|net\.|squishy|skeleton|mud-|throwing-knife)|anvil|crash|hammer|metal_clang|sfx/strike|swatter|"
     r"sfx/break|wooden_bridge|ball_bounce|bowling|perc_(door|impact)|misc/hit", "impact"),
    (r"wesnoth-1\.16-data:(magic|heal|petrified|slowed|entangle|poison|ink|lightning|faerie|holy|thorns|"
     r"dragonstick|potion)|glitch_|mehackit_robot|forcefield|portal|tractor_beam|sfx/(appear|dark|swap|"
     r"goo|inflate|plunger|parachute|spaceship|boing|plopp|jump|wee|bzzt|nitro)|effects/(warp|filter_sweep|"
     r"chroma)|spaceship", "scifi"),
    (r"bell|chime|dong|elec_(bong|triangle)|perc_till", "bells"),
    (r"wesnoth-1\.16-data:(arrive|button|chat-|checkbox|contract|expand|gamestart|join|leave|receive|"
     r"select|slider|timer)|elec_(beep|blip|blup|ping|plip|pop|tick|twip|flip)|mehackit_phone|electric_ping|"
     r"sfx/(grab_collectable|locked|pre_start_race|start_race|race_finish|energy_bar)|introcutscene/button",
     "beeps"),
    (r"applause|crowd|restaurant|goal_scored", "crowd"),
    (r"metronome|sfx/clock", "clicks"),
    (r"vinyl_hiss", "crackle"),
    (r"sonic-pi-samples:ambi_|wesnoth-1\.16-data:ambient/(night|ship)|loop_(industrial|drone|electric|"
     r"weirdo|garzul)", "ambience"),
)
_COMPILED = tuple((re.compile(pattern), cls) for pattern, cls in RULES)


def classify(name: str) -> str | None:
    """The class of ``package:relative/path`` by the first matching rule, or None."""
    lowered = name.lower()
    return next((cls for pattern, cls in _COMPILED if pattern.search(lowered)), None)


def source_files(packages=None) -> list[tuple[str, str, str]]:
    """(package, relative path, absolute path) of every audio file, sorted."""
    out = []
    for package, (folder, extensions) in SOURCES.items():
        if (packages is not None and package not in packages) or not os.path.isdir(folder):
            continue
        for directory, _, files in os.walk(folder):
            for filename in files:
                if filename.lower().endswith(extensions):
                    path = os.path.join(directory, filename)
                    out.append((package, os.path.relpath(path, folder), path))
    return sorted(out)


def assign_splits(named: list[tuple[str, str]]) -> dict[str, str]:
    """{name: split} for (name, class) pairs: per class, the lowest-hash files go to val."""
    by_class: dict[str, list[str]] = {}
    for name, cls in named:
        by_class.setdefault(cls, []).append(name)
    splits = {}
    for names in by_class.values():
        ranked = sorted(names, key=lambda n: seed_for("split", n))
        n_val = max(round(VAL_FRACTION * len(ranked)), 1) if len(ranked) >= 3 else 0
        for rank, name in enumerate(ranked):
            splits[name] = "val" if rank < n_val else "train"
    return splits


def plan(ctx: Context, packages=None) -> tuple[list[Job], list[tuple[str, str]]]:
    """(jobs, unclassified (path, reason)) for every source file."""
    named, paths, unclassified = [], {}, []
    for package, relative, path in source_files(packages):
        name = f"{package}:{relative}"
        cls = classify(name)
        if cls is None:
            unclassified.append((path, "no class rule"))
            continue
        named.append((name, cls))
        paths[name] = (package, path)
    splits = assign_splits(named)
    jobs = []
    for name, cls in named:
        package, path = paths[name]
        family = "music" if cls == "music" else "effect"
        params = {"package": package, "path": path}
        captions = captions_for_file(cls, name)
        if captions is not None:
            params["captions"] = list(captions)
        jobs.append(Job(key=f"{family}/{cls}/{name.replace(':', '/')}", family=family, cls=cls, split=splits[name],
                        params=params))
    return jobs, unclassified


def render(job: Job, ctx: Context):
    audio, rate = load_audio(job.params["path"])
    package = job.params["package"]
    return finish(job, ctx, audio, rate, package, licence_for(package, job.params["path"]),
                  group=job.params["path"], source=job.params["path"])
