"""The reference-free judge: its features, ONNX against torch, the shipped judge on real audio,
re-ranking candidates, and the training set's labels."""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from samstream.models.config import JudgeConfig
from samstream.models.judge import (
    DEFAULT_JUDGE_DIR,
    Judge,
    JudgeFolderError,
    confidence_of,
    judge_features,
    separate_best_of,
    window_starts,
)
from samstream.models.judge_net import JudgeNet, load_judge, save_judge
from samstream.models.judge_train import (
    JudgeMixture,
    JudgeSet,
    Separations,
    build_judge_set,
    evaluate_judge,
    predict,
    train_judge,
)
from samstream.models.metrics import oracle_ratio_mask, spearman, spearman_interval
from samstream.models.separate import separate
from samstream.models.text_encoder import TextEncoder
from samstream.plugin_host.audio_files import read_audio

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "speech_hum.flac"
SOURCES = EXAMPLE.with_suffix(".sources")
CONFIG = JudgeConfig()


@pytest.fixture(scope="module")
def encoder():
    return TextEncoder.load()


@pytest.fixture(scope="module")
def example():
    """The bundled example and its two sources (mono, 48 kHz)."""
    mixture = read_audio(EXAMPLE)[0][0]
    speech, hum = (read_audio(SOURCES / name)[0][0] for name in ("speech.flac", "hum.flac"))
    return mixture, speech, hum


# -- features ---------------------------------------------------------------------------

