"""The live bridge's video source: features per hop, steering over OSC and WebSocket, stalls and their fallback."""
import json
import subprocess
import sys
import time

import numpy as np
import pytest
from pythonosc.udp_client import SimpleUDPClient
from websockets.sync.client import connect

from samstream.kernels.visual import CENTRE_X, CENTRE_Y, PRESENT
from samstream.models.separate import separate as separate_audio
from samstream.models.text_encoder import TextEncoder
from samstream.models.visual import RegionKey
from samstream.plugin_host.bridge import LiveBridge
from samstream.plugin_host.osc_server import OscServer
from samstream.plugin_host.video import video_features, write_video
from samstream.plugin_host.video_live import LEAD_SECONDS, VideoFeed
from samstream.plugin_host.ws_server import WebSocketServer
from tests.plugin_host.test_osc import wait_for
from tests.plugin_host.test_separate import model_dir  # noqa: F401 (a fixture)
from tests.plugin_host.test_video import CONFIG, RATE, Scene

BLOCK = 128
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return Scene(tmp_path_factory.mktemp("live-video-scene"))


@pytest.fixture(scope="module")
def encoder():
    return TextEncoder.load()


def live_bridge(model_dir, encoder, video, image_encoder=None) -> LiveBridge:  # noqa: F811
    bridge = LiveBridge(model_dir, steps=1, threaded=False, host_block=BLOCK, text_encoder=encoder, judge=False)
    bridge.configure(1)
    bridge.start()
    bridge.attach_video(str(video), threaded=False, image_encoder=image_encoder)
    return bridge


def stream(bridge, audio, every_hop=None) -> tuple[np.ndarray, np.ndarray]:
    """Output and taps of ``audio`` in 128-sample blocks; ``every_hop(block index)`` after each block."""
    output, taps = np.zeros_like(audio), np.zeros((2, audio.shape[1]), np.float32)
    for index, start in enumerate(range(0, audio.shape[1] - BLOCK + 1, BLOCK)):
        window = slice(start, start + BLOCK)
        bridge.process(audio[:, window], output[:, window], taps[:, window])
        if every_hop is not None:
            every_hop(index)
    return output, taps


def test_a_video_file_played_live_feeds_the_rows_the_offline_path_feeds(scene, model_dir, encoder):  # noqa: F811
    audio = scene.mixture[:, :3 * RATE]
    bridge = live_bridge(model_dir, encoder, scene.video)
    bridge.controller.apply("/sam/prompt/text", ["speech"])
    bridge.controller.apply("/sam/prompt/visual/box", list(scene.clip.boxes[0]))
    bridge.settle()
    _, taps = stream(bridge, audio)
    status = bridge.status()
    bridge.stop()
    assert status["visual"]["state"] == "live" and "visual box" in status["prompt"]
    assert status["visual"]["frames"] >= 75 and "not trained with visual prompts" in status["visual"]["note"]
    visual = video_features(scene.video, [RegionKey(0.0, box=scene.clip.boxes[0])], CONFIG, 3.0).frames
    reference = separate_audio(audio, RATE, encoder.encode("speech"), steps=1, model_dir=model_dir, stream=True,
                               visual=visual)
    without = separate_audio(audio, RATE, encoder.encode("speech"), steps=1, model_dir=model_dir, stream=True)
    latency, settled = bridge.latency_samples, 4096
    usable = audio.shape[1] - latency - BLOCK
    live = taps[0, latency + settled:latency + usable]
    differs = np.abs(live - reference.target[0, settled:usable]).max()
    assert differs < 1e-4
    # The rows did reach the model: without them the output moves far more than the paths differ.
    assert np.abs(live - without.target[0, settled:usable]).max() > 20 * differs


