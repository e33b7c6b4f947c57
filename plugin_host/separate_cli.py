"""`samstream separate`: a file in, target.wav and residual.wav out, by the live path."""
from __future__ import annotations

import argparse
from pathlib import Path


def parse_span(text: str):
    from samstream.models.separate import SpanPrompt

    try:
        start, stop = (float(part) for part in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a span is START:STOP in seconds, got {text!r}") from None
    if not 0 <= start < stop:
        raise argparse.ArgumentTypeError(f"a span needs 0 <= START < STOP, got {text!r}")
    return SpanPrompt(start, stop)


def register(commands) -> None:
    separate = commands.add_parser("separate", help="separate a file by a text and/or span prompt")
    separate.add_argument("input", help="audio file (wav, flac, ogg; any rate, e.g. 22.05 to 192 kHz; any channels)")
    separate.add_argument("--text", default="", help='what to separate, e.g. "dog barking"')
    separate.add_argument("--span", action="append", type=parse_span, default=[], metavar="A:B",
                          help="seconds where the target sounds (repeatable)")
    separate.add_argument("--neg-span", action="append", type=parse_span, default=[], metavar="A:B",
                          help="seconds where the target is absent (repeatable)")
    separate.add_argument("--steps", type=int, help="flow steps (a hop graph exported for it must exist)")
    separate.add_argument("--stream", action="store_true",
                          help="run the exact live path hop by hop instead of the offline whole-file path")
    separate.add_argument("--candidates", type=int, default=1, metavar="K",
                          help="separate with K noise seeds and keep the one the judge scores best (needs --text)")
    separate.add_argument("--seed", type=int, default=0, help="noise seed (the first of the candidates)")
    separate.add_argument("--judge", help="judge folder for --candidates (default: the bundled model's judge/)")
    separate.add_argument("--model", default=None, help="serving folder (default: the bundled model)")
    separate.add_argument("--video", help="video of the scene (needs samstream[video]); with --box or --mask")
    separate.add_argument("--box", action="append", default=[], metavar="X,Y,W,H[@T0-T1]",
                          help="the sounding object's box on --video, 0..1 of the frame, from T0 to T1 s (repeatable)")
    separate.add_argument("--mask", action="append", default=[], metavar="PNG[@T0-T1]",
                          help="the sounding object's mask on --video (white = the object), a key per PNG (repeatable)")
    separate.add_argument("--image-encoder", metavar="ONNX",
                          help="your own image encoder (image -> embedding) for appearance features with --video")
    separate.add_argument("-o", "--out", required=True, help="folder for target.wav and residual.wav")


def visual_prompt(arguments: argparse.Namespace, audio_seconds: float, default_model: Path):
    """--video with --box/--mask -> the video's features (VisualFrames), or None without --video."""
    if not arguments.video:
        if arguments.box or arguments.mask or arguments.image_encoder:
            raise ValueError("--box, --mask and --image-encoder need --video")
        return None
    if not (arguments.box or arguments.mask):
        raise ValueError("--video needs --box X,Y,W,H or --mask PNG: which object in the picture makes the sound")
    from samstream.models.runtime import load_serving_config
    from samstream.models.visual import MOTION_FEATURES, UNTRAINED_NOTE, ImageEncoder

    from .video import parse_box, parse_mask, video_features

    config, _ = load_serving_config(Path(arguments.model) if arguments.model else default_model)
    boxes = [parse_box(text) for text in arguments.box]
    masks = [parse_mask(text) for text in arguments.mask]
    encoder = None if not arguments.image_encoder else \
        ImageEncoder(Path(arguments.image_encoder), config.prompt.visual_dim - MOTION_FEATURES)
    track = video_features(arguments.video, boxes, config, audio_seconds, masks, encoder)
    notes = [*track.notes, *([] if config.prompt.visual_trained else [UNTRAINED_NOTE])]
    for note in notes:
        print(f"video: {note}")
    return track.frames


def run(arguments: argparse.Namespace) -> int:
    from dataclasses import replace

    from samstream.models.separate import DEFAULT_MODEL_DIR, separate
    from samstream.models.text_encoder import TextEncoder

    from .audio_files import read_audio, write_audio

    if arguments.candidates < 1:
        raise ValueError(f"--candidates must be at least 1, got {arguments.candidates}")
    if arguments.candidates > 1 and not arguments.text.strip():
        raise ValueError("--candidates needs --text: the judge scores each candidate against the text prompt")
    judge = None
    if arguments.candidates > 1:
        from samstream.models.judge import Judge
        judge = Judge(Path(arguments.judge) if arguments.judge else None)
    audio, rate = read_audio(arguments.input)
    visual = visual_prompt(arguments, audio.shape[1] / rate, DEFAULT_MODEL_DIR)
    embedding = TextEncoder.load().encode(arguments.text) if arguments.text.strip() else None
    spans = arguments.span + [replace(span, positive=False) for span in arguments.neg_span]
    options = {"spans": spans, "steps": arguments.steps, "stream": arguments.stream,
               "model_dir": Path(arguments.model) if arguments.model else DEFAULT_MODEL_DIR, "visual": visual}
    if judge is None:
        result = separate(audio, rate, embedding, seed=arguments.seed, **options)
    else:
        from samstream.models.judge import separate_best_of
        ranked = separate_best_of(audio, rate, embedding, arguments.candidates, judge, arguments.seed, **options)
        result = ranked.best
        listing = ", ".join(f"seed {seed}: {score:+.2f} dB" for seed, score in zip(ranked.seeds, ranked.scores_db,
                                                                                    strict=True))
        print(f"judge's predicted SI-SDR per candidate: {listing}; kept seed {ranked.best_seed}")
    out = Path(arguments.out)
    write_audio(out / "target.wav", result.target, rate)
    write_audio(out / "residual.wav", result.residual, rate)
    if result.passed_through:
        print("no prompt given: the audio passes through (target = input, residual = silence)")
    if result.sanitised_samples:
        print(f"{result.sanitised_samples} NaN or Inf input samples were replaced by silence")
    path = f"live path, latency {result.latency_samples} samples removed" if arguments.stream else "offline"
    print(f"wrote {out / 'target.wav'} and {out / 'residual.wav'} ({result.steps} flow step(s), {path})")
    return 0
