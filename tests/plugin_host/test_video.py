"""Visual prompts from video files: decoding, alignment by timestamps, `samstream separate --video --box`.

The videos are the project's synthetic clips written to real files with PyAV; the model
is the small randomised one of ``test_separate`` (its visual gate is open, unlike the
bundled model's, so the visual rows visibly change the output).
"""
import json
import subprocess

import numpy as np
import pytest
import soundfile

from samstream.kernels.visual import MOTION, PRESENT
from samstream.models.config import ModelConfig
from samstream.models.data.av_clips import clip_visual_rows, render_av_clip, source_envelope
from samstream.models.separate import separate as separate_audio
from samstream.models.visual import RegionKey, token_seconds
from samstream.plugin_host.video import VideoError, parse_box, video_features, write_video
from tests.models.test_visual import bursts
from tests.plugin_host.test_separate import model_dir, separate  # noqa: F401 (a fixture)

RATE = 48000
SECONDS = 6
CONFIG = ModelConfig()
FRAMES = SECONDS * RATE // CONFIG.stft.hop


class Scene:
    """Two sources, their mixture, and their clip at 25 and 50 frames a second."""

    def __init__(self, folder):
        rng = np.random.default_rng(11)
        self.target, self.interferer = bursts(rng), bursts(rng)
        self.mixture = (self.target + self.interferer)[None]
        self.audio = folder / "mixture.wav"
        soundfile.write(self.audio, self.mixture[0], RATE, subtype="FLOAT")
        self.clip = render_av_clip([self.target, self.interferer], RATE, np.random.default_rng(5), distractors=1)
        self.video = folder / "scene.mp4"
        write_video(self.video, self.clip.frames, 25.0)
        fast = render_av_clip([self.target, self.interferer], RATE, np.random.default_rng(5), distractors=1,
                              frame_rate=50.0)
        self.video_50 = folder / "scene50.mp4"
        write_video(self.video_50, fast.frames, 50.0)
        self.fast_boxes = fast.boxes
        self.envelope = source_envelope(self.target, RATE, token_seconds(FRAMES, CONFIG))

    def box(self, index: int, boxes=None) -> str:
        return ",".join(f"{value:.4f}" for value in (boxes or self.clip.boxes)[index])

    def correlation(self, rows: np.ndarray) -> float:
        return float(np.corrcoef(rows[:FRAMES, MOTION], self.envelope)[0, 1])


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return Scene(tmp_path_factory.mktemp("video-scene"))


def features(scene, video, box_text, audio_seconds=SECONDS):
    track = video_features(video, [parse_box(box_text)], CONFIG, audio_seconds)
    return track, track.frames.schedule(FRAMES, CONFIG)


def test_a_video_file_gives_the_clips_own_features_and_the_target_box_follows_the_target(scene):
    track, rows = features(scene, scene.video, scene.box(0))
    assert track.info.frames == len(scene.clip.frame_seconds) and track.info.analysis_size == (90, 160)
    assert track.notes == ()
    direct = clip_visual_rows(scene.clip, 0, CONFIG, FRAMES)
    assert np.corrcoef(rows[:, MOTION], direct[:, MOTION])[0, 1] > 0.98  # the codec changes little
    _, wrong = features(scene, scene.video, scene.box(1))
    assert scene.correlation(rows) > 0.7 and scene.correlation(wrong) < scene.correlation(rows) - 0.35


def test_another_frame_rate_is_aligned_by_its_timestamps(scene):
    _, rows = features(scene, scene.video_50, scene.box(0, scene.fast_boxes))
    assert scene.correlation(rows) > 0.7


