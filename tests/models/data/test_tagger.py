"""The judge's tagger: level-free inputs, the contrast read from the judge's own band features, a
real fit on a rendered corpus, the judge's ONNX graph with it, and the command line."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import onnxruntime as ort
import pytest
import torch

from samstream.models.config import JudgeConfig
from samstream.models.judge import JudgeFolderError, band_powers, band_weights, judge_features
from samstream.models.judge_net import JudgeNet, load_judge, save_judge, with_fusion, with_tagger
from samstream.models.tagger import (
    Tagger,
    TaggerExamples,
    cached_examples,
    class_embeddings,
    corpus_classes,
    leaky_inputs,
    load_tagger,
    save_tagger,
    tagger_examples,
    tagger_input,
    target_accuracy,
    train_tagger,
)
from samstream.models.text_encoder import TextEncoder

CONFIG = replace(JudgeConfig(), tagger_width=16, tagger_depth=2, tagger_classes=3)


def reference_input(levels_db: np.ndarray, mixture_db: np.ndarray) -> np.ndarray:
    """numpy reference of ``tagger_input`` for one window."""
    floor = np.mean(10 ** (mixture_db / 10)) * 1e-6
    power = 10 ** (levels_db / 10) + floor
    return np.clip(10 * np.log10(power) - 10 * np.log10(power.mean()), -60, 20) / 20


def test_tagger_input_is_level_free_and_matches_its_reference():
    rng = np.random.default_rng(0)
    mixture = rng.normal(-40, 15, (1, 50, 32))
    signal = mixture - np.abs(rng.normal(0, 10, mixture.shape))
    made = tagger_input(torch.from_numpy(signal), torch.from_numpy(mixture)).numpy()
    np.testing.assert_allclose(made[0], reference_input(signal[0], mixture[0]), atol=1e-6)
    louder = tagger_input(torch.from_numpy(signal + 20), torch.from_numpy(mixture + 20)).numpy()
    np.testing.assert_allclose(louder, made, atol=1e-5)
    assert made.max() <= 1.0 and made.min() >= -3.0


def test_the_contrast_reads_the_judge_s_features_as_the_tagger_was_trained():
    """From ``judge_features`` (what the judge's graph gets), the contrast equals the tagger run on
    the band levels of the estimate and of its remainder, as training draws them."""
    torch.manual_seed(0)
    tagger = Tagger(CONFIG).eval()
    tagger.class_embeddings.copy_(torch.nn.functional.normalize(torch.randn(3, CONFIG.text_dim), dim=-1))
    rng = np.random.default_rng(1)
    samples = CONFIG.window_samples
    target = (0.1 * np.sin(2 * np.pi * 440 * np.arange(samples) / 48000)).astype(np.float32)
    mixture = target + (0.05 * rng.standard_normal(samples)).astype(np.float32)
    estimate = target + (0.01 * rng.standard_normal(samples)).astype(np.float32)
    text = torch.randn(1, CONFIG.text_dim)
    features = torch.from_numpy(judge_features(mixture, estimate, CONFIG))[None]
    powers = band_powers(np.stack((mixture, estimate, mixture - estimate)), CONFIG, band_weights(CONFIG))
    levels = torch.from_numpy(10 * np.log10(powers + 1e-12))[:, None]
    with torch.no_grad():
        contrast = tagger.contrast(features, text)
        kept = tagger(tagger_input(levels[1], levels[0]))
        left = tagger(tagger_input(levels[2], levels[0]))
        expected = ((kept - left) * tagger.prompt_classes(text)).sum(-1) / 10.0
    assert float(contrast) == pytest.approx(float(expected), abs=0.02)
    assert abs(float(expected)) > 1e-3


def test_a_tagger_fitted_on_a_rendered_corpus_tells_its_classes_apart(tone_corpus, tmp_path):
    root, _ = tone_corpus
    classes = corpus_classes(root)
    assert classes == ["sine_high", "sine_low", "white"]
    config = replace(CONFIG, tagger_classes=len(classes))
    train = tagger_examples(root, "train", 120, 0, classes, config, log=lambda _: None)
    # Each window: the target holds one class, the mixture the target's and the interferers'.
    assert (train.labels[:, 0].sum(axis=1) == 1).all()
    assert (train.labels[:, 2] >= train.labels[:, 0]).all() and (train.labels[:, 2] >= train.labels[:, 1]).all()
    validation = tagger_examples(root, "val", 30, 1, classes, config, log=lambda _: None)
    # Two worker processes, seven mixtures a task, draw the very same set.
    again = tagger_examples(root, "val", 30, 1, classes, config, log=lambda _: None, workers=2, chunk=7)
    np.testing.assert_array_equal(again.levels, validation.levels)
    np.testing.assert_array_equal(again.labels, validation.labels)
    inputs, labels = validation.inputs(chunk=4)
    whole, _ = validation.inputs(chunk=1000)
    torch.testing.assert_close(inputs, whole)
    assert inputs.shape[0] == labels.shape[0] == 90
    model = train_tagger(train, config, class_embeddings(TextEncoder.load(), classes), epochs=6,
                         learning_rate=5e-3, batch_size=16, validation=validation, leaky=False, log=lambda _: None)
    assert target_accuracy(model, validation) >= 0.9  # chance is one in three
    save_tagger(model, tmp_path / "tagger", {"note": "test"})
    reloaded = load_tagger(tmp_path / "tagger", JudgeConfig())
    inputs, _ = validation.inputs()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(inputs[:6]), model(inputs[:6]))
    # A prompt is read as the class its embedding is nearest.
    weights = model.prompt_classes(torch.tensor(TextEncoder.load().encode("white"))[None])
    assert int(weights.argmax()) == classes.index("white")


def test_a_judge_with_a_tagger_onnx_equals_torch_and_the_fusion_takes_its_contrast(tmp_path):
    torch.manual_seed(0)
    base = JudgeNet(JudgeConfig())
    tagger = Tagger(CONFIG)
    tagger.class_embeddings.copy_(torch.nn.functional.normalize(torch.randn(3, CONFIG.text_dim), dim=-1))
    judge = with_fusion(with_tagger(base, [tagger]), 19).eval()
    assert judge.fusion[0].in_features == 1 + 19 + 1
    torch.testing.assert_close(judge.band_score(torch.zeros(1, 20, 96), torch.zeros(1, 384)),
                               base.eval().band_score(torch.zeros(1, 20, 96), torch.zeros(1, 384)))
    save_judge(judge, tmp_path / "judge")
    reloaded = load_judge(tmp_path / "judge")
    assert reloaded.config.tagger_width == CONFIG.tagger_width
    rng = np.random.default_rng(2)
    features = (rng.normal(0, 0.5, (3, 282, 96))).astype(np.float32)
    text = rng.normal(0, 1, (3, 384)).astype(np.float32)
    consistency = rng.normal(0, 0.5, (3, 19)).astype(np.float32)
    with torch.no_grad():
        expected = reloaded(*map(torch.from_numpy, (features, text, consistency))).numpy()
    session = ort.InferenceSession(str(tmp_path / "judge" / "judge.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {"features": features, "text": text, "consistency": consistency})[0]
    np.testing.assert_allclose(got, expected, atol=1e-4)
    # The tagger's contrast reaches the score: another tagger, another score.
    other = with_fusion(with_tagger(base, [Tagger(CONFIG)]), 19).eval()
    other.load_state_dict({name: value for name, value in judge.state_dict().items()
                           if not name.startswith("tagger.")}, strict=False)
    with torch.no_grad():
        assert not torch.allclose(other(*map(torch.from_numpy, (features, text, consistency))),
                                  torch.from_numpy(expected))
    with pytest.raises(ValueError, match="bands"):
        with_tagger(base, [Tagger(replace(CONFIG, n_bands=16))])


def test_a_judge_with_several_taggers_averages_their_contrasts_in_its_onnx_graph(tmp_path):
    torch.manual_seed(1)
    base = JudgeNet(JudgeConfig())
    taggers = [Tagger(CONFIG) for _ in range(3)]
    for tagger in taggers:
        tagger.class_embeddings.copy_(torch.nn.functional.normalize(torch.randn(3, CONFIG.text_dim), dim=-1))
    judge = with_fusion(with_tagger(base, taggers), 19).eval()
    assert judge.config.tagger_members == 3 and judge.fusion[0].in_features == 1 + 19 + 1
    rng = np.random.default_rng(3)
    features = torch.from_numpy(rng.normal(0, 0.5, (4, 141, 96)).astype(np.float32))
    text = torch.from_numpy(rng.normal(0, 1, (4, 384)).astype(np.float32))
    consistency = torch.from_numpy(rng.normal(0, 0.5, (4, 19)).astype(np.float32))
    with torch.no_grad():
        contrasts = torch.stack([tagger.contrast(features, text) for tagger in taggers])
        assert contrasts.std(dim=0).min() > 1e-4  # the members disagree, so the mean is a new number
        torch.testing.assert_close(judge.frozen_scores(features, text)[:, 1], contrasts.mean(dim=0))
    save_judge(judge, tmp_path / "judge")
    reloaded = load_judge(tmp_path / "judge")
    with torch.no_grad():
        expected = reloaded(features, text, consistency).numpy()
        torch.testing.assert_close(torch.from_numpy(expected), judge(features, text, consistency))
    session = ort.InferenceSession(str(tmp_path / "judge" / "judge.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {"features": features.numpy(), "text": text.numpy(), "consistency": consistency.numpy()})
    np.testing.assert_allclose(got[0], expected, atol=1e-4)
    with pytest.raises(ValueError, match="differ in shape"):
        with_tagger(base, [taggers[0], Tagger(replace(CONFIG, tagger_width=8))])


def test_a_missing_or_wrong_tagger_folder_is_named(tmp_path):
    with pytest.raises(JudgeFolderError, match="tagger.json: missing"):
        load_tagger(tmp_path, JudgeConfig())
    (tmp_path / "tagger.json").write_text(json.dumps({"width": 8}))
    with pytest.raises(JudgeFolderError, match="not a tagger"):
        load_tagger(tmp_path, JudgeConfig())


def test_leaky_examples_label_each_class_by_its_share_of_the_power():
    torch.manual_seed(0)
    count, frames, bands = 2000, 20, CONFIG.n_bands
    levels = torch.empty(count, 3, frames, bands).uniform_(-50.0, -20.0)
    levels[:, 2] = 10 * torch.log10(torch.pow(10.0, levels[:, 0] / 10) + torch.pow(10.0, levels[:, 1] / 10))
    labels = torch.zeros(count, 3, 3)
    labels[:, 0, 0] = labels[:, 1, 1] = labels[:, 1, 2] = 1  # the target is class 0, the interferers 1 and 2
    labels[:, 2] = 1
    inputs, soft = leaky_inputs(levels, labels)
    assert inputs.shape == (2 * count, frames, bands) and soft.shape == (2 * count, 3)
    target_rows, interferer_rows = soft[0::2], soft[1::2]
    # Each row's classes share the power: its own class(es) s, the other signal's 1 - s.
    torch.testing.assert_close(target_rows[:, 0] + target_rows[:, 1], torch.ones(count))
    torch.testing.assert_close(target_rows[:, 1], target_rows[:, 2])
    torch.testing.assert_close(interferer_rows[:, 0] + interferer_rows[:, 1], torch.ones(count))
    assert float(soft.min()) >= 0.0 and float(soft.max()) <= 1.0
    # About CLEAN_SHARE of the rows are left clean, and those are the clean signal's input exactly.
    clean = target_rows[:, 0] == 1.0
    assert 0.05 < float(clean.float().mean()) < 0.15
    torch.testing.assert_close(inputs[0::2][clean], tagger_input(levels[clean, 0], levels[clean, 2]))
    # The share follows the ratio asked for: 0 dB over the leak is half the power, +20 dB 0.99.
    ratio = torch.tensor([[0.0, 20.0]]).expand(count, 2)
    _, soft = leaky_inputs(levels, labels, ratio)
    assert abs(float(soft[0::2, 0].mean()) - 0.5) < 0.02  # on average: the bands' spread moves each one
    assert abs(float(soft[1::2, 1].mean()) - 0.99) < 0.005


def test_a_leaky_tagger_s_logit_rises_with_its_class_s_share(tone_corpus):
    root, _ = tone_corpus
    classes = corpus_classes(root)
    config = replace(CONFIG, tagger_classes=len(classes))
    train = tagger_examples(root, "train", 120, 0, classes, config, log=lambda _: None)
    validation = tagger_examples(root, "val", 30, 1, classes, config, log=lambda _: None)
    model = train_tagger(train, config, class_embeddings(TextEncoder.load(), classes), epochs=6,
                         learning_rate=5e-3, batch_size=16, leaky=True, log=lambda _: None)
    assert target_accuracy(model, validation) >= 0.9  # clean targets are still told apart
    levels, labels = torch.from_numpy(validation.levels).float(), torch.from_numpy(validation.labels).float()
    target_class = labels[:, 0].argmax(dim=1)
    logits = []
    for ratio_db in (-10.0, 0.0, 10.0, 20.0):
        inputs, _ = leaky_inputs(levels, labels, torch.full((len(levels), 2), ratio_db))
        with torch.no_grad():
            logits.append(model(inputs[0::2])[torch.arange(len(levels)), target_class])
    means = [float(logit.mean()) for logit in logits]
    assert means == sorted(means) and means[-1] - means[0] > 2.0, means


def test_drawn_examples_are_kept_and_found_again_only_for_the_same_classes(tmp_path):
    draws = []

    def draw():
        draws.append(1)
        rng = np.random.default_rng(len(draws))
        return TaggerExamples(rng.normal(size=(4, 3, 5, 2)).astype(np.float16),
                              rng.integers(0, 2, (4, 3, 2)).astype(np.uint8))

    path = tmp_path / "sets" / "tagger_train_4_0.npz"
    first = cached_examples(path, ["a", "b"], draw)
    found = cached_examples(path, ["a", "b"], draw)
    assert len(draws) == 1 and [p.name for p in path.parent.iterdir()] == [path.name]
    np.testing.assert_array_equal(found.levels, first.levels)
    np.testing.assert_array_equal(found.labels, first.labels)
    other = cached_examples(path, ["a", "c"], draw)  # another corpus's classes: drawn again
    assert len(draws) == 2 and not np.array_equal(other.levels, first.levels)
    path.write_bytes(b"PK\x03\x04 cut short")  # a damaged file: drawn again, not a traceback
    cached_examples(path, ["a", "c"], draw)
    assert len(draws) == 3 and cached_examples(path, ["a", "c"], draw) is not None and len(draws) == 3


def test_judge_tagger_command_writes_a_tagger_the_judge_can_take(tone_corpus, tmp_path):
    root, _ = tone_corpus
    def fit(out: str, *extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "samstream.plugin_host.cli", "judge", "tagger", "--data", root,
                               "--mixtures", "40", "--validation-mixtures", "12", "--epochs", "1", "--width", "8",
                               "--sets", str(tmp_path / "sets"), "--out", str(tmp_path / out), *extra],
                              capture_output=True, text=True, timeout=300)

    made = fit("tagger")
    assert made.returncode == 0, made.stderr
    assert "drawing 40 train mixtures" in made.stdout
    assert sorted(path.name for path in (tmp_path / "sets").iterdir()) == ["tagger_train_40_11.npz",
                                                                          "tagger_val_12_11.npz"]
    record = json.loads((tmp_path / "tagger" / "tagger.json").read_text())
    assert record["width"] == 8 and record["training"]["classes"] == ["sine_high", "sine_low", "white"]
    assert record["training"]["leaky"] is True and record["training"]["fit_seed"] == 11
    # A second fit of the same mixtures draws nothing: it finds them where the first left them.
    again = fit("again", "--fit-seed", "12", "--clean")
    assert again.returncode == 0, again.stderr
    assert "drawing" not in again.stdout
    record = json.loads((tmp_path / "again" / "tagger.json").read_text())
    assert record["training"]["leaky"] is False and record["training"]["fit_seed"] == 12
    assert 0.0 <= record["training"]["validation_targets_tagged_right"] <= 1.0
    assert load_tagger(tmp_path / "tagger", JudgeConfig()).config.tagger_classes == 3
    refused = subprocess.run([sys.executable, "-m", "samstream.plugin_host.cli", "judge", "tagger", "--data",
                              str(tmp_path / "none"), "--out", str(tmp_path / "x")], capture_output=True, text=True,
                             timeout=300)
    assert refused.returncode != 0 and "manifest.jsonl: missing" in refused.stderr
