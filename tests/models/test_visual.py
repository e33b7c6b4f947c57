"""Visual prompt features on the project's synthetic audio-visual clips, and the optional image encoder."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from samstream.kernels.visual import MOTION, MOTION_FEATURES, PRESENT
from samstream.models.config import ModelConfig
from samstream.models.data.av_clips import clip_visual_rows, render_av_clip, source_envelope
from samstream.models.visual import ImageEncoder, RegionFeatures, RegionKey, clip_box, token_seconds

RATE = 48000
SECONDS = 6
CONFIG = ModelConfig()


def bursts(rng: np.random.Generator) -> np.ndarray:
    """Noise bursts at random times: a source whose envelope has clear onsets and silences."""
    gate = np.zeros(SECONDS * RATE)
    for _ in range(8):
        start = int(rng.integers(0, len(gate) - RATE // 2))
        gate[start:start + int(rng.integers(RATE // 10, RATE // 2))] = 1.0
    return (rng.standard_normal(len(gate)) * gate * 0.3).astype(np.float32)


def correlations(seed: int) -> tuple[float, float, float]:
    """(target box vs target envelope, wrong source's box vs target envelope, distractor's box vs it)."""
    rng = np.random.default_rng(seed)
    target, interferer = bursts(rng), bursts(rng)
    clip = render_av_clip([target, interferer], RATE, rng, distractors=2)
    frames = SECONDS * RATE // CONFIG.stft.hop
    envelope = source_envelope(target, RATE, token_seconds(frames, CONFIG))
    rows = [clip_visual_rows(clip, index, CONFIG, frames)[:, MOTION] for index in (0, 1, 2)]
    return tuple(float(np.corrcoef(row, envelope)[0, 1]) for row in rows)


def test_the_target_box_moves_with_the_target_and_a_wrong_box_does_not():
    figures = np.array([correlations(seed) for seed in range(4)])
    right, wrong, distractor = figures.mean(axis=0)
    assert right > 0.7, figures
    assert wrong < right - 0.35 and distractor < right - 0.35, figures
    assert (figures[:, 0] > figures[:, 1]).all() and (figures[:, 0] > figures[:, 2]).all(), figures


def test_clip_rows_fill_the_motion_slots_and_leave_appearance_empty():
    rng = np.random.default_rng(7)
    clip = render_av_clip([bursts(rng)], RATE, rng, distractors=1)
    rows = clip_visual_rows(clip, 0, CONFIG, 400)
    assert rows.shape == (400, CONFIG.prompt.visual_dim) and rows.dtype == np.float32
    assert (rows[1:, PRESENT] == 1.0).all() and rows[:, MOTION].max() > 0.3
    assert not rows[:, MOTION_FEATURES:].any()  # no image encoder: the default, appearance stays 0
    assert clip.frames.shape[1:] == (90, 160, 3) and len(clip.boxes) == 2


def test_too_many_objects_for_the_grid_are_refused():
    with pytest.raises(ValueError, match="at most 6 objects"):
        render_av_clip([np.zeros(RATE, np.float32)] * 4, RATE, np.random.default_rng(0), distractors=3)


def mean_colour_encoder(path) -> None:
    """A stand-in for a user's CLIP export: (1, 3, 32, 32) -> the mean colour, through a fixed 3 -> 8 matrix."""
    weights = helper.make_tensor("weights", TensorProto.FLOAT, (3, 8),
                                 np.random.default_rng(1).standard_normal(24).astype(np.float32))
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["image"], ["pooled"]),
         helper.make_node("Flatten", ["pooled"], ["flat"]),
         helper.make_node("MatMul", ["flat", "weights"], ["embedding"])],
        "encoder", [helper.make_tensor_value_info("image", TensorProto.FLOAT, (1, 3, 32, 32))],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, (1, 8))], [weights])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def test_an_image_encoder_fills_the_appearance_slots_from_the_region(tmp_path):
    mean_colour_encoder(tmp_path / "encoder.onnx")
    slots = CONFIG.prompt.visual_dim - MOTION_FEATURES
    encoder = ImageEncoder(tmp_path / "encoder.onnx", slots)
    assert encoder.size == (32, 32)
    rgb = np.zeros((90, 160, 3), np.uint8)
    rgb[:, :80] = (255, 0, 0)  # red on the left, blue on the right
    rgb[:, 80:] = (0, 0, 255)
    grey = rgb.mean(axis=2).astype(np.uint8)
    rows = []
    for box in ((0.0, 0.0, 0.5, 1.0), (0.5, 0.0, 0.5, 1.0)):
        region = RegionFeatures(90, 160, CONFIG, [RegionKey(0.0, box=box)], encoder)
        rows.append(region.frame(grey, 0.0, rgb).copy())
    left, right = rows
    assert np.abs(left[MOTION_FEATURES:]).max() > 0.1
    assert np.abs(left[MOTION_FEATURES:] - right[MOTION_FEATURES:]).max() > 0.1
    again = RegionFeatures(90, 160, CONFIG, [RegionKey(0.0, box=(0.0, 0.0, 0.5, 1.0))], encoder).frame(grey, 0.0, rgb)
    np.testing.assert_array_equal(again, left)  # the projection is fixed


def test_an_image_encoder_must_take_one_image(tmp_path):
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "bad",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, (1, 8))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, (1, 8))])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "bad.onnx"))
    with pytest.raises(ValueError, match="one .1, 3, H, W. image input"):
        ImageEncoder(tmp_path / "bad.onnx", 6)


def test_region_keys_switch_boxes_in_time_and_a_stop_ends_the_prompt():
    keys = [RegionKey(0.0, box=(0.0, 0.0, 0.5, 0.5), stop=1.0), RegionKey(2.0, box=(0.5, 0.5, 0.5, 0.5))]
    region = RegionFeatures(90, 160, CONFIG, keys)
    grey = np.zeros((90, 160), np.uint8)
    centres = [tuple(region.frame(grey, moment)[5:7]) for moment in (0.0, 1.5, 2.5)]
    assert centres[0] == pytest.approx((0.25, 0.25)) and centres[1] == (0.0, 0.0)
    assert centres[2] == pytest.approx((0.75, 0.75))


def test_clip_box_clips_and_refuses_a_box_outside():
    assert clip_box((-0.2, 0.5, 0.5, 0.8)) == pytest.approx((0.0, 0.5, 0.3, 0.5))
    with pytest.raises(ValueError, match="outside the frame"):
        clip_box((1.1, 0.0, 0.2, 0.2))


def test_a_training_mixture_gets_rows_that_follow_its_target():
    from samstream.models.data.av_clips import mixture_visual_rows

    rng = np.random.default_rng(21)
    target, residual = bursts(rng), bursts(rng)
    frames = -(-len(target) // CONFIG.stft.hop)  # as models.prompts counts a training example's frames
    rows = mixture_visual_rows(target, residual, rng, CONFIG, frames)
    envelope = source_envelope(target, RATE, token_seconds(frames, CONFIG))
    assert rows.shape == (frames, CONFIG.prompt.visual_dim)
    assert np.corrcoef(rows[:, MOTION], envelope)[0, 1] > 0.7
