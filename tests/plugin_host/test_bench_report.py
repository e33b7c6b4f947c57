"""`samstream bench`, the separation report: its metrics and baselines, and the command on real files."""
import json
import re
import subprocess
import sys

import numpy as np
import pytest
import soundfile

from samstream.models.metrics import sdr, si_sdr
from samstream.plugin_host.audio_files import read_audio
from samstream.plugin_host.bench_report import (
    METHODS,
    Mixture,
    baseline_estimates,
    hpss,
    improvements,
    is_harmonic,
    is_noise,
    is_percussive,
    oracle_ratio_mask,
    spectral_gate,
)

RATE, N_FFT, HOP = 48000, 1024, 256


def samstream(*arguments):
    return subprocess.run([sys.executable, "-m", "samstream.plugin_host.cli", *arguments],
                          capture_output=True, text=True, timeout=600)


def clicks_and_sine(seconds=2.0):
    """Impulses every 250 ms and a 440 Hz sine of the same energy (0 dB apart)."""
    time = np.arange(int(RATE * seconds)) / RATE
    clicks = np.zeros(len(time), np.float32)
    clicks[RATE // 8::RATE // 4] = 0.9
    sine = np.sin(2 * np.pi * 440 * time)
    sine *= np.sqrt(np.sum(clicks ** 2) / np.sum(sine ** 2))
    return clicks, sine.astype(np.float32)


def test_sdr_punishes_a_wrong_gain_that_si_sdr_forgives():
    reference = np.random.default_rng(0).standard_normal(48000)
    assert sdr(0.5 * reference, reference) == pytest.approx(20 * np.log10(2), abs=1e-6)
    assert si_sdr(0.5 * reference, reference) > 100
    assert sdr(reference, reference) > 100
    noisy = reference + 0.1 * np.random.default_rng(1).standard_normal(48000)
    assert sdr(noisy, reference) == pytest.approx(20, abs=0.2)


def test_passing_the_mixture_through_improves_nothing_and_the_reference_improves_a_lot():
    rng = np.random.default_rng(2)
    target, other = rng.standard_normal(24000), rng.standard_normal(24000)
    mixture = target + other
    for metric in (si_sdr, sdr):
        # Extract keeps the estimate, remove keeps mixture - estimate: each passes the mixture through once.
        assert improvements(mixture, target, mixture, metric)[0] == pytest.approx(0.0, abs=1e-9)
        assert improvements(np.zeros_like(mixture), target, mixture, metric)[1] == pytest.approx(0.0, abs=1e-9)
        extract, remove = improvements(target, target, mixture, metric)
        assert extract > 100 and remove > 100


def test_the_oracle_mask_separates_sources_in_different_bands():
    time = np.arange(RATE) / RATE
    low, high = np.sin(2 * np.pi * 200 * time), np.sin(2 * np.pi * 5000 * time)
    estimate = oracle_ratio_mask(low.astype(np.float32), high.astype(np.float32), N_FFT, HOP)
    assert estimate.shape == low.shape
    assert si_sdr(estimate, low) > 30


def test_hpss_puts_clicks_in_the_percussive_part_and_a_sine_in_the_harmonic_part():
    clicks, sine = clicks_and_sine()
    mixture = clicks + sine
    harmonic, percussive = hpss(mixture, N_FFT, HOP)
    assert np.allclose(harmonic + percussive, mixture)
    assert si_sdr(percussive, clicks) - si_sdr(mixture, clicks) > 10
    assert si_sdr(harmonic, sine) - si_sdr(mixture, sine) > 10


def test_spectral_gating_removes_a_stationary_noise_under_tone_bursts():
    time = np.arange(3 * RATE) / RATE
    bursts = (np.sin(2 * np.pi * 700 * time) * ((time % 1.0) < 0.5)).astype(np.float32) * 0.3
    noise = (np.random.default_rng(3).standard_normal(len(time)) * 0.05).astype(np.float32)
    gated = spectral_gate(bursts + noise, N_FFT, HOP)
    assert si_sdr(gated, bursts) - si_sdr(bursts + noise, bursts) > 8
    silent = slice(int(0.6 * RATE), int(0.9 * RATE))  # between bursts: only the noise sounded
    assert np.sqrt(np.mean(gated[silent] ** 2)) < 0.2 * np.sqrt(np.mean(noise[silent] ** 2))


def test_which_baseline_applies_to_which_classes():
    assert is_noise("hum") and is_noise("brown_noise") and is_noise("hiss") and not is_noise("human_voice")
    assert is_percussive("drums") and not is_harmonic("drums")
    assert is_harmonic("acoustic_guitar") and is_harmonic("speech") and not is_harmonic("explosion")
    clicks, sine = clicks_and_sine()

    def mixture(target_class, interferer_class):  # the baselines see the mixture and the class names only
        return Mixture("m", target_class, interferer_class, "caption", clicks + sine, clicks, sine)

    assert set(baseline_estimates(mixture("drums", "piano"), N_FFT, HOP)) == {"hpss"}
    assert set(baseline_estimates(mixture("hum", "speech"), N_FFT, HOP)) == {"spectral_gating"}
    assert set(baseline_estimates(mixture("hum", "hiss"), N_FFT, HOP)) == set()
    assert set(baseline_estimates(mixture("birds", "engine"), N_FFT, HOP)) == set()
    # The estimate is of the prompted target: the percussive part for drums, the harmonic part against them.
    for target, interferer, reference in (("drums", "piano", clicks), ("piano", "drums", sine)):
        estimate = baseline_estimates(mixture(target, interferer), N_FFT, HOP)["hpss"]
        assert si_sdr(estimate, reference) - si_sdr(clicks + sine, reference) > 10


@pytest.mark.timeout(600)
def test_the_torch_teacher_at_one_step_computes_what_the_onnx_student_computes():
    # The bundled model is not distilled: its one-step offline run is the teacher sampled once,
    # from the same noise, so the two paths must agree and the teacher's figures differ by steps alone.
    pytest.importorskip("torch")
    from samstream.models.separate import DEFAULT_MODEL_DIR, separate
    from samstream.models.text_encoder import TextEncoder
    from samstream.models.train import Teacher

    speech = read_audio("examples/speech_hum.sources/speech.flac")[0][0, :RATE]
    hum = read_audio("examples/speech_hum.sources/hum.flac")[0][0, :RATE]
    encoder = TextEncoder.load()
    mixture = Mixture("example", "speech", "hum", "speech", speech + hum, speech, hum)
    teacher = Teacher(DEFAULT_MODEL_DIR, steps=1).separate(mixture.mixture, encoder.encode("speech"))
    student = separate(mixture.mixture[None], RATE, encoder.encode("speech"), steps=1, stream=False).target[0]
    assert np.abs(teacher - student).max() < 1e-4


def write_folder(folder):
    """Three 3-second mixtures with references: speech over hum and hum under speech (the bundled
    example), and clicks over a sine chord (HPSS's case)."""
    folder.mkdir()
    speech = read_audio("examples/speech_hum.sources/speech.flac")[0][0, :3 * RATE]
    hum = read_audio("examples/speech_hum.sources/hum.flac")[0][0, :3 * RATE]
    clicks, sine = clicks_and_sine(3.0)
    rows = []
    for name, target, interferer, target_class, interferer_class, caption in (
            ("speech", speech, hum, "speech", "hum", "speech"),
            ("hum", hum, speech, "hum", "speech", "mains hum"),
            ("drums", clicks, sine, "drums", "organ", "drums")):
        for part, signal in (("mixture", target + interferer), ("target", target), ("interferer", interferer)):
            soundfile.write(folder / f"{name}.{part}.wav", signal, RATE, subtype="FLOAT")
        rows.append({"mixture": f"{name}.mixture.wav", "target": f"{name}.target.wav",
                     "interferer": f"{name}.interferer.wav", "target_class": target_class,
                     "interferer_class": interferer_class, "caption": caption})
    (folder / "index.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return folder


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    folder = write_folder(root / "mixtures")
    result = samstream("bench", "--folder", str(folder), "--out", str(root / "out"), "--per-class", "1",
                       "--streamed", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "out"


def finite(values):
    return all(np.isfinite(value) for value in values)


@pytest.mark.timeout(600)
def test_the_report_on_a_folder_of_mixtures_holds_every_figure(report):
    results = json.loads((report / "results.json").read_text())
    assert results["schema"] == "samstream-bench/1" and results["mixtures"] == 3
    assert set(results["mean"]) == set(METHODS)
    for figures in results["mean"].values():
        assert finite(figures["si_sdri"] + figures["sdri"]) and len(figures["si_sdri"]) == 2
    assert results["mean"]["streamed_1"]["count"] == 1 and results["mean"]["offline_1"]["count"] == 3
    assert set(results["per_class"]) == {"speech", "hum", "drums"}
    assert results["baselines"]["hpss"]["classes"] == ["drums"]
    assert results["baselines"]["spectral_gating"]["classes"] == ["hum", "speech"]
    oracle, model = results["mean"]["oracle_irm"]["si_sdri"], results["mean"]["offline_1"]["si_sdri"]
    assert oracle[0] > model[0] and oracle[1] > model[1]
    # The live path computes what the offline path computes.
    assert results["streamed_vs_offline"]["1"]["mean_abs_db"] < 0.1
    settings = results["settings"]
    assert results["latency"]["samples"] == settings["n_fft"] - settings["hop"]
    for steps in ("1", "2"):
        hop = results["hop_compute_ms"][steps]
        assert 0 < hop["p50"] <= hop["p99"] <= hop["max"] and hop["hops"] > 100
        # CPU time is the compute alone: never more than the wall time it fits in.
        assert 0 < hop["cpu_p50"] <= hop["cpu_p99"] <= hop["cpu_max"] and hop["cpu_p50"] <= hop["p50"] * 1.05
        assert isinstance(hop["realtime"], bool)
    assert all(value > 0 for value in results["real_time_factor"].values())
    text = (report / "report.md").read_text()
    assert "| speech |" in text and "oracle IRM" in text and "HPSS" in text
    # The shipped judge scored every estimate; each row keeps (judged, true) SI-SDR per method.
    judge = results["judge"]
    assert judge["estimates"] == sum(len(row["scores"]) for row in results["rows"])
    assert -1.0 <= judge["spearman"] <= 1.0 and set(judge["per_method"]) == set(METHODS)
    speech_row = next(row for row in results["rows"] if row["class"] == "speech")
    assert speech_row["judge"]["oracle_irm"][1] > speech_row["judge"]["offline_1"][1]  # the true figures
    assert "## Judge" in text and "Spearman" in text
    for name in ("per_class_si_sdri.png", "hop_compute.png", "spectrograms.png"):
        assert (report / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.timeout(600)
def test_compare_of_a_run_with_itself_is_zero_everywhere(report):
    path = str(report / "results.json")
    result = samstream("bench", "--compare", path, path)
    assert result.returncode == 0, result.stderr
    differences = re.findall(r"[+-]\d+\.\d+", result.stdout)
    assert len(differences) > 20 and all(float(value) == 0 for value in differences)
    assert "| hum |" in result.stdout and "1 step" in result.stdout
    assert "judge Spearman, every estimate" in result.stdout


@pytest.mark.timeout(600)
def test_compare_gives_the_judge_s_difference(report, tmp_path):
    results = json.loads((report / "results.json").read_text())
    before = results["judge"]["spearman"]
    results["judge"]["spearman"] = before + 0.1  # another judge, on the same separations
    (tmp_path / "other.json").write_text(json.dumps(results))
    result = samstream("bench", "--compare", str(report / "results.json"), str(tmp_path / "other.json"))
    assert result.returncode == 0, result.stderr
    assert f"judge Spearman, every estimate: {before:.3f} -> {before + 0.1:.3f} (+0.100)" in result.stdout


@pytest.mark.parametrize("arguments, message", [
    (["bench", "--compare", "no/such.json", "no/such.json"], "no such results file"),
    (["bench", "--compare", "setup.py", "setup.py"], "not JSON"),
    (["bench", "--compare", "examples/speech_hum.json", "examples/speech_hum.json"], "not a samstream bench"),
    (["bench", "--folder", "no/such/folder"], "samstream data build"),
    (["bench", "--data", "no/such/corpus"], "samstream data build"),
])
def test_bench_errors_are_one_clear_line(arguments, message):
    result = samstream(*arguments)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_a_malformed_index_or_a_missing_reference_is_one_clear_line(tmp_path):
    (tmp_path / "index.jsonl").write_text('{"mixture": "a.wav"}\n')
    result = samstream("bench", "--folder", str(tmp_path))
    assert result.returncode != 0 and result.stderr.count("\n") == 1
    assert "index.jsonl:1: not a mixture row" in result.stderr
    (tmp_path / "index.jsonl").write_text(json.dumps({"mixture": "a.wav", "target": "b.wav", "target_class": "x",
                                                      "caption": "x"}) + "\n")
    result = samstream("bench", "--folder", str(tmp_path), "--out", str(tmp_path / "out"))
    assert result.returncode != 0 and result.stderr.count("\n") == 1 and "a.wav: no such file" in result.stderr
    assert not (tmp_path / "out").exists()
