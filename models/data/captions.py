"""Classes of the corpus and their captions.

Every class carries 3-8 captions and paraphrases, so a prompt is free text that the
text encoder places near these phrases, not a label id. ``family`` names the renderer
that produces the class (speech, instrument, drums, effect, music, noise, user).
Users' own classes (``user_data``) get captions from their folder names or manifests.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClassInfo:
    name: str
    family: str
    captions: tuple[str, ...]
    pitched: bool = False        # pitched against pitched is the hard case (DESIGN.md)


def _c(name: str, family: str, pitched: bool, *captions: str) -> ClassInfo:
    return ClassInfo(name, family, tuple(captions), pitched)


_ALL = (
    # speech (espeak-ng)
    _c("speech", "speech", True, "speech", "a person speaking", "someone talking", "voice",
       "a man or a woman speaking", "spoken words", "dialogue", "a talker"),
    # instruments (fluidsynth + FluidR3_GM, MIDI written by the project; some real
    # recordings from lmms-common and sonic-pi-samples join these classes)
    _c("piano", "instrument", True, "piano", "acoustic piano", "a grand piano playing",
       "piano chords", "someone playing the piano"),
    _c("electric_piano", "instrument", True, "electric piano", "rhodes", "a keyboard playing",
       "electric keys", "e-piano"),
    _c("organ", "instrument", True, "organ", "church organ", "hammond organ", "an organ playing",
       "organ chords"),
    _c("acoustic_guitar", "instrument", True, "acoustic guitar", "a guitar strumming",
       "nylon string guitar", "steel string guitar", "fingerpicked guitar"),
    _c("electric_guitar", "instrument", True, "electric guitar", "distorted guitar",
       "a guitar riff", "overdriven guitar", "clean electric guitar", "lead guitar"),
    _c("bass", "instrument", True, "bass", "bass guitar", "a bass line", "electric bass",
       "synth bass", "low bass notes"),
    _c("violin", "instrument", True, "violin", "a fiddle", "solo violin", "a violin melody",
       "bowed violin"),
    _c("cello", "instrument", True, "cello", "a cello playing", "bowed cello", "low strings",
       "solo cello"),
    _c("string_ensemble", "instrument", True, "string ensemble", "strings", "string section",
       "orchestral strings", "a string orchestra"),
    _c("trumpet", "instrument", True, "trumpet", "a trumpet playing", "brass", "a horn melody",
       "muted trumpet"),
    _c("trombone", "instrument", True, "trombone", "a trombone playing", "low brass",
       "brass section", "slide trombone"),
    _c("saxophone", "instrument", True, "saxophone", "sax", "a saxophone solo", "tenor sax",
       "alto saxophone"),
    _c("flute", "instrument", True, "flute", "a flute playing", "woodwind", "pan flute",
       "a flute melody"),
    _c("clarinet", "instrument", True, "clarinet", "a clarinet playing", "clarinet solo",
       "reed instrument", "a clarinet melody"),
    _c("synth_lead", "instrument", True, "synth lead", "synthesizer lead", "a synth melody",
       "lead synth", "square wave lead"),
    _c("synth_pad", "instrument", True, "synth pad", "synthesizer pad", "ambient pad",
       "warm pad chords", "a sustained synth"),
    _c("choir", "instrument", True, "choir", "choir singing", "voices singing aahs",
       "vocal ensemble", "a chorus"),
    _c("mallets", "instrument", True, "mallet percussion", "marimba", "vibraphone",
       "xylophone", "glockenspiel"),
    # drums (hydrogen-drumkits sequenced into grooves; drum one-shots and loops too)
    _c("drums", "drums", False, "drums", "a drum kit", "drum beat", "percussion",
       "kick and snare", "a drummer playing", "drum loop"),
    # effects and ambience (sonic-pi-samples, lmms-common, wesnoth, supertuxkart)
    _c("vocalization", "effect", False, "a scream", "grunting", "shouting", "a groan of pain",
       "monster growl", "laughing", "nonverbal vocal sounds"),
    _c("animal", "effect", False, "animal sounds", "an animal", "wolf growling", "a horse",
       "farm animals", "creature noises"),
    _c("birds", "effect", False, "birds", "birdsong", "birds chirping", "birds singing",
       "a crow"),
    _c("explosion", "effect", False, "explosion", "a blast", "boom", "gunshot",
       "a bang", "rumble"),
    _c("impact", "effect", False, "impact", "a hit", "metal clang", "sword clash",
       "a crash", "a thud", "hammering"),
    _c("whoosh", "effect", False, "whoosh", "swoosh", "a swish", "something flying past",
       "an arrow whizzing"),
    _c("scifi", "effect", False, "sci-fi effect", "laser zap", "magic spell", "a warp sound",
       "spaceship", "electronic zap", "magical shimmer"),
    _c("engine", "effect", False, "engine", "a car engine", "motor running", "machinery",
       "a vehicle", "a train"),
    _c("water", "effect", False, "water", "rain", "a stream flowing", "splashing",
       "waterfall", "running water"),
    _c("fire", "effect", False, "fire", "crackling fire", "a campfire", "flames burning",
       "a torch"),
    _c("bells", "effect", True, "bells", "a bell ringing", "chimes", "wind chimes",
       "a gong", "ding"),
    _c("beeps", "effect", True, "beeps", "electronic beeps", "user interface sounds",
       "a notification sound", "blips", "a phone ringing"),
    _c("crowd", "effect", False, "crowd", "applause", "people chattering", "crowd noise",
       "an audience cheering", "a busy restaurant"),
    _c("ambience", "effect", False, "ambience", "background ambience", "room tone",
       "an eerie drone", "night ambience", "atmosphere"),
    # music beds (wesnoth-1.16-music, supertuxkart music)
    _c("music", "music", True, "music", "background music", "a song", "a music bed",
       "orchestral music", "game soundtrack"),
    # procedural noise
    _c("hum", "noise", True, "mains hum", "electrical hum", "ground loop buzz", "50 Hz hum",
       "60 Hz hum", "hum", "buzz"),
    _c("hiss", "noise", False, "hiss", "tape hiss", "white noise", "noise floor", "static hiss"),
    _c("pink_noise", "noise", False, "pink noise", "noise", "broadband noise", "shh sound"),
    _c("brown_noise", "noise", False, "brown noise", "rumbling noise", "low noise",
       "red noise", "deep rumble"),
    _c("clicks", "noise", False, "clicks", "clicking", "digital clicks", "pops", "ticking"),
    _c("crackle", "noise", False, "crackle", "vinyl crackle", "record noise", "crackling",
       "static crackle"),
)

CLASSES: dict[str, ClassInfo] = {info.name: info for info in _ALL}


def captions_for(name: str) -> tuple[str, ...]:
    """Captions of a known class; a user class gets its own name as its caption."""
    info = CLASSES.get(name)
    if info is not None:
        return info.captions
    readable = name.replace("_", " ").replace("-", " ").strip()
    return (readable,) if readable else (name,)


# Pairs of classes where a caption of one can name a sound of the other: a kind and its
# sub-kind (birds are animals, a piano piece is music, a string section holds violins) or
# neighbours that blur (the noise colours, crackle against clicks and fire). A mixture
# never sets one against the other: the prompt would name the interferer too, and the
# reference that keeps only the target would teach, and score, the wrong answer.
_OVERLAPS = (
    ("animal", "birds"), ("animal", "vocalization"),
    ("string_ensemble", "violin"), ("string_ensemble", "cello"),
    ("hiss", "pink_noise"), ("hiss", "brown_noise"), ("pink_noise", "brown_noise"),
    ("clicks", "crackle"), ("crackle", "fire"), ("bells", "mallets"),
    *(("music", name) for name, info in CLASSES.items() if info.family in ("instrument", "drums")),
)

OVERLAPS: frozenset[frozenset[str]] = frozenset(frozenset(pair) for pair in _OVERLAPS)

# Captions broad enough to name a sound of a neighbouring class that is otherwise told
# apart ("brass" names a trombone as well as a trumpet; "a trombone" does not name a
# trumpet): with such a caption that class is not an interferer; with a specific one it is.
ALSO_NAMES: dict[str, tuple[str, ...]] = {
    "brass": ("trombone",), "a horn melody": ("trombone", "saxophone"), "brass section": ("trumpet",),
    "a keyboard playing": ("piano", "organ", "synth_lead", "synth_pad"),
    "a guitar strumming": ("electric_guitar",), "a guitar riff": ("acoustic_guitar",),
    "woodwind": ("clarinet", "saxophone"), "reed instrument": ("saxophone",),
    "a sustained synth": ("synth_lead",), "percussion": ("mallets",), "a hit": ("drums",),
    "voice": ("vocalization", "choir"), "people chattering": ("speech",),
    "rumble": ("brown_noise", "engine"), "deep rumble": ("explosion",), "rumbling noise": ("explosion",),
    "a bang": ("impact",), "a crash": ("explosion",), "metal clang": ("bells",),
    "a phone ringing": ("bells",), "ding": ("beeps",), "electronic zap": ("beeps",),
    "an eerie drone": ("synth_pad",), "ambient pad": ("ambience",), "atmosphere": ("synth_pad",),
}


def may_interfere(target_class: str, caption: str, other_class: str) -> bool:
    """Whether a sound of ``other_class`` may stand beside a target prompted by ``caption``."""
    return (other_class != target_class and frozenset((target_class, other_class)) not in OVERLAPS
            and other_class not in ALSO_NAMES.get(caption, ()))


def classes_of(family: str) -> list[str]:
    return [name for name, info in CLASSES.items() if info.family == family]