def test_a_shorter_or_later_video_is_aligned_and_the_uncovered_seconds_are_said(scene, tmp_path):
    short = tmp_path / "short.mp4"
    write_video(short, scene.clip.frames[:100], 25.0)  # 4 s of a 6 s file
    track, rows = features(scene, short, scene.box(0))
    assert any("ends at 4.00 s" in note for note in track.notes), track.notes
    late = token_seconds(FRAMES, CONFIG) > 3.96 + 0.5  # the last frame shows at 3.96 s; its row holds 0.5 s
    assert not rows[late].any() and rows[~late][1:, PRESENT].all()
    delayed = tmp_path / "delayed.mp4"
    write_video(delayed, scene.clip.frames[:100], 25.0, start_seconds=2.0)
    track, rows = features(scene, delayed, scene.box(0))
    assert any("starts at 2.00 s" in note for note in track.notes)
    early = token_seconds(FRAMES, CONFIG) < 2.0
    assert not rows[early].any() and rows[~early, PRESENT].all()
    away = tmp_path / "away.mp4"
    write_video(away, scene.clip.frames[:10], 25.0, start_seconds=30.0)
    with pytest.raises(VideoError, match="does not overlap the audio"):
        video_features(away, [parse_box(scene.box(0))], CONFIG, SECONDS)


def test_a_gap_in_the_video_reads_as_no_video_after_half_a_second(scene, tmp_path):
    gappy = tmp_path / "gappy.mp4"
    seconds = np.r_[np.arange(50) / 25, 4.0 + np.arange(50) / 25]  # nothing from 2 s to 4 s
    write_video(gappy, scene.clip.frames[:100], 25.0, frame_seconds=seconds)
    _, rows = features(scene, gappy, scene.box(0))
    times = token_seconds(FRAMES, CONFIG)
    assert rows[(times > 2.6) & (times < 4.0)].sum() == 0.0
    assert rows[(times > 0.1) & (times < 2.4), PRESENT].all() and rows[(times > 4.0) & (times < 5.9), PRESENT].all()


def test_a_mask_png_gives_the_same_rows_as_its_box(scene, tmp_path):
    import av

    x, y, w, h = scene.clip.boxes[0]
    mask = np.zeros((90, 160), np.uint8)
    mask[round(y * 90):round((y + h) * 90), round(x * 160):round((x + w) * 160)] = 255
    with av.open(str(tmp_path / "mask.png"), "w", format="image2") as container:
        stream = container.add_stream("png")
        stream.width, stream.height, stream.pix_fmt = 160, 90, "gray"
        frame = av.VideoFrame.from_ndarray(mask, format="gray")
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    by_mask = video_features(scene.video, [], CONFIG, SECONDS, masks=[(str(tmp_path / "mask.png"), 0.0, np.inf)])
    _, by_box = features(scene, scene.video, scene.box(0))
    np.testing.assert_allclose(by_mask.frames.schedule(FRAMES, CONFIG), by_box, atol=1e-6)


def test_the_visual_rows_reach_the_model_offline_and_streamed_alike(scene, model_dir):  # noqa: F811
    audio = scene.mixture[:, :2 * RATE]
    right = video_features(scene.video, [parse_box(scene.box(0))], CONFIG, 2.0).frames
    wrong = video_features(scene.video, [parse_box(scene.box(1))], CONFIG, 2.0).frames
    text = np.random.default_rng(3).standard_normal(384).astype(np.float32)
    options = {"steps": 1, "model_dir": model_dir}
    streamed = separate_audio(audio, RATE, text, visual=right, stream=True, **options)
    offline = separate_audio(audio, RATE, text, visual=right, stream=False, chunk_frames=40, **options)
    paths_differ = np.abs(streamed.target - offline.target).max()
    assert paths_differ < 1e-4
    without = separate_audio(audio, RATE, text, stream=False, **options)
    other_box = separate_audio(audio, RATE, text, visual=wrong, stream=False, **options)
    # The randomised model's visual weights are small (0.05): the rows move the output a little, but
    # far beyond the difference between the two paths.
    assert np.abs(offline.target - without.target).max() > 20 * paths_differ
    assert np.abs(offline.target - other_box.target).max() > 20 * paths_differ
    visual_only = separate_audio(audio, RATE, visual=right, stream=False, **options)
    assert not visual_only.passed_through


