"""Per-frame visual features of a region of a video, and their alignment to the audio frames.

What ties a picture to a sound is time: the part of the picture that makes a sound moves
when it sounds (sticks hitting a drum, lips, a bouncing object). So the features of a
region are about its motion, measured by frame differences, plus where and how big the
region is, so a model can tell one region from another:

====  ===========================================================================
 0    present: 1 for a real frame, 0 where there is no video (then every slot is 0)
 1    motion energy: mean |frame - previous frame| inside the region, log-compressed to ~0..1
 2    motion onset: the rise of (1) since the previous frame, half-wave rectified
 3    slow motion envelope: (1) smoothed with a 0.2 s time constant
 4    motion share: the region's part of the whole frame's motion, 0..1
 5-6  region centre x, y (0..1 of the frame)
 7-8  region width, height (0..1 of the frame)
 9    mean brightness inside the region, 0..1
10-15 appearance: left to an image encoder (``models.visual``); 0 without one
====  ===========================================================================

Frames are 8-bit grey images at a small analysis size (a video is decoded straight to
it). The region is a weight mask over the frame (a box is a mask of ones) kept with its
bounding rows and columns, so a frame costs one pass over the pixels.

Alignment: model frame ``k`` takes the features of the latest video frame shown at or
before the time its STFT window is centred on (a zero-order hold by timestamps), which a
live stream can do as well as a file, so both see the same numbers. A frame's row holds
for at most ``hold_seconds``: after a gap that long, past the last frame and before the
first, the row is all zeros: no video (the live bridge calls that a stall).
"""
from __future__ import annotations

from math import exp, log
from typing import NamedTuple

import numpy as np
from numba import njit

MOTION_FEATURES = 10  # slots 0..9 come from these kernels; the rest of the vector is appearance
PRESENT, MOTION, ONSET, ENVELOPE, SHARE, CENTRE_X, CENTRE_Y, WIDTH, HEIGHT, BRIGHTNESS = range(MOTION_FEATURES)
# A mean absolute difference of 0.1 (a tenth of full scale over the whole region) is strong
# motion; log1p(GAIN * d) / log1p(GAIN) maps 0..0.1 onto about 0..0.75 and keeps small motion visible.
MOTION_GAIN = 200.0
ENVELOPE_SECONDS = 0.2


class VisualState(NamedTuple):
    previous: np.ndarray  # (height, width) uint8: the last frame seen
    region: np.ndarray  # (height, width) float32 weights 0..1
    bounds: np.ndarray  # int64[4]: first row, stop row, first column, stop column of the region
    geometry: np.ndarray  # float64[4]: x, y, w, h of the region's bounding box, 0..1 of the frame
    # float64[4]: [frames seen, last timestamp (s), last motion (slot 1), slow envelope]
    history: np.ndarray


def make_visual_state(height: int, width: int) -> VisualState:
    """State for frames of ``height`` x ``width``; the region starts as the whole frame."""
    if height < 2 or width < 2:
        raise ValueError(f"an analysis frame needs at least 2 x 2 pixels, got {width} x {height}")
    state = VisualState(np.zeros((height, width), np.uint8), np.zeros((height, width), np.float32),
                        np.zeros(4, np.int64), np.zeros(4), np.zeros(4))
    set_region_box(state, 0.0, 0.0, 1.0, 1.0)
    return state


@njit(cache=True)
def set_region_box(state, x, y, w, h):
    """Region = the box x, y, w, h (0..1 of the frame), clipped to the frame; returns False if nothing is left.

    A box that misses the frame entirely leaves the previous region in place.
    """
    height, width = state.region.shape
    x0, y0 = min(max(x, 0.0), 1.0), min(max(y, 0.0), 1.0)
    x1, y1 = min(max(x + w, 0.0), 1.0), min(max(y + h, 0.0), 1.0)
    first_col, stop_col = int(x0 * width), int(np.ceil(x1 * width))
    first_row, stop_row = int(y0 * height), int(np.ceil(y1 * height))
    if stop_col <= first_col or stop_row <= first_row:
        return False
    state.region[:, :] = 0.0
    state.region[first_row:stop_row, first_col:stop_col] = 1.0
    _set_bounds(state, first_row, stop_row, first_col, stop_col)
    return True


