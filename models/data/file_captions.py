"""Captions per file, for the classes that gather unlike recordings under one name.

The effect classes collect files from game and sample packages: "engine" holds a car horn
and a steam locomotive, "animal" a snake's hiss and a horse's canter, "drums" single tabla
strokes beside whole breakbeats. A caption drawn from the whole class can name another sound
than the file holds ("a train" over a car horn), which teaches the model a wrong pairing and
makes a validation mixture unanswerable. So each such class has captions that fit every file
of it (``generic``) and captions that fit only the files whose source name matches a pattern;
a file gets the generic ones plus those of every pattern it matches.

Patterns are ``re.search`` over the lower-case source name ``package:relative/path`` (the
names ``render_effects`` classifies). No caption here is used by another class, so the
mixture sampler's rule that an interferer never answers to the target's caption still holds.
"""
from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class FileCaptionRules:
    generic: tuple[str, ...]
    specific: tuple[tuple[str, tuple[str, ...]], ...]


def _rules(generic: tuple[str, ...], *specific: tuple[str, tuple[str, ...]]) -> FileCaptionRules:
    return FileCaptionRules(generic, specific)


WESNOTH = r"wesnoth-1\.16-data:"

RULES: dict[str, FileCaptionRules] = {
    "animal": _rules(
        ("animal sounds", "an animal", "creature noises"),
        (r"bat-", ("a bat", "a bat squeaking")),
        (r"bite", ("an animal biting", "a bite")),
        (r"hiss", ("a snake hissing", "a hissing snake")),
        (r"wolf-growl", ("wolf growling",)),
        (r"wolf", ("a wolf", "a wolf yelping")),
        (r"horse", ("a horse", "horse hooves")),
        (r"gryphon|drake", ("a beast shrieking", "a fantasy beast")),
        (r"tusker", ("a boar", "a charging beast")),
        (r"/cow\.", ("a cow mooing", "farm animals")),
        (r"/sheep\.", ("a sheep bleating", "farm animals")),
    ),
    "engine": _rules(
        (),
        (r"sfx/horn\.", ("a car horn", "a horn honking", "a car hooting")),
        (r"skid", ("tyres skidding", "a car skidding", "a vehicle")),
        (r"airplane", ("an airplane", "a jet engine", "engine", "a vehicle")),
        (r"car_|engine_(large|small)", ("engine", "a car engine", "motor running", "a vehicle")),
        (r"machine|3d_printer", ("machinery", "a machine running", "motor running")),
        (r"spaceship_engine", ("engine", "a spaceship engine", "a rumbling engine")),
        (r"locomotive", ("engine", "a train", "a steam locomotive", "a vehicle")),
    ),
    "scifi": _rules(
        (),
        (WESNOTH, ("magic spell", "magical shimmer", "a spell being cast")),
        (r"glitch_|mehackit_robot|bzzt", ("sci-fi effect", "electronic zap", "a glitchy electronic sound")),
        (r"mehackit_robot|glitch_robot", ("a robot",)),
        (r"spaceship", ("sci-fi effect", "spaceship", "a spaceship flying")),
        (r"warp|portal|forcefield|tractor_beam|sfx/(appear|swap|dark)\.",
         ("sci-fi effect", "a warp sound", "a teleport sound")),
        (r"sfx/(boing|plopp|jump|wee|goo|inflate|plunger|parachute|nitro)\.",
         ("a cartoon sound effect", "a comical sound", "a boing")),
        (r"filter_sweep|chroma", ("sci-fi effect", "a filter sweep", "a synth sweep")),
    ),
    "drums": _rules(
        ("drums", "percussion"),
        (r"loop_(amen|breakbeat|mehackit|mika)|break0|beat0|jungle|house_loop|wardrums",
         ("a drum kit", "drum beat", "drum loop", "a drummer playing", "kick and snare")),
        (r"loop_(compus|perc|safari)", ("drum loop", "a percussion loop")),
        (r"tabla", ("a tabla", "hand drums")),
        (r"kick|bd_|bassdrum|drum_bass|nasty_bass", ("a kick drum", "a bass drum", "a drum hit")),
        (r"snare|sn_|rim|sidestick", ("a snare drum", "a snare hit", "a drum hit")),
        (r"hihat", ("a hi-hat", "a cymbal")),
        (r"cymbal|crash|ride|splash", ("a cymbal", "a cymbal crash")),
        (r"tom", ("a tom drum", "a drum hit")),
        (r"drums/zap", ("an electronic drum", "a drum hit")),
        (r"clap", ("hand claps", "a clap")),
        (r"shaker|cowbell|clav|wood", ("a percussion hit", "a shaker or a block")),
        (r"drum_roll", ("a drum roll",)),
    ),
    "impact": _rules(
        ("impact", "a hit"),
        (WESNOTH + r"(sword|axe|mace|club|flail|hatchet|staff|spear|knife|throwing-knife|claws|pincers|tail)",
         ("a weapon strike", "a melee hit")),
        (r"sword", ("sword clash", "metal clang")),
        (r"anvil|metal_clang|hammer", ("metal clang", "hammering")),
        (r"crash|sfx/break|bowling|wooden_bridge", ("a crash", "something breaking")),
        (r"fist|mud-|squishy|skeleton|net\.|ball_bounce|swatter|strike|hit0|perc_door|perc_impact",
         ("a thud", "a knock")),
    ),
    "whoosh": _rules(
        ("whoosh", "swoosh", "a swish", "something flying past"),
        (r"bow|dart", ("an arrow whizzing",)),
        (r"sling|throw", ("something thrown",)),
    ),
    "explosion": _rules(
        ("a bang", "boom"),
        (r"explo|cineboom|water-blast", ("explosion", "a blast")),
        (r"gunshot|sfx/shoot|thunderstick", ("gunshot", "a gun firing")),
        (r"/thunder\.", ("thunder", "a thunderclap", "rumble")),
        (r"rumble|cave-in", ("rumble", "rocks falling")),
        (r"fireworks", ("fireworks", "explosion")),
    ),
    "bells": _rules(
        ("bells", "ding"),
        (r"wind_chimes|chime", ("chimes", "wind chimes")),
        (r"dong|bong", ("a gong", "a bell ringing")),
        (r"bell", ("a bell ringing", "a bell")),
        (r"triangle", ("a triangle", "a metallic ding")),
        (r"perc_till", ("a till bell", "a bell")),
    ),
    "beeps": _rules(
        ("beeps", "electronic beeps", "blips"),
        (r"mehackit_phone", ("a phone ringing", "a ringtone")),
        (r"^(?!.*mehackit_phone)", ("user interface sounds", "a notification sound")),
    ),
    "crowd": _rules(
        ("crowd", "crowd noise"),
        (r"applause", ("applause", "people clapping")),
        (r"goal_scored|raving_crowd", ("an audience cheering", "people cheering")),
        (r"restaurant", ("a busy restaurant", "people chattering")),
    ),
    "water": _rules(
        ("water",),
        (r"/rain\.", ("rain", "rainfall")),
        (r"river", ("a stream flowing", "running water")),
        (r"splash", ("splashing", "a splash")),
        (r"waterfall", ("waterfall", "running water")),
    ),
    "fire": _rules(
        ("fire", "flames burning"),
        (r"campfire", ("crackling fire", "a campfire")),
        (r"torch", ("a torch",)),
        (r"fuse", ("a burning fuse",)),
        (WESNOTH + r"(fire|flame|melee-fire)", ("a burst of flame",)),
    ),
    "ambience": _rules(
        ("ambience", "background ambience", "atmosphere"),
        (r"ambient/night", ("night ambience", "crickets at night")),
        (r"ambient/ship", ("a creaking ship", "a ship at sea")),
        (r"drone|haunted|weirdo|garzul|glass_|lunar", ("an eerie drone",)),
        (r"sauna|soft_buzz", ("room tone",)),
        (r"industrial|loop_electric", ("industrial ambience",)),
    ),
    "vocalization": _rules(
        ("nonverbal vocal sounds",),
        (r"-die|wilhelmscream|wail", ("a scream", "a death cry")),
        (r"-hit|sfx/ugh|ugg|groan", ("a groan of pain", "grunting")),
        (r"laugh", ("laughing", "a laugh")),
        (r"-attack", ("shouting",)),
        (r"ogre|troll|yeti|zombie|ghoul|lich|wose|naga|orc|goblin", ("monster growl",)),
        (r"burp", ("a burp", "a belch")),
        (r"breath", ("breathing", "heavy breathing")),
    ),
    "birds": _rules(
        ("birds",),
        (r"crow", ("a crow", "a crow cawing")),
        (r"^(?!.*crow)", ("birdsong", "birds chirping", "birds singing")),
    ),
    "clicks": _rules(
        ("clicks", "clicking", "ticking"),
        (r"clock", ("a clock ticking",)),
        (r"metronome", ("a metronome",)),
    ),
}
_COMPILED = {cls: tuple((re.compile(pattern), captions) for pattern, captions in rules.specific)
             for cls, rules in RULES.items()}


def captions_for_file(cls: str, name: str) -> tuple[str, ...] | None:
    """The captions that fit the file ``package:relative/path`` of class ``cls``; None where the
    class has no rules here (its class captions fit every file)."""
    rules = RULES.get(cls)
    if rules is None:
        return None
    lowered = name.lower()
    found = list(rules.generic)
    for pattern, captions in _COMPILED[cls]:
        if pattern.search(lowered):
            found.extend(caption for caption in captions if caption not in found)
    return tuple(found)
