"""Synthetic audio-visual clips: one drawn object per source, moving as that source sounds.

No video of sounding objects can be downloaded here, so the visual prompt is taught on
clips the project draws itself. Each source of a mixture gets one object (a disc, a
square, a triangle or a ring, in its own colour, in its own cell of a grid) that
shakes while its source sounds: the shake's size follows the source's envelope and it
jolts on every onset, the way lips move with speech or a drum head with its hits.
Distractor objects shake by a random envelope of their own, so motion alone, without
the right timing, says nothing. The background is a fixed texture with a little
sensor noise on every frame.

``clip.boxes[i]`` is the box around source ``i``'s cell: the region a user would draw
to prompt that source. Frames are rendered at the model's analysis size (90 x 160,
what ``plugin_host.video`` decodes to), so training needs no video codec;
``plugin_host.video.write_video`` writes them to a file for tests and demos.

For training (the next step of the visual prompt): ``clip_visual_rows`` turns a clip
and the index of the target source into the model's per-frame visual input, exactly as
the serving path computes it from a video.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from samstream.models.config import ModelConfig
from samstream.models.visual import RegionFeatures, RegionKey, VisualFrames

FRAME_RATE = 25.0
SIZE = (90, 160)  # (height, width): the serving path's analysis size for 16:9 video
GRID = (2, 3)  # cells: at most 6 objects
SHAKE_HZ = 7.0  # how fast a sounding object shakes
SHAKE_PIXELS = 6.0  # displacement at full envelope
JOLT_PIXELS = 5.0  # extra jump on an onset
SHAPES = ("disc", "square", "triangle", "ring")
SENSOR_NOISE = 2.0  # grey levels of per-frame noise over the whole picture


@dataclass(frozen=True)
class AvClip:
    frames: np.ndarray  # (frames, height, width, 3) uint8 RGB
    frame_seconds: np.ndarray  # (frames,) when each frame is shown
    boxes: tuple[tuple[float, float, float, float], ...]  # per object, sources first, then distractors
    envelopes: np.ndarray  # (objects, frames) 0..1: what drove each object's shake
    sources: int  # objects 0..sources-1 follow the audio sources

    @property
    def grey(self) -> np.ndarray:
        """(frames, height, width) uint8, luma as a video decoder gives it (BT.601 weights)."""
        weights = np.array([0.299, 0.587, 0.114], np.float32)
        return np.clip(np.rint(self.frames.astype(np.float32) @ weights), 0, 255).astype(np.uint8)


def source_envelope(audio: np.ndarray, sample_rate: int, frame_seconds: np.ndarray) -> np.ndarray:
    """RMS of ``audio`` (n,) around each frame time, over one frame period, scaled so its peak is 1."""
    period = frame_seconds[1] - frame_seconds[0] if len(frame_seconds) > 1 else 1.0 / FRAME_RATE
    half = max(1, round(period * sample_rate / 2))
    squared = np.concatenate([[0.0], np.cumsum(np.asarray(audio, np.float64) ** 2)])
    centres = np.round(frame_seconds * sample_rate).astype(int)
    first = np.clip(centres - half, 0, len(audio))
    stop = np.clip(centres + half, 0, len(audio))
    rms = np.sqrt((squared[stop] - squared[first]) / np.maximum(stop - first, 1))
    return rms / rms.max() if rms.max() > 0 else rms


def onsets(envelope: np.ndarray) -> np.ndarray:
    """The rise of an envelope from one frame to the next, half-wave rectified."""
    return np.maximum(np.diff(envelope, prepend=envelope[:1]), 0.0)


def random_envelope(frames: int, rng: np.random.Generator) -> np.ndarray:
    """A distractor's envelope: bursts at random times, as uncorrelated with the sources as chance allows."""
    envelope = np.zeros(frames)
    for _ in range(max(1, frames // 20)):
        start = int(rng.integers(0, frames))
        length = int(rng.integers(3, 20))
        envelope[start:start + length] = max(envelope[start:start + length].max(initial=0.0), rng.uniform(0.4, 1))
    return envelope


def _shape_mask(shape: str, rows: np.ndarray, cols: np.ndarray, radius: float) -> np.ndarray:
    if shape == "disc":
        return rows ** 2 + cols ** 2 <= radius ** 2
    if shape == "square":
        return (np.abs(rows) <= radius * 0.85) & (np.abs(cols) <= radius * 0.85)
    if shape == "triangle":
        return (rows <= radius * 0.8) & (rows >= -radius) & (np.abs(cols) <= (rows + radius) * 0.6)
    distance = rows ** 2 + cols ** 2
    return (distance <= radius ** 2) & (distance >= (0.55 * radius) ** 2)


def render_av_clip(sources: list[np.ndarray], sample_rate: int, rng: np.random.Generator, *,
                   distractors: int = 2, frame_rate: float = FRAME_RATE, size: tuple[int, int] = SIZE) -> AvClip:
    """Draw one object per source (n,) arrays, plus ``distractors``; the clip lasts as long as the sources."""
    objects = len(sources) + distractors
    if objects > GRID[0] * GRID[1]:
        raise ValueError(f"at most {GRID[0] * GRID[1]} objects fit the grid, asked for {objects}")
    seconds = max(len(source) for source in sources) / sample_rate
    frame_seconds = np.arange(int(seconds * frame_rate)) / frame_rate
    frames = len(frame_seconds)
    envelopes = np.stack([source_envelope(source, sample_rate, frame_seconds) for source in sources]
                         + [random_envelope(frames, rng) for _ in range(distractors)])
    height, width = size
    cell_h, cell_w = height // GRID[0], width // GRID[1]
    cells = rng.permutation(GRID[0] * GRID[1])[:objects]
    background = rng.uniform(30, 90) + rng.normal(0, 12, (height, width, 1)) * np.ones(3)
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    noise = rng.normal(0, SENSOR_NOISE, (frames, height, width, 1)).astype(np.float32)
    video = (background.astype(np.float32) + noise)  # (frames, height, width, 3); objects drawn on top
    boxes = []
    looks = []
    for index, cell in enumerate(cells):
        top, left = (cell // GRID[1]) * cell_h, (cell % GRID[1]) * cell_w
        boxes.append((left / width, top / height, cell_w / width, cell_h / height))
        looks.append((SHAPES[int(rng.integers(len(SHAPES)))], rng.uniform(120, 255, 3), top + cell_h / 2,
                      left + cell_w / 2, rng.uniform(0.22, 0.32) * min(cell_h, cell_w), rng.uniform(0, 2 * np.pi),
                      onsets(envelopes[index])))
    for frame, moment in enumerate(frame_seconds):
        picture = video[frame]
        for index, (shape, colour, centre_row, centre_col, radius, phase, jolts) in enumerate(looks):
            level = envelopes[index, frame]
            swing = np.sin(2 * np.pi * SHAKE_HZ * moment + phase)
            dy = level * SHAKE_PIXELS * swing - JOLT_PIXELS * jolts[frame]
            dx = level * SHAKE_PIXELS * np.cos(2 * np.pi * SHAKE_HZ * 0.77 * moment + phase)
            grow = 1.0 + 0.25 * level
            # Only the object's own cell is drawn: it never leaves it (shake + jolt < the margin).
            top, left = int(centre_row - cell_h / 2), int(centre_col - cell_w / 2)
            cell = (slice(top, top + cell_h), slice(left, left + cell_w))
            inside = _shape_mask(shape, rows[cell] - centre_row - dy, cols[cell] - centre_col - dx, radius * grow)
            picture[cell][inside] = colour
    video = np.clip(video, 0, 255).astype(np.uint8)
    return AvClip(video, frame_seconds, tuple(boxes), envelopes, len(sources))


def clip_visual_frames(clip: AvClip, target: int, config: ModelConfig) -> VisualFrames:
    """The features of object ``target``'s box, one row per video frame, as a video file of the clip gives them."""
    height, width = clip.frames.shape[1:3]
    region = RegionFeatures(height, width, config, [RegionKey(0.0, box=clip.boxes[target])])
    grey = clip.grey
    rows = np.stack([region.frame(grey[index], moment).copy() for index, moment in enumerate(clip.frame_seconds)])
    return VisualFrames(clip.frame_seconds, rows)


def clip_visual_rows(clip: AvClip, target: int, config: ModelConfig, model_frames: int) -> np.ndarray:
    """(model_frames, visual_dim): the visual input for prompting object ``target`` by its box."""
    return clip_visual_frames(clip, target, config).schedule(model_frames, config)


def mixture_visual_rows(target: np.ndarray, residual: np.ndarray, rng: np.random.Generator, config: ModelConfig,
                        frames: int, distractors: int = 2) -> np.ndarray:
    """The visual input of one training mixture: a clip of its target, residual and distractors, the target's box.

    The training step that remains for the visual prompt sets ``prompt["visual"]`` to this
    (for part of the examples) where ``models.prompts`` now puts zeros.
    """
    clip = render_av_clip([target, residual], config.stft.sample_rate, rng, distractors=distractors)
    return clip_visual_rows(clip, 0, config, frames)
