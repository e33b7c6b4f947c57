"""`samstream separate` as a user runs it, on a small randomly initialised exported model.

The model's weights are random (the trained default model is not part of this test), so
these tests check the plumbing: files, rates, channels, prompts, errors; not quality.
"""
import re
import subprocess
import sys

import numpy as np
import pytest
import soundfile

from samstream.models.checkpoint import save_checkpoint
from samstream.models.export import export_model_dir
from samstream.models.runtime import OnnxSeparator
from samstream.models.separate import SpanPrompt, change_rate, span_prompt
from samstream.plugin_host.audio_files import read_audio
from tests.models.test_model import randomised, tiny_config


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("separate-model")
    save_checkpoint(randomised(tiny_config(context=16)), folder / "checkpoint")
    for steps in (1, 2):
        export_model_dir(folder / "checkpoint", folder / "serving", steps)
    return folder / "serving"


def separate(*arguments):
    return subprocess.run([sys.executable, "-m", "samstream.plugin_host.cli", "separate", *arguments],
                          capture_output=True, text=True, timeout=300)


def test_text_prompt_writes_target_and_residual_that_sum_to_the_input(model_dir, tmp_path):
    result = separate("examples/speech_hum.flac", "--text", "a person speaking", "--model", str(model_dir),
                      "--steps", "2", "-o", str(tmp_path))
    assert result.returncode == 0, result.stderr
    mixture, rate = read_audio("examples/speech_hum.flac")
    target, target_rate = read_audio(tmp_path / "target.wav")
    residual, _ = read_audio(tmp_path / "residual.wav")
    assert target_rate == rate and target.shape == mixture.shape == residual.shape
    assert np.abs(target + residual - mixture).max() < 1e-5
    assert np.abs(target - mixture).max() > 1e-3, "a prompted random model must change something"


def test_a_44k_stereo_file_comes_back_at_44k_stereo(model_dir, tmp_path):
    rng = np.random.default_rng(0)
    stereo = (rng.standard_normal((44100, 2)) * 0.1).astype(np.float32)
    soundfile.write(tmp_path / "in.wav", stereo, 44100, subtype="FLOAT")
    result = separate(str(tmp_path / "in.wav"), "--text", "hiss", "--model", str(model_dir), "--stream",
                      "-o", str(tmp_path / "o"))
    assert "live path" in result.stdout
    assert result.returncode == 0, result.stderr
    target, rate = read_audio(tmp_path / "o" / "target.wav")
    assert rate == 44100 and target.shape == (2, 44100)


@pytest.mark.parametrize("rate", [22050, 96000])
@pytest.mark.parametrize("path", ["--stream", "offline"])
def test_any_rate_a_file_has_comes_back_at_that_rate(model_dir, tmp_path, rate, path):
    """22.05 and 96 kHz files were refused ("in_rate must be one of (16000, 44100, 48000)")."""
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(rate) / rate)).astype(np.float32)
    soundfile.write(tmp_path / "in.wav", tone, rate, subtype="FLOAT")
    result = separate(str(tmp_path / "in.wav"), "--text", "a tone", "--model", str(model_dir), "-o",
                      str(tmp_path / "o"), *([path] if path.startswith("--") else []))
    assert result.returncode == 0, result.stderr
    target, target_rate = read_audio(tmp_path / "o" / "target.wav")
    residual, _ = read_audio(tmp_path / "o" / "residual.wav")
    assert target_rate == rate and target.shape == (1, rate)
    np.testing.assert_allclose(target + residual, tone[None], atol=1e-5)


