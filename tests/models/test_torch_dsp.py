"""The training half's torch STFT must frame exactly as the streaming kernels do."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from samstream.models import torch_dsp  # noqa: E402
from samstream.stream.engine import StftEngine  # noqa: E402
from samstream.stream.offline import render_offline  # noqa: E402
from tests.kernels.test_stft import stream_stft  # noqa: E402


@pytest.mark.parametrize("n_fft, hop", [(512, 128), (256, 128), (2048, 512)])
def test_torch_frames_equal_streamed_frames(n_fft, hop):
    signal = np.random.default_rng(0).standard_normal((2, 20 * hop))
    streamed = stream_stft(signal, n_fft, hop, np.float64)
    batch = torch_dsp.stft(torch.from_numpy(signal), n_fft, hop).numpy()
    assert batch.shape[-1] >= streamed.shape[-1]
    assert np.abs(batch[..., :streamed.shape[-1]] - streamed).max() < 1e-10


@pytest.mark.parametrize("n_fft, hop", [(512, 128), (1024, 512)])
def test_torch_round_trip_is_exact_and_matches_the_streamed_engine_under_a_gain(n_fft, hop):
    signal = np.random.default_rng(1).uniform(-1, 1, (1, 30 * hop))
    spectrum = torch_dsp.stft(torch.from_numpy(signal), n_fft, hop)
    assert np.abs(torch_dsp.istft(spectrum, n_fft, hop, signal.shape[1]).numpy() - signal).max() < 1e-10

    class HalfGain:
        lookahead_frames = 0

        def configure(self, channels, n_bins):
            pass

        def process(self, spectrum_in, spectrum_out):
            np.multiply(spectrum_in, 0.5, out=spectrum_out)

    streamed = render_offline(StftEngine(n_fft, hop, model=HalfGain()), signal.astype(np.float32))
    batch = torch_dsp.istft(spectrum * 0.5, n_fft, hop, signal.shape[1]).numpy()
    assert np.abs(streamed - batch).max() < 1e-5


def test_the_per_hop_torch_baseline_reconstructs():
    path = torch_dsp.HopRoundTrip(512, 128)
    signal = torch.rand(128 * 40) - 0.5
    output = torch.zeros_like(signal)
    for start in range(0, len(signal), 128):
        path.process(signal[start:start + 128], output[start:start + 128])
    assert (output[384:] - signal[:-384]).abs().max() < 1e-5