@njit(cache=True)
def set_region_mask(state, mask):
    """Region = ``mask`` (height, width) weights 0..1; returns False (and keeps the old region) if it is empty."""
    height, width = state.region.shape
    first_row, stop_row, first_col, stop_col = height, 0, width, 0
    for row in range(height):
        for col in range(width):
            if mask[row, col] > 0.0:
                first_row, stop_row = min(first_row, row), max(stop_row, row + 1)
                first_col, stop_col = min(first_col, col), max(stop_col, col + 1)
    if stop_row <= first_row:
        return False
    for row in range(height):
        for col in range(width):
            state.region[row, col] = min(max(mask[row, col], 0.0), 1.0)
    _set_bounds(state, first_row, stop_row, first_col, stop_col)
    return True


@njit(cache=True)
def _set_bounds(state, first_row, stop_row, first_col, stop_col):
    height, width = state.region.shape
    state.bounds[0], state.bounds[1], state.bounds[2], state.bounds[3] = first_row, stop_row, first_col, stop_col
    state.geometry[0] = first_col / width
    state.geometry[1] = first_row / height
    state.geometry[2] = (stop_col - first_col) / width
    state.geometry[3] = (stop_row - first_row) / height


@njit(cache=True)
def reset_visual_state(state):
    """Forget the previous frame (a new video or a seek); the region stays."""
    state.history[:] = 0.0


@njit(cache=True)
def visual_frame_features(frame, seconds, features, state):
    """One grey frame (height, width) uint8 shown at ``seconds`` -> ``features[:MOTION_FEATURES]``."""
    height, width = frame.shape
    first_row, stop_row, first_col, stop_col = state.bounds[0], state.bounds[1], state.bounds[2], state.bounds[3]
    seen = state.history[0] > 0.0
    inside_motion = 0.0
    inside_weight = 0.0
    inside_light = 0.0
    total_motion = 0.0
    for row in range(height):
        in_rows = first_row <= row < stop_row
        for col in range(width):
            pixel = np.float64(frame[row, col])
            difference = abs(pixel - np.float64(state.previous[row, col])) if seen else 0.0
            total_motion += difference
            if in_rows and first_col <= col < stop_col:
                weight = state.region[row, col]
                inside_motion += weight * difference
                inside_weight += weight
                inside_light += weight * pixel
            state.previous[row, col] = frame[row, col]
    scale = 1.0 / 255.0
    mean_motion = inside_motion * scale / max(inside_weight, 1e-9)
    motion = log(1.0 + MOTION_GAIN * mean_motion) / log(1.0 + MOTION_GAIN)
    elapsed = seconds - state.history[1] if seen else 0.0
    keep = exp(-max(elapsed, 0.0) / ENVELOPE_SECONDS)
    envelope = keep * state.history[3] + (1.0 - keep) * motion if seen else 0.0
    features[PRESENT] = 1.0
    features[MOTION] = motion
    features[ONSET] = max(motion - state.history[2], 0.0) if seen else 0.0
    features[ENVELOPE] = envelope
    features[SHARE] = inside_motion / total_motion if total_motion > 0.0 else 0.0
    features[CENTRE_X] = state.geometry[0] + 0.5 * state.geometry[2]
    features[CENTRE_Y] = state.geometry[1] + 0.5 * state.geometry[3]
    features[WIDTH] = state.geometry[2]
    features[HEIGHT] = state.geometry[3]
    features[BRIGHTNESS] = inside_light * scale / max(inside_weight, 1e-9)
    state.history[0] += 1.0
    state.history[1] = seconds
    state.history[2] = motion
    state.history[3] = envelope


@njit(cache=True)
def hold_features_at(frame_seconds, frame_features, at_seconds, hold_seconds, rows_out):
    """Zero-order hold by timestamps: rows_out[k] = the features of the latest frame shown at or before at_seconds[k].

    frame_seconds (frames,) increasing; frame_features (frames, dim); at_seconds (rows,)
    increasing; rows_out (rows, dim). A time before the first frame, or more than
    ``hold_seconds`` after the latest frame before it, gets a row of zeros (no video there).
    """
    frames = frame_seconds.shape[0]
    dim = rows_out.shape[1]
    latest = -1
    for row in range(rows_out.shape[0]):
        moment = at_seconds[row]
        while latest + 1 < frames and frame_seconds[latest + 1] <= moment:
            latest += 1
        if latest < 0 or moment - frame_seconds[latest] > hold_seconds:
            for index in range(dim):
                rows_out[row, index] = 0.0
        else:
            for index in range(dim):
                rows_out[row, index] = frame_features[latest, index]
