"""The live bridge on the bundled model: prompts on the fly, captures, the file backend and `serve`."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from samstream.models.separate import change_rate, separate
from samstream.models.text_encoder import TextEncoder
from samstream.plugin_host.audio_files import read_audio
from samstream.plugin_host.backends import FileBackend
from samstream.plugin_host.bridge import LiveBridge

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "speech_hum.flac"
BLOCK = 128


@pytest.fixture(scope="module")
def encoder():
    return TextEncoder.load()


@pytest.fixture(scope="module")
def example():
    signal, rate = read_audio(EXAMPLE)
    assert rate == 48000
    return signal


def unthreaded_bridge(encoder, channels: int = 1) -> LiveBridge:
    bridge = LiveBridge(threaded=False, host_block=BLOCK, text_encoder=encoder)
    bridge.configure(channels)
    bridge.start()
    return bridge


def run_blocks(bridge: LiveBridge, signal: np.ndarray, changes: dict[int, tuple] | None = None) -> np.ndarray:
    """Stream in 128-sample blocks; ``changes`` maps a block index to a control message."""
    changes = changes or {}
    output = np.zeros_like(signal)
    for index, start in enumerate(range(0, signal.shape[1] - BLOCK + 1, BLOCK)):
        if index in changes:
            bridge.controller.apply(*changes[index])
            bridge.settle()
        window = slice(start, start + BLOCK)
        bridge.process(signal[:, window], output[:, window])
    return output


def test_no_prompt_passes_audio_through_exactly_and_says_so(encoder, example):
    bridge = unthreaded_bridge(encoder)
    output = run_blocks(bridge, example)
    latency = bridge.latency_samples
    np.testing.assert_array_equal(output[:, latency:], example[:, :output.shape[1] - latency])
    status = bridge.status()
    assert status["passing_through"] and "passes through" in status["note"]
    bridge.stop()


def test_live_bridge_target_equals_separate_streamed(encoder, example):
    bridge = unthreaded_bridge(encoder)
    bridge.controller.apply("/sam/prompt/text", ["speech"])
    bridge.settle()
    taps = np.zeros((2, example.shape[1]), np.float32)
    output = np.zeros_like(example)
    for start in range(0, example.shape[1] - BLOCK + 1, BLOCK):
        window = slice(start, start + BLOCK)
        bridge.process(example[:, window], output[:, window], taps[:, window])
    bridge.stop()
    reference = separate(example, 48000, encoder.encode("speech"), steps=1, stream=True)
    latency = bridge.latency_samples
    usable = example.shape[1] - latency - BLOCK
    # The live prompt fades in from pass-through over the crossfade; after it, the same numbers.
    settled = 4096
    got = slice(latency + settled, latency + usable)
    np.testing.assert_allclose(taps[0, got], reference.target[0, settled:usable], atol=1e-4)
    np.testing.assert_allclose(output[0, got], reference.target[0, settled:usable], atol=1e-4)


def largest_step(signal: np.ndarray) -> float:
    return float(np.abs(np.diff(signal)).max())


@pytest.mark.parametrize("change", [("/sam/prompt/text", ["mains hum"]), ("/sam/mode", ["remove"]),
                                    ("/sam/bypass", [1]), ("/sam/prompt/clear", []), ("/sam/mix", [0.2])])
def test_switching_on_the_fly_shows_no_discontinuity(encoder, example, change):
    bridge = unthreaded_bridge(encoder)
    switch_block = 1000
    output = run_blocks(bridge, example, {0: ("/sam/prompt/text", ["speech"]), switch_block: change})
    bridge.stop()
    at = switch_block * BLOCK + bridge.latency_samples
    around = output[0, at - 4800:at + 4800]
    before = output[0, at - 48000:at - 4800]
    assert largest_step(around) <= 1.5 * max(largest_step(before), largest_step(example[0]) * 0.5)
    assert not np.allclose(output[0, at + 4800:at + 9600], output[0, at - 9600:at - 4800])


def test_a_new_text_prompt_lands_within_a_hop_of_being_encoded(encoder, example):
    bridge = unthreaded_bridge(encoder)
    run_blocks(bridge, example[:, :48000])
    bridge.controller.apply("/sam/prompt/text", ["speech"])
    bridge.settle()
    assert bridge.model.active.prompt_pending
    silence = np.zeros((1, BLOCK), np.float32)
    out = np.zeros_like(silence)
    bridge.process(silence, out)
    bridge.process(silence, out)  # two 128-sample blocks complete one 256-sample hop
    assert not bridge.model.active.prompt_pending
    assert bridge.status()["prompt"] == "text 'speech'"
    bridge.stop()


def test_capture_button_turns_the_held_span_into_an_example(encoder, example):
    bridge = unthreaded_bridge(encoder)
    output = np.zeros_like(example)
    hold, release = 375 * BLOCK / 48000, 936 * BLOCK / 48000  # 1.0 s and 2.496 s, on block boundaries
    for start in range(0, example.shape[1] - BLOCK + 1, BLOCK):
        now = start / 48000
        if start == round(hold * 48000):
            bridge.controller.apply("/sam/prompt/capture", [1])
            assert bridge.model.active.live_anchor == 0  # set on the next hop
        if start == round(release * 48000):
            bridge.controller.apply("/sam/prompt/capture", [0])
            bridge.settle()
        window = slice(start, start + BLOCK)
        bridge.process(example[:, window], output[:, window])
        if hold + 0.1 < now < release:
            assert bridge.model.active.live_anchor == 1, (now, bridge.prompts.capture_start)
    status = bridge.status()
    assert "example of 1.5 s" in status["prompt"]
    assert not status["passing_through"]
    example = bridge.model.active.running_prompt.example_features
    assert example is not None and np.isfinite(example).all()
    bridge.stop()


def test_past_span_from_the_history_and_negative_span_anchor(encoder, example):
    bridge = unthreaded_bridge(encoder)
    run_blocks(bridge, example[:, :3 * 48000])
    bridge.controller.apply("/sam/prompt/span", [-2.0, -1.0])
    bridge.controller.apply("/sam/prompt/span/neg", [3.2, 4.0])
    bridge.settle()
    assert "example of 1.0 s" in bridge.status()["prompt"]
    assert bridge.controller.state()["/sam/prompt/spans"][1]["positive"] is False
    tail = example[:, 3 * 48000:]
    out = np.zeros_like(tail)
    anchors = []
    for start in range(0, tail.shape[1] - BLOCK + 1, BLOCK):
        bridge.process(tail[:, start:start + BLOCK], out[:, start:start + BLOCK])
        anchors.append(bridge.model.active.live_anchor)
    assert 2 in anchors and anchors[0] == 0
    bridge.stop()


def test_the_int8_variant_runs_live_and_says_so(encoder, example):
    bridge = LiveBridge(threaded=False, host_block=BLOCK, text_encoder=encoder, variant="int8")
    bridge.configure(1)
    bridge.start()
    output = run_blocks(bridge, example[:, :48000], {0: ("/sam/prompt/text", ["mains hum"])})
    assert bridge.status()["variant"] == "int8"
    assert np.isfinite(output).all() and np.abs(output).max() > 0
    bridge.stop()


def test_steps_switch_to_the_two_step_graph(encoder, example):
    bridge = unthreaded_bridge(encoder)
    run_blocks(bridge, example[:, :24000], {0: ("/sam/prompt/text", ["speech"]), 50: ("/sam/steps", [2])})
    assert bridge.model.active.steps == 2
    assert bridge.status()["steps"] == 2
    bridge.stop()


def test_file_backend_writes_aligned_outputs_at_the_file_rate(tmp_path, encoder):
    signal, _ = read_audio(EXAMPLE)
    path = tmp_path / "in44.wav"
    soundfile.write(path, change_rate(signal, 48000, 44100).T, 44100)
    bridge = LiveBridge(threaded=False, host_block=BLOCK, text_encoder=encoder)
    backend = FileBackend(bridge, path, tmp_path / "out")
    backend.prepare()
    bridge.controller.apply("/sam/prompt/text", ["mains hum"])
    summary = backend.run()
    assert summary["complete"]
    target, rate = read_audio(tmp_path / "out" / "target.wav")
    residual, _ = read_audio(tmp_path / "out" / "residual.wav")
    original, _ = read_audio(path)
    assert rate == 44100 and target.shape == original.shape
    # target + residual is the input: the two taps were taken from one stream, aligned.
    np.testing.assert_allclose(target + residual, original, atol=2e-3)


def test_stereo_file_keeps_its_channels_and_their_difference(tmp_path, encoder):
    signal, _ = read_audio(EXAMPLE)
    stereo = np.stack([signal[0], -0.5 * signal[0]])
    path = tmp_path / "stereo.wav"
    soundfile.write(path, stereo.T, 48000, subtype="FLOAT")
    bridge = LiveBridge(threaded=False, host_block=BLOCK, text_encoder=encoder)
    backend = FileBackend(bridge, path, tmp_path / "out")
    backend.prepare()
    bridge.controller.apply("/sam/prompt/text", ["speech"])
    backend.run()
    target, _ = read_audio(tmp_path / "out" / "target.wav")
    assert target.shape == stereo.shape
    # One mask for every channel: the image (here, right = -0.5 left) is kept.
    np.testing.assert_allclose(target[1], -0.5 * target[0], atol=1e-5)


def test_serve_file_backend_from_the_command_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "samstream.plugin_host.cli", "serve", "--backend", "file",
                             "--input", str(EXAMPLE), "--out", str(tmp_path), "--text", "speech", "--no-control"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "latency 896 samples" in result.stdout
    for name in ("output", "target", "residual"):
        assert (tmp_path / f"{name}.wav").exists()


@pytest.mark.parametrize("arguments, message", [
    (["--backend", "file"], "needs --input"),
    (["--backend", "file", "--input", "/no/such.wav"], "no such file"),
    (["--backend", "file", "--input", str(EXAMPLE), "--host", "0.0.0.0"], "give --token"),
    (["--backend", "file", "--input", str(EXAMPLE), "--max-latency-ms", "5", "--realtime"], "latency cap"),
    # This machine's ONNX Runtime has no CUDA provider: the GPU request is refused, not ignored.
    (["--backend", "file", "--input", str(EXAMPLE), "--compute", "cuda"], "no CUDA provider"),
])
def test_serve_bad_arguments_give_one_clear_line(arguments, message):
    result = subprocess.run([sys.executable, "-m", "samstream.plugin_host.cli", "serve", *arguments],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_change_scheduled_for_a_stream_time_lands_at_that_hop(encoder, example):
    """What an OSC bundle's time tag does, on the real bridge: held, then applied by the worker."""
    bridge = unthreaded_bridge(encoder)
    bridge.controller.apply("/sam/mode", ["remove"], at_seconds=1.0)
    assert bridge.controller.state()["/sam/mode"] == "extract"
    seen_at = None
    for start in range(0, 96000, BLOCK):
        bridge.process(example[:, start:start + BLOCK], np.zeros((1, BLOCK), np.float32))
        if seen_at is None and bridge.controller.state()["/sam/mode"] == "remove":
            seen_at = (start + BLOCK) / 48000
    assert seen_at is not None and 1.0 <= seen_at <= 1.0 + 2 * 256 / 48000
    bridge.stop()
