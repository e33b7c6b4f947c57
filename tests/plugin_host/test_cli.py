"""The `samstream` command as a user runs it: a real process, real files."""
import json
import re
import subprocess
import sys

import numpy as np
import pytest
import soundfile

from samstream.plugin_host.audio_files import read_audio


def samstream(*arguments, cwd=None):
    return subprocess.run([sys.executable, "-m", "samstream.plugin_host.cli", *arguments],
                          capture_output=True, text=True, timeout=300, cwd=cwd)


def test_demo_streams_the_example_and_reported_latency_equals_measured(tmp_path):
    result = samstream("demo", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    rows = re.findall(r"^(.+?)\s+(\d+) \(([\d.]+) ms\)\s+(\d+)\s+(\d+)\s+([\d.e+-]+)", result.stdout, re.M)
    assert len(rows) == 3, result.stdout
    for _, reported, _, impulse, correlation, error in rows:
        assert int(reported) == int(impulse) == int(correlation)
        assert float(error) < 1e-4
    assert "reported latency = measured latency: yes" in result.stdout
    output, rate = read_audio(tmp_path / "output.wav")
    example, example_rate = read_audio("examples/speech_hum.flac")
    assert rate == example_rate and output.shape == example.shape
    latency = int(rows[0][1])
    assert np.abs(output[:, latency:] - example[:, :-latency]).max() < 1e-4
    if "separation with the bundled model" in result.stdout:
        reported, measured = re.search(r"reported (\d+) samples .* measured (\d+)", result.stdout).groups()
        assert reported == measured
        assert (tmp_path / "speech_target.wav").exists() and (tmp_path / "hum_residual.wav").exists()


def test_demo_on_a_stereo_file_of_the_users(tmp_path):
    stereo = np.random.default_rng(0).uniform(-0.5, 0.5, (24000, 2)).astype(np.float32)
    soundfile.write(tmp_path / "stereo.wav", stereo, 48000)
    result = samstream("demo", "--input", str(tmp_path / "stereo.wav"), "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert "2 channel(s)" in result.stdout
    assert read_audio(tmp_path / "out" / "output.wav")[0].shape == (2, 24000)


@pytest.mark.parametrize("arguments, message", [
    (["demo", "--input", "no/such/file.wav"], "no such file"),
    (["demo", "--input", "setup.py"], "not a readable audio file"),
    (["demo", "--input", "examples"], "is a folder"),
    (["bench", "--data", "no/such/corpus"], "samstream data build"),
    (["bench", "--kernels", "--seconds", "-1"], "--seconds"),
    (["frobnicate"], "invalid choice"),
    (["demo", "--no-such-option"], "unrecognized arguments"),
])
def test_user_errors_end_with_one_clear_line_and_no_traceback(arguments, message, tmp_path):
    empty = tmp_path / "empty.wav"
    soundfile.write(empty, np.zeros((0, 1), np.float32), 48000)
    result = samstream(*arguments)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_an_empty_audio_file_is_refused_clearly(tmp_path):
    empty = tmp_path / "empty.wav"
    soundfile.write(empty, np.zeros((0, 1), np.float32), 48000)
    result = samstream("demo", "--input", str(empty), "--out", str(tmp_path / "out"))
    assert result.returncode == 1 and "contains no audio samples" in result.stderr
    assert not (tmp_path / "out").exists(), "a refused run must leave nothing behind"


def test_kernel_benchmark_writes_a_report_with_every_case_and_ratio(tmp_path):
    result = samstream("bench", "--kernels", "--seconds", "0.05", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "results.json").read_text())
    for case in ("stft_istft/numba", "stft_istft/numpy_per_hop", "stft_istft/torch_per_hop",
                 "ring/numba", "ring/numpy_slices"):
        assert report["results"][case]["p50_us"] > 0 and report["results"][case]["calls"] > 0
    assert set(report["ratios_p50"]) >= {"numpy_per_hop / numba (stft_istft)", "numpy_slices / numba (ring)"}
    assert "| stft_istft/numba |" in (tmp_path / "report.md").read_text()
