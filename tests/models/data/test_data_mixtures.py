"""The on-the-fly mixture sampler: ratios, activity labels, determinism, constraints."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from samstream.models.data import HOP, SAMPLE_RATE
from samstream.models.data.mixtures import PROTOCOL, MixtureConfig, MixtureSampler, activity_of


def tir(target: np.ndarray, residual: np.ndarray) -> float:
    t, r = target.astype(np.float64), residual.astype(np.float64)
    return float(10 * np.log10(np.sum(t ** 2) / np.sum(r ** 2)))


def test_ratio_within_range_and_mixture_is_the_sum(tone_corpus):
    root, entries = tone_corpus
    sampler = MixtureSampler(entries, root, MixtureConfig(), seed=3)
    for index in range(40):
        mix = sampler[index]
        assert mix.mixture.dtype == np.float32 and mix.mixture.size == 6 * SAMPLE_RATE
        np.testing.assert_array_equal(mix.mixture, mix.target + mix.residual)
        measured = tir(mix.target, mix.residual)
        assert -5.01 <= measured <= 5.01
        assert abs(measured - mix.tir_db) < 1e-3
        assert np.max(np.abs(mix.mixture)) < 1.0


@pytest.mark.parametrize("ratio", [-5.0, 0.0, 3.5])
def test_configured_ratio_is_met(tone_corpus, ratio):
    root, entries = tone_corpus
    config = MixtureConfig(tir_db=(ratio, ratio), reverb_prob=1.0, eq_prob=1.0)
    sampler = MixtureSampler(entries, root, config, seed=11)
    for index in range(10):
        mix = sampler[index]
        assert abs(tir(mix.target, mix.residual) - ratio) < 0.05


def test_interferers_come_from_other_classes_with_other_captions(tone_corpus):
    root, entries = tone_corpus
    sampler = MixtureSampler(entries, root, MixtureConfig(interferers=(1, 3)), seed=2)
    counts = set()
    for index in range(40):
        mix = sampler[index]
        assert mix.target_class not in mix.interferer_classes
        assert len(set(mix.interferer_classes)) == len(mix.interferer_classes)
        assert mix.caption in {c for e in entries if e.cls == mix.target_class for c in e.captions}
        counts.add(len(mix.interferer_classes))
        assert all(s["path"].startswith("train/") for s in mix.sources)
    assert counts <= {1, 2} and 2 in counts          # only two other classes exist here


def test_deterministic_from_seed_and_index(tone_corpus):
    root, entries = tone_corpus
    a = MixtureSampler(entries, root, seed=7)
    b = MixtureSampler(list(reversed(entries)), root, seed=7)
    for index in (0, 5, 123456):
        x, y = a[index], b[index]
        np.testing.assert_array_equal(x.mixture, y.mixture)
        np.testing.assert_array_equal(x.activity, y.activity)
        assert x.caption == y.caption and x.sources == y.sources
    assert not np.array_equal(a[0].mixture, a[1].mixture)
    assert not np.array_equal(a[0].mixture, MixtureSampler(entries, root, seed=8)[0].mixture)


def test_activity_matches_the_target_span(tone_corpus):
    root, entries = tone_corpus
    config = MixtureConfig(partial_prob=1.0, eq_prob=0.0, reverb_prob=0.0)
    sampler = MixtureSampler([e for e in entries if e.frames > 6 * SAMPLE_RATE], root, config, seed=1)
    fade = SAMPLE_RATE // 100
    for index in range(20):
        mix = sampler[index]
        start, stop = mix.sources[0]["span"]
        hops = np.arange(mix.activity.size)
        assert mix.activity.size == 6 * SAMPLE_RATE // HOP
        inside = (hops * HOP >= start + fade) & ((hops + 1) * HOP <= stop - fade)
        outside = ((hops + 1) * HOP <= start) | (hops * HOP >= stop)
        assert mix.activity[inside].all()
        assert not mix.activity[outside].any()


def test_activity_of_a_tone_burst():
    x = np.zeros(SAMPLE_RATE, dtype=np.float32)
    x[HOP * 100:HOP * 200] = 0.5 * np.sin(np.arange(HOP * 100) * 0.3)
    expected = np.zeros(SAMPLE_RATE // HOP + 1, dtype=bool)
    expected[100:200] = True
    np.testing.assert_array_equal(activity_of(x), expected[:activity_of(x).size])
    assert not activity_of(np.zeros(1000, dtype=np.float32)).any()


def test_protocol_config_is_two_sources_dry(tone_corpus):
    root, entries = tone_corpus
    sampler = MixtureSampler(entries, root, PROTOCOL, seed=0)
    mix = sampler.sample(0, target_class="white")
    assert mix.target_class == "white" and len(mix.interferer_classes) == 1
    assert all(s["path"].startswith("val/") for s in mix.sources)


def test_needs_two_classes(tone_corpus):
    root, entries = tone_corpus
    with pytest.raises(ValueError, match="at least two classes"):
        MixtureSampler([e for e in entries if e.cls == "white"], root)


def test_activity_fills_short_gaps_only():
    x = np.zeros(SAMPLE_RATE, dtype=np.float32)
    for a, b in ((10, 50), (55, 90), (200, 240)):          # a 5-hop gap and a 110-hop gap
        x[HOP * a:HOP * b] = 0.5
    flags = activity_of(x, gap_hops=10)
    assert flags[10:90].all() and not flags[90:200].any() and flags[200:240].all()
    assert not flags[:10].any() and not flags[240:].any()


def test_pair_difficulty_weighs_hard_pairs_up_and_keeps_a_uniform_floor():
    from samstream.models.data.hard_pairs import PairDifficulty

    miner = PairDifficulty(["a", "b", "c", "d"], mining_share=0.5, temperature_db=3.0)
    others = ["b", "c", "d"]
    np.testing.assert_allclose(miner.interferer_probabilities("a", others), 1 / 3)  # nothing measured yet
    miner.record("a", ["b"], -12.0)  # the model made "a beside b" 12 dB worse than the mixture
    miner.record("a", ["c", "d"], 6.0)
    probabilities = miner.interferer_probabilities("a", others)
    assert probabilities.sum() == pytest.approx(1.0)
    assert probabilities[0] > 0.6 and probabilities[1] == pytest.approx(probabilities[2])
    assert probabilities.min() >= 0.5 / 3 - 1e-9
    # a running mean: one good outcome moves the pair by the rate, not all the way
    miner.record("a", ["b"], 8.0)
    assert miner.difficulty[0, 1] == pytest.approx(12.0 + 0.2 * (-8.0 - 12.0))
    assert miner.hardest(1) == [("a", "b", pytest.approx(8.0))]
    # unmeasured pairs stand at the mean measured difficulty; NaN is ignored
    miner.record("b", ["a"], float("nan"))
    assert not miner.measured[1, 0]
    resumed = PairDifficulty(["d", "c", "b", "a", "e"])
    resumed.load_state(miner.state())
    assert resumed.difficulty[resumed.index["a"], resumed.index["b"]] == pytest.approx(8.0)
    with pytest.raises(ValueError, match="mining_share"):
        PairDifficulty(["a"], mining_share=1.5)


def test_the_sampler_draws_the_interferers_a_miner_finds_hard(tone_corpus):
    from samstream.models.data.hard_pairs import PairDifficulty

    root, entries = tone_corpus
    sampler = MixtureSampler(entries, root, MixtureConfig(interferers=(1, 1)), seed=5)
    classes = sampler.classes
    plain = [sampler.sample(index, target_class=classes[0]).interferer_classes[0] for index in range(60)]
    sampler.pair_difficulty = PairDifficulty(classes, mining_share=1.0, temperature_db=1.0)
    sampler.pair_difficulty.record(classes[0], [classes[1]], -10.0)
    sampler.pair_difficulty.record(classes[0], [classes[2]], 10.0)
    mined = [sampler.sample(index, target_class=classes[0]).interferer_classes[0] for index in range(60)]
    assert 15 < plain.count(classes[1]) < 45
    assert mined.count(classes[1]) >= 58


def test_judge_training_mixtures_come_varied_or_as_the_benchmark_makes_them(tone_corpus):
    from samstream.plugin_host.judge_cli import judge_mixtures

    root, _ = tone_corpus
    def levels(style: str) -> np.ndarray:
        return np.array([10 * np.log10(np.mean(item.mixture.astype(np.float64) ** 2))
                         for item in judge_mixtures(root, "train", 8, 3, style)])
    # The benchmark's mixtures sit at one level (PROTOCOL), the varied ones anywhere in their range.
    np.testing.assert_allclose(levels("protocol"), PROTOCOL.level_db[0], atol=0.5)
    assert np.ptp(levels("varied")) > 3.0
    with pytest.raises(ValueError, match="mixture style 'loud'"):
        list(judge_mixtures(root, "train", 1, 3, "loud"))


def test_calibration_mixtures_draw_only_validation_groups_the_held_out_set_leaves_unused(tone_corpus):
    from samstream.models.data.validation import items
    from samstream.plugin_host.judge_cli import calibration_entries, judge_mixtures

    root, entries = tone_corpus
    held_out_paths = {source["path"] for meta, _, _ in items(entries, root, per_class=1) for source in meta["sources"]}
    pool = calibration_entries(entries, root, held_out=1)
    pool_paths = {entry.path for entry in pool}
    # Every source of the pool is a validation source the held-out mixtures never touch, and every
    # validation source they leave is in the pool.
    assert pool_paths and all(entry.split == "val" for entry in pool)
    assert not pool_paths & held_out_paths
    assert pool_paths | held_out_paths == {entry.path for entry in entries if entry.split == "val"}
    # Three held-out mixtures of two sources leave at least two classes of the six sources.
    assert len({entry.cls for entry in pool}) >= 2
    made = list(judge_mixtures(root, "train", 4, 3, "calibration", held_out=1))
    assert {item.target_class for item in made} <= {entry.cls for entry in pool}
    np.testing.assert_allclose([10 * np.log10(np.mean(item.mixture.astype(np.float64) ** 2)) for item in made],
                               PROTOCOL.level_db[0], atol=0.5)
    with pytest.raises(ValueError, match="--held-out"):
        calibration_entries(entries, root, held_out=0)


def test_no_interferer_answers_the_prompt_of_a_kind_or_a_broad_caption(tmp_path):
    """Birds are animals and a piano piece is music: with real class names and their real
    captions, no mixture sets a class against one its caption also names; a specific
    caption ("a trumpet playing") still meets the neighbour a broad one ("brass") covers."""
    from samstream.models.data.audio import write_flac
    from samstream.models.data.captions import CLASSES, OVERLAPS, may_interfere
    from samstream.models.data.manifest import Entry

    names = ["animal", "birds", "music", "piano", "trumpet", "trombone", "speech"]
    entries = []
    for k, cls in enumerate(names):
        path = f"train/{cls}.flac"
        write_flac(str(tmp_path / path), np.sin(np.arange(3 * SAMPLE_RATE) * 0.01 * (k + 1)).astype(np.float32))
        entries.append(Entry(path=path, cls=cls, captions=list(CLASSES[cls].captions), package="test",
                             licence="CC0", split="train", family="test", group=path, frames=3 * SAMPLE_RATE))
    sampler = MixtureSampler(entries, str(tmp_path), MixtureConfig(interferers=(1, 3), seconds=1.0, min_span_s=0.5),
                             seed=4)
    met = set()
    for index in range(300):
        mix = sampler[index]
        for other in mix.interferer_classes:
            assert may_interfere(mix.target_class, mix.caption, other), (mix.caption, other)
            met.add((mix.target_class, mix.caption, other))
    assert not any(frozenset((t, o)) in OVERLAPS for t, _, o in met)
    assert ("animal", "birds") not in {(t, o) for t, _, o in met}
    assert not any(t == "trumpet" and c == "brass" and o == "trombone" for t, c, o in met)
    assert any(t == "trumpet" and c != "brass" and o == "trombone" for t, c, o in met)
    assert any(t == "music" and o == "speech" for t, _, o in met)


def test_the_overlap_tables_name_real_classes_and_captions():
    from samstream.models.data.captions import ALSO_NAMES, CLASSES, OVERLAPS, may_interfere

    owner = {caption: name for name, info in CLASSES.items() for caption in info.captions}
    assert all(len(pair) == 2 and pair <= set(CLASSES) for pair in OVERLAPS)
    for caption, named in ALSO_NAMES.items():
        assert caption in owner and named and all(n in CLASSES and n != owner[caption] for n in named)
    assert not may_interfere("birds", "birdsong", "animal") and not may_interfere("animal", "a horse", "birds")
    assert not may_interfere("piano", "piano", "music") and may_interfere("piano", "piano", "organ")
    assert not may_interfere("electric_piano", "a keyboard playing", "organ")
    assert may_interfere("electric_piano", "rhodes", "organ")


def test_sources_played_faster_or_slower_shift_pitch_within_the_range(tone_corpus):
    root, entries = tone_corpus
    config = MixtureConfig(speed_share=1.0, speed_semitones=3.0, eq_prob=0.0, reverb_prob=0.0,
                           partial_prob=0.0, interferers=(1, 1))
    sampler = MixtureSampler(entries, root, config, seed=4)
    shifts = []
    for index in range(12):
        mix = sampler.sample(index, target_class="sine_low")
        np.testing.assert_array_equal(mix.mixture, mix.target + mix.residual)
        spectrum = np.abs(np.fft.rfft(mix.target.astype(np.float64)))
        peak = np.argmax(spectrum) * SAMPLE_RATE / mix.target.size
        shifts.append(12.0 * np.log2(peak / 220.0))
    shifts = np.array(shifts)
    assert np.all(np.abs(shifts) <= 3.05), shifts
    assert np.sum(np.abs(shifts) > 0.3) >= 8, shifts      # most draws are audibly off the recording
    assert shifts.min() < 0.0 < shifts.max()               # faster and slower both


def test_no_speed_share_leaves_every_mixture_as_it_was(tone_corpus):
    root, entries = tone_corpus
    plain = MixtureSampler(entries, root, MixtureConfig(), seed=9)
    off = MixtureSampler(entries, root, MixtureConfig(speed_share=0.0, speed_semitones=5.0), seed=9)
    shifted = MixtureSampler(entries, root, MixtureConfig(speed_share=1.0), seed=9)
    for index in range(6):
        np.testing.assert_array_equal(plain[index].mixture, off[index].mixture)
    assert any(not np.array_equal(plain[i].target, shifted[i].target) for i in range(6))


def test_speed_families_limit_the_speed_change_to_sources_of_those_families(tone_corpus):
    root, entries = tone_corpus
    recorded = [replace(e, family="recorded" if e.cls == "sine_low" else "rendered") for e in entries]
    config = MixtureConfig(speed_share=1.0, speed_families=("recorded",), eq_prob=0.0, reverb_prob=0.0,
                           partial_prob=0.0, interferers=(1, 1))
    sampler = MixtureSampler(recorded, root, config, seed=4)

    def peak_semitones(target_class: str, reference_hz: float, index: int) -> float:
        target = sampler.sample(index, target_class=target_class).target.astype(np.float64)
        peak = np.argmax(np.abs(np.fft.rfft(target))) * SAMPLE_RATE / target.size
        return 12.0 * np.log2(peak / reference_hz)

    low = np.array([peak_semitones("sine_low", 220.0, i) for i in range(8)])
    high = np.array([peak_semitones("sine_high", 1760.0, i) for i in range(8)])
    assert np.sum(np.abs(low) > 0.3) >= 5, low           # the named family changes speed
    assert np.all(np.abs(high) < 0.05), high             # the other plays as rendered
    nobody = MixtureSampler(recorded, root, replace(config, speed_families=("none of these",)), seed=4)
    plain = MixtureSampler(recorded, root, replace(config, speed_share=0.0), seed=4)
    for index in range(4):
        np.testing.assert_array_equal(nobody[index].mixture, plain[index].mixture)
