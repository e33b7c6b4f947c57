"""The live confidence: the judge on the stream's own rings, off the audio thread, reaching
`/sam/status`, the meters and an OSC subscriber."""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from samstream.models.config import JudgeConfig
from samstream.models.judge import CONSISTENCY_NAMES, Judge, confidence_of
from samstream.models.judge_net import JudgeNet, save_judge, with_fusion
from samstream.models.text_encoder import TextEncoder
from samstream.plugin_host.audio_files import read_audio
from samstream.plugin_host.bridge import LiveBridge
from samstream.plugin_host.live_judge import LiveJudge
from samstream.plugin_host.osc_server import OscServer
from tests.plugin_host.test_osc import Client

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "speech_hum.flac"
HOP = 256
RATE = 48000
CROSSFADE = 960

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def judge_dir(tmp_path_factory):
    """A judge with random weights, consistency features and all: these tests check the
    plumbing, not the judge's taste."""
    torch.manual_seed(1)
    folder = tmp_path_factory.mktemp("judge")
    save_judge(with_fusion(JudgeNet(JudgeConfig()), len(CONSISTENCY_NAMES)), folder)
    return folder


@pytest.fixture(scope="module")
def example():
    return read_audio(EXAMPLE)[0]


@pytest.fixture(scope="module")
def encoder():
    return TextEncoder.load()


def stream_into(live: LiveJudge, dry: np.ndarray, target: np.ndarray) -> None:
    for start in range(0, dry.shape[1] - HOP + 1, HOP):
        live.record(dry[:, start:start + HOP], target[:, start:start + HOP])


