"""Video in and out with PyAV (``pip install samstream[video]``): decode to analysis frames, write test clips.

Frames are decoded straight to a small grey analysis image (``ANALYSIS_WIDTH`` pixels
wide, the video's aspect kept), which is all the motion features need; the colour frame
is converted only when an image encoder asks for it.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from samstream.models.config import ModelConfig
from samstream.models.visual import ImageEncoder, RegionFeatures, RegionKey, VisualFrames

ANALYSIS_WIDTH = 160
PICTURE_WIDTH = 320  # the control page's picture of the latest frame, to draw a box on
# An audio file and its video may differ by a few frames at the ends; past this share of the
# audio without video, the user is told which seconds carry no visual prompt.
LENGTH_NOTE_SECONDS = 0.1


class VideoError(ValueError):
    """A video that cannot be used; the message is one line naming the file."""


def require_av():
    try:
        import av
    except ImportError:
        raise VideoError("video input needs PyAV: pip install samstream[video]") from None
    return av


@dataclass(frozen=True)
class VideoInfo:
    path: str
    width: int
    height: int
    analysis_size: tuple[int, int]  # (height, width) of the grey analysis frames
    frame_rate: float  # the stream's average rate, frames per second
    frames: int = 0
    first_seconds: float = 0.0
    last_seconds: float = 0.0

    @property
    def frame_period(self) -> float:
        return 1.0 / self.frame_rate


def analysis_size(width: int, height: int) -> tuple[int, int]:
    """(height, width) of the analysis frames: ANALYSIS_WIDTH wide, even sides, aspect kept."""
    analysis_width = min(ANALYSIS_WIDTH, width - width % 2) or 2
    analysis_height = max(2, round(height * analysis_width / width / 2) * 2)
    return analysis_height, analysis_width


def open_video(path: str | Path):
    """(container, video stream, VideoInfo) or VideoError with one line."""
    av = require_av()
    path = str(path)
    if not Path(path).exists():
        camera = path.startswith("/dev/video")
        raise VideoError(f"{path}: no such {'camera (no V4L2 device on this machine)' if camera else 'file'}")
    try:
        container = av.open(path, format="v4l2" if path.startswith("/dev/video") else None)
    except (av.error.FFmpegError, OSError) as error:
        raise VideoError(f"{path}: not a readable video ({str(error).splitlines()[0]})") from None
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path}: has no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    rate = float(stream.average_rate or stream.guessed_rate or 0) or 25.0
    if not (stream.width and stream.height):
        container.close()
        raise VideoError(f"{path}: the video stream has no frame size")
    info = VideoInfo(path, stream.width, stream.height, analysis_size(stream.width, stream.height), rate)
    return container, stream, info


def decoded_frames(container, stream, info: VideoInfo) -> Iterator[tuple[float, np.ndarray, object]]:
    """(seconds, grey (h, w) uint8 at the analysis size, the decoded av.VideoFrame) per frame, in presentation order.

    The frame itself is handed on for what only some callers need (an image encoder's
    colour crop, the control page's picture), converted only there.
    """
    av = require_av()
    height, width = info.analysis_size
    last = -np.inf
    try:
        for frame in container.decode(stream):
            if frame.pts is None or frame.time is None:
                continue  # a frame without a timestamp cannot be placed against the audio
            seconds = float(frame.time)
            if seconds <= last:
                continue  # a repeated or reordered timestamp: keep time running forwards
            last = seconds
            grey = frame.to_ndarray(format="gray", width=width, height=height)
            yield seconds, np.ascontiguousarray(grey), frame
    except av.error.FFmpegError as error:
        raise VideoError(f"{info.path}: decoding failed ({str(error).splitlines()[0]})") from None


@dataclass(frozen=True)
class VisualTrack:
    """A whole video's features, one row per video frame, and what the video covered."""

    frames: VisualFrames
    info: VideoInfo
    notes: tuple[str, ...]  # said to the user: seconds of audio without video, and the like


def video_features(path: str | Path, boxes: list[RegionKey], config: ModelConfig, audio_seconds: float,
                   masks: list[tuple[str, float, float]] = (), encoder: ImageEncoder | None = None) -> VisualTrack:
    """Decode ``path`` and turn the keyed region into the model's visual input, aligned by timestamps.

    A video that does not overlap the audio at all is refused; one that is shorter, longer,
    later or at another frame rate is aligned by its timestamps, and the seconds of audio
    it does not cover carry no visual prompt (rows of zeros), which the notes say.
    """
    container, stream, info = open_video(path)
    try:
        height, width = info.analysis_size
        region = RegionFeatures(height, width, config, region_keys(boxes, list(masks), info.analysis_size), encoder)
        seconds, rows = [], []
        for moment, grey, frame in decoded_frames(container, stream, info):
            seconds.append(moment)
            rgb = frame.to_ndarray(format="rgb24") if encoder is not None else None
            rows.append(region.frame(grey, moment, rgb).copy())
    finally:
        container.close()
    if not seconds:
        raise VideoError(f"{path}: no decodable frames")
    first, last = seconds[0], seconds[-1] + info.frame_period
    if first >= audio_seconds or last <= 0.0:
        raise VideoError(f"{path}: the video ({first:.2f}-{last:.2f} s) does not overlap the audio "
                         f"(0-{audio_seconds:.2f} s)")
    info = VideoInfo(info.path, info.width, info.height, info.analysis_size, info.frame_rate,
                     len(seconds), first, seconds[-1])
    notes = []
    if first > LENGTH_NOTE_SECONDS:
        notes.append(f"the video starts at {first:.2f} s: no visual prompt before it")
    if last < audio_seconds - LENGTH_NOTE_SECONDS:
        notes.append(f"the video ends at {last:.2f} s, the audio at {audio_seconds:.2f} s: "
                     "no visual prompt after it")
    return VisualTrack(VisualFrames(np.array(seconds), np.stack(rows)), info, tuple(notes))


def jpeg_of(frame, width: int = PICTURE_WIDTH) -> bytes:
    """A decoded av.VideoFrame -> JPEG bytes ``width`` pixels wide (the control page's picture of the scene)."""
    av = require_av()
    height = max(2, round(frame.height * width / frame.width / 2) * 2)
    encoder = av.CodecContext.create("mjpeg", "w")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuvj420p"
    encoder.time_base = Fraction(1, 25)
    small = frame.reformat(width=width, height=height, format="yuvj420p")
    small.pts = 0
    return b"".join(bytes(packet) for packet in [*encoder.encode(small), *encoder.encode(None)])


def read_mask(path: str | Path, size: tuple[int, int]) -> np.ndarray:
    """A mask image (PNG; white = the region) -> (height, width) float32 weights 0..1 at ``size``."""
    av = require_av()
    if not Path(path).exists():
        raise VideoError(f"{path}: no such file")
    try:
        with av.open(str(path)) as container:
            frame = next(container.decode(video=0))
            grey = frame.to_ndarray(format="gray", width=size[1], height=size[0])
    except (av.error.FFmpegError, OSError, StopIteration):
        raise VideoError(f"{path}: not a readable image") from None
    mask = grey.astype(np.float32) / 255.0
    if not (mask > 0).any():
        raise VideoError(f"{path}: the mask is all black (white marks the region)")
    return mask


def write_video(path: str | Path, frames: np.ndarray, frame_rate: float, start_seconds: float = 0.0,
                frame_seconds: np.ndarray | None = None, crf: int = 12) -> None:
    """(frames, H, W, 3) uint8 RGB -> an H.264 (or MPEG-4 part 2) file, for tests and synthetic clips.

    Frame i is shown at ``start_seconds + i / frame_rate``, or at ``frame_seconds[i]`` (a
    variable frame rate, gaps included) rounded to the stream's time base. ``crf`` is
    H.264's quality (lower is better; 12 keeps test clips close to their pixels).
    """
    av = require_av()
    rate = Fraction(frame_rate).limit_denominator(1001)
    with av.open(str(path), "w") as container:
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        stream = container.add_stream(codec, rate=rate)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.time_base = 1 / rate
        if codec == "libx264":
            stream.options = {"crf": str(crf), "preset": "medium"}
        if frame_seconds is None:
            frame_seconds = start_seconds + np.arange(len(frames)) / float(rate)
        else:
            stream.time_base = Fraction(1, 1000)  # fine enough for any timestamps
        for index, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts = round(frame_seconds[index] / stream.time_base)
            frame.time_base = stream.time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _parse_times(text: str, what: str) -> tuple[float, float]:
    try:
        start, stop = (float(part) for part in text.split("-"))
    except ValueError:
        raise ValueError(f"{what}: the times after @ are T0-T1 in seconds, got {text!r}") from None
    if not 0 <= start < stop:
        raise ValueError(f"{what}: the times need 0 <= T0 < T1, got {text!r}")
    return start, stop


def parse_box(text: str) -> RegionKey:
    """``x,y,w,h`` or ``x,y,w,h@t0-t1`` (0..1 of the frame; seconds) -> a key; a box reaching out is clipped."""
    from samstream.models.visual import clip_box

    box_text, _, times = text.partition("@")
    try:
        box = tuple(float(part) for part in box_text.split(","))
    except ValueError:
        box = ()
    if len(box) != 4 or not all(np.isfinite(box)):
        raise ValueError(f"--box is x,y,w,h (0..1 of the frame) with an optional @T0-T1, got {text!r}")
    start, stop = _parse_times(times, f"--box {text}") if times else (0.0, float("inf"))
    return RegionKey(start, box=clip_box(box), stop=stop)


def parse_mask(text: str) -> tuple[str, float, float]:
    """``mask.png`` or ``mask.png@t0-t1`` -> (path, start, stop); the image is read once the video's size is known."""
    path, _, times = text.partition("@")
    start, stop = _parse_times(times, f"--mask {text}") if times else (0.0, float("inf"))
    return path, start, stop


def region_keys(boxes: list[RegionKey], masks: list[tuple[str, float, float]], size: tuple[int, int]
                ) -> list[RegionKey]:
    """Boxes and masks as one timeline of keys; a key without an end lasts until the next one starts."""
    keys = list(boxes) + [RegionKey(start, mask=read_mask(path, size), stop=stop) for path, start, stop in masks]
    keys.sort(key=lambda key: key.start)
    return keys