def test_no_prompt_passes_through_and_says_so(model_dir, tmp_path):
    result = separate("examples/speech_hum.flac", "--model", str(model_dir), "-o", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "passes through" in result.stdout
    mixture, _ = read_audio("examples/speech_hum.flac")
    assert np.abs(read_audio(tmp_path / "target.wav")[0] - mixture).max() < 1e-4


def test_nan_and_inf_in_the_file_are_replaced_and_counted(model_dir, tmp_path):
    signal = (np.random.default_rng(1).standard_normal((48000, 1)) * 0.1).astype(np.float32)
    signal[100:105] = np.nan
    signal[2000] = np.inf
    soundfile.write(tmp_path / "broken.wav", signal, 48000, subtype="FLOAT")
    result = separate(str(tmp_path / "broken.wav"), "--text", "noise", "--model", str(model_dir), "-o",
                      str(tmp_path / "o"))
    assert result.returncode == 0, result.stderr
    assert "6 NaN or Inf input samples were replaced" in result.stdout
    assert np.isfinite(read_audio(tmp_path / "o" / "target.wav")[0]).all()


@pytest.mark.parametrize("arguments, message", [
    (["examples/speech_hum.flac", "--text", "x", "--model", "no/such/model", "-o", "out/x"], "config.json: missing"),
    (["examples/speech_hum.flac", "--span", "3:1", "-o", "out/x"], "START < STOP"),
    (["examples/speech_hum.flac", "--span", "abc", "-o", "out/x"], "START:STOP"),
    (["no/such.wav", "--text", "x", "-o", "out/x"], "no such file"),
    (["examples/speech_hum.flac", "--candidates", "3", "-o", "out/x"], "--candidates needs --text"),
    (["examples/speech_hum.flac", "--text", "x", "--candidates", "0", "-o", "out/x"], "at least 1"),
    (["examples/speech_hum.flac", "--text", "x", "--candidates", "2", "--judge", "no/such/judge", "-o", "out/x"],
     "config.json: missing"),
])
def test_bad_requests_end_in_one_clear_line(arguments, message):
    result = separate(*arguments)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr, result.stderr


def test_candidates_are_scored_by_the_shipped_judge_and_the_best_kept(model_dir, tmp_path):
    result = separate("examples/speech_hum.flac", "--text", "speech", "--model", str(model_dir), "--candidates", "3",
                      "--seed", "4", "--steps", "2", "-o", str(tmp_path / "best"))
    assert result.returncode == 0, result.stderr
    scores = {int(seed): float(score) for seed, score in re.findall(r"seed (\d+): ([+-]\d+\.\d+) dB", result.stdout)}
    assert set(scores) == {4, 5, 6}
    kept = int(re.search(r"kept seed (\d+)", result.stdout).group(1))
    assert scores[kept] == max(scores.values())
    single = separate("examples/speech_hum.flac", "--text", "speech", "--model", str(model_dir), "--seed", str(kept),
                      "--steps", "2", "-o", str(tmp_path / "single"))
    assert single.returncode == 0, single.stderr
    np.testing.assert_array_equal(read_audio(tmp_path / "best" / "target.wav")[0],
                                  read_audio(tmp_path / "single" / "target.wav")[0])


def test_spans_become_anchors_and_an_example_embedding(model_dir):
    separator = OnnxSeparator(model_dir, steps=1)
    mixture = (np.random.default_rng(2).standard_normal((1, 48000)) * 0.1).astype(np.float32)
    example = span_prompt(mixture, [SpanPrompt(0.25, 0.5), SpanPrompt(0.75, 1.0, positive=False)], separator)
    anchors = separator.anchor_schedule
    hop = separator.config.stft.hop
    assert set(np.flatnonzero(anchors == 1)) == set(range(12000 // hop, -(-24000 // hop)))
    assert (anchors[36000 // hop:] == 2).all() and (anchors[:12000 // hop] == 0).all()
    assert example.shape == (separator.config.stft.n_bins,) and np.isfinite(example).all()
    assert span_prompt(mixture, [SpanPrompt(0.0, 0.1, positive=False)], separator) is None


@pytest.mark.parametrize("rates", [(44100, 48000), (16000, 48000), (48000, 44100), (22050, 48000),
                                   (96000, 48000), (48000, 192000), (32000, 48000)])
def test_rate_changes_keep_a_tone_in_place(rates):
    from_rate, to_rate = rates
    time = np.arange(from_rate) / from_rate
    tone = np.sin(2 * np.pi * 1000 * time)[None].astype(np.float32)
    moved = change_rate(tone, from_rate, to_rate)
    expected = np.sin(2 * np.pi * 1000 * np.arange(to_rate) / to_rate)
    assert moved.shape == (1, to_rate)
    assert np.abs(moved[0, 500:-500] - expected[500:-500]).max() < 1e-3


@pytest.mark.parametrize("steps", [1, 2])
def test_offline_chunks_equal_the_live_path(model_dir, steps):
    """Chunks shorter than the file, each with its receptive field of past: no seams."""
    from samstream.models.separate import separate as separate_audio

    audio, rate = read_audio("examples/speech_hum.flac")
    audio = audio[:, :rate * 2]
    text = np.random.default_rng(3).standard_normal(384).astype(np.float32)
    streamed = separate_audio(audio, rate, text, steps=steps, model_dir=model_dir, stream=True)
    offline = separate_audio(audio, rate, text, steps=steps, model_dir=model_dir, stream=False, chunk_frames=40)
    assert np.abs(streamed.target - offline.target).max() < 1e-4
    assert abs(si_sdr_db(offline.target, streamed.target)) > 40


def si_sdr_db(estimate, reference):
    from samstream.models.metrics import si_sdr

    return si_sdr(estimate[0].astype(np.float64), reference[0].astype(np.float64))


@pytest.fixture(scope="module")
def unlevelled_model_dir(tmp_path_factory):
    """The same random model with its input level left alone (InputLevelConfig.enabled false)."""
    from dataclasses import replace

    from samstream.models.checkpoint import load_checkpoint
    from samstream.models.config import InputLevelConfig

    folder = tmp_path_factory.mktemp("unlevelled-model")
    model = randomised(tiny_config(context=16))
    model.config = replace(model.config, input_level=InputLevelConfig(enabled=False))
    save_checkpoint(model, folder / "checkpoint")
    assert not load_checkpoint(folder / "checkpoint").config.input_level.enabled
    export_model_dir(folder / "checkpoint", folder / "serving", 1)
    return folder / "serving"


@pytest.mark.parametrize("stream", [True, False])
def test_quiet_inputs_are_heard_at_the_edge_of_the_level_range_on_both_paths(model_dir, unlevelled_model_dir,
                                                                             stream):
    """-45 and -55 dBFS are both heard at -28 dBFS, so the target scales with the input; a model
    without the level normaliser hears them 10 dB apart and separates them differently."""
    from samstream.models.separate import separate as separate_audio

    rng = np.random.default_rng(4)
    time = np.arange(48000) / 48000
    signal = rng.standard_normal(48000) + 3 * np.sin(2 * np.pi * 440 * time)
    signal = (signal / np.sqrt(np.mean(signal ** 2)))[None]
    text = rng.standard_normal(384).astype(np.float32)

    def targets(folder):
        loud, quiet = (separate_audio((signal * 10 ** (dbfs / 20)).astype(np.float32), 48000, text, steps=1,
                                      model_dir=folder, stream=stream).target for dbfs in (-45.0, -55.0))
        return loud, quiet * np.float32(10 ** (10 / 20))

    loud, quiet = targets(model_dir)
    levelled = si_sdr_db(quiet, loud)
    assert levelled > 75  # float rounding: measured 88 dB
    loud, quiet = targets(unlevelled_model_dir)
    assert si_sdr_db(quiet, loud) < levelled - 20  # measured 46 dB