def test_live_judge_scores_the_newest_window_like_the_offline_judge(judge_dir, example):
    live = LiveJudge(judge_dir)
    live.configure(RATE, CROSSFADE)
    embedding = np.random.default_rng(0).standard_normal(384).astype(np.float32)
    target = 0.5 * example
    assert live.judge_once() is None  # no prompt: nothing to judge
    live.set_prompt(embedding)
    stream_into(live, example[:, :HOP * 100], target[:, :HOP * 100])
    assert live.judge_once() is None and live.confidence is None  # under a second of the new prompt
    stream_into(live, example[:, HOP * 100:], target[:, HOP * 100:])
    end = (example.shape[1] // HOP) * HOP
    window = slice(end - live.judge.config.window_samples, end)
    expected = Judge(judge_dir).judge(example[0, window], target[0, window], embedding).score_db
    assert live.judge_once() == pytest.approx(expected, abs=1e-5)
    assert live.confidence == pytest.approx(confidence_of(expected), abs=1e-4)
    assert live.judgements == 1 and live.judge_ms > 0


def test_a_prompt_change_is_judged_only_on_what_followed_it(judge_dir, example):
    live = LiveJudge(judge_dir)
    live.configure(RATE, CROSSFADE)
    rng = np.random.default_rng(1)
    first, second = (rng.standard_normal(384).astype(np.float32) for _ in range(2))
    live.set_prompt(first)
    stream_into(live, example[:, :HOP * 300], 0.2 * example[:, :HOP * 300])
    assert live.judge_once() is not None
    live.set_prompt(second)
    assert live.score_db is None  # the old prompt's score is not shown for the new one
    changed_at = HOP * 300 + CROSSFADE
    stream_into(live, example[:, HOP * 300:HOP * 600], 0.9 * example[:, HOP * 300:HOP * 600])
    expected = Judge(judge_dir).judge(example[0, changed_at:HOP * 600], 0.9 * example[0, changed_at:HOP * 600],
                                      second).score_db
    assert live.judge_once() == pytest.approx(expected, abs=1e-5)
    live.set_prompt(None)
    assert live.judge_once() is None and live.confidence is None


def test_the_judging_process_judges_the_shared_rings_and_stops(judge_dir, example):
    """The judge runs in a process of its own (it held the worker's interpreter lock as a thread):
    what the parent records, it judges; its score comes back through the shared file."""
    live = LiveJudge(judge_dir, interval_s=0.02)
    live.configure(RATE, CROSSFADE)
    embedding = np.ones(384, np.float32) / np.sqrt(384)
    live.set_prompt(embedding)
    stream_into(live, example, 0.5 * example)
    live.start()
    assert live._process.pid != os.getpid()
    deadline = time.monotonic() + 60
    while live.judgements < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    judged = live.score_db
    live.stop()
    assert live.judgements >= 3 and live.last_error is None
    window = live.judge.config.window_samples
    end = (example.shape[1] // HOP) * HOP
    expected = Judge(judge_dir).judge(example[0, end - window:end], 0.5 * example[0, end - window:end],
                                      embedding).score_db
    assert judged == pytest.approx(expected, abs=1e-4)  # the same window every time: smoothing keeps it
    count = live.judgements
    time.sleep(0.2)
    assert live.judgements == count  # stopped for good


def test_a_judge_at_another_rate_is_refused_clearly(judge_dir):
    with pytest.raises(ValueError, match="48000 Hz, the stream at 44100 Hz"):
        LiveJudge(judge_dir).configure(44100, CROSSFADE)


def run_bridge(bridge: LiveBridge, signal: np.ndarray) -> None:
    out = np.zeros((signal.shape[0], 128), np.float32)
    for start in range(0, signal.shape[1] - 127, 128):
        bridge.process(signal[:, start:start + 128], out)


def test_the_bridge_reports_the_judges_confidence_in_status_meters_and_osc(encoder, example):
    """The shipped judge on the real bridge and the bundled model; a python-osc client subscribed."""
    bridge = LiveBridge(threaded=False, host_block=128, text_encoder=encoder)
    bridge.judge.interval_s = 3600.0  # the test judges by hand, so that it knows which judgement it sees
    bridge.configure(1)
    bridge.start()
    try:
        assert bridge.status()["confidence"] is None  # no prompt yet
        bridge.controller.apply("/sam/prompt/text", ["speech"])
        bridge.settle()
        run_bridge(bridge, example)
        score = bridge.judge.judge_once()
        assert score is not None
        status = bridge.status()
        assert status["confidence"] == pytest.approx(confidence_of(score), abs=1e-4)
        assert status["confidence_db"] == pytest.approx(score, abs=0.01)
        assert status["judgements"] == 1 and status["judge_ms"] > 0
        assert bridge.meters()["confidence"] == status["confidence"]
        with OscServer(bridge.controller, port=0) as server:
            client = Client(server.port)
            try:
                client.send("/sam/subscribe", 1)
                assert client.expect("/sam/confidence")[0] == pytest.approx(status["confidence"], abs=1e-4)
            finally:
                client.close()
    finally:
        bridge.stop()


def test_a_silent_window_reads_unknown_and_the_next_sound_is_judged_afresh(judge_dir, example):
    live = LiveJudge(judge_dir)
    live.configure(RATE, CROSSFADE)
    live.set_prompt(np.random.default_rng(2).standard_normal(384).astype(np.float32))
    stream_into(live, example, 0.5 * example)
    assert live.judge_once() is not None
    window = live.judge.config.window_samples
    whole_hops = -(-window // HOP) * HOP
    silence = np.zeros((1, whole_hops), np.float32)
    stream_into(live, silence, silence)
    assert live.judge_once() is None and live.confidence is None
    quiet = 10 ** (-90 / 20) * example[:, :whole_hops] / np.sqrt(np.mean(example[:, :whole_hops] ** 2))
    stream_into(live, quiet, quiet)  # -90 dBFS is quiet, not silent: judged
    expected = Judge(judge_dir).judge(quiet[0, -window:], quiet[0, -window:], live.shared.embedding).score_db
    assert live.judge_once() == pytest.approx(expected, abs=1e-5)  # not smoothed with a score from before


def test_digital_silence_through_the_bridge_reads_unknown_in_status_meters_and_osc(encoder):
    """The shipped judge on the real bridge: a prompt, then nothing but zeros at the input."""
    bridge = LiveBridge(threaded=False, host_block=128, text_encoder=encoder)
    bridge.judge.interval_s = 3600.0  # judged by hand below
    bridge.configure(1)
    bridge.start()
    try:
        bridge.controller.apply("/sam/prompt/text", ["speech"])
        bridge.settle()
        run_bridge(bridge, np.zeros((1, 4 * RATE), np.float32))
        assert bridge.judge.judge_once() is None
        assert bridge.status()["confidence"] is None and bridge.status()["confidence_db"] is None
        assert bridge.meters()["confidence"] is None
        with OscServer(bridge.controller, port=0) as server:
            client = Client(server.port)
            try:
                client.send("/sam/subscribe", 1)
                assert client.expect("/sam/confidence") == []  # "unknown": no number
            finally:
                client.close()
    finally:
        bridge.stop()


def test_the_bridge_runs_without_a_judge_and_says_so(encoder, example, tmp_path):
    bridge = LiveBridge(threaded=False, host_block=128, text_encoder=encoder, judge_dir=tmp_path)
    bridge.configure(1)
    bridge.start()
    try:
        bridge.controller.apply("/sam/prompt/text", ["speech"])
        bridge.settle()
        run_bridge(bridge, example[:, :48000])
        status = bridge.status()
        assert status["confidence"] is None and bridge.meters()["confidence"] is None
        assert any("no confidence" in note and "config.json" in note for note in status["notes"])
    finally:
        bridge.stop()
    off = LiveBridge(threaded=False, host_block=128, text_encoder=encoder, judge=False)
    assert off.judge is None
