"""Visual prompts, runtime half (numpy, numba, ONNX Runtime): regions of video frames -> the model's visual input.

The model takes ``PromptConfig.visual_dim`` (16) numbers per audio frame. Slots 0..9
are motion, size and position of the prompted region (``kernels.visual``); slots
10..15 are appearance, filled only when the user gives an image encoder of their own
(``ImageEncoder``: any ONNX graph from an image to an embedding, e.g. an exported CLIP
or PE vision tower). Without one, the default, they stay 0.

Video decoding (PyAV) lives in ``plugin_host.video``: this half sees grey (and, for an
encoder, colour) frames as numpy arrays with their timestamps.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from samstream.kernels.visual import (
    MOTION_FEATURES,
    hold_features_at,
    make_visual_state,
    reset_visual_state,
    set_region_box,
    set_region_mask,
    visual_frame_features,
)

from .config import ModelConfig

# A frame's row holds this long; with no newer frame by then the video counts as gone (offline
# and live alike: the live bridge then fades the visual prompt out).
HOLD_SECONDS = 0.5
APPEARANCE_SEED = 8  # the appearance projection is fixed forever: a trained model depends on it


@dataclass(frozen=True)
class RegionKey:
    """The prompted region from ``start`` (seconds of the video) until the next key: a box, or a mask."""

    start: float
    box: tuple[float, float, float, float] | None = None  # x, y, w, h, 0..1 of the frame
    mask: np.ndarray | None = None  # (height, width) weights 0..1 at the analysis size
    stop: float = float("inf")  # the region is dropped here (no visual prompt after it)


def clip_box(box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """A box reaching outside the frame, clipped to it; ValueError if nothing of it is inside."""
    x, y, w, h = box
    if not (w > 0 and h > 0):
        raise ValueError(f"a box needs a positive width and height, got {w:g} x {h:g}")
    x0, y0 = min(max(x, 0.0), 1.0), min(max(y, 0.0), 1.0)
    x1, y1 = min(max(x + w, 0.0), 1.0), min(max(y + h, 0.0), 1.0)
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"the box {x:g},{y:g},{w:g},{h:g} lies outside the frame (0..1 on both axes)")
    return x0, y0, x1 - x0, y1 - y0


class ImageEncoder:
    """A user's ONNX image encoder: (1, 3, H, W) float32 RGB in 0..1 -> (1, D) embedding.

    Its embedding is normalised and projected, by a fixed random projection, onto the
    appearance slots, so any encoder's width fits the model's visual input.
    """

    def __init__(self, path: Path, slots: int, threads: int = 1):
        from .runtime import make_session

        self.session = make_session(Path(path), threads)
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise ValueError(f"{path}: an image encoder takes one (1, 3, H, W) image input")
        self.input_name = inputs[0].name
        _, _, height, width = inputs[0].shape
        # A dynamic side (a name, not a number) gets 224, what most vision towers expect.
        self.size = (height if isinstance(height, int) else 224, width if isinstance(width, int) else 224)
        self.slots = slots
        self._projection: np.ndarray | None = None

    def encode(self, rgb: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        """rgb (height, width, 3) uint8 and the region's box -> (slots,) appearance features."""
        height, width = rgb.shape[:2]
        x, y, w, h = box
        rows = np.clip((y + h * (np.arange(self.size[0]) + 0.5) / self.size[0]) * height, 0, height - 1).astype(int)
        cols = np.clip((x + w * (np.arange(self.size[1]) + 0.5) / self.size[1]) * width, 0, width - 1).astype(int)
        crop = rgb[rows][:, cols].astype(np.float32).transpose(2, 0, 1)[None] / 255.0
        embedding = np.asarray(self.session.run(None, {self.input_name: crop})[0], np.float64).reshape(-1)
        if self._projection is None or self._projection.shape[1] != embedding.size:
            random = np.random.default_rng(APPEARANCE_SEED)
            self._projection = random.standard_normal((self.slots, embedding.size)) / np.sqrt(self.slots)
        unit = embedding / max(np.linalg.norm(embedding), 1e-12)
        return (self._projection @ unit).astype(np.float32)


