"""A batch of N streams through one batched hop graph equals N streams each through its own
``OnnxSeparator`` (real ONNX Runtime on the CPU, to float32 rounding)."""
import json

import numpy as np
import pytest

from samstream.models.batched_runtime import BatchedSeparator, hop_graph_path
from samstream.models.runtime import ModelFolderError, OnnxSeparator, Prompt
from samstream.stream.engine import StftEngine

from .batched_model import export_tiny_model


@pytest.fixture(scope="module", params=[0, 2], ids=["no-lookahead", "lookahead-2"])
def serving(request, tmp_path_factory):
    return export_tiny_model(tmp_path_factory.mktemp(f"batched{request.param}"), lookahead=request.param)


def prompts(count, text_dim, seed=0):
    """Stream 0 has no prompt (passes through); the others have their own text prompts."""
    rng = np.random.default_rng(seed)
    return [Prompt()] + [Prompt(text_embedding=rng.standard_normal(text_dim).astype(np.float32))
                         for _ in range(count - 1)]


def run_separate_and_batched(serving, streams, channels, hops, keep_target=True, crossfade=0, switch_at=None):
    """The same signal and prompts through N lone separators and one batched one; returns both outputs."""
    lone = [OnnxSeparator(serving, steps=1, seed=stream, crossfade_frames=crossfade) for stream in range(streams)]
    batched = BatchedSeparator(serving, streams, channels, steps=1, seed=0, crossfade_frames=crossfade)
    config = batched.config
    n_fft, hop = config.stft.n_fft, config.stft.hop
    first, second = prompts(streams, config.prompt.text_dim), prompts(streams, config.prompt.text_dim, seed=1)[::-1]
    engines = [StftEngine(n_fft, hop, model=separator) for separator in lone]
    for engine, separator, prompt in zip(engines, lone, first, strict=True):
        separator.keep_target = keep_target
        separator.set_prompt(prompt)
        engine.configure(48000, hop, channels)
    batch_engine = StftEngine(n_fft, hop, model=batched)
    batched.keep_target = keep_target
    for stream, prompt in enumerate(first):
        batched.set_prompt(prompt, stream)
    batch_engine.configure(48000, hop, streams * channels)
    signal = (np.random.default_rng(7).standard_normal((streams * channels, hops * hop)) * 0.1).astype(np.float32)
    alone = np.zeros_like(signal)
    together = np.zeros_like(signal)
    for index in range(hops):
        if index == switch_at:
            for stream, prompt in enumerate(second):
                lone[stream].set_prompt(prompt)
                batched.set_prompt(prompt, stream)
        span = slice(index * hop, (index + 1) * hop)
        for stream, engine in enumerate(engines):
            rows = slice(stream * channels, (stream + 1) * channels)
            engine.process(np.ascontiguousarray(signal[rows, span]), hop_out := np.zeros((channels, hop), np.float32))
            alone[rows, span] = hop_out
        batch_engine.process(np.ascontiguousarray(signal[:, span]), hop_out := np.zeros((streams * channels, hop),
                                                                                            np.float32))
        together[:, span] = hop_out
    return signal, alone, together


@pytest.mark.parametrize("streams,channels", [(3, 1), (2, 2)])
def test_a_batch_of_streams_equals_each_stream_alone(serving, streams, channels):
    """Past the cache's length (8 frames) too: 20 hops, so the ring wraps in every row."""
    signal, alone, together = run_separate_and_batched(serving, streams, channels, hops=20)
    assert np.abs(alone).max() > 0.01
    assert np.abs(together - alone).max() <= 1e-5
    # Stream 0 has no prompt: it comes out as it went in, delayed by the STFT's latency.
    delay = BatchedSeparator(serving, streams, channels).config.latency_samples
    assert np.abs(together[:channels, delay:] - signal[:channels, :-delay]).max() < 1e-5


def test_prompt_changes_fade_per_stream_as_each_stream_alone_does(serving):
    _, alone, together = run_separate_and_batched(serving, 3, 1, hops=16, crossfade=3, switch_at=9)
    assert np.abs(together - alone).max() <= 1e-5


def test_remove_mode_batched_equals_remove_mode_alone(serving):
    _, alone, together = run_separate_and_batched(serving, 3, 1, hops=12, keep_target=False)
    assert np.abs(together - alone).max() <= 1e-5


def test_remove_mode_fades_like_the_batch_when_a_prompt_is_set_or_cleared(serving):
    """Stream 0 gains a prompt and the last stream loses its own: in remove mode, clearing must fade
    towards the input (a gain of one), not towards silence and then jump back."""
    signal, alone, together = run_separate_and_batched(serving, 3, 1, hops=24, keep_target=False, crossfade=3,
                                                       switch_at=9)
    assert np.abs(together - alone).max() <= 1e-5
    config = BatchedSeparator(serving, 3, 1).config
    hop, delay, overlap = config.stft.hop, config.latency_samples, config.stft.n_fft // config.stft.hop
    settled = (9 + 3 + overlap) * hop  # output from here on is made of frames after the 3-frame fade
    assert np.abs(alone[2, settled:] - signal[2, settled - delay:-delay]).max() < 1e-5
    fading = alone[2, 9 * hop:settled]
    assert np.sqrt(np.mean(fading ** 2)) > 0.5 * np.sqrt(np.mean(signal[2] ** 2))


def test_batched_graph_is_named_in_the_manifest_and_required_for_more_than_one_stream(serving, tmp_path):
    manifest = json.loads((serving / "serving.json").read_text())
    assert manifest["batched_hop_graphs"] == {"1": "hop_1_batched.onnx"}
    assert hop_graph_path(serving, None, 1)[0].name == "hop_1.onnx"
    assert hop_graph_path(serving, None, 4)[0].name == "hop_1_batched.onnx"
    del manifest["batched_hop_graphs"]
    for name in ("config.json", "hop_1.onnx"):
        (tmp_path / name).write_bytes((serving / name).read_bytes())
    (tmp_path / "serving.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFolderError, match="batched hop graphs.*samstream export"):
        BatchedSeparator(tmp_path, 4)
    with pytest.raises(ModelFolderError, match="streams must be"):
        BatchedSeparator(serving, 0)
    with pytest.raises(ModelFolderError, match="3 stream\\(s\\) of 2 channel"):
        StftEngine(1024, 256, model=BatchedSeparator(serving, 3, 2)).configure(48000, 256, 4)
