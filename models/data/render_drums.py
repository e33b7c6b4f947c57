"""Drums: hydrogen-drumkits one-shots sequenced into grooves by the project.

Each kit's ``drumkit.xml`` is parsed; instrument names map to roles (kick, snare,
closed/open hat, tom, cymbal, percussion) by keywords. A groove picks a style (rock,
four-on-the-floor, funk, half-time, shuffle, breakbeat; hand percussion for kits with
no kick or snare), a tempo, velocity layers and fills, with humanised timing.
Whole kits are held out for validation (``VAL_KITS``); each kit keeps its own licence.
"""
from __future__ import annotations

import functools
import os
import re
import xml.etree.ElementTree as ElementTree

import numpy as np

from .audio import SkipFile, load_audio, resample
from .jobs import Context, Job, count, finish, rng_for

PACKAGE = "hydrogen-drumkits"
KITS_DIR = "/usr/share/hydrogen/data/drumkits"
VAL_KITS = ("ColomboAcousticDrumkit", "HardElectro1", "Millo_MultiLayered3")
# From /usr/share/doc/hydrogen-drumkits/copyright (Debian's per-kit licences).
KIT_LICENCES = {
    "Audiophob": "CC0", "BJA_Pacific": "CC-BY-SA-3.0-us", "ColomboAcousticDrumkit": "GPL-2+ with composition exception",
    "ElectricEmpireKit": "GPL-2+", "ForzeeStereo": "GPL-2", "Gimme A Hand 1.0": "GPL-2", "HardElectro1": "GPL-2+",
    "Millo-Drums_v.1": "GPL-2", "Millo_MultiLayered2": "GPL-2", "Millo_MultiLayered3": "GPL-2",
    "The Black Pearl 1.0": "GPL-2", "VariBreaks": "GPL-2+", "circAfrique v4": "CC-BY-SA-3.0",
    "rumpf_kit_z01_h2": "CC-BY-3.0",
}
TRAIN_GROOVES, VAL_GROOVES = 18, 6          # per kit at scale 1, 15-30 s each
SR = 48_000

ROLE_RULES = (              # first match wins; matched against the lower-cased instrument name
    ("open", r"open|\bop\b|semi|swish|ohh"),
    ("kick", r"kick|bass ?drum|bassdrum|\bbd\b|dununba1 head|bass$|thump"),
    ("hat", r"hat|\bhh\b|maraca|shaker|tambourine"),
    ("snare", r"snare|clap|slap|rim|stick|snap"),
    ("cymbal", r"crash|ride|splash|china|cymbal"),
    ("tom", r"tom|conga|bongo|djembe|sangban|kenkeni|drum \d|tone|head"),
    ("perc", r"cowbell|clave|woodblock|agogo|glass|whistle|bell|zap|fx|click"),
)
STYLES = {  # 16 steps per bar (12 for shuffle): role -> steps
    "rock": {"kick": (0, 8, 10), "snare": (4, 12), "hat": tuple(range(0, 16, 2))},
    "four": {"kick": (0, 4, 8, 12), "snare": (4, 12), "hat": tuple(range(16)), "open": (2, 6, 10, 14)},
    "funk": {"kick": (0, 3, 6, 10), "snare": (4, 12), "hat": tuple(range(16))},
    "halftime": {"kick": (0, 3, 10), "snare": (8,), "hat": tuple(range(0, 16, 2))},
    "shuffle": {"kick": (0, 6), "snare": (3, 9), "hat": (0, 2, 3, 5, 6, 8, 9, 11)},
    "breakbeat": {"kick": (0, 10, 11), "snare": (4, 12, 7), "hat": tuple(range(0, 16, 2))},
}


@functools.lru_cache(maxsize=8)
def kit(name: str) -> tuple[str, dict[str, list[list[tuple[float, float, str]]]]]:
    """(licence, {role: [instrument = [(min velocity, max velocity, sample path), ...]]})."""
    folder = os.path.join(KITS_DIR, name)
    try:
        tree = ElementTree.parse(os.path.join(folder, "drumkit.xml"))
    except (OSError, ElementTree.ParseError) as error:
        raise SkipFile(f"unreadable drumkit.xml in {name}: {error}") from None
    root = tree.getroot()
    strip = re.compile(r"^\{.*\}")
    for element in root.iter():
        element.tag = strip.sub("", element.tag)
    licence = (KIT_LICENCES.get(name) or (root.findtext("license") or "").strip()
               or "see /usr/share/doc/hydrogen-drumkits/copyright")
    roles: dict[str, list] = {}
    for instrument in root.iter("instrument"):
        label = (instrument.findtext("name") or "").strip().lower()
        layers = []
        for layer in instrument.iter("layer"):
            filename = (layer.findtext("filename") or "").strip()
            if filename and os.path.isfile(os.path.join(folder, filename)):
                layers.append((float(layer.findtext("min") or 0), float(layer.findtext("max") or 1),
                               os.path.join(folder, filename)))
        if not layers and (instrument.findtext("filename") or "").strip():
            path = os.path.join(folder, instrument.findtext("filename").strip())
            if os.path.isfile(path):
                layers.append((0.0, 1.0, path))
        role = next((r for r, pattern in ROLE_RULES if re.search(pattern, label)), None)
        if layers and role:
            roles.setdefault(role, []).append(layers)
    return licence, roles