class RegionFeatures:
    """Frames in order -> one feature row each, for the region in force at each frame's time."""

    def __init__(self, height: int, width: int, config: ModelConfig, keys: list[RegionKey] | None = None,
                 encoder: ImageEncoder | None = None):
        self.dim = config.prompt.visual_dim
        if self.dim < MOTION_FEATURES:
            raise ValueError(f"the model's visual input has {self.dim} slots; the features need {MOTION_FEATURES}")
        self.state = make_visual_state(height, width)
        self.encoder = encoder
        self.keys = sorted(keys or [], key=lambda key: key.start)
        self._key_index = -1
        self._box: tuple[float, float, float, float] | None = None
        self.row = np.zeros(self.dim, np.float32)
        self._motion = np.zeros(MOTION_FEATURES, np.float64)

    def set_box(self, box: tuple[float, float, float, float] | None) -> None:
        """The region from the next frame on; None: no region (rows of zeros)."""
        self._box = None if box is None else clip_box(box)
        if self._box is not None:
            set_region_box(self.state, *self._box)

    def set_mask(self, mask: np.ndarray) -> None:
        weights = np.ascontiguousarray(mask, np.float32)
        if weights.shape != self.state.region.shape:
            raise ValueError(f"a mask must be {self.state.region.shape[1]} x {self.state.region.shape[0]} "
                             f"at the analysis size, got {weights.shape[1]} x {weights.shape[0]}")
        if not set_region_mask(self.state, weights):
            raise ValueError("the mask is empty: no pixel of it is above 0")
        x, y, w, h = self.state.geometry
        self._box = (float(x), float(y), float(w), float(h))

    def reset(self) -> None:
        reset_visual_state(self.state)

    def _follow_keys(self, seconds: float) -> None:
        while self._key_index + 1 < len(self.keys) and self.keys[self._key_index + 1].start <= seconds:
            self._key_index += 1
            key = self.keys[self._key_index]
            if key.mask is not None:
                self.set_mask(key.mask)
            else:
                self.set_box(key.box)
        if self._key_index >= 0 and seconds >= self.keys[self._key_index].stop:
            self._box = None

    def frame(self, grey: np.ndarray, seconds: float, rgb: np.ndarray | None = None) -> np.ndarray:
        """One frame -> ``self.row`` (visual_dim,), rewritten in place: all zeros while no region is set."""
        self._follow_keys(seconds)
        # The previous frame is always recorded, so motion is right from the first frame a region has.
        visual_frame_features(grey, seconds, self._motion, self.state)
        if self._box is None:
            self.row[:] = 0.0
            return self.row
        self.row[:MOTION_FEATURES] = self._motion
        if self.encoder is not None and rgb is not None:
            self.row[MOTION_FEATURES:] = self.encoder.encode(rgb, self._box)[:self.dim - MOTION_FEATURES]
        else:
            self.row[MOTION_FEATURES:] = 0.0
        return self.row


@dataclass(frozen=True)
class VisualFrames:
    """A video's features, one row per video frame, with the times they were shown."""

    seconds: np.ndarray  # (video frames,) increasing
    rows: np.ndarray  # (video frames, visual_dim)

    def schedule(self, frames: int, config: ModelConfig) -> np.ndarray:
        return visual_schedule(self.seconds, self.rows, frames, config)


UNTRAINED_NOTE = ("this model was not trained with visual prompts (config prompt.visual_trained is false): "
                  "the box does not steer it yet")


def token_seconds(frames: int, config: ModelConfig, first: int = 0) -> np.ndarray:
    """Stream times (s) that model frames first..first+frames look at: the centres of their STFT windows."""
    stft = config.stft
    tokens = np.arange(first, first + frames, dtype=np.float64)
    return ((tokens + 1) * stft.hop - stft.n_fft / 2) / stft.sample_rate


def visual_schedule(frame_seconds: np.ndarray, frame_rows: np.ndarray, frames: int, config: ModelConfig,
                    hold_seconds: float = HOLD_SECONDS) -> np.ndarray:
    """Per-video-frame rows -> (frames, visual_dim) per model frame, by the video's timestamps."""
    rows = np.zeros((frames, config.prompt.visual_dim), np.float32)
    if len(frame_seconds):
        hold_features_at(np.asarray(frame_seconds, np.float64), np.asarray(frame_rows, np.float32),
                         token_seconds(frames, config), float(hold_seconds), rows)
    return rows
