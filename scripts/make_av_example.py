#!/usr/bin/env python3
"""Render a video for the bundled example: one object per source of speech_hum, shaking as it sounds.

Writes, deterministically, beside examples/speech_hum.flac (whose sources it reads):

    examples/speech_hum.mp4         6 s, 25 frames a second, 320 x 180, H.264
    examples/speech_hum.video.json  the box of each source's object, and the command to try

The speech's object moves with the sentences and rests between them; the hum's object
shakes steadily (the hum never stops); a distractor moves at random. Needs samstream
installed with its video extra (PyAV). Usage:

    python scripts/make_av_example.py [--examples DIR]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

SEED = 20261130
SIZE = (180, 320)


def render(examples: Path) -> dict:
    from samstream.models.data.av_clips import render_av_clip
    from samstream.plugin_host.audio_files import read_audio
    from samstream.plugin_host.video import write_video

    sources = {}
    for name in ("speech", "hum"):
        signal, rate = read_audio(examples / "speech_hum.sources" / f"{name}.flac")
        sources[name] = signal.mean(axis=0)
    clip = render_av_clip(list(sources.values()), rate, np.random.default_rng(SEED), distractors=1, size=SIZE)
    write_video(examples / "speech_hum.mp4", clip.frames, 25.0, crf=26)
    boxes = {name: [round(value, 4) for value in clip.boxes[index]] for index, name in enumerate(sources)}
    boxes["distractor"] = [round(value, 4) for value in clip.boxes[len(sources)]]
    speech = ",".join(str(value) for value in boxes["speech"])
    description = {
        "generator": "scripts/make_av_example.py", "seed": SEED, "video": "speech_hum.mp4", "audio": "speech_hum.flac",
        "frame_rate": 25.0, "size": [SIZE[1], SIZE[0]], "boxes": boxes,
        "try": f"samstream separate examples/speech_hum.flac --video examples/speech_hum.mp4 --box {speech} "
               "-o out/visual",
    }
    (examples / "speech_hum.video.json").write_text(json.dumps(description, indent=2) + "\n")
    return description


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", default=str(Path(__file__).resolve().parent.parent / "examples"))
    description = render(Path(parser.parse_args().examples))
    print(f"wrote speech_hum.mp4 and speech_hum.video.json; try: {description['try']}")


if __name__ == "__main__":
    main()