def kit_names() -> list[str]:
    if not os.path.isdir(KITS_DIR):
        return []
    return sorted(d for d in os.listdir(KITS_DIR) if os.path.isfile(os.path.join(KITS_DIR, d, "drumkit.xml")))


def plan(ctx: Context) -> list[Job]:
    jobs = []
    for name in kit_names():
        split = "val" if name in VAL_KITS else "train"
        for index in range(count(VAL_GROOVES if split == "val" else TRAIN_GROOVES, ctx.scale)):
            jobs.append(Job(key=f"drums/{name}/{index:04d}", family="drums", cls="drums", split=split,
                            params={"kit": name}))
    return jobs


@functools.lru_cache(maxsize=256)
def one_shot(path: str) -> np.ndarray:
    x, rate = load_audio(path)
    return resample(x, rate)[: 4 * SR]


def _hit(out: np.ndarray, instrument: list, velocity: float, at: int) -> None:
    layers = [layer for layer in instrument if layer[0] <= velocity <= layer[1]] or instrument
    sample = one_shot(layers[len(layers) // 2][2] if len(layers) > 1 else layers[0][2])
    if at >= out.size:
        return
    stop = min(out.size, at + sample.size)
    out[at:stop] += sample[: stop - at] * velocity ** 1.5


def groove(rng: np.random.Generator, roles: dict, seconds: float) -> tuple[np.ndarray, dict]:
    if not roles:
        raise SkipFile("kit has no usable instruments")
    conventional = "kick" in roles and "snare" in roles
    style = str(rng.choice(list(STYLES))) if conventional else "hand"
    tempo = float(rng.uniform(70, 170) if style != "halftime" else rng.uniform(120, 170))
    steps_per_bar = 12 if style == "shuffle" else 16
    step_s = 60.0 / tempo * 4 / steps_per_bar
    bars = max(1, int(seconds / (step_s * steps_per_bar)))
    chosen = {role: instruments[rng.integers(len(instruments))] for role, instruments in roles.items()}
    out = np.zeros(int((bars * steps_per_bar * step_s + 3.0) * SR))
    if style == "hand":
        pattern = {role: tuple(np.flatnonzero(rng.random(16) < 0.35)) for role in chosen}
    else:
        pattern = dict(STYLES[style])
    accent = float(rng.uniform(0.6, 1.0))
    for bar in range(bars):
        fill = "tom" in chosen and bar % 4 == 3 and rng.random() < 0.6
        for step in range(steps_per_bar):
            t = (bar * steps_per_bar + step) * step_s + rng.normal(0, 0.004)
            at = max(0, int(t * SR))
            if fill and step >= steps_per_bar * 3 // 4:
                _hit(out, chosen["tom"], accent * rng.uniform(0.6, 1.0), at)
                continue
            for role, steps in pattern.items():
                if role not in chosen or step not in steps or rng.random() < 0.05:
                    continue
                velocity = accent * (1.0 if step % 4 == 0 else rng.uniform(0.45, 0.9))
                _hit(out, chosen[role], float(np.clip(velocity, 0.05, 1.0)), at)
            if style != "hand" and "snare" in chosen and rng.random() < 0.06:      # ghost notes
                _hit(out, chosen["snare"], accent * 0.25, at)
        if "cymbal" in chosen and bar % 4 == 0 and rng.random() < 0.7:
            _hit(out, chosen["cymbal"], accent, int(bar * steps_per_bar * step_s * SR))
        if "perc" in chosen and style != "hand" and rng.random() < 0.3:
            _hit(out, chosen["perc"], accent * 0.7, int((bar * steps_per_bar + 2) * step_s * SR))
    return out, {"style": style, "tempo": round(tempo, 2), "bars": bars}


def render(job: Job, ctx: Context):
    rng = rng_for(ctx.seed, job.key)
    licence, roles = kit(job.params["kit"])
    audio, extra = groove(rng, roles, float(rng.uniform(15, 30)))
    return finish(job, ctx, audio, SR, PACKAGE, licence, group=job.params["kit"],
                  source=f"hydrogen kit {job.params['kit']}", extra=extra)
