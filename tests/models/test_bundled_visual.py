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
