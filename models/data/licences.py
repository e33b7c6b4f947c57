"""Per-file licences from Debian's machine-readable copyright files (DEP-5).

``licence_for(package, installed_path)`` returns the ``License:`` of the last stanza
whose ``Files:`` pattern matches the file (DEP-5: the last match wins). Source-tree
patterns such as ``data/sfx/x.ogg`` are matched against the installed path with their
first component dropped (``*/sfx/x.ogg``). Packages whose copyright file is not DEP-5
fall back to ``DEFAULTS``.
"""
from __future__ import annotations

import fnmatch
import functools
import os

DEFAULTS = {
    "wesnoth-1.16-data": "GPL-2+",
    "wesnoth-1.16-music": "GPL-2+",
    "lmms-common": "GPL-2+",
    "sonic-pi-samples": "CC0",
    "supertuxkart-data": "GPL-3+",
    "hydrogen-drumkits": "GPL-2+",
    "fluid-soundfont-gm": "MIT",
}


@functools.lru_cache(maxsize=16)
def stanzas(package: str) -> tuple[tuple[tuple[str, ...], str], ...]:
    path = f"/usr/share/doc/{package}/copyright"
    if not os.path.isfile(path):
        return ()
    out, files, field = [], [], None
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if line.startswith("Files:"):
                files, field = line[6:].split(), "files"
            elif line.startswith("License:") and files:
                out.append((tuple(files), line[8:].strip()))
                files, field = [], None
            elif line[:1] in (" ", "\t") and field == "files":
                files.extend(line.split())
            elif line.strip() and not line[:1].isspace():
                field = None
    return tuple((f, licence) for f, licence in out if licence)


def licence_for(package: str, installed_path: str) -> str:
    found = DEFAULTS.get(package, "see /usr/share/doc/" + package + "/copyright")
    for patterns, licence in stanzas(package):
        for pattern in patterns:
            if pattern == "*":
                found = licence
                break
            tail = pattern.split("/", 1)[1] if "/" in pattern else pattern
            if pattern.startswith("debian/") or tail.strip("*/") == "":
                continue
            if fnmatch.fnmatch(installed_path, "*/" + tail):
                found = licence
                break
    return found
