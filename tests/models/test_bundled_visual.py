"""The bundled model follows a box on the bundled example's video (issue 8's wrong-box test, on real files).

The example's video (``scripts/make_av_example.py``) draws one object shaking with the
speech and one with the hum. Prompted by the box alone, the bundled model must keep more
speech with the speech box than with the hum box, and the reverse for the hum, through
the real H.264 file, PyAV and ONNX Runtime.
"""
import json
from pathlib import Path

import numpy as np
import pytest

from samstream.models.metrics import si_sdr
from samstream.models.runtime import load_serving_config
from samstream.models.separate import DEFAULT_MODEL_DIR, separate
from samstream.plugin_host.audio_files import read_audio

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

pytest.importorskip("av", reason="the video extra (PyAV) is part of the test set-up")


@pytest.fixture(scope="module")
def separations():
    from samstream.plugin_host.video import parse_box, video_features

    config, _ = load_serving_config(DEFAULT_MODEL_DIR)
    if not config.prompt.visual_trained:
        pytest.fail("the bundled model's config says it was not trained with visual prompts")
    description = json.loads((EXAMPLES / "speech_hum.video.json").read_text())
    mixture, rate = read_audio(EXAMPLES / "speech_hum.flac")
    sources = {name: read_audio(EXAMPLES / "speech_hum.sources" / f"{name}.flac")[0][0] for name in ("speech", "hum")}
    seconds = mixture.shape[1] / rate
    results = {}
    for name in ("speech", "hum"):
        box = parse_box(",".join(str(value) for value in description["boxes"][name]))
        track = video_features(EXAMPLES / description["video"], [box], config, seconds)
        target = separate(mixture, rate, None, visual=track.frames, stream=False).target[0]
        results[name] = {source: si_sdr(target.astype(np.float64), reference.astype(np.float64))
                         for source, reference in sources.items()}
    results["mixture"] = {source: si_sdr(mixture[0].astype(np.float64), reference.astype(np.float64))
                          for source, reference in sources.items()}
    return results


def test_the_speech_box_keeps_more_speech_than_the_hum_box(separations):
    assert separations["speech"]["speech"] > separations["hum"]["speech"] + 1.0, separations


def test_the_hum_box_keeps_more_hum_than_the_speech_box(separations):
    assert separations["hum"]["hum"] > separations["speech"]["hum"] + 1.0, separations


def test_live_the_boxes_steer_the_bundled_model_the_same_way():
    """The live bridge, the example's video played beside its audio, the box set as a control surface sets it."""
    from samstream.plugin_host.bridge import LiveBridge

    description = json.loads((EXAMPLES / "speech_hum.video.json").read_text())
    mixture, _ = read_audio(EXAMPLES / "speech_hum.flac")
    speech = read_audio(EXAMPLES / "speech_hum.sources" / "speech.flac")[0][0]
    block, kept = 128, {}
    for name in ("speech", "hum"):
        bridge = LiveBridge(steps=1, threaded=False, host_block=block, judge=False)
        bridge.configure(1)
        bridge.start()
        bridge.attach_video(str(EXAMPLES / description["video"]), threaded=False)
        bridge.controller.apply("/sam/prompt/visual/box", list(description["boxes"][name]))
        bridge.settle()
        output = np.zeros_like(mixture)
        taps = np.zeros((2, mixture.shape[1]), np.float32)
        for start in range(0, mixture.shape[1] - block + 1, block):
            window = slice(start, start + block)
            bridge.process(mixture[:, window], output[:, window], taps[:, window])
        status = bridge.status()
        latency = bridge.latency_samples
        bridge.stop()
        assert status["visual"]["state"] == "live" and not status["visual"]["note"], status["visual"]
        target = taps[0, latency:].astype(np.float64)
        kept[name] = si_sdr(target, speech[:len(target)].astype(np.float64))
    assert kept["speech"] > kept["hum"] + 1.0, kept
