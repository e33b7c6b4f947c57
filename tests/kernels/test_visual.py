"""Visual feature kernels: motion inside a region, its onset and envelope, geometry, and the hold by timestamps."""
import numpy as np
import pytest

from samstream.kernels.visual import (
    BRIGHTNESS,
    CENTRE_X,
    CENTRE_Y,
    ENVELOPE,
    HEIGHT,
    MOTION,
    MOTION_FEATURES,
    ONSET,
    PRESENT,
    SHARE,
    WIDTH,
    hold_features_at,
    make_visual_state,
    set_region_box,
    set_region_mask,
    visual_frame_features,
)

SIZE = (90, 160)


def features_of(frames, seconds, box=(0.0, 0.0, 1.0, 1.0)):
    state = make_visual_state(*SIZE)
    assert set_region_box(state, *box)
    rows = np.zeros((len(frames), MOTION_FEATURES))
    for index, frame in enumerate(frames):
        visual_frame_features(frame, seconds[index], rows[index], state)
    return rows


def flicker(where: tuple[slice, slice], frames: int = 6) -> np.ndarray:
    """Frames of a grey picture whose patch ``where`` flips between dark and bright every frame."""
    video = np.full((frames, *SIZE), 100, np.uint8)
    video[1::2][(slice(None), *where)] = 200
    return video


def test_motion_inside_the_box_is_seen_and_motion_outside_it_is_not():
    video = flicker((slice(10, 30), slice(10, 40)))  # the top-left patch flickers
    seconds = np.arange(len(video)) / 25
    inside = features_of(video, seconds, box=(0.0, 0.0, 0.3, 0.4))
    outside = features_of(video, seconds, box=(0.6, 0.5, 0.3, 0.4))
    assert inside[0, MOTION] == 0.0  # no previous frame: no motion yet
    assert inside[1:, MOTION].min() > 0.5 and inside[1:, SHARE].min() == pytest.approx(1.0)
    assert outside[1:, MOTION].max() == 0.0 and outside[1:, SHARE].max() == 0.0
    assert (inside[:, PRESENT] == 1.0).all()


def test_onset_marks_the_rise_and_the_envelope_follows_with_its_time_constant():
    video = np.full((40, *SIZE), 100, np.uint8)
    video[10:30:2, 20:60, 40:100] = 220  # still, then 20 frames of flicker, then still
    seconds = np.arange(40) / 25
    rows = features_of(video, seconds)
    onset_frames = np.flatnonzero(rows[:, ONSET] > 0.05)
    assert onset_frames[0] == 10 and rows[11:30, ONSET].max() < 0.05
    assert rows[29, ENVELOPE] > 0.7 * rows[29, MOTION] and rows[12, ENVELOPE] < rows[25, ENVELOPE]
    # After the motion stops the envelope decays by exp(-t / 0.2 s): 8 frames at 25 fps = 0.32 s.
    assert rows[39, ENVELOPE] == pytest.approx(rows[31, ENVELOPE] * np.exp(-0.32 / 0.2), rel=1e-6)


def test_the_envelope_decays_in_seconds_whatever_the_frame_rate():
    decays = []
    for rate in (25, 50):
        frames = 2 * rate
        video = np.full((frames, *SIZE), 100, np.uint8)
        video[1:rate:2, :, :] = 200
        rows = features_of(video, np.arange(frames) / rate)
        # Both frame rates are still from 1.1 s on: 0.6 s later the envelope is exp(-0.6 / 0.2) of itself.
        decays.append(rows[round(1.8 * rate), ENVELOPE] / rows[round(1.2 * rate), ENVELOPE])
    assert decays == pytest.approx([np.exp(-3.0)] * 2, rel=1e-6)


def test_a_box_reaching_outside_is_clipped_and_one_outside_is_refused():
    state = make_visual_state(*SIZE)
    assert set_region_box(state, 0.8, -0.2, 0.5, 0.5)
    x, y, w, h = state.geometry
    assert (x, y) == pytest.approx((0.8, 0.0)) and (w, h) == pytest.approx((0.2, 0.3), abs=0.02)
    assert not set_region_box(state, 1.2, 0.1, 0.3, 0.3)
    assert state.geometry[0] == pytest.approx(0.8)  # the previous region is kept
    row = np.zeros(MOTION_FEATURES)
    visual_frame_features(np.full(SIZE, 51, np.uint8), 0.0, row, state)
    assert row[CENTRE_X] == pytest.approx(0.9, abs=0.01) and row[WIDTH] == pytest.approx(0.2, abs=0.01)
    assert row[BRIGHTNESS] == pytest.approx(0.2)


def test_a_mask_weights_the_pixels_and_gives_its_bounding_box():
    state = make_visual_state(*SIZE)
    mask = np.zeros(SIZE, np.float32)
    mask[45:90, 80:120] = 1.0
    assert set_region_mask(state, mask)
    assert tuple(state.bounds) == (45, 90, 80, 120)
    row = np.zeros(MOTION_FEATURES)
    visual_frame_features(np.zeros(SIZE, np.uint8), 0.0, row, state)
    assert row[CENTRE_X] == pytest.approx(0.625) and row[CENTRE_Y] == pytest.approx(0.75)
    assert row[HEIGHT] == pytest.approx(0.5)
    assert not set_region_mask(state, np.zeros(SIZE, np.float32))


def test_hold_takes_the_latest_frame_at_or_before_each_time_and_zeros_where_there_is_no_video():
    frame_seconds = np.array([0.10, 0.14, 0.18, 1.0])  # a gap from 0.18 s to 1.0 s
    rows = np.array([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0], [4.0, 4.0]], np.float32)
    at = np.array([0.05, 0.10, 0.139, 0.15, 0.21, 0.23, 0.5, 1.0, 1.2, 1.3])
    out = np.full((len(at), 2), -1.0, np.float32)
    hold_features_at(frame_seconds, rows, at, 0.25, out)
    np.testing.assert_array_equal(out[:, 0], [0.0, 1.0, 1.0, 2.0, 3.0, 3.0, 0.0, 4.0, 4.0, 0.0])
