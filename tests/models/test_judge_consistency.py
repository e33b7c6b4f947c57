"""The judge's consistency features (the separation model asked again about an estimate and its
remainder, and about the window's mixture), the fusion network that takes them, and sets that
carry them."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from samstream.models.config import JudgeConfig
from samstream.models.judge import (
    CONSISTENCY_NAMES,
    DEFAULT_JUDGE_DIR,
    MASK_NAMES,
    POSTERIOR_NAMES,
    WITH_MASK,
    WITH_POSTERIOR,
    Judge,
    JudgeFolderError,
    Reseparator,
    band_weights,
    consistency_features,
    judge_features,
    judged_scalars,
    mask_features,
    mixture_posterior,
    reseparation_gain,
)
from samstream.models.judge_net import JudgeNet, ensemble_of, load_judge, save_judge, with_fusion
from samstream.models.judge_train import (
    JudgeMixture,
    JudgeSet,
    Separations,
    build_judge_set,
    frozen_scores,
    global_ranking_loss,
    predict,
    train_judge,
)
from samstream.models.tagger import Tagger, save_tagger
from samstream.models.text_encoder import TextEncoder
from samstream.plugin_host.audio_files import read_audio

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "speech_hum.flac"
CONFIG = JudgeConfig()
FUSED = JudgeConfig(consistency_features=len(CONSISTENCY_NAMES))
WINDOW = slice(0, CONFIG.window_samples)


@pytest.fixture(scope="module")
def encoder():
    return TextEncoder.load()


@pytest.fixture(scope="module")
def reseparator():
    return Reseparator()


@pytest.fixture(scope="module")
def example():
    mixture = read_audio(EXAMPLE)[0][0]
    speech, hum = (read_audio(EXAMPLE.with_suffix(".sources") / name)[0][0] for name in ("speech.flac", "hum.flac"))
    return mixture, speech, hum


def named(values: np.ndarray, names=CONSISTENCY_NAMES) -> dict[str, float]:
    return dict(zip(names, (20.0 * values).tolist(), strict=True))


def test_consistency_features_find_interference_kept_and_target_missed(example, encoder, reseparator):
    mixture, speech, hum = example
    prompt = encoder.encode("speech")
    clean, everything, wrong = (named(consistency_features(mixture[WINDOW], estimate[WINDOW], prompt, reseparator))
                                for estimate in (speech, mixture, hum))
    # The hum given as the speech: the model throws nearly all of it away, and finds the speech
    # in what the estimate left behind.
    assert wrong["survives"] < -15.0 and wrong["missed"] > -3.0
    # The whole mixture: the model finds hum in it; nothing was left behind.
    assert everything["missed"] == pytest.approx(-60.0) and everything["kept"] == pytest.approx(0.0, abs=1e-3)
    # The clean speech: almost nothing of the target is left in its remainder (the hum).
    assert clean["missed"] < -20.0
    assert clean["combined"] > everything["combined"] > wrong["combined"] + 20.0


def with_posterior(mixture: np.ndarray, estimate: np.ndarray, prompt: np.ndarray, reseparator) -> np.ndarray:
    posterior = mixture_posterior(mixture, prompt, reseparator, CONFIG)
    return consistency_features(mixture, estimate, prompt, reseparator, posterior)


def test_consistency_features_do_not_depend_on_the_input_level(example, encoder, reseparator):
    mixture, speech, _ = example
    prompt = encoder.encode("speech")
    at_level = with_posterior(mixture[WINDOW], speech[WINDOW], prompt, reseparator)
    assert at_level.shape == (len(WITH_POSTERIOR),)
    np.testing.assert_array_equal(at_level[:len(CONSISTENCY_NAMES)],
                                  consistency_features(mixture[WINDOW], speech[WINDOW], prompt, reseparator))
    for gain in (0.05, 4.0):
        np.testing.assert_allclose(with_posterior(gain * mixture[WINDOW], gain * speech[WINDOW], prompt, reseparator),
                                   at_level, atol=1e-3)


def test_the_posterior_rates_the_model_s_own_target_by_its_uncertainty_and_worse_estimates_lower(
        example, encoder, reseparator):
    mixture, speech, hum = example
    prompt = encoder.encode("speech")
    window = mixture[WINDOW]
    posterior = mixture_posterior(window, prompt, reseparator, CONFIG)
    gain = reseparation_gain(window)
    own = reseparator.target(window * np.float32(gain), prompt) / gain

    def rated(estimate):
        return named(with_posterior(window, estimate, prompt, reseparator)[len(CONSISTENCY_NAMES):], POSTERIOR_NAMES)
    model, clean, everything, wrong = (rated(estimate) for estimate in (own, speech[WINDOW], window, hum[WINDOW]))
    # The model's own target is at no distance from itself: its predicted SDR is the target's
    # expected energy over the model's own uncertainty.
    assert model["distance"] == pytest.approx(-60.0)
    assert model["posterior_sdr"] == pytest.approx(model["expected_target"] - model["uncertainty"], abs=0.01)
    # One mixture, one posterior: what depends on the estimate is the distance alone.
    for other in (clean, everything, wrong):
        assert other["uncertainty"] == pytest.approx(model["uncertainty"])
        assert other["expected_target"] == pytest.approx(model["expected_target"])
    assert posterior.uncertainty < posterior.expected_target < posterior.mixture_energy
    assert model["posterior_sdr"] > everything["posterior_sdr"] > wrong["posterior_sdr"]
    assert clean["posterior_sdr"] > everything["posterior_sdr"]
    assert wrong["distance"] > everything["distance"] > model["distance"]


def test_mask_features_tell_a_decided_detailed_mask_from_a_hedging_one(example):
    mixture, speech, _ = example
    window, weights = mixture[WINDOW], band_weights(CONFIG)

    def named_mask(estimate, mix=window):
        values = mask_features(mix, estimate, CONFIG, weights)
        assert values.shape == (len(MASK_NAMES),) and values.dtype == np.float32 and np.isfinite(values).all()
        return dict(zip(MASK_NAMES, values.tolist(), strict=True))
    clean, halfway, everything = named_mask(speech[WINDOW]), named_mask(0.5 * window), named_mask(window)
    # Passing everything is a decided mask: all of it kept, none of it undecided or moving.
    assert everything["decided_kept"] == pytest.approx(1.0) and everything["decided_dropped"] == 0.0
    assert everything["indecision"] == everything["time_flux"] == pytest.approx(-3.0)  # the -60 dB floor
    # A flat half mask is as undecided as a mask can be, everywhere, and does not move.
    assert halfway["indecision"] == pytest.approx(10 * np.log10(0.25) / 20.0, abs=0.01)
    assert halfway["decided_kept"] == halfway["decided_dropped"] == 0.0
    assert halfway["loud_kept"] == pytest.approx(0.5, abs=0.01)
    # The clean speech of a speech-and-hum mixture: a mask that moves with the syllables and drops the hum.
    assert clean["time_flux"] > halfway["time_flux"] and clean["decided_dropped"] > 0.05
    assert clean["indecision"] < halfway["indecision"]
    # Level-free: the same window 30 dB down gives the same figures.
    np.testing.assert_allclose(mask_features(0.03 * window, 0.03 * speech[WINDOW], CONFIG, weights),
                               mask_features(window, speech[WINDOW], CONFIG, weights), atol=1e-4)
    silent = named_mask(np.zeros_like(window), np.zeros_like(window))
    assert silent["indecision"] == pytest.approx(-3.0) and silent["decided_dropped"] == 0.0


def fusion_set(rng: np.random.Generator, windows: int = 6, per_window: int = 4) -> JudgeSet:
    count = windows * per_window
    frames = -(-CONFIG.window_samples // CONFIG.hop)
    consistency = rng.standard_normal((count, len(CONSISTENCY_NAMES))).astype(np.float32)
    # A label the consistency features explain and the band features do not.
    score = (10.0 * consistency[:, 4]).astype(np.float32)
    return JudgeSet(rng.standard_normal((count, frames, CONFIG.feature_dim)).astype(np.float16),
                    rng.standard_normal((count, CONFIG.text_dim)).astype(np.float32), score,
                    np.array(["model_1"] * count), np.repeat(np.arange(windows), per_window),
                    np.repeat(np.arange(windows), per_window), consistency)


def test_fusion_learns_from_the_consistency_features_and_leaves_the_band_network(tmp_path):
    torch.manual_seed(0)
    base = JudgeNet(CONFIG).eval()
    data = fusion_set(np.random.default_rng(0))
    before = {name: value.clone() for name, value in base.state_dict().items()}
    torch.manual_seed(1)
    fused = train_judge(data, FUSED, epochs=30, windows_per_batch=2, learning_rate=1e-2, log=lambda _: None,
                        model=with_fusion(base, len(CONSISTENCY_NAMES)))
    for name, value in before.items():
        torch.testing.assert_close(fused.state_dict()[name], value)
    predicted = predict(fused, data)
    assert np.corrcoef(predicted, data.score_db)[0, 1] > 0.9
    # Given the frozen scores made once, as the command does for several fusions, the fit is the same.
    torch.manual_seed(1)
    fresh = with_fusion(base, len(CONSISTENCY_NAMES))
    assert fresh.training  # as with_fusion makes it; the scores are made in eval mode and the mode put back
    frozen = frozen_scores(fresh, data)
    assert fresh.training
    torch.testing.assert_close(frozen, frozen_scores(base, data))
    given = train_judge(data, FUSED, epochs=30, windows_per_batch=2, learning_rate=1e-2, log=lambda _: None,
                        model=fresh, frozen=frozen)
    np.testing.assert_allclose(predict(given, data), predicted, atol=1e-5)
    whole = train_judge(data, FUSED, epochs=2, windows_per_batch=2, learning_rate=1e-3, log=lambda _: None,
                        model=fused, whole=True)
    assert any(not torch.equal(whole.state_dict()[name], value) for name, value in before.items())
    assert all(parameter.requires_grad for parameter in whole.parameters())
    with pytest.raises(ValueError, match="consistency features"):
        train_judge(JudgeSet(*[getattr(data, name) for name in ("features", "text", "score_db", "kind",
                                                                "mixture_id", "window_id")]),
                    FUSED, epochs=1, model=with_fusion(base, len(CONSISTENCY_NAMES)))


@pytest.mark.parametrize("names", [CONSISTENCY_NAMES, WITH_POSTERIOR, WITH_MASK],
                         ids=["re-separation", "with-posterior", "with-mask"])
def test_fused_judge_onnx_equals_torch_on_real_windows(tmp_path, example, encoder, reseparator, names):
    torch.manual_seed(1)
    model = with_fusion(JudgeNet(CONFIG), len(names)).eval()
    save_judge(model, tmp_path)
    judge = Judge(tmp_path, reseparator=reseparator)
    assert judge.uses_posterior == (names != CONSISTENCY_NAMES)
    assert judge.uses_mask == (names == WITH_MASK)
    mixture, speech, _ = example
    prompt = np.array(encoder.encode("speech"))  # writable, for torch
    features = judge_features(mixture[WINDOW], speech[WINDOW], CONFIG)
    consistency = (with_posterior if judge.uses_posterior else consistency_features)(
        mixture[WINDOW], speech[WINDOW], prompt, reseparator)
    if judge.uses_mask:
        consistency = judged_scalars(mixture[WINDOW], speech[WINDOW], prompt, reseparator,
                                     mixture_posterior(mixture[WINDOW], prompt, reseparator, CONFIG),
                                     band_weights(CONFIG))
        np.testing.assert_array_equal(consistency[:len(WITH_POSTERIOR)], with_posterior(
            mixture[WINDOW], speech[WINDOW], prompt, reseparator))
    with torch.no_grad():
        expected = float(model(torch.from_numpy(features[None]), torch.from_numpy(prompt[None]),
                               torch.from_numpy(consistency[None]))[0])
    assert judge.score_features(features, prompt, consistency) == pytest.approx(expected, abs=1e-4)
    judgement = judge.judge(mixture[WINDOW], speech[WINDOW], prompt)
    assert judgement.score_db == pytest.approx(expected, abs=1e-4)
    if judge.uses_posterior:
        assert judgement.posterior_sdr_db == pytest.approx(20.0 * consistency[len(CONSISTENCY_NAMES)], abs=1e-4)
    else:
        assert judgement.posterior_sdr_db is None


def test_an_ensemble_judge_averages_its_members_and_its_onnx_equals_torch(tmp_path, example, encoder, reseparator):
    torch.manual_seed(3)
    base = JudgeNet(CONFIG).eval()
    members = [with_fusion(base, len(WITH_MASK)).eval() for _ in range(3)]  # each fusion drawn afresh
    ensemble = ensemble_of(members)
    assert ensemble.config.fusion_members == 3
    mixture, speech, _ = example
    prompt = np.array(encoder.encode("speech"))
    features = judge_features(mixture[WINDOW], speech[WINDOW], CONFIG)
    scalars = judged_scalars(mixture[WINDOW], speech[WINDOW], prompt, reseparator,
                             mixture_posterior(mixture[WINDOW], prompt, reseparator, CONFIG), band_weights(CONFIG))
    inputs = (torch.from_numpy(features[None]), torch.from_numpy(prompt[None]), torch.from_numpy(scalars[None]))
    with torch.no_grad():
        each = [float(member(*inputs)[0]) for member in members]
        expected = float(ensemble(*inputs)[0])
    assert np.ptp(each) > 1e-3  # the members differ, so the average is a real test
    assert expected == pytest.approx(np.mean(each), abs=1e-4)
    save_judge(ensemble, tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["fusion_members"] == 3
    reloaded = load_judge(tmp_path)
    with torch.no_grad():
        assert float(reloaded(*inputs)[0]) == pytest.approx(expected, abs=1e-5)
    judge = Judge(tmp_path, reseparator=reseparator)
    assert judge.score_features(features, prompt, scalars) == pytest.approx(expected, abs=1e-4)
    # A new fusion on an ensemble's band network is a single network again.
    assert with_fusion(reloaded, len(WITH_MASK)).config.fusion_members == 1


def test_ensemble_members_must_share_one_band_network():
    torch.manual_seed(4)
    first = with_fusion(JudgeNet(CONFIG), len(WITH_MASK))
    other = with_fusion(JudgeNet(CONFIG), len(WITH_MASK))
    with pytest.raises(ValueError, match="band networks"):
        ensemble_of([first, other])
    assert ensemble_of([first]) is first
    pair = ensemble_of([first, with_fusion(first, len(WITH_MASK))])
    with pytest.raises(ValueError, match="single fusion"):
        ensemble_of([pair, pair])


def test_the_global_ranking_loss_orders_estimates_of_different_windows():
    truth = torch.tensor([1.0, 0.5, -0.2, -1.0])  # units of 10 dB; one estimate per window
    right = global_ranking_loss(torch.tensor([2.0, 1.0, 0.0, -1.0]), truth)
    wrong = global_ranking_loss(torch.tensor([-1.0, 0.0, 1.0, 2.0]), truth)
    assert float(right) < 0.5 < float(wrong)
    scores = torch.zeros(4, requires_grad=True)
    global_ranking_loss(scores, truth).backward()
    assert torch.all(torch.diff(scores.grad) > 0)  # descending it raises the better estimates
    assert float(global_ranking_loss(torch.ones(3), torch.zeros(3))) == 0.0  # no pair differs enough


class CountingReseparator:
    """The real re-separator, counting how often it is asked."""

    def __init__(self, reseparator: Reseparator):
        self.inner, self.calls = reseparator, 0
        self.config, self.length = reseparator.config, reseparator.length

    def target(self, signal: np.ndarray, text_embedding: np.ndarray) -> np.ndarray:
        self.calls += 1
        return self.inner.target(signal, text_embedding)


def test_posteriors_of_a_mixture_serve_every_estimate_of_it(example, encoder, reseparator):
    counting = CountingReseparator(reseparator)
    judge = Judge(reseparator=counting)
    assert judge.uses_posterior
    mixture, speech, hum = example
    span = slice(0, 2 * CONFIG.window_samples)  # three half-overlapping windows
    prompt = encoder.encode("speech")
    estimates = (speech[span], 0.5 * mixture[span], hum[span])
    alone = [judge.judge(mixture[span], estimate, prompt) for estimate in estimates]
    assert counting.calls == 3 * 3 * len(estimates)
    counting.calls = 0
    posteriors = judge.posteriors(mixture[span], prompt)
    assert len(posteriors) == 3 and counting.calls == 3
    shared = [judge.judge(mixture[span], estimate, prompt, posteriors) for estimate in estimates]
    assert counting.calls == 3 + 2 * 3 * len(estimates)
    for one, other in zip(alone, shared, strict=True):
        assert other.window_scores_db == pytest.approx(one.window_scores_db, abs=1e-5)
        assert other.posterior_sdr_db == pytest.approx(one.posterior_sdr_db, abs=1e-5)
    assert shared[0].score_db > shared[2].score_db
    with pytest.raises(ValueError, match="another mixture"):
        judge.judge(mixture[WINDOW], speech[WINDOW], prompt, posteriors)


def test_a_fused_judge_can_be_the_base_of_a_new_fusion():
    torch.manual_seed(2)
    first = with_fusion(JudgeNet(CONFIG), len(CONSISTENCY_NAMES))
    second = with_fusion(first, len(WITH_POSTERIOR))
    assert second.config.consistency_features == len(WITH_POSTERIOR)
    for name, value in first.state_dict().items():
        if not name.startswith("fusion."):
            torch.testing.assert_close(second.state_dict()[name], value)


def test_a_judge_asking_for_other_consistency_features_names_its_config(tmp_path):
    save_judge(with_fusion(JudgeNet(CONFIG), len(CONSISTENCY_NAMES)), tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["consistency_features"] = 3
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(JudgeFolderError, match="config.json: 3 consistency features"):
        Judge(tmp_path)


def test_a_judge_asks_the_separator_it_keeps_once_set_up_has_exported_it(tmp_path, example, encoder, reseparator):
    from samstream.models.export import export_model_dir

    bundled = Path(DEFAULT_JUDGE_DIR).parent
    save_judge(with_fusion(JudgeNet(CONFIG), len(CONSISTENCY_NAMES)), tmp_path, reseparator=bundled)
    kept = tmp_path / "reseparator"
    assert json.loads((tmp_path / "config.json").read_text())["reseparator"] == "reseparator"
    with pytest.raises(JudgeFolderError, match="reseparator: the judge's re-separation model is not exported"):
        Judge(tmp_path)
    export_model_dir(kept, kept, 1)
    judge = Judge(tmp_path)
    assert judge.reseparator.model_dir == kept
    mixture, speech, _ = example
    prompt = encoder.encode("speech")
    np.testing.assert_allclose(consistency_features(mixture[WINDOW], speech[WINDOW], prompt, judge.reseparator),
                               consistency_features(mixture[WINDOW], speech[WINDOW], prompt, reseparator), atol=1e-5)


@pytest.fixture(scope="module")
def example_set(example, encoder) -> JudgeSet:
    """One window of the example separated every cheap way, with consistency features."""
    mixture, speech, _ = example
    items = [JudgeMixture(mixture[WINDOW], speech[WINDOW], "speech", "speech", "hum")]
    separations = Separations(Path(DEFAULT_JUDGE_DIR).parent, encoder, ["speech", "hum", "piano"],
                              teacher_steps=(), seed=0, consistency=True)
    return build_judge_set(items, separations, CONFIG, heavy_every=1000, log=lambda _: None)


def test_sets_carry_consistency_features_and_older_sets_still_load(tmp_path, example_set):
    data = example_set
    assert data.consistency.shape == (len(data.score_db), len(WITH_MASK))

    def combined(kind):
        return float(data.consistency[data.kind == kind, 4].mean())
    assert combined("oracle") > combined("no_separation") > combined("interferer_oracle")
    # Each window's mixture is re-separated once: its posterior is the same for all its estimates.
    uncertainty = data.consistency[:, len(CONSISTENCY_NAMES) + POSTERIOR_NAMES.index("uncertainty")]
    for window in np.unique(data.window_id):
        assert np.ptp(uncertainty[data.window_id == window]) == 0.0
    data.save(tmp_path / "with.npz")
    np.testing.assert_array_equal(JudgeSet.load(tmp_path / "with.npz").consistency, data.consistency)
    older = {name: getattr(data, name) for name in ("features", "text", "score_db", "kind", "mixture_id",
                                                    "window_id")}
    np.savez(tmp_path / "older.npz", **older)
    assert JudgeSet.load(tmp_path / "older.npz").consistency.shape == (len(data.score_db), 0)


def test_judge_train_fuses_a_base_judge_and_judge_eval_reads_it(tmp_path, example_set):
    """The real command line, on cached sets (the corpus is not needed when they are there)."""
    sets, base, out = tmp_path / "sets", tmp_path / "base", tmp_path / "fused"
    sets.mkdir()
    example_set.save(sets / "held_out_consistency_1.npz")
    example_set.save(sets / "consistency_2_0.npz")
    torch.manual_seed(0)
    save_judge(JudgeNet(CONFIG), base)

    def cli(*arguments):
        return subprocess.run([sys.executable, "-m", "samstream.plugin_host.cli", "judge", *arguments],
                              capture_output=True, text=True, timeout=300)
    trained = cli("train", "--base", str(base), "--consistency-mixtures", "2", "--held-out", "1", "--sets",
                  str(sets), "--epochs", "2", "--out", str(out), "--data", str(tmp_path / "no_corpus"))
    assert trained.returncode == 0, trained.stderr
    assert "fusing with the consistency features" in trained.stdout
    config = json.loads((out / "config.json").read_text())
    assert config["consistency_features"] == len(WITH_MASK)
    # The fused judge keeps a copy of the separator its consistency features came from.
    assert config["reseparator"] == "reseparator"
    bundled = Path(DEFAULT_JUDGE_DIR).parent
    assert (out / "reseparator" / "model.safetensors").read_bytes() == (bundled / "model.safetensors").read_bytes()
    figures = json.loads((out / "training.json").read_text())
    assert figures["held_out"]["examples"] == len(example_set.score_db)
    evaluated = cli("eval", "--judge", str(out), "--held-out", "1", "--sets", str(sets), "--data",
                    str(tmp_path / "no_corpus"))
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads(evaluated.stdout[evaluated.stdout.index("{"):])  # after the line naming the cached set
    assert report["spearman"] == pytest.approx(figures["held_out"]["spearman"], abs=1e-3)
    # The same sets fuse the re-separation features alone, and the judge says so.
    alone = tmp_path / "alone"
    trained = cli("train", "--base", str(out), "--consistency-mixtures", "2", "--held-out", "1", "--sets",
                  str(sets), "--epochs", "2", "--out", str(alone), "--data", str(tmp_path / "no_corpus"),
                  "--without-posterior")
    assert trained.returncode == 0, trained.stderr
    assert json.loads((alone / "config.json").read_text())["consistency_features"] == len(CONSISTENCY_NAMES)
    trained = cli("train", "--base", str(out), "--consistency-mixtures", "2", "--held-out", "1", "--sets",
                  str(sets), "--epochs", "2", "--out", str(alone), "--data", str(tmp_path / "no_corpus"),
                  "--without-mask")
    assert trained.returncode == 0, trained.stderr
    assert json.loads((alone / "config.json").read_text())["consistency_features"] == len(WITH_POSTERIOR)
    # Two fusion networks averaged, with the ranking loss across windows.
    trained = cli("train", "--base", str(out), "--consistency-mixtures", "2", "--held-out", "1", "--sets",
                  str(sets), "--epochs", "2", "--out", str(alone), "--data", str(tmp_path / "no_corpus"),
                  "--fusion-members", "2", "--global-ranking-weight", "1")
    assert trained.returncode == 0, trained.stderr
    assert json.loads((alone / "config.json").read_text())["fusion_members"] == 2
    figures = json.loads((alone / "training.json").read_text())
    assert figures["fusion_members"] == 2 and figures["global_ranking_weight"] == 1.0
    assert load_judge(alone).config.fusion_members == 2
    refused = cli("train", "--base", str(out), "--consistency-mixtures", "2", "--held-out", "1", "--sets",
                  str(sets), "--epochs", "2", "--out", str(alone), "--data", str(tmp_path / "no_corpus"),
                  "--fusion-members", "0")
    assert refused.returncode != 0 and "--fusion-members 0" in refused.stderr
    # Two taggers: their contrasts, averaged, are one more scalar for the fusion.
    for seed in (0, 1):
        torch.manual_seed(seed)
        save_tagger(Tagger(replace(CONFIG, tagger_width=8, tagger_depth=1, tagger_classes=3)),
                    tmp_path / f"tagger_{seed}", {"training": {"seed": seed}})
    trained = cli("train", "--base", str(out), "--consistency-mixtures", "2", "--held-out", "1", "--sets",
                  str(sets), "--epochs", "2", "--out", str(alone), "--data", str(tmp_path / "no_corpus"),
                  "--tagger", str(tmp_path / "tagger_0"), "--tagger", str(tmp_path / "tagger_1"))
    assert trained.returncode == 0, trained.stderr
    tagged = load_judge(alone)
    assert (tagged.config.tagger_members, tagged.config.tagger_width) == (2, 8)
    assert tagged.fusion[0].in_features == 1 + len(WITH_MASK) + 1
    figures = json.loads((alone / "training.json").read_text())
    assert [tagger["training"]["seed"] for tagger in figures["taggers"]] == [0, 1]
    refused = cli("train", "--base", str(out), "--consistency-mixtures", "2", "--held-out", "1", "--sets",
                  str(sets), "--epochs", "2", "--out", str(alone), "--data", str(tmp_path / "no_corpus"),
                  "--tagger", str(tmp_path / "no_tagger"))
    assert refused.returncode != 0 and "tagger.json: missing" in refused.stderr


def test_a_judge_calibrated_on_validation_sources_is_never_measured_on_them(tmp_path, example_set):
    """Calibration sets draw validation-split sources that the first N held-out mixtures per class
    leave unused: training refuses one that left out fewer than --held-out, the judge records N,
    and `judge eval` refuses a held-out set larger than N."""
    sets, base, out = tmp_path / "sets", tmp_path / "base", tmp_path / "calibrated"
    sets.mkdir()
    example_set.save(sets / "held_out_consistency_1.npz")
    example_set.save(sets / "consistency_2_0.npz")
    calibration = sets / "consistency_calibration_h1_2_0.npz"
    example_set.save(calibration)
    torch.manual_seed(0)
    save_judge(JudgeNet(CONFIG), base)

    def cli(*arguments):
        return subprocess.run([sys.executable, "-m", "samstream.plugin_host.cli", "judge", *arguments, "--sets",
                               str(sets), "--data", str(tmp_path / "no_corpus")], capture_output=True, text=True,
                              timeout=300)
    trained = cli("train", "--base", str(base), "--consistency-mixtures", "2", "--held-out", "1", "--epochs", "2",
                  "--out", str(out), "--extra-set", str(calibration))
    assert trained.returncode == 0, trained.stderr
    assert json.loads((out / "training.json").read_text())["calibration_leaves_out_held_out"] == 1
    assert cli("eval", "--judge", str(out), "--held-out", "1").returncode == 0
    refused = cli("eval", "--judge", str(out), "--held-out", "2")
    assert refused.returncode != 0 and "--held-out 2 would measure it on sources it trained on" in refused.stderr
    refused = cli("train", "--base", str(base), "--consistency-mixtures", "2", "--held-out", "2", "--epochs", "2",
                  "--out", str(tmp_path / "leaky"), "--extra-set", str(calibration))
    assert refused.returncode != 0 and "shares sources with it" in refused.stderr
    assert not (tmp_path / "leaky").exists()