def test_separate_with_video_and_box_from_the_command_line(scene, model_dir, tmp_path):  # noqa: F811
    out = tmp_path / "out"
    result = separate(str(scene.audio), "--video", str(scene.video), "--box", scene.box(0) + "@0-5",
                      "--model", str(model_dir), "--stream", "-o", str(out))
    assert result.returncode == 0, result.stderr
    target, _ = soundfile.read(out / "target.wav", dtype="float32")
    residual, _ = soundfile.read(out / "residual.wav", dtype="float32")
    np.testing.assert_allclose(target + residual, scene.mixture[0], atol=1e-4)
    assert "video: this model was not trained with visual prompts" in result.stdout
    out_short = tmp_path / "short"
    short = tmp_path / "short.mp4"
    write_video(short, scene.clip.frames[:100], 25.0)
    result = separate(str(scene.audio), "--video", str(short), "--box=-0.2,-0.2,0.5,0.5", "--model",
                      str(model_dir), "-o", str(out_short))
    assert result.returncode == 0, result.stderr
    assert "video: the video ends at 4.00 s" in result.stdout


@pytest.mark.parametrize("extra, message", [
    (["--box", "0.1,0.1,0.2,0.2"], "need --video"),
    (["--video", "{video}"], "--video needs --box"),
    (["--video", "{video}", "--box", "1.2,0.1,0.2,0.2"], "lies outside the frame"),
    (["--video", "{video}", "--box", "0.1,0.1,0.2"], "--box is x,y,w,h"),
    (["--video", "{video}", "--box", "0.1,0.1,0.2,0.2@3-1"], "0 <= T0 < T1"),
    (["--video", "no/such.mp4", "--box", "0.1,0.1,0.2,0.2"], "no/such.mp4: no such file"),
    (["--video", "{audio}", "--box", "0.1,0.1,0.2,0.2"], "has no video stream"),
    (["--video", "{video}", "--mask", "no/mask.png"], "no/mask.png: no such file"),
])
def test_bad_video_requests_end_in_one_clear_line(scene, model_dir, tmp_path, extra, message):  # noqa: F811
    extra = [part.format(video=scene.video, audio=scene.audio) for part in extra]
    result = separate(str(scene.audio), *extra, "--model", str(model_dir), "-o", str(tmp_path / "x"))
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr, result.stderr
    assert not (tmp_path / "x").exists()


def test_region_keys_from_the_command_line_follow_their_times():
    key = parse_box("0.9,0.1,0.3,0.2@1.5-3")
    assert key == RegionKey(1.5, box=pytest.approx((0.9, 0.1, 0.1, 0.2)), stop=3.0)


def test_the_command_line_without_pyav_says_what_to_install(tmp_path):
    import sys

    script = ("import sys; sys.modules['av'] = None\n"
              "from samstream.plugin_host.video import require_av\n"
              "try:\n    require_av()\nexcept ValueError as error:\n    print(error)\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert "pip install samstream[video]" in result.stdout


def test_the_bundled_example_video_shows_the_speech_where_its_box_says():
    from pathlib import Path

    from samstream.plugin_host.audio_files import read_audio

    examples = Path(__file__).resolve().parents[2] / "examples"
    description = json.loads((examples / "speech_hum.video.json").read_text())
    speech, rate = read_audio(examples / "speech_hum.sources" / "speech.flac")
    envelope = source_envelope(speech[0], rate, token_seconds(FRAMES, CONFIG))
    figures = {}
    for name in ("speech", "hum"):
        box = ",".join(str(value) for value in description["boxes"][name])
        rows = video_features(examples / description["video"], [parse_box(box)], CONFIG, 6.0).frames
        figures[name] = np.corrcoef(rows.schedule(FRAMES, CONFIG)[:, MOTION], envelope)[0, 1]
    assert figures["speech"] > 0.6 and figures["hum"] < figures["speech"] - 0.3, figures