def test_features_ignore_the_input_level_and_read_what_the_estimate_kept(example):
    mixture, speech, _ = example
    window = slice(0, CONFIG.window_samples)
    features = judge_features(mixture[window], speech[window], CONFIG)
    assert features.shape == (-(-CONFIG.window_samples // CONFIG.hop), CONFIG.feature_dim)
    assert np.isfinite(features).all()
    louder = judge_features(10 * mixture[window], 10 * speech[window], CONFIG)
    np.testing.assert_allclose(louder, features, atol=1e-4)
    bands = CONFIG.n_bands
    everything = judge_features(mixture[window], mixture[window], CONFIG)
    np.testing.assert_allclose(everything[:, bands:2 * bands], 0.0, atol=1e-5)  # kept all of every band
    loud = everything[:, :bands] * 20.0 > -20.0  # bands within 20 dB of the mixture's mean level
    assert loud.sum() > 100 and everything[:, 2 * bands:][loud].max() < -1.5  # left nothing: 30+ dB down
    nothing = judge_features(mixture[window], np.zeros_like(mixture[window]), CONFIG)
    np.testing.assert_allclose(nothing[:, 2 * bands:], 0.0, atol=1e-5)


def test_features_refuse_signals_of_different_lengths():
    with pytest.raises(ValueError, match="one length"):
        judge_features(np.zeros(4800, np.float32), np.zeros(4801, np.float32), CONFIG)


def test_windows_cover_the_signal_half_overlapping():
    size = CONFIG.window_samples
    assert window_starts(size // 3, CONFIG) == [0]
    starts = window_starts(2 * size + 1000, CONFIG)
    assert starts[0] == 0 and starts[-1] + size == 2 * size + 1000
    assert all(0 < b - a <= size // 2 for a, b in itertools.pairwise(starts))


def test_spearman_matches_scipy_with_ties():
    rng = np.random.default_rng(3)
    a = np.round(rng.normal(size=200), 1)
    b = a + rng.normal(size=200)
    assert spearman(a, b) == pytest.approx(spearmanr(a, b).statistic, abs=1e-12)
    assert spearman(a, a) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)


def test_spearman_interval_resamples_whole_groups():
    rng = np.random.default_rng(4)
    groups = np.repeat(np.arange(40), 10)
    a = rng.normal(size=400)
    b = a + rng.normal(size=400)
    low, high = spearman_interval(a, b, groups)
    assert low < spearman(a, b) < high and high - low < 0.2
    assert spearman_interval(a, a, groups) == pytest.approx((1.0, 1.0))
    # Ten copies of each example, grouped, hold no more information than one: the interval is as wide.
    one = spearman_interval(a[::10], b[::10], groups[::10])
    copies = spearman_interval(np.repeat(a[::10], 10), np.repeat(b[::10], 10), groups)
    assert copies == pytest.approx(one, abs=0.02)
    # Drawn as if independent, the copies would give an interval about three times narrower.
    independent = spearman_interval(np.repeat(a[::10], 10), np.repeat(b[::10], 10), np.arange(400))
    assert (independent[1] - independent[0]) < 0.5 * (one[1] - one[0])


def test_confidence_is_monotonic_and_half_at_zero_db():
    assert confidence_of(0.0) == pytest.approx(0.5)
    values = [confidence_of(db) for db in (-20, -5, 0, 5, 20)]
    assert values == sorted(values) and 0 < values[0] < 0.05 and values[-1] > 0.95


# -- network and export -------------------------------------------------------------------

def test_onnx_judge_equals_torch(tmp_path, example):
    torch.manual_seed(0)
    model = JudgeNet(CONFIG).eval()
    save_judge(model, tmp_path)
    judge = Judge(tmp_path)
    mixture, speech, _ = example
    text = np.random.default_rng(0).standard_normal(CONFIG.text_dim).astype(np.float32)
    for frames in (slice(0, 48000), slice(0, CONFIG.window_samples)):
        features = judge_features(mixture[frames], speech[frames], CONFIG)
        with torch.no_grad():
            expected = float(model(torch.from_numpy(features[None]), torch.from_numpy(text[None]))[0])
        assert judge.score_features(features, text) == pytest.approx(expected, abs=1e-4)
    reloaded = load_judge(tmp_path)
    for name, value in model.state_dict().items():
        torch.testing.assert_close(reloaded.state_dict()[name], value)


def test_a_broken_judge_folder_names_the_file(tmp_path):
    with pytest.raises(JudgeFolderError, match="config.json: missing"):
        Judge(tmp_path)
    save_judge(JudgeNet(CONFIG), tmp_path)
    (tmp_path / "judge.onnx").write_bytes(b"not a graph")
    with pytest.raises(JudgeFolderError, match="judge.onnx: not a usable ONNX graph"):
        Judge(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"format_version": 1, "colour": "red"}))
    with pytest.raises(JudgeFolderError, match="config.json: not a judge config"):
        Judge(tmp_path)


# -- the shipped judge on the bundled example ---------------------------------------------

def test_shipped_judge_ranks_oracle_over_model_over_wrong_prompt(example, encoder):
    """Known quality order on audio the judge never trained on: the ideal mask, the model's
    own separation, and the model asked for the other source."""
    mixture, speech, hum = example
    judge = Judge()
    embedding = encoder.encode("speech")
    oracle = oracle_ratio_mask(speech, hum, 1024, 256)
    model = separate(mixture[None], 48000, embedding, stream=False).target[0]
    wrong = separate(mixture[None], 48000, encoder.encode("mains hum"), stream=False).target[0]
    scores = {name: judge.judge(mixture, estimate, embedding).score_db
              for name, estimate in (("oracle", oracle), ("model", model), ("wrong", wrong))}
    assert scores["oracle"] > scores["model"] > scores["wrong"], scores
    judgement = judge.judge(mixture, oracle, embedding)
    assert len(judgement.window_scores_db) == len(window_starts(len(mixture), judge.config))
    assert 0.0 < judgement.confidence < 1.0


def test_shipped_judge_figures_are_recorded_beside_it():
    figures = json.loads((DEFAULT_JUDGE_DIR / "training.json").read_text())
    held_out = figures["held_out"]
    assert held_out["examples"] > 100 and -1.0 <= held_out["spearman"] <= 1.0


def test_best_of_candidates_keeps_the_judges_favourite(example, encoder):
    mixture, _, _ = example
    audio = mixture[None, :96000]
    embedding = encoder.encode("speech")
    judge = Judge()
    # Two steps: at one step the trained model's output hardly depends on the noise it starts from.
    ranked = separate_best_of(audio, 48000, embedding, 3, judge, first_seed=5, stream=False, steps=2)
    assert ranked.seeds == (5, 6, 7)
    assert len(set(ranked.scores_db)) == 3  # the seeds give different separations
    best = int(np.argmax(ranked.scores_db))
    assert ranked.best_seed == ranked.seeds[best]
    again = separate(audio, 48000, embedding, seed=ranked.seeds[best], stream=False, steps=2)
    np.testing.assert_array_equal(ranked.best.target, again.target)
    assert judge.judge(audio[0], again.target[0], embedding).score_db == pytest.approx(max(ranked.scores_db),
                                                                                          abs=1e-3)
    with pytest.raises(ValueError, match="text prompt"):
        separate_best_of(audio, 48000, None, 2, judge)
    with pytest.raises(ValueError, match="at least 1"):
        separate_best_of(audio, 48000, embedding, 0, judge)


# -- the training set and a short training run ----------------------------------------------

def test_judge_set_labels_follow_the_true_quality_and_training_runs(example, encoder):
    mixture, speech, _hum = example
    items = [JudgeMixture(mixture[:CONFIG.window_samples * 2], speech[:CONFIG.window_samples * 2], "speech",
                          "speech", "hum")]
    separations = Separations(Path(DEFAULT_JUDGE_DIR).parent, encoder, ["speech", "hum", "piano", "drums"],
                              teacher_steps=(2,), seed=0)
    data = build_judge_set(items, separations, CONFIG, heavy_every=1, log=lambda _: None)
    kinds = set(data.kind.tolist())
    assert {"model_1", "model_2", "teacher_2", "oracle", "no_separation", "wrong_prompt"} <= kinds
    assert data.features.shape == (len(data.score_db), -(-CONFIG.window_samples // CONFIG.hop), CONFIG.feature_dim)
    assert set(data.window_id.tolist()) == {0, 1}

    def mean_score(kind):
        return float(data.score_db[data.kind == kind].mean())
    assert mean_score("oracle") > mean_score("model_1") > mean_score("residual_as_target")
    assert CONFIG.score_floor_db <= data.score_db.min() and data.score_db.max() <= CONFIG.score_ceiling_db

    model = train_judge(data, CONFIG, epochs=3, windows_per_batch=1, log=lambda _: None)
    predicted = predict(model, data)
    assert predicted.shape == data.score_db.shape and np.isfinite(predicted).all()
    figures = evaluate_judge(predicted, data)
    assert figures["examples"] == len(data.score_db) and set(figures["per_kind"]) == kinds
    low, high = figures["spearman_95_over_mixtures"]
    assert -1.0 <= low <= figures["spearman"] <= high <= 1.0


def test_judge_set_saves_and_loads(tmp_path):
    rng = np.random.default_rng(0)
    data = JudgeSet(rng.standard_normal((4, 10, CONFIG.feature_dim)).astype(np.float16),
                    rng.standard_normal((4, CONFIG.text_dim)).astype(np.float32),
                    np.array([1.0, -3.0, 12.0, 0.5], np.float32), np.array(["a", "b", "a", "c"]),
                    np.array([0, 0, 1, 1]), np.array([0, 0, 1000, 1000]))
    data.save(tmp_path / "set.npz")
    loaded = JudgeSet.load(tmp_path / "set.npz")
    for name in ("features", "text", "score_db", "kind", "mixture_id", "window_id"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(data, name))
    joined = JudgeSet.join([data, loaded])
    assert len(joined.score_db) == 8


def test_band_powers_use_the_streams_own_stft_framing():
    from samstream.models.judge import band_powers, band_weights
    from samstream.stream.offline import analyze_frames

    signals = np.random.default_rng(2).standard_normal((2, 48000 + 77)).astype(np.float32)
    frames = -(-signals.shape[1] // CONFIG.hop)
    spectra = analyze_frames(signals, CONFIG.n_fft, CONFIG.hop, frames)
    weights = band_weights(CONFIG)
    expected = (np.abs(spectra) ** 2) @ weights
    np.testing.assert_allclose(band_powers(signals, CONFIG, weights), expected, rtol=1e-4, atol=1e-3)
