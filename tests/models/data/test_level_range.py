"""`samstream train --level-range` and `--speed-families`: mixture settings from the command
line down to the corpus sampler, on a real (tiny) corpus and the real text encoder."""
import argparse

import numpy as np
import pytest

from samstream.models.config import MODEL_PRESETS
from samstream.models.train import TrainSettings, settings_from
from samstream.plugin_host.model_cli import corpus_prompts, register


def parse_train(*words):
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    return parser.parse_args(["train", *words])


def test_the_level_range_reaches_the_corpus_sampler_and_sets_the_mixture_rms(tiny_corpus):
    settings = settings_from(parse_train("--level-range", "-52", "-48"))
    assert settings.level_db == [-52.0, -48.0]
    sampler, _ = corpus_prompts(tiny_corpus, MODEL_PRESETS["small"], settings, 0)
    corpus = sampler.source.sampler
    assert corpus.config.level_db == (-52.0, -48.0)
    levels = [10 * np.log10(np.mean(corpus.sample(index).mixture.astype(np.float64) ** 2)) for index in range(12)]
    assert all(-52.01 <= level <= -47.99 for level in levels), levels
    default = corpus_prompts(tiny_corpus, MODEL_PRESETS["small"], TrainSettings(), 0)[0].source.sampler
    assert default.config.level_db == (-32.0, -12.0)


@pytest.mark.parametrize("low, high", [(-12.0, -32.0), (-20.0, 6.0)])
def test_a_reversed_or_clipping_level_range_is_refused_by_name(tiny_corpus, low, high):
    settings = settings_from(parse_train("--level-range", str(low), str(high)))
    with pytest.raises(ValueError, match="--level-range"):
        corpus_prompts(tiny_corpus, MODEL_PRESETS["small"], settings, 0)


def test_speed_families_reach_the_corpus_sampler_and_an_unknown_family_is_refused(tiny_corpus):
    settings = settings_from(parse_train("--speed-share", "0.5", "--speed-families", "noise, "))
    assert settings.speed_families == ("noise",)
    corpus = corpus_prompts(tiny_corpus, MODEL_PRESETS["small"], settings, 0)[0].source.sampler
    assert corpus.config.speed_share == 0.5 and corpus.config.speed_families == ("noise",)
    settings = settings_from(parse_train("--speed-families", "noise,effects"))
    with pytest.raises(ValueError, match="--speed-families names effects, not a family"):
        corpus_prompts(tiny_corpus, MODEL_PRESETS["small"], settings, 0)