def test_a_gap_in_the_video_fades_the_visual_row_out_and_back(scene, model_dir, encoder, tmp_path):  # noqa: F811
    gappy = tmp_path / "gappy.mp4"
    seconds = np.r_[np.arange(25) / 25, 2.0 + np.arange(25) / 25]  # no frame from 1 s to 2 s
    write_video(gappy, scene.clip.frames[:50], 25.0, frame_seconds=seconds)
    bridge = live_bridge(model_dir, encoder, gappy)
    bridge.controller.apply("/sam/prompt/text", ["speech"])
    bridge.controller.apply("/sam/prompt/visual/box", list(scene.clip.boxes[0]))
    bridge.settle()
    present, states = [], {}

    def observe(block):
        present.append(float(bridge.model.active.buffers["visual"][0, PRESENT]))
        if block % 25 == 0:
            states[round(bridge.stream_seconds(), 1)] = bridge.status()
    output, _ = stream(bridge, scene.mixture[:, :3 * RATE], observe)
    bridge.stop()
    assert states[1.2]["visual"]["state"] == "live"
    stalled = states[1.8]
    assert stalled["visual"]["state"].startswith("stalled: no video frame for")
    assert "the other prompts carry on" in stalled["visual"]["state"]
    assert not stalled["passing_through"] and stalled["visual"]["weight"] == 0.0
    assert any(note.startswith("video: stalled") for note in stalled["notes"])
    assert states[2.7]["visual"]["state"] == "live"
    # A box set before the stream is in force from the first frame, as offline; after that the
    # row fades over the 20 ms crossfade (4 hops): never a step of more than a quarter.
    first = present.index(1.0)
    assert np.abs(np.diff(present[first:])).max() <= 0.25 + 1e-6
    assert min(present[len(present) // 2:]) == 0.0 and present[-1] == 1.0
    assert np.isfinite(output).all()


def test_a_visual_only_prompt_passes_through_when_the_video_ends(scene, model_dir, encoder, tmp_path):  # noqa: F811
    short = tmp_path / "short.mp4"
    write_video(short, scene.clip.frames[:25], 25.0)  # 1 s of video for 3 s of audio
    bridge = live_bridge(model_dir, encoder, short)
    bridge.controller.apply("/sam/prompt/visual/box", list(scene.clip.boxes[0]))
    bridge.settle()
    states = {}

    def observe(block):
        if block % 25 == 0:
            bridge.settle()  # the prompt thread re-plans the prompt when the video comes and goes
            states[round(bridge.stream_seconds(), 1)] = bridge.status()
    audio = scene.mixture[:, :3 * RATE]
    output, _ = stream(bridge, audio, observe)
    bridge.stop()
    assert not states[0.8]["passing_through"] and states[0.8]["prompt"].startswith("visual box")
    ended = states[2.0]
    assert ended["visual"]["state"] == "video ended: the other prompts carry on"
    assert ended["passing_through"] and ended["prompt"] == ""
    latency = bridge.latency_samples
    tail = slice(int(2.5 * RATE), audio.shape[1] - BLOCK)
    np.testing.assert_allclose(output[0, tail], audio[0, tail.start - latency:tail.stop - latency], atol=1e-6)


def test_the_box_is_steered_over_osc_and_websocket(scene, model_dir, encoder):  # noqa: F811
    bridge = live_bridge(model_dir, encoder, scene.video)
    osc, web = OscServer(bridge.controller, port=0), WebSocketServer(bridge.controller, port=0)
    osc.start()
    web.start()
    try:
        SimpleUDPClient("127.0.0.1", osc.port).send_message("/sam/prompt/visual/box", [0.5, 0.5, 0.4, 0.2])
        assert wait_for(lambda: bridge.status()["visual"]["box"] == pytest.approx([0.5, 0.5, 0.4, 0.2]))
        stream(bridge, scene.mixture[:, :RATE // 2])
        row = bridge.model.active.buffers["visual"][0]
        assert (row[CENTRE_X], row[CENTRE_Y]) == pytest.approx((0.7, 0.6), abs=0.01)
        with connect(f"ws://127.0.0.1:{web.port}/ws", open_timeout=5) as client:
            json.loads(client.recv(timeout=5))
            client.send(json.dumps({"op": "set", "path": "/sam/prompt/visual/box", "value": [0.9, 0.0, 0.3, 0.2]}))
            assert wait_for(lambda: bridge.status()["visual"]["box"] == pytest.approx([0.9, 0.0, 0.1, 0.2]))
            client.send(json.dumps({"op": "set", "path": "/sam/prompt/visual/box", "value": [1.5, 0.0, 0.3, 0.2]}))
            reply = json.loads(client.recv(timeout=5))
            while reply["op"] != "error":
                reply = json.loads(client.recv(timeout=5))
            assert "outside the frame" in reply["reason"]
        stream(bridge, scene.mixture[:, :RATE // 2])
        row = bridge.model.active.buffers["visual"][0]
        assert (row[CENTRE_X], row[CENTRE_Y]) == pytest.approx((0.95, 0.1), abs=0.01)
        bridge.controller.apply("/sam/prompt/clear")
        bridge.settle()
        stream(bridge, scene.mixture[:, :RATE // 4])
        assert bridge.status()["visual"]["state"] == "no box" and not bridge.model.active.buffers["visual"].any()
    finally:
        osc.stop()
        web.stop()
        bridge.stop()


def test_the_feed_thread_decodes_just_ahead_of_the_stream_clock(scene):
    now = [1.0]
    feed = VideoFeed(str(scene.video), CONFIG, lambda: now[0], threaded=True)
    feed.set_box(scene.clip.boxes[0])
    feed.start()
    try:
        assert wait_for(lambda: feed.count >= 27)
        time.sleep(0.2)
        newest = feed.seconds[(feed.count - 1) % len(feed.seconds)]
        assert 1.0 < newest <= 1.0 + LEAD_SECONDS + 0.04 + 1e-9
        row = np.zeros(CONFIG.prompt.visual_dim, np.float32)
        assert feed.latest_at(0.99, row) == pytest.approx(0.96) and row[PRESENT] == 1.0
        now[0] = 100.0
        assert wait_for(lambda: feed.state == "ended")
        assert feed.count == len(scene.clip.frame_seconds) and feed.decode_ms > 0
        assert feed._thread.name == "samstream-video"
    finally:
        feed.stop()


def test_serve_plays_a_video_beside_a_file_and_refuses_a_missing_camera(scene, model_dir, tmp_path):  # noqa: F811
    command = [sys.executable, "-m", "samstream.plugin_host.cli", "serve", "--backend", "file", "--input",
               str(scene.audio), "--model", str(model_dir), "--no-control", "--no-judge", "--out", str(tmp_path)]
    result = subprocess.run([*command, "--video", str(scene.video), "--box", "0.1,0.1,0.3,0.3"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "target.wav").exists()
    result = subprocess.run([*command, "--video", "/dev/video97"], capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no V4L2 device on this machine" in lines[0], result.stderr


def test_an_image_encoder_adds_appearance_to_the_live_rows(scene, model_dir, encoder, tmp_path):  # noqa: F811
    from samstream.kernels.visual import MOTION_FEATURES
    from tests.models.test_visual import mean_colour_encoder

    mean_colour_encoder(tmp_path / "encoder.onnx")
    rows = []
    for image_encoder in (None, tmp_path / "encoder.onnx"):
        bridge = live_bridge(model_dir, encoder, scene.video, image_encoder)
        bridge.controller.apply("/sam/prompt/visual/box", list(scene.clip.boxes[0]))
        stream(bridge, scene.mixture[:, :RATE // 2])
        rows.append(bridge.model.active.buffers["visual"][0].copy())
        bridge.stop()
    plain, with_appearance = rows
    assert not plain[MOTION_FEATURES:].any() and np.abs(with_appearance[MOTION_FEATURES:]).max() > 0.05
    np.testing.assert_allclose(plain[:MOTION_FEATURES], with_appearance[:MOTION_FEATURES])
